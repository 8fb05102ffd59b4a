"""The media responder (``netready responder``): the far end of an emulated video call.

Protocol version 2 (see ``probes/media/`` for the packet format), all on one UDP port:

1. probe -> ``hello`` {v, sid, profile, video_kbps, duration_s, dscp_audio, dscp_video,
   keyframes, keyframe_offset, nonce, time, [hmac]}; the responder answers
   ``retry`` {sid, cookie}: a stateless cookie (``servers/guard.py`` CookieJar: an HMAC with
   a random key of its own over the source address and port, a 30 s time bucket and the
   hello's session parameters), in a datagram no larger than the hello.
2. probe -> the same hello with ``cookie`` (and, with a secret, ``hmac`` over all of it):
   the source has proven it receives at its address. Only now does the responder check
   its capacity, answer ``accept`` {sid} or ``reject`` {sid, code: refused | auth_failed |
   link_busy, reason}, and on accept start the downstream call stream (same profile, DSCP
   marks and key-frame phase) to the probe's address.
3. the probe sends its upstream; the responder timestamps every packet on arrival (kernel
   timestamp) into an ``RxTrace`` sized for the session's declared schedule.
4. probe -> ``stop`` {sid, sent, first_ns, last_ns, duration_s}; the responder stops its
   downstream and answers ``stats`` {sid, up: receive statistics of the upstream (the same
   ``trace_stats`` the probe uses), down: {sent, bytes, first_ns, last_ns, sent_kbps,
   late_p95_ms}}. ``stop`` is idempotent (the same ``stats`` again), so the probe retries it.

Protections, in the order a datagram meets them:

- size first: a truncated datagram or a request over ``MAX_CONTROL`` bytes is dropped, then
  cheap checks: a request must be one flat JSON object (no nesting) — all before parsing
  and before the allow-list;
- sources outside ``allow`` get no answer at all;
- the request is validated strictly (``Hello``/``Stop`` pydantic models: JSON types as
  sent, finite numbers within bounds, no unknown keys); with a ``secret`` the hello must
  carry HMAC-SHA256 over its canonical JSON, a ``time`` within 300 s of ours and a fresh
  ``nonce``. Until the cookie comes back, every answer (retry, reject) is no larger than
  the request it answers, and nothing else is sent: no reflection, no amplification;
- admission (for a proven address): duration, per-session and total bandwidth caps (a
  session's rate is its declared profile rate), sessions per source and in total;
- during the session: a session sending more than twice its declared rate is ended
  (policed); the downstream stops when nothing came from the probe for ``CONSENT_S``
  (consent freshness, as RFC 7675); a session lasts at most ``max_duration_s`` (+ 30 s);
- control replies are rate-limited per source and in total (token buckets);
- memory per session is bounded by its declared schedule (``RxTrace``), whatever the size
  or sequence numbers of the packets sent to it;
- dropped or refused packets are counted by reason and logged as one summary line per
  minute (``CountedLog``), never one line per packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netready.probes.media.stream import (
    Clock,
    Echo,
    SendResult,
    open_media_socket,
    send_stream,
)
from netready.probes.media.trace import Layout, RxTrace
from netready.probes.media.wire import (
    KIND_CONTROL,
    KIND_MEDIA,
    MAGIC,
    MEDIA_PROFILES,
    PROTOCOL_VERSION,
    Hello,
    Stop,
    canonical,
    first_error,
    pack_control,
    parse_control,
    parse_media,
    request_problem,
    schedule_packets,
    verify,
)
from netready.servers.guard import AllowList, CookieJar, CountedLog, SourceLimiter, hostport
from netready.servers.metrics import Metrics, Snapshot
from pydantic import ValidationError

from netready import platform
from netready.errors import ServerError
from netready.inventory import split_hostport

log = logging.getLogger("netready.media_responder")

AUTH_WINDOW_S = 300.0
GRACE_S = 30.0
POLICE_FACTOR = 2.0
CONSENT_S = 5.0  # downstream stops after this long without a packet from the probe
RECV_BUF = 2048  # bytes read per datagram; a longer one is truncated and dropped
#: Most packets one session's upstream trace may hold (x RxTrace.BYTES_PER_PACKET = 44 MB);
#: the default caps (20 Mbit/s for 300 s) need 0.64 M.
MAX_SESSION_PACKETS = 1_500_000
#: Control replies per source (packets/s and kbit/s, one second of burst) and in total.
REPLY_PPS = 256.0
REPLY_KBPS = 2048.0
REPLY_TOTAL_KBPS = 20_000.0


@dataclass
class Session:
    sid: int
    addr: Any
    kbps: float
    duration_s: float
    dscp_audio: int
    dscp_video: int
    started: float
    rx: RxTrace
    last_rx: float = 0.0
    echo: Echo = field(default_factory=Echo)
    rx_bytes: int = 0
    send: SendResult = field(default_factory=SendResult)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    stats: dict[str, Any] | None = None
    policed: bool = False
    drops0: int = 0
    finishing: bool = False
    computing: bool = False  # the upstream trace is being summarised (in a worker thread)
    layout: Layout | None = None  # the probe's declared schedule: frames for the play-out model
    finisher: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self.stats is None and not self.policed


class MediaResponder:
    """The responder on one bound UDP socket. ``await start()`` then ``await close()``."""

    def __init__(
        self,
        listen: str,
        allow: Sequence[str],
        secret: str | None = None,
        max_mbps_session: float = 20.0,
        max_mbps_total: float = 200.0,
        max_duration_s: float = 300.0,
        max_sessions_per_source: int = 64,
        max_sessions: int = 1000,
        log_interval_s: float = 60.0,
    ):
        self.host, self.port = split_hostport(listen, 5004)
        self.allow = AllowList(allow)
        self.secret = secret or None
        self.max_kbps_session = max_mbps_session * 1000
        self.max_kbps_total = max_mbps_total * 1000
        self.max_duration_s = max_duration_s
        self.max_sessions_per_source = max_sessions_per_source
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[Any, int], Session] = {}
        self.nonces: dict[str, float] = {}
        self.cookies = CookieJar()
        self.limiter = SourceLimiter(REPLY_PPS, REPLY_KBPS, REPLY_TOTAL_KBPS, total_burst_s=1.0)
        self.events = CountedLog(log, "media responder", log_interval_s)
        self.clock = Clock()
        self.sock: socket.socket | None = None
        self.counters: Counter[str] = Counter(
            refused=0, auth_failed=0, busy=0, sessions=0, policed=0, dropped=0, cookies=0,
            datagrams=0, rx_bytes=0, tx_bytes=0,  # tx: control replies and ended sessions' media
        )
        self._gc: asyncio.Task[None] | None = None

    # -- admission (pure: no I/O, no state change)

    def check_hello(self, msg: dict[str, Any], now_wall: float) -> Hello | tuple[str, str]:
        """The validated hello, or (code, reason): protocol version, the strict schema,
        and with a secret its HMAC, time and nonce."""
        if msg.get("v") != PROTOCOL_VERSION:
            return "refused", (
                f"protocol version {msg.get('v')!r} not supported "
                f"(responder speaks {PROTOCOL_VERSION})"
            )
        try:
            hello = Hello.model_validate(msg)
        except ValidationError as e:
            return "refused", f"malformed hello: {first_error(e)}"
        if self.secret is not None:
            if hello.hmac is None:
                return "auth_failed", "the responder requires a shared secret (no hmac sent)"
            if not verify(msg, self.secret):
                return "auth_failed", "bad hmac: wrong shared secret"
            if abs(now_wall - hello.time) > AUTH_WINDOW_S:
                return "auth_failed", f"request time is more than {AUTH_WINDOW_S:g} s off"
            if hello.nonce in self.nonces:
                return "auth_failed", "replayed request (nonce seen before)"
        return hello

    def capacity(self, hello: Hello) -> int:
        """Upstream packets the session may hold state for: its declared schedule."""
        dur = min(hello.duration_s, self.max_duration_s)
        return schedule_packets(hello.video_kbps, dur, hello.keyframes) + 64

    def admit(self, hello: Hello, host: str) -> tuple[str, str] | None:
        """None to accept a validated hello from a proven address, else (code, reason)."""
        kbps = hello.video_kbps + MEDIA_PROFILES["sd"].audio_kbps
        if hello.duration_s > self.max_duration_s:
            return "refused", (
                f"duration {hello.duration_s:g} s exceeds the responder's limit "
                f"{self.max_duration_s:g} s"
            )
        if kbps > self.max_kbps_session:
            return "refused", (
                f"{kbps:.0f} kbit/s exceeds the per-session cap {self.max_kbps_session:.0f} kbit/s"
            )
        if self.capacity(hello) > MAX_SESSION_PACKETS:
            return "refused", (
                f"session too large: more than {MAX_SESSION_PACKETS} packets in "
                f"{hello.duration_s:g} s"
            )
        live = [s for s in self.sessions.values() if s.live]
        mine = sum(1 for s in live if s.addr[0] == host)
        if mine >= self.max_sessions_per_source:
            return "link_busy", (
                f"responder busy: {host} already has {mine} sessions "
                f"(the per-source cap is {self.max_sessions_per_source})"
            )
        if len(live) >= self.max_sessions:
            return "link_busy", f"responder busy: {len(live)} sessions (the cap)"
        total = sum(s.kbps for s in live)
        if total + kbps > self.max_kbps_total:
            return "link_busy", (
                f"responder busy: {total:.0f} + {kbps:.0f} kbit/s exceeds "
                f"the total cap {self.max_kbps_total:.0f} kbit/s"
            )
        return None

    # -- I/O

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        where = hostport((self.host, self.port))
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except OSError as e:
            raise ServerError(f"cannot listen on {where}: {e.strerror or e}") from None
        fam, _, _, _, addr = infos[0]
        s = open_media_socket(fam)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            s.close()
            raise ServerError(f"cannot listen on {where}: {e.strerror or e}") from None
        self.sock = s
        loop.add_reader(s.fileno(), self._on_readable)
        self._gc = asyncio.create_task(self._gc_loop())
        bound = s.getsockname()
        log.info("media responder listening on %s, allow %s", hostport(bound), self.allow)
        return bound[0], bound[1]

    async def close(self) -> None:
        for s in self.sessions.values():
            s.stop.set()
            if s.task is not None:
                s.task.cancel()
        if self._gc is not None:
            self._gc.cancel()
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.events.flush(time.monotonic(), force=True)

    def _send(self, msg: dict[str, Any], addr: Any, now: float, limit: int | None = None) -> bool:
        """Send one control message. ``limit``: the size of the request it answers, for an
        address not yet proven (a reason is shortened to fit, else nothing is sent)."""
        assert self.sock is not None
        data = pack_control(msg)
        if limit is not None:
            while len(data) > limit and msg.get("reason"):
                reason = msg["reason"]
                msg = {**msg, "reason": reason[: max(0, len(reason) - (len(data) - limit))]}
                data = pack_control(msg)
            if len(data) > limit:  # e.g. a hello smaller than its answer: no answer
                self.events.count("request_too_small", now)
                return False
        if not self.limiter.take(addr[0], len(data), now):
            self.events.count("reply_rate_limited", now)
            return False
        try:
            self.sock.sendto(data, addr)
        except OSError:
            self.events.count("send_error", now)
            return False
        self.counters["tx_bytes"] += len(data)
        return True

    def snapshot(self) -> Snapshot:
        """The counters for ``/metrics`` (servers/metrics.py)."""
        c, live = self.counters, list(self.sessions.values())
        totals = dict(self.events.totals)
        return Snapshot(
            requests=c["datagrams"],
            sessions=c["sessions"],
            sessions_active=sum(1 for s in live if s.live),
            refusals=totals,
            rate_limited=totals.get("reply_rate_limited", 0) + totals.get("policed", 0),
            bytes_rx=c["rx_bytes"],
            bytes_tx=c["tx_bytes"] + sum(s.send.bytes for s in live),
        )

    def _on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(1024):
            try:
                data, anc, flags, addr = platform.recv_ancillary(sock, RECV_BUF, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.events.count("recv_error", time.monotonic())
                continue
            now = time.monotonic()
            self.counters["datagrams"] += 1
            self.counters["rx_bytes"] += len(data)
            if flags & socket.MSG_TRUNC:
                self.events.count("oversized", now)
            elif len(data) < 5 or data[:3] != MAGIC:
                self.events.count("not_ours", now)
            elif data[4] == KIND_MEDIA:
                self._media(data, anc, addr, now)
            elif data[4] == KIND_CONTROL:
                self._request(data, addr, now)
            else:
                self.events.count("not_ours", now)

    def _media(self, data: bytes, anc: list[tuple[int, int, bytes]], addr: Any, now: float) -> None:
        m = parse_media(data)
        sess = self.sessions.get((addr, m[0])) if m is not None else None
        if m is None or sess is None or not sess.live or sess.computing:
            self.counters["dropped"] += 1  # stragglers after a stop are normal: not logged
            return
        recv_ns, tos = self.clock.from_cmsg(anc)
        _sid, seq, stream, send_ns, echo_ns, hold_us, _frame = m
        sess.rx.add(seq, stream, send_ns, recv_ns, len(data), tos, echo_ns, hold_us * 1000)
        sess.echo.peer_send_ns, sess.echo.local_recv_ns = send_ns, recv_ns
        sess.rx_bytes += len(data)
        sess.last_rx = now

    def _request(self, data: bytes, addr: Any, now: float) -> None:
        """A control request: size and shape first, then the allow-list, then parsing."""
        why = request_problem(data)
        if why is not None:
            self.events.count(why, now)
            return
        if not self.allow.allows(addr[0]):
            self.events.count("not_allowed", now)
            return
        msg = parse_control(data)
        if msg is None:
            self.events.count("bad_json", now)
            return
        op = msg.get("op")
        if op == "hello":
            self._hello(msg, len(data), addr, now)
        elif op == "stop":
            self._stop(msg, addr, now)
        else:
            self.events.count("bad_op", now)

    def _hello(self, msg: dict[str, Any], size: int, addr: Any, now: float) -> None:
        sid = msg.get("sid")
        if type(sid) is not int or not 1 <= sid <= 0xFFFFFFFF:
            self.events.count("malformed", now)  # nothing to address an answer to
            return
        key = (addr, sid)
        found = self.sessions.get(key)
        if found is not None:  # a retransmitted hello of a proven address: answer again
            found.last_rx = now
            self._send({"op": "accept", "v": PROTOCOL_VERSION, "sid": sid}, addr, now)
            return
        checked = self.check_hello(msg, time.time())
        if isinstance(checked, tuple):
            code, reason = checked
            self._reject(sid, code, reason, addr, now, limit=size)
            return
        hello = checked
        params = canonical(msg, ("hmac", "cookie"))
        if hello.cookie is None or not self.cookies.check(hello.cookie, addr, params, now):
            if hello.cookie is not None:
                self.events.count("stale_cookie", now)
            self.counters["cookies"] += 1
            cookie = self.cookies.issue(addr, params, now)
            retry = {"op": "retry", "v": PROTOCOL_VERSION, "sid": sid, "cookie": cookie}
            self._send(retry, addr, now, limit=size)
            return
        # The source has proven it receives at addr: admission, then the session.
        bad = self.admit(hello, addr[0])
        if bad is not None:
            self._reject(sid, *bad, addr, now)
            return
        if self.secret is not None:
            self.nonces[hello.nonce] = now
        assert self.sock is not None
        sess = Session(
            sid,
            addr,
            hello.video_kbps + MEDIA_PROFILES["sd"].audio_kbps,
            hello.duration_s,
            hello.dscp_audio,
            hello.dscp_video,
            now,
            RxTrace(self.capacity(hello)),
            last_rx=now,
            drops0=self.clock.drops,
            layout=Layout(
                hello.video_kbps, hello.duration_s, hello.keyframes, hello.keyframe_offset
            ),
        )
        self.sessions[key] = sess
        self.counters["sessions"] += 1
        self._send({"op": "accept", "v": PROTOCOL_VERSION, "sid": sid}, addr, now)
        sess.task = asyncio.create_task(
            send_stream(
                self.sock,
                addr,
                sid,
                hello.video_kbps,
                sess.duration_s,
                sess.echo,
                dscp_audio=sess.dscp_audio,
                dscp_video=sess.dscp_video,
                keyframes=hello.keyframes,
                keyframe_offset=hello.keyframe_offset,
                stop=sess.stop,
                result=sess.send,
            )
        )

    def _reject(
        self, sid: int, code: str, reason: str, addr: Any, now: float, limit: int | None = None
    ) -> None:
        self.counters["busy" if code == "link_busy" else code] += 1
        self.events.count(f"hello_{code}", now)
        msg = {"op": "reject", "v": PROTOCOL_VERSION, "sid": sid, "code": code, "reason": reason}
        self._send(msg, addr, now, limit=limit)

    def _stop(self, msg: dict[str, Any], addr: Any, now: float) -> None:
        sid = msg.get("sid")
        found = self.sessions.get((addr, sid)) if type(sid) is int else None
        if found is None:
            self.events.count("no_session", now)
            return
        found.last_rx = now
        if found.stats is not None:
            self._send(found.stats, addr, now)
            return
        if found.finishing:
            return
        try:
            stop = Stop.model_validate(msg)
        except ValidationError:
            self.events.count("malformed", now)
            return
        found.finishing = True
        found.finisher = asyncio.create_task(self._finish(found, stop, addr))

    async def _finish(self, sess: Session, stop: Stop, addr: Any) -> None:
        """Let the downstream run to its scheduled end if that is at most a second away
        (the probe may stop a hair early), else end it now; then compute the upstream
        statistics and answer."""
        if sess.task is not None and not sess.task.done():
            left = sess.started + sess.duration_s - time.monotonic()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(sess.task), min(max(0.0, left), 1.0) + 0.2)
        sess.stop.set()
        up = None
        if not sess.policed:
            span = (stop.first_ns, stop.last_ns)
            sess.computing = True
            # In a worker thread: a long session's summary (0.6 M packets: ~3 s of CPU)
            # must not stall the event loop that paces every other session's stream.
            up = await asyncio.to_thread(
                sess.rx.stats,
                min(stop.sent, sess.rx.capacity),  # never more work than the schedule
                stop.duration_s or sess.duration_s,
                send_span_ns=span if span[0] else None,
                dscp_audio=sess.dscp_audio,
                dscp_video=sess.dscp_video,
                layout=sess.layout,
            )
            up.host_drops = self.clock.drops - sess.drops0  # the shared socket, this session's span
        snd = sess.send
        sess.stats = {
            "op": "stats",
            "v": PROTOCOL_VERSION,
            "sid": sess.sid,
            "up": up.to_json() if up is not None else None,
            "policed": sess.policed,
            "down": {
                "sent": snd.sent,
                "bytes": snd.bytes,
                "first_ns": snd.first_ns,
                "last_ns": snd.last_ns,
                "sent_kbps": snd.sent_kbps,
                "late_p95_ms": snd.late_p95_ms,
                "errors": snd.errors,
            },
        }
        sess.rx = RxTrace(0)  # free the trace; the summary is kept for retried stops
        self._send(sess.stats, addr, time.monotonic())

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, s in list(self.sessions.items()):
                age = now - s.started
                if (
                    age > 1.0
                    and s.live
                    and not s.computing
                    and (s.rx_bytes * 8 / 1000 / age > POLICE_FACTOR * s.kbps + 200)
                ):
                    s.policed = True
                    s.stop.set()
                    s.rx = RxTrace(0)
                    self.counters["policed"] += 1
                    self.events.count("policed", now)
                if s.live and not s.stop.is_set() and now - s.last_rx > CONSENT_S:
                    s.stop.set()  # the probe went quiet: stop streaming at it
                    self.counters["consent_expired"] += 1
                    self.events.count("consent_expired", now)
                if age > min(s.duration_s, self.max_duration_s) + GRACE_S:
                    s.stop.set()
                    self.counters["tx_bytes"] += s.send.bytes
                    del self.sessions[key]
            for n, t in list(self.nonces.items()):
                if now - t > 2 * AUTH_WINDOW_S:
                    del self.nonces[n]
            self.events.flush(now)


async def serve(
    listen: str,
    allow: list[str],
    secret: str | None = None,
    max_mbps_session: float = 20,
    max_mbps_total: float = 200,
    ready: asyncio.Event | None = None,
    max_duration_s: float = 300,
    max_sessions_per_source: int = 64,
    metrics: Metrics | None = None,
) -> None:
    """Run a media responder until cancelled; its counters on ``metrics``."""
    r = MediaResponder(
        listen,
        allow,
        secret,
        max_mbps_session,
        max_mbps_total,
        max_duration_s,
        max_sessions_per_source=max_sessions_per_source,
    )
    if metrics is not None:
        metrics.add("responder", r.snapshot)
    await r.start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await r.close()
