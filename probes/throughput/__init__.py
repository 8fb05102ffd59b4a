"""Probe "throughput": adaptive multi-stream HTTP speed test with loaded latency.

Runs against ``netready serve`` (``servers/speed.py``). For each direction:

1. Idle RTT: 6 ``GET /ping`` on a separate keep-alive connection, median.
2. Transfer over ``start_streams`` parallel TCP connections (pipelined ``GET /download?bytes=N``
   or ``POST /upload``; every request's size is reserved from the byte cap first, so the
   endpoint can never send more than the cap). The rate is measured in short windows
   (``window_s`` (0.4 s) long, stretched to at least 30 full-size packets on slow lines) at the
   receiver: for download on our own read times, for upload on the endpoint's clock (its
   ``/ping`` reports bytes received and the time of the last byte).
3. Streams double whenever the rate stops rising (a window within +3% of the previous one),
   up to ``max_streams``; when doubling gives no rise, growing stops. Every window before the
   last change of stream count is ramp-up and is discarded.
4. The test stops when ``stable_windows`` (3) consecutive windows after the ramp agree within
   ±``tolerance_pct`` (2%) of their mean, or when the time cap (``max_seconds``) or the byte
   cap is hit (then ``stable=false``). Goodput = bytes / time over those last windows.
5. Loaded RTT: the ping connection keeps pinging during the transfer (every 50 ms, slower on
   slow lines so pings stay under 1% of the rate, but at least every 5 s so the endpoint's
   idle timeout never closes the connection); they queue behind the test traffic
   (requests on the upload, replies on the download), so their median is the RTT under load.
6. Responsiveness (RPM, draft-ietf-ippm-responsiveness; arithmetic in ``rpm.py``): the pings
   under load are the self probes; ``Prober`` adds foreign probes (new connection: TCP
   connect, TLS handshake on https, one GET /ping) within the draft's overhead limit. Once
   goodput is stable the load is held up to ``Spec.rpm_hold_s`` more until the RPM is (see
   docs/throughput.md, "Responsiveness").

Record (measurement ``throughput``; tags: site, icb, tech, target, method=http, direction
(down|up), result):

=================  =====  ============================================================
field              type   meaning
=================  =====  ============================================================
goodput_mbps       float  HTTP payload rate over the stable windows, Mbit/s (1e6)
bytes              int    payload bytes moved in this direction (received for down,
                          acknowledged by the endpoint for up)
duration_s         float  time from the first request to the stop, seconds
measured_s         float  length of the windows goodput_mbps is computed over
streams            int    parallel TCP connections at the end
retransmits        int    TCP segments retransmitted by the sender (TCP_INFO
                          tcpi_total_retrans; the endpoint's for down, ours for up)
rtt_idle_ms        float  median /ping round trip before the transfer
rtt_loaded_ms      float  median /ping round trip during the transfer
rtt_loaded_p95_ms  float  95th percentile of the same
bufferbloat_ms     float  rtt_loaded_ms - rtt_idle_ms
bufferbloat_grade  str    A-F from bufferbloat_ms (see GRADES)
stable             bool   the stop rule was met (false: a cap ended the test first)
windows            int    measurement windows taken, ramp-up included
stop               str    why it stopped: stable, time_cap, byte_cap
endpoint_limited   bool   the endpoint's per-client rate limit throttled this test: the
                          figure is that limit, not the line's capacity
rpm                float  responsiveness under load (draft-ietf-ippm-responsiveness):
                          mean of rpm_foreign and rpm_self, round trips per minute
rpm_loaded_ms      float  the loaded round trip the RPM implies, 60000 / rpm
rpm_foreign        float  60000 / mean of the trimmed means of the foreign probes' TCP
                          connect, TLS handshake (https only) and HTTP GET times
rpm_self           float  60000 / trimmed mean of the self probes (GET /ping on the
                          test's warm connection)
rpm_foreign_tcp_ms float  95 % trimmed mean of the foreign TCP connect times (the
                          kernel's handshake RTT; a retransmitted SYN's full wait)
rpm_foreign_tls_ms float  95 % trimmed mean of the foreign TLS handshakes (https
                          endpoints only)
rpm_foreign_http_ms
                   float  95 % trimmed mean of the foreign GET /ping times
rpm_self_ms        float  95 % trimmed mean of the self probes
rpm_probes_foreign int    foreign probes the RPM is computed over
rpm_probes_self    int    self probes the RPM is computed over
rpm_probes_retransmitted
                   int    loaded self probes left out because TCP sent their request
                          or reply twice (they timed loss repair, not the queue)
rpm_probes_failed  int    foreign probes that failed (a lost SYN on a saturated line,
                          a refusal)
rpm_goodput_stable bool   goodput met the draft's stability rule (the standard
                          deviation of the last 4 one-second moving averages under 5
                          %)
rpm_stable         bool   the RPM met the same rule over its own 1 s intervals
rpm_confidence     str    high (goodput and RPM stable, >= 20 probes of each kind),
                          medium (goodput stable, >= 5 of each), low
=================  =====  ============================================================

Failures (``records.failure``): ``refused`` (connection refused, or the endpoint answered
429), ``auth_failed`` (401), ``unreachable`` (name or route), ``timeout``, ``error``,
``budget_exceeded`` (the byte cap ran out before one measurement window).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netready import budget, stats
from netready.errors import ConfigError
from netready.inventory import HeaderSecret
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure

from . import rpm, wire
from .wire import delivered_bytes, tcp_info

WIRE_BYTES_PER_PACKET = 1514  # full-size Ethernet frame, for sizing windows
CHUNK = 64 * 1024
MIN_SEGMENT = 64 * 1024
MAX_SEGMENT = 32 * 1024 * 1024
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
#: A /ping costs about this many bytes on the wire each way (request or reply + an ACK).
PING_WIRE_BYTES = 300
#: Pings (the RPM's self probes) may use at most this share of the measured rate (a 0.45
#: Mbit/s upload: ~2 per s); the foreign probes get the rest of the draft's 5 % (rpm.PTC).
PING_SHARE = 0.01
FOREIGN_SHARE = rpm.PTC - PING_SHARE
#: Foreign probes a second at most: the draft allows 100 probes a second, the endpoint 50
#: /ping a second per client (servers/speed.py Limits) and the pinger takes up to 20 of them.
FOREIGN_MAX_PER_S = 20.0
FOREIGN_IN_FLIGHT = 4
#: Once goodput is stable, the load is held at most ``Spec.rpm_hold_s`` more (default
#: 2 x MAD x ID = 8 s) for the RPM to settle (the draft's probes need load that lasts;
#: ``rpm_wants_more``)
#: ... and adds a load-generating flow this often meanwhile (up to max_streams)
RPM_ADD_S = 0.5
#: ... but come at least this often, well inside the endpoint's idle timeout (15 s), which
#: closes a keep-alive connection that sends no request for that long.
PING_MAX_GAP_S = 5.0

#: Bufferbloat grade from the extra RTT under load (ms): (upper bound, grade). Same bands as
#: Waveform's Bufferbloat test (A+ folded into A): A < 30, B < 60, C < 200, D < 400, F >= 400.
GRADES: tuple[tuple[float, str], ...] = ((30.0, "A"), (60.0, "B"), (200.0, "C"), (400.0, "D"))


def bufferbloat_grade(increase_ms: float) -> str:
    for bound, grade in GRADES:
        if increase_ms < bound:
            return grade
    return "F"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(description="endpoint URL, http(s)://HOST:PORT[/prefix] (netready serve)")
    token: HeaderSecret = Field(description="bearer token reference: env:NAME or file:PATH")
    direction: Literal["down", "up", "both"] = Field(
        "both", description="down, up, or both (down first)"
    )
    max_seconds: float = Field(15.0, gt=0, le=300, description="time cap per direction, seconds")
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap for the whole test, MB (1e6); default: the site's budget.test_mb",
    )
    start_streams: int = Field(1, ge=1, le=32, description="parallel TCP connections at first")
    max_streams: int = Field(8, ge=1, le=32, description="most parallel TCP connections")
    tolerance_pct: float = Field(
        2.0, gt=0, le=50, description="stable: the last windows within this % of their mean"
    )
    stable_windows: int = Field(
        3, ge=2, le=20, description="consecutive agreeing windows that end the test"
    )
    window_s: float = Field(0.4, ge=0.05, le=10, description="shortest measurement window, s")
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="seconds to connect")
    rpm_hold_s: float = Field(
        2 * rpm.MAD * rpm.ID_S,
        ge=0,
        le=60,
        description="after goodput is stable, hold the load up to this long for the RPM to "
        "settle (0: no hold, fewer bytes, an RPM of lower confidence)",
    )
    congestion_control: str | None = Field(
        None,
        description="TCP congestion control of the test's connections (Linux; default: the "
        "system's), e.g. cubic: the sender's algorithm decides how full the line's buffer "
        "gets; this is the upload's sender (the endpoint's --congestion-control the download's)",
    )
    verify_tls: bool = Field(
        True,
        description="verify the endpoint's TLS certificate (--insecure: do not)",
        json_schema_extra={"cli": "--verify-tls/--insecure"},
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{v!r} is not an http(s)://HOST[:PORT] URL")
        u.port  # noqa: B018 - raises ValueError on a bad port
        return v

    @model_validator(mode="after")
    def _streams(self) -> Spec:
        if self.start_streams > self.max_streams:
            raise ValueError("start_streams must be <= max_streams")
        return self


# --------------------------------------------------------------------------- estimator (pure)


@dataclass(frozen=True)
class Window:
    nbytes: int
    dt: float
    epoch: int  # increments each time the number of streams changes
    streams: int

    @property
    def rate_bps(self) -> float:
        return self.nbytes * 8 / self.dt if self.dt > 0 else 0.0


@dataclass
class Estimator:
    """Decides, window by window, whether to add streams, keep going or stop. No I/O.

    ``add_window`` returns ``"add"`` (``streams`` was raised), ``"shrink"`` (more streams
    lowered the rate by over half the tolerance: ``streams`` is back to the previous count and
    growing stops), ``"wait"`` or ``"done"``.
    """

    streams: int = 2
    max_streams: int = 8
    tolerance: float = 0.02
    stable_windows: int = 3
    rise: float = 0.03
    min_window_s: float = 0.25
    max_window_s: float = 2.0
    packets_per_window: int = 30
    windows: list[Window] = field(default_factory=list)
    epoch: int = 0
    growing: bool = True
    plateau_bps: float | None = None
    prev_streams: int = 0

    def __post_init__(self) -> None:
        self.growing = self.streams < self.max_streams

    def window_s(self) -> float:
        if not self.windows or self.windows[-1].rate_bps <= 0:
            return self.min_window_s
        need = self.packets_per_window * WIRE_BYTES_PER_PACKET * 8 / self.windows[-1].rate_bps
        return min(self.max_window_s, max(self.min_window_s, need))

    def _current(self) -> list[Window]:
        return [w for w in self.windows if w.epoch == self.epoch]

    def measured(self) -> list[Window]:
        """Post-ramp windows: those after the last change of stream count (and, if the count
        never changed, without the first window, which holds slow start)."""
        cur = self._current()
        return cur[1:] if self.epoch == 0 else cur

    def stable(self) -> bool:
        m = self.measured()[-self.stable_windows :]
        if len(m) < self.stable_windows:
            return False
        mean = sum(w.rate_bps for w in m) / len(m)
        return mean > 0 and all(abs(w.rate_bps - mean) <= self.tolerance * mean for w in m)

    def add_window(self, nbytes: int, dt: float) -> str:
        self.windows.append(Window(nbytes, dt, self.epoch, self.streams))
        cur = self._current()
        if self.growing and len(cur) >= 2:
            last, prev = cur[-1].rate_bps, cur[-2].rate_bps
            ref = self.plateau_bps
            best = max(w.rate_bps for w in cur)
            if ref is not None and best < ref * (1 - self.tolerance / 2) and self.prev_streams:
                # more streams made it worse (a shallow buffer: they time out in turn):
                # go back to the previous count and measure again
                self.streams, self.prev_streams = self.prev_streams, 0
                self.growing = False
                self.epoch += 1
                return "shrink"
            if ref is not None and best <= ref * (1 + self.rise):
                self.growing = False  # more streams did not raise the rate
            elif last <= prev * (1 + self.rise):  # plateau at this stream count
                if self.streams >= self.max_streams:
                    self.growing = False
                else:
                    self.plateau_bps = (last + prev) / 2
                    self.prev_streams = self.streams
                    self.streams = min(self.max_streams, self.streams * 2)
                    self.epoch += 1
                    return "add"
        if not self.growing and self.stable():
            return "done"
        return "wait"

    def restart(self) -> None:
        """Forget the windows so far (the byte source changed); stop growing."""
        self.epoch += 1
        self.growing = False
        self.plateau_bps = None

    def result(self) -> tuple[int, float] | None:
        """(bytes, seconds) over the last ``stable_windows`` post-ramp windows, if any."""
        m = self.measured()[-self.stable_windows :]
        if not m:
            return None
        return sum(w.nbytes for w in m), sum(w.dt for w in m)


# --------------------------------------------------------------------------- transport


class HttpRefusal(Exception):
    def __init__(self, status: int, retry_after: str | None = None):
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


@dataclass
class Endpoint:
    host: str
    port: int
    prefix: str
    ssl: ssl.SSLContext | None
    token: str
    hostport: str

    @classmethod
    def from_spec(cls, spec: Spec) -> Endpoint:
        u = urlsplit(spec.target)
        https = u.scheme == "https"
        ctx = None
        if https:
            ctx = ssl.create_default_context()
            if not spec.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        port = u.port or (443 if https else 80)
        host = u.hostname or ""
        return cls(host, port, u.path.rstrip("/"), ctx, spec.token.resolve(), _hostport(u))

    def request(self, method: str, path: str, length: int | None = None) -> bytes:
        return wire.request_head(method, self.prefix + path, self.hostport, self.token, length)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    parsed = wire.parse_head(head)
    if parsed is None:
        raise HttpRefusal(0)  # not an HTTP/1.x response
    return parsed


class Meter:
    """Cumulative payload bytes and the monotonic time of the last arrival."""

    __slots__ = ("bytes", "t")

    def __init__(self) -> None:
        self.bytes = 0
        self.t = 0.0


class Reserve:
    """The byte cap: every request reserves its size first, so the total never exceeds it."""

    def __init__(self, cap: int):
        self.cap, self.reserved = cap, 0

    def take(self, n: int) -> int:
        k = max(0, min(n, self.cap - self.reserved))
        self.reserved += k
        return k

    @property
    def exhausted(self) -> bool:
        return self.cap - self.reserved < 1


def _set_cc(spec: Spec, sock: socket.socket | None) -> None:
    """Give one of the test's connections ``Spec.congestion_control`` (checked in ``run``)."""
    if spec.congestion_control and sock is not None:
        with contextlib.suppress(OSError):
            wire.set_congestion_control(sock, spec.congestion_control)


