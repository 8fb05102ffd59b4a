"""The readiness model, hand-checked: gate bands, every verdict and reason, capacity arithmetic,
clinic sessions across a DST change, the E-model against published values, the estate lists.

Pure (no store): evidence is built by hand, so each expected number is worked out in a comment.
"""

from __future__ import annotations

import datetime as dt

import pytest
from netready.reports import readiness as R
from netready.reports.query import nearest_rank
from netready.reports.readiness import Evidence, Figure

from netready import rubric, stats
from netready.inventory import ClinicHours, loads

NOW = int(dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.UTC).timestamp() * 1000)

INV = """
version: 1
sites:
  - {ods: A10001, name: Copper One, type: gp_practice, icb: QHM, registered_patients: 9000,
     link: {tech: adsl, down_mbps: 8, up_mbps: 1, wlr: true}, planned_clinics: 2}
  - {ods: A10002, name: Fibre Two, type: gp_practice, icb: QHM, registered_patients: 5000,
     link: {tech: fttp, down_mbps: 100, up_mbps: 20}, planned_clinics: 3}
  - {ods: A10003, name: Copper Three, type: gp_practice, icb: QWE, registered_patients: 12000,
     link: {tech: fttc, down_mbps: 40, up_mbps: 10}, planned_clinics: 4}
"""


@pytest.fixture(scope="module")
def inv():
    return loads(INV, "test.yaml")


def good(**over: float) -> Evidence:
    """Evidence of a healthy FTTC-like line: 10 clinic days, 400 windows, 4 Mbps up p10."""
    q = {
        "rtt_ms": 20.0,
        "jitter_ms": 3.0,
        "loss_pct": 0.05,
        "burst_loss_pct": 0.5,
        "reorder_pct": 0.0,
    }
    q.update({k: v for k, v in over.items() if k in q})
    ev = Evidence(
        quality={k: Figure(v, v, 10) for k, v in q.items()},
        windows=int(over.get("windows", 400)),
        sessions_with_data=10,
        sessions_total=10,
        tp={
            "up": {"n": 8, "p10": over.get("up", 4.0)},
            "down": {"n": 8, "p10": over.get("down", 20.0)},
        },
        newest_ms=NOW - 3_600_000,
    )
    return ev


def reason(res: R.SiteResult, metric: str) -> R.Reason:
    return next(r for r in res.reasons if r.metric == metric)


# ------------------------------------------------------------------------ bands


@pytest.mark.parametrize(
    "metric,value,band",
    [
        ("jitter_ms", 14.9, "recommended"),
        ("jitter_ms", 15.0, "minimum"),  # "< 15" strict
        ("jitter_ms", 29.9, "minimum"),
        ("jitter_ms", 30.0, "marginal"),
        ("jitter_ms", 40.0, "marginal"),
        ("jitter_ms", 40.01, "not_ready"),  # "> 40"
        ("rtt_ms", 60.0, "recommended"),
        ("rtt_ms", 100.0, "minimum"),  # "≤ 100" inclusive
        ("rtt_ms", 100.1, "marginal"),
        ("rtt_ms", 150.0, "marginal"),
        ("rtt_ms", 150.1, "not_ready"),
        ("loss_pct", 0.09, "recommended"),
        ("loss_pct", 0.5, "minimum"),
        ("loss_pct", 1.0, "marginal"),
        ("loss_pct", 1.01, "not_ready"),
        ("burst_loss_pct", 0.5, "recommended"),
        ("burst_loss_pct", 9.9, "minimum"),
        ("burst_loss_pct", 80.0, "marginal"),  # no not-ready bound: never NOT READY alone
        ("reorder_pct", 0.005, "recommended"),
        ("reorder_pct", 0.05, "marginal"),
        ("mos", 3.59, "not_ready"),
        ("mos", 3.6, "minimum"),
        ("mos", 4.0, "recommended"),
        ("up_per_call_mbps", 0.34, "not_ready"),
        ("up_per_call_mbps", 0.35, "marginal"),
        ("up_per_call_mbps", 0.7, "minimum"),
        ("up_per_call_mbps", 1.5, "recommended"),
        ("down_per_call_mbps", 1.09, "marginal"),
        ("down_per_call_mbps", 1.1, "minimum"),
    ],
)
def test_rubric_bands(metric: str, value: float, band: str) -> None:
    assert rubric.RUBRIC[metric].band(value) == band


