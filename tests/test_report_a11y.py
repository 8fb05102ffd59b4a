"""The HTML report meets WCAG 2.2 AA as axe-core checks it: 0 violations, in real Chromium.

axe-core 4.14 (npm, installed by ``make npm`` from reports/assets/package-lock.json) runs
inside Debian's headless Chromium on the report ``netready report --format html`` writes, and
on the print page (the PDF's HTML, every data table behind a ``<details>`` open, so axe sees
the tables too): every rule axe runs by default (WCAG 2.0-2.2 A and AA and its best
practices) and WCAG 2.2's target size, which axe ships switched off.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import reporting
from netready.reports import assess, render
from netready.reports.screenshot import axe_audit

AXE = Path(__file__).resolve().parent.parent / "reports/assets/node_modules/axe-core/axe.min.js"


#: every rule axe runs by default, plus WCAG 2.2's target size (2.5.8, AA), which axe 4.14
#: ships switched off
WCAG22 = {"rules": {"target-size": {"enabled": True}}}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    assert AXE.exists(), "axe-core is missing: run `make npm` (make test does)"
    d = tmp_path_factory.mktemp("a11y")
    spool, now = reporting.store(d)
    r = reporting.run(spool, now, "html", d / "report.html")
    assert r.exit_code == 0, r.output
    sel = assess.Selection(str(reporting.INVENTORY), str(spool), now=str(now), trends=True)
    (d / "print.html").write_text(render.render_html(assess.build(sel), for_print=True))
    # --profile all: the grade-per-use table (the grade in words, bold) and every rubric
    r = reporting.run(spool, now, "html", d / "all.html", "--profile", "all")
    assert r.exit_code == 0, r.output
    assert "Grade per use" in (d / "all.html").read_text()
    return {"screen": d / "report.html", "print": d / "print.html", "all": d / "all.html"}


def _say(violations: list[dict]) -> str:
    return "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in violations
    )


@pytest.mark.parametrize("which", ["screen", "print", "all"])
def test_axe_finds_no_violation(pages: dict[str, Path], which: str) -> None:
    got = axe_audit(pages[which], AXE, WCAG22)
    assert got["version"] == "4.14.1"
    assert got["violations"] == [], _say(got["violations"])
    assert len(got["passes"]) >= 30  # axe really ran its rules on a real page
    ran = {v["id"] for v in got["violations"]}.union(
        got["passes"], got["incomplete"], got["inapplicable"]
    )
    # the WCAG 2.2 AA rule (target size) and 2.1 AA rules were among those axe evaluated
    assert {"target-size", "color-contrast", "svg-img-alt", "scrollable-region-focusable"} <= ran


def test_axe_catches_what_we_fixed(pages: dict[str, Path], tmp_path: Path) -> None:
    """The audit is not blind: the same page with a chart's text alternative removed, a
    table region given its caption's name twice and the page language dropped fails."""
    text = pages["screen"].read_text()
    broken = re.sub(r'<svg role="img" aria-labelledby="[^"]+"', '<svg role="img"', text, count=1)
    broken = broken.replace('<html lang="en-GB">', "<html>")
    bad = tmp_path / "broken.html"
    bad.write_text(broken)
    ids = {v["id"] for v in axe_audit(bad, AXE)["violations"]}
    assert {"svg-img-alt", "html-has-lang"} <= ids, ids
