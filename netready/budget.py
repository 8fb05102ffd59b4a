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

Good manners on a live line (SamKnows, Murakami):

- Deferral: before a heavy test the agent asks ``user_busy(traffic, now_ms, line)``: if the
  latest WAN ``if_traffic`` sample of either direction, no older than ``DEFER_MAX_AGE_S``
  (600 s), shows more than ``DEFER_BUSY_PCT`` (20 %) of the contracted rate (the site's link
  ``down_mbps``/``up_mbps``), the test is not started: it is recorded ``result=skipped`` with
  the reason, counted (``deferred_busy`` in the agent record) and retried after
  ``retry_delay_s()`` (15 min, randomised 0.5-1.5x); the retry is admitted like any run, so
  it stays within the day's budget. Without a collector nothing is deferred.
- Slots: a heavy test's runs are spread at random within each slot of its interval, aligned
  on the wall clock (``slot_delay_s``), so 6,000 sites with a 6 h throughput interval start
  at any second of the 6 h, not together at the agents' start plus the 30 s splay.
- Monthly traffic: ``record_traffic`` keeps the wire bytes of every test (heavy and light) per
  site and UTC day (table ``traffic``), each run counted as its probe declares
  (``Plugin.traffic``, ``wire_bytes``: TCP tests their payload x 1/0.956, ``tcp_traffic``; rtt
  and icmp their packets there and back with their headers, ``echo_traffic``; media its IP
  bytes plus 14 B of Ethernet per packet); ``traffic_month`` sums the calendar month, reported
  as ``traffic_month_mb`` in the agent record beside ``MONTHLY_MB``: 3000 MB, the default
  monthly budget, chosen for an ADSL line (7/0.8 Mbit/s, capacity ~2.3 TB a month down: the
  budget is 0.13 % of it). At the default schedules: rtt (15 s at 50 pps of 41 B every 5 min,
  124.5 kB a run) ~1.08 GB a month; four throughput tests a day at ~11 MB each ~1.3 GB; an
  icmp target 34 MB; a media target (a 15 s 720p call, 6.18 MB on the wire) at its default
  1 h interval runs ~495 times a month outside the default clinic hours, ~3.1 GB, over the
  budget on its own: a site with rtt, throughput and media stays within it with the media
  target every 6 h (~83 runs, ~0.51 GB; total ~2.9 GB). Reported, not enforced: the daily
  budget is what stops tests.
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
#: a heavy test waits when user traffic is over this share of the contracted rate
DEFER_BUSY_PCT = 20.0
#: ... read from a WAN counter sample no older than this (seconds)
DEFER_MAX_AGE_S = 600.0
#: ... and is retried after about this long (randomised 0.5-1.5x)
DEFER_RETRY_S = 900.0
#: the documented default monthly traffic budget of all tests of one site (MB): see above
MONTHLY_MB = 3000.0


