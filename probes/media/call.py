"""The probe's socket edge: one emulated call against a media responder (``run_call``).

The hello/retry/accept handshake (address validation by the responder's cookie, then an
optional HMAC), the upstream on the paced sender (``stream.send_stream``) while the
downstream is received into an ``RxTrace``, then ``stop`` and the responder's statistics of
the upstream. Failures raise ``CallFailed`` (result, reason), which ``probe`` turns into a
record.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from netready.probes.media.stream import Clock, Echo, SendResult, open_media_socket, send_stream
from netready.probes.media.trace import DirectionStats, Layout, RxTrace
from netready.probes.media.wire import (
    KEYFRAME_EVERY,
    PROTOCOL_VERSION,
    MediaProfile,
    pack_control,
    parse_control,
    parse_media,
    schedule_packets,
    sign,
)


class CallFailed(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass
class CallResult:
    up: DirectionStats | None
    down: DirectionStats | None
    up_send: SendResult
    down_send: dict[str, Any]
    up_error: str | None = None


class _Call:
    """One call's socket, its downstream trace and the control messages that arrive."""

    def __init__(
        self, sock: socket.socket, host: str, port: int, capacity: int, clock: Clock | None = None
    ):
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.where = f"{host}:{port}"
        self.clock = clock or Clock()
        self.echo = Echo()
        self.down = RxTrace(capacity)
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: list[OSError] = []
        self.sid = secrets.randbits(32) or 1

    def on_readable(self) -> None:
        for _ in range(512):
            try:
                data, anc, _f, _a = self.sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP port/host unreachable on the connected socket
                self.errors.append(e)
                self.control.put_nowait({"op": "_error"})
                return
            m = parse_media(data)
            if m is not None:
                if m[0] != self.sid:
                    continue
                recv_ns, tos = self.clock.from_cmsg(anc)
                _sid, seq, stream, send_ns, echo_ns, hold_us, _frame = m
                self.down.add(
                    seq, stream, send_ns, recv_ns, len(data), tos, echo_ns, hold_us * 1000
                )
                self.echo.peer_send_ns, self.echo.local_recv_ns = send_ns, recv_ns
                continue
            msg = parse_control(data)
            if msg is not None and msg.get("sid") == self.sid and self.control.qsize() < 64:
                self.control.put_nowait(msg)

    async def exchange(
        self, req: dict[str, Any], want: set[str], tries: int, wait_s: float
    ) -> dict[str, Any]:
        """Send ``req`` up to ``tries`` times until a reply whose op is in ``want``."""
        for _ in range(tries):
            try:
                self.sock.send(pack_control(req))
            except OSError as e:
                self.errors.append(e)
            deadline = self.loop.time() + wait_s
            while (left := deadline - self.loop.time()) > 0:
                try:
                    msg = await asyncio.wait_for(self.control.get(), left)
                except TimeoutError:
                    break
                if msg.get("op") == "_error":
                    err = self.errors[-1]
                    raise CallFailed(
                        "unreachable",
                        f"responder {self.where} unreachable: "
                        f"{err.strerror or err} (is netready responder running?)",
                    )
                if msg.get("op") in want:
                    return msg
        raise CallFailed(
            "timeout",
            f"no answer from media responder {self.where} "
            f"after {tries} tries in {tries * wait_s:.1f} s",
        )

    async def handshake(self, hello: dict[str, Any], secret: str | None, timeout_s: float) -> None:
        """hello -> retry {cookie} -> hello + cookie -> accept | reject (address validation)."""
        tries = max(1, math.ceil(timeout_s))
        req = hello
        for _ in range(3):
            if secret:
                req["hmac"] = sign(req, secret)
            reply = await self.exchange(
                req, {"accept", "reject", "retry"}, tries, timeout_s / tries
            )
            if reply["op"] != "retry":
                break
            cookie = reply.get("cookie")
            if not isinstance(cookie, str):
                raise CallFailed("refused", f"responder {self.where} sent a retry without cookie")
            req = {k: v for k, v in hello.items() if k != "hmac"} | {"cookie": cookie}
        else:
            raise CallFailed(
                "refused", f"responder {self.where} kept asking for a new cookie (3 retries)"
            )
        if reply["op"] == "reject":
            code = reply.get("code", "refused")
            raise CallFailed(
                code if code in ("refused", "auth_failed", "link_busy") else "refused",
                f"responder {self.where} refused the session: "
                f"{reply.get('reason', 'no reason given')}",
            )

    async def finish(
        self, up: SendResult, hello: dict[str, Any], dscp_audio: int, dscp_video: int
    ) -> CallResult:
        """``stop`` (retried: it is idempotent), then both directions' statistics."""
        duration_s = hello["duration_s"]
        stop = {
            "op": "stop",
            "v": PROTOCOL_VERSION,
            "sid": self.sid,
            "sent": up.sent,
            "first_ns": up.first_ns,
            "last_ns": up.last_ns,
            "duration_s": duration_s,
            "sent_kbps": up.sent_kbps,
            "late_p95_ms": up.late_p95_ms,
        }
        up_error = None
        try:
            st_msg = await self.exchange(stop, {"stats"}, 8, 1.0)
        except CallFailed as e:
            st_msg = {}
            up_error = e.reason.replace("no answer", "no statistics")
        down_info = st_msg.get("down") or {}
        up_stats = DirectionStats.from_json(st_msg["up"]) if st_msg.get("up") else None
        down_stats = None
        if down_info.get("sent"):
            span = (int(down_info.get("first_ns", 0)), int(down_info.get("last_ns", 0)))
            down_stats = self.down.stats(
                min(int(down_info["sent"]), self.down.capacity),  # no more than the schedule
                duration_s,
                send_span_ns=span if span[0] else None,
                dscp_audio=dscp_audio,
                dscp_video=dscp_video,
                layout=Layout(
                    hello["video_kbps"], duration_s, hello["keyframes"], hello["keyframe_offset"]
                ),
            )
            down_stats.host_drops = self.clock.drops
        return CallResult(up_stats, down_stats, up, down_info, up_error)


