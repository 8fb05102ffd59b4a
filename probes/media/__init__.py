"""The video-consultation probe (``netready probe media``): an emulated call, both directions.

Sends what a real 1:1 video consultation sends, upstream and downstream at once, against a
media responder (``probes/media_responder.py``):

- audio: one packet every 20 ms (160 bytes of G.711-like payload + 12 bytes RTP-like header,
  68.8 kbit/s of UDP payload), marked DSCP EF (46) by default;
- video: 30 frames/s at the profile rate (SD 0.5, HD 1.5, FHD 2.5 Mbit/s of UDP payload),
  each frame split into equal packets of at most 1,200 bytes sent back to back (a per-frame
  burst); every 60th frame is a key frame three times the size (the others shrink so the
  average rate holds); marked AF41 (34).

The receiver of each direction timestamps every packet (kernel ``SO_TIMESTAMPNS``), and
records the DSCP it arrived with. Statistics need no clock sync: jitter and delay variation
use differences only; the RTT comes from an echo carried in every packet (the sender's last
received peer timestamp and how long it held it, as in NTP/TWAMP), measured *under the load
of the call*. MOS uses one-way latency = RTT p50 / 2.

Wire protocol (version 2, all integers big-endian), one UDP socket per call:

    header  = "NRM" version:u8 kind:u8 stream:u8 pad:u16 sid:u32 seq:u32
              send_ns:u64 echo_ns:u64 hold_us:u32 frame:u32          (40 bytes)
    kind 1  = media: header + zero padding up to the packet size
    kind 2  = control: "NRM" version:u8 kind:u8 + JSON object
              (hello/retry/accept/reject/stop/stats; requests are ``Hello`` and ``Stop``)

A hello is first answered with ``retry {sid, cookie}`` (no larger than the hello); the probe
repeats the hello with the cookie, proving it receives at its address, and only then does
the responder accept and stream (``probes/media_responder.py``).

The sans-IO core is ``RxTrace``/``trace_stats`` (received packets in, per-direction
statistics out, in memory bounded by the declared schedule) and ``evaluate`` (statistics
in, rubric verdict out); the asyncio edge is ``run_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import secrets
import socket
import struct
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import budget, stats
from netready.inventory import Secret, split_hostport
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

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
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # cmsg: packets the socket dropped so far
RCVBUF = 4 << 20

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


# --------------------------------------------------------------------------- sans-IO stats


@dataclass(frozen=True, slots=True)
class Arrival:
    """One received media packet. ``send_ns`` is in the sender's clock, ``recv_ns`` in the
    receiver's (monotonic, ns); ``echo_ns``/``hold_ns`` carry the RTT echo (0 if none)."""

    seq: int
    stream: int
    send_ns: int
    recv_ns: int
    size: int
    tos: int | None = None
    echo_ns: int = 0
    hold_ns: int = 0


@dataclass
class DirectionStats:
    """Receive statistics of one direction of one call (what ``trace_stats`` returns)."""

    sent: int
    received: int
    duplicates: int = 0
    loss_pct: float | None = None
    loss_15s_worst_pct: float | None = None
    burst_loss_200ms_worst_pct: float | None = None
    max_burst_lost: int = 0
    reorder_pct: float | None = None
    jitter_rfc3550_ms: float | None = None
    jitter_rfc3550_15s_worst_ms: float | None = None
    video_jitter_rfc3550_ms: float | None = None
    ipdv_p95_ms: float | None = None
    pdv_p95_ms: float | None = None
    achieved_kbps: float | None = None
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None
    rtt_samples: int = 0
    dscp_audio_rx: int | None = None
    dscp_video_rx: int | None = None
    dscp_preserved: bool | None = None
    host_drops: int = 0  # dropped by the receiving host's socket buffer (not the network)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DirectionStats:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def _send_times(
    kind: bytearray, send_ns: Sequence[int], sent: int, span: tuple[int, int] | None
) -> array[float]:
    """Send time (ns) of every sequence number 0..sent-1: measured when received
    (``kind[s]`` non-zero), otherwise interpolated between the nearest received neighbours
    (or the sender's first/last send time, ``span``). One pass; no per-packet objects."""
    n = min(sent, len(kind))

    def anchors() -> Iterator[tuple[int, int]]:
        last = -1
        if span is not None and not (n > 0 and kind[0]):
            yield 0, span[0]
            last = 0
        for s in range(n):
            if kind[s]:
                yield s, send_ns[s]
                last = s
        if span is not None and last != sent - 1:
            yield sent - 1, span[1]

    it = anchors()
    cur = next(it, None)
    if cur is None:
        return array("d", bytes(8 * sent))
    nxt = next(it, None)
    out = array("d")
    for s in range(sent):
        while nxt is not None and nxt[0] <= s:
            cur, nxt = nxt, next(it, None)
        a, ta = cur
        if s == a or nxt is None or s < a:
            out.append(float(ta))
        else:
            b, tb = nxt
            out.append(ta + (tb - ta) * (s - a) / (b - a))
    return out


