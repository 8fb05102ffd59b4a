"""The media responder (``netready responder``): the far end of an emulated video call.

Protocol version 1 (see ``probes/media.py`` for the packet format), all on one UDP port:

1. probe -> ``hello`` {v, sid, profile, video_kbps, duration_s, dscp_audio, dscp_video,
   keyframes, keyframe_offset, nonce, time, [hmac]}; the responder answers ``accept`` {sid}
   or ``reject`` {sid, code: refused | auth_failed | link_busy, reason} and, on accept,
   starts sending the downstream call stream (same profile, DSCP marks and key-frame phase)
   to the probe's address at once.
2. the probe sends its upstream; the responder timestamps every packet on arrival (kernel
   timestamp), keeps its sequence number, send timestamp, size and received TOS.
3. probe -> ``stop`` {sid, sent, first_ns, last_ns, duration_s}; the responder stops its
   downstream and answers ``stats`` {sid, up: receive statistics of the upstream (the same
   ``trace_stats`` the probe uses), down: {sent, bytes, first_ns, last_ns, sent_kbps,
   late_p95_ms}}. ``stop`` is idempotent (the same ``stats`` again), so the probe retries it.

Protections: sources outside ``allow`` are refused; with a ``secret`` the hello must carry
HMAC-SHA256 over its canonical JSON, a ``time`` within 300 s of ours and a fresh ``nonce``;
per-session and total bandwidth caps are checked at admission (a session's rate is its
declared profile rate) and enforced on the upstream (a session sending more than twice its
declared rate is ended); a session lasts at most ``max_duration_s`` (+ 30 s grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from netready.errors import NetreadyError
from netready.inventory import split_hostport
from probes.media import (
    MEDIA_PROFILES,
    PROTOCOL_VERSION,
    Arrival,
    Clock,
    Echo,
    SendResult,
    open_media_socket,
    pack_control,
    parse_control,
    parse_media,
    send_stream,
    trace_stats,
    verify,
)
from probes.reflector import allow_option, parse_networks

log = logging.getLogger("netready.media_responder")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AUTH_WINDOW_S = 300.0
GRACE_S = 30.0
POLICE_FACTOR = 2.0


@dataclass
class Session:
    sid: int
    addr: Any
    kbps: float
    duration_s: float
    dscp_audio: int
    dscp_video: int
    started: float
    echo: Echo = field(default_factory=Echo)
    arrivals: list[Arrival] = field(default_factory=list)
    rx_bytes: int = 0
    send: SendResult = field(default_factory=SendResult)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    stats: dict[str, Any] | None = None
    policed: bool = False
    drops0: int = 0
    finishing: bool = False
    finisher: asyncio.Task[None] | None = None


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
    ):
        self.host, self.port = split_hostport(listen, 5004)
        self.allow = parse_networks(allow)
        self.secret = secret or None
        self.max_kbps_session = max_mbps_session * 1000
        self.max_kbps_total = max_mbps_total * 1000
        self.max_duration_s = max_duration_s
        self.sessions: dict[tuple[Any, int], Session] = {}
        self.nonces: dict[str, float] = {}
        self.clock = Clock()
        self.sock: socket.socket | None = None
        self.counters = {
            "refused": 0,
            "auth_failed": 0,
            "busy": 0,
            "sessions": 0,
            "policed": 0,
            "dropped": 0,
        }
        self._gc: asyncio.Task[None] | None = None

    # -- admission

    def allowed(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self.allow)

    def admit(self, msg: dict[str, Any], host: str, now_wall: float) -> tuple[str, str] | None:
        """None to accept, else (code, reason). Pure: no I/O, no state change."""
        if not self.allowed(host):
            return "refused", f"source {host} is not in the responder's allow-list"
        if msg.get("v") != PROTOCOL_VERSION:
            return "refused", (
                f"protocol version {msg.get('v')!r} not supported "
                f"(responder speaks {PROTOCOL_VERSION})"
            )
        if self.secret is not None:
            if "hmac" not in msg:
                return "auth_failed", "the responder requires a shared secret (no hmac sent)"
            if not verify(msg, self.secret):
                return "auth_failed", "bad hmac: wrong shared secret"
            t = msg.get("time")
            if not isinstance(t, (int, float)) or abs(now_wall - t) > AUTH_WINDOW_S:
                return "auth_failed", f"request time is more than {AUTH_WINDOW_S:g} s off"
            if msg.get("nonce") in self.nonces:
                return "auth_failed", "replayed request (nonce seen before)"
        try:
            kbps = float(msg["video_kbps"]) + MEDIA_PROFILES["sd"].audio_kbps
            dur = float(msg["duration_s"])
            int(msg["sid"])
            int(msg.get("keyframe_offset", 0))
            if not (kbps > 0 and dur > 0):
                raise ValueError
            for k in ("dscp_audio", "dscp_video"):
                if not 0 <= int(msg.get(k, 0)) <= 63:
                    raise ValueError
        except (KeyError, TypeError, ValueError):
            return "refused", "malformed hello"
        if dur > self.max_duration_s:
            return "refused", (
                f"duration {dur:g} s exceeds the responder's limit {self.max_duration_s:g} s"
            )
        if kbps > self.max_kbps_session:
            return "refused", (
                f"{kbps:.0f} kbit/s exceeds the per-session cap {self.max_kbps_session:.0f} kbit/s"
            )
        total = sum(s.kbps for s in self.sessions.values() if s.stats is None)
        if total + kbps > self.max_kbps_total:
            return "link_busy", (
                f"responder busy: {total:.0f} + {kbps:.0f} kbit/s exceeds "
                f"the total cap {self.max_kbps_total:.0f} kbit/s"
            )
        return None

    # -- I/O

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        fam, _, _, _, addr = infos[0]
        s = open_media_socket(fam)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        self.sock = s
        loop.add_reader(s.fileno(), self._on_readable)
        self._gc = asyncio.create_task(self._gc_loop())
        bound = s.getsockname()
        log.info("media responder listening on %s:%d", bound[0], bound[1])
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

    def _send_control(self, msg: dict[str, Any], addr: Any) -> None:
        assert self.sock is not None
        try:
            self.sock.sendto(pack_control(msg), addr)
        except OSError as e:
            log.debug("sendto %s: %s", addr, e)

    def _on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(1024):
            try:
                data, anc, _f, addr = sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("recvmsg: %s", e)
                continue
            m = parse_media(data)
            if m is not None:
                sess = self.sessions.get((addr, m[0]))
                if sess is None or sess.stats is not None or sess.policed:
                    self.counters["dropped"] += 1
                    continue
                recv_ns, tos = self.clock.from_cmsg(anc)
                _sid, seq, stream, send_ns, echo_ns, hold_us, _frame = m
                sess.arrivals.append(
                    Arrival(seq, stream, send_ns, recv_ns, len(data), tos, echo_ns, hold_us * 1000)
                )
                sess.echo.peer_send_ns, sess.echo.local_recv_ns = send_ns, recv_ns
                sess.rx_bytes += len(data)
                continue
            msg = parse_control(data)
            if msg is not None:
                self._control(msg, addr)

    def _control(self, msg: dict[str, Any], addr: Any) -> None:
        op = msg.get("op")
        sid = msg.get("sid")
        if not isinstance(sid, int):
            return
        key = (addr, sid)
        if op == "hello":
            if key in self.sessions:  # a retransmitted hello: answer again
                self._send_control({"op": "accept", "v": PROTOCOL_VERSION, "sid": sid}, addr)
                return
            bad = self.admit(msg, addr[0], time.time())
            if bad is not None:
                code, reason = bad
                self.counters["busy" if code == "link_busy" else code] += 1
                log.info("refused %s: %s", addr[0], reason)
                self._send_control(
                    {
                        "op": "reject",
                        "v": PROTOCOL_VERSION,
                        "sid": sid,
                        "code": code,
                        "reason": reason,
                    },
                    addr,
                )
                return
            if self.secret is not None:
                self.nonces[str(msg.get("nonce"))] = time.monotonic()
            video_kbps = float(msg["video_kbps"])
            sess = Session(
                sid,
                addr,
                video_kbps + MEDIA_PROFILES["sd"].audio_kbps,
                float(msg["duration_s"]),
                int(msg.get("dscp_audio", 46)),
                int(msg.get("dscp_video", 34)),
                time.monotonic(),
                drops0=self.clock.drops,
            )
            self.sessions[key] = sess
            self.counters["sessions"] += 1
            self._send_control({"op": "accept", "v": PROTOCOL_VERSION, "sid": sid}, addr)
            assert self.sock is not None
            sess.task = asyncio.create_task(
                send_stream(
                    self.sock,
                    addr,
                    sid,
                    video_kbps,
                    sess.duration_s,
                    sess.echo,
                    dscp_audio=sess.dscp_audio,
                    dscp_video=sess.dscp_video,
                    keyframes=bool(msg.get("keyframes", True)),
                    keyframe_offset=int(msg.get("keyframe_offset", 0)) % 60,
                    stop=sess.stop,
                    result=sess.send,
                )
            )
            return
        found = self.sessions.get(key)
        if found is None:
            return
        if op == "stop":
            if found.stats is not None:
                self._send_control(found.stats, addr)
            elif not found.finishing:
                found.finishing = True
                found.finisher = asyncio.create_task(self._finish(found, msg, addr))

    async def _finish(self, sess: Session, msg: dict[str, Any], addr: Any) -> None:
        """Let the downstream run to its scheduled end (the probe may stop a hair early),
        then compute the upstream statistics and answer."""
        if sess.task is not None and not sess.task.done():
            left = sess.started + sess.duration_s - time.monotonic()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(sess.task), max(0.0, left) + 0.2)
        sess.stop.set()
        try:
            sent = int(msg["sent"])
            span = (int(msg.get("first_ns", 0)), int(msg.get("last_ns", 0)))
            dur = float(msg.get("duration_s", sess.duration_s))
        except (KeyError, TypeError, ValueError):
            sess.finishing = False
            return
        up = None
        if not sess.policed:
            up = trace_stats(
                sess.arrivals,
                sent,
                dur,
                send_span_ns=span if span[0] else None,
                dscp_audio=sess.dscp_audio,
                dscp_video=sess.dscp_video,
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
        sess.arrivals = []  # free memory; the summary is kept for retried stops
        self._send_control(sess.stats, addr)

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, s in list(self.sessions.items()):
                age = now - s.started
                if (
                    age > 1.0
                    and s.stats is None
                    and not s.policed
                    and (s.rx_bytes * 8 / 1000 / age > POLICE_FACTOR * s.kbps + 200)
                ):
                    s.policed = True
                    s.stop.set()
                    self.counters["policed"] += 1
                    log.info("session %s from %s exceeds its declared rate: ended", s.sid, key[0])
                if age > min(s.duration_s, self.max_duration_s) + GRACE_S:
                    s.stop.set()
                    del self.sessions[key]
            for n, t in list(self.nonces.items()):
                if now - t > 2 * AUTH_WINDOW_S:
                    del self.nonces[n]


async def serve(
    listen: str,
    allow: list[str],
    secret: str | None = None,
    max_mbps_session: float = 20,
    max_mbps_total: float = 200,
    ready: asyncio.Event | None = None,
    max_duration_s: float = 300,
) -> None:
    """Run a media responder until cancelled."""
    r = MediaResponder(listen, allow, secret, max_mbps_session, max_mbps_total, max_duration_s)
    await r.start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await r.close()


@click.command("responder")
@click.option("--listen", default="0.0.0.0:5004", show_default=True, help="HOST:PORT to listen on.")
@allow_option
@click.option(
    "--secret",
    default=None,
    metavar="env:NAME|file:PATH",
    help="Require HMAC-authenticated session requests with this shared secret.",
)
@click.option(
    "--max-mbps-session",
    default=20.0,
    show_default=True,
    type=float,
    help="Bandwidth cap per session (Mbit/s, each direction).",
)
@click.option(
    "--max-mbps-total",
    default=200.0,
    show_default=True,
    type=float,
    help="Bandwidth cap over all sessions (Mbit/s, each direction).",
)
@click.option(
    "--max-duration",
    "max_duration_s",
    default=300.0,
    show_default=True,
    type=float,
    help="Longest session accepted, seconds.",
)
def responder_command(
    listen: str,
    allow: tuple[str, ...],
    secret: str | None,
    max_mbps_session: float,
    max_mbps_total: float,
    max_duration_s: float,
) -> None:
    """Answer emulated video calls from `netready probe media` (allowed sources only)."""
    from netready.cli import fail
    from netready.inventory import SecretRef

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        sec = SecretRef.check(secret).resolve() if secret else None
        parse_networks(allow)
        split_hostport(listen, 5004)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    except NetreadyError as e:
        raise fail(e) from None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(
                listen,
                list(allow),
                sec,
                max_mbps_session,
                max_mbps_total,
                max_duration_s=max_duration_s,
            )

    try:
        asyncio.run(main())
    except OSError as e:
        raise click.ClickException(f"cannot listen on {listen}: {e.strerror or e}") from None


if __name__ == "__main__":  # pragma: no cover - `python -m probes.media_responder --listen ...`
    responder_command()
