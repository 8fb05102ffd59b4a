"""Packet statistics shared by probes and collectors: one definition of each figure.

Everything here is pure (no I/O): lists of numbers in, numbers out.

- ``rfc3550_jitter``: RFC 3550 §6.4.1 interarrival jitter, J += (|D| - J)/16, in the same
  unit as its inputs. Returns the final estimate and the running series (Wireshark's
  "mean jitter" and "max jitter" are the mean and max of that series).
- ``settled_jitter``: the mean of that running series once J has settled from its start at
  0 (the first ``JITTER_WARMUP`` values left out): what a path's jitter reads over a window.
- ``ipdv``: RFC 3393/5481 IP packet delay variation, delay(i) - delay(i-1) for consecutive
  received packets.
- ``g107_r`` / ``g107_mos``: the ITU-T G.107 E-model (delay impairments Idte, Idle, Idd and
  the effective equipment impairment Ie,eff with a codec's packet-loss robustness Bpl and
  burst loss BurstR), every other parameter at G.107's defaults; ``burst_r`` from a trace;
  ``emodel_mos``: that model for a network's one-way delay, jitter and random loss.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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


#: Running-J values left out of a jitter mean while J converges from 0 ((15/16)^48 = 4.5 % of
#: the start-up error left); only when there are at least twice as many.
JITTER_WARMUP = 48


def settled_jitter(send: Sequence[float], recv: Sequence[float]) -> float | None:
    """The mean running RFC 3550 J over packets in the order given, less its first
    ``JITTER_WARMUP`` values (when there are at least twice as many): on a path of steady
    jitter, the final J is one noisy sample (J averages only ~16 packets) and the mean with
    the ramp from 0 reads low (4 % over 400 packets). None for fewer than 2 packets."""
    _, series = rfc3550_jitter(send, recv)
    if not series:
        return None
    tail = series[JITTER_WARMUP:] if len(series) >= 2 * JITTER_WARMUP else series
    return sum(tail) / len(tail)


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


@dataclass(frozen=True)
class Codec:
    """What the E-model needs of a codec: equipment impairment Ie, packet-loss robustness
    Bpl (ITU-T G.113 Appendix I) and the delay its frame and look-ahead add (ms)."""

    name: str
    ie: float
    bpl: float
    delay_ms: float


#: ITU-T G.113 (11/2007) Appendix I, Table I.3 (Ie and Bpl under random loss). G.711 at
#: 64 kbit/s in 20 ms packets with the packet-loss concealment of G.711 Appendix I is what
#: the media probe's audio stream is (160 bytes every 20 ms); without PLC Bpl is 4.3, the
#: G.107 default.
CODECS: dict[str, Codec] = {
    "g711_plc": Codec("g711_plc", ie=0.0, bpl=25.1, delay_ms=20.0),
    "g711": Codec("g711", ie=0.0, bpl=4.3, delay_ms=20.0),
    "g729a_vad": Codec("g729a_vad", ie=11.0, bpl=19.0, delay_ms=25.0),
}
DEFAULT_CODEC = "g711_plc"

# G.107 Table 3 defaults (SLR 8, RLR 2, STMR 15, LSTR 18, Ds 3, TELR 65, WEPL 110, qdu 1,
# Nc -70, Nfor -64, Ps = Pr = 35, A 0) give Ro = 94.77 and Is = 1.41 (G.107 clause 7.7):
# with T = Ta = 0 and no loss, R = 94.77 - 1.41 - Idle(0.15) = 93.2.
G107_RO = 94.77
G107_IS = 1.41
G107_TELR = 65.0
G107_WEPL = 110.0
G107_ROE = 94.77  # -1.5 (No - RLR) with No = -61.18, RLR = 2


def _idte(t: float) -> float:
    """Talker-echo impairment (G.107 7.4) for mean one-way delay ``t`` ms, TELR 65 dB."""
    terv = G107_TELR - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    re = 80 + 2.5 * (terv - 14)
    d = G107_ROE - re
    return (d / 2 + math.sqrt(d * d / 4 + 100) - 1) * (1 - math.exp(-t))


def _idle(tr: float) -> float:
    """Listener-echo impairment (G.107 7.4) for round-trip delay ``tr`` ms, WEPL 110 dB."""
    rle = 10.5 * (G107_WEPL + 7) * (tr + 1) ** -0.25
    d = G107_RO - rle
    return d / 2 + math.sqrt(d * d / 4 + 169)


def _idd(ta: float) -> float:
    """Impairment of absolute delay ``ta`` ms (G.107 7.4, default mT = 100 ms, sT = 1)."""
    if ta <= 100:
        return 0.0
    x = math.log10(ta / 100) / math.log10(2)
    return 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)


def ie_eff(codec: Codec, ppl_pct: float, burst_r: float = 1.0) -> float:
    """G.107 7.5: Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl); ``ppl_pct`` is the
    percentage of packets lost or discarded by the jitter buffer."""
    ppl = max(0.0, ppl_pct)
    return codec.ie + (95 - codec.ie) * ppl / (ppl / max(burst_r, 1e-9) + codec.bpl)


def g107_r(
    one_way_ms: float, ppl_pct: float = 0.0, burst_r: float = 1.0, codec: str = DEFAULT_CODEC
) -> float:
    """ITU-T G.107 R = Ro - Is - Id - Ie,eff + A with G.107's default parameters except the
    mouth-to-ear delay (``one_way_ms``: T = Ta, Tr = 2T, network plus jitter buffer plus
    the codec's ``delay_ms`` are the caller's to add), the loss ``ppl_pct`` and ``burst_r``
    (1 = random loss; ``burst_r`` below). Not clamped: R can fall below 0."""
    t = max(0.0, one_way_ms)
    ident = _idte(t) + _idle(2 * t) + _idd(t)
    return G107_RO - G107_IS - ident - ie_eff(CODECS[codec], ppl_pct, burst_r)


def burst_r(received: Iterable[bool] | bytes | bytearray) -> float:
    """G.107's BurstR of a trace (truthy = received), from the two-state Markov model of its
    losses: p = P(lost | previous received), q = P(received | previous lost); BurstR =
    1 / (p + q). 1 for random loss, above 1 for bursty loss; 1 when nothing or all was lost."""
    n = {(a, b): 0 for a in (0, 1) for b in (0, 1)}
    prev: int | None = None
    for ok in received:
        cur = 1 if ok else 0
        if prev is not None:
            n[(prev, cur)] += 1
        prev = cur
    from_rx = n[(1, 0)] + n[(1, 1)]
    from_lost = n[(0, 0)] + n[(0, 1)]
    if not from_rx or not from_lost:
        return 1.0
    p, q = n[(1, 0)] / from_rx, n[(0, 1)] / from_lost
    return 1.0 / (p + q) if p + q > 0 else 1.0


def g107_mos(
    one_way_ms: float, ppl_pct: float = 0.0, burst_r: float = 1.0, codec: str = DEFAULT_CODEC
) -> float:
    """MOS-CQE of ``g107_r`` (G.107 Annex B)."""
    return r_to_mos(g107_r(one_way_ms, ppl_pct, burst_r, codec))


def r_to_mos(r: float) -> float:
    """ITU-T G.107 mapping from R to MOS-CQE."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def emodel_mos(latency_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """G.107 MOS of a network path (``g107_mos``, default codec, random loss): mouth-to-ear
    delay = one-way ``latency_ms`` (pass RTT/2 for a round trip) + a jitter buffer of
    2 x the RFC 3550 jitter + the codec's frame."""
    codec = CODECS[DEFAULT_CODEC]
    return g107_mos(latency_ms + 2.0 * jitter_ms + codec.delay_ms, loss_pct, 1.0)
