"""Each site's history, day by day, for the site sections of the HTML and PDF reports.

Per local day (Europe/London, midnight to midnight, clipped to the window) and site: the
sustained throughput (p10 of ``goodput_mbps`` per direction, as the verdict uses over the whole
window), the loaded latency (median of the speed tests' ``rtt_loaded_ms``, with their
``rtt_idle_ms`` for comparison) and the concurrent calls the link carries (the media probe's
``capacity_calls``, p10; else computed from the day's throughput p10 exactly as the verdict
computes it) against the planned clinics. Two store questions for the whole selection
(``Store.aggregate`` with one session per day), whatever the number of sites.

The days are all hours, not clinic hours: heavy tests run outside clinic hours by design.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netready.reports.query import Agg, Store
from netready.reports.readiness import TZ, Window, computed_capacity

from netready import rubric
from netready.inventory import Site

DAILY_TP = (
    Agg("n", "goodput_mbps"),
    Agg("p10", "goodput_mbps", rubric.SUSTAINED_PCT),
    Agg("loaded_ms", "rtt_loaded_ms", 50),
    Agg("idle_ms", "rtt_idle_ms", 50),
)
DAILY_CAP = (Agg("n", "capacity_calls"), Agg("p10", "capacity_calls", rubric.SUSTAINED_PCT))


@dataclass
class Day:
    """One local day of one site (None: nothing measured that day)."""

    start_ms: int
    down_p10_mbps: float | None = None
    up_p10_mbps: float | None = None
    #: median loaded / idle round trip of the day's speed tests, the worse direction
    loaded_ms: float | None = None
    idle_ms: float | None = None
    #: concurrent calls: measured (media probe) or computed from the day's throughput p10
    capacity_calls: int | None = None
    capacity_source: str | None = None  # "measured" | "computed"

    @property
    def label(self) -> str:
        return dt.datetime.fromtimestamp(self.start_ms / 1000, TZ).strftime("%a %d %b")

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.down_p10_mbps, self.up_p10_mbps, self.loaded_ms, self.capacity_calls)
        )


@dataclass
class SiteTrend:
    ods: str
    planned_clinics: int
    days: list[Day] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return any(d.any for d in self.days)


def days(w: Window, tz: dt.tzinfo = TZ) -> list[tuple[int, int]]:
    """Local days [start, end) in UTC ms overlapping the window, clipped to it."""
    out: list[tuple[int, int]] = []
    d = dt.datetime.fromtimestamp(w.t0 / 1000, tz).date()
    while True:
        a = int(dt.datetime.combine(d, dt.time(0), tz).timestamp() * 1000)
        if a >= w.t1:
            return out
        d += dt.timedelta(days=1)
        b = int(dt.datetime.combine(d, dt.time(0), tz).timestamp() * 1000)
        out.append((max(a, w.t0), min(b, w.t1)))


def site_trends(
    store: Store, sites: Sequence[Site], profile_name: str, w: Window
) -> dict[str, SiteTrend]:
    """ODS -> the site's days, oldest first."""
    profile = rubric.PROFILES[profile_name]
    spans = days(w)
    sess = {s.ods: spans for s in sites}
    tp = store.aggregate("throughput", DAILY_TP, sess, by="direction")
    cap = (
        store.aggregate("media", DAILY_CAP, sess, exclude={"method": "find_capacity"})
        if profile.concurrent
        else {}
    )
    out = {}
    for s in sites:
        trend = SiteTrend(s.ods, s.planned_clinics)
        for a, _b in spans:
            day = Day(a)
            loaded, idle = [], []
            for direction in ("down", "up"):
                row = tp.get((s.ods, direction, a)) or {}
                if (p10 := row.get("p10")) is not None:
                    setattr(day, f"{direction}_p10_mbps", float(p10))
                if (loaded_ms := row.get("loaded_ms")) is not None:
                    loaded.append(float(loaded_ms))
                if (idle_ms := row.get("idle_ms")) is not None:
                    idle.append(float(idle_ms))
            day.loaded_ms = max(loaded) if loaded else None
            day.idle_ms = max(idle) if idle else None
            c = cap.get((s.ods, "", a)) or {}
            if (calls := c.get("p10")) is not None:
                day.capacity_calls, day.capacity_source = int(calls), "measured"
            elif profile.concurrent and day.up_p10_mbps and day.down_p10_mbps:
                day.capacity_calls = min(
                    computed_capacity(profile, day.up_p10_mbps, day.down_p10_mbps)
                )
                day.capacity_source = "computed"
            trend.days.append(day)
        out[s.ods] = trend
    return out


#: Site sections (with their charts) in one report at most: an estate of thousands gets them
#: for the sites that need attention first; --site or --icb narrows the report to see others.
MAX_SITE_SECTIONS = 40
_ORDER = {"NOT READY": 0, "MARGINAL": 1, "STALE": 2, "NO DATA": 3, "READY": 4}


def section_sites(results: Sequence[Any]) -> list[str]:
    """The ODS codes that get a site section: all when there are few, else the worst first
    (NOT READY, MARGINAL, STALE, NO DATA, READY), in estate order within a verdict."""
    if len(results) <= MAX_SITE_SECTIONS:
        return [r.ods for r in results]
    ranked = sorted(range(len(results)), key=lambda i: (_ORDER.get(results[i].verdict, 9), i))
    return [results[i].ods for i in ranked[:MAX_SITE_SECTIONS]]
