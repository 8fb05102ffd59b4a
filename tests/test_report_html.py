"""The HTML report is one self-contained NHS.UK-styled file that a real browser renders offline.

Debian's Chromium, headless and offline (reports/screenshot.py: a dead proxy), ``--dump-dom``
must contain every estate row, the estate charts and each site's history as small multiples,
every chart named by its text alternative and followed by its data table; the screenshot must
not be blank and must show the NHS.UK header blue and the verdict tag colours.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import reporting
from netready.reports.screenshot import dump_dom, screenshot
from PIL import Image

ESTATE = ["Y81001", "Y81002", "Y81003", "Y60010", "Y60011", "RXA01", "Y71005", "RXC20"]
MEASURED = ["Y81001", "Y81002", "Y81003", "Y60010", "RXA01"]


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reporting.written(tmp_path_factory, "html")


def test_html_is_self_contained(html_report: Path) -> None:
    text = html_report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # 2 estate charts + one history chart per site with measurements
    assert len(re.findall(r"<svg[\s>]", text)) == 2 + len(MEASURED)
    # nothing to fetch: no scripts, stylesheets, images or fonts from anywhere; the NHS.UK
    # icons are data: URIs and ``url(#clip)`` / ``href="#id"`` point inside the page
    assert not re.search(r"<script|<link|<img|@import|@font-face", text, re.I)
    assert not re.search(r"""url\((?!#|"data:)""", text, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)
    # the NHS.UK frontend, inlined, with its version
    assert "/*! nhsuk-frontend 10.6.1 (MIT" in text and ".nhsuk-header{" in text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids)), "an element id is used twice (two charts' SVG defs?)"


def test_every_chart_has_a_text_alternative_and_a_data_table(html_report: Path) -> None:
    text = html_report.read_text()
    figures = re.findall(
        r'<figure class="nr-figure">(.*?)</figure>(<details.*?</details>)', text, re.S
    )
    assert len(figures) == 2 + len(MEASURED)
    for fig, details in figures:
        name = re.search(r'<svg role="img" aria-labelledby="([^"]+)"', fig)
        assert name, fig[:200]
        cap = re.search(rf'<figcaption[^>]* id="{name.group(1)}">(.*?)</figcaption>', fig, re.S)
        assert cap and len(cap.group(1)) > 60, "the text alternative says what the chart shows"
        assert "<table" in details and "<caption" in details
    # a site's alternative states its numbers, and its table has a row per day of the window
    site = re.search(r"<h4[^>]*>Y81002: history by day</h4>.*?<figcaption[^>]*>(.*?)</figcaption></figure>"
                     r"(<details.*?</details>)", text, re.S)  # fmt: skip
    assert site
    alt = html.unescape(site.group(1))
    assert re.search(r"download [\d.]+ to [\d.]+ Mbit/s", alt) and "against 3 planned" in alt
    days = re.findall(r'<tr class="nhsuk-table__row"><th[^>]*scope="row">(\w{3} \d\d \w{3})</th>',
                      site.group(2))  # fmt: skip
    assert len(days) == 15 and len(set(days)) == 15


def test_chromium_renders_the_table_and_charts(html_report: Path, tmp_path: Path) -> None:
    dom = dump_dom(html_report)
    rows = re.findall(r'<tr class="nhsuk-table__row site"><th[^>]*>([A-Z0-9]+)</th>', dom)
    assert rows == ESTATE
    assert len(re.findall(r"<svg[\s>]", dom)) == 2 + len(MEASURED)
    assert dom.count("<path") > 20  # the charts have drawn marks, not just axes
    assert "NOT READY" in dom and "NO DATA" in dom
    sites = re.findall(r'<h3 class="nhsuk-heading-m" id="site-\w+">(\w+) ', dom)
    assert sites == ESTATE  # a section per site, with the history where there is one

    shot = screenshot(html_report, tmp_path / "report.png", 1400, 2000)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, table and charts, not a blank page

    def near(c: tuple[int, int, int], ref: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 12 for a, b in zip(c, ref, strict=True))

    def count(ref: tuple[int, int, int]) -> int:
        return sum(n for n, c in colours if near(c, ref))

    assert count((0x00, 0x5E, 0xB8)) > 5000  # the NHS.UK header band
    assert count((0xF7, 0xD4, 0xD1)) > 100  # NOT READY: nhsuk-tag--red
    assert count((0xCC, 0xE5, 0xD8)) > 100  # READY: nhsuk-tag--green


def test_an_estate_too_large_for_site_sections_shows_the_worst(tmp_path: Path) -> None:
    """Past MAX_SITE_SECTIONS sites the site sections are the worst first, and say so."""
    from netready.reports import trends
    from netready.reports.readiness import NO_DATA, NOT_READY, READY

    class R:
        def __init__(self, ods: str, verdict: str) -> None:
            self.ods, self.verdict = ods, verdict

    few = [R("A", READY), R("B", NOT_READY)]
    assert trends.section_sites(few) == ["A", "B"]
    many = [R(f"S{i}", READY if i % 3 else NOT_READY if i % 2 else NO_DATA) for i in range(90)]
    got = trends.section_sites(many)
    assert len(got) == trends.MAX_SITE_SECTIONS
    worst = [r.ods for r in many if r.verdict == NOT_READY]
    assert got[: len(worst)] == worst


def test_each_site_shows_its_grade_in_words_with_its_reason(tmp_path: Path) -> None:
    """The estate table's grade cell and each site's "Grade for ..." fact are the JSON's grade
    and grade_reason, as text (not a colour), on the same store and clock."""
    import json

    spool, now = reporting.store(tmp_path)
    assert reporting.run(spool, now, "html", tmp_path / "r.html").exit_code == 0
    r = reporting.run(spool, now, "json", None)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    want = {s["ods"]: (s["grade"], s["grade_reason"]) for s in doc["sites"]}
    assert {g for g, _ in want.values()} >= {"Unusable", None}  # the estate has both ends
    text = (tmp_path / "r.html").read_text()
    rows = re.findall(r'<tr class="nhsuk-table__row site"><th[^>]*>(\w+)</th>(.*?)</tr>', text)
    assert [o for o, _ in rows] == ESTATE
    for ods, row in rows:
        g, why = want[ods]
        cell = f"<strong>{html.escape(g)}</strong>: " if g else "No grade: "
        assert f'<td class="nhsuk-table__cell">{cell}{html.escape(why)}</td>' in row, (ods, row)
        site = text.split(f'id="site-{ods}">', 1)[1].split("</dl>", 1)[0]
        assert f"{cell}{html.escape(why)}</dd>" in site and ">Grade for 1:1 GP video" in site
