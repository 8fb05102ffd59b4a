"""The durable spool and the shipper, against a real InfluxDB."""

from __future__ import annotations

import http.server
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faults import outbox_leaf_pages, overwrite_pages
from influxd import Influxd

from netready.errors import SpoolCorrupt, SpoolError, SpoolLocked
from netready.influx import InfluxV1
from netready.inventory import StoreConfig
from netready.records import Record
from netready.shipper import Backoff, Shipper
from netready.spool import Spool

HERE = Path(__file__).parent


def v1(url: str, db: str, **kw: object) -> InfluxV1:
    return InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db, **kw))  # type: ignore[arg-type]


def count(influxd: Influxd, db: str, meas: str, field: str = "seq") -> int:
    res = influxd.query(f'SELECT count("{field}") FROM "{meas}"', db)["results"][0]
    return res["series"][0]["values"][0][1] if "series" in res else 0


def recs(n: int, start: int = 0, meas: str = "m") -> list[Record]:
    return [
        Record(meas, {"site": "Y81001"}, {"seq": i}, 1_700_000_000_000 + i)
        for i in range(start, start + n)
    ]


def test_enqueue_is_durable_and_wal(tmp_path: Path) -> None:
    p = tmp_path / "s.db"
    with Spool(p) as sp:
        sp.enqueue(recs(5))
        assert sp.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # a new process sees everything the first one committed
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from netready.spool import Spool; print(Spool({str(p)!r}).stats().pending)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "5"


def test_ship_oldest_first_and_ack(
    influxd: Influxd, influxdb: tuple[str, str], tmp_path: Path
) -> None:
    url, db = influxdb
    with Spool(tmp_path / "s.db") as sp, v1(url, db) as w:
        sp.enqueue(recs(250))
        sh = Shipper(sp, w, batch_size=100)
        assert sh.ship_batch() == 100
        left = [line for _, line in sp.oldest(1000)]
        assert len(left) == 150 and left[0].endswith(str(1_700_000_000_000 + 100))
        res = sh.drain()
        st = sp.stats()
    assert res.shipped == 150 and res.error is None
    assert (st.pending, st.shipped, st.enqueued) == (0, 250, 250)
    assert count(influxd, db, "m") == 250


def test_poisoned_point_is_dead_lettered_alone(
    influxd: Influxd, influxdb: tuple[str, str], tmp_path: Path
) -> None:
    url, db = influxdb
    with Spool(tmp_path / "s.db") as sp, v1(url, db) as w:
        w.write([Record("m", {"site": "Y81001"}, {"seq": 0}, 1_600_000_000_000)])  # seq is an int
        batch = recs(200, start=1)
        batch[123] = Record("m", {"site": "Y81001"}, {"seq": "poison"}, batch[123].time_ms)
        sp.enqueue(batch)
        res = Shipper(sp, w, batch_size=500).drain()
        st = sp.stats()
        dead = sp.dead_letters()
    assert res.dead_lettered == 1 and st.dead_lettered == 1 and st.pending == 0
    assert len(dead) == 1 and 'seq="poison"' in dead[0][0] and "type conflict" in dead[0][1]
    assert count(influxd, db, "m") == 200  # 199 good + the pre-existing one
    # splitting costs about log2(n) requests per bad point, not n
    assert res.attempts <= 2 * 10 + 2


def test_quota_evicts_oldest_first_and_counts(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=20_000) as sp:
        for i in range(0, 2000, 100):
            sp.enqueue(recs(100, start=i))
        st = sp.stats()
        oldest = sp.oldest(1)[0][1]
    assert st.pending_bytes <= 20_000
    assert st.dropped > 0 and st.dropped + st.pending == 2000 == st.enqueued
    first_kept = int(oldest.rsplit(" ", 1)[1]) - 1_700_000_000_000
    assert first_kept == st.dropped  # exactly the oldest ones went


DAY = 86400.0


