"""Budgets and manners for heavy tests (media, throughput, iperf3, speedtest: ``Plugin.heavy``).

Call contract for whatever runs a heavy plugin (the agent scheduler, ``netready probe``)::

    refusal = budget.admit(ctx, plugin, spec, now)          # before the test
    if refusal is not None:
        records = [budget.refusal(ctx, plugin, refusal)]    # recorded, not run
    else:
        t0 = now_ms()
        records = await plugin.run(ctx, spec)               # the probe meters its own bytes
        records = budget.mark_link_busy(records, traffic, t0, now_ms())   # optional, SNMP
        budget.charge(ctx, ctx.site.ods, budget.bytes_used(records))

- ``admit`` returns ``None`` (go ahead) or a ``Refusal``: a code (``Reason``) and a one-line
  reason. Plugins that are not ``heavy`` are always admitted. ``ctx.force`` (and a run
  without a site, e.g. by hand) skips the clinic-hours and daily-budget rules; the per-test
  cap always applies.
- Clinic hours (``Reason.CLINIC_HOURS``, record ``result=skipped``): a heavy test does not
  start inside the site's ``clinic_hours`` (inventory), read in the site's local time
  (``Europe/London``; ``now`` is an aware datetime, UTC).
- Daily budget (``Reason.DAILY_BUDGET``, ``budget_exceeded``): ``site.budget.daily_mb`` per
  site per UTC day; a test is admitted only if what it may use (its ``cost``, else its cap)
  fits in what is left today.
- Per-test cap (``Reason.TEST_CAP``, ``budget_exceeded``): ``test_cap_bytes(ctx, spec_max_mb)``
  = the smallest of the spec's ``max_mb``, the site's ``budget.test_mb`` (100 MB by default)
  and, unless forced, what is left of today's budget. A plugin whose bytes are known before
  it runs declares them (``Plugin.cost``) and ``admit`` refuses a run over the cap; every
  heavy plugin also meters itself against ``test_cap_bytes`` while it runs, so a test never
  moves more than this.
- ``charge(ctx, site, nbytes)`` adds bytes to the site's count for the UTC day. Counts live in
  ``ctx.state_dir / "budget.sqlite"`` (table ``usage(site, day, bytes)``; safe across
  processes); days older than 31 are pruned.
- Link busy: ``mark_link_busy(records, traffic, start_ms, end_ms)`` takes the site's recent
  ``if_traffic`` records (from a collector; empty when none is configured, and then it
  changes nothing). If the WAN carried other traffic around the test -- more than
  ``busy_pct`` (10%) of the line rate in the test's direction, after subtracting the test's
  own traffic from samples that overlap it -- each ok ``throughput`` record of that direction
  is re-tagged ``result=link_busy`` with a ``reason``; its fields are kept, so the number is
  still visible but is not taken as the line's capacity.
"""

from __future__ import annotations

import datetime as dt
import enum
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from netready.plugin import Context, Plugin
from netready.records import Record, failure

SITE_TZ = ZoneInfo("Europe/London")
DEFAULT_TEST_MB = 100.0
MB = 1_000_000
GOODPUT_TO_WIRE = 1 / 0.956  # TCP/IP + Ethernet overhead at 1500-byte MTU
KEEP_DAYS = 31


def _db(ctx: Context) -> sqlite3.Connection:
    Path(ctx.state_dir).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(Path(ctx.state_dir) / "budget.sqlite", timeout=10)
    con.execute(
        "CREATE TABLE IF NOT EXISTS usage (site TEXT NOT NULL, day TEXT NOT NULL, "
        "bytes INTEGER NOT NULL, PRIMARY KEY (site, day))"
    )
    return con


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("budget: `now` must be timezone-aware (UTC)")
    return now.astimezone(dt.UTC)


def _day(now: dt.datetime | None) -> str:
    return _utc(now).date().isoformat()


