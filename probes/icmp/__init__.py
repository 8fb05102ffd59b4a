"""Probe "icmp": ICMP echo (ping) for targets that run no reflector, e.g. a video platform's edge.

Echo requests are built and replies parsed with scapy (only ``scapy.layers.inet``/``inet6``
are imported: ``scapy.all`` costs about a second); they travel on a raw socket of our own, so
the kernel timestamps each reply (``SO_TIMESTAMPNS``) and asyncio stays in charge. Requests go
out on a monotonic schedule, ``count`` of them every ``interval_s``; replies are matched by
identifier and sequence number.

Raw sockets need root or ``CAP_NET_RAW``. Without it the probe writes one failed record
(``result=error``, reason naming CAP_NET_RAW) instead of raising.

Record (measurement ``rtt``; tags: site, icb, tech, target, method=icmp, result):

======================  =====  ==========================================================
field                   type   meaning
======================  =====  ==========================================================
sent, received          int    echo requests sent; distinct replies received
duplicates              int    replies received more than once
loss_pct                float  100 * (sent - received) / sent
rtt_min/p50/p95/max_ms  float  request sent -> reply received (kernel timestamp), our clock
rtt_mean_ms             float
jitter_rfc3550_ms       float  RFC 3550 interarrival jitter of the replies (final value)
ipdv_p95_ms             float  95th percentile of |IPDV| (RFC 3393) of RTTs, by sequence
duration_s              float  send duration
======================  =====  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import stats
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
NO_RAW = (
    "raw sockets are not permitted: the icmp probe needs root or CAP_NET_RAW "
    "(e.g. setcap cap_net_raw+ep on the Python binary, or AmbientCapabilities=CAP_NET_RAW)"
)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(description="host name or IP address (no port); IPv6 bare or [bracketed]")
    count: int = Field(20, ge=1, le=100_000, description="echo requests to send")
    interval_s: float = Field(
        0.2,
        ge=0.001,
        le=60,
        description="seconds between requests",
        json_schema_extra={"cli": "--interval"},
    )
    timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="seconds to wait for late replies",
        json_schema_extra={"cli": "--timeout"},
    )
    size: int = Field(56, ge=8, le=1472, description="ICMP payload bytes")
    dscp: int = Field(0, ge=0, le=63, description="DSCP to mark the requests with")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        v = v.strip()
        if v.startswith("[") and v.endswith("]"):  # [2001:db8::1], as HOST:PORT targets write it
            v = v[1:-1]
        if not v or any(c in v for c in " /[]") or v.count(":") == 1:
            raise ValueError(f"{v!r}: give a host name or IP address without a port")
        return v


def summarise(
    send_ns: dict[int, int], replies: list[tuple[int, int]], sent: int, duration_s: float
) -> dict[str, Any]:
    """Fields from send times (seq -> ns) and replies (seq, recv ns) in arrival order. Pure."""
    first: dict[int, int] = {}
    order: list[int] = []
    dup = 0
    for seq, t in replies:
        if seq not in send_ns:
            continue
        if seq in first:
            dup += 1
            continue
        first[seq] = t
        order.append(seq)
    out: dict[str, Any] = {
        "sent": sent,
        "received": len(first),
        "duplicates": dup,
        "loss_pct": 100.0 * (sent - len(first)) / sent if sent else None,
        "duration_s": float(duration_s),
    }
    if not first:
        return out
    rtts = [(first[s] - send_ns[s]) / 1e6 for s in sorted(first)]
    out.update(
        rtt_min_ms=min(rtts),
        rtt_max_ms=max(rtts),
        rtt_mean_ms=sum(rtts) / len(rtts),
        rtt_p50_ms=stats.percentile(rtts, 50),
        rtt_p95_ms=stats.percentile(rtts, 95),
    )
    j, _ = stats.rfc3550_jitter([send_ns[s] / 1e6 for s in order], [first[s] / 1e6 for s in order])
    out["jitter_rfc3550_ms"] = j
    ip = [abs(x) for x in stats.ipdv(rtts)]
    out["ipdv_p95_ms"] = stats.percentile(ip, 95)
    return out


def _open(family: int, dscp: int) -> socket.socket:
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    s = socket.socket(family, socket.SOCK_RAW, proto)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if dscp:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
    return s


async def measure(spec: Spec) -> tuple[dict[str, Any], str | None, str | None]:
    """(fields, failure result or None, reason)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.target, None, type=socket.SOCK_RAW)
    except socket.gaierror as e:
        return {}, "unreachable", f"cannot resolve {spec.target}: {e.strerror}"
    fam, _, _, _, addr = infos[0]
    try:
        sock = _open(fam, spec.dscp)
    except PermissionError:
        return {}, "error", NO_RAW
    if fam == socket.AF_INET6:
        from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest

        def build(ident: int, seq: int, payload: bytes) -> bytes:
            return bytes(ICMPv6EchoRequest(id=ident, seq=seq, cksum=0) / payload)

        def parse(data: bytes) -> tuple[int, int] | None:
            if not data or data[0] != 129:  # the kernel strips the IPv6 header
                return None
            p = ICMPv6EchoReply(data)
            return int(p.id), int(p.seq)
    else:
        from scapy.layers.inet import ICMP, IP

        def build(ident: int, seq: int, payload: bytes) -> bytes:
            return bytes(ICMP(type=8, id=ident, seq=seq) / payload)

        def parse(data: bytes) -> tuple[int, int] | None:
            p = IP(data)
            if ICMP not in p or p[ICMP].type != 0:
                return None
            return int(p[ICMP].id), int(p[ICMP].seq)

    ident = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0xFFFF
    offset = time.time_ns() - time.monotonic_ns()
    send_ns: dict[int, int] = {}
    replies: list[tuple[int, int]] = []
    errors: list[str] = []
    payload = bytes(spec.size)

    def on_readable() -> None:
        for _ in range(256):
            try:
                data, anc, _f, src = sock.recvmsg(4096, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                errors.append(e.strerror or str(e))
                return
            recv = None
            for level, typ, cd in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(cd) >= 16:
                    sec, nsec = struct.unpack("qq", cd[:16])
                    recv = sec * 1_000_000_000 + nsec - offset
            now = time.monotonic_ns()
            if recv is None or abs(now - recv) > 1_000_000_000:
                recv = now
            try:
                ok = ipaddress.ip_address(str(src[0]).split("%")[0]) == ipaddress.ip_address(
                    str(addr[0]).split("%")[0]
                )
                got = parse(data) if ok else None
            except Exception:  # a packet scapy cannot dissect is not ours
                got = None
            if got is not None and got[0] == ident:
                replies.append((got[1], recv))

    loop.add_reader(sock.fileno(), on_readable)
    try:
        t0 = time.monotonic_ns()
        step = int(spec.interval_s * 1e9)
        for seq in range(spec.count):
            due = t0 + seq * step
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            pkt = build(ident, seq & 0xFFFF, payload)
            send_ns[seq & 0xFFFF] = time.monotonic_ns()
            try:
                sock.sendto(pkt, addr)
            except OSError as e:
                errors.append(e.strerror or str(e))
        duration_s = (time.monotonic_ns() - t0) / 1e9
        deadline = loop.time() + spec.timeout_s
        while loop.time() < deadline and len({s for s, _ in replies}) < spec.count:
            await asyncio.sleep(0.01)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(sock.fileno())
        sock.close()
    fields = summarise(send_ns, replies, spec.count, duration_s)
    if fields["received"] == 0:
        why = f" ({errors[-1]})" if errors else ""
        return (
            fields,
            "timeout",
            (
                f"no echo reply from {spec.target} to {spec.count} requests "
                f"in {duration_s + spec.timeout_s:.1f} s{why}"
            ),
        )
    return fields, None, None


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """ICMP echo round trips (scapy packets on a raw socket): RTT, RFC 3550 jitter, loss."""
    tags = {**ctx.tags, "target": spec.target, "method": "icmp"}
    t = now_ms()
    fields, result, reason = await measure(spec)
    if result is not None:
        return [failure("rtt", tags, result, reason or result, t, **fields)]
    return [Record("rtt", {**tags, "result": "ok"}, fields, t)]


PLUGIN = Plugin(
    kind="probe",
    name="icmp",
    spec=Spec,
    run=run,
    measurement="rtt",
    method="icmp",
    summary="ICMP echo for targets that run no reflector (needs root or CAP_NET_RAW): RTT, "
    "RFC 3550 jitter, loss.",
    interval_s=300.0,
    fields=(
        Metric("sent", "packets", "echo requests sent"),
        Metric("received", "packets", "distinct replies received"),
        Metric("duplicates", "packets", "replies received more than once"),
        Metric("loss_pct", "%", "100 x (sent - received) / sent"),
        Metric("rtt_min_ms", "ms", "smallest round trip: request sent -> reply received "
               "(kernel timestamp), our clock"),
        Metric("rtt_p50_ms", "ms", "median round trip"),
        Metric("rtt_p95_ms", "ms", "95th percentile round trip"),
        Metric("rtt_max_ms", "ms", "largest round trip"),
        Metric("rtt_mean_ms", "ms", "mean round trip"),
        Metric("jitter_rfc3550_ms", "ms", "RFC 3550 interarrival jitter of the replies "
               "(final value)"),
        Metric("ipdv_p95_ms", "ms", "95th percentile of |IPDV| (RFC 3393) of RTTs, by sequence"),
        Metric("duration_s", "s", "send duration"),
    ),
)  # fmt: skip
