"""The rubric verdict of a media measurement, sans-IO: per-call MOS, the calls of one
direction merged into one record's fields (the worst call's figures), and the gates of
``netready/rubric.py`` applied to them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netready.probes.media.trace import DirectionStats

from netready import stats

# --------------------------------------------------------------------------- rubric gates

#: Per direction, per call: (field of the direction record, rubric metric, label). The
#: thresholds live in ``netready/rubric.py`` (the table in docs/design.md, with sources).
GATES: list[tuple[str, str, str]] = [
    ("loss_15s_worst_pct", "loss_pct", "worst 15 s loss"),
    ("jitter_rfc3550_15s_worst_ms", "jitter_ms", "worst 15 s jitter (RFC 3550)"),
    ("burst_loss_200ms_worst_pct", "burst_loss_pct", "worst 200 ms burst loss"),
    ("reorder_pct", "reorder_pct", "reorder"),
    ("rtt_p50_ms", "rtt_ms", "RTT p50 under load"),
    ("voice_mos_g107", "mos", "voice MOS (G.107)"),
]
#: Play-out figures (``playout``) merged over calls as the worst call's.
PLAYOUT_WORST = (
    "audio_discard_pct",
    "audio_buffer_ms",
    "voice_burst_r",
    "video_discard_pct",
    "freeze_count",
    "freeze_total_ms",
    "freeze_longest_ms",
)
DIRECTION_NAMES = {"up": "upload", "down": "download"}
SENDER_MIN_RATIO = 0.9  # a sender below 90 % of the profile rate invalidates the verdict
TIERS = ("recommended", "minimum", "marginal", "not_ready")  # best first


def mos_of(st: DirectionStats) -> float | None:
    """The voice MOS of one call's direction: G.107 of what its receiver model played
    (``trace``), else (statistics without the play-out figures) G.107 of the path with
    one-way latency = RTT p50 / 2 (no clock sync needed)."""
    if st.voice_mos_g107 is not None:
        return st.voice_mos_g107
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


def merge(dirs: list[DirectionStats], duration_s: float) -> dict[str, Any]:
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
        # the path's jitter: the calls' mean (each call samples the same path; the worst
        # call's is the gate's, jitter_rfc3550_15s_worst_ms)
        "jitter_rfc3550_ms": worst("jitter_rfc3550_ms", lambda v: sum(v) / len(v)),
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
        "dscp_note": worst("dscp_note", lambda v: v[0]),
    }
    # MOS of the worst call (each call's own loss, jitter and RTT).
    moss = [m for m in (mos_of(d) for d in dirs) if m is not None]
    out["voice_mos_g107"] = min(moss) if moss else None
    out["voice_codec"] = stats.DEFAULT_CODEC
    out.update({k: worst(k) for k in PLAYOUT_WORST})
    out["frames_rendered_pct"] = worst("frames_rendered_pct", min)
    return out
