"""Reports against real stores: the embedded SQLite spool and a real influxd (Debian 1.6).

- Aggregates are computed in the store and match numbers worked out by hand (clinic hours,
  nearest-rank percentiles, median over clinic days, link_busy/failed samples excluded).
- The same points in InfluxDB and in the embedded store give the same report, for every profile.
- ``netready report`` / ``netready assess`` through click's CliRunner: formats, exit codes,
  NO DATA without a spool, readiness records written back to both stores.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from netready.reports import readiness, synthetic
from netready.reports.query import InfluxStore
from netready.reports.readiness import TZ

from netready import store as store_mod
from netready.cli.report import assess, report
from netready.errors import StoreError
from netready.influx import InfluxV1
from netready.inventory import StoreConfig, loads
from netready.records import Record
from netready.rubric import PROFILES
from netready.spool import Spool
from netready.store import Agg, SqliteStore

NOW_DT = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
NOW = int(NOW_DT.timestamp() * 1000)
DAY = 86_400_000


def clinic_days(n: int) -> list[dt.date]:
    """The last ``n`` weekdays before today (London), newest first."""
    d = NOW_DT.astimezone(TZ).date() - dt.timedelta(days=1)
    out = []
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d -= dt.timedelta(days=1)
    return out


def at(day: dt.date, hh: int, mm: int = 0, ss: int = 0) -> int:
    """Local (London) wall time on ``day`` plus ``ss`` seconds, as UTC ms."""
    t = dt.datetime.combine(day, dt.time(hh, mm), TZ) + dt.timedelta(seconds=ss)
    return int(t.timestamp() * 1000)


INVENTORY = """
version: 1
store: {store}
agent: {{spool_path: "{spool}", spool_max_age_days: 60}}
sites:
  - {{ods: H00001, name: Hand Checked Surgery, type: gp_practice, icb: QHM,
     registered_patients: 7000, link: {{tech: fttc, down_mbps: 40, up_mbps: 10}},
     planned_clinics: 1}}
  - {{ods: Y81001, name: Riverside Surgery, type: gp_practice, icb: QHM, registered_patients: 6400,
     link: {{tech: adsl, down_mbps: 8, up_mbps: 0.8, wlr: true}}, planned_clinics: 2}}
  - {{ods: Y60010, name: Castle Lane Practice, type: gp_practice, icb: QWE,
     link: {{tech: fttp, down_mbps: 160, up_mbps: 30}}, planned_clinics: 6}}
  - {{ods: Y60011, name: Old Mill Surgery, type: gp_practice, icb: QWE,
     link: {{tech: sogea, down_mbps: 36, up_mbps: 9}}, planned_clinics: 2}}
  - {{ods: RXA01, name: St Elsewhere, type: hospital, icb: QHM,
     link: {{tech: ethernet, down_mbps: 1000, up_mbps: 1000}}, planned_clinics: 40,
     clinic_hours: {{days: [mon, tue, wed, thu, fri, sat], start: "07:30", end: "20:00"}}}}
  - {{ods: Y71005, name: Fenland Hub, type: community, icb: QUE,
     link: {{tech: adsl, down_mbps: 6, up_mbps: 0.5, wlr: true}}, planned_clinics: 1}}
  - {{ods: RXC20, name: Northgate CDC, type: diagnostic_centre, icb: QUE,
     link: {{tech: fttp, down_mbps: 500, up_mbps: 75}}, planned_clinics: 2}}
