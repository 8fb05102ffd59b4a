"""The durable local spool (SQLite, WAL) — and the embedded default store.

Every record is committed here before anything else happens to it.

Tables:
- ``outbox``: records waiting to be shipped, as line protocol, oldest first. Rows are deleted
  only after the central store acknowledged them (at-least-once; InfluxDB writes are
  idempotent, so a re-sent point overwrites itself).
- ``deadletter``: points the server rejected as malformed, isolated by splitting batches.
- ``points``: the embedded store, used when no central store is configured. Reports query it
  with SQL (``json_extract`` over ``fields``).
- ``counters``: enqueued, shipped, dead_lettered, dropped (evicted by quota), kept forever;
  and the gauge ``bytes_held`` (outbox + points), kept in step by every insert and delete so
  the size quota costs one row read per enqueue, not a scan.
- ``meta``: last_ship_ms, last_error.

Quotas: ``max_bytes`` over outbox + points and ``max_age_s``; eviction is oldest-first and every
evicted record is counted in ``dropped`` (reported by the agent's ``agent`` measurement).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from netready.errors import StoreError
from netready.influx import encode
from netready.records import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enq_ms INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    line TEXT NOT NULL
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
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_msite ON points (measurement, site, time_ms);
CREATE INDEX IF NOT EXISTS points_time ON points (time_ms);
CREATE INDEX IF NOT EXISTS outbox_enq ON outbox (enq_ms);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

COUNTERS = ("enqueued", "shipped", "dead_lettered", "dropped")
#: Gauge kept in ``counters``: bytes held in outbox + points, so quota checks are O(1).
HELD = "bytes_held"
AGE_SWEEP_S = 60.0  # the age quota is swept at most this often from enqueue()


@dataclass(frozen=True)
class SpoolStats:
    pending: int
    pending_bytes: int
    oldest_pending_ms: int | None
    points: int
    enqueued: int
    shipped: int
    dead_lettered: int
    dropped: int
    last_ship_ms: int | None
    last_error: str | None
    path: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Spool:
    """A spool file. Open one per process; SQLite serialises writers across processes.

    ``embedded=True`` also keeps every record in ``points`` (the embedded store);
    ``ship=True`` puts every record in ``outbox`` for the shipper.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ship: bool = True,
        embedded: bool = False,
        max_bytes: int = 200 * 1024 * 1024,
        max_age_s: float = 30 * 86400,
        synchronous: str = "FULL",
    ):
        self.path = Path(path)
        self.ship = ship
        self.embedded = embedded
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._last_age_sweep = float("-inf")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                str(self.path), timeout=30, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.db.executescript(SCHEMA)
            if not self.db.execute("SELECT 1 FROM counters WHERE name = ?", (HELD,)).fetchone():
                # first open (or a spool from before the gauge): count once
                self.db.execute(
                    "INSERT INTO counters(name, value) VALUES (?, ?)", (HELD, self._bytes(self.db))
                )
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"spool {self.path}: cannot open: {e}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"spool {self.path}: {e}") from None
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _bump(self, db: sqlite3.Connection, name: str, n: int) -> None:
        if n:
            db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    # ------------------------------------------------------------------ writing

    def enqueue(self, records: Iterable[Record]) -> int:
        """Commit records durably (one transaction). Returns how many were added.

        Records that cannot be written as line protocol raise ``LineProtocolError`` before
        anything is committed: that is a bug in the probe, not something to retry.
        """
        recs = list(records)
        if not recs:
            return 0
        now = int(time.time() * 1000)
        lines = [encode(r) for r in recs] if self.ship else []
        held = sum(len(ln) for ln in lines)
        with self._tx() as db:
            if self.ship:
                db.executemany(
                    "INSERT INTO outbox(enq_ms, time_ms, line) VALUES (?, ?, ?)",
                    [(now, r.time_ms, ln) for r, ln in zip(recs, lines, strict=True)],
                )
            if self.embedded:
                rows = [
                    (
                        r.measurement,
                        r.time_ms,
                        r.tags.get("site"),
                        json.dumps(dict(r.tags), ensure_ascii=False),
                        json.dumps(dict(r.fields), ensure_ascii=False),
                    )
                    for r in recs
                ]
                db.executemany(
                    "INSERT INTO points(measurement, time_ms, site, tags, fields) VALUES (?,?,?,?,?)",
                    rows,
                )
                held += sum(len(t) + len(f) for *_, t, f in rows)
            self._bump(db, "enqueued", len(recs))
            self._bump(db, HELD, held)
        due = time.monotonic() - self._last_age_sweep >= AGE_SWEEP_S
        self._enforce(sweep_age=due)
        return len(recs)

    def enforce_quota(self) -> int:
        """Evict oldest-first beyond the age and size quotas; returns records evicted."""
        return self._enforce(sweep_age=True)

    def _delete(
        self, db: sqlite3.Connection, table: str, where: str, args: Sequence[object]
    ) -> int:
        """Delete rows, keeping the bytes-held gauge true; returns rows deleted."""
        size = "length(line)" if table == "outbox" else "length(tags) + length(fields)"
        freed = db.execute(
            f"SELECT coalesce(sum({size}), 0) FROM {table} WHERE {where}", args
        ).fetchone()[0]
        n = db.execute(f"DELETE FROM {table} WHERE {where}", args).rowcount
        self._bump(db, HELD, -int(freed))
        return int(n)

    def _held(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (HELD,)).fetchone()
        return int(row[0]) if row else 0

    def _enforce(self, *, sweep_age: bool) -> int:
        evicted = 0
        with self._tx() as db:
            if sweep_age:
                cutoff = int((time.time() - self.max_age_s) * 1000)
                evicted += self._delete(db, "outbox", "enq_ms < ?", (cutoff,))
                evicted += self._delete(db, "points", "time_ms < ?", (cutoff,))
                self._last_age_sweep = time.monotonic()
            while self._held(db) > self.max_bytes:
                # Drop the oldest 5% (at least one row) of the outbox, else of the points.
                for table, col in (("outbox", "enq_ms"), ("points", "time_ms")):
                    ids = [
                        r[0]
                        for r in db.execute(
                            f"SELECT id FROM {table} ORDER BY {col}, id LIMIT "
                            f"max(1, (SELECT count(*) FROM {table}) / 20)"
                        )
                    ]
                    if ids:
                        evicted += self._delete(
                            db, table, f"id IN ({','.join('?' * len(ids))})", ids
                        )
                        break
                else:
                    break
            self._bump(db, "dropped", evicted)
        return evicted

    @staticmethod
    def _bytes(db: sqlite3.Connection) -> int:
        a = db.execute("SELECT coalesce(sum(length(line)), 0) FROM outbox").fetchone()[0]
        b = db.execute(
            "SELECT coalesce(sum(length(tags) + length(fields)), 0) FROM points"
        ).fetchone()[0]
        return int(a) + int(b)

    # ------------------------------------------------------------------ shipping

    def oldest(self, limit: int) -> list[tuple[int, str]]:
        """The oldest pending (id, line) pairs."""
        return list(self.db.execute("SELECT id, line FROM outbox ORDER BY id LIMIT ?", (limit,)))

    def ack(self, ids: Sequence[int]) -> None:
        """The server acknowledged these: delete them and count them shipped."""
        if not ids:
            return
        with self._tx() as db:
            n = 0
            for chunk in _chunks(ids, 900):
                n += self._delete(db, "outbox", f"id IN ({','.join('?' * len(chunk))})", chunk)
            self._bump(db, "shipped", n)
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_ship_ms', ?)",
                (str(int(time.time() * 1000)),),
            )

    def dead_letter(self, rows: Sequence[tuple[int, str]], error: str) -> None:
        """Move rejected points out of the outbox, keeping the server's reason."""
        if not rows:
            return
        now = int(time.time() * 1000)
        with self._tx() as db:
            db.executemany(
                "INSERT INTO deadletter(dead_ms, line, error) VALUES (?,?,?)",
                [(now, line, error) for _, line in rows],
            )
            n = 0
            for chunk in _chunks([i for i, _ in rows], 900):
                n += self._delete(db, "outbox", f"id IN ({','.join('?' * len(chunk))})", chunk)
            self._bump(db, "dead_lettered", n)

    def set_meta(self, key: str, value: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ reading

    def stats(self) -> SpoolStats:
        db = self.db
        pending, pbytes, oldest = db.execute(
            "SELECT count(*), coalesce(sum(length(line)),0), min(enq_ms) FROM outbox"
        ).fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        last = self.get_meta("last_ship_ms")
        return SpoolStats(
            pending=pending,
            pending_bytes=pbytes,
            oldest_pending_ms=oldest,
            points=db.execute("SELECT count(*) FROM points").fetchone()[0],
            enqueued=counters.get("enqueued", 0),
            shipped=counters.get("shipped", 0),
            dead_lettered=counters.get("dead_lettered", 0),
            dropped=counters.get("dropped", 0),
            last_ship_ms=int(last) if last else None,
            last_error=self.get_meta("last_error"),
            path=str(self.path),
        )

    def dead_letters(self) -> list[tuple[str, str]]:
        return [
            (r[0], r[1]) for r in self.db.execute("SELECT line, error FROM deadletter ORDER BY id")
        ]

    def records(
        self, measurement: str | None = None, site: str | None = None, since_ms: int | None = None
    ) -> list[Record]:
        """Records from the embedded store (for small reads: tests, `spool dump`)."""
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
        return [
            Record(m, json.loads(t), json.loads(f), ts) for m, ts, t, f in self.db.execute(q, args)
        ]


def _chunks(seq: Sequence[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(seq), n):
        yield list(seq[i : i + n])
