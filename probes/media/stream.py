"""The socket primitives both ends of a call share (the probe's ``call`` edge and the
responder in ``servers/``): a UDP socket that reports kernel receive time and TOS, the clock
that maps those timestamps to monotonic time, the RTT echo, and the paced sender that puts
``wire.schedule`` on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass
from typing import Any

from netready.probes.media.wire import (
    HEADER_SIZE,
    MAX_PACKET,
    STREAM_AUDIO,
    pack_media,
    schedule,
)

from netready import platform, stats

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # cmsg: packets the socket dropped so far
RCVBUF = 4 << 20


def _tos_cmsg(family: int, tos: int) -> list[tuple[int, int, bytes]]:
    if family == socket.AF_INET6:
        return [(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, struct.pack("i", tos))]
    return [(socket.IPPROTO_IP, socket.IP_TOS, struct.pack("i", tos))]


def open_media_socket(family: int) -> socket.socket:
    """A non-blocking UDP socket that reports arrival time (kernel) and received TOS."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:  # root may exceed net.core.rmem_max: key-frame bursts of many calls need room
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if not platform.caps().dscp_read:  # the trace then says "not measurable here"
        return s
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    return s


class Clock:
    """Kernel receive timestamps are CLOCK_REALTIME; map them to monotonic with an offset
    taken once, so send and receive times of one host share one clock. Also keeps the
    socket's drop counter (``SO_RXQ_OVFL``): packets lost in *our* receive buffer."""

    def __init__(self) -> None:
        self.offset = time.time_ns() - time.monotonic_ns()
        self.drops = 0

    def from_cmsg(self, anc: list[tuple[int, int, bytes]]) -> tuple[int, int | None]:
        recv_ns = None
        tos = None
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = struct.unpack("qq", data[:16])
                recv_ns = sec * 1_000_000_000 + nsec - self.offset
            elif level == socket.IPPROTO_IP and typ == socket.IP_TOS and data:
                tos = data[0]
            elif level == socket.IPPROTO_IPV6 and typ == socket.IPV6_TCLASS and data:
                tos = int.from_bytes(data[:4], sys.byteorder) if len(data) >= 4 else data[0]
            elif level == socket.SOL_SOCKET and typ == SO_RXQ_OVFL and len(data) >= 4:
                self.drops = max(self.drops, int.from_bytes(data[:4], sys.byteorder))
        now = time.monotonic_ns()
        if recv_ns is None or abs(now - recv_ns) > 1_000_000_000:  # clock stepped: fall back
            recv_ns = now
        return recv_ns, tos


@dataclass
class Echo:
    """The last packet received from the peer, echoed in every packet we send (RTT)."""

    peer_send_ns: int = 0
    local_recv_ns: int = 0


@dataclass
class SendResult:
    sent: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    elapsed_s: float = 0.0
    errors: int = 0
    late_p95_ms: float | None = None

    @property
    def sent_kbps(self) -> float | None:
        return self.bytes * 8 / self.elapsed_s / 1000.0 if self.elapsed_s > 0 else None


_ZEROS = bytes(MAX_PACKET)


async def send_stream(
    sock: socket.socket,
    addr: Any,
    sid: int,
    video_kbps: float,
    duration_s: float,
    echo: Echo,
    *,
    dscp_audio: int = 46,
    dscp_video: int = 34,
    keyframes: bool = True,
    keyframe_offset: int = 0,
    start_delay_s: float = 0.0,
    stop: asyncio.Event | None = None,
    result: SendResult | None = None,
) -> SendResult:
    """Send one direction of a call on a monotonic schedule (``wire.schedule``: no drift,
    each event has an absolute deadline t0 + k * interval; we sleep until it). ``addr``
    None = connected."""
    res = result if result is not None else SendResult()
    fam = sock.family
    if fam == socket.AF_INET6 and addr is not None and addr[0].startswith("::ffff:"):
        fam = socket.AF_INET  # an IPv4 client of a dual-stack socket: IP_TOS, not TCLASS
    cms = {STREAM_AUDIO: _tos_cmsg(fam, dscp_audio << 2)}
    cm_v = _tos_cmsg(fam, dscp_video << 2)
    t0 = time.monotonic_ns() + int(start_delay_s * 1e9)
    late = array("d")  # 8 bytes per event: a long session's lateness stays small
    start = time.monotonic_ns()
    events = schedule(video_kbps, duration_s, keyframes=keyframes, keyframe_offset=keyframe_offset)
    for offset, stream, frame, sizes in events:
        if stop is not None and stop.is_set():
            break
        t = t0 + offset
        now = time.monotonic_ns()
        if t > now:
            await asyncio.sleep((t - now) / 1e9)
        late.append(max(0, time.monotonic_ns() - t) / 1e6)
        cm = cms.get(stream, cm_v)
        for size in sizes:
            _emit(sock, addr, sid, res, echo, stream, size, frame, cm)
    res.elapsed_s = max(duration_s, (time.monotonic_ns() - max(start, t0)) / 1e9)
    res.late_p95_ms = stats.percentile(late, 95)
    return res


def _emit(
    sock: socket.socket,
    addr: Any,
    sid: int,
    res: SendResult,
    echo: Echo,
    stream: int,
    size: int,
    frame: int,
    cm: list[tuple[int, int, bytes]],
) -> None:
    """Send one media packet stamped now, with the echo of the last one received."""
    now = time.monotonic_ns()
    # a kernel receive stamp mapped from CLOCK_REALTIME (``Clock``) can land a few us after
    # "now" when the realtime clock slews against the monotonic one: never a negative hold
    hold = max(0, (now - echo.local_recv_ns) // 1000) if echo.peer_send_ns else 0
    hdr = pack_media(sid, res.sent, stream, now, echo.peer_send_ns, hold, frame)
    buf = [hdr, _ZEROS[: size - HEADER_SIZE]]
    try:
        if addr is None:
            sock.sendmsg(buf, cm)
        else:
            sock.sendmsg(buf, cm, 0, addr)
    except OSError:
        # Not sent (local queue full, a pending ICMP error): count it apart, and do not
        # use up a sequence number, so the receiver does not blame the network for it.
        res.errors += 1
        return
    res.bytes += size
    if res.sent == 0:
        res.first_ns = now
    res.last_ns = now
    res.sent += 1
