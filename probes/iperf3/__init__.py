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
byte_capped        bool   TCP only: the per-test byte cap paced the sender (-b) and the
                          receiver got about that pace: the figure is the cap's rate,
                          not the line's capacity
retransmits        int    TCP only, forward (up) tests only: sender retransmits
rtt_loaded_ms      float  TCP up only: mean of the streams' ``mean_rtt`` (TCP_INFO smoothed
                          RTT during the transfer)
loss_pct           float  UDP only: ``lost_percent``
jitter_rfc3550_ms  float  UDP only: iperf3's ``jitter_ms`` (RFC 1889/3550 smoothed
                          interarrival jitter, J += (|D| - J)/16)
=================  =====  ==============================================================

Byte cap (heavy probe, ``netready.budget``): iperf3 takes one end condition only (``-t``, ``-n``
or ``-k``), so a time-limited test cannot also stop at a byte count. A UDP test's bytes are
known in advance (its rate times its time: the plugin's ``cost``), and the budget refuses one
over the cap before it starts. A TCP test is paced instead: ``-b`` per stream is set so that
the whole direction stays within its share of the cap (less two 128 KiB send blocks per
stream, what iperf3's pacing may overshoot); a line slower than that pace is measured as
before, a faster one is reported at the pace with ``byte_capped=true``.

``parse`` is pure (JSON text in, one record out) and is tested on recorded iperf3 output.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import budget
from netready.inventory import split_hostport
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure

DEFAULT_PORT = 5201
#: iperf3's TCP send block (-l default, 128 KiB). Its pacing sends whole blocks while the
#: average rate is below -b, so a stream sends more than rate x time: up to one block in
#: measurements on loopback (iperf3 3.12, -b 1-8 Mbit/s, 2-4 s); two are kept free.
TCP_BLOCK = 128 * 1024
TCP_OVERSHOOT_BLOCKS = 2
#: UDP default rate when no -b is given (iperf3's own default), bit/s.
UDP_DEFAULT_BPS = 1_000_000
#: IPv4 + UDP headers per datagram (1,448-byte default payload), counted against the cap.
UDP_OVERHEAD = 1 + 28 / 1448


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(description="iperf3 server HOST[:PORT] (default port 5201)")
    direction: Literal["down", "up", "both"] = Field(
        "both", description="down (-R: the server sends), up, or both one after the other"
    )
    protocol: Literal["tcp", "udp"] = Field(
        "tcp",
        description="tcp, or udp (-u; set bitrate_mbps)",
        json_schema_extra={"cli_flag": {"--udp": "udp"}},
    )
    duration_s: float = Field(
        10.0,
        ge=1,
        le=300,
        description="seconds per direction (-t)",
        json_schema_extra={"cli": "--duration"},
    )
    streams: int = Field(1, ge=1, le=128, description="parallel streams (-P)")
    bitrate_mbps: float | None = Field(
        None, gt=0, le=100_000, description="target rate per stream (-b), Mbit/s; UDP default 1"
    )
    omit_s: float = Field(0.0, ge=0, le=60, description="discard the first seconds (-O)")
    connect_timeout_s: float = Field(
        5.0, gt=0, le=60, description="seconds to set up the control connection (--connect-timeout)"
    )
    binary: str = Field("iperf3", description="the iperf3 program to run")
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap for the whole test, MB (1e6); default: the site's budget.test_mb",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v, DEFAULT_PORT)
        return v


def argv(spec: Spec, direction: str, pace_mbps: float | None = None) -> list[str]:
    """iperf3's command line; ``pace_mbps``: a TCP rate per stream that keeps the byte cap."""
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
    rate = (
        min(x for x in (spec.bitrate_mbps, pace_mbps) if x)
        if spec.bitrate_mbps or pace_mbps
        else None
    )
    if rate:
        a += ["-b", f"{rate * 1e6:.0f}"]
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


def cost(spec: Spec) -> float | None:
    """Bytes a UDP test sends at most (rate x time x streams x directions, with headers);
    ``None`` for TCP, which is paced to the cap instead (``tcp_pace_mbps``)."""
    if spec.protocol != "udp":
        return None
    bps = (spec.bitrate_mbps * 1e6) if spec.bitrate_mbps else UDP_DEFAULT_BPS
    dirs = 2 if spec.direction == "both" else 1
    return bps / 8 * (spec.duration_s + spec.omit_s) * spec.streams * dirs * UDP_OVERHEAD


def tcp_pace_mbps(spec: Spec, cap_bytes: int) -> float:
    """The rate per stream (Mbit/s) at which one direction's TCP test stays within
    ``cap_bytes``: what iperf3 may overshoot (two send blocks per stream) comes off first."""
    room = cap_bytes - spec.streams * TCP_BLOCK * TCP_OVERSHOOT_BLOCKS
    return max(0.0, room * 8 / (spec.duration_s + spec.omit_s) / spec.streams / 1e6)


async def run_one(
    spec: Spec, direction: str, tags: dict[str, str], pace_mbps: float | None = None
) -> Record:
    t = {**tags, "target": spec.target}
    if shutil.which(spec.binary) is None:
        return failure(
            "throughput",
            {**t, "method": "iperf3", "direction": direction},
            "error",
            f"{spec.binary} not found: install iperf3",
        )
    proc = await asyncio.create_subprocess_exec(
        *argv(spec, direction, pace_mbps),
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
    rec = parse(text, direction, t)
    paced = pace_mbps is not None and (not spec.bitrate_mbps or pace_mbps < spec.bitrate_mbps)
    goodput = rec.fields.get("goodput_mbps")
    if rec.ok and paced and isinstance(goodput, float) and pace_mbps is not None:
        capped = goodput >= 0.9 * pace_mbps * spec.streams
        rec = Record(rec.measurement, rec.tags, {**rec.fields, "byte_capped": capped}, rec.time_ms)
    return rec


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """iperf3 -J against an iperf3 server (TCP both directions with -R, or UDP), within the
    per-test byte cap (UDP: admitted by its ``cost``; TCP: paced to the cap)."""
    dirs = ["down", "up"] if spec.direction == "both" else [spec.direction]
    cap = budget.test_cap_bytes(ctx, spec.max_mb)
    out: list[Record] = []
    used = 0
    for i, d in enumerate(dirs):
        share = (cap - used) // (len(dirs) - i)  # what is left, shared by the directions left
        pace = None
        if spec.protocol == "tcp":
            pace = tcp_pace_mbps(spec, share)
            if pace < 0.01:
                out.append(
                    failure(
                        "throughput",
                        {**ctx.tags, "target": spec.target, "method": "iperf3", "direction": d},
                        "budget_exceeded",
                        f"iperf3 {spec.target}: {share} bytes left of the byte cap cannot carry "
                        f"{spec.streams} stream(s) for {spec.duration_s:g} s",
                    )
                )
                continue
        rec = await run_one(spec, d, ctx.tags, pace)
        used += int(rec.fields.get("bytes", 0))
        out.append(rec)
    return out


PLUGIN = Plugin(
    kind="probe",
    name="iperf3",
    spec=Spec,
    run=run,
    measurement="throughput",
    method="iperf3",
    summary="iperf3 -J against an iperf3 server: goodput down (-R) and up, TCP or UDP.",
    heavy=True,
    cost=cost,
    interval_s=21600.0,
    traffic=budget.tcp_bytes_traffic,
    fields=(
        Metric("goodput_mbps", "Mbit/s", "the receiver's rate (end.sum_received for TCP, end.sum "
               "for UDP), Mbit/s (1e6)"),
        Metric("bytes", "bytes", "bytes the sender sent (what the test cost)"),
        Metric("duration_s", "s", "test duration reported by iperf3"),
        Metric("streams", "streams", "parallel streams (-P)"),
        Metric("byte_capped", "bool", "TCP: the byte cap paced the sender (-b) and the receiver "
               "got about that pace: the cap's rate, not the line's capacity"),
        Metric("retransmits", "segments", "TCP up only: sender retransmits"),
        Metric("rtt_loaded_ms", "ms", "TCP up only: mean of the streams' mean_rtt (TCP_INFO "
               "smoothed RTT during the transfer)"),
        Metric("loss_pct", "%", "UDP only: lost_percent"),
        Metric("jitter_rfc3550_ms", "ms", "UDP only: iperf3's jitter_ms (RFC 1889/3550 smoothed "
               "interarrival jitter, J += (|D| - J)/16)"),
    ),
)  # fmt: skip