class _Stream:
    """Common state of one data connection."""

    def __init__(self, run: _Run):
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.finished = False  # no more requests will be sent (byte cap, stop)
        self.retired = False  # closed on purpose (the estimator shrank the stream count)

    def sock(self) -> socket.socket | None:
        return self.transport.get_extra_info("socket") if self.transport else None

    def _congestion_control(self) -> None:
        _set_cc(self.run.spec, self.sock())

    def _lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def retire(self) -> None:
        """Close this connection on purpose; what it moved so far still counts."""
        self.retired = self.finished = True
        if isinstance(self, _DownProto):
            self.outstanding = 0
        if isinstance(self, _UpProto) and self.writer is not None:
            self.writer.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        self.run.fail(exc)
        if self.transport:
            self.transport.abort()


class _DownProto(_Stream, asyncio.BufferedProtocol):
    """Pipelined ``GET /download`` on one connection; counts body bytes without copying."""

    def __init__(self, run: _Run):
        super().__init__(run)
        self.buf = memoryview(bytearray(256 * 1024))
        self.head = bytearray()
        self.remaining = 0
        self.in_body = False
        self.outstanding = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._congestion_control()
        self.refill()

    def refill(self) -> None:
        run = self.run
        while run.running and not self.finished and self.outstanding < 2:
            n = run.reserve.take(run.segment())
            if n == 0:
                self.finished = True
                break
            assert self.transport is not None
            self.transport.write(run.ep.request("GET", wire.download_path(n, run.test_id)))
            self.outstanding += 1

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        i, got = 0, 0
        while i < nbytes:
            if self.in_body:
                k = min(self.remaining, nbytes - i)
                self.remaining -= k
                i += k
                got += k
                if self.remaining == 0:
                    self.in_body = False
                    self.outstanding -= 1
                    self.refill()
                continue
            prev = len(self.head)
            self.head += self.buf[i:nbytes]
            end = self.head.find(wire.HEAD_END, max(0, prev - 3))
            if end < 0:
                if len(self.head) > wire.MAX_HEAD:
                    self._fail(HttpRefusal(0))
                    return
                break
            i += end + 4 - prev
            try:
                status, headers = _parse_head(bytes(self.head[:end]))
            except HttpRefusal as e:
                self._fail(e)
                return
            self.head.clear()
            if status != 200:
                self._fail(HttpRefusal(status, headers.get("retry-after")))
                return
            self.remaining = int(headers.get("content-length", "0"))
            self.in_body = self.remaining > 0
            if not self.in_body:
                self.outstanding -= 1
                self.refill()
        if got:
            m = self.run.meter
            m.bytes += got
            m.t = time.monotonic()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
        if self.run.running and not self.retired and (self.outstanding or not self.finished):
            self.run.fail(exc or ConnectionResetError("endpoint closed the connection"))

    @property
    def idle(self) -> bool:
        return self.finished and self.outstanding == 0


