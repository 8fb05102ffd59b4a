"""The central store's lifecycle on InfluxDB 1.x: database, retention policies, downsampling.

``netready store init`` (``init``) sets up, idempotently:

- the database;
- a **raw** retention policy (default ``raw``, 30 days), made the database's DEFAULT so the
  agents' writes (no ``rp`` parameter) land in it;
- an **hourly** retention policy (default ``hourly``, 730 days) for the downsampled series;
- one continuous query per downsampled measurement (``DOWNSAMPLED``): every hour, per series
  (``GROUP BY time(1h), *`` keeps every tag, ``result`` included), the nearest-rank
  percentiles ``PCTS``, the minimum and the count of each field the report reads, the count of failed
  runs (``reason_n``), written into the hourly policy under the same measurement name.

A second run changes nothing and says so. InfluxDB 1.x cannot alter a continuous query: its
name carries a hash of its definition (``netready_hourly_rtt_1a2b3c4d``), so an unchanged one is
recognised by name and a changed one is dropped and created again. ``backfill`` runs the same
``SELECT ... INTO`` over a past range (after ``init`` on a database that already holds data, or
after an outage longer than the continuous query's ``RESAMPLE FOR``).

What the long-window report reads from the hourly series (``reports/query.py``) and the
approximation it makes are described in docs/scaling.md. InfluxDB 2.x/3.x have buckets and tasks
instead (docs/scaling.md gives the equivalents); this module speaks InfluxQL DDL only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from netready.errors import ConfigError, StoreError
from netready.influx import InfluxV1, quote_ident

#: measurement -> the fields the readiness report aggregates (percentiles and counts).
DOWNSAMPLED: Mapping[str, tuple[str, ...]] = {
    "rtt": ("rtt_p50_ms", "jitter_rfc3550_ms", "loss_pct", "burst_loss_200ms_pct", "reorder_pct"),
    "throughput": ("goodput_mbps",),
    "media": ("mos", "loss_pct", "capacity_calls"),
}
#: the percentiles kept per field and hour (the rubric's 10th and 95th, and the median)
PCTS: tuple[int, ...] = (10, 50, 95)
#: count of failed runs per hour and series (failed points carry a ``reason``)
FAILED_N = "reason_n"
#: the downsampling interval
BUCKET = "1h"
BUCKET_MS = 3_600_000


def pct_field(field: str, pct: float) -> str:
    """Name of the hourly field holding the ``pct`` percentile of ``field``."""
    p = float(pct)
    if p not in {float(x) for x in PCTS}:
        raise StoreError(
            f"the hourly series keep percentiles {', '.join(map(str, PCTS))} of {field}, "
            f"not {pct:g}"
        )
    return f"{field}_p{int(p)}"


def min_field(field: str) -> str:
    """Name of the hourly field holding the smallest raw value of ``field``. Readers take a
    low percentile (p < 50) over hours from it: InfluxQL's ``PERCENTILE(f, 10)`` is null for an
    hour of fewer than 5 points (its nearest rank is 0), which is every hour at the default
    throughput and media cadences, where the minimum is the clamped nearest-rank value."""
    return f"{field}_min"


def count_field(field: str) -> str:
    """Name of the hourly field holding the number of raw points of ``field``."""
    return f"{field}_n"


_DUR = re.compile(r"^(\d+)(w|d|h|m|s)$")
_UNIT_S = {"w": 604_800, "d": 86_400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """``30d``, ``730d``, ``104w``, ``1h`` -> seconds (InfluxQL duration units); ConfigError."""
    m = _DUR.match(text.strip())
    if not m:
        raise ConfigError(f"duration {text!r}: use a whole number and w, d, h, m or s (e.g. 30d)")
    s = int(m.group(1)) * _UNIT_S[m.group(2)]
    if s < 3600:
        raise ConfigError(f"duration {text!r}: InfluxDB's shortest retention is 1h")
    return s


_GO_DUR = re.compile(r"(\d+)(h|m|s)")


def go_duration_s(text: str) -> int:
    """InfluxDB's ``720h0m0s`` -> seconds; ``0s`` (infinite) -> 0."""
    return sum(int(n) * _UNIT_S[u] for n, u in _GO_DUR.findall(text))


