"""``netready serve``: the self-hosted speed-test endpoint (aiohttp), never an open bandwidth source.

Run it at the central site or on HSCN; site agents run the ``throughput`` probe against it::

    NETREADY_SPEED_TOKEN=... netready serve --listen 0.0.0.0:8080 --token env:NETREADY_SPEED_TOKEN

Wire contract (HTTP/1.1, keep-alive and pipelining allowed; every request needs
``Authorization: Bearer <token>``, compared in constant time):

``GET /download?bytes=N[&test=ID]``
    200 with exactly N bytes of incompressible data (``Content-Length: N``), generated once at
    start-up from ``os.urandom`` and streamed from memory; nothing is stored per request.
``POST /upload[?test=ID]``
    Reads and discards the body (``Content-Length`` or chunked); 200 ``{"bytes": n}``.
``GET /ping[?test=ID]``
    200 JSON ``{"t": server monotonic s, "rx_bytes", "rx_t", "tx_bytes", "retransmits",
    "tx_delivered", "tx_t", "throttled"}``: the
    counters of test ``ID`` (zeros if unknown). ``rx_t`` is the server's monotonic time of the
    last upload byte, so a client can compute the upload rate from the server's own clock.
    ``retransmits`` sums ``tcpi_total_retrans`` (TCP_INFO) over the test's connections;
    ``tx_delivered`` is the download data the client has acknowledged or SACKed
    (``delivered_bytes``) and ``tx_t`` the time of the last ACK. ``throttled`` is true when
    the client's rate limit made the endpoint wait in the last second: the endpoint, not the
    line, is then the bottleneck.

``test`` is a client-chosen id (``[A-Za-z0-9_-]{1,64}``) grouping the parallel connections of
one test; a request without one is a test of its own.

Refusals: no or wrong token -> 401 (``WWW-Authenticate: Bearer``); over a per-client limit
-> 429 with ``Retry-After`` (seconds). Limits are per client address: bit rate (token bucket
shared by all its connections), bytes per rolling window, concurrent tests, connections per
test, bytes per request, ping rate. A body that runs past the client's byte allowance is cut
off (connection closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import click
from aiohttp import web

log = logging.getLogger("netready.serve")

PATH_DOWNLOAD = "/download"
PATH_UPLOAD = "/upload"
PATH_PING = "/ping"
TEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHUNK = 64 * 1024
PATTERN_BYTES = 1 << 20  # 1 MiB of random bytes, reused for every download
TEST_LINGER_S = 1.0  # a test stays "active" this long after its last connection ends


# --------------------------------------------------------------------------- TCP_INFO

# Offsets in Linux ``struct tcp_info`` (include/uapi/linux/tcp.h); all stable since 4.x.
_TCPI_LEN = 232
_TCPI = {
    "snd_mss": (16, "I"),
    "rcv_mss": (20, "I"),
    "sacked": (28, "I"),
    "last_data_recv_ms": (52, "I"),
    "last_ack_recv_ms": (56, "I"),
    "rtt_us": (68, "I"),
    "total_retrans": (100, "I"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "data_segs_in": (152, "I"),
    "delivered": (192, "I"),
}


def tcp_info(sock: socket.socket | None) -> dict[str, int] | None:
    """A few TCP_INFO fields of a connected TCP socket, or ``None`` where the OS has none."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_LEN)
    except OSError:
        return None
    out = {}
    for name, (off, fmt) in _TCPI.items():
        size = struct.calcsize(fmt)
        if len(raw) >= off + size:
            out[name] = struct.unpack_from("=" + fmt, raw, off)[0]
    return out


