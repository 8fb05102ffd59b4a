"""``netready report --profile all``: every site graded for all four profiles from one reading
of the store, on the real stores of tests/test_report_store.py (the embedded SQLite spool and a
real influxd 1.6) and through the command as a user runs it.

- The grades, verdicts and figures of the one run equal those of four single-profile runs,
  site by site, on both stores; the one run asks the store fewer questions than the four.
- JSON: per site ``grades`` (profile -> grade, reason, verdict), the ``profiles`` list, schema 1
  and every existing key as before; CSV one ``grade_<profile>`` column per profile; Markdown and
  the terminal a grade-per-use table; ``assess --profile all`` writes one readiness point per
  site and profile (the Grafana per-profile grade table reads them).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import test_report_store as store_tests
from netready.reports import assess as assessment
from netready.reports import readiness, render
from netready.reports.query import InfluxStore
from test_report_store import NOW, WINDOW, inv_for, run, write_inventory

from netready.cli.report import assess, report
from netready.rubric import PROFILES
from netready.spool import Spool
from netready.store import SqliteStore

# the real stores of tests/test_report_store.py (fixtures, by name)
records = store_tests.records
spool_path = store_tests.spool_path
influx_cfg = store_tests.influx_cfg


class Counting:
    """A store that counts the questions asked of it (every public method but close)."""

    def __init__(self, store: Any) -> None:
        self.store, self.asked = store, 0
        self.concurrent = getattr(store, "concurrent", False)

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.store, name)
        if name == "close" or not callable(fn):
            return fn

        def counted(*a: Any, **kw: Any) -> Any:
            self.asked += 1
            return fn(*a, **kw)

        return counted


@pytest.mark.parametrize("kind", ["embedded", "influxdb"])
def test_all_profiles_in_one_reading_equal_four_single_runs(
    kind: str, spool_path, influx_cfg
) -> None:
    inv = inv_for(spool_path)

    def store() -> Counting:
        return Counting(SqliteStore(spool_path) if kind == "embedded" else InfluxStore(influx_cfg))

    one = store()
    e = readiness.assess_profiles(one, inv.sites, WINDOW, "s")
    assert e.by_profile is not None and list(e.by_profile) == list(PROFILES)
    singles = 0
    for name in PROFILES:
        s = store()
        single = readiness.assess_estate(s, inv.sites, name, WINDOW, "s")
        singles += s.asked
        assert [r.to_dict() for r in e.by_profile[name]] == [r.to_dict() for r in single.sites]
        if name == "gp_video":  # the rest of the report is the default profile's
            assert render.to_json_doc(e)["by_icb"] == render.to_json_doc(single)["by_icb"]
            assert [r.to_dict() for r in e.sites] == [r.to_dict() for r in single.sites]
    # one set of questions: the clinic and the whole-window rtt aggregates once each
    assert one.asked < singles / 2, (one.asked, singles)
    g = e.grades()
    assert set(g) == {s.ods for s in inv.sites}
    # the hand-worked site: READY for GP video; somewhere the grade differs by use
    assert g["H00001"]["gp_video"]["verdict"] == "READY"
    assert any(len({v["grade"] for v in gs.values()}) > 1 for gs in g.values())
    assert g["RXC20"] == {p: {"grade": None, "reason": "no data", "verdict": "NO DATA"}
                          for p in PROFILES}  # fmt: skip


def test_report_profile_all_json_csv_md_table(tmp_path, spool_path) -> None:
    inv = write_inventory(tmp_path, spool_path)
    base = ["--inventory", str(inv), "--now", str(NOW)]
    single = json.loads(run(report, [*base, "--format", "json"]).stdout)
    r = run(report, [*base, "--profile", "all", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    # added keys only: schema 1, the single report's keys and the default profile's figures
    assert doc["schema"] == 1 and doc["profile"]["name"] == "gp_video"
    assert set(single) <= set(doc) and set(doc) - set(single) == {"profiles"}
    assert [p["name"] for p in doc["profiles"]] == list(PROFILES)
    assert {r["profile"] for r in doc["rubric"]} == set(PROFILES)
    for a, b in zip(doc["sites"], single["sites"], strict=True):
        assert {k: v for k, v in a.items() if k != "grades"} == b
        assert set(a["grades"]) == set(PROFILES)
        assert a["grades"]["gp_video"] == {
            "grade": b["grade"],
            "reason": b["grade_reason"],
            "verdict": b["verdict"],
        }
    for name in ("virtual_ward", "imaging_transfer"):
        one = json.loads(run(report, [*base, "--profile", name, "--format", "json"]).stdout)
        got = {s["ods"]: s["grades"][name] for s in doc["sites"]}
        assert got == {
            s["ods"]: {"grade": s["grade"], "reason": s["grade_reason"], "verdict": s["verdict"]}
            for s in one["sites"]
        }

    rows = list(csv.DictReader(io.StringIO(run(report, [*base, "--profile", "all",
                                                         "--format", "csv"]).stdout)))  # fmt: skip
    by = {s["ods"]: s for s in doc["sites"]}
    for row in rows:
        for p in PROFILES:
            assert row[f"grade_{p}"] == (by[row["ods"]]["grades"][p]["grade"] or "")
    plain = run(report, [*base, "--format", "csv"]).stdout
    assert "grade_gp_video" not in plain  # the single-profile report is unchanged

    md = run(report, [*base, "--profile", "all", "--format", "md"]).stdout
    h = by["H00001"]["grades"]
    assert "## Grade per use" in md
    assert "| site | name | 1:1 GP video | 3-party clinic | imaging | virtual ward |" in md
    line = next(x for x in md.splitlines() if x.startswith("| H00001 | Hand Checked Surgery |")
                and "Grade per use" not in x and h["virtual_ward"]["grade"] in x)  # fmt: skip
    assert line.count(":") >= 4  # word: reason, for each of the four uses
    assert "## Grade per use" not in run(report, [*base, "--format", "md"]).stdout

    table = run(report, [*base, "--profile", "all"]).stdout
    assert "Grade per use" in table and "virtual ward" in table
    grade_line = next(x for x in table.splitlines() if "H00001" in x and "Hand" in x
                      and x.count("│") == 7)  # fmt: skip
    assert [c.strip() for c in grade_line.split("│")[3:7]] == [
        h[p]["grade"] or "No grade" for p in PROFILES
    ]


def test_report_profile_all_exit_code_is_the_default_profiles(tmp_path, spool_path) -> None:
    inv = write_inventory(tmp_path, spool_path)
    base = ["--inventory", str(inv), "--now", str(NOW), "--profile", "all"]
    assert run(report, [*base, "--site", "H00001"]).exit_code == 0
    assert run(report, [*base, "--site", "Y81001"]).exit_code == 3


def test_assess_profile_all_writes_a_point_per_site_and_profile(tmp_path, records) -> None:
    sp = tmp_path / "spool.db"
    with Spool(sp, ship=False, embedded=True, max_age_s=10**9) as s:
        s.enqueue(records)
    inv = write_inventory(tmp_path, sp)
    r = run(assess, ["--inventory", str(inv), "--now", str(NOW), "--profile", "all"])
    assert r.exit_code == 0 and r.stdout.startswith("wrote 28 readiness records (all profiles)")
    with Spool(sp, ship=False, embedded=True) as s:
        got = {(x.tags["site"], x.tags["profile"]): x.fields for x in s.records("readiness")}
    assert len(got) == 28 and {p for _, p in got} == set(PROFILES)
    sel = assessment.Selection(str(inv), str(sp), now=str(NOW), profile="virtual_ward")
    ward = {x.ods: x for x in assessment.build(sel).sites}
    for ods, x in ward.items():
        assert got[(ods, "virtual_ward")]["grade"] == (x.grade or assessment.NO_GRADE)
        assert got[(ods, "virtual_ward")]["verdict"] == x.verdict
