"""The media probe's wire format, sans-IO: what goes in a datagram and when.

Both ends import it (the probe's ``call`` edge and the responder in ``servers/``). Protocol
version 2, all integers big-endian, one UDP socket per call:

    header  = "NRM" version:u8 kind:u8 stream:u8 pad:u16 sid:u32 seq:u32
              send_ns:u64 echo_ns:u64 hold_us:u32 frame:u32          (40 bytes)
    kind 1  = media: header + zero padding up to the packet size
    kind 2  = control: "NRM" version:u8 kind:u8 + JSON object
              (hello/retry/accept/reject/stop/stats; requests are ``Hello`` and ``Stop``)

The call profiles (``MEDIA_PROFILES``) and the send schedule (``schedule``: which packet of
which size at which time) are part of the format: a receiver sizes its trace from them
(``schedule_packets``) and a responder's downstream follows the same schedule.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------- profiles

PROTOCOL_VERSION = 2  # 2: the hello is answered with a cookie (retry) first
MAGIC = b"NRM"
KIND_MEDIA = 1
KIND_CONTROL = 2
STREAM_AUDIO = 0
STREAM_VIDEO = 1
HEADER = struct.Struct("!3sBBBHIIQQII")
HEADER_SIZE = HEADER.size  # 40
MAX_PACKET = 1200  # bytes of UDP payload per video packet
AUDIO_PACKET = 172  # 160 bytes of 64 kbit/s payload per 20 ms + 12 bytes RTP header
AUDIO_INTERVAL_NS = 20_000_000
FPS = 30
KEYFRAME_EVERY = 60  # frames (2 s)
KEYFRAME_FACTOR = 3.0

ProfileName = Literal["sd", "hd", "fhd"]


@dataclass(frozen=True)
class MediaProfile:
    name: str
    label: str
    video_kbps: float

    @property
    def audio_kbps(self) -> float:
        return AUDIO_PACKET * 8 * (1e9 / AUDIO_INTERVAL_NS) / 1000.0

    @property
    def kbps(self) -> float:
        """Offered UDP payload rate per call and per direction, kbit/s."""
        return self.video_kbps + self.audio_kbps


MEDIA_PROFILES: dict[str, MediaProfile] = {
    "sd": MediaProfile("sd", "360p", 500.0),
    "hd": MediaProfile("hd", "720p", 1500.0),
    "fhd": MediaProfile("fhd", "1080p", 2500.0),
}


def frame_packets(frame: int, video_kbps: float, keyframes: bool = True) -> list[int]:
    """Packet sizes (UDP payload bytes, header included) of video frame number ``frame``."""
    avg = video_kbps * 1000.0 / 8.0 / FPS
    if keyframes:
        normal = avg * KEYFRAME_EVERY / (KEYFRAME_EVERY - 1 + KEYFRAME_FACTOR)
        size = normal * KEYFRAME_FACTOR if frame % KEYFRAME_EVERY == 0 else normal
    else:
        size = avg
    total = max(HEADER_SIZE, round(size))
    n = math.ceil(total / MAX_PACKET)
    base, extra = divmod(total, n)
    return [max(HEADER_SIZE, base + (1 if i < extra else 0)) for i in range(n)]


def schedule_packets(video_kbps: float, duration_s: float, keyframes: bool = True) -> int:
    """At most how many packets (audio + video) one direction of a call sends in
    ``duration_s`` (``send_stream``'s schedule): what a receiver sizes its trace for."""
    audio = math.ceil(duration_s * 1e9 / AUDIO_INTERVAL_NS) + 1
    frames = math.ceil(duration_s * FPS) + 1
    key = frames // KEYFRAME_EVERY + 1 if keyframes else 0
    per_key = len(frame_packets(0, video_kbps, keyframes))
    per_frame = len(frame_packets(1, video_kbps, keyframes))
    return audio + key * per_key + (frames - key) * per_frame


def schedule(
    video_kbps: float,
    duration_s: float,
    *,
    keyframes: bool = True,
    keyframe_offset: int = 0,
) -> Iterator[tuple[int, int, int, list[int]]]:
    """The send schedule of one direction of a call: (offset_ns from the start, stream,
    frame number, packet sizes) in time order; an audio packet every 20 ms, a video frame
    (its packets back to back) every 1/30 s; audio first when both are due. Each event has
    an absolute deadline (offset k x interval), so a sender on it does not drift."""
    end = int(duration_s * 1e9)
    ka = kv = 0
    while True:
        ta = ka * AUDIO_INTERVAL_NS
        tv = (kv * 1_000_000_000) // FPS
        if min(ta, tv) >= end:
            return
        if ta <= tv:
            yield ta, STREAM_AUDIO, 0, [AUDIO_PACKET]
            ka += 1
        else:
            yield tv, STREAM_VIDEO, kv, frame_packets(kv + keyframe_offset, video_kbps, keyframes)
            kv += 1


# --------------------------------------------------------------------------- wire format


def pack_media(
    sid: int, seq: int, stream: int, send_ns: int, echo_ns: int, hold_us: int, frame: int
) -> bytes:
    return HEADER.pack(
        MAGIC,
        PROTOCOL_VERSION,
        KIND_MEDIA,
        stream,
        0,
        sid & 0xFFFFFFFF,
        seq & 0xFFFFFFFF,
        send_ns & 0xFFFFFFFFFFFFFFFF,
        echo_ns & 0xFFFFFFFFFFFFFFFF,
        min(hold_us, 0xFFFFFFFF),
        frame & 0xFFFFFFFF,
    )


def pack_control(msg: dict[str, Any]) -> bytes:
    return (
        MAGIC
        + bytes([PROTOCOL_VERSION, KIND_CONTROL])
        + json.dumps(msg, separators=(",", ":"), sort_keys=True).encode()
    )


#: Largest control request (hello, stop) a responder reads; a hello with hmac and cookie is
#: about 330 bytes. Replies (``stats``) may be larger and nest one level.
MAX_CONTROL = 1024


def request_problem(data: bytes) -> str | None:
    """Cheap checks of a control request before any parsing: None if it may be one, else
    why not: ``oversized`` (over ``MAX_CONTROL`` bytes) or ``nested`` (not one flat JSON
    object: requests carry no arrays and no objects inside)."""
    if len(data) > MAX_CONTROL:
        return "oversized"
    body = data[5:]
    if not body.startswith(b"{") or body.count(b"{") != 1 or b"[" in body:
        return "nested"
    return None


def parse_control(data: bytes) -> dict[str, Any] | None:
    """The JSON object of a control datagram, or None if it is not one. Never raises: at
    most 8 objects or arrays in all are parsed (no recursion bomb)."""
    if len(data) < 6 or data[:3] != MAGIC or data[4] != KIND_CONTROL:
        return None
    body = data[5:]
    if body.count(b"{") + body.count(b"[") > 8:
        return None
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, int digits
        return None
    return msg if isinstance(msg, dict) else None


def canonical(msg: dict[str, Any], without: Sequence[str] = ("hmac",)) -> bytes:
    """The canonical JSON of ``msg`` (sorted keys, no spaces) without the keys ``without``."""
    body = {k: v for k, v in msg.items() if k not in without}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(msg: dict[str, Any], secret: str) -> str:
    """HMAC-SHA256 (hex) over the canonical JSON of ``msg`` without its ``hmac`` key: every
    session parameter, the nonce, the time and the responder's cookie."""
    return hmac.new(secret.encode(), canonical(msg), hashlib.sha256).hexdigest()


def verify(msg: dict[str, Any], secret: str) -> bool:
    mac = msg.get("hmac")
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(msg, secret))


