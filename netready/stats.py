"""Packet statistics shared by probes and collectors: one definition of each figure.

Everything here is pure (no I/O): lists of numbers in, numbers out.

- ``rfc3550_jitter``: RFC 3550 §6.4.1 interarrival jitter, J += (|D| - J)/16, in the same
  unit as its inputs. Returns the final estimate and the running series (Wireshark's
  "mean jitter" and "max jitter" are the mean and max of that series).
- ``ipdv``: RFC 3393/5481 IP packet delay variation, delay(i) - delay(i-1) for consecutive
  received packets.
- ``emodel_mos``: simplified E-model (Cole & Rosenbluth 2001), ITU-T G.107 R-to-MOS mapping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default, type 7). ``None`` for no data."""
    return percentiles(values, p)[0]


def percentiles(values: Sequence[float], *ps: float) -> list[float | None]:
    """Several type-7 percentiles of ``values`` (``None`` each for no data), exactly.

    Up to 50,000 values are sorted. For larger inputs (a responder session can hold 600k
    delays in a typed array) a sorted sample brackets the ranks wanted, one pass counts what
    lies below and inside the bracket, and only the values inside are sorted: memory stays a
    few tens of thousands of floats instead of a Python float per value (30 MB more at 600k).
    numpy would do it in one call, but it would be most of the agent's install (75 MB).
    """
    n = len(values)
    if not n:
        return [None] * len(ps)
    out: list[float | None] = []
    for p in ps:
        k = (n - 1) * (p / 100.0)
        lo = math.floor(k)
        a, b = _ranks(values, lo, min(lo + 1, n - 1))
        out.append(a + (b - a) * (k - lo))
    return out


_SORT_AT_MOST = 50_000
_SAMPLE = 8192


def _ranks(values: Sequence[float], r1: int, r2: int) -> tuple[float, float]:
    """The values of 0-based ranks ``r1 <= r2`` in sorted order."""
    n = len(values)
    if n > _SORT_AT_MOST:
        rng = random.Random(n)  # deterministic: the same input gives the same passes
        sample = sorted(values[i] for i in rng.choices(range(n), k=_SAMPLE))
        spread = 6 * math.sqrt(_SAMPLE / 4) + 2  # six binomial sigmas, in sample ranks
        lo = sample[max(0, int(r1 / (n - 1) * (_SAMPLE - 1) - spread))]
        hi = sample[min(_SAMPLE - 1, int(r2 / (n - 1) * (_SAMPLE - 1) + spread) + 1)]
        below = inside = 0
        for v in values:
            if v < lo:
                below += 1
            elif v <= hi:
                inside += 1
        if below <= r1 and r2 < below + inside:
            if lo == hi:
                return float(lo), float(lo)
            if inside <= 4 * _SORT_AT_MOST:
                s = sorted(v for v in values if lo <= v <= hi)
                return float(s[r1 - below]), float(s[r2 - below])
    s = sorted(values)  # small, or the sample missed (rare): sort everything
    return float(s[r1]), float(s[r2])


def rfc3550_jitter(
    send: Sequence[float], recv: Sequence[float]
) -> tuple[float | None, list[float]]:
    """RFC 3550 interarrival jitter over packets in *arrival* order.

    ``send[i]``/``recv[i]`` are the sender timestamp and arrival time of the i-th packet
    received, same unit (ms or RTP ticks). D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}).
    Returns (final J, running J after each packet from the second on).
    """
    if len(send) != len(recv):
        raise ValueError("send and recv lengths differ")
    if len(send) < 2:
        return None, []
    run = RunningJitter()
    series = [x for s, r in zip(send, recv, strict=True) if (x := run.add(s, r)) is not None]
    return run.j, series


class RunningJitter:
    """``rfc3550_jitter`` one packet at a time, in constant memory: ``add(send, recv)`` per
    packet in arrival order returns the running J (None for the first packet); ``mean`` is
    the mean of the running series (what ``rfc3550_jitter``'s series averages to)."""

    __slots__ = ("_prev", "j", "n", "total")

    def __init__(self) -> None:
        self.j = 0.0
        self.n = 0  # values in the running series (packets - 1)
        self.total = 0.0
        self._prev: tuple[float, float] | None = None

    def add(self, send: float, recv: float) -> float | None:
        prev, self._prev = self._prev, (send, recv)
        if prev is None:
            return None
        d = (recv - prev[1]) - (send - prev[0])
        self.j += (abs(d) - self.j) / 16.0
        self.n += 1
        self.total += self.j
        return self.j

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


def ipdv(delays: Sequence[float]) -> list[float]:
    """RFC 3393 IPDV between consecutive received packets (by sequence order)."""
    return [delays[i] - delays[i - 1] for i in range(1, len(delays))]


def reorder_pct(seqs: Sequence[int]) -> float | None:
    """Share of packets that arrived with a sequence number lower than one already seen
    (RFC 4737 "reordered" singleton, simplified). ``seqs`` in arrival order, no duplicates.
    """
    if not seqs:
        return None
    top = -1
    late = 0
    for s in seqs:
        if s < top:
            late += 1
        else:
            top = s
    return 100.0 * late / len(seqs)


def worst_window_loss_pct(
    sent_times: Sequence[float], received: Sequence[bool] | bytes, window: float
) -> float | None:
    """Worst loss % over fixed windows of ``window`` (same unit as ``sent_times``),
    aligned to the first send time. ``received[i]`` (true or non-zero) says whether
    packet i arrived.
    Windows with no packets sent are ignored.
    """
    if not sent_times:
        return None
    t0 = sent_times[0]
    sent: dict[int, int] = {}
    lost: dict[int, int] = {}
    for t, ok in zip(sent_times, received, strict=True):
        w = int((t - t0) // window)
        sent[w] = sent.get(w, 0) + 1
        if not ok:
            lost[w] = lost.get(w, 0) + 1
    return max(100.0 * lost.get(w, 0) / n for w, n in sent.items())


def max_burst(received: Iterable[bool] | bytes) -> int:
    """Longest run of consecutive lost packets."""
    best = cur = 0
    for ok in received:
        cur = 0 if ok else cur + 1
        best = max(best, cur)
    return best


def emodel_r(latency_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """Simplified E-model R factor (Cole & Rosenbluth).

    ``latency_ms`` is the ONE-WAY mouth-to-ear network delay; pass RTT/2 for a round trip.
    EffLat = latency + 2*jitter + 10; R = 93.2 - EffLat/40 (EffLat < 160) else
    93.2 - (EffLat - 120)/10; R -= 2.5 * loss_pct; clamped to 0..100.
    """
    eff = latency_ms + 2.0 * jitter_ms + 10.0
    r = 93.2 - eff / 40.0 if eff < 160.0 else 93.2 - (eff - 120.0) / 10.0
    r -= 2.5 * loss_pct
    return max(0.0, min(100.0, r))


def r_to_mos(r: float) -> float:
    """ITU-T G.107 mapping from R to MOS-CQE."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def emodel_mos(latency_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """MOS from the simplified E-model; ``latency_ms`` is one-way (see ``emodel_r``)."""
    return r_to_mos(emodel_r(latency_ms, jitter_ms, loss_pct))