def test_every_threshold_has_a_source_and_profiles_cover_the_uses() -> None:
    for row in rubric.rubric_rows():
        assert row["source"] and row["label"], row
    assert set(rubric.PROFILES) == {
        "gp_video",
        "virtual_outpatient",
        "imaging_transfer",
        "virtual_ward",
    }
    # three-party call: the site receives two streams
    assert rubric.PROFILES["virtual_outpatient"].down.recommended == 2 * 1.5


# ------------------------------------------------------------------------ E-model


@pytest.mark.parametrize(
    "r,mos", [(93.2, 4.41), (90, 4.34), (80, 4.03), (70, 3.60), (60, 3.10), (50, 2.58)]
)
def test_r_to_mos_matches_itu_t_g107_g109(r: float, mos: float) -> None:
    """ITU-T G.107: the default parameter set gives R = 93.2, MOS 4.41; G.109 Table 1 gives
    the MOS at the category edges R = 90/80/70/60/50 (to 2 decimals; 80 -> 4.024 is printed
    4.03 there, hence the 0.01 tolerance)."""
    assert stats.r_to_mos(r) == pytest.approx(mos, abs=0.01)


def test_report_mos_uses_one_way_latency_half_the_rtt(inv) -> None:
    ev = good(rtt_ms=300.0, jitter_ms=20.0, loss_pct=1.0)
    res = R.evaluate(inv.sites[2], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.mos == pytest.approx(stats.emodel_mos(150.0, 20.0, 1.0))
    assert "one-way latency = RTT/2" in reason(res, "mos").text


# ------------------------------------------------------------------------ percentiles


@pytest.mark.parametrize(
    "n,p,k",
    [(20, 95, 19), (1, 95, 1), (4, 10, 1), (10, 10, 1), (15, 10, 2), (100, 50, 50), (3, 50, 2)],
)
def test_nearest_rank_is_influxql_percentile(n: int, p: float, k: int) -> None:
    # InfluxQL: i = floor(n*p/100 + 0.5) - 1 (0-based), null below 0 -> we clamp to the min.
    assert nearest_rank(n, p) == k


# ------------------------------------------------------------------------ sessions


def test_clinic_sessions_follow_uk_local_time_across_the_dst_change() -> None:
    hours = ClinicHours(days=["fri", "mon"], start=dt.time(8, 0), end=dt.time(18, 30))
    t0 = int(dt.datetime(2026, 10, 22, 12, tzinfo=dt.UTC).timestamp() * 1000)  # Thu
    t1 = int(dt.datetime(2026, 10, 26, 12, tzinfo=dt.UTC).timestamp() * 1000)  # Mon noon
    s = R.clinic_sessions(hours, t0, t1)
    utc = [
        (dt.datetime.fromtimestamp(a / 1000, dt.UTC), dt.datetime.fromtimestamp(b / 1000, dt.UTC))
        for a, b in s
    ]
    # Fri 23 Oct is BST (UTC+1): 08:00 local = 07:00 UTC; clocks go back on Sun 25 Oct;
    # Mon 26 Oct is GMT: 08:00 = 08:00 UTC, clipped at the window's end (12:00 UTC).
    assert utc == [
        (
            dt.datetime(2026, 10, 23, 7, tzinfo=dt.UTC),
            dt.datetime(2026, 10, 23, 17, 30, tzinfo=dt.UTC),
        ),
        (dt.datetime(2026, 10, 26, 8, tzinfo=dt.UTC), dt.datetime(2026, 10, 26, 12, tzinfo=dt.UTC)),
    ]


def test_combine_is_median_over_days_and_keeps_the_worst() -> None:
    f = R.combine([5.0, 50.0, 7.0, 6.0])
    assert (f.value, f.worst, f.sessions) == (6.5, 50.0, 4)


def test_parse_since() -> None:
    assert R.parse_since("14d") == dt.timedelta(days=14)
    assert R.parse_since("36h") == dt.timedelta(hours=36)
    assert R.parse_since("2w") == dt.timedelta(days=14)
    for bad in ("14", "d", "-3d", "xd", "900d"):
        with pytest.raises(ValueError):
            R.parse_since(bad)


# ------------------------------------------------------------------------ capacity


def test_capacity_from_throughput_takes_the_smaller_direction(inv) -> None:
    # up p10 4.0: floor(0.75*4.0/1.5) = floor(2.0) = 2; down p10 20: floor(0.75*20/1.5) = 10
    site = inv.sites[0].model_copy(update={"planned_clinics": 2})
    res = R.evaluate(site, good(up=4.0, down=20.0), rubric.PROFILES["gp_video"], NOW)
    assert res.capacity_calls == 2
    assert res.capacity_source.startswith("computed: floor(0.75 × p10")
    assert "up 4 Mbps -> 2, down 20 Mbps -> 10" in res.capacity_source
    assert res.verdict == R.READY
    assert reason(res, "capacity_calls").band == "recommended"


def test_capacity_short_is_marginal_while_each_call_gets_the_minimum(inv) -> None:
    # planned 3: capacity 2 < 3; per call up 0.75*4/3 = 1.0 Mbps (>= 0.7 minimum) -> MARGINAL
    site = inv.sites[0].model_copy(update={"planned_clinics": 3})
    res = R.evaluate(site, good(up=4.0, down=20.0), rubric.PROFILES["gp_video"], NOW)
    r = reason(res, "capacity_calls")
    assert (res.verdict, r.band, r.measured) == (R.MARGINAL, "marginal", 2.0)
    assert "capacity 2 calls < 3 planned" in r.text and "up 1 Mbps/call" in r.text


def test_capacity_below_not_ready_bandwidth_per_call_is_not_ready(inv) -> None:
    # planned 9: per call up 0.75*4/9 = 0.333 < 0.35 -> NOT READY
    site = inv.sites[0].model_copy(update={"planned_clinics": 9})
    res = R.evaluate(site, good(up=4.0, down=20.0), rubric.PROFILES["gp_video"], NOW)
    assert res.verdict == R.NOT_READY
    assert reason(res, "capacity_calls").band == "not_ready"
    assert "up 0.333 Mbps/call" in reason(res, "capacity_calls").text


def test_measured_capacity_calls_is_preferred_and_named(inv) -> None:
    ev = good(up=4.0, down=20.0)
    ev.capacity_calls, ev.capacity_n = 5.0, 7
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.capacity_calls == 5
    assert res.capacity_source == "measured: media probe capacity_calls, p10 of 7 runs"


def test_no_capacity_evidence_is_at_best_marginal(inv) -> None:
    ev = good()
    ev.tp = {}
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.capacity_calls is None
    assert res.verdict == R.MARGINAL
    assert reason(res, "capacity_calls").text.startswith("capacity unknown (none:")


def test_three_party_profile_doubles_download(inv) -> None:
    # up 10 -> floor(7.5/1.5) = 5; down 8 -> floor(6/3.0) = 2 -> 2 calls
    site = inv.sites[1].model_copy(update={"planned_clinics": 2})
    res = R.evaluate(site, good(up=10.0, down=8.0), rubric.PROFILES["virtual_outpatient"], NOW)
    assert res.capacity_calls == 2 and res.verdict == R.READY


# ------------------------------------------------------------------------ verdicts


def test_ready_with_every_gate_met(inv) -> None:
    site = inv.sites[1].model_copy(update={"planned_clinics": 2})
    res = R.evaluate(site, good(), rubric.PROFILES["gp_video"], NOW)
    assert res.verdict == res.assessed == R.READY
    assert {r.band for r in res.reasons} <= {"recommended", "minimum"}
    j = reason(res, "jitter_ms")
    assert "3 ms" in j.text and "meets recommended < 15 ms" in j.text
    assert "Teams" in j.source
    assert res.confidence.level == "high"


def test_not_ready_names_the_measured_value_threshold_and_source(inv) -> None:
    res = R.evaluate(inv.sites[1], good(jitter_ms=45.0), rubric.PROFILES["gp_video"], NOW)
    j = reason(res, "jitter_ms")
    assert res.verdict == R.NOT_READY and j.band == "not_ready"
    assert "jitter (RFC 3550) 45 ms" in j.text and "(> 40 ms)" in j.text
    assert "worst day 45 ms" in j.text and "median of 10 clinic days" in j.text
    assert j.short == "jitter (RFC 3550) 45 ms > 40"


def test_marginal_between_not_ready_and_minimum(inv) -> None:
    res = R.evaluate(inv.sites[1], good(rtt_ms=120.0), rubric.PROFILES["gp_video"], NOW)
    assert res.verdict == R.MARGINAL
    assert "misses minimum ≤ 100 ms" in reason(res, "rtt_ms").text


def test_no_data(inv) -> None:
    res = R.evaluate(inv.sites[0], Evidence(sessions_total=10), rubric.PROFILES["gp_video"], NOW)
    assert res.verdict == R.NO_DATA
    assert [r.text for r in res.reasons] == ["no measurements in the window"]
    assert res.confidence.level == "none"


def test_stale_keeps_what_the_evidence_said(inv) -> None:
    ev = good(jitter_ms=45.0)
    ev.newest_ms = NOW - int(3.5 * 86400 * 1000)
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert (res.verdict, res.assessed) == (R.STALE, R.NOT_READY)
    assert res.reasons[0].text.startswith("newest valid measurement is 3.5 days old (> 2 days)")


def test_every_rtt_run_failed_is_not_ready(inv) -> None:
    ev = Evidence(sessions_total=10, failures={"rtt": {"timeout": 40, "unreachable": 2}})
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.verdict == R.NOT_READY
    assert reason(res, "rtt_runs").text == (
        "every rtt run in the window failed (timeout 40, unreachable 2)"
    )
    assert res.confidence.excluded == {"timeout": 40, "unreachable": 2}


def test_too_few_windows_is_not_judged(inv) -> None:
    ev = good(windows=2)
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.rtt_ms is None and res.verdict == R.MARGINAL
    assert "2 valid 15 s windows in clinic hours (need 3)" in reason(res, "jitter_ms").text


def test_link_busy_samples_are_counted_in_confidence(inv) -> None:
    ev = good()
    ev.failures = {"throughput": {"link_busy": 3}}
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["gp_video"], NOW)
    assert res.confidence.excluded == {"link_busy": 3}
    assert res.confidence.throughput_samples == 16