class _UpProto(_Stream, asyncio.Protocol):
    """Back-to-back ``POST /upload`` requests on one connection, written under flow control."""

    def __init__(self, run: _Run):
        super().__init__(run)
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.rbuf = bytearray()
        self.sent = 0
        self.writer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)  # type: ignore[attr-defined]
        self._congestion_control()
        s = transport.get_extra_info("socket")
        if s is not None:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 128 * 1024)
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    async def _write(self) -> None:
        run, t = self.run, self.transport
        assert t is not None
        pat = run.pattern
        try:
            while run.running:
                n = run.reserve.take(run.segment())
                if n == 0:
                    break
                t.write(run.ep.request("POST", wire.upload_path(run.test_id), n))
                left = n
                while left and run.running and not self.closed.done():
                    if t.is_closing():
                        return
                    if not self.can_write.is_set():
                        await self.can_write.wait()
                        continue
                    k = min(CHUNK, left)
                    t.write(pat[:k])
                    left -= k
                    self.sent += k
                    await asyncio.sleep(0)  # never starve the loop (controller, pinger)
                if left:
                    break
        finally:
            self.finished = True

    def data_received(self, data: bytes) -> None:
        self.rbuf += data
        while True:
            end = self.rbuf.find(wire.HEAD_END)
            if end < 0:
                return
            try:
                status, headers = _parse_head(bytes(self.rbuf[:end]))
            except HttpRefusal as e:
                self._fail(e)
                return
            blen = int(headers.get("content-length", "0"))
            if len(self.rbuf) < end + 4 + blen:
                return
            del self.rbuf[: end + 4 + blen]
            if status != 200:
                self._fail(HttpRefusal(status, headers.get("retry-after")))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
        self.can_write.set()
        if self.run.running and not self.retired:
            self.run.fail(exc or ConnectionResetError("endpoint closed the connection"))

    @property
    def idle(self) -> bool:
        return self.finished