class RxTrace:
    """The receive side of one direction of a call, fed one packet at a time (``add``), in
    memory bounded by ``capacity`` sequence numbers whatever the packets' size.

    Kept per sequence number: whether and on which stream it arrived, its send and
    receive time and its RTT sample (25 bytes), and its place in the arrival order
    (4 bytes). Nothing is kept for a duplicate or a sequence number outside
    0..capacity-1 (both counted). The responder sizes ``capacity`` from the session's
    declared schedule (``schedule_packets``), so a session's memory is at most
    ``BYTES_PER_PACKET`` x that. ``stats(sent, ...)`` is ``trace_stats``: packets with a
    sequence number >= ``sent`` are left out, except from the duplicate, byte and DSCP
    counts, which are kept as packets arrive (a sender on its schedule sends none).
    """

    BYTES_PER_PACKET = 29

    def __init__(self, capacity: int):
        self.capacity = max(0, capacity)
        self.kind = bytearray()  # per seq: 0 not received, else 1 + stream
        self.send_ns = array("Q")
        self.recv_ns = array("Q")
        self.rtt_ms = array("d")  # per seq: NaN when the packet carried no usable echo
        self.order = array("I")  # first arrivals, in arrival order
        self.tos: Counter[tuple[int, int]] = Counter()  # (stream, DSCP) of first arrivals
        self.bytes = 0  # UDP payload of first arrivals
        self.arrivals = 0
        self.duplicates = 0
        self.out_of_range = 0

    def _grow(self, seq: int) -> None:
        have = len(self.kind)
        k = min(self.capacity, max(seq + 1, 2 * have, 256)) - have
        self.kind.extend(bytes(k))
        zeros = bytes(8 * k)
        self.send_ns.frombytes(zeros)
        self.recv_ns.frombytes(zeros)
        self.rtt_ms.frombytes(zeros)

    def add(
        self,
        seq: int,
        stream: int,
        send_ns: int,
        recv_ns: int,
        size: int,
        tos: int | None = None,
        echo_ns: int = 0,
        hold_ns: int = 0,
    ) -> None:
        self.arrivals += 1
        if not 0 <= seq < self.capacity:
            self.out_of_range += 1
            return
        if seq >= len(self.kind):
            self._grow(seq)
        if self.kind[seq]:
            self.duplicates += 1
            return
        self.kind[seq] = 1 + min(stream, 254)
        self.send_ns[seq] = send_ns
        self.recv_ns[seq] = recv_ns
        rtt = (recv_ns - echo_ns - hold_ns) / 1e6 if echo_ns else math.nan
        self.rtt_ms[seq] = rtt if 0 <= rtt < 60_000 else math.nan
        self.order.append(seq)
        self.bytes += size
        if tos is not None:
            self.tos[(stream, tos >> 2)] += 1

    def memory_bytes(self) -> int:
        """Bytes held by the per-packet arrays (what grows with the packet count)."""
        return (
            len(self.kind)
            + sum(a.itemsize * len(a) for a in (self.send_ns, self.recv_ns, self.rtt_ms))
            + self.order.itemsize * len(self.order)
        )

    def stats(
        self,
        sent: int,
        duration_s: float,
        *,
        send_span_ns: tuple[int, int] | None = None,
        dscp_audio: int | None = None,
        dscp_video: int | None = None,
        window_s: float = 15.0,
        burst_window_ms: float = 200.0,
    ) -> DirectionStats:
        """Statistics of this direction once ``sent`` packets were sent (see ``trace_stats``)."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        n = min(max(sent, 0), len(kind))
        received = n - kind.count(0, 0, n)
        st = DirectionStats(sent=sent, received=received, duplicates=self.duplicates)
        if sent <= 0:
            return st
        order: Sequence[int] = self.order
        if max(order, default=-1) >= sent:
            order = array("I", (s for s in order if s < sent))
        st.loss_pct = 100.0 * (sent - received) / sent
        st.reorder_pct = stats.reorder_pct(order)
        if duration_s > 0:
            st.achieved_kbps = self.bytes * 8 / duration_s / 1000.0
        # Loss in time windows: every packet sent, with interpolated send times for lost ones.
        times = _send_times(kind, send, sent, send_span_ns)
        got = bytes(kind[:n]) + bytes(sent - n)  # non-zero: received
        st.loss_15s_worst_pct = stats.worst_window_loss_pct(times, got, window_s * 1e9)
        st.burst_loss_200ms_worst_pct = stats.worst_window_loss_pct(
            times, got, burst_window_ms * 1e6
        )
        st.max_burst_lost = stats.max_burst(got)
        del times, got
        if not received:
            return st
        audio_kind, video_kind = 1 + STREAM_AUDIO, 1 + STREAM_VIDEO
        # RFC 3550 jitter in arrival order; the 15 s windows (by arrival) of the audio's.
        ja, jv = stats.RunningJitter(), stats.RunningJitter()
        win: dict[int, list[float]] = {}
        t0: int | None = None
        for s in order:
            k = kind[s]
            if k == audio_kind:
                j = ja.add(send[s] / 1e6, recv[s] / 1e6)
                if j is not None:
                    if t0 is None:
                        t0 = recv[s]
                    acc = win.setdefault(int((recv[s] - t0) // (window_s * 1e9)), [0.0, 0.0])
                    acc[0] += j
                    acc[1] += 1
            elif k == video_kind:
                jv.add(send[s] / 1e6, recv[s] / 1e6)
        if ja.n:
            st.jitter_rfc3550_ms = ja.mean
            st.jitter_rfc3550_15s_worst_ms = max(a / b for a, b in win.values())
            by_seq = array(
                "d", ((recv[s] - send[s]) / 1e6 for s in range(n) if kind[s] == audio_kind)
            )
            ipdv = array("d", (abs(x) for x in stats.ipdv(by_seq)))
            (st.ipdv_p95_ms,) = stats.percentiles(ipdv, 95)
        if jv.n:
            st.video_jitter_rfc3550_ms = jv.mean
        delays = array("d", ((recv[s] - send[s]) / 1e6 for s in range(n) if kind[s]))
        (p95,) = stats.percentiles(delays, 95)  # of delay - min delay: the same, shifted
        st.pdv_p95_ms = None if p95 is None else p95 - min(delays)
        del delays
        rtt = self.rtt_ms
        rtts = array("d", (rtt[s] for s in range(n) if kind[s] and not math.isnan(rtt[s])))
        st.rtt_samples = len(rtts)
        st.rtt_p50_ms, st.rtt_p95_ms = stats.percentiles(rtts, 50, 95)
        tos_a = Counter({d: c for (stream, d), c in self.tos.items() if stream == STREAM_AUDIO})
        tos_v = Counter({d: c for (stream, d), c in self.tos.items() if stream == STREAM_VIDEO})
        if tos_a:
            st.dscp_audio_rx = tos_a.most_common(1)[0][0]
        if tos_v:
            st.dscp_video_rx = tos_v.most_common(1)[0][0]
        checks = []
        if tos_a and dscp_audio is not None:
            checks.append(tos_a.get(dscp_audio, 0) == sum(tos_a.values()))
        if tos_v and dscp_video is not None:
            checks.append(tos_v.get(dscp_video, 0) == sum(tos_v.values()))
        if checks:
            st.dscp_preserved = all(checks)
        return st


def trace_stats(
    arrivals: Iterable[Arrival],
    sent: int,
    duration_s: float,
    *,
    send_span_ns: tuple[int, int] | None = None,
    dscp_audio: int | None = None,
    dscp_video: int | None = None,
    window_s: float = 15.0,
    burst_window_ms: float = 200.0,
) -> DirectionStats:
    """Statistics of one direction of a call from its received packet trace (no I/O).

    ``arrivals`` in arrival order; ``sent`` packets were sent (sequence numbers 0..sent-1)
    over ``duration_s`` seconds; ``send_span_ns`` is the sender's first and last send time
    (its clock), used to place trailing/leading losses in time. Jitter, IPDV and the 15 s
    jitter windows use the audio stream (the packets every 20 ms that MOS is about); loss,
    burst loss and reorder use every packet; PDV uses every packet. Packets with a sequence
    number >= ``sent`` are ignored. The same as feeding an ``RxTrace`` packet by packet.
    """
    rx = RxTrace(sent)
    for a in arrivals:
        rx.add(a.seq, a.stream, a.send_ns, a.recv_ns, a.size, a.tos, a.echo_ns, a.hold_ns)
    return rx.stats(
        sent,
        duration_s,
        send_span_ns=send_span_ns,
        dscp_audio=dscp_audio,
        dscp_video=dscp_video,
        window_s=window_s,
        burst_window_ms=burst_window_ms,
    )


# --------------------------------------------------------------------------- rubric gates

#: Per direction, per call: (field of the direction record, rubric metric, label). The
#: thresholds live in ``netready/rubric.py`` (the table in docs/design.md, with sources).
GATES: list[tuple[str, str, str]] = [
    ("loss_15s_worst_pct", "loss_pct", "worst 15 s loss"),
    ("jitter_rfc3550_15s_worst_ms", "jitter_ms", "worst 15 s jitter (RFC 3550)"),
    ("burst_loss_200ms_worst_pct", "burst_loss_pct", "worst 200 ms burst loss"),
    ("reorder_pct", "reorder_pct", "reorder"),
    ("rtt_p50_ms", "rtt_ms", "RTT p50 under load"),
    ("mos", "mos", "MOS (E-model)"),
]
DIRECTION_NAMES = {"up": "upload", "down": "download"}
SENDER_MIN_RATIO = 0.9  # a sender below 90 % of the profile rate invalidates the verdict
TIERS = ("recommended", "minimum", "marginal", "not_ready")  # best first


def mos_of(st: DirectionStats) -> float | None:
    """E-model MOS with one-way latency = RTT p50 / 2 (no clock sync needed)."""
    if st.loss_pct is None or st.jitter_rfc3550_ms is None:
        return None
    one_way = (st.rtt_p50_ms or 0.0) / 2.0
    return stats.emodel_mos(one_way, st.jitter_rfc3550_ms, st.loss_pct)


@dataclass
class Verdict:
    passed: bool  # every gate meets the minimum tier, and the measurement is valid
    tier: str  # the worst band over the gates: recommended, minimum, marginal, not_ready
    reasons: list[str] = field(default_factory=list)  # failures against the minimum tier
    recommended_reasons: list[str] = field(default_factory=list)


def evaluate(directions: dict[str, dict[str, Any]]) -> Verdict:
    """Verdict against the rubric for the worst-case values per direction (sans-IO).

    ``directions`` maps "up"/"down" to fields (as in the direction records). A missing
    value is a failure ("no data"), never a pass; so is an invalid measurement (the
    measuring host dropped or could not send packets, or sent below the profile rate).
    """
    from netready.rubric import RUBRIC

    reasons: list[str] = []
    rec: list[str] = []
    worst = 0
    for d in ("up", "down"):
        f = directions.get(d)
        name = DIRECTION_NAMES[d]
        if f is None:
            reasons.append(f"{name}: no statistics")
            worst = len(TIERS) - 1
            continue
        for key, metric, label in GATES:
            t = RUBRIC[metric]
            unit = "%" if t.unit == "%" else f" {t.unit}" if t.unit else ""
            v = f.get(key)
            if v is None:
                reasons.append(f"{name}: {label} not measured")
                worst = len(TIERS) - 1
                continue
            band = t.band(float(v))
            worst = max(worst, TIERS.index(band))
            bad = (">" if t.inclusive else "≥") if t.better == "lower" else "<"
            if not t.passes(v, t.minimum):
                reasons.append(f"{name}: {label} {v:.3g}{unit} {bad} {t.minimum:g}{unit}")
            elif not t.passes(v, t.recommended):
                rec.append(f"{name}: {label} {v:.3g}{unit} {bad} {t.recommended:g}{unit}")
        invalid = []
        if f.get("host_drops"):
            invalid.append(
                f"{name}: {f['host_drops']} packets dropped in the receiving host's socket "
                "buffer (host overloaded; result not valid)"
            )
        if f.get("send_errors"):
            invalid.append(
                f"{name}: the sender could not send {f['send_errors']} packets (local socket "
                "errors; result not valid)"
            )
        sent, offered = f.get("sent_kbps"), f.get("offered_kbps")
        if sent is not None and offered and sent < SENDER_MIN_RATIO * offered:
            invalid.append(
                f"{name}: sender reached only {sent:.0f} of {offered:.0f} kbit/s "
                "(measuring host too slow; result not valid)"
            )
        if invalid:
            reasons.extend(invalid)
            worst = len(TIERS) - 1
    return Verdict(not reasons, TIERS[worst], reasons, rec)


# --------------------------------------------------------------------------- socket edge


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
    """Send one direction of a call on a monotonic schedule (no drift: each event has an
    absolute deadline t0 + k * interval; we sleep until it). ``addr`` None = connected."""
    res = result if result is not None else SendResult()
    fam = sock.family
    if fam == socket.AF_INET6 and addr is not None and addr[0].startswith("::ffff:"):
        fam = socket.AF_INET  # an IPv4 client of a dual-stack socket: IP_TOS, not TCLASS
    cm_a = _tos_cmsg(fam, dscp_audio << 2)
    cm_v = _tos_cmsg(fam, dscp_video << 2)
    t0 = time.monotonic_ns() + int(start_delay_s * 1e9)
    end = t0 + int(duration_s * 1e9)
    ka = kv = 0
    late: list[float] = []
    seq = 0

    def emit(stream: int, size: int, frame: int, cm: list[tuple[int, int, bytes]]) -> None:
        nonlocal seq
        now = time.monotonic_ns()
        hold = (now - echo.local_recv_ns) // 1000 if echo.peer_send_ns else 0
        hdr = pack_media(sid, seq, stream, now, echo.peer_send_ns, hold, frame)
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
        seq += 1
        res.sent = seq

    start = time.monotonic_ns()
    while True:
        ta = t0 + ka * AUDIO_INTERVAL_NS
        tv = t0 + (kv * 1_000_000_000) // FPS
        t = min(ta, tv)
        if t >= end or (stop is not None and stop.is_set()):
            break
        now = time.monotonic_ns()
        if t > now:
            await asyncio.sleep((t - now) / 1e9)
        late.append(max(0, time.monotonic_ns() - t) / 1e6)
        if ta <= tv:
            emit(STREAM_AUDIO, AUDIO_PACKET, 0, cm_a)
            ka += 1
        else:
            for size in frame_packets(kv + keyframe_offset, video_kbps, keyframes):
                emit(STREAM_VIDEO, size, kv, cm_v)
            kv += 1
    res.elapsed_s = max(duration_s, (time.monotonic_ns() - max(start, t0)) / 1e9)
    res.late_p95_ms = stats.percentile(late, 95)
    return res


def parse_media(data: bytes) -> tuple[int, int, int, int, int, int, int] | None:
    """(sid, seq, stream, send_ns, echo_ns, hold_us, frame) of a media datagram, else None."""
    if len(data) < HEADER_SIZE or data[:3] != MAGIC:
        return None
    _m, ver, kind, stream, _p, sid, seq, send_ns, echo_ns, hold_us, frame = HEADER.unpack_from(data)
    if ver != PROTOCOL_VERSION or kind != KIND_MEDIA:
        return None
    return sid, seq, stream, send_ns, echo_ns, hold_us, frame


# --------------------------------------------------------------------------- one call


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
) -> CallResult:
    """One emulated call against a responder. Raises ``CallFailed`` (result, reason)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise CallFailed("unreachable", f"cannot resolve {host}: {e.strerror}") from None
    fam, _, _, _, addr = infos[0]
    sock = open_media_socket(fam)
    clock = Clock()
    echo = Echo()
    # what the responder's downstream sends at most (the same schedule as ours)
    down = RxTrace(schedule_packets(profile.video_kbps, duration_s, keyframes) + 64)
    control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    errors: list[OSError] = []
    sid = secrets.randbits(32) or 1

    def on_readable() -> None:
        for _ in range(512):
            try:
                data, anc, _f, _a = sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP port/host unreachable on the connected socket
                errors.append(e)
                control.put_nowait({"op": "_error"})
                return
            m = parse_media(data)
            if m is not None:
                if m[0] != sid:
                    continue
                recv_ns, tos = clock.from_cmsg(anc)
                _sid, seq, stream, send_ns, echo_ns, hold_us, _frame = m
                down.add(seq, stream, send_ns, recv_ns, len(data), tos, echo_ns, hold_us * 1000)
                echo.peer_send_ns, echo.local_recv_ns = send_ns, recv_ns
                continue
            msg = parse_control(data)
            if msg is not None and msg.get("sid") == sid and control.qsize() < 64:
                control.put_nowait(msg)

    async def exchange(
        req: dict[str, Any], want: set[str], tries: int, wait_s: float
    ) -> dict[str, Any]:
        for _ in range(tries):
            try:
                sock.send(pack_control(req))
            except OSError as e:
                errors.append(e)
            deadline = loop.time() + wait_s
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await asyncio.wait_for(control.get(), left)
                except TimeoutError:
                    break
                if msg.get("op") == "_error":
                    err = errors[-1]
                    raise CallFailed(
                        "unreachable",
                        f"responder {host}:{port} unreachable: "
                        f"{err.strerror or err} (is netready responder running?)",
                    )
                if msg.get("op") in want:
                    return msg
        raise CallFailed(
            "timeout",
            f"no answer from media responder {host}:{port} "
            f"after {tries} tries in {tries * wait_s:.1f} s",
        )

    try:
        try:
            sock.connect(addr)
        except OSError as e:
            raise CallFailed(
                "unreachable", f"cannot reach {host}:{port}: {e.strerror or e}"
            ) from None
        loop.add_reader(sock.fileno(), on_readable)
        hello: dict[str, Any] = {
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
        tries = max(1, math.ceil(timeout_s))
        # hello -> retry {cookie} -> hello + cookie -> accept | reject (address validation)
        req = hello
        for _ in range(3):
            if secret:
                req["hmac"] = sign(req, secret)
            reply = await exchange(req, {"accept", "reject", "retry"}, tries, timeout_s / tries)
            if reply["op"] != "retry":
                break
            cookie = reply.get("cookie")
            if not isinstance(cookie, str):
                raise CallFailed("refused", f"responder {host}:{port} sent a retry without cookie")
            req = {k: v for k, v in hello.items() if k != "hmac"} | {"cookie": cookie}
        else:
            raise CallFailed(
                "refused", f"responder {host}:{port} kept asking for a new cookie (3 retries)"
            )
        if reply["op"] == "reject":
            code = reply.get("code", "refused")
            raise CallFailed(
                code if code in ("refused", "auth_failed", "link_busy") else "refused",
                f"responder {host}:{port} refused the session: "
                f"{reply.get('reason', 'no reason given')}",
            )
        up = await send_stream(
            sock,
            None,
            sid,
            profile.video_kbps,
            duration_s,
            echo,
            dscp_audio=dscp_audio,
            dscp_video=dscp_video,
            keyframes=keyframes,
            keyframe_offset=keyframe_offset,
            start_delay_s=start_delay_s,
        )
        stop = {
            "op": "stop",
            "v": PROTOCOL_VERSION,
            "sid": sid,
            "sent": up.sent,
            "first_ns": up.first_ns,
            "last_ns": up.last_ns,
            "duration_s": duration_s,
            "sent_kbps": up.sent_kbps,
            "late_p95_ms": up.late_p95_ms,
        }
        up_error = None
        try:
            st_msg = await exchange(stop, {"stats"}, 8, 1.0)
        except CallFailed as e:
            st_msg = {}
            up_error = e.reason.replace("no answer", "no statistics")
        down_info = st_msg.get("down") or {}
        up_stats = DirectionStats.from_json(st_msg["up"]) if st_msg.get("up") else None
        down_stats = None
        if down_info.get("sent"):
            span = (int(down_info.get("first_ns", 0)), int(down_info.get("last_ns", 0)))
            down_stats = down.stats(
                min(int(down_info["sent"]), down.capacity),  # no more than the schedule
                duration_s,
                send_span_ns=span if span[0] else None,
                dscp_audio=dscp_audio,
                dscp_video=dscp_video,
            )
            down_stats.host_drops = clock.drops
        return CallResult(up_stats, down_stats, up, down_info, up_error)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(sock.fileno())
        sock.close()


# --------------------------------------------------------------------------- the probe


class Spec(BaseModel):
    """What to measure: an emulated video consultation against a media responder."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="HOST:PORT of a netready media responder")
    profile: ProfileName = Field(
        "hd", description="video profile: sd 360p 0.5, hd 720p 1.5, fhd 1080p 2.5 Mbit/s"
    )
    duration_s: float = Field(
        15.0,
        gt=0,
        le=300,
        description="seconds per call (quality windows are 15 s)",
        json_schema_extra={"cli": "--duration"},
    )
    calls: int = Field(1, ge=1, le=200, description="concurrent calls")
    secret: Secret | None = Field(
        None, description="shared secret the responder requires: env:NAME or file:PATH"
    )
    dscp_audio: int = Field(46, ge=0, le=63, description="DSCP of the audio packets")
    dscp_video: int = Field(34, ge=0, le=63, description="DSCP of the video packets")
    keyframes: bool = Field(True, description="every 60th video frame a key frame 3x the size")
    timeout_s: float = Field(
        3.0,
        gt=0,
        le=60,
        description="seconds to wait for the responder's control answers",
        json_schema_extra={"cli": "--timeout"},
    )
    find_capacity: bool = Field(
        False, description="search for the most concurrent calls that meet the minimum gates"
    )
    max_calls: int = Field(32, ge=1, le=200, description="upper bound of the capacity search")
    step_duration_s: float | None = Field(
        None,
        gt=0,
        le=300,
        description="seconds per capacity-search step (default: duration_s)",
        json_schema_extra={"cli": "--step-duration"},
    )
    budget_s: float = Field(
        180.0, gt=0, le=3600, description="time budget of a capacity search, seconds"
    )
    max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="byte cap of one run (IP bytes, both directions), MB; default: the "
        "site's budget.test_mb (100)",
        json_schema_extra={"cli": "--budget-mb"},
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        split_hostport(v)  # raises ValueError with a clear message
        return v

    def resolved_secret(self) -> str | None:
        return self.secret.resolve() if self.secret else None


IP_UDP_OVERHEAD = 28  # bytes of IPv4 + UDP header per packet, counted against budgets


def call_bytes(profile: MediaProfile, duration_s: float) -> float:
    """IP bytes one call moves (both directions) in ``duration_s``."""
    per_2s = sum(len(frame_packets(k, profile.video_kbps)) for k in range(2 * FPS))
    pps = 1e9 / AUDIO_INTERVAL_NS + per_2s / 2
    return 2 * (profile.kbps * 1000 / 8 + pps * IP_UDP_OVERHEAD) * duration_s


def cap_bytes(ctx: Context, spec: Spec) -> int:
    """Most bytes this run may move: the spec's ``max_mb``, the site's per-test budget and
    what is left of its day (``netready.budget``); 100 MB by default."""
    return budget.test_cap_bytes(ctx, spec.max_mb)


def cost(spec: Spec) -> float | None:
    """IP bytes a run moves (its calls, both directions); ``None`` for a capacity search,
    which meters itself step by step against the cap."""
    if spec.find_capacity:
        return None
    return spec.calls * call_bytes(MEDIA_PROFILES[spec.profile], spec.duration_s)


def _base_tags(ctx: Context, spec: Spec) -> dict[str, str]:
    return {**ctx.tags, "target": spec.target, "profile": spec.profile, "method": "udp"}


def _merge(dirs: list[DirectionStats], duration_s: float) -> dict[str, Any]:
    """One direction over N concurrent calls: totals for counts, worst call for quality."""
    sent = sum(d.sent for d in dirs)
    recv = sum(d.received for d in dirs)

    def worst(key: str, fn: Callable[..., Any] = max) -> Any:
        vals = [getattr(d, key) for d in dirs if getattr(d, key) is not None]
        return fn(vals) if vals else None

    ach = [d.achieved_kbps for d in dirs if d.achieved_kbps is not None]
    dscp = [d.dscp_preserved for d in dirs if d.dscp_preserved is not None]
    out = {
        "sent": sent,
        "received": recv,
        "duplicates": sum(d.duplicates for d in dirs),
        "host_drops": sum(d.host_drops for d in dirs),
        "loss_pct": 100.0 * (sent - recv) / sent if sent else None,
        "loss_15s_worst_pct": worst("loss_15s_worst_pct"),
        "burst_loss_200ms_worst_pct": worst("burst_loss_200ms_worst_pct"),
        "max_burst_lost": worst("max_burst_lost"),
        "reorder_pct": worst("reorder_pct"),
        "jitter_rfc3550_ms": worst("jitter_rfc3550_ms"),
        "jitter_rfc3550_15s_worst_ms": worst("jitter_rfc3550_15s_worst_ms"),
        "video_jitter_rfc3550_ms": worst("video_jitter_rfc3550_ms"),
        "ipdv_p95_ms": worst("ipdv_p95_ms"),
        "pdv_p95_ms": worst("pdv_p95_ms"),
        "rtt_p50_ms": worst("rtt_p50_ms"),
        "rtt_p95_ms": worst("rtt_p95_ms"),
        "achieved_kbps": sum(ach) / len(ach) if ach else None,
        "dscp_audio_rx": worst("dscp_audio_rx", lambda v: Counter(v).most_common(1)[0][0]),
        "dscp_video_rx": worst("dscp_video_rx", lambda v: Counter(v).most_common(1)[0][0]),
        "dscp_preserved": all(dscp) if dscp else None,
    }
    # MOS of the worst call (each call's own loss, jitter and RTT).
    moss = [m for m in (mos_of(d) for d in dirs) if m is not None]
    out["mos"] = min(moss) if moss else None
    return out


async def measure(
    ctx: Context, spec: Spec, calls: int, duration_s: float, method: str = "udp"
) -> tuple[list[Record], Verdict | None, str | None, int]:
    """Run ``calls`` concurrent calls. Returns (records, verdict or None, failure result,
    bytes moved)."""
    prof = MEDIA_PROFILES[spec.profile]
    host, port = split_hostport(spec.target)
    secret = spec.resolved_secret()
    tags = {**_base_tags(ctx, spec), "method": method}
    t_ms = now_ms()
    frame_ns = 1e9 / FPS
    coros = [
        run_call(
            host,
            port,
            prof,
            duration_s,
            secret=secret,
            dscp_audio=spec.dscp_audio,
            dscp_video=spec.dscp_video,
            keyframes=spec.keyframes,
            keyframe_offset=i * KEYFRAME_EVERY // calls,
            start_delay_s=(i * frame_ns / calls) / 1e9,
            timeout_s=spec.timeout_s,
        )
        for i in range(calls)
    ]
    results = await asyncio.gather(*coros, return_exceptions=True)
    ok: list[CallResult] = []
    fails: list[CallFailed] = []
    for r in results:
        if isinstance(r, CallFailed):
            fails.append(r)
        elif isinstance(r, BaseException):
            fails.append(CallFailed("error", f"{type(r).__name__}: {r}"))
        else:
            ok.append(r)
    moved = sum(
        r.up_send.bytes
        + IP_UDP_OVERHEAD * r.up_send.sent
        + int(r.down_send.get("bytes", 0))
        + IP_UDP_OVERHEAD * int(r.down_send.get("sent", 0))
        for r in ok
    )
    if fails:
        f = fails[0]
        more = f" ({len(fails)} of {calls} calls failed)" if calls > 1 else ""
        rec = failure(
            "media",
            tags,
            f.result,
            f.reason + more,
            time_ms=t_ms,
            calls=calls,
            bytes=moved or None,  # type: ignore[arg-type]
        )
        return [rec], None, f.result, moved
    records: list[Record] = []
    fields_by_dir: dict[str, dict[str, Any]] = {}
    for d in ("up", "down"):
        dirs = [getattr(r, d) for r in ok if getattr(r, d) is not None]
        if d == "up":
            sends = [(r.up_send.sent_kbps, r.up_send.late_p95_ms) for r in ok]
            errs = sum(r.up_send.errors for r in ok)
        else:
            sends = [(r.down_send.get("sent_kbps"), r.down_send.get("late_p95_ms")) for r in ok]
            errs = sum(int(r.down_send.get("errors") or 0) for r in ok)
        if not dirs:
            reason = next((r.up_error for r in ok if r.up_error), f"no {d} statistics")
            records.append(
                failure(
                    "media", {**tags, "direction": d}, "timeout", reason, time_ms=t_ms, calls=calls
                )
            )
            continue
        fl = _merge(dirs, duration_s)
        skbps = [s for s, _ in sends if s is not None]
        late = [x for _, x in sends if x is not None]
        fl.update(
            calls=calls,
            duration_s=float(duration_s),
            offered_kbps=prof.kbps,
            sent_kbps=min(skbps) if skbps else None,
            send_late_p95_ms=max(late) if late else None,
            send_errors=errs,
            latency_basis="rtt/2",
        )
        fields_by_dir[d] = fl
        records.append(Record("media", {**tags, "direction": d, "result": "ok"}, fl, t_ms))
    verdict = evaluate(fields_by_dir)
    records.append(
        Record(
            "media",
            {**tags, "gate": "minimum", "result": "ok"},
            {
                "passed": verdict.passed,
                "tier": verdict.tier,
                "reasons": "; ".join(verdict.reasons) or "all minimum gates met",
                "recommended_reasons": "; ".join(verdict.recommended_reasons)
                or "all recommended gates met",
                "calls": calls,
                "bytes": moved,
            },
            t_ms,
        )
    )
    return records, verdict, None, moved


async def find_capacity(ctx: Context, spec: Spec) -> list[Record]:
    """Largest number of concurrent calls that meets the minimum gates: 1, 2, 4, … until a
    failure, then bisect; bounded by ``max_calls``, ``budget_s`` and the byte cap."""
    prof = MEDIA_PROFILES[spec.profile]
    step_s = spec.step_duration_s or spec.duration_s
    tags = {**_base_tags(ctx, spec), "method": "find_capacity"}
    t0 = time.monotonic()
    budget_bytes = cap_bytes(ctx, spec)
    used = 0
    lo, hi = 0, None  # largest passing, smallest failing
    steps: list[str] = []
    out: list[Record] = []
    limit_reason = ""
    complete = True
    n = 1
    overhead_s = 2.0 + spec.timeout_s
    while True:
        need_b = n * call_bytes(prof, step_s)
        if (
            used + need_b > budget_bytes
            or time.monotonic() - t0 + step_s + overhead_s > spec.budget_s
        ):
            what = (
                f"byte budget {budget_bytes / 1e6:g} MB"
                if used + need_b > budget_bytes
                else f"time budget {spec.budget_s:g} s"
            )
            if not steps:
                return [
                    failure(
                        "media",
                        tags,
                        "budget_exceeded",
                        f"{n} call(s) of {step_s:g} s would exceed the {what}",
                        capacity_calls_min=0,
                    )
                ]
            complete = False
            limit_reason = f"search stopped at the {what} before testing {n} calls"
            break
        recs, verdict, fail_result, moved = await measure(
            ctx, spec, n, step_s, method="find_capacity"
        )
        used += moved
        out.extend(recs)
        ctx.note(
            f"media: {n} concurrent {spec.profile} call(s): "
            + (fail_result or ("pass" if verdict and verdict.passed else "fail"))
        )
        if verdict is None:
            reason = recs[0].fields.get("reason", fail_result)
            if lo == 0 and hi is None:
                return [
                    *out,
                    failure(
                        "media",
                        tags,
                        fail_result or "error",
                        f"capacity search failed at {n} call(s): {reason}",
                    ),
                ]
            steps.append(f"{n}:{fail_result}")
            complete = False
            limit_reason = f"{n} calls: {reason}"
            break
        steps.append(f"{n}:{'pass' if verdict.passed else 'fail'}")
        if verdict.passed:
            lo = n
        else:
            hi = n
            limit_reason = f"{n} call(s): " + "; ".join(verdict.reasons)
        if hi is None:
            if n >= spec.max_calls:
                limit_reason = f"max_calls {spec.max_calls} reached (capacity at least this)"
                complete = False
                break
            n = min(n * 2, spec.max_calls)
        else:
            if hi - lo <= 1:
                break
            n = (lo + hi) // 2
        await asyncio.sleep(0.5)  # let queues drain between steps
    out.append(
        Record(
            "media",
            {**tags, "result": "ok"},
            {
                "capacity_calls": lo,
                "search_complete": complete,
                "limit_reason": limit_reason or "none",
                "steps": ",".join(steps),
                "step_duration_s": float(step_s),
                "elapsed_s": time.monotonic() - t0,
                "bytes_moved": used,
                "per_call_kbps": prof.kbps,
            },
        )
    )
    return out


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Emulated video consultation(s) against a media responder, both directions at once.

    The byte cap of a plain run is the budget's business (its ``cost`` is known before it
    starts: ``netready.budget.admit``); a capacity search meters itself against the cap.
    """
    spec.resolved_secret()  # a bad secret reference is a config error (SecretError)
    if spec.find_capacity:
        return await find_capacity(ctx, spec)
    recs, *_ = await measure(ctx, spec, spec.calls, spec.duration_s)
    return recs


_DIR = "per direction of the call(s) (direction tag up|down)"
_GATE = "the minimum-gate verdict (gate=minimum)"
_CAP = "a capacity search (method=find_capacity)"

PLUGIN = Plugin(
    kind="probe",
    name="media",
    spec=Spec,
    run=run,
    measurement="media",
    method="udp",
    summary="Emulated video consultations against a media responder, both directions at once: "
    "loss, jitter, MOS, DSCP, and the concurrent-call capacity (--find-capacity).",
    heavy=True,
    cost=cost,
    interval_s=3600.0,
    fields=(
        Metric("calls", "calls", "concurrent calls in this measurement"),
        Metric("sent", "packets", f"media packets sent (audio + video), {_DIR}"),
        Metric("received", "packets", "media packets received"),
        Metric("duplicates", "packets", "media packets received more than once"),
        Metric("loss_pct", "%", "100 x (sent - received) / sent"),
        Metric("loss_15s_worst_pct", "%", "worst loss over 15 s windows of send time "
               "(rubric: loss)"),
        Metric("burst_loss_200ms_worst_pct", "%", "worst loss over 200 ms windows of send time "
               "(rubric: burst loss)"),
        Metric("max_burst_lost", "packets", "longest run of consecutive lost packets"),
        Metric("reorder_pct", "%", "packets arriving after a later-sent one (RFC 4737, "
               "simplified)"),
        Metric("jitter_rfc3550_ms", "ms", "RFC 3550 section 6.4.1 interarrival jitter of the "
               "audio stream: mean of the running J"),
        Metric("jitter_rfc3550_15s_worst_ms", "ms", "worst 15 s window (by arrival) of that "
               "mean (rubric: jitter)"),
        Metric("video_jitter_rfc3550_ms", "ms", "the same for the video packets (includes "
               "burst serialisation)"),
        Metric("ipdv_p95_ms", "ms", "p95 of |IPDV| (RFC 3393) between consecutive received "
               "audio packets"),
        Metric("pdv_p95_ms", "ms", "p95 of delay - min delay over all packets (RFC 5481 PDV): "
               "queueing"),
        Metric("rtt_p50_ms", "ms", "median RTT under the load of the call, from the echo "
               "every packet carries"),
        Metric("rtt_p95_ms", "ms", "95th percentile of the same"),
        Metric("mos", "1-5", "E-model MOS (netready.stats.emodel_mos) from RTT p50/2, audio "
               "jitter and loss; the worst call's"),
        Metric("latency_basis", "text", "rtt/2: the one-way latency fed to the E-model"),
        Metric("achieved_kbps", "kbit/s", "UDP payload received / duration, per call"),
        Metric("offered_kbps", "kbit/s", "the profile's rate per call"),
        Metric("sent_kbps", "kbit/s", "what the sender actually sent (slowest call)"),
        Metric("send_late_p95_ms", "ms", "p95 of the sender's wake-up lateness"),
        Metric("send_errors", "packets", "packets the sender's own socket refused (not network "
               "loss; any > 0 makes the verdict not valid)"),
        Metric("dscp_audio_rx", "DSCP", "DSCP most audio packets arrived with"),
        Metric("dscp_video_rx", "DSCP", "DSCP most video packets arrived with"),
        Metric("dscp_preserved", "bool", "every audio packet arrived with dscp_audio and every "
               "video packet with dscp_video"),
        Metric("duration_s", "s", "seconds per call"),
        Metric("host_drops", "packets", "packets the receiving host's socket buffer dropped "
               "(SO_RXQ_OVFL; not network loss; any > 0 makes the verdict not valid)"),
        Metric("passed", "bool", f"{_GATE}: both directions meet every minimum gate"),
        Metric("tier", "text", "worst rubric band over the gates: recommended, minimum, "
               "marginal or not_ready"),
        Metric("reasons", "text", "failures against the minimum tier, measured vs threshold"),
        Metric("recommended_reasons", "text", "what misses the recommended tier"),
        Metric("bytes", "bytes", "IP bytes this measurement moved, both directions (payload + "
               "28 B per packet); what the agent charges"),
        Metric("capacity_calls", "calls", f"{_CAP}: the largest number of concurrent calls that "
               "met the minimum gates (0: not even one)"),
        Metric("search_complete", "bool", "false if a budget, max_calls or a refusal ended the "
               "search early"),
        Metric("limit_reason", "text", "why the next count failed"),
        Metric("steps", "text", "the counts tried and their outcome, e.g. 1:pass,2:pass,4:fail,3:pass"),
        Metric("step_duration_s", "s", "seconds per search step"),
        Metric("elapsed_s", "s", "seconds the search took"),
        Metric("bytes_moved", "bytes", "IP bytes of the whole search (the sum of the steps' "
               "bytes; not named bytes so it is not charged twice)"),
        Metric("per_call_kbps", "kbit/s", "the profile rate per call and direction"),
        Metric("capacity_calls_min", "calls", "a search that could not run one step within "
               "its budgets: the capacity known so far (0)"),
    ),
)  # fmt: skip
