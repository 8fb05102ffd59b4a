"""Guards shared by netready's central servers (``reflector``, ``responder``, ``speed``).
Sans-IO: every method takes the time (``now``, a monotonic clock) instead of reading it.

- ``AllowList``: the source CIDRs a server answers (IPv4 and IPv6 prefixes; an IPv4-mapped
  IPv6 source, as a dual-stack ``[::]`` socket reports it, is checked as the IPv4 address).
  Sources outside it get no answer at all.
- ``Bucket``: the one token bucket. ``take`` spends only if there is room (a packet is
  dropped otherwise); ``borrow`` spends anyway and says how long the debt takes to pay off
  (the speed endpoint sleeps that long: a rate limit on a stream).
- ``SourceLimiter``: token buckets per source and over all sources, in memory bounded by
  the number of sources tracked.
- ``CookieJar``: stateless address-validation cookies, as DTLS HelloVerifyRequest
  (RFC 6347 §4.2.1) and QUIC Retry (RFC 9000 §8.1) use them: before a server sends anything
  large to an address, the address echoes a cookie only a receiver there could have read.
  The cookie is an HMAC (server-side random key) over the source address and port, a time
  bucket and the request it answers, so the server keeps no state for unproven addresses.
- ``is_loopback``: is a listen address only ever loopback (plain HTTP, /metrics beyond it).
- ``CountedLog``: the one rate-limited log. Hostile or refused traffic is counted by reason
  and logged as at most one summary line per interval, never one line per packet
  (``count``); a line of its own (the speed endpoint's, about one client) is logged at most
  once per interval and key, the next one saying how many were held back (``line``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netready.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What the central servers answer unless told (``--allow``): loopback only.
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")


def parse_networks(cidrs: Sequence[str]) -> list[Network]:
    """CIDRs (``10.0.0.0/8``, ``2001:db8::/32``, a bare address) -> networks; ConfigError."""
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c, strict=False))
        except ValueError:
            raise ConfigError(f"--allow {c!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    return nets


def is_loopback(host: str) -> bool:
    """True if ``host`` (an address or a name) is only ever a loopback address."""
    if not host:
        return False  # all interfaces
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]).is_loopback for i in infos
    )


def hostport(addr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """``host:port``, or ``[v6]:port``, of a socket address (for the servers' log lines)."""
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


class AllowList:
    """The sources a server answers."""

    def __init__(self, cidrs: Sequence[str]):
        self.networks: list[Network] = parse_networks(cidrs)

    def allows(self, host: str) -> bool:
        """Is ``host`` (an address as ``recvfrom`` gives it, maybe with ``%scope``) inside?"""
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self.networks)

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks)