class Pinger:
    """``GET /ping`` on its own keep-alive connection: RTTs and the endpoint's test counters."""

    def __init__(self, run: _Run):
        self.run = run
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_ms: list[float] = []
        self.loaded_ms: list[float] = []
        self.loaded_at: list[tuple[float, float]] = []  # (start time, ms) of each loaded ping
        #: per loaded ping: our retransmits during it, the endpoint's total on the connection
        self.own_rtx: list[int] = []
        self.peer_rtx: list[int | None] = []
        self.loaded = False
        self.last: dict[str, float] = {}
        self.rtx0 = 0

    async def connect(self) -> None:
        ep = self.run.ep
        self.reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ep.host, ep.port, ssl=ep.ssl),
            self.run.spec.connect_timeout_s,
        )
        self.writer = writer
        _set_cc(self.run.spec, writer.get_extra_info("socket"))

    def _retransmits(self) -> int:
        assert self.writer is not None
        info = tcp_info(self.writer.get_extra_info("socket"))
        return info["total_retrans"] if info else 0

    async def ping(self, timeout: float = 5.0) -> float:
        assert self.reader is not None and self.writer is not None
        self.rtx0 = self._retransmits()
        t0 = time.monotonic()
        self.writer.write(self.run.ep.request("GET", wire.ping_path(self.run.test_id)))
        head = await asyncio.wait_for(self.reader.readuntil(wire.HEAD_END), timeout)
        status, headers = _parse_head(head[:-4])
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers.get("content-length", "0"))), timeout
        )
        rtt = (time.monotonic() - t0) * 1000
        if status != 200:
            raise HttpRefusal(status, headers.get("retry-after"))
        self.last = json.loads(body)
        return rtt

    async def measure_idle(self, n: int = 6) -> None:
        for _ in range(n):
            self.idle_ms.append(await self.ping())
            await asyncio.sleep(0.03)

    async def loop(self) -> None:
        while True:
            t0 = time.monotonic()
            rtt = await self.ping(timeout=10.0)
            if self.loaded:
                self.loaded_ms.append(rtt)
                self.loaded_at.append((t0, rtt))
                self.own_rtx.append(self._retransmits() - self.rtx0)
                peer = self.last.get("conn_retransmits")
                self.peer_rtx.append(None if peer is None else int(peer))
            # keep our own ping traffic under PING_SHARE of the line (it shares the link)
            rate_bps = self.run.rate_Bps * 8
            gap = PING_WIRE_BYTES * 8 / (PING_SHARE * rate_bps) if rate_bps > 0 else 0.05
            await asyncio.sleep(min(PING_MAX_GAP_S, max(0.05, gap)) / self.run.probe_share)

    def self_probes(self) -> list[tuple[float, float]]:
        """The loaded pings the RPM counts: those whose request and reply went once
        (``rpm.unrepaired``)."""
        keep = rpm.unrepaired(self.own_rtx, self.peer_rtx)
        return [x for x, k in zip(self.loaded_at, keep, strict=True) if k]

    @property
    def retransmitted(self) -> int:
        return len(self.loaded_at) - len(self.self_probes())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class Prober:
    """The RPM's foreign probes: each a new TCP connection (connect time), a TLS handshake when
    the endpoint is https (handshake time) and one ``GET /ping`` (the draft's /small: request to
    last byte of the reply), then closed. Paced by ``rpm.probe_gap_s`` under the draft's limits
    (100 a second, with the self probes at most 5 % of the measured rate)."""

    def __init__(self, run: _Run):
        self.run = run
        self.probes = rpm.Probes()
        self.failed = 0
        self.error: Exception | None = None

    async def once(self) -> None:
        run, ep = self.run, self.run.ep
        t0 = time.monotonic()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ep.host, ep.port), run.spec.connect_timeout_s
        )
        try:
            t1 = time.monotonic()
            info = tcp_info(writer.get_extra_info("socket"))  # before any data: the SYN's RTT
            _set_cc(run.spec, writer.get_extra_info("socket"))
            t2 = t1
            if ep.ssl is not None:
                await asyncio.wait_for(
                    writer.start_tls(ep.ssl, server_hostname=ep.host), run.spec.connect_timeout_s
                )
                t2 = time.monotonic()
            writer.write(ep.request("GET", wire.ping_path(run.test_id)))
            head = await asyncio.wait_for(reader.readuntil(wire.HEAD_END), 10.0)
            status, headers = _parse_head(head[:-4])
            await asyncio.wait_for(
                reader.readexactly(int(headers.get("content-length", "0"))), 10.0
            )
            t3 = time.monotonic()
        finally:
            writer.transport.abort()
        if status != 200:
            raise HttpRefusal(status, headers.get("retry-after"))
        tcp_ms = rpm.connect_ms(
            (t1 - t0) * 1000,
            info.get("rtt_us") if info else None,
            info.get("total_retrans") if info else None,
        )
        self.probes.tcp_f.append((t0, tcp_ms))
        if ep.ssl is not None:
            self.probes.tls_f.append((t0, (t2 - t1) * 1000))
        self.probes.http_f.append((t0, (t3 - t2) * 1000))

    async def _one(self) -> None:
        try:
            await self.once()
        except HttpRefusal as e:
            if e.status != 429:
                self.error = e
            self.failed += 1  # over the endpoint's ping limit: counted, the next one waits
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            self.failed += 1  # a lost SYN on a saturated line is a fact, not an error

    async def loop(self) -> None:
        """Start a probe every gap, without waiting for the one before (at most
        ``FOREIGN_IN_FLIGHT`` at once): on a bloated line one probe takes seconds."""
        extra = rpm.TLS_PROBE_BYTES if self.run.ep.ssl is not None else 0
        tasks: set[asyncio.Task[None]] = set()
        try:
            while self.error is None:
                if len(tasks) < FOREIGN_IN_FLIGHT:
                    t = asyncio.create_task(self._one())
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                gap = rpm.probe_gap_s(self.run.rate_Bps * 8, rpm.FOREIGN_PROBE_BYTES + extra)
                await asyncio.sleep(
                    max(gap * rpm.PTC / FOREIGN_SHARE, 1 / FOREIGN_MAX_PER_S)
                    / self.run.probe_share
                )
            raise self.error
        finally:
            for t in tasks:
                t.cancel()