def delivered_bytes(info: dict[str, int]) -> int:
    """Bytes a TCP sender knows reached the receiver: cumulatively acknowledged bytes (exact)
    plus segments SACKed beyond a hole (``tcpi_sacked`` x MSS, estimated). Unlike in-order
    counts this does not stall during loss recovery; unlike ``tcpi_delivered`` x MSS it is
    not inflated by short segments."""
    return info["bytes_acked"] + info.get("sacked", 0) * info["snd_mss"]


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

    def __post_init__(self) -> None:
        if self.max_rate_mbps is not None and self.max_rate_mbps <= 0:
            raise ValueError("max_rate_mbps must be > 0")
        for name in ("max_bytes", "max_tests", "max_streams", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.window_s <= 0 or self.max_pings_per_s <= 0:
            raise ValueError("window_s and max_pings_per_s must be > 0")


class TokenBucket:
    """Bytes per second with a burst of ``burst`` bytes; ``take`` sleeps until allowed."""

    def __init__(self, rate_Bps: float, burst: float):
        self.rate, self.burst = rate_Bps, burst
        self.tokens, self.t = burst, time.monotonic()
        self.throttled_at = -1e9  # monotonic time a caller last had to wait

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    def try_take(self, n: float) -> bool:
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    async def take(self, n: float) -> None:
        self._refill()
        self.tokens -= n  # may go negative: the debt is slept off
        if self.tokens < 0:
            self.throttled_at = time.monotonic()
            await asyncio.sleep(-self.tokens / self.rate)


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
            self.delivered[key] = delivered_bytes(info)
            self.last_ack = max(self.last_ack, now - info["last_ack_recv_ms"] / 1000)

    def refresh(self) -> None:
        """Update the counters from TCP_INFO of the test's open connections."""
        now = time.monotonic()
        for k, s in list(self.socks.items()):
            self._read(k, s, now)


@dataclass
class ClientState:
    bucket: TokenBucket | None
    pings: TokenBucket
    window_start: float = field(default_factory=time.monotonic)
    used: int = 0  # bytes in the current window (reserved for downloads in progress)
    tests: dict[str, TestState] = field(default_factory=dict)


class Refused(Exception):
    def __init__(self, status: int, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.status, self.reason, self.retry_after = status, reason, retry_after


class SpeedServer:
    """The endpoint. ``await start(host, port)`` returns the bound port; ``await close()``."""

    def __init__(self, token: str, limits: Limits | None = None):
        if not token or len(token) < 8:
            raise ValueError("the endpoint token must be at least 8 characters")
        self._token = token.encode()
        self.limits = limits or Limits()
        self.clients: dict[str, ClientState] = {}
        self.refusals: dict[int, int] = {}  # status -> count (for tests and logs)
        self._pattern = memoryview(os.urandom(PATTERN_BYTES))
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get(PATH_DOWNLOAD, self._download)
        self.app.router.add_post(PATH_UPLOAD, self._upload)
        self.app.router.add_get(PATH_PING, self._ping)

    # -- lifecycle

    async def start(self, host: str, port: int, ssl_context: Any = None) -> int:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        server: Any = site._server  # the asyncio Server: read the real port when port=0
        sock = server.sockets[0] if server is not None and server.sockets else None
        return int(sock.getsockname()[1]) if sock else port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- helpers

    def _client(self, request: web.Request) -> ClientState:
        ip = request.remote or "?"
        c = self.clients.get(ip)
        if c is None:
            lim = self.limits
            bucket = None
            if lim.max_rate_mbps:
                rate = lim.max_rate_mbps * 1e6 / 8
                bucket = TokenBucket(rate, max(rate * 0.02, CHUNK))
            c = ClientState(bucket, TokenBucket(lim.max_pings_per_s, lim.max_pings_per_s))
            self.clients[ip] = c
        now = time.monotonic()
        if now - c.window_start >= self.limits.window_s:
            c.window_start, c.used = now, 0
        return c

    @staticmethod
    def _test_id(request: web.Request) -> str | None:
        tid = request.query.get("test")
        if tid is None:
            return None
        if not TEST_ID_RE.match(tid):
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
        t.streams += 1
        t.last_active = now
        c.used += nbytes
        return tid, t

    def _track(self, request: web.Request, t: TestState) -> int:
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

    # -- middleware and handlers

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        got = request.headers.get("Authorization", "")
        scheme, _, cred = got.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode(), self._token)
        try:
            if not ok:
                raise Refused(401, "missing or wrong bearer token")
            return await handler(request)
        except Refused as r:
            self.refusals[r.status] = self.refusals.get(r.status, 0) + 1
            log.info(
                "%s %s %s: %d %s", request.remote, request.method, request.path, r.status, r.reason
            )
            headers = {"Connection": "close"} if request.method == "POST" else {}
            if r.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="netready"'
            if r.retry_after is not None:
                headers["Retry-After"] = str(int(r.retry_after + 0.999))
            return web.json_response({"error": r.reason}, status=r.status, headers=headers)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        try:
            n = int(request.query.get("bytes", ""))
        except ValueError:
            raise Refused(400, "bytes=N is required (a positive integer)") from None
        if not 0 < n <= self.limits.max_request_bytes:
            raise Refused(400, f"bytes must be 1..{self.limits.max_request_bytes}")
        c = self._client(request)
        _, t = self._open_stream(c, self._test_id(request), n)
        key = self._track(request, t)
        sent = 0
        try:
            resp = web.StreamResponse(
                headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
            )
            resp.content_length = n
            await resp.prepare(request)
            pat, off = self._pattern, 0
            try:
                while sent < n:
                    k = min(CHUNK, n - sent, PATTERN_BYTES - off)
                    if c.bucket is not None:
                        await c.bucket.take(k)
                    await resp.write(pat[off : off + k])
                    sent += k
                    t.tx_bytes += k
                    off = (off + k) % PATTERN_BYTES
                await resp.write_eof()
            except ConnectionResetError:
                pass  # the client hung up (it stops a test by closing its connections)
            return resp
        finally:
            c.used -= n - sent  # refund what was reserved but never sent
            self._untrack(t, key)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        c = self._client(request)
        lim = self.limits
        declared = request.content_length
        if declared is not None and declared > lim.max_request_bytes:
            raise Refused(413, f"upload larger than {lim.max_request_bytes} bytes")
        reserve = declared if declared is not None else 0
        _, t = self._open_stream(c, self._test_id(request), reserve)
        key = self._track(request, t)
        got = 0
        try:
            while True:
                try:
                    chunk = await request.content.readany()
                except ConnectionResetError:
                    return web.Response(status=204)  # the client hung up: the test is over
                if not chunk:
                    break
                k = len(chunk)
                got += k
                t.rx_bytes += k
                t.rx_t = time.monotonic()
                if got > reserve:
                    c.used += k if got - k >= reserve else got - reserve
                if got > lim.max_request_bytes or c.used > lim.max_bytes:
                    if request.transport is not None:
                        request.transport.close()
                    raise Refused(429, "byte allowance used", lim.window_s)
                if c.bucket is not None:
                    await c.bucket.take(k)
            return web.json_response({"bytes": got})
        finally:
            if got < reserve:
                c.used -= reserve - got
            self._untrack(t, key)

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        c = self._client(request)
        if not c.pings.try_take(1):
            raise Refused(429, f"at most {self.limits.max_pings_per_s:g} pings/s", 1)
        tid = self._test_id(request)
        t = c.tests.get(tid) if tid else None
        now = time.monotonic()
        throttled = c.bucket is not None and now - c.bucket.throttled_at < 1.0
        body: dict[str, float | int | bool] = {"t": now, "throttled": throttled}
        if t is not None:
            t.refresh()
            body |= {
                "rx_bytes": t.rx_bytes,
                "rx_t": t.rx_t,
                "tx_bytes": t.tx_bytes,
                "retransmits": sum(t.retrans.values()),
                "tx_delivered": sum(t.delivered.values()),
                "tx_t": t.last_ack,
            }
        else:
            body |= {
                "rx_bytes": 0,
                "rx_t": 0.0,
                "tx_bytes": 0,
                "retransmits": 0,
                "tx_delivered": 0,
                "tx_t": 0.0,
            }
        return web.json_response(body, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- CLI


def _hostport(listen: str) -> tuple[str, int]:
    from netready.inventory import split_hostport

    return split_hostport(listen)


async def serve_forever(
    server: SpeedServer,
    host: str,
    port: int,
    ssl_context: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    bound = await server.start(host, port, ssl_context)
    click.echo(f"netready serve: listening on {host}:{bound}", err=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


@click.command("serve")
@click.option(
    "--listen",
    default="0.0.0.0:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on.",
)
@click.option(
    "--token",
    required=True,
    metavar="env:NAME|file:PATH",
    help="Bearer token clients must send (a reference, never inline).",
)
@click.option(
    "--max-rate-mbps",
    default=1000.0,
    show_default=True,
    help="Bit rate per client across all its connections, Mbit/s.",
)
@click.option(
    "--max-mb",
    default=2000.0,
    show_default=True,
    help="MB (1e6 bytes) per client per --window-s, both directions.",
)
@click.option(
    "--window-s",
    default=86400.0,
    show_default=True,
    help="Length of the byte-allowance window, seconds.",
)
@click.option("--max-tests", default=1, show_default=True, help="Concurrent tests per client.")
@click.option("--max-streams", default=16, show_default=True, help="Connections per test.")
@click.option(
    "--max-request-mb", default=500.0, show_default=True, help="Largest single download/upload, MB."
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate: serve HTTPS.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM private key for --tls-cert.",
)
def serve_command(
    listen: str,
    token: str,
    max_rate_mbps: float,
    max_mb: float,
    window_s: float,
    max_tests: int,
    max_streams: int,
    max_request_mb: float,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Run the self-hosted speed-test endpoint (download, upload sink, ping).

    Every request needs the bearer token (401 otherwise); a client over a limit gets 429
    with Retry-After. It never serves anyone without the token.
    """
    from netready.cli import fail
    from netready.errors import NetreadyError
    from netready.inventory import HeaderSecretRef

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        host, port = _hostport(listen)
        secret = HeaderSecretRef.check(token).resolve()
        limits = Limits(
            max_rate_mbps=max_rate_mbps,
            max_bytes=int(max_mb * 1e6),
            window_s=window_s,
            max_tests=max_tests,
            max_streams=max_streams,
            max_request_bytes=int(max_request_mb * 1e6),
        )
        server = SpeedServer(secret, limits)
    except NetreadyError as e:
        raise fail(e) from None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    ssl_context = None
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise click.BadParameter("--tls-cert and --tls-key go together")
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as e:
            raise click.ClickException(f"cannot load {tls_cert}/{tls_key}: {e}") from None
    try:
        asyncio.run(serve_forever(server, host, port, ssl_context))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {listen}: {e.strerror or e}") from None


if __name__ == "__main__":  # python -m probes.serve
    serve_command()
