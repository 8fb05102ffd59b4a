"""The estate over time: weekly verdict history and "what changed", read from the readiness
records `netready assess` writes, on the embedded store and on real InfluxDB (the same
answers from both), and the report's sections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from netready.reports.assess import VERDICT_CODE
from netready.reports.history import history
from netready.reports.query import InfluxStore

from netready.cli.report import report
from netready.influx import InfluxV1
from netready.inventory import StoreConfig, loads
from netready.records import Record
from netready.spool import Spool
from netready.store import WEEK_MS, SqliteStore, week_start

DAY = 86_400_000
NOW = 1_792_000_000_000  # 2026-10-14 (a Wednesday) ...
W0 = week_start(NOW) - 3 * WEEK_MS  # four weeks: W0 .. the current one


def site(ods: str, tech: str = "fttc") -> dict[str, object]:
    return {
        "ods": ods,
        "name": f"Site {ods}",
        "type": "gp_practice",
        "icb": "QHM",
        "link": {"tech": tech, "down_mbps": 40, "up_mbps": 10},
    }


SITES = ["A00001", "B00002", "C00003", "D00004", "E00005", "F00006", "G00007"]


def inventory() -> str:
    return yaml.safe_dump(
        {"version": 1, "sites": [site(o, "fttp" if o == "B00002" else "fttc") for o in SITES]}
    )


def rec(ods: str, t: int, verdict: str, tech: str = "fttc", cap: float | None = None,
        down: float | None = None, profile: str = "gp_video") -> Record:  # fmt: skip
    return Record(
        "readiness",
        {"site": ods, "icb": "QHM", "tech": tech, "profile": profile},
        {
            "verdict": verdict,
            "verdict_code": VERDICT_CODE[verdict],
            "capacity_calls": cap,
            "down_p10_mbps": down,
        },
        t,
    )


def week(i: int, day: int = 1) -> int:
    return W0 + i * WEEK_MS + day * DAY


def records() -> list[Record]:
    r = []
    for i in range(4):
        # A: READY for three weeks, then NOT READY (early in week 3 still READY: newest wins)
        r.append(rec("A00001", week(i), "READY", cap=4))
        # B: ADSL, NOT READY; upgraded to FTTP in week 2 (both techs that week), READY since
        if i < 2:
            r.append(rec("B00002", week(i), "NOT READY", "adsl", cap=0, down=6))
        if i >= 2:
            r.append(rec("B00002", week(i, 2), "READY", "fttp", cap=8, down=70))
        # C: MARGINAL at 2 calls, then READY at 6 calls on the same line (capacity rose)
        r.append(rec("C00003", week(i), "MARGINAL" if i < 3 else "READY", cap=2 if i < 3 else 6))
        # D: READY, then its agent went silent: STALE
        r.append(rec("D00004", week(i), "READY" if i < 2 else "STALE", cap=3))
        # E: READY all along, nothing changed; a record of another profile is not read
        r.append(rec("E00005", week(i), "READY", cap=5))
        r.append(rec("E00005", week(i, 3), "NOT READY", profile="imaging"))
    r.append(rec("A00001", week(3, 2), "NOT READY", cap=1))
    r.append(rec("B00002", week(2, 0), "NOT READY", "adsl", cap=0, down=6))
    # G: as B, but the store keeps the declared tech as a field (no series fork on upgrade)
    for i in range(4):
        tech = "adsl" if i < 3 else "fttp"
        v = "MARGINAL" if i < 3 else "READY"
        r.append(
            Record(
                "readiness",
                {"site": "G00007", "icb": "QHM", "profile": "gp_video"},
                {"verdict": v, "verdict_code": VERDICT_CODE[v], "capacity_calls": 1, "tech": tech},
                week(i),
            )
        )
    # F: one READY week, then nothing at all
    r.append(rec("F00006", week(0), "READY", cap=2))
    return r


def expect(h) -> None:  # type: ignore[no-untyped-def]
    assert h.weeks == [W0 + i * WEEK_MS for i in range(4)]
    line = {o: [None if w is None else w.verdict for w in ws] for o, ws in h.sites.items()}
    assert line["A00001"] == ["READY", "READY", "READY", "NOT READY"]
    assert line["B00002"] == ["NOT READY", "NOT READY", "READY", "READY"]
    assert [w.tech for w in h.sites["B00002"]] == ["adsl", "adsl", "fttp", "fttp"]
    assert line["D00004"] == ["READY", "READY", "STALE", "STALE"]
    assert line["E00005"] == ["READY"] * 4
    assert line["F00006"] == ["READY", None, None, None]
    got = {c.ods: (c.kind, c.why) for c in h.changes}
    assert got == {
        "A00001": ("worse", "READY → NOT READY"),
        "C00003": ("upgraded", "MARGINAL → READY; capacity 2 → 6 calls"),
        "D00004": ("stopped reporting", "was READY, now STALE: the agent is not sending data"),
        "F00006": ("stopped reporting", "nothing assessed for 3 weeks"),
        "G00007": ("upgraded", "MARGINAL → READY; tech adsl → fttp"),
    }  # B: its newest week against the one before, both READY on fttp: nothing changed


def test_history_from_the_embedded_store(tmp_path: Path) -> None:
    p = tmp_path / "spool.db"
    with Spool(p, ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(records())
    inv = loads(inventory())
    store = SqliteStore(p)
    try:
        expect(history(store, inv.sites, "gp_video", NOW, weeks=4))
        # the week of the upgrade, seen as the newest week: upgraded, the tech says why
        h = history(store, inv.sites, "gp_video", week(2, 5), weeks=3)
        b = next(c for c in h.changes if c.ods == "B00002")
        assert (b.kind, b.why) == (
            "upgraded",
            "NOT READY → READY; tech adsl → fttp; capacity 0 → 8 calls; "
            "sustained down 6 → 70 Mbit/s",
        )
    finally:
        store.close()


def test_history_from_influxdb_is_the_same(influxdb: tuple[str, str]) -> None:
    url, db = influxdb
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db)
    with InfluxV1(cfg) as c:
        c.write(records())
    inv = loads(inventory())
    store = InfluxStore(cfg)
    try:
        expect(history(store, inv.sites, "gp_video", NOW, weeks=4))
        h = history(store, inv.sites, "gp_video", week(2, 5), weeks=3)
        assert next(c for c in h.changes if c.ods == "B00002").kind == "upgraded"
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["json", "md", "html", "table"])
def test_report_shows_history_and_what_changed(tmp_path: Path, fmt: str) -> None:
    spool = tmp_path / "spool.db"
    with Spool(spool, ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(records())
    inv = tmp_path / "inv.yaml"
    inv.write_text(inventory())
    args = ["--inventory", str(inv), "--spool", str(spool), "--now", str(NOW), "--format", fmt]
    r = CliRunner().invoke(report, [*args, "--history-weeks", "4"])
    assert r.exit_code == 0, r.output
    if fmt == "json":
        doc = json.loads(r.stdout)
        assert [c["ods"] for c in doc["history"]["changes"]] == [
            "A00001", "D00004", "F00006", "C00003", "G00007",
        ]  # fmt: skip
        assert doc["history"]["sites"]["A00001"][3]["verdict"] == "NOT READY"
    else:
        assert "Verdict history" in r.stdout and "What changed" in r.stdout
        assert "stopped reporting" in r.stdout and "READY → NOT READY" in r.stdout
    r0 = CliRunner().invoke(report, [*args, "--history-weeks", "0"])
    assert r0.exit_code == 0 and "What changed" not in r0.stdout and '"history"' not in r0.stdout
