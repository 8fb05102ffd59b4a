"""The agent's node_exporter textfile (``netready-agent --textfile PATH``).

node_exporter's textfile collector (``--collector.textfile.directory``) serves every ``*.prom``
file of a directory on its own ``/metrics``: a practice box that already runs node_exporter then
shows the agent's health in Prometheus with no port of the agent's own. The file holds the
numeric fields of the agent's ``agent`` record (docs/agent.md: spool depth, shipped, dead
letters, loop restarts, ...) as gauges ``netready_agent_<field>``, labelled with the record's
tags (site, icb, host, ...); ``netready_agent_info`` carries the version. It is rewritten each
time the agent writes that record (every ``agent.self_report_s``, and at the end of ``--once``).

Written by prometheus-client's ``write_to_textfile``: a temporary file beside it, then an
atomic rename, so node_exporter never reads half a file. Needs the ``prometheus`` extra.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from netready.errors import ConfigError
from netready.optional import require
from netready.records import Record

_NAME = re.compile(r"[^a-zA-Z0-9_]")


def check_textfile(path: str | Path) -> Path:
    """The ``--textfile`` path, checked before the agent starts (ConfigError: exit 2)."""
    require("prometheus_client", "--textfile")
    p = Path(path)
    if p.suffix != ".prom":
        raise ConfigError(f"--textfile {p}: node_exporter reads only files ending in .prom")
    if not p.parent.is_dir():
        raise ConfigError(f"--textfile {p}: directory {p.parent} does not exist")
    return p


def metric_name(field: str, prefix: str = "netready_agent_") -> str:
    return prefix + _NAME.sub("_", field)


def write_textfile(path: Path, rec: Record) -> None:
    """The record's numeric fields as gauges in ``path`` (atomic rename). OSError on failure."""
    pc = require("prometheus_client", "--textfile")
    registry = pc.CollectorRegistry()
    labels = sorted(k for k in rec.tags if k != "result")
    values = [rec.tags[k] for k in labels]
    for field, value in sorted(rec.fields.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        g: Any = pc.Gauge(metric_name(field), f"agent record field {field}", labels,
                          registry=registry)
        (g.labels(*values) if labels else g).set(value)
    info: Any = pc.Gauge("netready_agent_info", "the agent's version, as a label",
                         [*labels, "version"], registry=registry)
    info.labels(*values, str(rec.fields.get("version", ""))).set(1)
    ts: Any = pc.Gauge("netready_agent_record_timestamp_seconds",
                       "when the agent record was made (Unix time)", labels, registry=registry)
    (ts.labels(*values) if labels else ts).set(rec.time_ms / 1000)
    pc.write_to_textfile(str(path), registry)
