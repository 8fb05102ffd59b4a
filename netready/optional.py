"""Optional parts of netready: packages that only some users need, installed as extras.

The agent's base install stays small (``pip install nhs-netready``); the estate team's and the
central servers' extras are named in ``pyproject.toml``::

    charts     matplotlib            the HTML report's charts
    influxdb2  influxdb-client       the InfluxDB v2 write API (v1 needs nothing more)
    grafana    grafana-client, grafana-foundation-sdk   `netready dashboards build|push`
    ssh        paramiko, ntc-templates   the ssh collector (router CLI)
    server     aiohttp               `netready serve`, `netready config serve`, and prometheus
    estate     ruamel.yaml           `netready inventory import-ods` (keeps the YAML's comments)
    prometheus prometheus-client     `--metrics` on the servers, `netready-agent --textfile`
    raw-icmp   scapy                 the icmp probe's raw socket (the datagram one needs none)

``require`` imports one of them or raises ``MissingExtra``, one line naming the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from netready.errors import MissingExtra

#: top-level module -> (extra, distribution)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("charts", "matplotlib"),
    "influxdb_client": ("influxdb2", "influxdb-client"),
    "grafana_client": ("grafana", "grafana-client"),
    "grafana_foundation_sdk": ("grafana", "grafana-foundation-sdk"),
    "aiohttp": ("server", "aiohttp"),
    "prometheus_client": ("prometheus", "prometheus-client"),
    "paramiko": ("ssh", "paramiko"),
    "ntc_templates": ("ssh", "ntc-templates"),
    "ruamel": ("estate", "ruamel.yaml"),
    "scapy": ("raw-icmp", "scapy"),
}


def require(module: str, what: str) -> ModuleType:
    """``importlib.import_module(module)``, or one line saying which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.partition(".")[0]
        if top not in EXTRAS or (e.name or "").partition(".")[0] != top:
            raise
        extra, dist = EXTRAS[top]
        raise MissingExtra(
            f"{what} needs {dist}, which is not installed: pip install 'nhs-netready[{extra}]'"
        ) from None
