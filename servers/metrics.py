"""``/metrics`` for the central servers: the reflector, the media responder and the speed
endpoint, in the Prometheus text / OpenMetrics format (``prometheus-client``, the ``server``
extra). docs/prometheus.md lists the series.

Nothing is counted twice: each server keeps the counters it always kept (``ReflectorStats``,
the responder's ``counters``, the ``CountedLog`` totals by reason, the endpoint's refusals by
status) and gives a ``Snapshot`` of them; ``Metrics`` reads the snapshots when Prometheus
scrapes (a custom collector), so a scrape costs nothing between scrapes.

The HTTP listener is one of its own (``--metrics HOST:PORT``, loopback unless told, never the
measurement port): the reflector and the responder speak UDP, and the speed endpoint's port
answers only requests with its bearer token. It is prometheus-client's own threaded HTTP server;
a snapshot copies plain ints and dicts (each copy is one step under the GIL), so it reads the
asyncio servers' counters from that thread without locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netready.errors import ConfigError, ServerError
from netready.optional import require

#: Where ``--metrics PORT`` (no host) listens.
DEFAULT_HOST = "127.0.0.1"


@dataclass
class Snapshot:
    """One server's counters since it started (``sessions_active`` is a gauge)."""

    requests: int = 0  # datagrams or HTTP requests received
    sessions: int = 0  # sessions (media calls, speed tests) admitted
    sessions_active: int = 0
    refusals: Mapping[str, int] = field(default_factory=dict)  # reason -> count
    rate_limited: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0


def parse_listen(value: str, measurement: str | None = None) -> tuple[str, int]:
    """``--metrics [HOST:]PORT`` -> (host, port); a ConfigError for a bad one, or for the
    measurement port itself (``measurement``: the server's ``--listen``)."""
    from netready.inventory import split_hostport

    text = value.strip()
    if text.isdigit():
        text = f"{DEFAULT_HOST}:{text}"
    try:
        host, port = split_hostport(text)
    except ValueError as e:
        raise ConfigError(f"--metrics {e}") from None
    if measurement is not None:
        try:
            _, mport = split_hostport(measurement)
        except ValueError:
            mport = None
        if mport == port:
            raise ConfigError(
                f"--metrics {value}: port {port} is the measurement port (--listen "
                f"{measurement}); give /metrics a port of its own"
            )
    return host, port


class Metrics:
    """The ``/metrics`` of one process: ``add`` each server's snapshot, ``start`` the listener,
    ``close`` it. Series (label ``server``: reflector, responder, speed)::

        netready_server_requests_total        datagrams / requests received
        netready_server_sessions_total        sessions admitted (responder, speed)
        netready_server_sessions_open         sessions open now
        netready_server_refusals_total        refused or dropped, label reason
        netready_server_rate_limited_total    refused by a rate limit
        netready_server_bytes_total           label direction: rx, tx
    """

    def __init__(self) -> None:
        self._client = require("prometheus_client", "--metrics")
        self._sources: dict[str, Callable[[], Snapshot]] = {}
        self.registry: Any = self._client.CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._http: Any = None
        self._thread: Any = None

    def add(self, server: str, snapshot: Callable[[], Snapshot]) -> None:
        self._sources[server] = snapshot

    def collect(self) -> Iterator[Any]:
        core = require("prometheus_client.core", "--metrics")
        req = core.CounterMetricFamily(
            "netready_server_requests", "Datagrams or requests received.", labels=["server"]
        )
        ses = core.CounterMetricFamily(
            "netready_server_sessions", "Sessions admitted.", labels=["server"]
        )
        act = core.GaugeMetricFamily(
            "netready_server_sessions_open", "Sessions open now.", labels=["server"]
        )
        ref = core.CounterMetricFamily(
            "netready_server_refusals",
            "Requests or packets refused or dropped, by reason.",
            labels=["server", "reason"],
        )
        lim = core.CounterMetricFamily(
            "netready_server_rate_limited", "Refused by a rate limit.", labels=["server"]
        )
        byt = core.CounterMetricFamily(
            "netready_server_bytes", "Bytes received and sent.", labels=["server", "direction"],
            unit="bytes",
        )
        for name, snapshot in sorted(self._sources.items()):
            s = snapshot()
            req.add_metric([name], s.requests)
            ses.add_metric([name], s.sessions)
            act.add_metric([name], s.sessions_active)
            for reason, n in sorted(s.refusals.items()):
                ref.add_metric([name, reason], n)
            lim.add_metric([name], s.rate_limited)
            byt.add_metric([name, "rx"], s.bytes_rx)
            byt.add_metric([name, "tx"], s.bytes_tx)
        yield from (req, ses, act, ref, lim, byt)

    def exposition(self) -> bytes:
        """The page a scrape gets (Prometheus text format), for tests and ``--once`` checks."""
        return bytes(self._client.generate_latest(self.registry))

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any free one); the bound (host, port)."""
        try:
            self._http, self._thread = self._client.start_http_server(
                port, addr=host, registry=self.registry
            )
        except OSError as e:
            raise ServerError(f"--metrics cannot listen on {host}:{port}: {e.strerror or e}") from None
        bound = self._http.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def warn_if_exposed(host: str) -> str | None:
    """The log line for a /metrics listener beyond loopback (counters are not secret, but
    say who can read them), or None."""
    from netready.servers.guard import is_loopback

    if is_loopback(host):
        return None
    return (
        f"/metrics listens on {host}, beyond loopback: anyone who can reach it reads the "
        "server's counters (restrict it with a firewall to the Prometheus server)"
    )