def used_today(ctx: Context, site: str, now: dt.datetime | None = None) -> int:
    """Bytes charged to ``site`` on the UTC day of ``now``."""
    with closing(_db(ctx)) as con:
        row = con.execute(
            "SELECT bytes FROM usage WHERE site=? AND day=?", (site, _day(now))
        ).fetchone()
    return int(row[0]) if row else 0


def charge(ctx: Context, site: str, nbytes: int, now: dt.datetime | None = None) -> int:
    """Add ``nbytes`` to the site's count for today (UTC); returns the new total."""
    if nbytes < 0:
        raise ValueError("budget: cannot charge a negative number of bytes")
    day = _day(now)
    oldest = (_utc(now).date() - dt.timedelta(days=KEEP_DAYS)).isoformat()
    with closing(_db(ctx)) as con, con:
        con.execute(
            "INSERT INTO usage (site, day, bytes) VALUES (?, ?, ?) "
            "ON CONFLICT(site, day) DO UPDATE SET bytes = bytes + excluded.bytes",
            (site, day, int(nbytes)),
        )
        con.execute("DELETE FROM usage WHERE day < ?", (oldest,))
        row = con.execute("SELECT bytes FROM usage WHERE site=? AND day=?", (site, day)).fetchone()
    return int(row[0])


def test_cap_bytes(
    ctx: Context, spec_max_mb: float | None = None, now: dt.datetime | None = None
) -> int:
    """Most bytes one heavy test may move (see the module docstring)."""
    caps = [spec_max_mb * MB] if spec_max_mb else []
    site = ctx.site
    if site is not None:
        caps.append(site.budget.test_mb * MB)
        if not ctx.force:
            caps.append(max(0, site.budget.daily_mb * MB - used_today(ctx, site.ods, now)))
    if not caps:
        caps.append(DEFAULT_TEST_MB * MB)
    return int(min(caps))


class Reason(enum.StrEnum):
    """Why ``admit`` refused a heavy test."""

    CLINIC_HOURS = "clinic_hours"
    DAILY_BUDGET = "daily_budget"
    TEST_CAP = "test_cap"


#: The record's ``result`` for each refusal.
RESULT: dict[Reason, str] = {
    Reason.CLINIC_HOURS: "skipped",
    Reason.DAILY_BUDGET: "budget_exceeded",
    Reason.TEST_CAP: "budget_exceeded",
}


@dataclass(frozen=True)
class Refusal:
    """A heavy test not run: the code, and one line saying why for people."""

    code: Reason
    reason: str

    @property
    def result(self) -> str:
        return RESULT[self.code]

    def __str__(self) -> str:
        return self.reason


def _spec_mb(spec: Any) -> float | None:
    v = getattr(spec, "max_mb", None)
    return float(v) if v else None


def admit(
    ctx: Context, plugin: Plugin, spec: Any, now: dt.datetime | None = None
) -> Refusal | None:
    """``None`` if the test may run now, else why not (see the module docstring)."""
    if not plugin.heavy:
        return None
    cost = plugin.cost(spec) if plugin.cost is not None else None
    site = ctx.site
    if site is not None and not ctx.force:
        utc = _utc(now)
        local = utc.astimezone(SITE_TZ)
        ch = site.clinic_hours
        if ch.contains(local.replace(tzinfo=None)):
            return Refusal(
                Reason.CLINIC_HOURS,
                f"site {site.ods}: clinic hours ({','.join(ch.days)} {ch.start:%H:%M}-"
                f"{ch.end:%H:%M} Europe/London, now {local:%a %H:%M}); heavy test "
                f"{plugin.name} not run (force to override)",
            )
        used = used_today(ctx, site.ods, utc)
        daily = site.budget.daily_mb * MB
        cap = min(site.budget.test_mb * MB, (_spec_mb(spec) or site.budget.test_mb) * MB)
        need = min(cap, cost) if cost is not None else cap
        if used + need > daily:
            return Refusal(
                Reason.DAILY_BUDGET,
                f"site {site.ods}: daily budget {daily / MB:g} MB, {used / MB:.1f} MB used "
                f"today (UTC {utc.date()}), test {plugin.name} may use {need / MB:g} MB",
            )
    if cost is not None:
        cap_b = test_cap_bytes(ctx, _spec_mb(spec), now)
        if cost > cap_b:
            return Refusal(
                Reason.TEST_CAP,
                f"test {plugin.name} needs {cost / MB:.1f} MB, over the {cap_b / MB:g} MB "
                "budget of one test",
            )
    return None


