"""netready.stats: percentiles are exact (type 7, as numpy's default) at every size."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from netready import stats


def _type7(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _shapes(n: int, rng: random.Random) -> dict[str, list[float]]:
    tight = [20.0 + rng.random() * 0.5 for _ in range(n)]
    tight[0] = 5000.0  # one late packet far from the rest
    return {
        "uniform": [rng.random() for _ in range(n)],
        "tight_with_outlier": tight,
        "few_values": [rng.choice([1.0, 2.0, 3.0]) for _ in range(n)],
        "sorted_exponential": sorted(rng.expovariate(1) for _ in range(n)),
        "periodic": [float(i % 7) for i in range(n)],
    }


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 50_001, 250_000])
def test_percentiles_equal_a_full_sort(n: int) -> None:
    """Above 50,000 values the bracketing path runs; it must give the sort's answer exactly."""
    rng = random.Random(n)
    for name, values in _shapes(n, rng).items():
        got = stats.percentiles(array("d", values), 0, 1, 50, 95, 99, 100)
        want = [_type7(values, p) for p in (0, 1, 50, 95, 99, 100)]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), name


def test_percentiles_of_nothing_are_none() -> None:
    assert stats.percentiles([], 50, 95) == [None, None]
    assert stats.percentile([], 50) is None
    assert stats.percentile([4.0], 95) == 4.0


def test_large_percentiles_do_not_hold_a_float_per_value() -> None:
    """A 600k-packet responder session must not need a Python float per delay at stop:
    sorting 250,000 values takes 8 MB or more; the bracketing path stays far below."""
    import tracemalloc

    values = array("d", (20.0 + (i * 7919 % 1000) / 1000 for i in range(250_000)))
    tracemalloc.start()
    try:
        stats.percentiles(values, 50, 95)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB"


# ------------------------------------------------------------------------ E-model (G.107)


def test_g107_default_parameters_give_r_93_2() -> None:
    """ITU-T G.107 clause 7.7: with every parameter at its default (T = Ta = 0, no loss,
    Ie = 0) the rating is R = 93.2 (Ro 94.77 - Is 1.41 - Idle 0.15), MOS 4.41 (Annex B)."""
    assert stats.g107_r(0.0) == pytest.approx(93.2, abs=0.05)
    assert stats.g107_mos(0.0) == pytest.approx(4.41, abs=0.01)


def test_g107_absolute_delay_impairment_by_hand() -> None:
    """G.107 7.4, Idd for Ta > 100 ms (mT 100, sT 1): at Ta = 300 ms, X = log2(3) = 1.585,
    Idd = 25 ((1 + X^6)^(1/6) - 3 (1 + (X/3)^6)^(1/6) + 2) = 25 (1.6010 - 3.0107 + 2) =
    14.76; at or below 100 ms it is 0. So R falls by Idd plus the echo terms' change."""
    assert stats._idd(100.0) == 0.0
    assert stats._idd(300.0) == pytest.approx(14.76, abs=0.02)
    drop = stats.g107_r(100.0) - stats.g107_r(300.0)
    echo = (stats._idte(300) + stats._idle(600)) - (stats._idte(100) + stats._idle(200))
    assert drop == pytest.approx(14.76 + echo, abs=0.02)


def test_g107_ie_eff_with_g113_bpl() -> None:
    """G.107 7.5 with G.113 Appendix I Table I.3's G.711 + PLC (Ie 0, Bpl 25.1): 2 % random
    loss gives Ie,eff = 95 x 2 / (2 + 25.1) = 7.011; the same loss in bursts (BurstR 4)
    95 x 2 / (0.5 + 25.1) = 7.422; without PLC (Bpl 4.3) 95 x 2 / 6.3 = 30.16."""
    g711 = stats.CODECS["g711_plc"]
    assert stats.ie_eff(g711, 2.0) == pytest.approx(7.011, abs=1e-3)
    assert stats.ie_eff(g711, 2.0, burst_r=4.0) == pytest.approx(7.422, abs=1e-3)
    assert stats.ie_eff(stats.CODECS["g711"], 2.0) == pytest.approx(30.16, abs=0.01)
    # R falls by exactly Ie,eff
    assert stats.g107_r(50.0) - stats.g107_r(50.0, 2.0) == pytest.approx(7.011, abs=1e-3)


def test_burst_r_of_a_two_state_trace() -> None:
    """BurstR = 1 / (p + q): ten periods of 96 received then 4 lost. Transitions: 1->0 ten
    times, 1->1 950, 0->0 30, 0->1 nine (the last run has no successor): p = 10/960,
    q = 9/39, BurstR = 4.146. Alternating loss (p = q = 1) gives 0.5; none lost gives 1."""
    trace = ([1] * 96 + [0] * 4) * 10
    assert stats.burst_r(trace) == pytest.approx(1 / (10 / 960 + 9 / 39))
    assert stats.burst_r([1, 0] * 50) == pytest.approx(0.5)
    assert stats.burst_r([1] * 100) == 1.0


def test_emodel_mos_of_a_path_is_g107_with_a_jitter_buffer() -> None:
    """A path's MOS: mouth-to-ear = one-way + 2 x jitter (buffer) + 20 ms (G.711 frame)."""
    assert stats.emodel_mos(20, 5, 0) == pytest.approx(stats.g107_mos(50.0))
    assert stats.emodel_mos(150, 20, 1) == pytest.approx(stats.g107_mos(210.0, 1.0))
    # more loss, more delay: strictly worse
    assert stats.emodel_mos(150, 20, 2) < stats.emodel_mos(150, 20, 1) < stats.emodel_mos(20, 5, 0)


def test_settled_jitter_leaves_out_the_ramp_from_zero() -> None:
    """|D| = 1 ms between every pair (delays 0, 1, 0, 1 ...): the running J is 1 - (15/16)^k;
    the settled figure is the mean of k = 49.. only, by hand, and reads within 1 % of 1 ms
    where the mean of the whole series (the ramp included) reads 4 % low over 400 packets."""
    n = 400
    send = [20.0 * i for i in range(n)]
    recv = [s + (i % 2) for i, s in enumerate(send)]
    ramp = [1 - (15 / 16) ** k for k in range(1, n)]
    want = sum(ramp[stats.JITTER_WARMUP :]) / len(ramp[stats.JITTER_WARMUP :])
    got = stats.settled_jitter(send, recv)
    assert got == pytest.approx(want)
    assert 0.99 < got < 1.0
    assert sum(ramp) / len(ramp) < 0.97  # what leaving nothing out would read
    # too few values to leave any out: the mean of all of them
    assert stats.settled_jitter(send[:10], recv[:10]) == pytest.approx(sum(ramp[:9]) / 9)
    assert stats.settled_jitter([1.0], [2.0]) is None


def test_settled_jitter_of_uniform_delay_is_two_thirds_of_j() -> None:
    """Independent uniform +-J delays: consecutive packets differ by |D| with mean 2J/3
    (the truth bench/path.py holds the probes to); the estimator reads it within 3 %."""
    rng = random.Random(7)
    j = 5.0
    send = [20.0 * i for i in range(20_000)]
    recv = [s + 20 + rng.uniform(-j, j) for s in send]
    got = stats.settled_jitter(send, recv)
    assert got == pytest.approx(2 * j / 3, rel=0.03)