def _hello(
    sid: int,
    profile: MediaProfile,
    duration_s: float,
    dscp_audio: int,
    dscp_video: int,
    keyframes: bool,
    keyframe_offset: int,
) -> dict[str, Any]:
    return {
        "op": "hello",
        "v": PROTOCOL_VERSION,
        "sid": sid,
        "profile": profile.name,
        "video_kbps": profile.video_kbps,
        "duration_s": duration_s,
        "dscp_audio": dscp_audio,
        "dscp_video": dscp_video,
        "keyframes": keyframes,
        "keyframe_offset": keyframe_offset % KEYFRAME_EVERY,
        "nonce": secrets.token_hex(8),
        "time": time.time(),
    }


async def run_call(
    host: str,
    port: int,
    profile: MediaProfile,
    duration_s: float,
    *,
    secret: str | None = None,
    dscp_audio: int = 46,
    dscp_video: int = 34,
    keyframes: bool = True,
    keyframe_offset: int = 0,
    start_delay_s: float = 0.0,
    timeout_s: float = 3.0,
    clock: Clock | None = None,
) -> CallResult:
    """One emulated call against a responder. Raises ``CallFailed`` (result, reason).
    ``clock``: share one receive clock between calls whose one-way delays are compared
    (probes/qos); by default each call has its own."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise CallFailed("unreachable", f"cannot resolve {host}: {e.strerror}") from None
    fam, _, _, _, addr = infos[0]
    sock = open_media_socket(fam)
    # what the responder's downstream sends at most (the same schedule as ours)
    call = _Call(
        sock, host, port, schedule_packets(profile.video_kbps, duration_s, keyframes) + 64, clock
    )
    try:
        try:
            sock.connect(addr)
        except OSError as e:
            raise CallFailed(
                "unreachable", f"cannot reach {host}:{port}: {e.strerror or e}"
            ) from None
        loop.add_reader(sock.fileno(), call.on_readable)
        hello = _hello(
            call.sid, profile, duration_s, dscp_audio, dscp_video, keyframes, keyframe_offset
        )
        await call.handshake(hello, secret, timeout_s)
        up = await send_stream(
            sock,
            None,
            call.sid,
            profile.video_kbps,
            duration_s,
            call.echo,
            dscp_audio=dscp_audio,
            dscp_video=dscp_video,
            keyframes=keyframes,
            keyframe_offset=keyframe_offset,
            start_delay_s=start_delay_s,
        )
        return await call.finish(up, hello, dscp_audio, dscp_video)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(sock.fileno())
        sock.close()