"""


def hand_records() -> list[Record]:
    """Site H00001, worked by hand.

    Day 1 (newest weekday), 10:00 local: 20 windows, jitter 1..20 ms, RTT 10..29 ms, loss 0.
      p95 nearest rank: k = floor(20*0.95 + 0.5) = 19 -> jitter 19, RTT 28.
    Day 2: 10 windows, jitter 5, RTT 10 -> p95 5 and 10.
    Site figure = median over the two days: jitter (19+5)/2 = 12, RTT (28+10)/2 = 19;
    worst day 19 and 28.
    Outside clinic hours (03:00 on day 1): 5 windows with jitter 999 -> excluded.
    A failed run (result=timeout, loss 100) at 10:30 on day 1 -> excluded, counted.
    Throughput up 3,4,5,6,7 Mbps and one link_busy sample (0.1) -> p10 of 5: k = floor(0.5+0.5)
      = 1 -> 3.0; down 30, 40 -> p10 of 2: k = floor(0.2+0.5) = 0 -> clamped to 1 -> 30.0.
    Capacity: floor(0.75*3.0/1.5) = 1 up, floor(0.75*30/1.5) = 15 down -> 1 call (planned 1).
    dsl_line reports detected_tech=adsl: declared fttc -> mismatch.
    """
    d1, d2 = clinic_days(2)
    tags = {
        "site": "H00001",
        "icb": "QHM",
        "tech": "fttc",
        "target": "core",
        "method": "twamp_light",
    }
    out = []

    def rtt(t: int, rtt_ms: float, jit: float) -> Record:
        return Record(
            "rtt",
            tags,
            {
                "sent": 750,
                "received": 750,
                "loss_pct": 0.0,
                "rtt_p50_ms": rtt_ms,
                "jitter_rfc3550_ms": jit,
                "burst_loss_200ms_pct": 0.0,
                "reorder_pct": 0.0,
            },
            t,
        )

    for i in range(20):
        out.append(rtt(at(d1, 10, 0, 15 * i), 10.0 + i, 1.0 + i))
    for i in range(10):
        out.append(rtt(at(d2, 10, 0, 15 * i), 10.0, 5.0))
    for i in range(5):
        out.append(rtt(at(d1, 3, 0, 15 * i), 500.0, 999.0))
    out.append(
        Record(
            "rtt",
            {**tags, "result": "timeout"},
            {"reason": "no reply", "sent": 750, "received": 0, "loss_pct": 100.0},
            at(d1, 10, 30),
        )
    )
    tp = {"site": "H00001", "icb": "QHM", "tech": "fttc", "target": "speed", "method": "http"}
    for i, v in enumerate((3.0, 4.0, 5.0, 6.0, 7.0)):
        out.append(
            Record("throughput", {**tp, "direction": "up"}, {"goodput_mbps": v}, at(d1, 20, i))
        )
    out.append(
        Record(
            "throughput",
            {**tp, "direction": "up", "result": "link_busy"},
            {"reason": "router shows 70% in use", "goodput_mbps": 0.1},
            at(d1, 21),
        )
    )
    for i, v in enumerate((30.0, 40.0)):
        out.append(
            Record("throughput", {**tp, "direction": "down"}, {"goodput_mbps": v}, at(d2, 20, i))
        )
    out.append(
        Record(
            "dsl_line",
            {
                "site": "H00001",
                "icb": "QHM",
                "tech": "fttc",
                "method": "snmp",
                "device": "192.0.2.1",
                "ifname": "dsl0",
                "detected_tech": "adsl",
                "result": "ok",
            },
            {"sync_down_kbps": 7600, "sync_up_kbps": 900, "tech_mismatch": True},
            at(d1, 12),
        )
    )
    # Y60010: media calls. Ordinary calls (method udp) MOS 4.3/4.2 up and 4.4/4.1 down; the
    # capacity search (method find_capacity) at 16 calls, MOS 1.5, is not call quality.
    # p10 of 2 values: k = floor(0.2 + 0.5) = 0 -> clamped to 1 -> the lower; worse direction:
    # down 4.1.
    mt = {"site": "Y60010", "icb": "QWE", "tech": "fttp", "target": "core-media", "profile": "hd"}
    for i, (d, m) in enumerate((("up", 4.3), ("up", 4.2), ("down", 4.4), ("down", 4.1))):
        out.append(
            Record(
                "media",
                {**mt, "method": "udp", "direction": d},
                {"voice_mos_g107": m, "loss_pct": 0.0, "calls": 1},
                at(d1, 11, i),
            )
        )
    for d in ("up", "down"):
        out.append(
            Record(
                "media",
                {**mt, "method": "find_capacity", "direction": d},
                {"voice_mos_g107": 1.5, "loss_pct": 9.0, "calls": 16},
                at(d1, 11, 30),
            )
        )
    return out


def estate_records() -> list[Record]:
    """Synthetic history for the other sites; Y71005 only up to 4 days ago (STALE)."""
    sites = [
        synthetic.SynthSite("Y81001", "QHM", "adsl", 6.0),
        synthetic.SynthSite("Y60010", "QWE", "fttp"),
        synthetic.SynthSite("Y60011", "QWE", "sogea", 1.0, 0.2),
        synthetic.SynthSite("RXA01", "QHM", "ethernet"),
    ]
    recs = list(
        synthetic.history(sites, NOW - 14 * DAY, NOW, rtt_every_s=1800, media_every_s=43200)
    )
    recs += synthetic.history(
        [synthetic.SynthSite("Y71005", "QUE", "adsl")],
        NOW - 14 * DAY,
        NOW - 4 * DAY,
        rtt_every_s=3600,
        seed=3,
    )
    return recs


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return hand_records() + estate_records()


@pytest.fixture(scope="module")
def spool_path(tmp_path_factory, records) -> Path:
    p = tmp_path_factory.mktemp("spool") / "spool.db"
    with Spool(p, ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(records)
    return p


@pytest.fixture
def influx_cfg(influxdb, records) -> StoreConfig:
    url, db = influxdb
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db)
    with InfluxV1(cfg) as c:
        for i in range(0, len(records), 5000):
            c.write(records[i : i + 5000])
    return cfg


def write_inventory(tmp_path: Path, spool: Path, store: str = "{kind: embedded}") -> Path:
    p = tmp_path / "inv.yaml"
    p.write_text(INVENTORY.format(store=store, spool=spool))
    return p


def inv_for(spool: Path):
    return loads(INVENTORY.format(store="{kind: embedded}", spool=spool), "inv.yaml")


WINDOW = readiness.Window(NOW, dt.timedelta(days=14))


def check_hand_site(store) -> None:
    inv = inv_for(Path("unused"))
    e = readiness.assess_estate(store, inv.sites, "gp_video", WINDOW)
    h = next(r for r in e.sites if r.ods == "H00001")
    assert (h.jitter_ms, h.rtt_ms, h.loss_pct) == (12.0, 19.0, 0.0)
    j = next(x for x in h.reasons if x.metric == "jitter_ms")
    assert "median of 2 clinic days; worst day 19 ms" in j.text
    assert (h.up_p10_mbps, h.down_p10_mbps) == (3.0, 30.0)
    assert h.capacity_calls == 1
    assert h.confidence.windows == 30 and h.confidence.sessions_with_data == 2
    assert h.confidence.excluded == {"link_busy": 1, "timeout": 1}
    assert h.confidence.throughput_samples == 7
    assert (h.detected_tech, h.tech_mismatch) == ("adsl", True)
    assert h.verdict == "READY"
    assert [m["ods"] for m in e.mismatches] == ["H00001"]
    assert {r.ods: r.verdict for r in e.sites}["Y71005"] == "STALE"
    assert {r.ods: r.verdict for r in e.sites}["RXC20"] == "NO DATA"
    assert {r.ods: r.verdict for r in e.sites}["Y81001"] == "NOT READY"
    assert next(r for r in e.sites if r.ods == "Y60010").media_mos == 4.1


def test_embedded_store_aggregates_match_the_hand_worked_numbers(spool_path) -> None:
    store = SqliteStore(spool_path)
    try:
        check_hand_site(store)
    finally:
        store.close()


def test_influxdb_aggregates_match_the_hand_worked_numbers(influx_cfg) -> None:
    store = InfluxStore(influx_cfg)
    try:
        check_hand_site(store)
    finally:
        store.close()


def test_same_report_from_influxdb_and_the_embedded_store(spool_path, influx_cfg) -> None:
    from netready.reports import render

    inv = inv_for(spool_path)
    for profile in ("gp_video", "virtual_outpatient", "imaging_transfer", "virtual_ward"):
        a = readiness.assess_estate(SqliteStore(spool_path), inv.sites, profile, WINDOW, "s")
        b = readiness.assess_estate(InfluxStore(influx_cfg), inv.sites, profile, WINDOW, "s")
        ja, jb = render.to_json_doc(a), render.to_json_doc(b)
        assert ja == jb, profile
        assert render.render_csv(a) == render.render_csv(b)
    verdicts = {r["verdict"] for r in ja["sites"]}
    assert {"READY", "NOT READY", "STALE", "NO DATA"} <= verdicts


# ------------------------------------------------------------------------------ schema


def test_report_queries_read_only_columns_of_the_schema(spool_path) -> None:
    """The embedded store's reader and its schema live in one module (netready/store.py).
    SQLite's authorizer records every column each report query really reads from ``points``
    (every question, and a whole estate assessment): exactly ``READS``, all of them columns of
    the schema ``TABLES`` declares, which is the table the spool created. A schema change
    that the reader does not follow fails here."""
    seen: set[str] = set()

    def note(action: int, table: str | None, column: str | None, _db, _trigger) -> int:
        if action == sqlite3.SQLITE_READ and table == "points" and column:
            seen.add(column)
        return sqlite3.SQLITE_OK

    store = SqliteStore(spool_path)
    try:
        store.db.set_authorizer(note)  # before any statement is prepared (and cached)
        sess = {"Y60010": [(NOW - 14 * DAY, NOW)]}  # its media calls (hand_records)
        aggs = (Agg("n", "voice_mos_g107"), Agg("p", "voice_mos_g107", 10.0))
        assert store.aggregate("media", aggs, sess, by="direction", exclude={"method": "x"})
        assert store.failures("rtt", ["H00001"], NOW - 14 * DAY, NOW + 1)
        assert store.latest("rtt", "rtt_p50_ms", ["H00001"], NOW - 14 * DAY, NOW + 1)
        assert store.detected_tech(["H00001"], NOW - 14 * DAY, NOW + 1) == {"H00001": "adsl"}
        inv = inv_for(spool_path)
        readiness.assess_estate(store, inv.sites, "gp_video", WINDOW)
    finally:
        store.close()
    assert seen == set(store_mod.READS)
    assert set(store_mod.READS) <= set(store_mod.POINTS_COLUMNS)
    db = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    try:
        created = tuple(r[1] for r in db.execute("PRAGMA table_info(points)"))
    finally:
        db.close()
    assert created == store_mod.POINTS_COLUMNS
    assert store_mod.POINTS_COLUMNS[0] == "id" and all(
        c in store_mod.INSERT_POINT for c in store_mod.POINTS_COLUMNS[1:]
    )


def test_reader_refuses_a_spool_without_the_columns_it_reads(tmp_path) -> None:
    """A spool whose points table lacks a column the reader needs (another version, another
    program's file) is a one-line StoreError naming the column, not an SQL error mid-report."""
    bad = tmp_path / "old.db"
    db = sqlite3.connect(bad)
    db.execute("CREATE TABLE points (id INTEGER PRIMARY KEY, measurement, time_ms, tags, fields)")
    db.commit()
    db.close()
    with pytest.raises(
        StoreError, match=r"old\.db: cannot read the embedded store: no column site"
    ):
        SqliteStore(bad)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="no points table"):
        SqliteStore(other)


