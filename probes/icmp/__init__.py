"""Probe "icmp": ICMP echo (ping) for targets that run no reflector, e.g. a video platform's edge.

Two ways to send echo requests, tried in this order (``socket`` chooses one):

- a raw socket (root or ``CAP_NET_RAW``), requests built and replies parsed with scapy (only
  ``scapy.layers.inet``/``inet6``: ``scapy.all`` costs about a second; scapy is the
  ``raw-icmp`` extra);
- an unprivileged datagram ICMP socket (Linux: the user's group in
  ``net.ipv4.ping_group_range``, which ``deploy/99-netready-ping.conf`` sets; macOS: anyone):
  the kernel writes the identifier and checksum, ``wire.py`` the rest.

Either way the socket is our own, the kernel timestamps each reply where it can
(``SO_TIMESTAMPNS``, ``netready.platform``) and asyncio stays in charge. Requests go out on a
monotonic schedule, ``count`` of them every ``interval_s``; replies are matched by identifier
and sequence number.

With neither permitted the probe writes one failed record (``result=error``, reason naming
CAP_NET_RAW and ping_group_range) instead of raising.

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
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from netready.probes.icmp import wire
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import budget, platform, stats
from netready.errors import MissingExtra
from netready.optional import require
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

log = logging.getLogger("netready.probes.icmp")

NO_RAW = "a raw ICMP socket is not permitted (it needs root or CAP_NET_RAW)"
NO_DGRAM = (
    "a datagram ICMP socket is not permitted (Linux: add the user's group to "
    "net.ipv4.ping_group_range, e.g. deploy/99-netready-ping.conf)"
)
Kind = Literal["raw", "datagram"]
Build = Callable[[int, int, bytes], bytes]
Parse = Callable[[bytes], "tuple[int, int] | None"]


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
    socket: Literal["auto", "raw", "datagram"] = Field(
        "auto",
        description="auto: a raw socket where permitted (and scapy installed), else an "
        "unprivileged datagram one",
    )

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


def _raw_codec(family: int) -> tuple[Build, Parse]:
    """Build and parse for a raw socket, with scapy (``MissingExtra`` without it)."""
    if family == socket.AF_INET6:
        inet6 = require("scapy.layers.inet6", "the icmp probe's raw socket")
        request, reply = inet6.ICMPv6EchoRequest, inet6.ICMPv6EchoReply

        def build6(ident: int, seq: int, payload: bytes) -> bytes:
            return bytes(request(id=ident, seq=seq, cksum=0) / payload)

        def parse6(data: bytes) -> tuple[int, int] | None:
            if not data or data[0] != 129:  # the kernel strips the IPv6 header
                return None
            p = reply(data)
            return int(p.id), int(p.seq)

        return build6, parse6
    inet = require("scapy.layers.inet", "the icmp probe's raw socket")
    ICMP, IP = inet.ICMP, inet.IP

    def build4(ident: int, seq: int, payload: bytes) -> bytes:
        return bytes(ICMP(type=8, id=ident, seq=seq) / payload)

    def parse4(data: bytes) -> tuple[int, int] | None:
        p = IP(data)
        if ICMP not in p or p[ICMP].type != 0:
            return None
        return int(p[ICMP].id), int(p[ICMP].seq)

    return build4, parse4


def _datagram_codec(family: int) -> tuple[Build, Parse]:
    def build(ident: int, seq: int, payload: bytes) -> bytes:
        return wire.echo_request(family, seq, payload)  # the kernel writes the identifier

    def parse(data: bytes) -> tuple[int, int] | None:
        return wire.parse_echo_reply(family, data)

    return build, parse


def open_socket(
    family: int, want: str, dscp: int
) -> tuple[socket.socket, Kind, Build, Parse] | str:
    """An echo socket of the kind ``want`` asks for (``auto``: raw, else datagram) with its
    builder and parser, or why none could be opened (one line)."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    kinds: list[Kind] = ["raw", "datagram"] if want == "auto" else [want]  # type: ignore[list-item]
    why: list[str] = []
    for kind in kinds:
        try:
            build, parse = _raw_codec(family) if kind == "raw" else _datagram_codec(family)
        except MissingExtra as e:
            why.append(str(e))
            continue
        try:
            s = socket.socket(
                family, socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM, proto
            )
        except PermissionError:
            why.append(NO_RAW if kind == "raw" else NO_DGRAM)
            continue
        except OSError as e:  # e.g. no datagram ICMP on this OS
            why.append(f"a {kind} ICMP socket cannot be opened here: {e.strerror or e}")
            continue
        s.setblocking(False)
        platform.enable_rx_timestamps(s)
        if dscp and not platform.mark_dscp(s, family, dscp):
            log.info("icmp: DSCP %d not set: %s", dscp, platform.NOT_MEASURABLE)
        return s, kind, build, parse
    return "; ".join(why)


async def measure(spec: Spec) -> tuple[dict[str, Any], str | None, str | None]:
    """(fields, failure result or None, reason)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.target, None, type=socket.SOCK_RAW)
    except socket.gaierror as e:
        return {}, "unreachable", f"cannot resolve {spec.target}: {e.strerror}"
    fam, _, _, _, addr = infos[0]
    opened = open_socket(fam, spec.socket, spec.dscp)
    if isinstance(opened, str):
        return {}, "error", opened
    sock, kind, build, parse = opened
    # raw: our own identifier; datagram: the kernel's (the socket's port, once it has sent)
    ident = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0xFFFF
    offset = time.time_ns() - time.monotonic_ns()
    send_ns: dict[int, int] = {}
    replies: list[tuple[int, int]] = []
    errors: list[str] = []
    payload = bytes(spec.size)

    def on_readable() -> None:
        for _ in range(256):
            try:
                data, anc, _flags, src = platform.recv_ancillary(sock, 4096, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                errors.append(e.strerror or str(e))
                return
            recv = platform.monotonic_rx_ns(anc, offset)
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
            # yield even when behind: replies are read (and, without kernel timestamps,
            # stamped) only when the loop runs
            await asyncio.sleep(max(0, due - now) / 1e9)
            pkt = build(ident, seq & 0xFFFF, payload)
            send_ns[seq & 0xFFFF] = time.monotonic_ns()
            try:
                sock.sendto(pkt, addr)
            except OSError as e:
                errors.append(e.strerror or str(e))
            if kind == "datagram" and seq == 0:
                ident = sock.getsockname()[1]
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
    """ICMP echo round trips (a raw socket with scapy, or an unprivileged datagram socket):
    RTT, RFC 3550 jitter, loss."""
    tags = {**ctx.tags, "target": spec.target, "method": "icmp"}
    t = now_ms()
    fields, result, reason = await measure(spec)
    if result is not None:
        return [failure("rtt", tags, result, reason or result, t, **fields)]
    return [Record("rtt", {**tags, "result": "ok"}, fields, t)]


def traffic(spec: Spec, records: Sequence[Record]) -> int:
    """Every echo request and its reply: ``sent`` x 2 x (``size`` + ICMP, IPv4 and Ethernet
    headers)."""
    return budget.echo_traffic(records, spec.size, budget.ETHERNET + budget.IPV4 + budget.ICMP)


PLUGIN = Plugin(
    kind="probe",
    name="icmp",
    spec=Spec,
    run=run,
    measurement="rtt",
    method="icmp",
    summary="ICMP echo for targets that run no reflector (raw socket, or unprivileged datagram "
    "socket): RTT, RFC 3550 jitter, loss.",
    interval_s=300.0,
    traffic=traffic,
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
