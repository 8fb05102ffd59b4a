"""The durable local spool (SQLite, WAL) — and the embedded default store.

Every record is committed here before anything else happens to it.

Tables (the schema is ``netready/store.py``'s, with the read side of the embedded store):
- ``outbox``: records waiting to be shipped, as line protocol, oldest first. Rows are deleted
  only after the central store acknowledged them (at-least-once; InfluxDB writes are
  idempotent, so a re-sent point overwrites itself).
- ``deadletter``: points the server rejected as malformed, isolated by splitting batches.
- ``points``: the embedded store, used when no central store is configured. Reports query it
  through ``netready.store.SqliteStore`` (SQL, ``json_extract`` over ``tags`` and ``fields``).
- ``counters``: enqueued, shipped (rows deleted after the server acknowledged them),
  dead_lettered, dropped (evicted by quota), quarantined (corrupt spools moved aside), kept
  forever; the gauge ``bytes_held`` (outbox + points), kept in step by every insert and delete so
  the size quota costs one row read per enqueue, not a scan; and ``clock_ms``, the spool's own
  clock (below).
- ``meta``: last_ship_ms, last_error, last_quarantine.

Quotas: ``max_bytes`` over outbox + points and ``max_age_s``; eviction is oldest-first and every
evicted record is counted in ``dropped`` (reported by the agent's ``agent`` measurement). Age is
how long a row has been *held*, on the spool's clock: milliseconds the spool has been open for
writing, advanced from ``time.monotonic()`` and persisted in every write. A wall-clock step (a
Raspberry Pi without a real-time clock syncing NTP after boot) therefore ages nothing, and time
the box was switched off does not count either; the size quota still bounds the disk.

Failures are ``SpoolError`` subclasses with one-line messages, never raw ``sqlite3`` errors:
``SpoolFull`` (no space: nothing was committed, the caller keeps its records and retries),
``SpoolCorrupt`` (not a database / malformed) and ``SpoolLocked``. With ``recover=True`` (the agent)
the file is checked when opened (``PRAGMA quick_check``) and a corrupt one, found then or later, is
quarantined -- renamed ``<spool>.corrupt-<UTC time>`` with its ``-wal``/``-shm`` -- and a
fresh spool takes its place; ``quarantined`` counts it in the fresh spool.

One writer per spool: ``exclusive=True`` (the agent, ``netready ship``) holds an OS lock on
``<spool>.lock`` (``platform.FileLock``: ``flock``, or SQLite's own file lock where there is no
``flock``) until ``close()``, so a second agent or shipper refuses to start instead of sending
every record twice. ``readonly=True`` (``netready spool stats``) takes no lock and writes
nothing. One connection is shared by the agent's event loop and its shipping
thread; a re-entrant lock serialises every transaction and read.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from netready.errors import SpoolCorrupt, SpoolError, SpoolFull, SpoolLocked
from netready.influx import encode
from netready.platform import FileLock
from netready.records import Record
from netready.store import INSERT_POINT, migrate, read_records

log = logging.getLogger("netready.spool")

COUNTERS = ("enqueued", "shipped", "dead_lettered", "dropped", "quarantined")
#: Gauge kept in ``counters``: bytes held in outbox + points, so quota checks are O(1).
HELD = "bytes_held"
#: The spool's clock in ``counters``: ms it has been open for writing, ever (see the docstring).
CLOCK = "clock_ms"
AGE_SWEEP_S = 60.0  # the age quota is swept at most this often from enqueue()


def _classify(path: Path, e: sqlite3.Error) -> SpoolError:
    """A sqlite3 error as the one-line SpoolError a caller can act on."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = " ".join(str(e).split()) or type(e).__name__
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return SpoolFull(f"spool {path}: {text} (no space left on its disk)")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
        "malformed" in text or "not a database" in text
    ):
        return SpoolCorrupt(f"spool {path} is corrupt: {text}")
    return SpoolError(f"spool {path}: {text}")


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
    quarantined: int
    last_ship_ms: int | None
    last_error: str | None
    path: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Spool:
    """A spool file. ``embedded=True`` also keeps every record in ``points`` (the embedded store);
    ``ship=True`` puts every record in ``outbox`` for the shipper. See the module docstring for
    ``exclusive``, ``readonly`` and ``recover``.
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
        exclusive: bool = False,
        readonly: bool = False,
        recover: bool = False,
    ):
        self.path = Path(path)
        self.ship = ship
        self.embedded = embedded
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.synchronous = synchronous
        self.readonly = readonly
        self.recover = recover and not readonly
        #: files this process quarantined (corrupt spools moved aside)
        self.quarantines: list[str] = []
        self._last_age_sweep = float("-inf")
        self._lock = threading.RLock()
        self._filelock: FileLock | None = None
        self._con: sqlite3.Connection | None = None
        self._clock0 = 0
        self._mono0 = time.monotonic()
        self._quarantined = 0
        if exclusive and not readonly:
            self._take_lock()
        try:
            try:
                self._open()
            except SpoolCorrupt as e:
                if not self.recover:
                    raise
                self._quarantine(str(e))
                if self._con is None:
                    self._open()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _take_lock(self) -> None:
        lock = FileLock(f"{self.path}.lock")
        try:
            taken = lock.acquire()
        except OSError as e:
            raise SpoolError(
                f"spool {self.path}: cannot open its lock file {lock.path}: {e}"
            ) from None
        if not taken:
            who = f" (pid {lock.holder})" if (lock.holder or "").isdigit() else ""
            raise SpoolLocked(
                f"spool {self.path} is in use by another agent or `netready ship`{who}: "
                "one writer per spool"
            ) from None
        self._filelock = lock

    def _open(self) -> None:
        with self._lock, self._translate(recover=False):
            if self.readonly:
                if not self.path.exists():
                    raise SpoolError(f"spool {self.path} does not exist (nothing was spooled yet)")
                con = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=30,
                    isolation_level=None,
                    check_same_thread=False,
                )
                try:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except BaseException:
                    con.close()
                    raise
                self._con = con
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                str(self.path), timeout=30, isolation_level=None, check_same_thread=False
            )
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(f"PRAGMA synchronous={self.synchronous}")
                con.execute("PRAGMA busy_timeout=30000")
                if self.recover:  # the agent: find a malformed file before committing into it
                    bad = con.execute("PRAGMA quick_check(1)").fetchone()[0]
                    if bad != "ok":
                        raise SpoolCorrupt(f"spool {self.path} is corrupt: {bad}")
                for step in migrate(con, self.path):  # netready/store.py: the schema's versions
                    log.info("spool %s: migrated, %s", self.path, step)
                if not con.execute("SELECT 1 FROM counters WHERE name = ?", (HELD,)).fetchone():
                    # first open (or a spool from before the gauge): count once
                    con.execute(
                        "INSERT INTO counters(name, value) VALUES (?, ?)", (HELD, self._bytes(con))
                    )
                con.execute("INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", (CLOCK,))
                counters = dict(con.execute("SELECT name, value FROM counters"))
            except BaseException:
                con.close()
                raise
            self._con = con
            self._clock0, self._mono0 = int(counters[CLOCK]), time.monotonic()
            self._quarantined = max(self._quarantined, int(counters.get("quarantined", 0)))

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (reopened if a quarantine could not reopen it at the time)."""
        if self._con is None:
            self._open()
        assert self._con is not None
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            if self._filelock is not None:
                self._filelock.release()
                self._filelock = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ failures

    @contextmanager
    def _translate(self, *, recover: bool = True) -> Iterator[None]:
        """sqlite3 and OS errors become one-line SpoolErrors; a corrupt file is quarantined
        (``recover``) before the error reaches the caller, so the next call has a fresh spool."""
        try:
            yield
        except sqlite3.Error as e:
            err = _classify(self.path, e)
            if recover and self.recover and isinstance(err, SpoolCorrupt):
                self._quarantine(str(err))
            raise err from None
        except OSError as e:
            raise SpoolError(f"spool {self.path}: {e}") from None

    def _quarantine(self, reason: str) -> None:
        """Move the corrupt file (and its -wal, -shm) aside and start a fresh spool."""
        with self._lock:
            if self._con is not None:
                with suppress(sqlite3.Error):
                    self._con.close()
                self._con = None
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            n = 1
            while dest.exists():
                n += 1
                dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            try:
                for suffix in ("", "-wal", "-shm"):
                    src = Path(f"{self.path}{suffix}")
                    if src.exists():
                        os.replace(src, f"{dest}{suffix}")
            except OSError as e:
                raise SpoolError(
                    f"spool {self.path} is corrupt and cannot be moved aside: {e}"
                ) from None
            self.quarantines.append(str(dest))
            self._quarantined += 1
            log.error(
                "%s: moved to %s; a fresh spool takes its place (the records in it are not shipped)",
                reason,
                dest.name,
            )
            try:
                self._open()
                with self._tx() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO counters(name, value) VALUES ('quarantined', ?)",
                        (self._quarantined,),
                    )
                    db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_quarantine', ?)",
                        (f"{dest.name}: {reason}"[:300],),
                    )
            except SpoolError as e:  # e.g. the disk is full too: the next call reopens
                log.error("fresh spool %s not ready yet: %s", self.path, e)

    # ------------------------------------------------------------------ transactions

    def clock_ms(self) -> int:
        """The spool's clock: ms it has been open for writing, ever (monotonic, persisted)."""
        return self._clock0 + int((time.monotonic() - self._mono0) * 1000)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate():
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute(
                    "UPDATE counters SET value = max(value, ?) WHERE name = ?",
                    (self.clock_ms(), CLOCK),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate():
            yield self.db

    def _bump(self, db: sqlite3.Connection, name: str, n: int) -> None:
        if n:
            db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    # ------------------------------------------------------------------ writing

    def enqueue(self, records: Iterable[Record]) -> int:
        """Commit records durably (one transaction, quotas included). Returns how many were added.

        Records that cannot be written as line protocol raise ``LineProtocolError`` before
        anything is committed: that is a bug in the probe, not something to retry. A
        ``SpoolError`` (disk full, ...) means nothing was committed. A corrupt spool found here
        is quarantined (``recover``) and the records go into the fresh one.
        """
        recs = list(records)
        if not recs:
            return 0
        lines = [encode(r) for r in recs] if self.ship else []
        try:
            return self._enqueue(recs, lines)
        except SpoolCorrupt:
            if not self.recover:
                raise
            return self._enqueue(recs, lines)

    def _enqueue(self, recs: list[Record], lines: list[str]) -> int:
        now = int(time.time() * 1000)
        held = sum(len(ln) for ln in lines)
        with self._tx() as db:
            clock = self.clock_ms()
            if self.ship:
                db.executemany(
                    "INSERT INTO outbox(enq_ms, time_ms, line, held_ms) VALUES (?, ?, ?, ?)",
                    [(now, r.time_ms, ln, clock) for r, ln in zip(recs, lines, strict=True)],
                )
            if self.embedded:
                rows = [
                    (
                        r.measurement,
                        r.time_ms,
                        r.tags.get("site"),
                        json.dumps(dict(r.tags), ensure_ascii=False),
                        json.dumps(dict(r.fields), ensure_ascii=False),
                        clock,
                    )
                    for r in recs
                ]
                db.executemany(INSERT_POINT, rows)
                held += sum(len(t) + len(f) for _, _, _, t, f, _ in rows)
            self._bump(db, "enqueued", len(recs))
            self._bump(db, HELD, held)
            # In the same transaction: a quota that cannot be enforced commits nothing, so a
            # retried enqueue never adds the same records twice.
            self._enforce(db, sweep_age=time.monotonic() - self._last_age_sweep >= AGE_SWEEP_S)
        return len(recs)

    def enforce_quota(self) -> int:
        """Evict oldest-first beyond the age and size quotas; returns records evicted."""
        with self._tx() as db:
            return self._enforce(db, sweep_age=True)

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

    def _enforce(self, db: sqlite3.Connection, *, sweep_age: bool) -> int:
        evicted = 0
        if sweep_age:
            cutoff = self.clock_ms() - int(self.max_age_s * 1000)
            if cutoff > 0:
                evicted += self._delete(db, "outbox", "held_ms < ?", (cutoff,))
                evicted += self._delete(db, "points", "held_ms < ?", (cutoff,))
            self._last_age_sweep = time.monotonic()
        while self._held(db) > self.max_bytes:
            # Drop the oldest 5% (at least one row) of the outbox, else of the points.
            for table, order in (("outbox", "id"), ("points", "time_ms, id")):
                ids = [
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM {table} ORDER BY {order} LIMIT "
                        f"max(1, (SELECT count(*) FROM {table}) / 20)"
                    )
                ]
                if ids:
                    evicted += self._delete(db, table, f"id IN ({','.join('?' * len(ids))})", ids)
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

    def oldest(self, limit: int, after: int | None = None) -> list[tuple[int, str]]:
        """The oldest pending (id, line) pairs (with ``after``: of those with a larger id; the
        shipper reads the next batch while the previous one is in flight)."""
        with self._read() as db:
            if after is None:
                q = "SELECT id, line FROM outbox ORDER BY id LIMIT ?"
                return list(db.execute(q, (limit,)))
            q = "SELECT id, line FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
            return list(db.execute(q, (after, limit)))

    def ack(self, ids: Sequence[int]) -> int:
        """The server acknowledged these: delete them and count as shipped the rows actually
        deleted (a row evicted by the quota meanwhile is not counted twice). Returns that count."""
        if not ids:
            return 0
        with self._tx() as db:
            n = 0
            for chunk in _chunks(ids, 900):
                n += self._delete(db, "outbox", f"id IN ({','.join('?' * len(chunk))})", chunk)
            self._bump(db, "shipped", n)
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_ship_ms', ?)",
                (str(int(time.time() * 1000)),),
            )
        return n

    def dead_letter(self, rows: Sequence[tuple[int, str]], error: str) -> int:
        """Move rejected points out of the outbox, keeping the server's reason. Returns rows moved."""
        if not rows:
            return 0
        now = int(time.time() * 1000)
        with self._tx() as db:
            n = 0
            for chunk in _chunks([i for i, _ in rows], 900):
                live = {
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk
                    )
                }
                db.executemany(
                    "INSERT INTO deadletter(dead_ms, line, error) VALUES (?,?,?)",
                    [(now, line, error) for i, line in rows if i in live],
                )
                n += self._delete(db, "outbox", f"id IN ({','.join('?' * len(chunk))})", chunk)
            self._bump(db, "dead_lettered", n)
        return n

    def set_meta(self, key: str, value: str | None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ reading

    def stats(self) -> SpoolStats:
        with self._read() as db:
            pending, pbytes, oldest = db.execute(
                "SELECT count(*), coalesce(sum(length(line)),0), min(enq_ms) FROM outbox"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            points = db.execute("SELECT count(*) FROM points").fetchone()[0]
        last = meta.get("last_ship_ms")
        return SpoolStats(
            pending=pending,
            pending_bytes=pbytes,
            oldest_pending_ms=oldest,
            points=points,
            enqueued=counters.get("enqueued", 0),
            shipped=counters.get("shipped", 0),
            dead_lettered=counters.get("dead_lettered", 0),
            dropped=counters.get("dropped", 0),
            quarantined=counters.get("quarantined", 0),
            last_ship_ms=int(last) if last else None,
            last_error=meta.get("last_error"),
            path=str(self.path),
        )

    def dead_letters(self) -> list[tuple[str, str]]:
        with self._read() as db:
            return [
                (r[0], r[1]) for r in db.execute("SELECT line, error FROM deadletter ORDER BY id")
            ]

    def records(
        self, measurement: str | None = None, site: str | None = None, since_ms: int | None = None
    ) -> list[Record]:
        """Records from the embedded store (for small reads: tests, `spool dump`)."""
        with self._read() as db:
            return read_records(db, measurement, site, since_ms)


def _chunks(seq: Sequence[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(seq), n):
        yield list(seq[i : i + n])
