"""The TWAMP-light reflector (``netready reflector``).

Answers RFC 5357 unauthenticated test packets, so netready's rtt probe (and any TWAMP-light
sender) can measure against it. Protections, because it sits on a central network:

- answers only sources inside ``--allow`` CIDRs, IPv4 or IPv6 (default: loopback only);
  a dual-stack ``[::]`` socket checks an IPv4 client as its IPv4 address;
- never sends more bytes than it received (reply size == request size, and requests shorter
  than a full reflected packet are dropped): no amplification;
- per-source token buckets on packets/s and bit/s, and a global bit/s cap; excess is dropped
  silently and counted (one summary log line per minute, never one per packet).

The allow-list, token buckets and counted logging are ``servers/guard.py``, shared with the
media responder. The command line (``netready reflector``, which can run a media responder in
the same process) is ``netready/cli/servers.py``.

Sans-IO core: ``Reflector.handle(data, addr, ttl, now, rx_ns) -> bytes | None``; the asyncio
edge reads with ``recvmsg`` to learn the received TTL and the kernel's receive time (the
reply's receive timestamp, so a busy reflector's wait for the CPU is not path jitter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from netready.probes.rtt import twamp
from netready.servers.guard import AllowList, CountedLog, SourceLimiter, hostport
from netready.servers.metrics import Metrics, Snapshot

from netready import platform
from netready.errors import ServerError
from netready.inventory import split_hostport

log = logging.getLogger("netready.reflector")

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = socket.IP_TTL
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)


@dataclass
class ReflectorStats:
    received: int = 0
    reflected: int = 0
    denied: int = 0
    too_short: int = 0
    rate_limited: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass
class Reflector:
    allow: AllowList
    max_pps_per_source: float = 2000.0
    max_kbps_per_source: float = 20_000.0
    max_kbps_total: float = 200_000.0
    log_interval_s: float = 60.0
    stats: ReflectorStats = field(default_factory=ReflectorStats, init=False)
    _seq: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.limiter = SourceLimiter(
            self.max_pps_per_source, self.max_kbps_per_source, self.max_kbps_total
        )
        self.dropped = CountedLog(log, "reflector", self.log_interval_s)

    def handle(
        self, data: bytes, host: str, ttl: int, now: float, rx_ns: int | None = None
    ) -> bytes | None:
        """The reply to one datagram, or None to drop it. ``rx_ns``: when it arrived (wall
        clock, ns; the kernel's timestamp), else now."""
        self.stats.received += 1
        self.stats.rx_bytes += len(data)
        if not self.allow.allows(host):
            self.stats.denied += 1
            self.dropped.count("not_allowed", now)
            return None
        if len(data) < twamp.REFLECT_MIN:
            self.stats.too_short += 1
            self.dropped.count("too_short", now)
            return None
        if not self.limiter.take(host, len(data), now):
            self.stats.rate_limited += 1
            self.dropped.count("rate_limited", now)
            return None
        wall = time.time_ns()
        # the kernel's receive time, unless a clock step made it nonsense
        rx = twamp.to_ntp(rx_ns if rx_ns is not None and abs(wall - rx_ns) < 10**9 else wall)
        sender = twamp.unpack_sender(data)
        self._seq += 1
        self.stats.reflected += 1
        self.stats.tx_bytes += len(data)  # reply size == request size
        return twamp.pack_reflected(self._seq, twamp.ntp_now(), rx, sender, ttl, len(data))

    def snapshot(self) -> Snapshot:
        """The counters for ``/metrics`` (servers/metrics.py): refusals by reason as counted."""
        st = self.stats
        return Snapshot(
            requests=st.received,
            refusals=dict(self.dropped.totals),
            rate_limited=st.rate_limited,
            bytes_rx=st.rx_bytes,
            bytes_tx=st.tx_bytes,
        )


def open_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket that reports each packet's received TTL / hop
    limit. ``host`` may be IPv6 (``::`` is dual-stack: IPv4 clients arrive v4-mapped, and
    their TTL comes with ``IP_RECVTTL`` on the same socket)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    fam, _, _, _, addr = infos[0]
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    platform.enable_rx_timestamps(s)  # receive_ts: the kernel's time, not when we ran
    if not platform.caps().recvmsg:
        pass  # no ancillary data to read the TTL from: replies carry sender TTL 0 (unknown)
    elif fam == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        with contextlib.suppress(OSError):  # v4-mapped clients of a dual-stack socket
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    s.setblocking(False)
    try:
        s.bind(addr)
    except OSError:
        s.close()
        raise
    return s


def _ttl_from(anc: list[tuple[int, int, bytes]]) -> int:
    for level, typ, data in anc:
        if (level, typ) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):
            return int.from_bytes(data[:4], "little") if len(data) >= 4 else data[0]
    return 0


async def serve(
    listen: str,
    allow: Sequence[str],
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
    **limits: float,
) -> ReflectorStats:
    """Run the reflector until ``stop`` is set (or forever); its counters on ``metrics``."""
    host, port = split_hostport(listen, 862)
    refl = Reflector(AllowList(allow), **limits)
    if metrics is not None:
        metrics.add("reflector", refl.snapshot)
    try:
        sock = open_socket(host, port)
    except OSError as e:
        raise ServerError(f"cannot listen on {listen}: {e.strerror or e}") from None
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()

    def on_readable() -> None:
        for _ in range(256):
            try:
                data, anc, _flags, addr = platform.recv_ancillary(sock, 65535, 128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors surfaced on the socket
                refl.dropped.count("recv_error", time.monotonic())
                return
            now = time.monotonic()
            rx_ns = platform.kernel_timestamp_ns(anc)
            reply = refl.handle(data, addr[0], _ttl_from(anc), now, rx_ns)
            if reply is not None:
                try:
                    sock.sendto(reply, addr)
                except OSError:
                    refl.dropped.count("send_error", now)

    loop.add_reader(sock.fileno(), on_readable)
    log.info("reflector listening on %s, allow %s", hostport(sock.getsockname()), refl.allow)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
        refl.dropped.flush(time.monotonic(), force=True)
    return refl.stats
