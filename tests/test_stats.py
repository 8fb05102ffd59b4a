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