# --------------------------------------------------------------------------- one direction


class _Run:
    """One direction of one test."""

    def __init__(
        self,
        spec: Spec,
        ep: Endpoint,
        direction: str,
        cap: int,
        progress: Callable[[str], None] | None,
        test_id: str | None = None,
        probe_share: float = 1.0,
    ):
        self.spec, self.ep, self.direction = spec, ep, direction
        self.test_id = test_id or secrets.token_hex(8)
        #: the share of one test's probe rate this direction may use (0.5 when both directions
        #: of one test run at once: their pings reach the same endpoint's per-test limit)
        self.probe_share = probe_share
        self.reserve = Reserve(cap)
        self.meter = Meter()
        self.running = True
        self.error: Exception | None = None
        self.streams: list[_DownProto | _UpProto] = []
        self.rate_Bps = 0.0
        self.pattern = memoryview(os.urandom(CHUNK))
        self.progress = progress
        self.use_tcp_info = True
        self._last_counts: dict[int, int] = {}
        self._last_retrans: dict[int, int] = {}
        self.endpoint_limited = False
        self.restarted = False
        self.goodput = rpm.Stability()  # the draft's rule on 1 s intervals of goodput
        self.goodput_stable = False
        self.loaded_t0: float | None = None
        self.ramp_end = 0.0
        self.prober: Prober | None = None
        self.goodput_result: tuple[int, float] | None = None
        self.goodput_streams = 0  # streams when goodput was measured (the RPM may add more)
        self._last_t = 0.0
        self.est = Estimator(
            spec.start_streams,
            spec.max_streams,
            spec.tolerance_pct / 100,
            spec.stable_windows,
            min_window_s=spec.window_s,
        )

    def fail(self, exc: Exception) -> None:
        if self.error is None and self.running:
            self.error = exc

    def segment(self) -> int:
        """Request size: ~0.5 s of this stream's share of the rate seen so far."""
        n = sum(not st.retired for st in self.streams) or 1
        return int(min(MAX_SEGMENT, max(MIN_SEGMENT, self.rate_Bps * 0.5 / n)))

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        proto_cls = _DownProto if self.direction == "down" else _UpProto
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: proto_cls(self), self.ep.host, self.ep.port, ssl=self.ep.ssl
            ),
            self.spec.connect_timeout_s,
        )
        self.streams.append(proto)

    async def grow(self, to: int) -> None:
        await asyncio.gather(*(self._open() for _ in range(to - len(self.streams))))

    def sample(self, pinger: Pinger) -> tuple[float, int]:
        """(time, cumulative payload bytes) at the receiver, for the rate windows.

        Linux: data the receiver acknowledged or SACKed, from the *sender's* TCP_INFO
        (``wire.delivered_bytes``: bytes_acked + SACKed segments x MSS, timed at the last
        ACK): for up our own sockets, for down the endpoint's, from its /ping reply (server
        clock). Unlike bytes read by the application this includes data held out of order
        behind a lost packet, so a window is not skewed by a loss-recovery stall.
        Fallbacks: our ``data_segs_in`` x ``rcv_mss`` (down, endpoint without TCP_INFO),
        then bytes we read (down) or the endpoint read (up, from its /ping counters).
        """
        if pinger.last.get("throttled") and not self.endpoint_limited:
            # The endpoint's per-client rate limit is the bottleneck. For upload its kernel
            # acknowledges into a receive buffer faster than the throttled reader empties it,
            # so TCP counts overstate the rate: from now on use what the endpoint read, and
            # start the windows again.
            self.endpoint_limited = True
            if self.direction == "up":
                self.use_tcp_info = False
                self.est.restart()
                self.restarted = True
        if self.direction == "down" and "tx_delivered" in pinger.last and self.use_tcp_info:
            # the endpoint's sender-side count: each segment once, however often it was sent
            return float(pinger.last["tx_t"]), int(pinger.last["tx_delivered"])
        if self.use_tcp_info:
            down = self.direction == "down"
            total, age = 0, None
            for i, s in enumerate(self.streams):
                info = tcp_info(s.sock())
                if info and "delivered" in info:
                    if down:
                        val, a = info["data_segs_in"] * info["rcv_mss"], info["last_data_recv_ms"]
                    else:
                        val, a = delivered_bytes(info), info["last_ack_recv_ms"]
                        self._last_retrans[i] = info["total_retrans"]
                    self._last_counts[i] = val
                    age = a if age is None else min(age, a)
                total += self._last_counts.get(i, 0)
            if age is not None:
                t = max(self._last_t, time.monotonic() - age / 1000)
                self._last_t = t
                return t, total
            self.use_tcp_info = False  # not Linux (or a very old kernel)
        if self.direction == "down":
            return self.meter.t, self.meter.bytes
        return float(pinger.last.get("rx_t", 0.0)), int(pinger.last.get("rx_bytes", 0))

    async def execute(self, pinger: Pinger) -> dict[str, object]:
        spec, est = self.spec, self.est
        t_start = time.monotonic()
        await self.grow(est.streams)
        ping_task = asyncio.create_task(pinger.loop())
        prober = self.prober = Prober(self)
        probe_task: asyncio.Task[None] | None = None
        iv: tuple[float, int] | None = None  # start of the current RPM interval (ID_S)
        rpm_hold: float | None = None  # goodput was stable at: the RPM phase goes on
        last_add = 0.0
        win: tuple[float, int] | None = None
        stop = "time_cap"
        drained_at: float | None = None
        try:
            while True:
                await asyncio.sleep(0.05)
                if self.error is not None:
                    raise self.error
                if ping_task.done():
                    ping_task.result()  # raises the ping connection's error
                t, b = self.sample(pinger)
                if self.restarted:
                    self.restarted, win = False, None
                    self.goodput, iv = rpm.Stability(), None
                if probe_task is not None and probe_task.done():
                    probe_task.result()  # raises a foreign probe's unexpected error
                if win is not None and iv is not None and t - iv[0] >= rpm.ID_S:
                    self.goodput_stable |= self.goodput.add((b - iv[1]) * 8 / (t - iv[0]))
                    iv = (t, b)
                if win is None:
                    if b > 0:
                        win = iv = (t, b)
                        pinger.loaded = True
                        if probe_task is None:
                            self.loaded_t0 = time.monotonic()
                            probe_task = asyncio.create_task(prober.loop())
                elif rpm_hold is not None:
                    # goodput is measured; the load goes on for the RPM probes only, and as
                    # the draft's load generator does it adds a flow every RPM_ADD_S (a new
                    # flow's slow start fills the bottleneck's buffer as working traffic does)
                    if not self.rpm_wants_more(pinger, rpm_hold):
                        break
                    live = sum(not st.retired for st in self.streams)
                    if time.monotonic() - last_add >= RPM_ADD_S and live < spec.max_streams:
                        last_add = time.monotonic()
                        await self._open()
                elif t - win[0] >= est.window_s():
                    nbytes, dt = b - win[1], t - win[0]
                    self.rate_Bps = nbytes / dt
                    action = est.add_window(nbytes, dt)
                    win = (t, b)
                    if self.progress:
                        self.progress(
                            f"{self.direction}: {nbytes * 8 / dt / 1e6:.2f} Mbit/s over "
                            f"{dt:.2f} s with {est.streams} streams"
                        )
                    if action in ("add", "shrink"):
                        self.ramp_end = time.monotonic()  # the RPM counts probes after it
                    if action == "add":
                        await self.grow(est.streams)
                    elif action == "shrink":
                        for st in self.streams[est.streams :]:
                            st.retire()
                    elif action == "done":
                        stop = "stable"
                        self.goodput_result = est.result()
                        self.goodput_streams = est.streams
                        rpm_hold = last_add = time.monotonic()
                        if not self.rpm_wants_more(pinger, rpm_hold):
                            break
                if time.monotonic() - t_start >= spec.max_seconds:
                    stop = "time_cap" if rpm_hold is None else "stable"
                    break
                if self.reserve.exhausted and all(s.idle for s in self.streams):
                    # down: everything requested has arrived. up: all written; give the
                    # endpoint up to 2 s to receive what is still queued, then stop.
                    if drained_at is None:
                        drained_at = time.monotonic()
                    sent = sum(s.sent for s in self.streams if isinstance(s, _UpProto))
                    if (
                        self.direction == "down"
                        or b >= sent * 0.99
                        or time.monotonic() - drained_at > 2.0
                    ):
                        stop = "byte_cap"
                        break
            duration = time.monotonic() - t_start
            self.running = False
            retrans: int | None = None
            nbytes_total = self.meter.bytes
            if self.direction == "up":
                # a retired stream's socket is closed: its last sampled figures stand in
                acked, rtx = 0, 0
                for i, st in enumerate(self.streams):
                    info = tcp_info(st.sock())
                    if info and "delivered" in info:
                        self._last_counts[i] = delivered_bytes(info)
                        self._last_retrans[i] = info["total_retrans"]
                    acked += self._last_counts.get(i, 0)
                    rtx += self._last_retrans.get(i, 0)
                sent = sum(st.sent for st in self.streams if isinstance(st, _UpProto))
                nbytes_total = min(acked, sent) if self._last_counts else sent
                retrans = rtx if self._last_counts else None
            ping_task.cancel()
            if probe_task is not None:
                probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ping_task
            with contextlib.suppress(asyncio.CancelledError, Exception):
                if probe_task is not None:
                    await probe_task
            if self.direction == "down":
                # the endpoint is the sender: ask it for its retransmits before we hang up
                with contextlib.suppress(Exception):
                    self._abort_data()
                    await pinger.ping(timeout=3.0)
                    retrans = int(pinger.last.get("retransmits", 0))
            return {
                "duration_s": duration,
                "bytes": nbytes_total,
                "retransmits": retrans,
                "stop": stop,
            }
        finally:
            self.running = False
            ping_task.cancel()
            if probe_task is not None:
                probe_task.cancel()
            self._abort_data()

    def rpm_probes(self, pinger: Pinger, now: float) -> tuple[rpm.Probes, float]:
        """The probes the RPM is computed over and the time they start from: those of the
        last ``MAD`` intervals after the ramp, as the draft computes each interval's RPM
        (widened to all those after the ramp, then to all loaded ones, when under
        ``MIN_SAMPLES`` of a kind)."""
        assert self.prober is not None
        fp = self.prober.probes
        allp = rpm.Probes(list(fp.tcp_f), list(fp.tls_f), list(fp.http_f), pinger.self_probes())
        for t0 in (max(self.ramp_end, now - rpm.MAD * rpm.ID_S), self.ramp_end):
            p = allp.since(t0)
            if min(p.foreign, p.own) >= rpm.MIN_SAMPLES:
                return p, t0
        return allp, -1.0  # before any ramp end: not "full"

    def rpm_wants_more(self, pinger: Pinger, since: float) -> bool:
        """Hold the load for the RPM until it meets the draft's stability rule after the ramp
        (a filling queue raises it interval by interval), at most ``Spec.rpm_hold_s`` after
        ``since``."""
        now = time.monotonic()
        if self.prober is None or now - since >= self.spec.rpm_hold_s:
            return False
        allp = self.prober.probes.since(self.ramp_end)
        allp.http_s = [x for x in pinger.self_probes() if x[0] >= self.ramp_end]
        return not rpm.rpm_stable(allp, self.ramp_end, now)

    def _abort_data(self) -> None:
        for s in self.streams:
            if s.transport is not None:
                s.transport.abort()
            if isinstance(s, _UpProto) and s.writer is not None:
                s.writer.cancel()