# ------------------------------------------------------------------------------ CLI


def run(cmd, args: list[str]):
    return CliRunner().invoke(cmd, args, catch_exceptions=False)


def test_report_json_csv_md_and_exit_codes(tmp_path, spool_path) -> None:
    inv = write_inventory(tmp_path, spool_path)
    base = ["--inventory", str(inv), "--now", str(NOW)]
    r = run(report, [*base, "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout is clean JSON
    assert doc["schema"] == 1 and doc["profile"]["name"] == "gp_video"
    assert [s["ods"] for s in doc["sites"]][:2] == ["H00001", "Y81001"]
    assert doc["counts"]["NO DATA"] == 1 and doc["counts"]["STALE"] == 1
    # ADSL/WLR lines, most registered patients first; H00001 is declared FTTC but its router
    # trains ADSL, so it is at risk too.
    assert [(p["ods"], p["why"]) for p in doc["pstn_risk"]] == [
        ("H00001", "router reports adsl"),
        ("Y81001", "declared adsl, line on WLR"),
        ("Y71005", "declared adsl, line on WLR"),
    ]
    assert doc["upgrade_priority"][0]["ods"] == "Y81001"
    assert any(x["by"] == "detected_tech" and x["group"] == "adsl" for x in doc["cohorts"])

    rows = list(csv.DictReader(io.StringIO(run(report, [*base, "--format", "csv"]).stdout)))
    assert len(rows) == 7 and rows[0]["ods"] == "H00001" and rows[0]["capacity_calls"] == "1"
    assert rows[0]["excluded"] == "link_busy=1;timeout=1"

    md = run(report, [*base, "--format", "md"]).stdout
    assert "| H00001 | Hand Checked Surgery |" in md and "## Upgrade priority" in md

    table = run(report, base).stdout
    assert "H00001" in table and "NOT READY" in table and "Why not READY" in table

    ok = run(report, [*base, "--site", "H00001", "--format", "json"])
    assert ok.exit_code == 0 and [s["ods"] for s in json.loads(ok.stdout)["sites"]] == ["H00001"]
    bad = run(report, [*base, "--site", "Y81001", "--site", "H00001"])
    assert bad.exit_code == 3
    qwe = json.loads(run(report, [*base, "--icb", "QWE", "--format", "json"]).stdout)
    assert {s["ods"] for s in qwe["sites"]} == {"Y60010", "Y60011"}


def test_report_bad_input_is_one_line_exit_2(tmp_path, spool_path) -> None:
    inv = write_inventory(tmp_path, spool_path)
    for args, needle in (
        (["--site", "ZZZ999"], "no site with ODS code ZZZ999"),
        (["--since", "fortnight"], "--since 'fortnight'"),
        (["--now", "yesterday"], "--now 'yesterday'"),
    ):
        r = CliRunner().invoke(report, ["--inventory", str(inv), *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.output
    (tmp_path / "broken.yaml").write_text("sites: [\n")
    r = CliRunner().invoke(report, ["--inventory", str(tmp_path / "broken.yaml")])
    assert r.exit_code == 2 and "broken.yaml:" in r.stderr and "malformed YAML" in r.stderr


def test_report_without_any_data_renders_no_data(tmp_path) -> None:
    inv = write_inventory(tmp_path, tmp_path / "never-created.db")
    r = run(report, ["--inventory", str(inv)])
    assert r.exit_code == 0
    # rich wraps the footer at spaces, and the store's path is as long as pytest's tmp_path
    assert r.stdout.count("NO DATA") >= 7 and "not created yet" in " ".join(r.stdout.split())
    doc = json.loads(run(report, ["--inventory", str(inv), "--format", "json"]).stdout)
    assert doc["counts"]["NO DATA"] == 7
    assert not (tmp_path / "never-created.db").exists()  # a report never creates the store


def test_report_store_unreachable_is_exit_1(tmp_path) -> None:
    inv = write_inventory(
        tmp_path, tmp_path / "x.db", "{kind: influxdb_v1, url: 'http://127.0.0.1:9', database: nr}"
    )
    r = CliRunner().invoke(report, ["--inventory", str(inv)])
    assert r.exit_code == 1 and "unreachable" in r.stderr and "Traceback" not in r.output


def test_assess_writes_readiness_into_the_embedded_store(tmp_path, records) -> None:
    sp = tmp_path / "spool.db"
    with Spool(sp, ship=False, embedded=True, max_age_s=10**9) as s:
        s.enqueue(records)
    inv = write_inventory(tmp_path, sp)
    r = run(assess, ["--inventory", str(inv), "--now", str(NOW)])
    assert r.exit_code == 0 and r.stdout.startswith("wrote 7 readiness records (gp_video)")
    with Spool(sp, ship=False, embedded=True) as s:
        got = {x.tags["site"]: x for x in s.records("readiness")}
    assert set(got) == {"H00001", "Y81001", "Y60010", "Y60011", "RXA01", "Y71005", "RXC20"}
    h = got["H00001"]
    assert h.time_ms == NOW and h.tags["profile"] == "gp_video"
    assert h.fields["verdict"] == "READY" and h.fields["capacity_calls"] == 1
    assert h.fields["capacity"] == 1 and h.fields["jitter_ms"] == 12.0
    assert got["RXC20"].fields["verdict_code"] == 4
    # dry run writes nothing more
    r = run(
        assess, ["--inventory", str(inv), "--now", str(NOW + 1000), "--dry-run", "--format", "json"]
    )
    assert len(json.loads(r.stdout)) == 7
    with Spool(sp, ship=False, embedded=True) as s:
        assert len(s.records("readiness")) == 7


def test_assess_writes_readiness_into_influxdb(tmp_path, influx_cfg) -> None:
    store = f"{{kind: influxdb_v1, url: '{influx_cfg.url}', database: {influx_cfg.database}}}"
    inv = write_inventory(tmp_path, tmp_path / "unused.db", store)
    r = run(assess, ["--inventory", str(inv), "--now", str(NOW), "--site", "H00001"])
    assert r.exit_code == 0, r.output
    resp = httpx.post(
        f"{influx_cfg.url}/query",
        data={
            "db": influx_cfg.database,
            "epoch": "ms",
            "q": 'SELECT "verdict", "capacity", "jitter_ms" FROM "readiness" GROUP BY "site", "profile"',
        },
    )
    series = resp.json()["results"][0]["series"]
    assert len(series) == 1 and series[0]["tags"] == {"site": "H00001", "profile": "gp_video"}
    assert series[0]["values"] == [[NOW, "READY", 1, 12.0]]
    # and the report over InfluxDB exits 3 for a named site that is not ready
    r = CliRunner().invoke(report, ["--inventory", str(inv), "--now", str(NOW), "--site", "Y81001"])
    assert r.exit_code == 3


def test_site_without_clinic_hours_data_is_judged_on_all_hours(tmp_path, influxdb) -> None:
    """A new agent installed in the evening (or the demo at night): no rtt window in clinic
    hours, so the quality figures come from all hours, with a reason and low confidence."""
    (d1,) = clinic_days(1)
    tags = {"site": "H00001", "icb": "QHM", "tech": "fttc", "target": "core"}
    recs = [
        Record(
            "rtt",
            tags,
            {
                "rtt_p50_ms": 10.0 + i,
                "jitter_rfc3550_ms": 2.0,
                "loss_pct": 0.0,
                "burst_loss_200ms_pct": 0.0,
                "reorder_pct": 0.0,
            },
            at(d1, 22, 0, 15 * i),
        )
        for i in range(10)
    ]
    sp = tmp_path / "night.db"
    with Spool(sp, ship=False, embedded=True, max_age_s=10**9) as s:
        s.enqueue(recs)
    url, db = influxdb
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db)
    with InfluxV1(cfg) as c:
        c.write(recs)
    site = inv_for(sp).sites[:1]
    for store in (SqliteStore(sp), InfluxStore(cfg)):
        e = readiness.assess_estate(store, site, "gp_video", WINDOW)
        h = e.sites[0]
        # 10 windows, RTT 10..19: p95 k = floor(9.5 + 0.5) = 10 -> 19
        assert (h.rtt_ms, h.jitter_ms, h.confidence.windows) == (19.0, 2.0, 10)
        assert h.confidence.level == "low"
        assert any(r.short == "judged on all hours" for r in h.reasons)
        assert "all hours: none in clinic hours" in next(
            r.text for r in h.reasons if r.metric == "jitter_ms"
        )
        assert h.verdict == "MARGINAL"  # quality fine, but no throughput: capacity unknown


def _age_out(client: InfluxV1, db: str, rp: str, horizon_ms: int) -> int:
    """Drop the raw policy's shards that end before ``horizon_ms``: what influxd's retention
    service does every 30 minutes (it is off in the test server, tests/influxd.py)."""
    shards = client.query("SHOW SHARDS", epoch=None)
    dropped = 0
    for res in shards:
        if res.name != db:
            continue
        for row in res.dicts():
            end = dt.datetime.fromisoformat(str(row["end_time"]).replace("Z", "+00:00"))
            if row["retention_policy"] == rp and end.timestamp() * 1000 <= horizon_ms:
                client.query(f"DROP SHARD {int(row['id'])}", epoch=None)
                dropped += 1
    return dropped


def test_90_day_report_reads_the_hourly_series_after_raw_data_aged_out(influxdb) -> None:
    """90 days of history; `store init` with a long raw retention, the continuous queries run
    over it (backfill), then the raw retention is cut to 30 days and the old raw shards dropped.
    A 90-day report still judges the sites whose data is older than 30 days, from the hourly
    series: the throughput p10 exactly as the raw points give it (one test per 6 h: one point an
    hour), the rtt figures as the nearest-rank percentile of the hourly percentiles."""
    from netready import retention
    from netready.store import nearest_rank

    url, db = influxdb
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db)
    client = InfluxV1(cfg)
    plan = retention.Plan(db, raw_duration="100d")
    retention.init(client, plan)
    sites = synthetic.estate(3)
    old = list(synthetic.history(sites[:2], NOW - 90 * DAY, NOW - 40 * DAY, rtt_every_s=300))
    recent = list(synthetic.history(sites[2:], NOW - 10 * DAY, NOW, rtt_every_s=300))
    for i in range(0, len(old + recent), 20_000):
        client.write((old + recent)[i : i + 20_000])
    assert retention.backfill(client, plan, NOW - 91 * DAY, NOW) > 0
    changes = retention.init(client, retention.Plan(db))  # the default: raw 30 days
    assert [str(c) for c in changes if c.action == "altered"] == [
        "altered   retention policy raw (100d, default -> 30d, default)"
    ]
    assert _age_out(client, db, "raw", NOW - 30 * DAY) > 0
    raw_old = client.query(
        f'SELECT count("rtt_p50_ms") FROM "raw"."rtt" WHERE time < {NOW - 31 * DAY}ms'
    )
    assert raw_old == []  # the raw points of the old sites are gone

    inv = loads(
        "version: 1\nstore: {kind: embedded}\nsites:\n"
        + "".join(
            f"  - {{ods: {s.ods}, name: Site {s.ods}, type: gp_practice, icb: {s.icb}, "
            f"link: {{tech: {s.tech}, down_mbps: 40, up_mbps: 10}}}}\n"
            for s in sites
        ),
        "inv.yaml",
    )
    store = InfluxStore(cfg)
    w90 = readiness.Window(NOW, dt.timedelta(days=90))
    w14 = readiness.Window(NOW, dt.timedelta(days=14))
    assert store.hourly("rtt", w90.t0) and not store.hourly("rtt", w14.t0)
    e90 = {r.ods: r for r in readiness.assess_estate(store, inv.sites, "gp_video", w90).sites}
    e14 = {r.ods: r for r in readiness.assess_estate(store, inv.sites, "gp_video", w14).sites}
    old_site = sites[0].ods
    assert e14[old_site].verdict == "NO DATA"  # 14 days: raw only, and nothing is left there
    assert e90[old_site].verdict != "NO DATA"

    # throughput: exact, from the raw records themselves
    for direction, got in (
        ("up", e90[old_site].up_p10_mbps),
        ("down", e90[old_site].down_p10_mbps),
    ):
        vals = sorted(
            float(r.fields["goodput_mbps"])
            for r in old
            if r.measurement == "throughput"
            and r.tags["site"] == old_site
            and r.tags["direction"] == direction
            and r.ok
        )
        assert got == vals[nearest_rank(len(vals), 10) - 1], (direction, e90[old_site])

    # rtt: per clinic session, p95 of the hourly p95s of the hours starting in the session;
    # the site's figure is the median over sessions
    hours = {
        int(row["time"]): row["rtt_p50_ms_p95"]
        for res in client.query(
            f'SELECT "rtt_p50_ms_p95" FROM "hourly"."rtt" WHERE "site" = \'{old_site}\' '
            "AND (\"result\" = '' OR \"result\" = 'ok')"
        )
        for row in res.dicts()
    }
    site = next(s for s in inv.sites if s.ods == old_site)
    per_session = []
    for a, b in readiness.site_sessions(site, PROFILES["gp_video"], w90):
        v = sorted(x for t, x in hours.items() if a - a % 3_600_000 <= t < b and x is not None)
        if v:
            per_session.append(v[nearest_rank(len(v), 95) - 1])
    assert len(per_session) > 20
    assert e90[old_site].rtt_ms == readiness.combine(per_session).value
    # and the site with only recent data reads the same either way
    new_site = sites[2].ods
    assert e90[new_site].verdict == e14[new_site].verdict != "NO DATA"
    store.close()
    client.close()