@dataclass(frozen=True)
class Plan:
    """What ``init`` sets up."""

    database: str
    raw_rp: str = "raw"
    raw_duration: str = "30d"
    hourly_rp: str = "hourly"
    hourly_duration: str = "730d"
    #: each run recomputes this much of the past (points that arrive later need ``backfill``)
    resample_for: str = "6h"

    def __post_init__(self) -> None:
        for name in (self.raw_rp, self.hourly_rp):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"retention policy name {name!r}: letters, digits and _ only")
        if self.raw_rp == self.hourly_rp:
            raise ConfigError("the raw and hourly retention policies need different names")
        parse_duration(self.raw_duration)
        parse_duration(self.hourly_duration)
        parse_duration(self.resample_for)

    def select(self, measurement: str, where: str = "") -> str:
        """The downsampling ``SELECT ... INTO`` for one measurement."""
        cols = []
        for f in DOWNSAMPLED[measurement]:
            q = quote_ident(f)
            cols += [f"PERCENTILE({q}, {p}) AS {quote_ident(pct_field(f, p))}" for p in PCTS]
            cols.append(f"MIN({q}) AS {quote_ident(min_field(f))}")
            cols.append(f"COUNT({q}) AS {quote_ident(count_field(f))}")
        cols.append(f'COUNT("reason") AS {quote_ident(FAILED_N)}')
        db, m = quote_ident(self.database), quote_ident(measurement)
        return (
            f"SELECT {', '.join(cols)} INTO {db}.{quote_ident(self.hourly_rp)}.{m} "
            f"FROM {db}.{quote_ident(self.raw_rp)}.{m}{where} GROUP BY time({BUCKET}), *"
        )

    def cq_name(self, measurement: str) -> str:
        h = hashlib.sha256(f"{self.select(measurement)} {self.resample_for}".encode()).hexdigest()[
            :8
        ]
        return f"netready_{self.hourly_rp}_{measurement}_{h}"

    def cq(self, measurement: str) -> str:
        return (
            f"CREATE CONTINUOUS QUERY {quote_ident(self.cq_name(measurement))} ON "
            f"{quote_ident(self.database)} RESAMPLE EVERY {BUCKET} FOR {self.resample_for} "
            f"BEGIN {self.select(measurement)} END"
        )


@dataclass(frozen=True)
class Change:
    action: str  # created | altered | replaced | dropped | unchanged
    kind: str  # database | retention policy | continuous query
    name: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.action:9} {self.kind} {self.name}{tail}"


def _ddl(client: InfluxV1, q: str) -> None:
    client.query(q, epoch=None)


def _rps(client: InfluxV1, db: str) -> dict[str, tuple[int, bool]]:
    """name -> (duration s, default) of the database's retention policies."""
    out = {}
    for res in client.query(f"SHOW RETENTION POLICIES ON {quote_ident(db)}", epoch=None):
        for row in res.dicts():
            out[str(row["name"])] = (go_duration_s(str(row["duration"])), bool(row["default"]))
    return out


def _cqs(client: InfluxV1, db: str) -> dict[str, str]:
    """name -> query of the database's continuous queries."""
    return {
        str(row["name"]): str(row["query"])
        for res in client.query("SHOW CONTINUOUS QUERIES", epoch=None)
        if res.name == db
        for row in res.dicts()
    }