def _classify(exc: BaseException, where: str) -> tuple[str, str]:
    """(result, one-line reason) for an exception raised while testing ``where``."""
    if isinstance(exc, HttpRefusal):
        if exc.status == 401:
            return "auth_failed", f"{where}: endpoint refused the token (HTTP 401)"
        if exc.status == 429:
            ra = f", retry after {exc.retry_after} s" if exc.retry_after else ""
            return "refused", f"{where}: endpoint over its per-client limit (HTTP 429{ra})"
        if exc.status == 0:
            return "error", f"{where}: not an HTTP/1.1 speed endpoint (bad response)"
        return "error", f"{where}: endpoint answered HTTP {exc.status}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"{where}: connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", f"{where}: timed out"
    if isinstance(exc, socket.gaierror):
        return "unreachable", f"{where}: cannot resolve host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.errno in (101, 113, 65):  # ENETUNREACH, EHOSTUNREACH
        return "unreachable", f"{where}: {exc.strerror}"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "error", f"{where}: endpoint closed the connection"
    if isinstance(exc, ssl.SSLError):
        return "error", f"{where}: TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return "error", f"{where}: {exc.strerror or exc}"
    return "error", f"{where}: {type(exc).__name__}: {exc}"


async def measure_direction(
    spec: Spec,
    ep: Endpoint,
    direction: str,
    cap: int,
    tags: dict[str, str],
    progress: Callable[[str], None] | None = None,
    test_id: str | None = None,
    probe_share: float = 1.0,
) -> Record:
    """One direction: idle RTT, adaptive transfer, loaded RTT. Always returns one record.

    ``probe_share``: the share of one test's ping and probe rate this direction uses; two
    directions of one test run at once (the qos check) pass 0.5 each, so that together they
    stay within the endpoint's per-test ping limit (``max_pings_per_s``)."""
    if not 0 < probe_share <= 1:
        raise ValueError(f"probe_share {probe_share} must be in (0, 1]")
    tags = {**tags, "direction": direction}
    run = _Run(spec, ep, direction, cap, progress, test_id, probe_share)
    pinger = Pinger(run)
    where = f"{spec.target} ({direction})"
    try:
        await pinger.connect()
        await pinger.measure_idle()
        # watchdog: a direction never outlives its time cap by more than a few seconds
        out = await asyncio.wait_for(run.execute(pinger), spec.max_seconds + 10)
    except Exception as e:  # a failed measurement is a record
        result, reason = _classify(e, where)
        return failure("throughput", tags, result, reason)
    finally:
        pinger.close()
    res = run.goodput_result or run.est.result()
    if res is None or res[1] <= 0:
        result = "budget_exceeded" if out["stop"] == "byte_cap" else "timeout"
        what = "byte cap" if result == "budget_exceeded" else f"time cap {spec.max_seconds:g} s"
        return failure(
            "throughput",
            tags,
            result,
            f"{where}: {what} reached before a measurement window ({cap} bytes cap)",
            bytes=int(out["bytes"]),  # type: ignore[call-overload]
        )
    nbytes, secs = res
    idle = stats.percentile(pinger.idle_ms, 50)
    loaded = stats.percentile(pinger.loaded_ms, 50)
    fields: dict[str, object] = {
        "goodput_mbps": nbytes * 8 / secs / 1e6,
        "bytes": int(out["bytes"]),  # type: ignore[call-overload]
        "duration_s": float(out["duration_s"]),  # type: ignore[arg-type]
        "measured_s": secs,
        "streams": run.goodput_streams or sum(not st.retired for st in run.streams),
        "retransmits": out["retransmits"],
        "rtt_idle_ms": idle,
        "rtt_loaded_ms": loaded,
        "rtt_loaded_p95_ms": stats.percentile(pinger.loaded_ms, 95),
        "stable": out["stop"] == "stable",
        "windows": len(run.est.windows),
        "stop": out["stop"],
        "endpoint_limited": run.endpoint_limited,
    }
    if idle is not None and loaded is not None:
        fields["bufferbloat_ms"] = max(0.0, loaded - idle)
        fields["bufferbloat_grade"] = bufferbloat_grade(max(0.0, loaded - idle))
    fields.update(rpm_fields(run, pinger))
    return Record("throughput", {**tags, "result": "ok"}, fields)  # type: ignore[arg-type]


