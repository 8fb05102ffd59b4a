"""Probe "speedtest": the speedtest-cli library (Ookla speedtest.net) as an optional backend.

Uses ``speedtest.Speedtest(secure=True)`` (HTTPS, which avoids the 403s plain HTTP gets) and,
if given, a chosen ``server_id``; otherwise the nearest server by latency. speedtest-cli must
fetch its configuration from www.speedtest.net first and has no offline mode: offline or
blocked (as on HSCN), the probe fails fast with one clear line and a failed record
(``result=unreachable``), never a traceback.

Terms: Ookla's speedtest.net servers are provided for personal, non-commercial use; check
Ookla's terms of use before scheduling this across an estate. The self-hosted ``throughput``
probe against ``netready serve`` is the default for that reason.

Records (measurement ``throughput``; tags: site, icb, tech, target (server id or ``auto``),
method=speedtest, direction (down|up), result): ``goodput_mbps`` (float, Mbit/s as
speedtest-cli reports it), ``bytes`` (int, bytes received/sent), ``rtt_idle_ms`` (float,
speedtest-cli's ping to the server before the test), ``streams`` (int, threads),
``byte_capped`` (bool, the byte cap stopped that direction early).

Byte cap (heavy probe, ``netready.budget``): speedtest-cli downloads a fixed set of images and
uploads a fixed set of chunks for up to 10 s per direction, whatever they cost. The probe meters
every byte its threads read or send (a wrapper around the library's URL opener) and sets the
library's own shutdown event when a direction has used its share of the per-test cap; the
threads stop at their next 10 KB chunk. The rate is then that of the bytes moved until the
stop (``byte_capped=true``); a direction the cap leaves no room for is ``budget_exceeded``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from netready import budget
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure

CONFIG_HOST = "www.speedtest.net"
#: What speedtest-cli reads per call (HTTPDownloader: 10 KB): the overshoot per thread.
CHUNK = 10240


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_id: int | None = Field(
        None, ge=1, description="speedtest.net server id; nearest if unset"
    )
    direction: Literal["down", "up", "both"] = Field(
        "both", description="down, up, or both (down first)"
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="seconds per HTTP request",
        json_schema_extra={"cli": "--timeout"},
    )
    threads: int | None = Field(
        None, ge=1, le=32, description="parallel HTTP requests; default speedtest.net's choice"
    )
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap for the whole test, MB (1e6); default: the site's budget.test_mb",
    )


class _Stop(threading.Event):
    """speedtest-cli's shutdown event (it calls the pre-3.10 name ``isSet``)."""

    def isSet(self) -> bool:  # the library's name for is_set
        return self.is_set()


