"""``netready serve``: the self-hosted speed-test endpoint (aiohttp), never an open bandwidth source.

Run it at the central site or on HSCN; site agents run the ``throughput`` probe against it::

    NETREADY_SPEED_TOKEN=... netready serve --listen 0.0.0.0:8443 --token env:NETREADY_SPEED_TOKEN \
        --tls-cert cert.pem --tls-key key.pem

Plain HTTP is allowed on a loopback address; on any other it needs ``--allow-plain-http``,
because every request carries the bearer token and plain HTTP shows it to the path.

Wire contract (HTTP/1.1, keep-alive and pipelining allowed; every request needs
``Authorization: Bearer <token>``, compared in constant time). Its names (paths, query
parameters, the ``/ping`` reply, the bearer header, TCP_INFO decoding) are defined once in
``probes/throughput/wire.py``, which the throughput probe imports too:

``GET /download?bytes=N[&test=ID]``
    200 with exactly N bytes of incompressible data (``Content-Length: N``), generated once at
    start-up from ``os.urandom`` and streamed from memory; nothing is stored per request.
``POST /upload[?test=ID]``
    Reads and discards the body (``Content-Length`` or chunked); 200 ``{"bytes": n}``.
``GET /ping[?test=ID]``
    200 JSON ``{"t": server monotonic s, "rx_bytes", "rx_t", "tx_bytes", "retransmits",
    "tx_delivered", "tx_t", "throttled", "conn_retransmits"}``: the
    counters of test ``ID`` (zeros if unknown). ``rx_t`` is the server's monotonic time of the
    last upload byte, so a client can compute the upload rate from the server's own clock.
    ``retransmits`` sums ``tcpi_total_retrans`` (TCP_INFO) over the test's connections;
    ``tx_delivered`` is the download data the client has acknowledged or SACKed
    (``delivered_bytes``) and ``tx_t`` the time of the last ACK. ``throttled`` is true when
    the client's rate limit made the endpoint wait in the last second: the endpoint, not the
    line, is then the bottleneck. ``conn_retransmits`` is ``tcpi_total_retrans`` of the
    connection the reply goes out on (the probe leaves out a loaded ping whose reply was
    sent twice: it timed TCP's loss repair, not the queue).

``test`` is a client-chosen id (``[A-Za-z0-9_-]{1,64}``) grouping the parallel connections of
one test; a request without one is a test of its own.

Refusals: no, wrong or malformed token -> 401 (``WWW-Authenticate: Bearer``); unknown path
-> 404, wrong method -> 405 (both only with the token); over a per-client limit -> 429 with
``Retry-After`` (seconds). Limits are per client (a source address; for IPv6 its /64, the
block one host gets): bit rate (token bucket shared by all its connections), bytes per rolling
window, concurrent tests, connections per test, bytes per request, ping rate. A body that runs
past the client's byte allowance is cut off (connection closed).

Connections, before any byte of a request is read (so before the token is checked):

- at most ``max_connections`` open per client, and in all the open files limit less 128
  (``total_connection_cap``), so the process seldom runs out of descriptors; the next one is
  answered ``429`` (``Retry-After: 5``, ``Connection: close``) and closed as soon as it is
  accepted (a TLS one once its handshake is done);
- a connection must deliver a complete request head within ``idle_timeout_s`` of opening or of
  the end of its previous response, else it is closed: this ends idle keep-alive connections
  and heads sent slowly (slowloris) alike; a TLS handshake gets the same time;
- a download or upload that moves no byte for ``stall_timeout_s`` (the client stopped reading
  or sending) is cut off.

Logs: one line per event, never a traceback for anything a client sends; paths are logged
with control characters escaped; lines about one client and one kind of event are held to one
per 10 s (the next says how many were held back).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from netready.probes.throughput import wire
from netready.probes.throughput.wire import (
    PATH_CONFIG,
    PATH_DOWNLOAD,
    PATH_PING,
    PATH_UPLOAD,
    tcp_info,
)
from netready.servers.guard import Bucket, CountedLog, is_loopback
from netready.servers.metrics import Snapshot

from netready import platform
from netready.errors import ConfigError, ServerError
from netready.optional import require

require("aiohttp", "netready serve")
from aiohttp import web  # noqa: E402

log = logging.getLogger("netready.serve")

CHUNK = 64 * 1024
PATTERN_BYTES = 1 << 20  # 1 MiB of random bytes, reused for every download
TEST_LINGER_S = 1.0  # a test stays "active" this long after its last connection ends
QUIET_S = 10.0  # lines about one client and one kind of event: at most one this often


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Per-client limits (a client is a source IP address)."""

    max_rate_mbps: float | None = 1000.0  # bit rate across all of a client's connections
    max_bytes: int = 2_000_000_000  # bytes (both directions) per rolling window
    window_s: float = 86_400.0
    max_tests: int = 1  # concurrent tests per client
    max_streams: int = 16  # concurrent data connections per test
    max_request_bytes: int = 500_000_000  # one download / upload request
    max_pings_per_s: float = 50.0
    #: open connections per client, counted on accept (a probe uses up to 32 data + 1 ping)
    max_connections: int = 40
    #: a complete request head within this long of opening / of the previous response
    idle_timeout_s: float = 15.0
    #: a download or upload moving no byte this long is cut off
    stall_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_rate_mbps is not None and self.max_rate_mbps <= 0:
            raise ValueError("max_rate_mbps must be > 0")
        for name in (
            "max_bytes",
            "max_tests",
            "max_streams",
            "max_request_bytes",
            "max_connections",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("window_s", "max_pings_per_s", "idle_timeout_s", "stall_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


@dataclass
class TestState:
    streams: int = 0
    rx_bytes: int = 0
    rx_t: float = 0.0
    tx_bytes: int = 0
    last_active: float = field(default_factory=time.monotonic)
    retrans: dict[int, int] = field(default_factory=dict)  # connection id -> total_retrans
    delivered: dict[int, int] = field(default_factory=dict)  # connection id -> bytes delivered
    last_ack: float = 0.0  # monotonic time of the last ACK on any of the test's connections
    socks: dict[int, socket.socket] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        return self.streams > 0 or now - self.last_active < TEST_LINGER_S

    def _read(self, key: int, s: socket.socket, now: float) -> None:
        info = tcp_info(s)
        if not info:
            return
        if "total_retrans" in info:
            self.retrans[key] = info["total_retrans"]
        if "delivered" in info:
            self.delivered[key] = wire.delivered_bytes(info)
            self.last_ack = max(self.last_ack, now - info["last_ack_recv_ms"] / 1000)

    def refresh(self) -> None:
        """Update the counters from TCP_INFO of the test's open connections."""
        now = time.monotonic()
        for k, s in list(self.socks.items()):
            self._read(k, s, now)


@dataclass
class ClientState:
    bucket: Bucket | None  # bytes/s across all the client's connections (None: no limit)
    pings: Bucket
    window_start: float = field(default_factory=time.monotonic)
    used: int = 0  # bytes in the current window (reserved for downloads in progress)
    tests: dict[str, TestState] = field(default_factory=dict)
    throttled_at: float = -1e9  # monotonic time the rate limit last made a transfer wait

    async def pace(self, nbytes: int) -> None:
        """Spend ``nbytes`` of the rate limit; sleep off the debt when it runs dry."""
        if self.bucket is None:
            return
        now = time.monotonic()
        wait = self.bucket.borrow(nbytes, now)
        if wait > 0:
            self.throttled_at = now
            await asyncio.sleep(wait)


class Refused(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after
        self.headers = headers or {}


# --------------------------------------------------------------------------- hostile input


def printable(text: str, limit: int = 200) -> str:
    """``text`` made safe for one log line: control characters, other non-ASCII and the
    backslash as Python escapes (``\\n``, ``\\x1b``, ``\\udcff``), cut at ``limit``
    characters. A client cannot start a line of its own or colour a terminal with it."""
    cut = len(text) > limit
    out = text[:limit].encode("unicode_escape").decode("ascii")
    return out + "..." if cut else out


def client_key(ip: str) -> str:
    """What per-client limits count by: the address; for IPv6 its /64 (one host's block,
    so a host cannot pick a fresh address per connection); IPv4-mapped IPv6 as IPv4."""
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(a, ipaddress.IPv6Address):
        if a.ipv4_mapped is not None:
            return str(a.ipv4_mapped)
        return str(ipaddress.IPv6Network((a, 64), strict=False))
    return str(a)


class _HttpLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's connection handler gets. A request it cannot parse (garbage,
    oversized head, bad chunking) is logged as one escaped INFO line, held back per client
    like the endpoint's own lines, instead of ERROR with a traceback."""

    def __init__(self, speed: SpeedServer):
        super().__init__(log, {})
        self.speed = speed

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        ip = str(args[0]) if args else "?"
        what = f"{type(exc).__name__}: {exc}" if exc is not None else str(msg)
        what = " ".join(what.split())  # aiohttp's parser messages span lines
        self.speed._log(logging.INFO, ip, "bad request", "%s: bad request: %s", ip, printable(what))


#: Listen backlog, which is also how many connections asyncio accepts in one go before
#: any of them is counted.
ACCEPT_BACKLOG = 64
#: File descriptors kept free below the open files limit besides that burst (the process's
#: own files, TLS, logs).
FD_RESERVE = 64


def total_connection_cap() -> int:
    """Open connections the endpoint admits in all: the open files limit less FD_RESERVE
    and one accept burst. Beyond it a connection gets the 429 busy answer when accepted,
    so accept() seldom runs out of descriptors (asyncio 3.11 then spins: it re-arms its
    accept loop once per failed accept, up to a backlog's worth each time); a refused
    connection still holds one for a tick or two, so a flood can exhaust them briefly."""
    soft = platform.open_files_limit()
    if soft is None:  # unlimited, or not known on this OS
        return 1 << 30
    return max(16, soft - FD_RESERVE - ACCEPT_BACKLOG)


_BUSY_BODY = b'{"error": "too many connections"}'
#: The whole answer to a connection over the per-client cap (then it is closed).
BUSY_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
#: Request key: the response's head has been sent (a later error cannot send another).
_STARTED = web.RequestKey("netready.started", bool)


class _Server(web.Server):
    """aiohttp's low-level server, counting open connections per client: one over
    ``Limits.max_connections`` gets ``BUSY_RESPONSE`` and is closed when it is accepted,
    before a byte of it is read. ``connection_made``/``connection_lost`` are the hooks
    aiohttp's connection handler calls on its server."""

    def __init__(self, speed: SpeedServer, **kwargs: Any):
        super().__init__(speed._handle, **kwargs)
        self._speed = speed

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        cc, sock = self._speed.congestion_control, transport.get_extra_info("socket")
        if cc and sock is not None:
            with contextlib.suppress(OSError):  # checked at start-up (SpeedServer)
                wire.set_congestion_control(sock, cc)
        if not self._speed._admit(handler, transport):
            transport.pause_reading()  # not a byte of it is read
            # closed (BUSY_RESPONSE flushed first) once the handler has started: closing
            # before that would end its task on an assertion
            asyncio.get_running_loop().call_soon(handler.force_close)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        self._speed._release(handler)
        super().connection_lost(handler, exc)


class _Site(web.BaseSite):
    """``web.TCPSite`` plus a TLS handshake timeout (asyncio's default is 60 s), so a
    connection that never finishes its handshake holds a file descriptor no longer than
    an idle one."""

    __slots__ = ("_handshake_s", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, ssl_context: Any, handshake_s: float
    ):
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port, self._handshake_s = host, port, handshake_s

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            self._host or None,
            self._port,
            ssl=self._ssl_context,
            backlog=ACCEPT_BACKLOG,
            reuse_address=True,
            ssl_handshake_timeout=self._handshake_s if self._ssl_context else None,
        )

    @property
    def bound_port(self) -> int:
        server: Any = self._server  # an asyncio.Server (create_server)
        socks = server.sockets if server is not None else ()
        return int(socks[0].getsockname()[1]) if socks else self._port


class SpeedServer:
    """The endpoint. ``await start(host, port)`` returns the bound port; ``await close()``."""

    def __init__(
        self, token: str, limits: Limits | None = None, congestion_control: str | None = None
    ):
        """``congestion_control``: the TCP congestion control of its connections (the sender's
        for a download; default: the system's); ValueError if it cannot be used here."""
        if not token or len(token) < 8:
            raise ValueError("the endpoint token must be at least 8 characters")
        if congestion_control and (why := wire.congestion_control_problem(congestion_control)):
            raise ValueError(f"--congestion-control: {why}")
        self.congestion_control = congestion_control
        self._token = token.encode()
        self.limits = limits or Limits()
        self.clients: dict[str, ClientState] = {}
        self.conns: dict[str, int] = {}  # client key -> open connections
        self._conn_of: dict[web.RequestHandler, str] = {}
        self.refusals: dict[int, int] = {}  # status -> count (for tests and logs)
        self.client_gone = 0  # transfers the client ended (closed, or stalled past the limit)
        self.errors = 0  # internal errors (bugs): each logged in one line, answered 500
        self.requests = self.tests = self.rx_bytes = self.tx_bytes = 0  # for /metrics
        self._quiet = CountedLog(log, "speed endpoint", QUIET_S)
        self.max_total = total_connection_cap()
        self._pattern = memoryview(os.urandom(PATTERN_BYTES))
        self._runner: web.ServerRunner | None = None
        self._routes = {
            PATH_DOWNLOAD: ("GET", self._download),
            PATH_UPLOAD: ("POST", self._upload),
            PATH_PING: ("GET", self._ping),
            PATH_CONFIG: ("GET", self._config),
        }

    # -- lifecycle

    async def start(self, host: str, port: int, ssl_context: Any = None) -> int:
        lim = self.limits
        server = _Server(
            self,
            keepalive_timeout=lim.idle_timeout_s,  # not extended by a partial head: see above
            lingering_time=2.0,  # read at most 2 s of a body we refused before closing
            access_log=None,
            logger=_HttpLog(self),
        )
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = _Site(self._runner, host, port, ssl_context, lim.idle_timeout_s)
        await site.start()
        return site.bound_port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def snapshot(self) -> Snapshot:
        """The counters for ``/metrics`` (servers/metrics.py): refusals by HTTP status, a
        test open while one of its connections is."""
        refusals = {f"http_{k}": v for k, v in dict(self.refusals).items()}
        if self.errors:
            refusals["internal_error"] = self.errors
        open_ = sum(
            1 for c in list(self.clients.values()) for t in list(c.tests.values()) if t.streams
        )
        return Snapshot(
            requests=self.requests,
            sessions=self.tests,
            sessions_active=open_,
            refusals=refusals,
            rate_limited=self.refusals.get(429, 0),
            bytes_rx=self.rx_bytes,
            bytes_tx=self.tx_bytes,
        )

    # -- connections and logs

    def _log(self, level: int, ip: str, kind: str, msg: str, *args: object) -> None:
        self._quiet.line(level, (client_key(ip), kind), time.monotonic(), msg, *args)

    def _admit(self, handler: web.RequestHandler, transport: asyncio.Transport) -> bool:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        key, cap = client_key(ip), self.limits.max_connections
        n, total = self.conns.get(key, 0), len(self._conn_of)
        if n >= cap or total >= self.max_total:
            self.refusals[429] = self.refusals.get(429, 0) + 1
            if n >= cap:
                self._log(
                    logging.INFO,
                    ip,
                    "connections",
                    "%s: connection refused: %d open from %s already (at most %d)",
                    ip,
                    n,
                    key,
                    cap,
                )
            else:
                self._log(
                    logging.WARNING,
                    "*",
                    "full",
                    "%s: connection refused: %d open in all (at most %d: the open files "
                    "limit less %d kept in reserve)",
                    ip,
                    total,
                    self.max_total,
                    FD_RESERVE + ACCEPT_BACKLOG,
                )
            transport.write(BUSY_RESPONSE)
            return False
        self.conns[key] = n + 1
        self._conn_of[handler] = key
        return True

    def _release(self, handler: web.RequestHandler) -> None:
        key = self._conn_of.pop(handler, None)
        if key is not None:
            n = self.conns.get(key, 1) - 1
            if n > 0:
                self.conns[key] = n
            else:
                self.conns.pop(key, None)

    def _authorized(self, request: web.BaseRequest) -> bool:
        sent = wire.bearer(request.headers.get("Authorization", ""))
        return sent is not None and hmac.compare_digest(sent, self._token)

    def _gone(self, request: web.BaseRequest, why: str, done: int, total: int | None) -> None:
        """A client ended a transfer early: one INFO line (a probe stops a test this way)."""
        self.client_gone += 1
        ip = request.remote or "?"
        of = f" of {total}" if total is not None else ""
        self._log(
            logging.INFO,
            ip,
            "gone",
            "%s %s %s: %s after %d%s bytes",
            ip,
            request.method,
            printable(request.raw_path),
            why,
            done,
            of,
        )

    def _cut(self, request: web.BaseRequest) -> None:
        if request.transport is not None:
            request.transport.abort()

    # -- helpers

    def _client(self, request: web.BaseRequest) -> ClientState:
        ip = client_key(request.remote or "?")
        c = self.clients.get(ip)
        if c is None:
            lim = self.limits
            bucket = None
            if lim.max_rate_mbps:
                rate = lim.max_rate_mbps * 1e6 / 8
                bucket = Bucket.full(rate, max(rate * 0.02, CHUNK), time.monotonic())
            pings = Bucket.full(lim.max_pings_per_s, lim.max_pings_per_s, time.monotonic())
            c = ClientState(bucket, pings)
            self.clients[ip] = c
        now = time.monotonic()
        if now - c.window_start >= self.limits.window_s:
            c.window_start, c.used = now, 0
        return c

    @staticmethod
    def _test_id(request: web.BaseRequest) -> str | None:
        tid = request.query.get(wire.Q_TEST)
        if tid is None:
            return None
        if not wire.TEST_ID_RE.match(tid):
            raise Refused(400, "test id must be 1-64 letters, digits, '_' or '-'")
        return tid

    def _open_stream(self, c: ClientState, tid: str | None, nbytes: int) -> tuple[str, TestState]:
        """Admit one data connection of test ``tid`` that may move ``nbytes``; reserve them."""
        lim, now = self.limits, time.monotonic()
        if tid is None:
            tid = f"_anon{id(object())}{now}"
        for k in [k for k, t in c.tests.items() if not t.active(now)]:
            del c.tests[k]
        t = c.tests.get(tid)
        if t is None and len(c.tests) >= lim.max_tests:
            raise Refused(429, f"at most {lim.max_tests} concurrent test(s) per client", 5)
        if t is not None and t.streams >= lim.max_streams:
            raise Refused(429, f"at most {lim.max_streams} connections per test", 1)
        if c.used + nbytes > lim.max_bytes:
            left = lim.window_s - (now - c.window_start)
            raise Refused(
                429, f"byte allowance of {lim.max_bytes} per {lim.window_s:g} s used", max(1, left)
            )
        if t is None:
            t = c.tests[tid] = TestState()
            self.tests += 1
        t.streams += 1
        t.last_active = now
        c.used += nbytes
        return tid, t

    def _track(self, request: web.BaseRequest, t: TestState) -> int:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        key = id(request.transport)
        if sock is not None:
            t.socks[key] = sock
        return key

    def _untrack(self, t: TestState, key: int) -> None:
        # The socket stays in t.socks: between two pipelined requests its counters still
        # move, and a stale count would skew the client's rate windows. Once the connection
        # is closed, TCP_INFO fails and the last values read are kept.
        s = t.socks.get(key)
        if s is not None:
            t._read(key, s, time.monotonic())
        t.streams -= 1
        t.last_active = time.monotonic()

    # -- dispatch and handlers

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Token first (401 for any path without it), then path and method, then the handler."""
        self.requests += 1
        try:
            if not self._authorized(request):
                raise Refused(401, "missing or wrong bearer token")
            route = self._routes.get(request.path)
            if route is None:
                raise Refused(404, "no such path")
            method, handler = route
            if request.method != method:
                raise Refused(405, f"use {method}", headers={"Allow": method})
            return await handler(request)
        except Refused as r:
            return self._refuse(request, r)
        except Exception as e:  # a bug of ours: one line, never a traceback at a client's say
            self.errors += 1
            ip = request.remote or "?"
            self._log(
                logging.ERROR,
                ip,
                "error",
                "%s %s %s: internal error: %s",
                ip,
                request.method,
                printable(request.raw_path),
                printable(f"{type(e).__name__}: {e}"),
            )
            if request.get(_STARTED):
                self._cut(request)  # the head is out: no other answer can follow
            return web.json_response(
                {"error": "internal error"}, status=500, headers={"Connection": "close"}
            )

    def _refuse(self, request: web.BaseRequest, r: Refused) -> web.StreamResponse:
        self.refusals[r.status] = self.refusals.get(r.status, 0) + 1
        ip = request.remote or "?"
        self._log(
            logging.INFO,
            ip,
            f"refused {r.status}",
            "%s %s %s: %d %s",
            ip,
            request.method,
            printable(request.raw_path),
            r.status,
            r.reason,
        )
        headers = dict(r.headers)
        if request.method == "POST":
            headers["Connection"] = "close"
        if r.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="netready"'
        if r.retry_after is not None:
            headers["Retry-After"] = str(int(r.retry_after + 0.999))
        return web.json_response({"error": r.reason}, status=r.status, headers=headers)

    async def _download(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            n = int(request.query.get(wire.Q_BYTES, ""))
        except ValueError:
            raise Refused(400, "bytes=N is required (a positive integer)") from None
        if not 0 < n <= self.limits.max_request_bytes:
            raise Refused(400, f"bytes must be 1..{self.limits.max_request_bytes}")
        c = self._client(request)
        _, t = self._open_stream(c, self._test_id(request), n)
        key = self._track(request, t)
        sent = 0
        stall = self.limits.stall_timeout_s
        resp = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
        )
        resp.content_length = n
        try:
            pat, off = self._pattern, 0
            try:
                async with asyncio.timeout(stall):
                    await resp.prepare(request)
                request[_STARTED] = True
                while sent < n:
                    k = min(CHUNK, n - sent, PATTERN_BYTES - off)
                    await c.pace(k)
                    async with asyncio.timeout(stall):  # the client stopped reading
                        await resp.write(pat[off : off + k])
                    sent += k
                    t.tx_bytes += k
                    self.tx_bytes += k
                    off = (off + k) % PATTERN_BYTES
                async with asyncio.timeout(stall):
                    await resp.write_eof()
            except ConnectionError:
                # the client hung up (a probe stops a test by closing its connections)
                self._gone(request, "client closed the connection", sent, n)
            except TimeoutError:
                self._gone(request, f"client read nothing for {stall:g} s; cut off", sent, n)
                self._cut(request)
            return resp
        finally:
            c.used -= n - sent  # refund what was reserved but never sent
            self._untrack(t, key)

    async def _upload(self, request: web.BaseRequest) -> web.StreamResponse:
        c = self._client(request)
        lim = self.limits
        declared = request.content_length
        if declared is not None and declared > lim.max_request_bytes:
            raise Refused(413, f"upload larger than {lim.max_request_bytes} bytes")
        reserve = declared if declared is not None else 0
        _, t = self._open_stream(c, self._test_id(request), reserve)
        key = self._track(request, t)
        got = 0
        stall = lim.stall_timeout_s
        try:
            while True:
                try:
                    async with asyncio.timeout(stall):  # the client stopped sending
                        chunk = await request.content.readany()
                except (ConnectionError, web.RequestPayloadError):
                    self._gone(request, "client closed the connection", got, declared)
                    return web.Response(status=204)  # nobody is there to read it
                except TimeoutError:
                    self._gone(
                        request, f"client sent nothing for {stall:g} s; cut off", got, declared
                    )
                    self._cut(request)
                    return web.Response(status=204)
                if not chunk:
                    break
                k = len(chunk)
                got += k
                t.rx_bytes += k
                self.rx_bytes += k
                t.rx_t = time.monotonic()
                if got > reserve:
                    c.used += k if got - k >= reserve else got - reserve
                if got > lim.max_request_bytes or c.used > lim.max_bytes:
                    self._cut(request)
                    raise Refused(429, "byte allowance used", lim.window_s)
                await c.pace(k)
            if declared is not None and got < declared:
                self._gone(request, "client closed the connection", got, declared)
                return web.Response(status=204)
            return web.json_response({"bytes": got})
        finally:
            if got < reserve:
                c.used -= reserve - got
            self._untrack(t, key)

    async def _config(self, request: web.BaseRequest) -> web.StreamResponse:
        """The draft's configuration answer (``wire.config_body``), on the URL it was asked."""
        c = self._client(request)
        if not c.pings.take(1, time.monotonic()):
            raise Refused(429, f"at most {self.limits.max_pings_per_s:g} pings/s", 1)
        base = f"{request.scheme}://{request.host}"
        return web.json_response(wire.config_body(base), headers={"Cache-Control": "no-store"})

    async def _ping(self, request: web.BaseRequest) -> web.StreamResponse:
        c = self._client(request)
        if not c.pings.take(1, time.monotonic()):
            raise Refused(429, f"at most {self.limits.max_pings_per_s:g} pings/s", 1)
        tid = self._test_id(request)
        t = c.tests.get(tid) if tid else None
        now = time.monotonic()
        throttled = now - c.throttled_at < 1.0
        info = tcp_info(request.transport.get_extra_info("socket") if request.transport else None)
        own = info["total_retrans"] if info else 0
        body = wire.ping_reply(now, throttled, conn_retransmits=own)
        if t is not None:
            t.refresh()
            body = wire.ping_reply(
                now,
                throttled,
                rx_bytes=t.rx_bytes,
                rx_t=t.rx_t,
                tx_bytes=t.tx_bytes,
                retransmits=sum(t.retrans.values()),
                tx_delivered=sum(t.delivered.values()),
                tx_t=t.last_ack,
                conn_retransmits=own,
            )
        return web.json_response(body, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- start-up


def _hostport(listen: str) -> tuple[str, int]:
    from netready.inventory import split_hostport

    try:
        return split_hostport(listen)
    except ValueError as e:
        raise ConfigError(f"--listen {e}") from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_NO_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _loop_errors(quiet: CountedLog) -> Any:
    """asyncio's exception handler, but a failed accept() for want of file descriptors (under
    a connection flood) is one WARNING line at most every 10 s, not a traceback a second."""

    soft = platform.open_files_limit() or -1

    def handler(loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        if "_start_serving" in str(ctx.get("message", "")) and isinstance(exc, ValueError):
            return  # an accept retry asyncio had queued, firing after the server closed
        if isinstance(exc, OSError) and exc.errno in _NO_FDS:
            quiet.line(
                logging.WARNING,
                ("accept", "no fds"),
                time.monotonic(),
                "cannot accept connections: %s (open files limit %d); retrying",
                exc.strerror,
                soft,
            )
            return
        loop.default_exception_handler(ctx)

    return handler


async def serve_forever(
    server: SpeedServer,
    host: str,
    port: int,
    ssl_context: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_errors(server._quiet))
    stop = stop or asyncio.Event()
    with contextlib.suppress(RuntimeError, ValueError):  # not the main thread: the caller stops us
        platform.on_stop_signals(loop, stop.set)  # before we say we listen
    try:
        bound = await server.start(host, port, ssl_context)
    except OSError as e:
        await server.close()
        raise ServerError(f"cannot listen on {_url_host(host)}:{port}: {e.strerror or e}") from None
    try:
        scheme = "https" if ssl_context is not None else "http"
        log.info("listening on %s://%s:%d", scheme, _url_host(host), bound)
        await stop.wait()
    finally:
        await server.close()


@dataclass
class Endpoint:
    """A speed endpoint ready to run: ``asyncio.run(serve_forever(*endpoint.args()))``."""

    server: SpeedServer
    host: str
    port: int
    ssl_context: Any = None

    def args(self) -> tuple[SpeedServer, str, int, Any]:
        return self.server, self.host, self.port, self.ssl_context


def endpoint(
    listen: str,
    token: str,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    allow_plain_http: bool = False,
    congestion_control: str | None = None,
    **limits: Any,
) -> Endpoint:
    """Everything ``netready serve`` checks before it listens: plain HTTP only on loopback
    (unless ``allow_plain_http``: the bearer token travels in every request), the token
    reference (``env:NAME``/``file:PATH``, never inline), the ``Limits`` (keyword arguments),
    the TLS pair, the congestion control. ``ConfigError`` (bad input) or ``ServerError`` (TLS files that do not load)."""
    from netready.inventory import HeaderSecretRef

    host, port = _hostport(listen)
    if not (tls_cert or tls_key or allow_plain_http or is_loopback(host)):
        raise ConfigError(
            f"--listen {listen}: plain HTTP on a non-loopback address shows the bearer "
            "token to anyone on the path; give --tls-cert and --tls-key, or "
            "--allow-plain-http on a network you trust"
        )
    try:
        secret = HeaderSecretRef.check(token).resolve()
        server = SpeedServer(secret, Limits(**limits), congestion_control)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Endpoint(server, host, port, tls_context(tls_cert, tls_key))


def tls_context(tls_cert: str | None, tls_key: str | None) -> Any:
    """The server's TLS context for ``--tls-cert``/``--tls-key`` (None for neither):
    ``ConfigError`` for one without the other, ``ServerError`` for files that do not load.
    The HTTP servers' one TLS set-up (this endpoint and ``servers/config.py``)."""
    if not (tls_cert or tls_key):
        return None
    if not (tls_cert and tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ServerError(f"cannot load {tls_cert}/{tls_key}: {e}") from None
    return ctx
