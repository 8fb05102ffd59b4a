"""The embedded store: the spool file's schema, and the read side of its ``points`` table.

This module owns the SQLite schema of the spool file (``TABLES``, ``INDEXES``) and its
version (``SCHEMA_VERSION`` in ``PRAGMA user_version``, ``MIGRATIONS`` as numbered steps,
``migrate``): ``spool.py`` creates or migrates the file with it and writes the tables, and every query that reads the embedded store for a
report is written here (``SqliteStore``), in SQL with ``json_extract`` over the JSON ``tags``
and ``fields`` columns and window functions (``ROW_NUMBER() OVER (PARTITION BY ...)``).
The column names the reader relies on (``READS``) are checked against the schema as SQLite
itself reads it (``POINTS_COLUMNS``): when a spool is opened for reading, and in
tests/test_report_store.py, which records every column the report queries touch.

``points``: one row per record — measurement, time (ms since the epoch, UTC), the ``site``
tag (indexed with measurement and time), the tags and fields as JSON objects, and
``held_ms`` (the spool's clock when it was committed, for the age quota).

The query vocabulary (``Agg``, ``Sessions``, ``AggRows``, ``nearest_rank``) is shared with the
InfluxDB back end in ``reports/query.py``, so both answer the same questions with the same
arithmetic (see that module for nearest-rank percentiles and clinic sessions).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netready.errors import SpoolError, StoreError
from netready.records import Record

# ----------------------------------------------------------------------------- the schema

TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enq_ms INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    line TEXT NOT NULL,
    held_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dead_ms INTEGER NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    measurement TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    site TEXT,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    held_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
INDEXES = """
DROP INDEX IF EXISTS outbox_enq;
CREATE INDEX IF NOT EXISTS points_msite ON points (measurement, site, time_ms);
CREATE INDEX IF NOT EXISTS points_time ON points (time_ms);
CREATE INDEX IF NOT EXISTS outbox_held ON outbox (held_ms);
CREATE INDEX IF NOT EXISTS points_held ON points (held_ms);
"""


# ----------------------------------------------------------------------------- versions

#: The spool file's schema version, kept in its header (``PRAGMA user_version``). A fresh
#: spool is made at this version from ``TABLES``; an older one is brought to it by the
#: numbered steps of ``MIGRATIONS``, in order, in one transaction (all or nothing); a newer
#: one (a later netready's) is refused for writing rather than written wrongly. Version 0 is a
#: spool from before versions (netready 0.1.0 development), with or without the spool clock.
SCHEMA_VERSION = 1


def _statements(sql: str) -> list[str]:
    """The statements of a DDL script (ours: no ``;`` inside one). ``executescript`` would
    commit first, and a migration runs inside its transaction."""
    return [x.strip() for x in sql.split(";") if x.strip()]


def _columns_of(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


def _v1_spool_clock(con: sqlite3.Connection) -> None:
    """0 -> 1: the spool's own clock. ``held_ms`` (the clock when a row was committed, for
    the age quota) on ``outbox`` and ``points``; the ``outbox_enq`` index goes (``INDEXES``
    drops it: age is held time now). Unversioned spools may already have the column."""
    for table in ("outbox", "points"):
        if "held_ms" not in _columns_of(con, table):
            con.execute(f"ALTER TABLE {table} ADD COLUMN held_ms INTEGER NOT NULL DEFAULT 0")


#: (version it brings the spool to, what it changes, the step). Append only: a step is never
#: edited once released; the next change is version 2, with a test that migrates a spool made
#: with the schema before it (tests/test_spool_schema.py keeps each old schema's text).
MIGRATIONS: tuple[tuple[int, str, Any], ...] = (
    (1, "the spool clock (held_ms on outbox and points)", _v1_spool_clock),
)


def schema_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, path: str | Path) -> list[str]:
    """Bring the spool behind ``con`` (autocommit mode) to ``SCHEMA_VERSION``: create what is
    missing, run the steps it has not had, make the indexes, set the version; one
    transaction. Returns what was done, one line per step (empty for a current or fresh
    spool). ``SpoolError`` for a spool of a newer schema."""
    version = schema_version(con)
    if version > SCHEMA_VERSION:
        raise SpoolError(
            f"spool {path} has schema version {version}, newer than this netready's "
            f"({SCHEMA_VERSION}): upgrade netready, or move the file aside"
        )
    con.execute("BEGIN IMMEDIATE")
    try:
        fresh = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() is None
        for stmt in _statements(TABLES):
            con.execute(stmt)
        done: list[str] = []
        if not fresh:
            for to, what, step in MIGRATIONS:
                if to > version:
                    step(con)
                    done.append(f"schema {to - 1} -> {to}: {what}")
        for stmt in _statements(INDEXES):
            con.execute(stmt)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return done


def _columns(table: str) -> tuple[str, ...]:
    """A table's columns in ``TABLES``, as SQLite reads the DDL (not parsed by hand)."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(TABLES)
        return tuple(r[1] for r in con.execute(f"PRAGMA table_info({table})"))
    finally:
        con.close()


