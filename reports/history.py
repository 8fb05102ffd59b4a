"""The estate over time: each site's weekly verdict history, and what changed.

The history is read from the ``readiness`` records ``netready assess`` writes (one per site
each time it runs, for one profile): per site and week (Monday 00:00 UTC), the newest verdict,
capacity and sustained throughput of the week, and the declared ``tech`` the record carried.
One store query, whatever the size of the estate (``Store.weekly_latest``).

"What changed" compares each site's newest week with a record against the week before it
that has one:

- **worse**: the assessed verdict got worse (READY → MARGINAL → NOT READY);
- **upgraded**: the verdict did not get worse and the line was upgraded: the declared tech
  changed (adsl → fttp) or the measured capacity rose (more concurrent calls, or the
  sustained download or upload up by at least ``UPGRADE_GAIN``);
- **stopped reporting**: the site had an assessed verdict before, and now is STALE or NO
  DATA (its agent went silent), or has had no record for ``SILENT_WEEKS`` weeks or more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from netready.reports.query import Store

from netready.inventory import Site
from netready.store import WEEK_MS, week_start

ASSESSED = ("READY", "MARGINAL", "NOT READY")
_SEV = {v: i for i, v in enumerate(ASSESSED)}
#: the fields of a ``readiness`` record the history reads
#: (``tech`` is read as a field too: a store that keeps the declared tech as a field, not a
#: tag, so that an upgrade does not fork the series, still shows the change)
FIELDS = ("verdict", "capacity_calls", "down_p10_mbps", "up_p10_mbps", "tech")
#: a rise in sustained throughput this large (x1.25) counts as an upgrade
UPGRADE_GAIN = 1.25
#: weeks without any readiness record after which a site that reported has stopped
SILENT_WEEKS = 2
#: weeks of history a report shows by default
DEFAULT_WEEKS = 8


@dataclass
class Week:
    """One site's newest readiness record of one week."""

    start_ms: int
    verdict: str
    tech: str = ""
    capacity_calls: float | None = None
    down_p10_mbps: float | None = None
    up_p10_mbps: float | None = None


@dataclass
class Change:
    ods: str
    name: str
    kind: str  # worse | upgraded | stopped reporting
    before: str  # verdict (and tech) in the earlier week
    after: str
    why: str
    since_ms: int  # start of the newest week


@dataclass
class History:
    weeks: list[int]  # week starts, oldest first
    sites: dict[str, list[Week | None]] = field(default_factory=dict)  # ODS → one per week
    changes: list[Change] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weeks": self.weeks,
            "sites": {
                ods: [None if w is None else asdict(w) for w in ws]
                for ods, ws in self.sites.items()
            },
            "changes": [asdict(c) for c in self.changes],
        }


def _pick(cands: dict[str, dict[str, Any]], prev_tech: str | None) -> tuple[str, dict[str, Any]]:
    """A week with records under more than one ``tech`` (the week the line was upgraded):
    the one that is not last week's (the tech the site ended the week on)."""
    if len(cands) == 1:
        return next(iter(cands.items()))
    for t in sorted(cands):
        if t != prev_tech:
            return t, cands[t]
    return next(iter(sorted(cands.items())))


