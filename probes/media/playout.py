"""The receiver's play-out, sans-IO: what a patient hears and sees of the packets that came.

A model of a WebRTC-like receiver (NetEq for audio, the video jitter buffer for frames),
simple enough to state in full and run on any trace:

- **Adaptive jitter buffer.** Each stream keeps the smallest one-way delay seen so far
  (``base``; send and receive clocks differ by a constant, which cancels) and a *target* =
  the ``quantile`` (95th) of the last ``window`` delays above ``base``, clamped to
  ``[min_ms, max_ms]``. It is causal: the target a packet meets is computed from the packets
  before it, as a real buffer's is. Audio: window 50 packets (1 s), 20-200 ms; video:
  window 60 frames (2 s), 10-500 ms (the floor absorbs a frame's own spread). NetEq's own
  target is the 95th percentile of its
  inter-arrival histogram with a forgetting factor and configurable min/max delay; ours
  is the same idea on a fixed window.
- **Discards.** A packet that arrives after its play-out deadline (its send time + base +
  target; for video, its frame's first packet's send time) is discarded: counted, not
  played. ThousandEyes and G.107 both count such packets with the lost ones.
- **Frames.** A video frame is *rendered* when all its packets arrived by the deadline.
  A **freeze** is, as the W3C webrtc-stats ``freezeCount`` defines it, a gap between two
  consecutive rendered frames of at least max(3 x the mean frame interval, mean + 150 ms),
  the mean over the last 30 rendered frames; its length is the gap.
- **Bounds of the model.** Each frame is taken to decode on its own (no wait for a key
  frame after a loss: retransmission, FEC and concealment are not modelled), so freezes
  are a lower bound; the buffer never drops frames to catch up. Audio loss concealment is
  the codec's (its Bpl in the E-model).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from netready import stats

FREEZE_MIN_MS = 150.0  # webrtc-stats: a freeze lasts >= max(3 x mean, mean + 150 ms)
FREEZE_MEAN_OVER = 30  # rendered frames the mean frame interval is taken over


@dataclass(frozen=True)
class BufferModel:
    """An adaptive jitter buffer's bounds (see the module docstring)."""

    window: int
    quantile: float
    min_ms: float
    max_ms: float


AUDIO_BUFFER = BufferModel(window=50, quantile=95.0, min_ms=20.0, max_ms=200.0)
VIDEO_BUFFER = BufferModel(window=60, quantile=95.0, min_ms=10.0, max_ms=500.0)


class JitterBuffer:
    """Play-out deadlines of one stream, fed in send order (``late(send_ms, delay_ms)``)."""

    def __init__(self, model: BufferModel):
        self.model = model
        self.base: float | None = None
        self.recent: deque[float] = deque(maxlen=model.window)  # delays above base
        self.last_target = 0.0
        self.target_sum = 0.0
        self.units = 0

    def target(self) -> float:
        m = self.model
        q = stats.percentile(list(self.recent), m.quantile) if self.recent else None
        return min(m.max_ms, max(m.min_ms, q if q is not None else m.min_ms))

    def late(self, delay_ms: float) -> bool:
        """Whether a unit with this one-way delay (any constant offset) misses its deadline;
        then learn from it."""
        if self.base is None or delay_ms < self.base:
            if self.base is not None:  # a lower floor: what we kept is relative to the old one
                shift = self.base - delay_ms
                self.recent = deque((x + shift for x in self.recent), maxlen=self.model.window)
            self.base = delay_ms
        tgt = self.target()
        self.last_target = tgt
        self.target_sum += tgt
        self.units += 1
        above = delay_ms - self.base
        self.recent.append(above)
        return above > tgt


@dataclass
class AudioPlayout:
    sent: int
    discarded: int
    lost: int
    buffer_ms: float | None  # mean target the packets met
    burst_r: float

    @property
    def discard_pct(self) -> float:
        return 100.0 * self.discarded / self.sent if self.sent else 0.0

    @property
    def ppl_pct(self) -> float:
        """Packets lost or discarded, % of sent: G.107's Ppl."""
        return 100.0 * (self.lost + self.discarded) / self.sent if self.sent else 0.0


def audio_playout(packets: Iterable[tuple[float, float] | None]) -> AudioPlayout:
    """``packets``: per audio packet in send order, (send_ms, recv_ms) or None if lost."""
    jb = JitterBuffer(AUDIO_BUFFER)
    played = bytearray()  # 1 played, 0 lost or discarded: constant memory per packet
    discarded = lost = 0
    for p in packets:
        if p is None:
            lost += 1
            played.append(0)
            continue
        late = jb.late(p[1] - p[0])
        discarded += late
        played.append(0 if late else 1)
    buf = jb.target_sum / jb.units if jb.units else None
    return AudioPlayout(len(played), discarded, lost, buf, stats.burst_r(played))


@dataclass
class Frame:
    """One video frame: the send time of its first packet, when its last packet arrived,
    whether every packet arrived (``complete``), and how many arrived."""

    send_ms: float
    done_ms: float
    complete: bool
    received: int


@dataclass
class VideoPlayout:
    frames: int
    rendered: int
    discarded_packets: int  # packets of complete frames that finished after the deadline
    freezes: int
    freeze_total_ms: float
    freeze_longest_ms: float


def video_playout(frames: Iterable[Frame], frame_ms: float = 1000.0 / 30) -> VideoPlayout:
    """Frames in send order (incomplete ones included) -> rendered frames and freezes."""
    jb = JitterBuffer(VIDEO_BUFFER)
    shown: list[float] = []  # play-out times of rendered frames
    n = rendered = discarded = 0
    for f in frames:
        n += 1
        if not f.complete:
            continue
        if jb.late(f.done_ms - f.send_ms):
            discarded += f.received
            continue
        rendered += 1
        # played at its deadline: send time + floor + the target it met (one clock offset)
        shown.append(f.send_ms + (jb.base or 0.0) + jb.last_target)
    return _freezes(n, rendered, discarded, shown, frame_ms)


def _freezes(
    n: int, rendered: int, discarded: int, shown: list[float], frame_ms: float
) -> VideoPlayout:
    count, total, longest = 0, 0.0, 0.0
    recent: deque[float] = deque([frame_ms], maxlen=FREEZE_MEAN_OVER)
    for a, b in itertools.pairwise(shown):
        gap = b - a
        mean = sum(recent) / len(recent)
        if gap >= max(3 * mean, mean + FREEZE_MIN_MS):
            count += 1
            total += gap
            longest = max(longest, gap)
        recent.append(gap)
    return VideoPlayout(n, rendered, discarded, count, total, longest)
