"""The spool file's schema version and its migrations (netready/store.py).

A spool made by an earlier netready must open, keep every record and work as a current one:
each earlier schema's text is kept here as it was released (``SCHEMAS``), a spool is built
with it and filled as that version's code filled it, then the agent's way of opening it
migrates it. A spool of a newer schema is refused for writing, in one line.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from influxd import Influxd

from netready import store
from netready.errors import SpoolError
from netready.records import Record
from netready.spool import Spool

#: Version 0, before the spool clock (netready/spool.py SCHEMA at commit 920e588^, verbatim).
SCHEMA_0_BEFORE_CLOCK = """
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
#: Version 0 with the clock: netready/store.py TABLES + INDEXES at d8ced28 (user_version
#: never set), the same text as version 1's tables.
SCHEMA_0_WITH_CLOCK = store.TABLES + store.INDEXES
SCHEMAS = {"0-before-clock": SCHEMA_0_BEFORE_CLOCK, "0-with-clock": SCHEMA_0_WITH_CLOCK}

T0 = 1764590400000


def line(i: int) -> str:
    return f"rtt,site=Y81001,target=core rtt_p50_ms=1{i}.5,sent=50i {T0 + i}"


def old_spool(path: Path, schema: str) -> None:
    """A spool as the old code left it: 3 records waiting in the outbox, 2 in the embedded
    store, a dead letter and its counters."""
    con = sqlite3.connect(path)
    con.executescript(schema)
    con.executemany(
        "INSERT INTO outbox(enq_ms, time_ms, line) VALUES (?, ?, ?)",
        [(T0 + i, T0 + i, line(i)) for i in range(3)],
    )
    con.executemany(
        "INSERT INTO points(measurement, time_ms, site, tags, fields) VALUES (?, ?, ?, ?, ?)",
        [
            ("rtt", 1764590400000 + i, "Y81001", '{"site": "Y81001"}', f'{{"rtt_p50_ms": {i}.5}}')
            for i in range(2)
        ],
    )
    con.execute("INSERT INTO deadletter(dead_ms, line, error) VALUES (1, 'bad', 'partial write')")
    con.executemany(
        "INSERT INTO counters(name, value) VALUES (?, ?)", [("enqueued", 5), ("dead_lettered", 1)]
    )
    con.commit()
    con.close()


def test_migrations_are_numbered_steps() -> None:
    assert [to for to, _what, _step in store.MIGRATIONS] == list(range(1, store.SCHEMA_VERSION + 1))


def test_a_fresh_spool_is_current(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as sp:
        assert store.schema_version(sp.db) == store.SCHEMA_VERSION
        assert {r[1] for r in sp.db.execute("PRAGMA table_info(points)")} == set(
            store.POINTS_COLUMNS
        )


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_old_spool_migrates_and_keeps_every_record(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    old_spool(path, SCHEMAS[name])
    caplog.set_level("INFO", logger="netready.spool")
    with Spool(path, ship=True, embedded=True, exclusive=True, recover=True) as sp:
        db = sp.db
        assert store.schema_version(db) == store.SCHEMA_VERSION
        for table in ("outbox", "points"):
            assert "held_ms" in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "outbox_enq" not in indexes and {"outbox_held", "points_held"} <= indexes
        st = sp.stats()
        assert (st.pending, st.points, st.enqueued, st.dead_lettered) == (3, 2, 5, 1)
        assert [text for _id, text in sp.oldest(10)] == [line(i) for i in range(3)]
        # and it works as a current spool: new records go in, old ones still read back
        sp.enqueue([Record("rtt", {"site": "Y81001"}, {"rtt_p50_ms": 9.5}, 1764590500000)])
        assert sp.stats().pending == 4
        recs = store.read_records(db, "rtt")
        assert [r.fields["rtt_p50_ms"] for r in recs] == [0.5, 1.5, 9.5]
    assert "migrated, schema 0 -> 1: the spool clock" in caplog.text
    # once migrated, opening again changes nothing and logs nothing
    caplog.clear()
    Spool(path, exclusive=True, recover=True).close()
    assert "migrated" not in caplog.text
    # the report's reader reads it
    reader = store.SqliteStore(path)
    reader.close()


def test_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(SpoolError, match=r"has schema version 2, newer than this netready's \(1\)"):
        Spool(path, exclusive=True, recover=True)
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "store": {"kind": "embedded"},
                "agent": {"spool_path": str(path)},
                "sites": [
                    {
                        "ods": "Y81001",
                        "name": "Riverside Surgery",
                        "type": "gp_practice",
                        "icb": "QHM",
                        "link": {"tech": "fttp", "down_mbps": 80, "up_mbps": 20},
                    }
                ],
            }
        )
    )
    cp = subprocess.run(
        ["netready-agent", "--inventory", str(inv), "--once", "--state-dir", str(tmp_path / "st")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 1 and "newer than this netready's" in cp.stderr
    assert "Traceback" not in cp.stderr
    # the file is left as it was: not quarantined, not rewritten
    assert path.exists() and not list(tmp_path.glob("spool.db.corrupt-*"))


def test_migrated_spool_ships_what_it_held(
    tmp_path: Path, influxd: Influxd, influxdb: tuple[str, str]
) -> None:
    """The records an old spool held reach a real InfluxDB 1.6 after the migration."""
    from netready.influx import InfluxV1
    from netready.inventory import StoreConfig
    from netready.shipper import Shipper

    url, db = influxdb
    path = tmp_path / "spool.db"
    old_spool(path, SCHEMA_0_BEFORE_CLOCK)
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db)  # type: ignore[call-arg]
    with Spool(path, exclusive=True, recover=True) as sp, InfluxV1(cfg) as w:
        res = Shipper(sp, w).drain()
        assert res.shipped == 3 and sp.stats().pending == 0
    got = influxd.query('SELECT rtt_p50_ms FROM "rtt" ORDER BY time', db)["results"][0]
    assert [v[1] for v in got["series"][0]["values"]] == [10.5, 11.5, 12.5]
