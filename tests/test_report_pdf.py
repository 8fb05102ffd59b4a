"""``netready report --format pdf``: the HTML report printed by headless Chromium, for board
papers. The PDF is turned back into PNG pages with poppler's ``pdftoppm`` (Debian
poppler-utils, in SYSDEPS): A4 landscape pages exist, none is blank, the first shows the
NHS.UK header blue, and ``pdftotext`` finds every site, the charts' text alternatives and
the data tables (printed open).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import reporting
from PIL import Image

ESTATE = ["Y81001", "Y81002", "Y81003", "Y60010", "Y60011", "RXA01", "Y71005", "RXC20"]


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reporting.written(tmp_path_factory, "pdf")


def test_pdf_pages_exist_and_are_not_blank(pdf: Path) -> None:
    assert pdf.read_bytes()[:5] == b"%PDF-"
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(pdf.parent / "page")],
                   check=True, timeout=120)  # fmt: skip
    pages = sorted(pdf.parent.glob("page-*.png"))
    assert len(pages) >= 3
    for p in pages:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        assert w > h, f"{p.name}: A4 landscape"
        assert abs(w / h - 297 / 210) < 0.02, (p.name, img.size)
        colours = img.getcolors(maxcolors=1 << 20)
        assert colours is not None
        ink = sum(n for n, c in colours if min(c) < 200)  # anything darker than paper
        assert ink > 0.005 * w * h, f"{p.name} is blank"
    first = Image.open(pages[0]).convert("RGB").getcolors(maxcolors=1 << 20) or []
    blue = sum(n for n, c in first if all(abs(a - b) <= 16 for a, b in zip(c, (0, 94, 184))))
    assert blue > 1000  # the NHS.UK header band, printed in colour


def test_pdf_text_has_every_site_and_the_open_data_tables(pdf: Path) -> None:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    for ods in ESTATE:
        assert ods in text
    assert "Y81002: history by day" in text
    assert "Three small charts of the site's 15 days" in text  # a text alternative
    assert "History by day: the data" not in text  # the site's title, not a generic one
    assert "Y81002: history by day: the data" in text  # the table, printed open
    assert "Link: #" not in text  # in-page links are not spelled out on paper


def test_pdf_needs_out(tmp_path: Path) -> None:
    r = reporting.run(tmp_path / "none.db", 0, "pdf", None)
    assert r.exit_code == 2
    assert "--format pdf writes a file: give --out FILE.pdf" in r.output
    assert r.exc_info is None or r.exc_info[0] is SystemExit