@pytest.mark.parametrize(
    "up,minutes,verdict", [(40.0, 10.0, R.READY), (8.0, 50.0, R.MARGINAL), (5.0, 80.0, R.NOT_READY)]
)
def test_imaging_time_to_send_a_3gb_ct_study(inv, up: float, minutes: float, verdict: str) -> None:
    # 3 GB = 24,000 Mbit; at 40 Mbps: 600 s = 10 min (≤ 10 recommended); 8: 50 min; 5: 80 > 60
    res = R.evaluate(inv.sites[1], good(up=up), rubric.PROFILES["imaging_transfer"], NOW)
    assert res.ct_minutes == pytest.approx(minutes)
    assert res.verdict == verdict
    assert res.capacity_source == "not applicable"


def test_virtual_ward_availability(inv) -> None:
    # 990 answered windows, 10 timeouts: 99.0 % -> below 99.5 minimum, not below 99 -> MARGINAL
    ev = good(windows=990)
    ev.failures = {"rtt": {"timeout": 10}}
    res = R.evaluate(inv.sites[1], ev, rubric.PROFILES["virtual_ward"], NOW)
    assert res.availability_pct == pytest.approx(99.0)
    assert res.verdict == R.MARGINAL
    assert reason(res, "availability_pct").band == "marginal"