#: The columns of ``points``, in order.
POINTS_COLUMNS: tuple[str, ...] = _columns("points")
#: The spool's insert of one record: every column but ``id``, in ``POINTS_COLUMNS`` order.
INSERT_POINT = (
    f"INSERT INTO points({', '.join(c for c in POINTS_COLUMNS if c != 'id')}) "
    f"VALUES ({', '.join('?' for c in POINTS_COLUMNS if c != 'id')})"
)
#: The columns of ``points`` the report queries below read (tests/test_report_store.py
#: records what they really read and compares).
READS: tuple[str, ...] = ("measurement", "time_ms", "site", "tags", "fields")


def read_records(
    db: sqlite3.Connection,
    measurement: str | None = None,
    site: str | None = None,
    since_ms: int | None = None,
) -> list[Record]:
    """Records from the embedded store, oldest first (for small reads: tests, `spool dump`)."""
    q = "SELECT measurement, time_ms, tags, fields FROM points WHERE 1=1"
    args: list[object] = []
    if measurement:
        q += " AND measurement = ?"
        args.append(measurement)
    if site:
        q += " AND site = ?"
        args.append(site)
    if since_ms is not None:
        q += " AND time_ms >= ?"
        args.append(since_ms)
    q += " ORDER BY time_ms, id"
    rows = list(db.execute(q, args))
    return [Record(m, json.loads(t), json.loads(f), ts) for m, ts, t, f in rows]


# ----------------------------------------------------------------------------- the questions

#: site -> list of sessions [(t0_ms, t1_ms)]; the session id is its t0.
Sessions = Mapping[str, Sequence[tuple[int, int]]]
#: (site, group tag value or "", session t0) -> alias -> value
AggRows = dict[tuple[str, str, int], dict[str, float | None]]


@dataclass(frozen=True)
class Agg:
    """One aggregate: ``pct`` None means COUNT of the field, else the nearest-rank percentile."""

    alias: str
    field: str
    pct: float | None = None


def nearest_rank(n: int, pct: float) -> int:
    """The 1-based rank InfluxQL's PERCENTILE picks (clamped to 1..n)."""
    return max(1, min(n, int(n * pct / 100.0 + 0.5)))


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(s: str) -> str:
    """A field or tag name safe to write into a query (SQL JSON path or InfluxQL)."""
    if not _NAME.match(s):
        raise StoreError(f"report query: bad field or tag name {s!r}")
    return s


#: Where collectors report the access technology the router sees (a tag or a field).
DETECTED_TECH_MEASUREMENTS = ("dsl_line", "if_traffic")


def empty(aggs: Sequence[Agg], vals: Mapping[str, float | None]) -> bool:
    """No points of these fields in the group (the stores differ in whether they say so)."""
    counts = [vals[a.alias] for a in aggs if a.pct is None]
    if counts:
        return not any(counts)
    return all(vals[a.alias] is None for a in aggs)


# ----------------------------------------------------------------------------- the reader


