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
speedtest-cli's ping to the server before the test), ``streams`` (int, threads).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field

from netready import registry
from netready.records import Record, failure

CONFIG_HOST = "www.speedtest.net"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_id: int | None = Field(
        None, ge=1, description="speedtest.net server id; nearest if unset"
    )
    direction: Literal["down", "up", "both"] = "both"
    timeout_s: float = Field(10.0, gt=0, le=120, description="per HTTP request")
    threads: int | None = Field(None, ge=1, le=32)


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


def _blocking(spec: Spec) -> dict[str, Any]:
    import speedtest  # optional backend: imported only when used

    st = speedtest.Speedtest(secure=True, timeout=spec.timeout_s)
    st.get_servers([spec.server_id] if spec.server_id else [])
    st.get_best_server()
    if spec.direction in ("down", "both"):
        st.download(threads=spec.threads)
    if spec.direction in ("up", "both"):
        st.upload(threads=spec.threads, pre_allocate=False)
    return st.results.dict()


def to_records(res: dict[str, Any], spec: Spec, tags: dict[str, str]) -> list[Record]:
    """Pure: speedtest-cli ``results.dict()`` -> records."""
    srv = res.get("server") or {}
    base = {**tags, "method": "speedtest", "target": str(srv.get("id") or spec.server_id or "auto")}
    out = []
    for d, key, bkey in (("down", "download", "bytes_received"), ("up", "upload", "bytes_sent")):
        if spec.direction not in (d, "both"):
            continue
        fields: dict[str, Any] = {
            "goodput_mbps": float(res.get(key) or 0.0) / 1e6,
            "bytes": int(res.get(bkey) or 0),
            "rtt_idle_ms": float(res["ping"]) if res.get("ping") else None,
            "streams": spec.threads,
        }
        out.append(Record("throughput", {**base, "direction": d, "result": "ok"}, fields))
    return out


@registry.register("probe", "speedtest", Spec, heavy=True)
async def run(ctx: registry.Context, spec: Spec) -> list[Record]:
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
    try:
        res = await asyncio.to_thread(_blocking, spec)
    except (TimeoutError, Exception) as e:  # speedtest-cli raises many kinds
        # one failed measurement for the whole test (it failed before either direction ran)
        result, reason = _reason(e)
        return [failure("throughput", tags, result, reason)]
    return to_records(res, spec, ctx.tags)


@click.command("speedtest")
@click.option("--server-id", type=int, default=None, help="speedtest.net server id.")
@click.option(
    "--direction", type=click.Choice(["down", "up", "both"]), default="both", show_default=True
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds per HTTP request.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def speedtest_command(server_id: int | None, direction: str, timeout_s: float, fmt: str) -> None:
    """Ookla speedtest.net via speedtest-cli (personal-use terms; needs the internet)."""
    from netready.probes.throughput import run_cli

    run_cli(
        "speedtest", {"server_id": server_id, "direction": direction, "timeout_s": timeout_s}, fmt
    )
