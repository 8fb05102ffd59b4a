"""The readiness rubric as data: every threshold in one table, each with its source.

``RUBRIC`` holds the quality gates and per-call bandwidths of docs/design.md. ``PROFILES`` scales
them for the uses the NHS is moving online. Nothing else in netready hard-codes a threshold:
the model (``readiness.py``), the reports and the docs read these tables.

Bands for a metric (``better`` says which way is good):

- worse than ``not_ready`` -> NOT READY (``None``: the metric alone never makes a site not ready)
- meets ``minimum``        -> passes (and ``recommended`` is reported when met too)
- in between               -> MARGINAL

"lower is better" metrics pass ``minimum`` when ``value < minimum`` (``<=`` for RTT, as the
table says "≤ 100 ms") and fail when ``value > not_ready``; "higher is better" metrics pass when
``value >= minimum`` and fail when ``value < not_ready``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Threshold:
    metric: str
    label: str
    unit: str
    better: Better
    not_ready: float | None
    minimum: float
    recommended: float
    source: str
    inclusive: bool = False  # minimum passes with equality (RTT "≤ 100 ms", MOS "≥ 3.6")
    how: str = ""  # how the measured figure is taken

    def passes(self, value: float, bound: float) -> bool:
        if self.better == "lower":
            return value <= bound if self.inclusive else value < bound
        return value >= bound

    def band(self, value: float) -> Literal["recommended", "minimum", "marginal", "not_ready"]:
        if self.not_ready is not None and (
            value > self.not_ready if self.better == "lower" else value < self.not_ready
        ):
            return "not_ready"
        if self.passes(value, self.recommended):
            return "recommended"
        if self.passes(value, self.minimum):
            return "minimum"
        return "marginal"

    def describe(self) -> str:
        op_ok = ("≤" if self.inclusive else "<") if self.better == "lower" else "≥"
        op_bad = ">" if self.better == "lower" else "<"
        nr = f"{op_bad} {self.not_ready:g}" if self.not_ready is not None else "—"
        return (
            f"{self.label}: not ready {nr}, minimum {op_ok} {self.minimum:g}, "
            f"recommended {op_ok} {self.recommended:g} {self.unit}"
        )


TEAMS = "Microsoft Teams network targets (15 s windows, site edge to Microsoft edge)"
PERCALL = (
    "Healthdirect video call requirements; TeleScot Near Me toolkit; Teams 720p 1.2 Mbps + audio"
)

#: The rubric of docs/design.md, per concurrent 1:1 video consultation, at the site edge.
RUBRIC: dict[str, Threshold] = {
    t.metric: t
    for t in (
        Threshold(
            "up_per_call_mbps",
            "upload per call",
            "Mbps",
            "higher",
            0.35,
            0.7,
            1.5,
            PERCALL,
            how="0.75 × p10 upload goodput ÷ planned clinics",
        ),
        Threshold(
            "down_per_call_mbps",
            "download per call",
            "Mbps",
            "higher",
            0.35,
            1.1,
            1.5,
            PERCALL,
            how="0.75 × p10 download goodput ÷ planned clinics",
        ),
        Threshold(
            "rtt_ms",
            "RTT to platform edge",
            "ms",
            "lower",
            150,
            100,
            60,
            "ITU-T G.114 (one-way 150 ms); Teams network targets",
            inclusive=True,
            how="p95 of the 15 s windows' median RTT",
        ),
        Threshold(
            "jitter_ms",
            "jitter (RFC 3550)",
            "ms",
            "lower",
            40,
            30,
            15,
            f"{TEAMS}; BlueJeans/Dolby network guide",
            how="p95 of the 15 s windows' RFC 3550 jitter",
        ),
        Threshold(
            "loss_pct",
            "packet loss",
            "%",
            "lower",
            1.0,
            1.0,
            0.1,
            TEAMS,
            how="p95 of the 15 s windows' loss",
        ),
        Threshold(
            "burst_loss_pct",
            "burst loss (200 ms)",
            "%",
            "lower",
            None,
            10.0,
            1.0,
            TEAMS,
            how="p95 of the 15 s windows' worst 200 ms loss",
        ),
        Threshold(
            "reorder_pct",
            "reorder",
            "%",
            "lower",
            None,
            0.05,
            0.01,
            TEAMS,
            how="p95 of the 15 s windows' reorder",
        ),
        Threshold(
            "mos",
            "MOS (E-model)",
            "",
            "higher",
            3.6,
            3.6,
            4.0,
            "ITU-T G.107 E-model (delay impairments, Ie,eff with the codec's Bpl from G.113 "
            "Appendix I and BurstR), G.711 + PLC; 3.6 is R 70 and 4.0 R 80, the lower edges of "
            "G.109's 'some users dissatisfied' and 'satisfied' categories",
            inclusive=True,
            how="G.107 of mouth-to-ear delay (one-way = RTT/2, plus the jitter buffer and "
            "the codec frame) and the packets lost or discarded late by the jitter buffer",
        ),
    )
}

#: Share of sustained throughput that clinics may plan on (NHS Digital advises reviewing an
#: FTTC link above 75 % utilisation).
HEADROOM = 0.75
HEADROOM_SOURCE = "NHS Digital: review FTTC links above 75 % utilisation"
#: Throughput percentile taken as "sustained" (10th: the rate the link gives 90 % of the time).
SUSTAINED_PCT = 10
#: Quality percentile over 15 s windows in a clinic session.
QUALITY_PCT = 95
#: Newest valid measurement older than this: STALE.
STALE_AFTER = dt.timedelta(days=2)
#: Below this many valid 15 s windows a site is NO DATA for quality.
MIN_WINDOWS = 3
#: PSTN (and with it ADSL and WLR lines) closes on this date (Openreach / BT switch-off).
PSTN_SWITCH_OFF = dt.date(2027, 1, 31)
PSTN_SOURCE = "Openreach / BT Group: PSTN and WLR withdrawn by 31 January 2027"
PSTN_TECHS = frozenset({"adsl"})  # plus any link declared ``wlr: true``
#: A CT study for the imaging profile (Community Diagnostic Centres).
CT_STUDY_GB = 3.0
#: Results unavailable (the target did not answer) count against availability.
UNAVAILABLE_RESULTS = frozenset({"timeout", "unreachable", "refused"})
#: Invalid measurements excluded from the evidence (and counted).
EXCLUDED_RESULTS = frozenset({"link_busy", "budget_exceeded", "skipped", "error"})


@dataclass(frozen=True)
class Profile:
    """A use of the link: what one "call" needs, which gates apply, over which hours."""

    name: str
    title: str
    description: str
    #: Per-call rates (Mbit/s): thresholds for up/down per call and the capacity divisor
    #: (``recommended``).
    up: Threshold
    down: Threshold
    gates: tuple[str, ...]
    hours: Literal["clinic", "all"] = "clinic"
    #: Extra gates by name, not in RUBRIC (imaging time, availability).
    extra: dict[str, Threshold] = field(default_factory=dict)
    #: Whether capacity (concurrent calls vs planned clinics) is judged.
    concurrent: bool = True

    def threshold(self, metric: str) -> Threshold:
        if metric == "up_per_call_mbps":
            return self.up
        if metric == "down_per_call_mbps":
            return self.down
        return self.extra.get(metric) or RUBRIC[metric]


QUALITY = ("rtt_ms", "jitter_ms", "loss_pct", "burst_loss_pct", "reorder_pct", "mos")

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "gp_video",
            "1:1 GP video consultation",
            "One clinician and one patient, 720p video both ways; capacity = concurrent calls.",
            RUBRIC["up_per_call_mbps"],
            RUBRIC["down_per_call_mbps"],
            QUALITY,
        ),
        Profile(
            "virtual_outpatient",
            "Virtual outpatient clinic (three-party call)",
            "Clinician with patient and a carer/interpreter elsewhere: the site sends one stream "
            "and receives two, so download per call is twice the 1:1 rates.",
            RUBRIC["up_per_call_mbps"],
            replace(
                RUBRIC["down_per_call_mbps"],
                not_ready=0.7,
                minimum=2.2,
                recommended=3.0,
                source=f"derived: 2 remote streams × ({PERCALL})",
            ),
            QUALITY,
        ),
        Profile(
            "imaging_transfer",
            "Imaging transfer (diagnostic centre)",
            f"Time to send a {CT_STUDY_GB:g} GB CT study at the sustained (p10) upload; TCP "
            "needs low loss. No concurrent-call capacity.",
            RUBRIC["up_per_call_mbps"],
            RUBRIC["down_per_call_mbps"],
            ("loss_pct", "ct_minutes"),
            hours="all",
            extra={
                "ct_minutes": Threshold(
                    "ct_minutes",
                    f"time to send a {CT_STUDY_GB:g} GB CT study",
                    "min",
                    "lower",
                    60.0,
                    30.0,
                    10.0,
                    "netready planning assumption (no published NHS target): a study reaches the "
                    "reporting radiologist within the hour; 10 min keeps a CDC list moving",
                    inclusive=True,
                    how=f"{CT_STUDY_GB:g} GB × 8 ÷ p10 upload goodput",
                )
            },
            concurrent=False,
        ),
        Profile(
            "virtual_ward",
            "Virtual-ward monitoring",
            "Low-rate device telemetry from patients' homes to the monitoring hub, judged around "
            "the clock on availability, loss and RTT (bandwidth is negligible).",
            RUBRIC["up_per_call_mbps"],
            RUBRIC["down_per_call_mbps"],
            ("rtt_ms", "loss_pct", "availability_pct"),
            hours="all",
            extra={
                "availability_pct": Threshold(
                    "availability_pct",
                    "availability (probe runs answered)",
                    "%",
                    "higher",
                    99.0,
                    99.5,
                    99.9,
                    "netready planning assumption after NHS England virtual-ward guidance "
                    "(remote monitoring must be continuous)",
                    how="share of rtt runs not timed out/unreachable/refused, all hours",
                )
            },
            concurrent=False,
        ),
    )
}

DEFAULT_PROFILE = "gp_video"

#: One plain answer per use: the worst rubric band over a profile's gates, in words. After
#: Cloudflare's AIM scores (a use-case grade from the measured figures against per-use
#: thresholds; AIM has five: Bad, Poor, Average, Good, Great), folded onto the rubric's four
#: bands; "no data" has no grade.
GRADES = {
    "recommended": "Great",
    "minimum": "Good",
    "marginal": "Poor",
    "not_ready": "Unusable",
}
GRADES_SOURCE = "Cloudflare AIM (Aggregated Internet Measurement) scores, on the rubric's bands"
BAND_ORDER = ("recommended", "minimum", "marginal", "not_ready")


def grade(bands: Sequence[tuple[str, str]]) -> tuple[str | None, str]:
    """(grade, the one reason behind it) from (band, reason) pairs: the worst band decides;
    its first reason is the reason. (None, why) when no pair has a graded band."""
    graded = [(BAND_ORDER.index(b), r) for b, r in bands if b in GRADES]
    if not graded:
        return None, "no data"
    worst = max(i for i, _ in graded)
    reason = next(r for i, r in graded if i == worst)
    return GRADES[BAND_ORDER[worst]], reason


def rubric_rows() -> list[dict[str, Any]]:
    """The rubric as rows (docs, ``--format json`` ``rubric`` key)."""
    rows = []
    for p in PROFILES.values():
        per_call = ("up_per_call_mbps", "down_per_call_mbps") if p.concurrent else ()
        for m in (*per_call, *p.gates):
            t = p.threshold(m)
            rows.append(
                {
                    "profile": p.name,
                    "metric": t.metric,
                    "label": t.label,
                    "unit": t.unit,
                    "better": t.better,
                    "not_ready": t.not_ready,
                    "minimum": t.minimum,
                    "recommended": t.recommended,
                    "how": t.how,
                    "source": t.source,
                }
            )
    return rows


# --------------------------------------------------------------------------- QoS check

#: "Does QoS protect the call?" (probes/qos): while bulk TCP saturates both directions, the
#: call's EF audio is compared with a best-effort (DSCP 0) stream of the same packet size and
#: rate sent alongside. EF's added delay (median one-way delay under load over its idle
#: minimum) must stay under this (issue 14: "with it, EF's added delay stays under 5 ms").
QOS_EF_ADDED_MS = 5.0
#: ... and be clearly below best effort's: at most this share of it (a queue that holds EF
#: back half as long as everything else is not protecting it).
QOS_EF_SHARE = 0.5
#: ... and EF must lose no more than best effort, give or take this many percentage points
#: (one packet in ~100 of a few seconds of audio).
QOS_LOSS_MARGIN_PCT = 1.0
#: Best effort's added delay below this: the load built no queue in that direction, so the
#: check says nothing about QoS there (neither effective nor not).
QOS_MIN_QUEUE_MS = 5.0
#: The check in one word (reports; the readiness point's ``qos`` field, Grafana).
QOS_WORDS = {True: "Protected", False: "Not protected", None: "Not tested"}
NO_QOS_CHECK = "No check"
QOS_SOURCE = (
    "issue 14 (EF added delay < 5 ms under load); RFC 4594 (EF: low delay, low loss; AF41: "
    "multimedia conferencing)"
)


def qos_verdict(directions: dict[str, dict[str, float | None]]) -> tuple[bool | None, str]:
    """(qos_effective, plain reason) from each direction's class figures.

    ``directions`` maps ``up``/``down`` to ``ef_added_p50_ms``, ``be_added_p50_ms``,
    ``ef_loss_pct`` and ``be_loss_pct``. A direction whose best effort saw no queue
    (``QOS_MIN_QUEUE_MS``) is not judged; ``None`` when no direction could be. Not effective
    when any judged direction has EF's added delay at or over ``QOS_EF_ADDED_MS``, over
    ``QOS_EF_SHARE`` of best effort's, or EF losing more than best effort (beyond
    ``QOS_LOSS_MARGIN_PCT``)."""
    names = {"up": "upload", "down": "download"}
    good: list[str] = []
    bad: list[str] = []
    untested: list[str] = []
    for d in ("up", "down"):
        f = directions.get(d)
        if not f:
            continue
        ef, be = f.get("ef_added_p50_ms"), f.get("be_added_p50_ms")
        ef_loss, be_loss = f.get("ef_loss_pct"), f.get("be_loss_pct")
        name = names[d]
        if ef is None or be is None or ef_loss is None or be_loss is None:
            untested.append(f"{name}: no figures")
            continue
        if be < QOS_MIN_QUEUE_MS:
            untested.append(
                f"{name}: the load built no queue (best effort +{be:.1f} ms < "
                f"{QOS_MIN_QUEUE_MS:g} ms), not tested"
            )
            continue
        why = []
        if ef >= QOS_EF_ADDED_MS:
            why.append(f"EF +{ef:.1f} ms ≥ {QOS_EF_ADDED_MS:g} ms")
        elif ef > QOS_EF_SHARE * be:
            why.append(f"EF +{ef:.1f} ms not clearly below best effort")
        if ef_loss > be_loss + QOS_LOSS_MARGIN_PCT:
            why.append(f"EF loses {ef_loss:.1f} % vs best effort {be_loss:.1f} %")
        figures = (
            f"EF +{ef:.1f} ms, loss {ef_loss:.1f} % vs best effort +{be:.1f} ms, "
            f"loss {be_loss:.1f} %"
        )
        if why:
            bad.append(f"{name}: {'; '.join(why)} ({figures})")
        else:
            good.append(f"{name}: {figures}")
    if bad:
        return False, "QoS is not protecting calls: " + "; ".join(bad + good + untested)
    if good:
        return True, "QoS protects calls under load: " + "; ".join(good + untested)
    return None, "QoS not tested: " + ("; ".join(untested) or "no figures")