class SqliteStore:
    """The embedded store: the spool file's ``points`` table, read-only."""

    def __init__(self, path: str | Path):
        p = Path(path)
        if not p.exists():
            raise StoreError(f"spool {p}: file not found (run the agent first, or pass --spool)")
        try:
            self.db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
            self.db.execute("PRAGMA busy_timeout=30000")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(points)")}
        except sqlite3.Error as e:
            raise StoreError(f"spool {p}: cannot read the embedded store: {e}") from None
        missing = [c for c in READS if c not in have]
        if missing:
            self.db.close()
            what = "no points table" if not have else f"no column {', '.join(missing)} in points"
            raise StoreError(f"spool {p}: cannot read the embedded store: {what}")
        self.path = p
        self.db.execute("ATTACH DATABASE ':memory:' AS w")
        self.db.execute("CREATE TABLE w.sess (site TEXT, t0 INTEGER, t1 INTEGER)")

    def close(self) -> None:
        self.db.close()

    # Every join below is ``w.sess s CROSS JOIN points p``: CROSS JOIN makes SQLite loop over
    # the small session table and range-search the (measurement, site, time_ms) index; a plain
    # JOIN let the planner scan every point of the measurement against every session instead
    # (1,000 sites: 26 s instead of well under a second).

    def _load_sessions(self, sessions: Sessions) -> None:
        self.db.execute("DELETE FROM w.sess")
        self.db.executemany(
            "INSERT INTO w.sess VALUES (?, ?, ?)",
            [(s, t0, t1) for s, lst in sessions.items() for t0, t1 in lst],
        )

    def _query(self, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return list(self.db.execute(sql, args))
        except sqlite3.Error as e:
            raise StoreError(f"spool {self.path}: report query failed: {e}") from None

    @staticmethod
    def _aggregate_sql(
        aggs: Sequence[Agg], by: str | None, exclude: Mapping[str, str] | None
    ) -> str:
        """Per (site, session, group): each field's values ranked, then COUNT or the value at
        the nearest rank (as InfluxQL's PERCENTILE) of each aggregate."""
        fields = sorted({check_name(a.field) for a in aggs})
        col = {f: f"v{i}" for i, f in enumerate(fields)}
        grp = f"json_extract(p.tags, '$.{check_name(by)}')" if by else "''"
        base_cols = ", ".join(f"json_extract(p.fields, '$.{f}') AS {col[f]}" for f in fields)
        ranks = ", ".join(
            f"COUNT({col[f]}) OVER w AS n_{col[f]}, "
            f"ROW_NUMBER() OVER (PARTITION BY site, sid, g ORDER BY {col[f]} NULLS LAST) "
            f"AS r_{col[f]}"
            for f in fields
        )
        outs = []
        for a in aggs:
            c = col[a.field]
            if a.pct is None:
                outs.append(f"COUNT({c})")
            else:
                k = f"MAX(1, MIN(n_{c}, CAST(n_{c} * {float(a.pct)!r} / 100.0 + 0.5 AS INTEGER)))"
                outs.append(f"MAX(CASE WHEN r_{c} = {k} THEN {c} END)")
        not_sql = "".join(
            f" AND coalesce(json_extract(p.tags, '$.{check_name(k)}'), '') != ?"
            for k in (exclude or {})
        )
        return f"""
            WITH base AS (
                SELECT p.site AS site, s.t0 AS sid, coalesce({grp}, '') AS g, {base_cols}
                FROM w.sess s CROSS JOIN points p
                  ON p.measurement = ? AND p.site = s.site
                 AND p.time_ms >= s.t0 AND p.time_ms < s.t1
                WHERE coalesce(json_extract(p.tags, '$.result'), 'ok') = 'ok'{not_sql}
            ),
            ranked AS (
                SELECT *, {ranks} FROM base WINDOW w AS (PARTITION BY site, sid, g)
            )
            SELECT site, g, sid, {", ".join(outs)} FROM ranked GROUP BY site, g, sid
        """

    def aggregate(
        self,
        measurement: str,
        aggs: Sequence[Agg],
        sessions: Sessions,
        by: str | None = None,
        exclude: Mapping[str, str] | None = None,
    ) -> AggRows:
        """Per (site, ``by`` tag value, session): the aggregates over valid points, leaving out
        points whose tag equals a value in ``exclude``."""
        sql = self._aggregate_sql(aggs, by, exclude)
        self._load_sessions(sessions)
        out: AggRows = {}
        for row in self._query(sql, (measurement, *(exclude or {}).values())):
            site, g, sid, *vals = row
            d = {a.alias: v for a, v in zip(aggs, vals, strict=True)}
            if not empty(aggs, d):
                out[(site, g, sid)] = d
        return out

    def _sites(self, sites: Iterable[str]) -> None:
        self._load_sessions({s: [(0, 0)] for s in sites})

    def failures(
        self, measurement: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, dict[str, int]]:
        """Per site, how many records of ``measurement`` failed, by ``result``."""
        self._sites(sites)
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for site, res, n in self._query(
            """SELECT p.site, json_extract(p.tags, '$.result') AS r, COUNT(*)
               FROM w.sess s CROSS JOIN points p ON p.measurement = ? AND p.site = s.site
                AND p.time_ms >= ? AND p.time_ms < ?
               WHERE r IS NOT NULL AND r NOT IN ('ok', '')
                 AND json_extract(p.fields, '$.reason') IS NOT NULL
               GROUP BY p.site, r""",
            (measurement, t0, t1),
        ):
            out[site][res] = n
        return dict(out)

    def latest(
        self, measurement: str, field: str, sites: Iterable[str], t0: int, t1: int
    ) -> dict[str, int]:
        """Per site, the time of the newest valid record of ``measurement`` with ``field``."""
        self._sites(sites)
        f = check_name(field)
        rows = self._query(
            f"""SELECT p.site, MAX(p.time_ms) FROM w.sess s CROSS JOIN points p
            ON p.measurement = ? AND p.site = s.site AND p.time_ms >= ? AND p.time_ms < ?
            WHERE coalesce(json_extract(p.tags, '$.result'), 'ok') = 'ok'
              AND json_extract(p.fields, '$.{f}') IS NOT NULL
            GROUP BY p.site""",
            (measurement, t0, t1),
        )
        return {site: int(t) for site, t in rows}

    def detected_tech(self, sites: Iterable[str], t0: int, t1: int) -> dict[str, str]:
        """The newest ``detected_tech`` (tag or field) a collector reported per site."""
        self._sites(sites)
        ph = ",".join("?" * len(DETECTED_TECH_MEASUREMENTS))
        rows = self._query(
            f"""SELECT site, tech FROM (
                  SELECT p.site AS site,
                         coalesce(json_extract(p.tags, '$.detected_tech'),
                                  json_extract(p.fields, '$.detected_tech')) AS tech,
                         ROW_NUMBER() OVER (PARTITION BY p.site ORDER BY p.time_ms DESC) AS rn
                  FROM w.sess s CROSS JOIN points p ON p.site = s.site
                   AND p.measurement IN ({ph}) AND p.time_ms >= ? AND p.time_ms < ?
                  WHERE tech IS NOT NULL AND tech NOT IN ('', 'unknown')
                ) WHERE rn = 1""",
            (*DETECTED_TECH_MEASUREMENTS, t0, t1),
        )
        return {str(site): str(t) for site, t in rows}

    def weekly_latest(
        self,
        measurement: str,
        fields: Sequence[str],
        sites: Iterable[str],
        t0: int,
        t1: int,
        by: str,
        match: Mapping[str, str],
    ) -> WeekRows:
        """Per site, week and ``by`` tag value, each field's newest value (``weekly_latest``)."""
        return weekly_latest(self, measurement, fields, sites, t0, t1, by, match)


# ----------------------------------------------------------------------------- weeks

#: Weeks start on Monday 00:00 UTC: the epoch (1970-01-01) was a Thursday, 4 days later.
WEEK_MS = 7 * 86_400_000
WEEK_OFFSET_MS = 4 * 86_400_000


def week_start(t_ms: int) -> int:
    """The start (Monday 00:00 UTC, ms) of the week ``t_ms`` falls in."""
    return (t_ms - WEEK_OFFSET_MS) // WEEK_MS * WEEK_MS + WEEK_OFFSET_MS


#: (site, week start ms, group tag value) -> field -> its newest value in that week
WeekRows = dict[tuple[str, int, str], dict[str, Any]]


def weekly_latest(
    store: SqliteStore,
    measurement: str,
    fields: Sequence[str],
    sites: Iterable[str],
    t0: int,
    t1: int,
    by: str,
    match: Mapping[str, str],
) -> WeekRows:
    """Per site, week (``week_start``) and value of tag ``by``: the newest non-null value of
    each field among the records whose tags equal ``match`` (InfluxQL's ``LAST(f) ... GROUP
    BY time(7d, 4d), "site", by``, which ``reports/query.py`` runs on InfluxDB)."""
    store._sites(sites)
    fs = [check_name(f) for f in fields]
    g = f"coalesce(json_extract(p.tags, '$.{check_name(by)}'), '')"
    wk = f"((p.time_ms - {WEEK_OFFSET_MS}) / {WEEK_MS}) * {WEEK_MS} + {WEEK_OFFSET_MS}"
    vals = ", ".join(
        f"FIRST_VALUE(json_extract(p.fields, '$.{f}')) OVER (PARTITION BY p.site, {wk}, {g} "
        f"ORDER BY json_extract(p.fields, '$.{f}') IS NULL, p.time_ms DESC) AS v{i}"
        for i, f in enumerate(fs)
    )
    cond = "".join(f" AND json_extract(p.tags, '$.{check_name(k)}') = ?" for k in sorted(match))
    rows = store._query(
        f"""SELECT site, wk, g, {", ".join(f"MAX(v{i})" for i in range(len(fs)))} FROM (
              SELECT p.site AS site, {wk} AS wk, {g} AS g, {vals}
              FROM w.sess s CROSS JOIN points p ON p.measurement = ? AND p.site = s.site
               AND p.time_ms >= ? AND p.time_ms < ?
              WHERE 1 = 1{cond}
            ) GROUP BY site, wk, g""",
        (measurement, t0, t1, *(match[k] for k in sorted(match))),
    )
    out: WeekRows = {}
    for site, w, gv, *vs in rows:
        d = {f: v for f, v in zip(fs, vs, strict=True) if v is not None}
        if d:
            out[(str(site), int(w), str(gv))] = d
    return out