@dataclass
class Bucket:
    """A token bucket: ``rate`` tokens/s, at most ``burst``."""

    rate: float
    burst: float
    tokens: float
    last: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> Bucket:
        return cls(rate, burst, burst, now)

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, n: float, now: float) -> bool:
        """Spend ``n`` if there are that many tokens; else spend nothing."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def borrow(self, n: float, now: float) -> float:
        """Spend ``n`` even into debt; the seconds until the debt is paid off (0: none)."""
        self._refill(now)
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class SourceLimiter:
    """Packets/s and bits/s per source (burst: one second's worth) and bits/s over all
    sources (burst: ``total_burst_s`` seconds' worth). A packet passes only if every
    bucket has room; nothing is spent from the later buckets when an earlier one is empty.
    At most ``max_sources`` sources are tracked (then all are forgotten: bounded memory)."""

    def __init__(
        self,
        pps: float,
        kbps: float,
        total_kbps: float,
        *,
        total_burst_s: float = 0.25,
        max_sources: int = 10_000,
    ):
        self.pps = pps
        self.bps = kbps * 1000
        self.total_bps = total_kbps * 1000
        self.total_burst_s = total_burst_s
        self.max_sources = max_sources
        self._sources: dict[str, tuple[Bucket, Bucket]] = {}
        self._total: Bucket | None = None

    def take(self, host: str, nbytes: int, now: float) -> bool:
        pps, bps = self._sources.get(host) or self._new(host, now)
        if self._total is None:
            burst = self.total_bps * self.total_burst_s
            self._total = Bucket.full(self.total_bps, burst, now)
        bits = nbytes * 8
        return pps.take(1, now) and bps.take(bits, now) and self._total.take(bits, now)

    def _new(self, host: str, now: float) -> tuple[Bucket, Bucket]:
        if len(self._sources) >= self.max_sources:
            self._sources.clear()
        b = (Bucket.full(self.pps, self.pps, now), Bucket.full(self.bps, self.bps, now))
        self._sources[host] = b
        return b


class CookieJar:
    """Stateless cookies proving that a source address receives what is sent to it.

    ``issue(addr, request, now)`` -> a 32-hex-digit cookie: the time bucket (u32) and the
    first 12 bytes of HMAC-SHA256(key, bucket | host | port | request). ``check`` accepts
    it for the same address, port and request during the bucket it was issued in and the
    next one (``bucket_s`` to 2 x ``bucket_s``). ``now`` is a monotonic clock, so wall-clock
    steps do not matter; the key is random per process, so a restart voids old cookies.
    """

    HEX_LEN = 32

    def __init__(self, key: bytes | None = None, bucket_s: float = 30.0):
        self.key = key or os.urandom(32)
        self.bucket_s = bucket_s

    def _mac(self, bucket: int, addr: Any, request: bytes) -> bytes:
        head = f"{bucket}|{addr[0]}|{addr[1]}|".encode()
        return hmac.new(self.key, head + request, hashlib.sha256).digest()[:12]

    def issue(self, addr: Any, request: bytes, now: float) -> str:
        bucket = int(now // self.bucket_s) & 0xFFFFFFFF
        return (bucket.to_bytes(4, "big") + self._mac(bucket, addr, request)).hex()

    def check(self, cookie: str, addr: Any, request: bytes, now: float) -> bool:
        if len(cookie) != self.HEX_LEN:
            return False
        try:
            raw = bytes.fromhex(cookie)
        except ValueError:
            return False
        bucket = int.from_bytes(raw[:4], "big")
        age = (int(now // self.bucket_s) - bucket) & 0xFFFFFFFF
        return age <= 1 and hmac.compare_digest(raw[4:], self._mac(bucket, addr, request))


class CountedLog:
    """The rate-limited log: at most one line per ``interval_s`` for each key.

    ``count(reason, now)``: an event (a dropped or refused packet) counted by reason; the
    summary key's line gives the counts since the last line. The first event after a quiet
    interval is logged at once (with its count), the rest are summed into the next line;
    ``flush(now, force=True)`` writes what is pending (on shutdown). ``totals`` keeps every
    count since start (for statistics).

    ``line(level, key, now, msg, *args)``: a line of its own for ``key`` (e.g. one client and
    one kind of event), or nothing if one was logged for that key within ``interval_s``; the
    next line says how many were held back. ``allow(key, now)`` is that decision alone.
    At most ``max_keys`` keys are remembered (older ones are forgotten first; under a flood
    from more keys than that, lines are dropped): bounded memory.
    """

    #: the key of ``count``'s summary line
    SUMMARY = ("summary",)

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        interval_s: float = 60.0,
        *,
        max_keys: int = 10_000,
    ):
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.totals: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._seen: dict[tuple[str, ...], tuple[float, int]] = {}  # key -> (last line, held)

    def allow(self, key: tuple[str, ...], now: float) -> int | None:
        """``None``: stay quiet (and count one more held back). Else a line may go out now:
        the number of lines held back for ``key`` since its last one."""
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return None
        if seen is None and len(self._seen) >= self.max_keys:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval_s}
            if len(self._seen) >= self.max_keys:
                return None  # a flood from very many keys: drop, keep memory flat
        self._seen[key] = (now, 0)
        return seen[1] if seen else 0

    def line(self, level: int, key: tuple[str, ...], now: float, msg: str, *args: object) -> None:
        held = self.allow(key, now)
        if held is None:
            return
        if held:
            msg += f" (and {held} more like it in {self.interval_s:g} s)"
        self.logger.log(level, msg, *args)

    def count(self, reason: str, now: float) -> None:
        self.totals[reason] += 1
        self._pending[reason] += 1
        self.flush(now)

    def flush(self, now: float, *, force: bool = False) -> None:
        if not self._pending:
            return
        last = self._seen.get(self.SUMMARY)
        if force:
            self._seen[self.SUMMARY] = (now, 0)
        elif self.allow(self.SUMMARY, now) is None:
            return
        n = sum(self._pending.values())
        span = "" if last is None else f" in {now - last[0]:.1f} s"
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self._pending.items()))
        self.logger.warning("%s: %d packets dropped or refused%s: %s", self.what, n, span, parts)
        self._pending.clear()