def rpm_fields(run: _Run, pinger: Pinger) -> dict[str, object]:
    """The RPM fields of one direction (``rpm_confidence`` only, ``low``, without probes)."""
    if run.prober is None:
        return {"rpm_confidence": "low"}
    t_end = time.monotonic()
    probes, t0 = run.rpm_probes(pinger, t_end)
    full = t0 >= run.ramp_end
    res = rpm.responsiveness(probes)
    out: dict[str, object] = {
        "rpm_probes_foreign": probes.foreign,
        "rpm_probes_self": probes.own,
        "rpm_probes_failed": run.prober.failed,
        "rpm_probes_retransmitted": pinger.retransmitted,
        "rpm_goodput_stable": run.goodput_stable,
    }
    if res is None:
        out["rpm_confidence"] = "low"
        return out
    post = run.prober.probes.since(run.ramp_end)
    post.http_s = [x for x in pinger.self_probes() if x[0] >= run.ramp_end]
    stable = full and rpm.rpm_stable(post, run.ramp_end, t_end)
    out.update(
        rpm=res.rpm,
        rpm_loaded_ms=60000 / res.rpm,
        rpm_foreign=res.foreign_rpm,
        rpm_self=res.self_rpm,
        rpm_foreign_tcp_ms=res.tcp_f_ms,
        rpm_foreign_http_ms=res.http_f_ms,
        rpm_self_ms=res.http_s_ms,
        rpm_stable=stable,
        rpm_confidence=rpm.confidence(
            run.goodput_stable and full, stable, probes.foreign, probes.own
        ),
    )
    if res.tls_f_ms is not None:
        out["rpm_foreign_tls_ms"] = res.tls_f_ms
    return out


