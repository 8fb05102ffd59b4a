"""The HTML report is one self-contained file that a real browser renders offline.

Debian's Chromium, headless and offline (reports/screenshot.py: a dead proxy), ``--dump-dom``
must contain every estate row and the inline SVG charts; the screenshot must not be blank and
must show the NHS-blue table header and the verdict colours.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.reports import synthetic
from netready.reports.screenshot import dump_dom, screenshot
from PIL import Image

from netready.cli.report import report
from netready.records import now_ms
from netready.spool import Spool

DAY = 86_400_000


@pytest.fixture(scope="module")
def html_report(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("html")
    now = now_ms()
    sites = [
        synthetic.SynthSite("Y81001", "QHM", "adsl", 6.0),
        synthetic.SynthSite("Y81002", "QHM", "fttc"),
        synthetic.SynthSite("Y81003", "QHM", "fttc", 1.0, 0.2),
        synthetic.SynthSite("Y60010", "QWE", "fttp"),
        synthetic.SynthSite("RXA01", "QHM", "ethernet"),
    ]
    with Spool(d / "spool.db", ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(synthetic.history(sites, now - 14 * DAY, now, rtt_every_s=3600))
    inv = Path(__file__).resolve().parent.parent / "site_inventory.yaml"
    out = d / "report.html"
    r = CliRunner().invoke(
        report,
        [
            "--inventory",
            str(inv),
            "--spool",
            str(d / "spool.db"),
            "--format",
            "html",
            "--out",
            str(out),
            "--now",
            str(now),
        ],
    )
    assert r.exit_code == 0, r.output
    assert str(out) in r.stderr and r.stdout == ""
    return out


def test_html_is_self_contained(html_report: Path) -> None:
    text = html_report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert len(re.findall(r"<svg[\s>]", text)) == 2
    # nothing to fetch: no scripts, stylesheets, images or fonts from anywhere
    # (``url(#clip)`` and ``href="#id"`` inside the SVG are references within the page)
    assert not re.search(r"<script|<link|<img|@import|url\((?!#)", text, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)


def test_chromium_renders_the_table_and_charts(html_report: Path, tmp_path: Path) -> None:
    dom = dump_dom(html_report)
    rows = re.findall(r'<tr class="site"><td>([A-Z0-9]+)</td>', dom)
    assert rows == ["Y81001", "Y81002", "Y81003", "Y60010", "Y60011", "RXA01", "Y71005", "RXC20"]
    assert len(re.findall(r"<svg[\s>]", dom)) == 2
    assert dom.count("<path") > 20  # the charts have drawn marks, not just axes
    assert "NOT READY" in dom and "NO DATA" in dom

    shot = screenshot(html_report, tmp_path / "report.png", 1400, 2000)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 2000)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, table and charts, not a blank page

    def near(c: tuple[int, int, int], ref: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 12 for a, b in zip(c, ref, strict=True))

    def count(ref: tuple[int, int, int]) -> int:
        return sum(n for n, c in colours if near(c, ref))

    assert count((0x00, 0x5E, 0xB8)) > 5000  # NHS-blue header cells of the tables
    assert count((0xD5, 0x28, 0x1B)) > 100  # a NOT READY badge / chart marker
    assert count((0x00, 0x7F, 0x3B)) > 100  # READY