def refusal(ctx: Context, plugin: Plugin, refused: Refusal) -> Record:
    """The record of a test ``admit`` refused, under the plugin's declared measurement and
    method; ``result`` from the refusal's code (``RESULT``)."""
    return failure(
        plugin.measurement, {**ctx.tags, "method": plugin.method}, refused.result, refused.reason
    )


def bytes_used(records: Iterable[Record]) -> int:
    """Sum of the ``bytes`` fields of a test's records (what to ``charge``)."""
    return sum(
        int(r.fields.get("bytes", 0))
        for r in records
        if isinstance(r.fields.get("bytes", 0), (int, float))
    )


_WAN_DIR = {"in": "down", "out": "up"}


def mark_link_busy(
    records: Sequence[Record],
    traffic: Iterable[Record],
    start_ms: int,
    end_ms: int,
    *,
    busy_pct: float = 10.0,
    lookback_s: float = 120.0,
    line_mbps: dict[str, float] | None = None,
) -> list[Record]:
    """Re-tag ok throughput records ``link_busy`` when the WAN carried other traffic.

    ``traffic``: ``if_traffic`` records (``direction`` in/out, fields ``rate_mbps``,
    ``interval_s``, ``is_wan``; time = end of the counter interval). Only WAN samples whose
    interval overlaps ``[start_ms - lookback_s, end_ms]`` count. For a sample overlapping the
    test, the test's own wire rate (goodput / 0.956) times the overlap fraction is subtracted.
    ``line_mbps`` ({"down": .., "up": ..}) is the reference rate; default: the record's goodput.
    """
    samples = [
        t
        for t in traffic
        if t.measurement == "if_traffic"
        and t.ok
        and t.fields.get("is_wan") is True
        and isinstance(t.fields.get("rate_mbps"), (int, float))
        and isinstance(t.fields.get("interval_s"), (int, float))
        and t.tags.get("direction") in _WAN_DIR
    ]
    if not samples:
        return list(records)
    out: list[Record] = []
    for r in records:
        d = r.tags.get("direction")
        goodput = r.fields.get("goodput_mbps")
        if (
            r.measurement != "throughput"
            or not r.ok
            or d not in ("down", "up")
            or not isinstance(goodput, (int, float))
        ):
            out.append(r)
            continue
        ref = (line_mbps or {}).get(d) or float(goodput)
        worst = 0.0
        for s in samples:
            if _WAN_DIR[s.tags["direction"]] != d:
                continue
            iv = float(s.fields["interval_s"])
            s1 = s.time_ms
            s0 = s1 - iv * 1000
            if s1 < start_ms - lookback_s * 1000 or s0 > end_ms or iv <= 0:
                continue
            overlap = max(0.0, min(s1, end_ms) - max(s0, start_ms)) / (iv * 1000)
            other = float(s.fields["rate_mbps"]) - float(goodput) * GOODPUT_TO_WIRE * overlap
            worst = max(worst, other)
        if ref > 0 and worst > busy_pct / 100 * ref:
            reason = (
                f"link busy: other traffic {worst:.2f} Mbit/s on the WAN ({d}) around the "
                f"test, over {busy_pct:g}% of {ref:.2f} Mbit/s; not the line's capacity"
            )
            out.append(
                Record(
                    r.measurement,
                    {**r.tags, "result": "link_busy"},
                    {**r.fields, "reason": reason},
                    r.time_ms,
                )
            )
        else:
            out.append(r)
    return out