def _hostport(u: SplitResult) -> str:
    """``host:port`` for the Host header and the ``target`` tag (IPv6 in brackets)."""
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _target_tag(spec: Spec) -> str:
    return _hostport(urlsplit(spec.target))


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Adaptive multi-stream HTTP speed test against `netready serve`, with loaded latency."""
    ep = Endpoint.from_spec(spec)  # SecretError (ConfigError) if the token cannot be read
    if spec.congestion_control and (why := wire.congestion_control_problem(spec.congestion_control)):
        raise ConfigError(f"--congestion-control: {why}")
    directions = ["down", "up"] if spec.direction == "both" else [spec.direction]
    cap_total = budget.test_cap_bytes(ctx, spec.max_mb)
    tags = {**ctx.tags, "target": _target_tag(spec), "method": "http"}
    progress = ctx.note if ctx.progress else None
    out: list[Record] = []
    used = 0
    test_id = secrets.token_hex(8)  # one test at the endpoint, both directions
    for i, d in enumerate(directions):
        # each remaining direction gets an equal share of what is left of the cap
        cap = (cap_total - used) // (len(directions) - i)
        rec = await measure_direction(spec, ep, d, cap, tags, progress, test_id)
        used += int(rec.fields.get("bytes", 0))
        out.append(rec)
    return out


PLUGIN = Plugin(
    kind="probe",
    name="throughput",
    spec=Spec,
    run=run,
    measurement="throughput",
    method="http",
    summary="Adaptive multi-stream HTTP speed test against `netready serve`: goodput down and "
    "up with loaded latency (bufferbloat).",
    heavy=True,
    interval_s=21600.0,
    traffic=budget.tcp_bytes_traffic,
    fields=(
        Metric("goodput_mbps", "Mbit/s", "HTTP payload rate over the stable windows, Mbit/s (1e6)"),
        Metric("bytes", "bytes", "payload bytes moved in this direction (received for down, "
               "acknowledged by the endpoint for up)"),
        Metric("duration_s", "s", "time from the first request to the stop"),
        Metric("measured_s", "s", "length of the windows goodput_mbps is computed over"),
        Metric("streams", "connections", "parallel TCP connections at the end"),
        Metric("retransmits", "segments", "TCP segments retransmitted by the sender (TCP_INFO "
               "tcpi_total_retrans; the endpoint's for down, ours for up)"),
        Metric("rtt_idle_ms", "ms", "median /ping round trip before the transfer"),
        Metric("rtt_loaded_ms", "ms", "median /ping round trip during the transfer"),
        Metric("rtt_loaded_p95_ms", "ms", "95th percentile of the same"),
        Metric("bufferbloat_ms", "ms", "rtt_loaded_ms - rtt_idle_ms"),
        Metric("bufferbloat_grade", "A-F", "grade from bufferbloat_ms: A < 30, B < 60, C < 200, "
               "D < 400, F"),
        Metric("stable", "bool", "the stop rule was met (false: a cap ended the test first)"),
        Metric("windows", "windows", "measurement windows taken, ramp-up included"),
        Metric("stop", "text", "why it stopped: stable, time_cap, byte_cap"),
        Metric("endpoint_limited", "bool", "the endpoint's per-client rate limit throttled this "
               "test: the figure is that limit, not the line's capacity"),
        Metric("rpm", "RPM", "responsiveness under load (draft-ietf-ippm-responsiveness): mean "
               "of rpm_foreign and rpm_self, round trips per minute"),
        Metric("rpm_loaded_ms", "ms", "the loaded round trip the RPM implies, 60000 / rpm"),
        Metric("rpm_foreign", "RPM", "60000 / mean of the trimmed means of the foreign probes' "
               "TCP connect, TLS handshake (https only) and HTTP GET times"),
        Metric("rpm_self", "RPM", "60000 / trimmed mean of the self probes (GET /ping on the "
               "test's warm connection)"),
        Metric("rpm_foreign_tcp_ms", "ms", "95 % trimmed mean of the foreign TCP connect times "
               "(the kernel's handshake RTT; a retransmitted SYN's full wait)"),
        Metric("rpm_foreign_tls_ms", "ms", "95 % trimmed mean of the foreign TLS handshakes "
               "(https endpoints only)"),
        Metric("rpm_foreign_http_ms", "ms", "95 % trimmed mean of the foreign GET /ping times"),
        Metric("rpm_self_ms", "ms", "95 % trimmed mean of the self probes"),
        Metric("rpm_probes_foreign", "probes", "foreign probes the RPM is computed over"),
        Metric("rpm_probes_self", "probes", "self probes the RPM is computed over"),
        Metric("rpm_probes_retransmitted", "probes", "loaded self probes left out because TCP "
               "sent their request or reply twice (they timed loss repair, not the queue)"),
        Metric("rpm_probes_failed", "probes", "foreign probes that failed (a lost SYN on a "
               "saturated line, a refusal)"),
        Metric("rpm_goodput_stable", "bool", "goodput met the draft's stability rule (the "
               "standard deviation of the last 4 one-second moving averages under 5 %)"),
        Metric("rpm_stable", "bool", "the RPM met the same rule over its own 1 s intervals"),
        Metric("rpm_confidence", "text", "high (goodput and RPM stable, >= 20 probes of each "
               "kind), medium (goodput stable, >= 5 of each), low"),
    ),
)  # fmt: skip
