"""Probe "iperf3": run ``iperf3 -J`` against an iperf3 server and map the result to records.

``iperf3 -c HOST -p PORT -J -t DURATION -P STREAMS [-R] [-u -b RATE]`` runs as an asyncio
subprocess; ``-R`` (reverse: the server sends) is the site's download. iperf3 exits 0 even when
the test failed and puts the reason in the JSON ``error`` key: that becomes a failed record
(``refused``, ``unreachable``, ``timeout`` or ``error``) with iperf3's text as the reason.

Records (measurement ``throughput``; tags: site, icb, tech, target, method (``iperf3`` for TCP,
``iperf3_udp`` for UDP), direction (down|up), result):

=================  =====  ==============================================================
field              type   meaning
=================  =====  ==============================================================
goodput_mbps       float  receiver's rate (``end.sum_received`` for TCP, ``end.sum`` for
                          UDP), Mbit/s (1e6)
bytes              int    bytes the sender sent (what the test cost)
duration_s         float  test duration reported by iperf3, seconds
streams            int    parallel streams (``-P``)
retransmits        int    TCP only, forward (up) tests only: sender retransmits
rtt_loaded_ms      float  TCP up only: mean of the streams' ``mean_rtt`` (TCP_INFO smoothed
                          RTT during the transfer)
loss_pct           float  UDP only: ``lost_percent``
jitter_rfc3550_ms  float  UDP only: iperf3's ``jitter_ms`` (RFC 1889/3550 smoothed
                          interarrival jitter, J += (|D| - J)/16)
=================  =====  ==============================================================

``parse`` is pure (JSON text in, one record out) and is tested on recorded iperf3 output.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import registry
from netready.inventory import split_hostport
from netready.records import Record, failure

DEFAULT_PORT = 5201


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(description="iperf3 server HOST[:PORT] (default port 5201)")
    direction: Literal["down", "up", "both"] = "both"
    protocol: Literal["tcp", "udp"] = "tcp"
    duration_s: float = Field(10.0, ge=1, le=300)
    streams: int = Field(1, ge=1, le=128)
    bitrate_mbps: float | None = Field(
        None, gt=0, le=100_000, description="target rate (-b); UDP default 1 Mbit/s"
    )
    omit_s: float = Field(0.0, ge=0, le=60, description="discard the first seconds (-O)")
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    binary: str = "iperf3"

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v, DEFAULT_PORT)
        return v


def argv(spec: Spec, direction: str) -> list[str]:
    host, port = split_hostport(spec.target, DEFAULT_PORT)
    a = [
        spec.binary,
        "-c",
        host,
        "-p",
        str(port),
        "-J",
        "-t",
        f"{spec.duration_s:g}",
        "-P",
        str(spec.streams),
        "--connect-timeout",
        str(int(spec.connect_timeout_s * 1000)),
    ]
    if direction == "down":
        a.append("-R")
    if spec.protocol == "udp":
        a.append("-u")
    if spec.bitrate_mbps:
        a += ["-b", f"{spec.bitrate_mbps * 1e6:.0f}"]
    if spec.omit_s:
        a += ["-O", f"{spec.omit_s:g}"]
    return a


def _error_result(err: str) -> str:
    e = err.lower()
    if "refused" in e or "server is busy" in e:
        return "refused"
    if "timed out" in e or "timeout" in e:
        return "timeout"
    if any(s in e for s in ("no route", "unreachable", "name or service", "not known", "resolve")):
        return "unreachable"
    return "error"


def parse(
    text: str, direction: str, tags: dict[str, str] | None = None, time_ms: int | None = None
) -> Record:
    """One ``throughput`` record from iperf3 ``-J`` output (pure; no I/O)."""
    tags = dict(tags or {})
    try:
        d: dict[str, Any] = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("not an object")
    except ValueError:
        first = (text.strip().splitlines() or ["no output"])[0][:200]
        return failure(
            "throughput",
            {**tags, "method": "iperf3", "direction": direction},
            "error",
            f"iperf3 gave no JSON: {first}",
            time_ms,
        )
    ts = (d.get("start") or {}).get("test_start") or {}
    udp = str(ts.get("protocol", "")).upper() == "UDP"
    tags = {**tags, "method": "iperf3_udp" if udp else "iperf3", "direction": direction}
    err = d.get("error")
    if err:
        where = tags.get("target", "")
        return failure(
            "throughput",
            tags,
            _error_result(str(err)),
            f"iperf3 {where}: {err}".replace("  ", " "),
            time_ms,
        )
    end = d.get("end") or {}
    streams = len(end.get("streams") or []) or int(ts.get("num_streams", 0)) or None
    fields: dict[str, Any] = {"streams": streams}
    try:
        if udp:
            s = end.get("sum_received") or end["sum"]
            fields |= {
                "goodput_mbps": float(s["bits_per_second"]) / 1e6,
                "bytes": int((end.get("sum_sent") or s)["bytes"]),
                "duration_s": float(s["seconds"]),
                "loss_pct": float(s.get("lost_percent", 0.0)),
                "jitter_rfc3550_ms": float(end.get("sum", s).get("jitter_ms", 0.0)),
            }
        else:
            recv, sent = end["sum_received"], end["sum_sent"]
            fields |= {
                "goodput_mbps": float(recv["bits_per_second"]) / 1e6,
                "bytes": int(sent["bytes"]),
                "duration_s": float(recv["seconds"]),
            }
            if not ts.get("reverse"):  # we were the sender: our TCP_INFO is meaningful
                if "retransmits" in sent:
                    fields["retransmits"] = int(sent["retransmits"])
                rtts = [
                    st["sender"]["mean_rtt"]
                    for st in end.get("streams", [])
                    if st.get("sender", {}).get("mean_rtt")
                ]
                if rtts:
                    fields["rtt_loaded_ms"] = sum(rtts) / len(rtts) / 1000
    except (KeyError, TypeError, ValueError) as e:
        return failure("throughput", tags, "error", f"iperf3 JSON lacks end.{e}", time_ms)
    return Record(
        "throughput",
        {**tags, "result": "ok"},
        fields,
        **({"time_ms": time_ms} if time_ms is not None else {}),
    )


async def run_one(spec: Spec, direction: str, tags: dict[str, str]) -> Record:
    t = {**tags, "target": spec.target}
    if shutil.which(spec.binary) is None:
        return failure(
            "throughput",
            {**t, "method": "iperf3", "direction": direction},
            "error",
            f"{spec.binary} not found: install iperf3",
        )
    proc = await asyncio.create_subprocess_exec(
        *argv(spec, direction),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, errb = await asyncio.wait_for(
            proc.communicate(), spec.duration_s + spec.omit_s + spec.connect_timeout_s + 15
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return failure(
            "throughput",
            {**t, "method": "iperf3", "direction": direction},
            "timeout",
            f"iperf3 {spec.target}: no result in time; killed",
        )
    text = out.decode(errors="replace")
    if not text.strip():
        text = errb.decode(errors="replace") or f"exit {proc.returncode}"
    return parse(text, direction, t)


@registry.register("probe", "iperf3", Spec, heavy=True)
async def run(ctx: registry.Context, spec: Spec) -> list[Record]:
    """iperf3 -J against an iperf3 server (TCP both directions with -R, or UDP)."""
    dirs = ["down", "up"] if spec.direction == "both" else [spec.direction]
    return [await run_one(spec, d, ctx.tags) for d in dirs]


@click.command("iperf3")
@click.option("--target", required=True, metavar="HOST[:PORT]", help="iperf3 server.")
@click.option(
    "--direction", type=click.Choice(["down", "up", "both"]), default="both", show_default=True
)
@click.option("--udp", is_flag=True, help="UDP instead of TCP (set --bitrate-mbps).")
@click.option(
    "--duration",
    "duration_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds per direction.",
)
@click.option("--streams", type=int, default=1, show_default=True, help="Parallel streams (-P).")
@click.option("--bitrate-mbps", type=float, default=None, help="Target rate (-b), Mbit/s.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def iperf3_command(
    target: str,
    direction: str,
    udp: bool,
    duration_s: float,
    streams: int,
    bitrate_mbps: float | None,
    fmt: str,
) -> None:
    """Run iperf3 -J against an iperf3 server and print throughput records."""
    from netready.probes.throughput import run_cli

    run_cli(
        "iperf3",
        {
            "target": target,
            "direction": direction,
            "protocol": "udp" if udp else "tcp",
            "duration_s": duration_s,
            "streams": streams,
            "bitrate_mbps": bitrate_mbps,
        },
        fmt,
    )
