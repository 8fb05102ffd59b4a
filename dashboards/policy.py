"""The policy the dashboards (and alert rules) draw: thresholds from the readiness rubric.

This is the ONE module of ``dashboards/`` that imports the rubric: when the rubric moves,
only the import below changes. A rubric change makes the generated JSON stale (the test says so).
"""

from __future__ import annotations

from netready.rubric import DEFAULT_PROFILE, GRADES, HEADROOM, RUBRIC

__all__ = [
    "BURST_LOSS_PCT",
    "DEFAULT_PROFILE",
    "DOWN_MBPS",
    "GRADE_COLOURS",
    "HEADROOM",
    "JITTER_MS",
    "LOSS_PCT",
    "MOS",
    "RTT_MS",
    "SNR_MARGIN_DB",
    "UP_MBPS",
    "UTIL_REVIEW_PCT",
]


def bands(metric: str) -> dict[str, float]:
    """``minimum``, ``recommended`` and (when the rubric has one) ``not_ready`` of a metric."""
    t = RUBRIC[metric]
    out = {"minimum": float(t.minimum), "recommended": float(t.recommended)}
    if t.not_ready is not None:
        out["not_ready"] = float(t.not_ready)
    return out


UP_MBPS = bands("up_per_call_mbps")
DOWN_MBPS = bands("down_per_call_mbps")
RTT_MS = bands("rtt_ms")
JITTER_MS = bands("jitter_ms")
LOSS_PCT = bands("loss_pct")
BURST_LOSS_PCT = bands("burst_loss_pct")
MOS = bands("mos")
UTIL_REVIEW_PCT = 100.0 * HEADROOM  # NHS Digital: review FTTC links above 75 % use
SNR_MARGIN_DB = {"poor": 3.0, "ok": 6.0}

#: The plain grade per use (``readiness.grade``, rubric.GRADES) -> its colour; the text is
#: always shown too. A site without a graded gate has no entry here (shown as written).
GRADE_COLOURS = {
    GRADES[band]: colour
    for band, colour in (
        ("recommended", "dark-green"),
        ("minimum", "green"),
        ("marginal", "orange"),
        ("not_ready", "red"),
    )
}
