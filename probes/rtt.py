"""Probe "rtt": isochronous UDP round trips in TWAMP-light format (RFC 5357 test packets).

Sends ``rate_pps`` packets/s for ``duration_s`` seconds to a TWAMP-light reflector
(``netready reflector`` or a router's own), then waits ``timeout_s`` for stragglers.
Writes one record per ``window_s`` (default 15 s, the window the quality targets are defined
over) of sending, stamped at the window's start; a run shorter than a window gives one record.

Record (measurement ``rtt``; tags: site, icb, tech, target, method=twamp_light, result):

======================  =====  ==========================================================
field                   type   meaning
======================  =====  ==========================================================
sent, received          int    test packets sent; distinct replies received
duplicates              int    replies received more than once
loss_pct                float  100 * (sent - received) / sent
rtt_min/p50/p95/max_ms  float  round trip on the sender's monotonic clock, less the
                               reflector's turnaround time
rtt_mean_ms             float
jitter_rfc3550_ms       float  RFC 3550 interarrival jitter of the round-trip times
                               (D = RTT_i - RTT_{i-1}, J += (|D| - J)/16), final value
jitter_up_rfc3550_ms    float  same, forward path (sender ts -> reflector rx ts)
jitter_down_rfc3550_ms  float  same, return path (reflector tx ts -> our rx time)
ipdv_p95_ms             float  95th percentile of |IPDV| (RFC 3393) of RTTs, by sequence
burst_loss_200ms_pct    float  worst loss over 200 ms windows of send time
reorder_pct             float  replies that arrived after a later-sent one
duration_s              float  send duration
======================  =====  ==========================================================

A reflector that never answers gives ``result=timeout``; a refused port (ICMP unreachable)
``result=refused``; an unresolvable name or an address with no route ``result=unreachable``.
IPv4 and IPv6 (``[2001:db8::1]:862``, ``[fe80::1%eth0]:862``).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from netready.probes import twamp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import stats
from netready.inventory import split_hostport
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(
        description="TWAMP-light reflector HOST:PORT or [IPv6]:PORT (default port 862)"
    )
    duration_s: float = Field(
        15.0, gt=0, le=3600, description="seconds of sending", json_schema_extra={"cli": "--duration"}
    )
    rate_pps: float = Field(
        50.0, gt=0, le=10_000, description="packets per second", json_schema_extra={"cli": "--rate"}
    )
    size: int = Field(
        twamp.REFLECT_MIN,
        ge=twamp.REFLECT_MIN,
        le=1472,
        description="UDP payload bytes (>= 41 so the reply can be symmetric)",
    )
    timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds to wait for late replies",
        json_schema_extra={"cli": "--timeout"},
    )
    dscp: int = Field(0, ge=0, le=63, description="DSCP to mark packets with (46 for EF)")
    window_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="one record per window of sending, seconds (the quality targets use 15)",
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v, 862)
        return v


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply as received: sender seq, our monotonic rx time (s), the reflected packet."""

    seq: int
    rx_mono: float
    rx_wall_ntp: int
    pkt: twamp.ReflectedPacket