MAX_VIDEO_KBPS = 100_000.0  # bounds of the wire schema; a responder's own caps are lower
MAX_DURATION_S = 3600.0


class Hello(BaseModel):
    """A session request, checked strictly (JSON types as sent, bounds on every number,
    no unknown keys) before a responder does anything with it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    op: Literal["hello"]
    v: int
    sid: int = Field(ge=1, le=0xFFFFFFFF)
    profile: ProfileName | None = None
    video_kbps: float = Field(gt=0, le=MAX_VIDEO_KBPS, allow_inf_nan=False)
    duration_s: float = Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    dscp_audio: int = Field(46, ge=0, le=63)
    dscp_video: int = Field(34, ge=0, le=63)
    keyframes: bool = True
    keyframe_offset: int = Field(0, ge=0, lt=60)
    nonce: str = Field("", max_length=64, pattern=r"^[0-9a-f]*$")
    time: float = Field(0.0, ge=0, le=1e11, allow_inf_nan=False)
    hmac: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    cookie: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")


class Stop(BaseModel):
    """The end of the upstream: how much the probe sent, over what span (its clock)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    op: Literal["stop"]
    v: int
    sid: int = Field(ge=1, le=0xFFFFFFFF)
    sent: int = Field(ge=0, le=0xFFFFFFFF)
    first_ns: int = Field(0, ge=0, le=0xFFFFFFFFFFFFFFFF)
    last_ns: int = Field(0, ge=0, le=0xFFFFFFFFFFFFFFFF)
    duration_s: float | None = Field(None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    sent_kbps: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False)
    late_p95_ms: float | None = Field(None, ge=0, le=1e7, allow_inf_nan=False)


def first_error(e: Any) -> str:
    """``field: message`` of a pydantic ValidationError's first error, one short line."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "request"
    return f"{loc}: {err.get('msg', 'invalid')}"[:80]


def parse_media(data: bytes) -> tuple[int, int, int, int, int, int, int] | None:
    """(sid, seq, stream, send_ns, echo_ns, hold_us, frame) of a media datagram, else None."""
    if len(data) < HEADER_SIZE or data[:3] != MAGIC:
        return None
    _m, ver, kind, stream, _p, sid, seq, send_ns, echo_ns, hold_us, frame = HEADER.unpack_from(data)
    if ver != PROTOCOL_VERSION or kind != KIND_MEDIA:
        return None
    return sid, seq, stream, send_ns, echo_ns, hold_us, frame