# ------------------------------------------------------------------------ estate lists


@pytest.mark.parametrize(
    "declared,detected,mismatch",
    [
        ("fttp", "vdsl2", True),
        ("fttp", "ethernet", False),
        ("fttc", "vdsl2", False),
        ("fttc", "adsl", True),
        ("adsl", "adsl", False),
        ("adsl", "vdsl2", True),
        ("ethernet", "shdsl", True),
        ("sogea", "gfast", False),
        ("fttc", "unknown", False),
        ("unknown", "adsl", False),
    ],
)
def test_tech_mismatch(declared: str, detected: str, mismatch: bool) -> None:
    assert R.tech_mismatch(declared, detected) is mismatch


def test_upgrade_priority_pstn_and_cohorts(inv) -> None:
    p = rubric.PROFILES["gp_video"]
    copper1 = R.evaluate(inv.sites[0], good(up=0.5, down=6.0, jitter_ms=45.0), p, NOW)
    fibre = R.evaluate(inv.sites[1], good(up=30.0, down=200.0), p, NOW)
    ev3 = good(up=4.0, down=30.0)  # capacity 2 of 4 planned: shortfall 50 %
    ev3.detected_tech = "vdsl2"
    copper3 = R.evaluate(inv.sites[2], ev3, p, NOW)
    assert (copper1.verdict, fibre.verdict, copper3.verdict) == (R.NOT_READY, R.READY, R.MARGINAL)
    pri = R.upgrade_priority([copper1, fibre, copper3])
    # scores: A10001 2 planned × 1.0 (jitter past not-ready) = 2.0; A10003 4 × 0.5 = 2.0;
    # equal scores -> more registered patients first (12,000 before 9,000)
    assert [(x["ods"], x["score"]) for x in pri] == [("A10003", 2.0), ("A10001", 2.0)]
    risk = R.pstn_risk([copper1, fibre, copper3], NOW)
    assert [(x["ods"], x["why"]) for x in risk] == [("A10001", "declared adsl, line on WLR")]
    assert risk[0]["days_to_switch_off"] == (dt.date(2027, 1, 31) - dt.date(2026, 11, 20)).days
    c = {x["group"]: x for x in R.cohorts([copper1, fibre, copper3], "declared_tech")}
    assert c["fttp"]["share_ready"] == 1.0 and c["adsl"]["ready"] == 0
    assert c["adsl"]["class"] == "copper" and c["fttp"]["class"] == "fibre"
    det = {x["group"]: x for x in R.cohorts([copper1, fibre, copper3], "detected_tech")}
    assert det["vdsl2"]["class"] == "copper" and det["unknown"]["sites"] == 2