def summarise(
    send_mono: Sequence[float], replies: Sequence[Reply], duration_s: float
) -> dict[str, float | int]:
    """Pure statistics of one run. ``send_mono[i]`` is when seq i was sent (monotonic s)."""
    sent = len(send_mono)
    first: dict[int, Reply] = {}
    dup = 0
    order: list[int] = []
    for r in replies:
        if r.seq >= sent:
            continue  # not ours
        if r.seq in first:
            dup += 1
            continue
        first[r.seq] = r
        order.append(r.seq)
    received = len(first)
    out: dict[str, float | int] = {
        "sent": sent,
        "received": received,
        "duplicates": dup,
        "loss_pct": 100.0 * (sent - received) / sent if sent else 0.0,
        "duration_s": duration_s,
    }
    if not received:
        return out
    by_seq = sorted(first)
    rtts = []
    for s in by_seq:
        r = first[s]
        turnaround = twamp.ntp_to_s(r.pkt.timestamp) - twamp.ntp_to_s(r.pkt.receive_ts)
        rtt = (r.rx_mono - send_mono[s]) - max(0.0, turnaround)
        rtts.append(rtt * 1000.0)
    out.update(
        rtt_min_ms=min(rtts),
        rtt_max_ms=max(rtts),
        rtt_mean_ms=sum(rtts) / len(rtts),
        rtt_p50_ms=stats.percentile(rtts, 50) or 0.0,
        rtt_p95_ms=stats.percentile(rtts, 95) or 0.0,
    )
    arrival = [first[s] for s in order]
    j, _ = stats.rfc3550_jitter(
        [send_mono[r.seq] * 1000 for r in arrival], [r.rx_mono * 1000 for r in arrival]
    )
    ju, _ = stats.rfc3550_jitter(
        [twamp.ntp_to_s(r.pkt.sender_ts) * 1000 for r in arrival],
        [twamp.ntp_to_s(r.pkt.receive_ts) * 1000 for r in arrival],
    )
    jd, _ = stats.rfc3550_jitter(
        [twamp.ntp_to_s(r.pkt.timestamp) * 1000 for r in arrival],
        [twamp.ntp_to_s(r.rx_wall_ntp) * 1000 for r in arrival],
    )
    if j is not None:
        out["jitter_rfc3550_ms"] = j
    if ju is not None:
        out["jitter_up_rfc3550_ms"] = ju
    if jd is not None:
        out["jitter_down_rfc3550_ms"] = jd
    ip = [abs(x) for x in stats.ipdv(rtts)]
    if ip:
        out["ipdv_p95_ms"] = stats.percentile(ip, 95) or 0.0
    out["burst_loss_200ms_pct"] = (
        stats.worst_window_loss_pct(send_mono, [i in first for i in range(sent)], 0.2) or 0.0
    )
    out["reorder_pct"] = stats.reorder_pct(order) or 0.0
    return out


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        try:
            pkt = twamp.unpack_reflected(data)
        except ValueError:
            return
        self.replies.append(Reply(pkt.sender_seq, now, twamp.ntp_now(), pkt))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.error = exc


@dataclass
class Trace:
    """Everything one run observed: send times by sequence number and the replies."""

    send_mono: list[float]
    replies: list[Reply]
    sent_for: float
    error: OSError | None = None


def windows(trace: Trace, window_s: float) -> list[tuple[float, dict[str, float | int]]]:
    """Statistics per ``window_s`` of send time: [(offset_s, fields), ...].

    Quality targets (loss, jitter) are defined over 15 s windows, so a 60 s run gives four
    records; a run shorter than one window gives one record over the whole run.
    """
    send = trace.send_mono
    if not send:
        return []
    t0 = send[0]
    bounds: list[int] = [0]
    for i, t in enumerate(send):
        if t - t0 >= window_s * len(bounds):
            bounds.append(i)
    # a trailing fragment shorter than half a window joins the previous window
    if len(bounds) > 1 and send[-1] - send[bounds[-1]] < window_s / 2:
        bounds.pop()
    bounds.append(len(send))
    out = []
    for a, b in itertools.pairwise(bounds):
        reps = [
            Reply(r.seq - a, r.rx_mono, r.rx_wall_ntp, r.pkt)
            for r in trace.replies
            if a <= r.seq < b
        ]
        dur = (send[b - 1] - send[a]) + (trace.sent_for / len(send))
        out.append((send[a] - t0, summarise(send[a:b], reps, dur)))
    return out