def history(
    store: Store, sites: Sequence[Site], profile: str, now_ms: int, weeks: int = DEFAULT_WEEKS
) -> History:
    """The last ``weeks`` weeks (the current one included) of each site's verdicts."""
    first = week_start(now_ms) - (weeks - 1) * WEEK_MS
    starts = [first + i * WEEK_MS for i in range(weeks)]
    rows = store.weekly_latest(
        "readiness", FIELDS, [s.ods for s in sites], first, now_ms + 1, "tech", {"profile": profile}
    )
    per: dict[str, dict[int, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for (ods, wk, tech), vals in rows.items():
        if "verdict" in vals:
            per[ods][wk][str(vals.get("tech") or tech)] = vals
    h = History(starts)
    for s in sites:
        line: list[Week | None] = []
        prev_tech: str | None = None
        for wk in starts:
            cands = per.get(s.ods, {}).get(wk)
            if not cands:
                line.append(None)
                continue
            tech, v = _pick(cands, prev_tech)
            prev_tech = tech
            line.append(
                Week(
                    wk,
                    str(v["verdict"]),
                    tech,
                    _num(v.get("capacity_calls")),
                    _num(v.get("down_p10_mbps")),
                    _num(v.get("up_p10_mbps")),
                )
            )
        h.sites[s.ods] = line
    h.changes = what_changed(h, sites)
    return h


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _desc(w: Week) -> str:
    cap = "" if w.capacity_calls is None else f", {w.capacity_calls:g} calls"
    return f"{w.verdict} ({w.tech or '?'}{cap})"


def _gain(after: float | None, before: float | None) -> bool:
    return (
        after is not None and before is not None and before > 0 and after >= before * UPGRADE_GAIN
    )


def _upgrade(b: Week, a: Week) -> str | None:
    """Why ``a`` is an upgrade on ``b``, or None."""
    why = []
    if a.tech and b.tech and a.tech != b.tech:
        why.append(f"tech {b.tech} → {a.tech}")
    if (
        a.capacity_calls is not None
        and b.capacity_calls is not None
        and (a.capacity_calls > b.capacity_calls)
    ):
        why.append(f"capacity {b.capacity_calls:g} → {a.capacity_calls:g} calls")
    for d, fa, fb in (
        ("down", a.down_p10_mbps, b.down_p10_mbps),
        ("up", a.up_p10_mbps, b.up_p10_mbps),
    ):
        if _gain(fa, fb):
            why.append(f"sustained {d} {fb:g} → {fa:g} Mbit/s")
    return "; ".join(why) or None


def _change(s: Site, line: list[Week | None], weeks: list[int]) -> Change | None:
    seen = [(i, w) for i, w in enumerate(line) if w is not None]
    if not seen:
        return None
    i_last, last = seen[-1]
    assessed_before = [w for _, w in seen[:-1] if w.verdict in ASSESSED]
    silent = len(weeks) - 1 - i_last
    if silent >= SILENT_WEEKS and last.verdict in ASSESSED:
        return Change(
            s.ods, s.name, "stopped reporting", _desc(last), "no readiness record",
            f"nothing assessed for {silent} weeks", weeks[-1],
        )  # fmt: skip
    if last.verdict not in ASSESSED:
        if not assessed_before:
            return None
        b = assessed_before[-1]
        return Change(
            s.ods, s.name, "stopped reporting", _desc(b), _desc(last),
            f"was {b.verdict}, now {last.verdict}: the agent is not sending data", last.start_ms,
        )  # fmt: skip
    if not assessed_before:
        return None
    b = assessed_before[-1]
    if _SEV[last.verdict] > _SEV[b.verdict]:
        return Change(
            s.ods, s.name, "worse", _desc(b), _desc(last),
            f"{b.verdict} → {last.verdict}", last.start_ms,
        )  # fmt: skip
    up = _upgrade(b, last)
    if up:
        better = f"{b.verdict} → {last.verdict}; " if last.verdict != b.verdict else ""
        return Change(s.ods, s.name, "upgraded", _desc(b), _desc(last), better + up, last.start_ms)
    return None


def what_changed(h: History, sites: Sequence[Site]) -> list[Change]:
    """Sites that got worse, were upgraded, or stopped reporting (worst news first)."""
    order = {"worse": 0, "stopped reporting": 1, "upgraded": 2}
    out = [c for s in sites if (c := _change(s, h.sites.get(s.ods, []), h.weeks)) is not None]
    return sorted(out, key=lambda c: (order[c.kind], c.ods))


# ----------------------------------------------------------------------------- rendering

#: a verdict in one cell of the history table
SHORT = {"READY": "R", "MARGINAL": "M", "NOT READY": "N", "STALE": "S", "NO DATA": "-"}


def sections(h: History | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's two sections (title, header, rows), for the table, md and html
    renderers: the weekly verdicts (R READY, M MARGINAL, N NOT READY, S STALE, - NO DATA,
    blank: no record) and what changed."""
    if h is None:
        return []
    import datetime as dt

    def day(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%d %b")

    head = ["site", *(f"w/c {day(w)}" for w in h.weeks)]
    rows = [
        [ods, *("" if w is None else SHORT.get(w.verdict, "?") for w in line)]
        for ods, line in h.sites.items()
        if any(w is not None for w in line)
    ]
    changed = [
        [c.kind, c.ods, c.name, c.before, c.after, c.why, f"w/c {day(c.since_ms)}"]
        for c in h.changes
    ]
    return [
        ("Verdict history (weekly: R ready, M marginal, N not ready, S stale, - no data)", head, rows),
        ("What changed (newest week against the week before)",
         ["change", "site", "name", "before", "after", "why", "week"], changed),
    ]  # fmt: skip
