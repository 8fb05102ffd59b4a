"""`netready inventory import-ods`: GP practices from an ODS epraccur file (the published
layout: no header row, 27 columns; made here, netready/ods.py documents the columns), merged
into an inventory without losing local edits or comments."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from netready.cli.core import inventory
from netready.errors import ConfigError
from netready.inventory import load
from netready.ods import COLUMNS, import_ods, parse

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 11, 2)


def row(code: str, name: str, icb: str = "QHM", *, status: str = "A", close: str = "",
        setting: str = "4", postcode: str = "NE1 4LP", commissioner: str = "13T") -> list[str]:  # fmt: skip
    r = [""] * COLUMNS
    r[0], r[1], r[2], r[3] = code, name, "Y63", icb
    r[4], r[5], r[8], r[9] = "THE HEALTH CENTRE", "1 HIGH STREET", "TYNE AND WEAR", postcode
    r[10], r[11], r[12], r[13] = "19740401", close, status, "B"
    r[14], r[15], r[17], r[21] = commissioner, "20220701", "0191 000 0000", "0"
    r[23], r[25] = commissioner, setting
    return r


def epraccur(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


ROWS = [
    row("Y81001", "RIVERSIDE SURGERY (RENAMED)"),  # in the example inventory: refreshed
    row("Y81002", "Moorside Medical Centre"),  # same name and ICB: unchanged
    row("A82001", "NEW PRACTICE ONE", "QE1", commissioner="01H"),  # added
    row("A82002", "NEW PRACTICE TWO", "QE1"),  # added
    row("Y81003", "HARBOUR VIEW", status="C", close="20240331"),  # closed, in the inventory
    row("A82003", "CLOSING SOON", close="20261031"),  # close date passed: not active
    row("A82004", "OPENS LATER", close="20270101"),  # closes in future: still active
    row("Y99001", "OUT OF HOURS SERVICE", setting="2"),  # not a GP practice
    row("A82005", "DORMANT PRACTICE", status="D"),
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    inv = tmp_path / "site_inventory.yaml"
    shutil.copy(ROOT / "site_inventory.yaml", inv)
    ods = tmp_path / "epraccur.csv"
    ods.write_text(epraccur(ROWS))
    return inv, ods


def test_parse_keeps_active_gp_practices_only() -> None:
    p = parse(epraccur(ROWS), "epraccur.csv", TODAY)
    assert [x.ods for x in p.active] == ["Y81001", "Y81002", "A82001", "A82002", "A82004"]
    assert p.closed == {"Y81003", "A82003", "A82005"}
    assert p.skipped == 1
    one = p.active[2]
    assert (one.name, one.icb, one.postcode, one.commissioner) == (
        "NEW PRACTICE ONE", "QE1", "NE1 4LP", "01H",
    )  # fmt: skip
    assert one.open_date == dt.date(1974, 4, 1)


def test_merge_keeps_local_edits_and_comments(files: tuple[Path, Path]) -> None:
    inv, ods = files
    before = load(inv)
    text_before = inv.read_text()
    s = import_ods(inv, ods, today=TODAY)
    assert s.added == ["A82001", "A82002", "A82004"]
    assert s.refreshed == ["Y81001"]
    assert s.unchanged == 1 and s.closed_in_inventory == ["Y81003"] and s.written
    after = load(inv)
    old, new = before.site("Y81001"), after.site("Y81001")
    assert new.name == "RIVERSIDE SURGERY (RENAMED)"
    # the local edits stay: link, router, clinics, coordinates
    assert (new.link, new.router, new.clinic_hours, new.planned_clinics, new.lat) == (
        old.link, old.router, old.clinic_hours, old.planned_clinics, old.lat,
    )  # fmt: skip
    assert after.site("Y81003") == before.site("Y81003")  # closed in ODS: kept, reported
    assert after.defaults == before.defaults and after.store == before.store
    added = after.site("A82001")
    assert (added.type, added.icb, added.link.tech) == ("gp_practice", "QE1", "unknown")
    text = inv.read_text()
    # every comment line of the original survives, in order
    comments = [ln.strip() for ln in text_before.splitlines() if ln.strip().startswith("#")]
    kept = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]
    assert [c for c in kept if c in comments] == comments
    assert "from ODS epraccur: NE1 4LP, commissioner 01H, opened 1974-04-01" in text
    assert 'start: "08:00"' in text  # quoting kept (an unquoted 08:00 is a number in YAML)
    # a second import changes nothing and does not rewrite the file
    again = import_ods(inv, ods, today=TODAY)
    assert (again.added, again.refreshed, again.written) == ([], [], False)
    assert inv.read_text() == text


def test_bootstrap_a_new_inventory_and_dry_run(tmp_path: Path, files: tuple[Path, Path]) -> None:
    _, ods = files
    new = tmp_path / "new.yaml"
    r = CliRunner().invoke(
        inventory,
        ["import-ods", str(ods), "--inventory", str(new), "--today", "2026-11-02", "--dry-run"],
    )
    assert r.exit_code == 0, r.output
    assert "would add 5" in r.stdout and not new.exists()
    r = CliRunner().invoke(
        inventory,
        ["import-ods", str(ods), "--inventory", str(new), "--today", "2026-11-02",
         "--format", "json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == ["Y81001", "Y81002", "A82001", "A82002", "A82004"]
    assert [s.ods for s in load(new).sites] == ["Y81001", "Y81002", "A82001", "A82002", "A82004"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"Organisation Code","Name"\n', "epraccur.csv:1: 2 columns"),
        (epraccur([["ORG CODE", *[""] * 26]]), "epraccur.csv:1: column 1 (organisation code): "
         "'ORG CODE' (a header row? epraccur has none)"),
        (epraccur([row("A82001", "X"), row("A82001", "Y")]), "epraccur.csv:2: organisation "
         "code A82001 appears twice"),
        (epraccur([row("A82001", "X", close="2024-03-31")]), "epraccur.csv:1: column 12 "
         "(close date): '2024-03-31' is not a date YYYYMMDD"),
        (epraccur([row("A82001", "X\x07")]), "epraccur.csv:1: a control character"),
    ],
)  # fmt: skip
def test_bad_ods_files_are_one_line_and_leave_the_inventory_alone(
    files: tuple[Path, Path], content: str, message: str
) -> None:
    inv, ods = files
    ods.write_text(content)
    text = inv.read_text()
    with pytest.raises(ConfigError) as e:
        import_ods(inv, ods, today=TODAY)
    assert str(e.value).startswith(str(ods.parent / message)) or message in str(e.value)
    assert inv.read_text() == text
    r = CliRunner().invoke(inventory, ["import-ods", str(ods), "--inventory", str(inv)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