def init(client: InfluxV1, plan: Plan) -> list[Change]:
    """Create or bring up to date the database, both policies and the continuous queries."""
    db, q = plan.database, quote_ident(plan.database)
    changes: list[Change] = []
    dbs = {str(r[0]) for res in client.query("SHOW DATABASES", epoch=None) for r in res.values}
    if db in dbs:
        changes.append(Change("unchanged", "database", db))
    else:
        _ddl(client, f"CREATE DATABASE {q}")
        changes.append(Change("created", "database", db))
    rps = _rps(client, db)
    for name, dur, default in (
        (plan.raw_rp, plan.raw_duration, True),
        (plan.hourly_rp, plan.hourly_duration, False),
    ):
        want = parse_duration(dur)
        tail = " DEFAULT" if default else ""
        what = f"{dur}{', default' if default else ''}"
        if name not in rps:
            _ddl(
                client,
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {q} DURATION {dur} "
                f"REPLICATION 1{tail}",
            )
            changes.append(Change("created", "retention policy", name, what))
        elif rps[name][0] != want or (default and not rps[name][1]):
            _ddl(client, f"ALTER RETENTION POLICY {quote_ident(name)} ON {q} DURATION {dur}{tail}")
            old_s, old_default = rps[name]
            old = f"{old_s // 86400}d" if old_s and old_s % 86400 == 0 else f"{old_s}s"
            was = f"{old if old_s else 'infinite'}{', default' if old_default else ''}"
            changes.append(Change("altered", "retention policy", name, f"{was} -> {what}"))
        else:
            changes.append(Change("unchanged", "retention policy", name, what))
    have = _cqs(client, db)
    wanted = {plan.cq_name(m): m for m in DOWNSAMPLED}
    prefix = f"netready_{plan.hourly_rp}_"
    for name in sorted(have):
        if name.startswith(prefix) and name not in wanted:
            _ddl(client, f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {q}")
            changes.append(Change("dropped", "continuous query", name, "definition changed"))
    for name, m in wanted.items():
        if name in have:
            changes.append(Change("unchanged", "continuous query", name, m))
        else:
            _ddl(client, plan.cq(m))
            changes.append(Change("created", "continuous query", name, f"{m} -> {plan.hourly_rp}"))
    return changes


def backfill(
    client: InfluxV1,
    plan: Plan,
    t0_ms: int,
    t1_ms: int,
    *,
    measurements: Iterable[str] | None = None,
    chunk_ms: int = 86_400_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run the downsampling over [t0, t1) (whole hours), a day per statement; returns the
    hourly points written."""
    ms = list(measurements or DOWNSAMPLED)
    for m in ms:
        if m not in DOWNSAMPLED:
            raise ConfigError(f"{m!r} is not downsampled (only {', '.join(DOWNSAMPLED)})")
    a = t0_ms - t0_ms % BUCKET_MS
    b = t1_ms + (-t1_ms) % BUCKET_MS
    steps = [(t, min(t + chunk_ms, b)) for t in range(a, b, chunk_ms)]
    written, done = 0, 0
    for m in ms:
        for s, e in steps:
            where = f" WHERE time >= {s}ms AND time < {e}ms"
            for res in client.query(plan.select(m, where)):
                for row in res.dicts():
                    written += int(row.get("written") or 0)
            done += 1
            if progress:
                progress(done, len(ms) * len(steps))
    return written


@dataclass(frozen=True)
class Layout:
    """What a reader finds on the server: where the raw points are, how long they are kept,
    and which measurements have hourly series (and in which policy)."""

    raw_rp: str | None  # None: the database's default policy
    raw_s: int  # 0: kept for ever
    hourly: Mapping[str, str]  # measurement -> hourly policy

    def horizon_ms(self, now_ms: int) -> int | None:
        """The oldest time the raw policy still holds (None: everything)."""
        return now_ms - self.raw_s * 1000 if self.raw_s else None


_INTO = re.compile(r'INTO\s+"?[^".]+"?\."?(\w+)"?\."?(\w+)"?\s+FROM', re.I)


def discover(client: InfluxV1, database: str, write_rp: str | None = None) -> Layout:
    """The layout of ``database`` (one ``SHOW RETENTION POLICIES``, one ``SHOW CONTINUOUS
    QUERIES``). ``write_rp`` is the policy the agents write to (the inventory's
    ``store.retention_policy``; None: the default)."""
    rps = _rps(client, database)
    raw = write_rp or next((n for n, (_d, dflt) in rps.items() if dflt), None)
    raw_s = rps.get(raw or "", (0, False))[0]
    hourly: dict[str, str] = {}
    for name, query in _cqs(client, database).items():
        m = _INTO.search(query)
        if name.startswith("netready_") and m and m.group(1) in rps:
            hourly[m.group(2)] = m.group(1)
    return Layout(write_rp, raw_s, hourly)


def _client(inventory_path: str, database: str | None) -> tuple[InfluxV1, str, str | None]:
    from netready.inventory import load

    cfg = load(inventory_path).store
    if cfg.kind != "influxdb_v1":
        raise ConfigError(
            f"{inventory_path}: store kind {cfg.kind}: `netready store` sets up InfluxDB 1.x; "
            "for 2.x/3.x create the buckets and tasks in docs/scaling.md"
        )
    if database:
        cfg = cfg.model_copy(update={"database": database})
    return InfluxV1(cfg), cfg.database, cfg.retention_policy


def store_init(inventory_path: str, database: str | None = None, **plan: str) -> list[Change]:
    """``netready store init``: ``init`` on the inventory's InfluxDB (``plan``: ``Plan``'s
    options; the raw policy defaults to the inventory's ``store.retention_policy``)."""
    client, db, write_rp = _client(inventory_path, database)
    if write_rp and "raw_rp" not in plan:
        plan["raw_rp"] = write_rp
    with client:
        return init(client, Plan(db, **plan))


def store_backfill(
    inventory_path: str,
    t0_ms: int,
    t1_ms: int,
    database: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    **plan: str,
) -> int:
    """``netready store backfill``: ``backfill`` [t0, t1) on the inventory's InfluxDB."""
    client, db, write_rp = _client(inventory_path, database)
    if write_rp and "raw_rp" not in plan:
        plan["raw_rp"] = write_rp
    with client:
        return backfill(client, Plan(db, **plan), t0_ms, t1_ms, progress=progress)