async def measure(spec: Spec) -> Trace | tuple[str, str]:
    """Run one measurement: the raw trace, or (failure result, reason) if it could not start."""
    host, port = split_hostport(spec.target, 862)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        return "unreachable", f"cannot resolve {host}: {e.strerror}"
    fam, _, _, _, addr = infos[0]
    # Our own connected socket: asyncio's remote_addr takes only (host, port), but an IPv6
    # address from getaddrinfo is (host, port, flowinfo, scope_id).
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(addr)
    except OSError as e:
        sock.close()
        return "unreachable", f"cannot reach {spec.target}: {e.strerror or e}"
    transport, proto = await loop.create_datagram_endpoint(_Proto, sock=sock)
    try:
        if spec.dscp:
            if fam == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, spec.dscp << 2)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, spec.dscp << 2)
        n = max(1, round(spec.duration_s * spec.rate_pps))
        interval = 1.0 / spec.rate_pps
        send_mono: list[float] = []
        t0 = time.monotonic()
        for seq in range(n):
            deadline = t0 + seq * interval
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            send_mono.append(time.monotonic())
            transport.sendto(twamp.pack_sender(seq, twamp.ntp_now(), spec.size))
        sent_for = time.monotonic() - t0
        # Wait for stragglers: stop early once everything is back.
        end = time.monotonic() + spec.timeout_s
        while time.monotonic() < end and len({r.seq for r in proto.replies}) < n:
            await asyncio.sleep(0.02)
    finally:
        transport.close()
    return Trace(send_mono, proto.replies, sent_for, proto.error)


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Isochronous UDP round trips to a TWAMP-light reflector: RTT, jitter, loss, reorder.

    One record per ``window_s`` (15 s) of sending; a failure (nothing came back) is one record.
    """
    tags = {**ctx.tags, "target": spec.target, "method": "twamp_light"}
    t_start = int(time.time() * 1000)
    trace = await measure(spec)
    if isinstance(trace, tuple):
        return [failure("rtt", tags, trace[0], trace[1], t_start)]
    if not trace.replies:
        whole = summarise(trace.send_mono, [], trace.sent_for)
        if trace.error is not None and getattr(trace.error, "errno", None) == 111:
            return [
                failure(
                    "rtt",
                    tags,
                    "refused",
                    f"{spec.target}: port unreachable (no reflector listening)",
                    t_start,
                    **whole,
                )
            ]
        return [
            failure(
                "rtt",
                tags,
                "timeout",
                f"no reply from {spec.target} to {len(trace.send_mono)} packets in "
                f"{trace.sent_for + spec.timeout_s:.1f} s",
                t_start,
                **whole,
            )
        ]
    return [
        Record("rtt", tags, fields, t_start + int(offset * 1000))
        for offset, fields in windows(trace, spec.window_s)
    ]


PLUGIN = Plugin(
    kind="probe",
    name="rtt",
    spec=Spec,
    run=run,
    measurement="rtt",
    method="twamp_light",
    summary="Isochronous UDP round trips to a TWAMP-light reflector: RTT, RFC 3550 jitter, "
    "IPDV, loss, burst loss, reorder.",
    interval_s=300.0,
    fields=(
        Metric("sent", "packets", "test packets sent"),
        Metric("received", "packets", "distinct replies received"),
        Metric("duplicates", "packets", "replies received more than once"),
        Metric("loss_pct", "%", "100 x (sent - received) / sent"),
        Metric(
            "rtt_min_ms",
            "ms",
            "smallest round trip on the sender's monotonic clock, less the reflector's "
            "turnaround time",
        ),
        Metric("rtt_p50_ms", "ms", "median round trip (as rtt_min_ms)"),
        Metric("rtt_p95_ms", "ms", "95th percentile round trip"),
        Metric("rtt_max_ms", "ms", "largest round trip"),
        Metric("rtt_mean_ms", "ms", "mean round trip"),
        Metric(
            "jitter_rfc3550_ms",
            "ms",
            "RFC 3550 interarrival jitter of the round-trip times (D = RTT_i - RTT_i-1, "
            "J += (|D| - J)/16), final value",
        ),
        Metric(
            "jitter_up_rfc3550_ms",
            "ms",
            "the same on the forward path (sender timestamp -> reflector receive timestamp)",
        ),
        Metric(
            "jitter_down_rfc3550_ms",
            "ms",
            "the same on the return path (reflector send timestamp -> our receive time)",
        ),
        Metric("ipdv_p95_ms", "ms", "95th percentile of |IPDV| (RFC 3393) of RTTs, by sequence"),
        Metric("burst_loss_200ms_pct", "%", "worst loss over 200 ms windows of send time"),
        Metric("reorder_pct", "%", "replies that arrived after a later-sent one"),
        Metric("duration_s", "s", "send duration of the window"),
    ),
)