def test_one_plain_grade_per_use_with_its_reason(inv) -> None:
    """The worst band over the profile's gates decides the grade (rubric.GRADES); its first
    reason is the reason shown beside it."""
    assert rubric.grade([("recommended", "a"), ("minimum", "b"), ("minimum", "c")]) == ("Good", "b")
    assert rubric.grade([("not_ready", "x"), ("marginal", "y")]) == ("Unusable", "x")
    assert rubric.grade([("no_data", "none"), ("info", "i")]) == (None, "no data")
    res = R.evaluate(inv.sites[2], good(rtt_ms=300.0), rubric.PROFILES["gp_video"], NOW)
    worst = max(
        (r for r in res.reasons if r.band in rubric.GRADES),
        key=lambda r: rubric.BAND_ORDER.index(r.band),
    )
    assert res.grade == rubric.GRADES[worst.band] and res.grade_reason == worst.text
    assert res.to_dict()["grade"] == res.grade


def test_assess_writes_the_grade_for_grafana(inv) -> None:
    """The readiness record carries the grade and its reason as strings; a site with no
    graded gate writes "No grade" (a null field would be dropped and the panel left blank)."""
    from types import SimpleNamespace

    from netready.reports.assess import NO_GRADE, readiness_records

    p = rubric.PROFILES["gp_video"]
    bad = R.evaluate(inv.sites[2], good(rtt_ms=300.0), p, NOW)
    empty = R.evaluate(inv.sites[2], Evidence(), p, NOW)
    assert bad.grade == "Unusable" and empty.grade is None
    e = SimpleNamespace(sites=[bad, empty], since_s=86400.0, now_ms=NOW)
    a, b = readiness_records(e)
    assert (a.fields["grade"], a.fields["grade_reason"]) == (bad.grade, bad.grade_reason)
    assert "RTT" in a.fields["grade_reason"]
    assert (b.fields["grade"], b.fields["grade_reason"]) == (NO_GRADE, "no data")