class Meter:
    """Bytes moved by speedtest-cli's threads; sets ``stop`` once ``limit`` is reached."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.limit = 0
        self.used = 0
        self.hit = False
        self._lock = threading.Lock()

    def start(self, limit: int) -> None:
        """A new direction with ``limit`` bytes: counts restart, the stop is cleared."""
        with self._lock:
            self.limit, self.used, self.hit = limit, 0, False
            self.stop.clear()

    def add(self, n: int) -> None:
        with self._lock:
            self.used += n
            if self.used >= self.limit and not self.hit:
                self.hit = True
                self.stop.set()


class _MeteredResponse:
    def __init__(self, resp: Any, meter: Meter) -> None:
        self._resp, self._meter = resp, meter

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._resp.read(n)
        self._meter.add(len(data))
        return data

    def close(self) -> None:
        self._resp.close()


class MeteredOpener:
    """Wraps speedtest-cli's URL opener: counts what downloads read and what uploads send.

    The library opens every test request with ``opener.open(request)``; an upload's body is
    its ``HTTPUploaderData``, read by http.client in chunks while sending.
    """

    def __init__(self, opener: Any, meter: Meter) -> None:
        self._opener, self._meter = opener, meter

    def open(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        body = getattr(request, "data", None)
        if body is not None and hasattr(body, "total"):  # an upload: count as it is sent
            inner = body.read

            def read(n: int = 10240) -> bytes:
                chunk: bytes = inner(n)
                self._meter.add(len(chunk))
                return chunk

            body.read = read
            return self._opener.open(request, *args, **kwargs)
        return _MeteredResponse(self._opener.open(request, *args, **kwargs), self._meter)


def _reason(e: BaseException) -> tuple[str, str]:
    """(result, one-line reason) for a speedtest-cli failure."""
    msg = " ".join(str(e).split()) or type(e).__name__
    name = type(e).__name__
    if name in ("ConfigRetrievalError", "SpeedtestHTTPError") or isinstance(e, OSError):
        return (
            "unreachable",
            f"speedtest: cannot reach {CONFIG_HOST} for its configuration (offline or "
            f"blocked): {msg}",
        )
    if name in ("NoMatchedServers", "InvalidServerIDType"):
        return "error", f"speedtest: server id not offered by speedtest.net: {msg}"
    if name in ("SpeedtestBestServerFailure", "ServersRetrievalError"):
        return "unreachable", f"speedtest: no speedtest.net server reachable: {msg}"
    return "error", f"speedtest: {name}: {msg}"


def _blocking(spec: Spec, cap: int) -> tuple[dict[str, Any], dict[str, bool]]:
    """Run speedtest-cli; (its results, which directions the byte cap stopped)."""
    import speedtest  # optional backend: imported only when used

    stop = _Stop()
    st = speedtest.Speedtest(secure=True, timeout=spec.timeout_s, shutdown_event=stop)
    st.get_servers([spec.server_id] if spec.server_id else [])
    st.get_best_server()
    meter = Meter(stop)
    st._opener = MeteredOpener(st._opener, meter)  # every test request goes through it
    capped: dict[str, bool] = {}
    dirs = [d for d in ("down", "up") if spec.direction in (d, "both")]
    used = 0
    for i, d in enumerate(dirs):
        share = (cap - used) // (len(dirs) - i)
        threads = spec.threads or 8
        if share <= CHUNK * threads:
            capped[d] = True  # no room: recorded as budget_exceeded
            continue
        meter.start(share - CHUNK * threads)  # each thread may read one more chunk
        if d == "down":
            st.download(threads=spec.threads)
        else:
            st.upload(threads=spec.threads, pre_allocate=False)
        used += meter.used
        capped[d] = meter.hit
    res: dict[str, Any] = st.results.dict()
    return res, capped


def to_records(
    res: dict[str, Any],
    spec: Spec,
    tags: dict[str, str],
    capped: dict[str, bool] | None = None,
) -> list[Record]:
    """Pure: speedtest-cli ``results.dict()`` (and the directions the cap stopped) -> records."""
    srv = res.get("server") or {}
    base = {**tags, "method": "speedtest", "target": str(srv.get("id") or spec.server_id or "auto")}
    capped = capped or {}
    out = []
    for d, key, bkey in (("down", "download", "bytes_received"), ("up", "upload", "bytes_sent")):
        if spec.direction not in (d, "both"):
            continue
        if capped.get(d) and not res.get(bkey):
            out.append(
                failure(
                    "throughput",
                    {**base, "direction": d},
                    "budget_exceeded",
                    f"speedtest: no room left in the byte cap for the {d} test",
                )
            )
            continue
        fields: dict[str, Any] = {
            "goodput_mbps": float(res.get(key) or 0.0) / 1e6,
            "bytes": int(res.get(bkey) or 0),
            "rtt_idle_ms": float(res["ping"]) if res.get("ping") else None,
            "streams": spec.threads,
            "byte_capped": capped.get(d, False),
        }
        out.append(Record("throughput", {**base, "direction": d, "result": "ok"}, fields))
    return out


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Ookla speedtest.net via speedtest-cli (optional backend; personal-use terms apply)."""
    tags = {**ctx.tags, "method": "speedtest", "target": str(spec.server_id or "auto")}
    try:
        import speedtest  # noqa: F401
    except ImportError:
        return [
            failure(
                "throughput", tags, "error", "speedtest: the speedtest-cli package is not installed"
            )
        ]
    cap = budget.test_cap_bytes(ctx, spec.max_mb)
    try:
        res, capped = await asyncio.to_thread(_blocking, spec, cap)
    except (TimeoutError, Exception) as e:  # speedtest-cli raises many kinds
        # one failed measurement for the whole test (it failed before either direction ran)
        result, reason = _reason(e)
        return [failure("throughput", tags, result, reason)]
    return to_records(res, spec, ctx.tags, capped)


PLUGIN = Plugin(
    kind="probe",
    name="speedtest",
    spec=Spec,
    run=run,
    measurement="throughput",
    method="speedtest",
    summary="Ookla speedtest.net via speedtest-cli (personal-use terms; needs the internet).",
    heavy=True,
    interval_s=21600.0,
    traffic=budget.tcp_bytes_traffic,
    fields=(
        Metric("goodput_mbps", "Mbit/s", "the rate speedtest-cli reports (bytes over the "
               "direction's time)"),
        Metric("bytes", "bytes", "bytes received (down) or sent (up)"),
        Metric("rtt_idle_ms", "ms", "speedtest-cli's ping to the server before the test"),
        Metric("streams", "threads", "parallel HTTP requests, when set"),
        Metric("byte_capped", "bool", "the per-test byte cap stopped this direction early"),
    ),
)  # fmt: skip