def _db(ctx: Context) -> sqlite3.Connection:
    Path(ctx.state_dir).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(Path(ctx.state_dir) / "budget.sqlite", timeout=10)
    con.execute(
        "CREATE TABLE IF NOT EXISTS usage (site TEXT NOT NULL, day TEXT NOT NULL, "
        "bytes INTEGER NOT NULL, PRIMARY KEY (site, day))"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS traffic (site TEXT NOT NULL, day TEXT NOT NULL, "
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


# --------------------------------------------------------------------------- manners


def user_busy(
    traffic: Iterable[Record],
    now_ms: int,
    line_mbps: dict[str, float],
    *,
    busy_pct: float = DEFER_BUSY_PCT,
    max_age_s: float = DEFER_MAX_AGE_S,
) -> str | None:
    """Why a heavy test should wait (one line), or None: the latest WAN ``if_traffic`` sample
    per direction, no older than ``max_age_s``, over ``busy_pct`` of ``line_mbps[direction]``
    (the contracted rate, {"down": .., "up": ..})."""
    latest: dict[str, Record] = {}
    for t in traffic:
        d = _WAN_DIR.get(t.tags.get("direction", ""))
        if (
            d is None
            or t.measurement != "if_traffic"
            or not t.ok
            or t.fields.get("is_wan") is not True
            or not isinstance(t.fields.get("rate_mbps"), (int, float))
            or now_ms - t.time_ms > max_age_s * 1000
        ):
            continue
        if d not in latest or t.time_ms > latest[d].time_ms:
            latest[d] = t
    for d in ("down", "up"):
        last = latest.get(d)
        line = line_mbps.get(d)
        if last is None or not line:
            continue
        rate = float(last.fields["rate_mbps"])
        if rate > busy_pct / 100 * line:
            age = (now_ms - last.time_ms) / 1000
            return (
                f"link busy: user traffic {rate:.2f} Mbit/s {d} on the WAN {age:.0f} s ago, "
                f"over {busy_pct:g}% of the {line:g} Mbit/s line; heavy test deferred"
            )
    return None


def retry_delay_s(rng: Any = None) -> float:
    """Seconds until a deferred heavy test is tried again (``DEFER_RETRY_S`` x 0.5-1.5)."""
    import random

    return DEFER_RETRY_S * (rng or random).uniform(0.5, 1.5)


def slot_delay_s(wall_s: float, interval_s: float, rng: Any = None) -> float:
    """Seconds from ``wall_s`` (Unix time) to a uniformly random instant of the next slot of
    ``interval_s``; slots are aligned on the wall clock (a 6 h interval: 00-06, 06-12 UTC..)."""
    import math
    import random

    start = (math.floor(wall_s / interval_s) + 1) * interval_s
    return start + (rng or random).uniform(0, interval_s) - wall_s


def record_traffic(ctx: Context, site: str, nbytes: int, now: dt.datetime | None = None) -> None:
    """Add the wire bytes of one test (any test) to the site's traffic for the UTC day."""
    if nbytes <= 0:
        return
    oldest = (_utc(now).date() - dt.timedelta(days=KEEP_DAYS + 31)).isoformat()
    with closing(_db(ctx)) as con, con:
        con.execute(
            "INSERT INTO traffic (site, day, bytes) VALUES (?, ?, ?) "
            "ON CONFLICT(site, day) DO UPDATE SET bytes = bytes + excluded.bytes",
            (site, _day(now), int(nbytes)),
        )
        con.execute("DELETE FROM traffic WHERE day < ?", (oldest,))


def traffic_month(ctx: Context, site: str, now: dt.datetime | None = None) -> int:
    """Bytes of all tests of ``site`` in the calendar month (UTC) of ``now``."""
    month = _day(now)[:7]
    with closing(_db(ctx)) as con:
        row = con.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM traffic WHERE site=? AND substr(day, 1, 7)=?",
            (site, month),
        ).fetchone()
    return int(row[0])


#: Header bytes of one packet on the wire: Ethernet II (14; no preamble, FCS or gap), IPv4
#: (20; an IPv6 path adds 20 more), UDP (8), ICMP echo (8).
ETHERNET, IPV4, UDP, ICMP = 14, 20, 8, 8
#: headers of one UDP (or ICMP echo) packet: Ethernet + IPv4 + UDP
PACKET_OVERHEAD = ETHERNET + IPV4 + UDP


def field_total(records: Iterable[Record], name: str) -> float:
    """Sum of the numeric field ``name`` over ``records`` (absent, text or bool: 0)."""
    total = 0.0
    for r in records:
        v = r.fields.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            total += float(v)
    return total


def tcp_traffic(records: Iterable[Record], field: str = "bytes") -> int:
    """Wire bytes of TCP transfers whose payload bytes are ``field``: x 1/0.956 (the TCP/IP
    and Ethernet headers of 1514-byte frames carrying 1448 B each; the reverse direction's
    ACKs, 2-4 % more, are not counted)."""
    return int(field_total(records, field) * GOODPUT_TO_WIRE)


def tcp_bytes_traffic(_spec: Any, records: Sequence[Record]) -> int:
    """``Plugin.traffic`` of a TCP test whose records declare ``bytes`` (payload moved)."""
    return tcp_traffic(records)


def echo_traffic(
    records: Iterable[Record], payload: int, overhead: int = PACKET_OVERHEAD, field: str = "sent"
) -> int:
    """Wire bytes of an echo test: ``field`` packets sent x 2 (there and back) x (``payload``
    + ``overhead`` header bytes)."""
    return int(field_total(records, field) * 2 * (payload + overhead))


def wire_bytes(plugin: Plugin, spec: Any, records: Sequence[Record]) -> int:
    """A test's traffic, as the plugin declares it (``Plugin.traffic``; 0 for a plugin that
    declares none: collectors)."""
    if plugin.traffic is None:
        return 0
    return max(0, int(plugin.traffic(spec, records)))
