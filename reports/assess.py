"""The readiness assessment as ``netready report`` and ``netready assess`` run it: from an
inventory, a store and the options' text to an ``Estate`` (``build``), and the ``readiness``
records written back to the store for Grafana (``readiness_records``, ``write_records``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from netready.errors import ConfigError
from netready.records import Record
from netready.rubric import DEFAULT_PROFILE

#: ``grade`` of a site none of whose gates has a graded band (rubric.grade gives None)
NO_GRADE = "No grade"
VERDICT_CODE = {"READY": 0, "MARGINAL": 1, "NOT READY": 2, "STALE": 3, "NO DATA": 4}
#: ``--profile all``: every site graded for every profile in one run (``readiness.assess_profiles``)
ALL_PROFILES = "all"


def parse_now(text: str | None) -> int:
    """``--now``: ISO 8601 (naive = UTC) or epoch milliseconds; default the current time."""
    if not text:
        return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {text!r}: use ISO 8601 (2026-11-20T17:00Z) or epoch ms") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class Selection:
    """What ``report`` and ``assess`` look at, as their options give it: the inventory, the
    embedded store (``spool``; default the inventory's), the sites (ODS codes) and ICBs (empty:
    all), the window (``since`` back from ``now``, as text) and the profile judged for
    (``ALL_PROFILES``: all of them, the rest of the report for the default profile)."""

    inventory: str
    spool: str | None = None
    sites: tuple[str, ...] = ()
    icbs: tuple[str, ...] = ()
    since: str = "14d"
    profile: str = DEFAULT_PROFILE
    now: str | None = None
    #: also each site's history by day (``reports/trends.py``), for the HTML and PDF reports
    trends: bool = False
    #: weeks of verdict history (``reports/history.py``) to add; 0: none
    history_weeks: int = 0


def build(sel: Selection) -> Any:
    """Load the inventory, open the store, assess the selected sites. Returns the Estate."""
    from netready.reports import readiness
    from netready.reports.query import open_store

    from netready import inventory as inv_mod

    try:
        window = readiness.Window(parse_now(sel.now), readiness.parse_since(sel.since))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    inv = inv_mod.load(sel.inventory)
    selected = readiness.select_sites(inv, sel.sites, sel.icbs)
    if not selected:
        raise ConfigError(f"no sites in {sel.inventory} match --icb {' '.join(sel.icbs)}")
    store, name = open_store(inv.store, sel.spool or inv.agent.spool_path)
    try:
        if sel.profile == ALL_PROFILES:
            estate = readiness.assess_profiles(store, selected, window, name)
        else:
            estate = readiness.assess_estate(store, selected, sel.profile, window, name)
        if sel.trends:
            from netready.reports import trends

            chosen = set(trends.section_sites(estate.sites))
            estate.trends = trends.site_trends(
                store, [s for s in selected if s.ods in chosen], estate.profile, window
            )
        if sel.history_weeks:
            from netready.reports import history

            estate.history = history.history(
                store, selected, estate.profile, window.now_ms, sel.history_weeks
            )
        return estate
    finally:
        store.close()


def not_ready(estate: Any, sel: Selection) -> bool:
    """True when sites were named (``--site``) and one of them is not READY."""
    return bool(sel.sites) and any(r.verdict != "READY" for r in estate.sites)


def readiness_records(estate: Any) -> list[Record]:
    """One ``readiness`` record per site (per site and profile with ``--profile all``),
    stamped at the end of the window."""
    from netready.reports.readiness import qos_word

    recs = []
    by_profile = getattr(estate, "by_profile", None)
    results = [r for rs in by_profile.values() for r in rs] if by_profile else estate.sites
    for r in results:
        c = r.confidence
        bad = [x.text for x in r.reasons if x.band in ("not_ready", "marginal", "no_data")]
        recs.append(
            Record(
                "readiness",
                {
                    "site": r.ods,
                    "icb": r.icb,
                    "tech": r.declared_tech,
                    "profile": r.profile,
                    "detected_tech": r.detected_tech,
                },
                {
                    "verdict": r.verdict,
                    "verdict_code": VERDICT_CODE[r.verdict],
                    "assessed": r.assessed,
                    "ready": r.verdict == "READY",
                    "tech_check": r.tech_check,
                    "capacity_calls": r.capacity_calls,
                    "capacity": r.capacity_calls,  # the dashboards' name
                    "lat": r.lat,
                    "lon": r.lon,
                    "planned_clinics": r.planned_clinics,
                    "down_p10_mbps": r.down_p10_mbps,
                    "up_p10_mbps": r.up_p10_mbps,
                    "rtt_ms": r.rtt_ms,
                    "jitter_ms": r.jitter_ms,
                    "loss_pct": r.loss_pct,
                    "mos": r.mos,
                    "ct_minutes": r.ct_minutes,
                    "availability_pct": r.availability_pct,
                    "confidence": c.level,
                    "windows": c.windows,
                    "excluded": sum(c.excluded.values()),
                    "reasons": " | ".join(bad)[:1000] or "all gates met",
                    "grade": r.grade or NO_GRADE,
                    "grade_reason": r.grade_reason[:1000],
                    "qos": qos_word(r),
                    "qos_reason": r.qos_reason[:1000] or "no QoS check in the window",
                    "window_s": float(estate.since_s),
                },
                estate.now_ms,
            )
        )
    return recs


def assess(sel: Selection, *, dry_run: bool = False) -> tuple[Any, list[Record]]:
    """``netready assess``: ``build`` the estate, turn it into ``readiness`` records and (unless
    ``dry_run``) write them to the inventory's store. Returns (estate, records)."""
    from netready import inventory as inv_mod

    estate = build(sel)
    recs = readiness_records(estate)
    if not dry_run:
        inv = inv_mod.load(sel.inventory)
        write_records(inv, sel.spool or inv.agent.spool_path, recs)
    return estate, recs


def write_records(inv: Any, spool_path: str, recs: list[Record]) -> None:
    """Embedded: into the spool (points table); InfluxDB: the configured writer."""
    if inv.store.kind == "embedded":
        from netready.spool import Spool

        a = inv.agent
        with Spool(
            spool_path,
            ship=False,
            embedded=True,
            max_bytes=int(a.spool_max_mb * 2**20),
            max_age_s=a.spool_max_age_days * 86400,
        ) as sp:
            sp.enqueue(recs)
        return
    from netready.influx import writer_for

    w = writer_for(inv.store)
    try:
        w.write(recs)
    finally:
        w.close()