def test_clock_step_evicts_nothing_held_time_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Age is time *held* on the spool's persisted monotonic clock. A forward wall-clock step
    larger than the age quota (a Pi without RTC syncing NTP) evicts nothing; 31 days of held
    time evicts exactly the rows held that long, counted in ``dropped``, across a reopen.
    The wall clock (time.time) and the monotonic clock are faked in-process."""
    wall, mono = [time.time()], [time.monotonic()]
    monkeypatch.setattr(time, "time", lambda: wall[0])
    monkeypatch.setattr(time, "monotonic", lambda: mono[0])
    p = tmp_path / "s.db"
    with Spool(p, max_age_s=30 * DAY) as sp:
        sp.enqueue(recs(10))
        wall[0] += 40 * DAY  # the wall clock jumps forward 40 days
        sp.enqueue(recs(10, start=10))
        assert sp.enforce_quota() == 0
        assert (sp.stats().pending, sp.stats().dropped) == (20, 0)
        wall[0] -= 80 * DAY  # and back again: still nothing
        assert sp.enforce_quota() == 0
        mono[0] += 20 * DAY
        sp.enqueue(recs(5, start=20))
        mono[0] += 11 * DAY  # the first 20 have been held 31 days, the last 5 for 11
        assert sp.enforce_quota() == 20
        st = sp.stats()
        assert (st.pending, st.dropped, st.enqueued) == (5, 20, 25)
        assert sp.oldest(1)[0][1].endswith(str(1_700_000_000_000 + 20))
    mono[0] += 365 * DAY  # switched off for a year: time not held does not count
    with Spool(p, max_age_s=30 * DAY) as sp:
        assert sp.enforce_quota() == 0 and sp.stats().pending == 5
        mono[0] += 19 * DAY + 60  # 11 + 19 days held: over the quota
        assert sp.enforce_quota() == 5
        assert sp.stats().dropped == 25


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Stands in for an overloaded InfluxDB (a real one cannot be made to answer 429 on demand).

    Answers the first requests with 429/503 and ``Retry-After``, then accepts (204)."""

    plan: list[tuple[int, str | None]] = []
    seen: list[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Flaky.seen.append(time.monotonic())
        status, retry_after = _Flaky.plan.pop(0) if _Flaky.plan else (204, None)
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """Wire contract: on 429/503 with Retry-After the shipper waits at least that long, then
    resends the same batch; nothing is acknowledged before the 204."""
    _Flaky.plan = [(429, "1"), (503, "1")]
    _Flaky.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with Spool(tmp_path / "s.db") as sp, v1(f"http://127.0.0.1:{srv.server_port}", "d") as w:
            sp.enqueue(recs(10))
            res = Shipper(sp, w, backoff=Backoff(base_s=0.01, cap_s=0.05)).drain(
                deadline=time.monotonic() + 20
            )
            assert sp.stats().pending == 0
    finally:
        srv.shutdown()
    assert res.shipped == 10 and len(_Flaky.seen) == 3
    assert _Flaky.seen[1] - _Flaky.seen[0] >= 0.95 and _Flaky.seen[2] - _Flaky.seen[1] >= 0.95


def test_backoff_grows_with_full_jitter() -> None:
    b = Backoff(base_s=1, cap_s=30, rng=random.Random(1))
    for attempt in range(8):
        ds = [b.delay(attempt) for _ in range(200)]
        assert max(ds) <= min(30, 2**attempt) and min(ds) >= 0
        assert max(ds) > 0.5 * min(30, 2**attempt)  # spread over the whole range
    assert b.delay(0, retry_after=7) >= 7


def test_sigkill_20_times_loses_nothing(
    influxd: Influxd, influxdb: tuple[str, str], tmp_path: Path
) -> None:
    """Kill the shipping agent with SIGKILL at random moments; every committed record lands."""
    url, db = influxdb
    spool = tmp_path / "dur.db"
    rng = random.Random(2026)
    promised: set[int] = set()
    nxt = 0
    for _ in range(20):
        p = subprocess.Popen(
            [sys.executable, str(HERE / "durability_driver.py"), str(spool), url, db, str(nxt)],
            stdout=subprocess.PIPE,
            text=True,
        )
        first = p.stdout.readline()  # type: ignore[union-attr]  # started (imports are slow)
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        got = [int(x) for x in (first + out).split()]
        assert got, "driver made no progress"
        promised.update(got)
        nxt = max(got) + 1
    d = subprocess.run(
        [sys.executable, str(HERE / "durability_driver.py"), str(spool), url, db, "0", "--drain"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "error=None" in d.stdout, d.stdout + d.stderr
    res = influxd.query('SELECT "seq" FROM "dur"', db)["results"][0]
    landed = {row[1] for row in res["series"][0]["values"]}
    assert promised <= landed, f"lost {sorted(promised - landed)[:10]}"
    # at most the one record in hand at each kill may exist beyond the promise
    assert len(landed - promised) <= 20
    assert len(promised) > 200


def test_influx_down_spool_grows_then_drains(tmp_path: Path) -> None:
    srv = Influxd().start()
    try:
        srv.create_db("d")
        with Spool(tmp_path / "s.db") as sp, v1(srv.url, "d", timeout_s=2) as w:
            sh = Shipper(sp, w, backoff=Backoff(base_s=0.05, cap_s=0.2))
            sp.enqueue(recs(100))
            assert sh.drain().shipped == 100
            srv.stop()
            for i in range(5):
                sp.enqueue(recs(100, start=100 + 100 * i))
                res = sh.drain(deadline=time.monotonic() + 0.5)
                assert res.shipped == 0 and res.error and "unreachable" in res.error
            assert sp.stats().pending == 500
            assert "unreachable" in (sp.stats().last_error or "")
            srv.start()
            res = sh.drain(deadline=time.monotonic() + 30)
            assert res.error is None and res.shipped == 500
            assert sp.stats().pending == 0 and sp.stats().last_error is None
        assert count(srv, "d", "m") == 600
    finally:
        srv.close()


@pytest.mark.parametrize("status", [401, 404])
def test_fatal_errors_stop_the_drain_keep_records(tmp_path: Path, status: int) -> None:
    _Flaky.plan = [(status, None)] * 5
    _Flaky.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with Spool(tmp_path / "s.db") as sp, v1(f"http://127.0.0.1:{srv.server_port}", "d") as w:
            sp.enqueue(recs(10))
            res = Shipper(sp, w).drain(deadline=time.monotonic() + 10)
            assert sp.stats().pending == 10
    finally:
        srv.shutdown()
    assert len(_Flaky.seen) == 1  # no hammering on a configuration error
    assert res.error and ("credentials" in res.error or "not found" in res.error)


def test_bytes_held_gauge_matches_a_full_count(tmp_path: Path, influxdb: tuple[str, str]) -> None:
    """The O(1) size gauge stays equal to a real count through enqueue, ack, dead-letter and
    eviction, in both tables, and survives reopening."""
    from netready.records import now_ms

    url, db = influxdb
    base = now_ms() - 10_000

    def fresh(n: int, start: int) -> list[Record]:
        return [
            Record("m", {"site": "Y81001"}, {"seq": i}, base + i) for i in range(start, start + n)
        ]

    with (
        Spool(tmp_path / "s.db", ship=True, embedded=True, max_bytes=30_000) as sp,
        v1(url, db) as w,
    ):
        for i in range(0, 600, 50):
            sp.enqueue(fresh(50, i))
        assert sp.stats().dropped > 0  # the size quota bit
        w.write([Record("m", {"site": "Y81001"}, {"seq": 0}, base - 1)])
        sp.enqueue([Record("m", {"site": "Y81001"}, {"seq": "poison"}, base + 700)])
        Shipper(sp, w, batch_size=64).drain()
        assert sp.stats().dead_lettered == 1 and sp.stats().pending == 0
        held = sp.db.execute("SELECT value FROM counters WHERE name = 'bytes_held'").fetchone()[0]
        assert held == Spool._bytes(sp.db) > 0  # only points remain
    with Spool(tmp_path / "s.db", embedded=True) as sp:
        held2 = sp.db.execute("SELECT value FROM counters WHERE name = 'bytes_held'").fetchone()[0]
        assert held2 == held


def test_shipped_counts_rows_deleted_not_rows_sent(
    influxd: Influxd, influxdb: tuple[str, str], tmp_path: Path
) -> None:
    """While a batch is in flight the size quota evicts part of it (the agent enqueues on its
    event loop while the shipper thread sends). Those rows are counted once, as dropped; shipped
    counts only rows the ack deleted, in the DrainResult and in the spool alike."""
    url, db = influxdb

    class EnqueueWhileSending:
        def __init__(self, sp: Spool, w: InfluxV1) -> None:
            self.sp, self.w, self.calls = sp, w, 0

        def write_lines(self, lines: list[str]) -> None:
            self.calls += 1
            if self.calls == 1:  # new records arrive mid-send and push the oldest out
                self.sp.enqueue(recs(100, start=1000))
            self.w.write_lines(lines)

    with Spool(tmp_path / "s.db", max_bytes=5_000) as sp, v1(url, db) as w:
        sp.enqueue(recs(100))
        assert sp.stats().dropped == 0
        res = Shipper(sp, EnqueueWhileSending(sp, w), batch_size=100).drain()
        st = sp.stats()
    assert st.dropped > 0 and res.error is None
    assert res.shipped == st.shipped < 200
    assert st.enqueued == st.shipped + st.dropped + st.pending + st.dead_lettered


@pytest.mark.parametrize("op", ["enqueue", "drain"])
def test_corrupt_spool_found_at_runtime_is_quarantined(
    influxdb: tuple[str, str], tmp_path: Path, op: str
) -> None:
    """A page goes bad under a running spool. The operation that meets it raises SpoolCorrupt
    (never a raw sqlite3 error, never retried as if the store had failed); the file is moved
    aside with its WAL, a fresh spool takes over and counts the quarantine; an enqueue that met
    the corruption lands its records in the fresh spool."""
    url, db = influxdb
    p = tmp_path / "s.db"
    with Spool(p, recover=True) as sp, v1(url, db) as w:
        for i in range(0, 2000, 500):
            sp.enqueue(recs(500, start=i))
        sp.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sp.db.execute("PRAGMA cache_size = 1")  # as if the page cache had been evicted
        pages, size = outbox_leaf_pages(p)
        overwrite_pages(p, [pages[-1] if op == "enqueue" else pages[len(pages) // 2]], size)
        if op == "enqueue":
            assert sp.enqueue(recs(5, start=5000)) == 5
            assert sp.stats().pending == 5
        else:
            with pytest.raises(SpoolCorrupt, match="malformed"):
                Shipper(sp, w, batch_size=5000).drain()
            assert sp.stats().pending == 0
            sp.enqueue(recs(5, start=5000))
        st = sp.stats()
        assert st.quarantined == 1 and sp.quarantines
        assert "malformed" in (sp.get_meta("last_quarantine") or "")
    (moved,) = tmp_path.glob("s.db.corrupt-*[0-9]Z")
    assert moved.stat().st_size > 100_000  # the old file, kept for a post-mortem
    with Spool(p, recover=True) as sp:  # reopened: the count stays
        assert sp.stats().quarantined == 1 and sp.stats().pending == 5


def test_one_exclusive_writer_readers_welcome(tmp_path: Path) -> None:
    p = tmp_path / "s.db"
    with Spool(p, exclusive=True) as sp:
        sp.enqueue(recs(3))
        with pytest.raises(SpoolLocked, match=rf"(?s)spool {p} is in use .*\(pid {os.getpid()}\)"):
            Spool(p, exclusive=True)
        with Spool(p, readonly=True) as ro:
            assert ro.stats().pending == 3
            with pytest.raises(SpoolError, match="readonly"):
                ro.enqueue(recs(1))
    with Spool(p, exclusive=True) as sp:  # released on close
        assert sp.stats().pending == 3
    with pytest.raises(SpoolError, match="does not exist"):
        Spool(tmp_path / "nope.db", readonly=True)
