"""Render a report in headless Chromium: a PNG screenshot, the DOM after layout, the PDF
(``netready report --format pdf``) or an axe-core accessibility audit.

Used by ``netready report --format pdf``, the report tests and ``make demo``'s closing note.
Debian's ``chromium``, offline (a dead proxy makes any network fetch fail), a throw-away
profile directory.

    python -m netready.reports.screenshot report.html report.png
"""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from netready.errors import NetreadyError

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--proxy-server=127.0.0.1:9",  # the page must not need the network
)


def chromium(args: list[str], timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise NetreadyError("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="netready-chromium-")
    try:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 2400) -> Path:
    """Screenshot ``html`` into ``png``; raises NetreadyError if Chromium wrote nothing."""
    png = png.resolve()
    r = chromium(
        [f"--screenshot={png}", f"--window-size={width},{height}", html.resolve().as_uri()]
    )
    if r.returncode != 0 or not png.exists():
        raise NetreadyError(f"chromium could not screenshot {html}: {r.stderr.strip()[-300:]}")
    return png


def dump_dom(html: Path) -> str:
    r = chromium(["--dump-dom", html.resolve().as_uri()])
    if r.returncode != 0:
        raise NetreadyError(f"chromium could not load {html}: {r.stderr.strip()[-300:]}")
    return r.stdout


def print_pdf(page: str, pdf: Path, timeout: float = 180.0) -> Path:
    """Print the HTML text ``page`` to ``pdf`` with Chromium's print-to-PDF (the page's
    ``@page`` size and margins, no browser header or footer). NetreadyError if Chromium fails
    or writes something that is not a PDF."""
    pdf = pdf.resolve()
    with tempfile.TemporaryDirectory(prefix="netready-pdf-") as d:
        src = Path(d) / "report.html"
        src.write_text(page, encoding="utf-8")
        tmp = Path(d) / "report.pdf"
        r = chromium(
            [f"--print-to-pdf={tmp}", "--no-pdf-header-footer", src.as_uri()], timeout=timeout
        )
        if r.returncode != 0 or not tmp.exists() or tmp.read_bytes()[:5] != b"%PDF-":
            raise NetreadyError(f"chromium could not print the report: {r.stderr.strip()[-300:]}")
        try:
            shutil.copyfile(tmp, pdf)
        except OSError as e:
            raise NetreadyError(f"--out {pdf}: cannot write: {e.strerror}") from None
    return pdf


_AXE_RUN = """<script>
axe.run(document, %s).then(function (r) {
  var pre = document.createElement("pre");
  pre.id = "netready-axe-result";
  pre.textContent = JSON.stringify({violations: r.violations,
    passes: r.passes.map(function (x) { return x.id; }),
    inapplicable: r.inapplicable.map(function (x) { return x.id; }),
    incomplete: r.incomplete.map(function (x) { return x.id; }), version: r.testEngine.version});
  document.body.appendChild(pre);
}, function (e) {
  var pre = document.createElement("pre");
  pre.id = "netready-axe-result";
  pre.textContent = JSON.stringify({error: String(e)});
  document.body.appendChild(pre);
});
</script>"""


def axe_audit(page: Path, axe_js: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run axe-core (``axe_js``: its ``axe.min.js``) on a copy of ``page`` in headless Chromium
    and return ``{"violations": [...], "passes", "incomplete", "inapplicable": [rule ids],
    "version"}``.

    The copy carries axe and a script that writes axe's result into the page, which
    ``--dump-dom`` then reads; ``--virtual-time-budget`` lets axe's timers run to the end."""
    with tempfile.TemporaryDirectory(prefix="netready-axe-") as d:
        text = page.read_text(encoding="utf-8")
        run = _AXE_RUN % json.dumps(options or {})
        inject = f"<script>{axe_js.read_text(encoding='utf-8')}</script>{run}"
        i = text.rindex("</body>")
        copy = Path(d) / page.name
        copy.write_text(text[:i] + inject + text[i:], encoding="utf-8")
        r = chromium(["--virtual-time-budget=120000", "--dump-dom", copy.as_uri()], timeout=300)
    m = re.search(r'<pre id="netready-axe-result">(.*?)</pre>', r.stdout, re.S)
    if r.returncode != 0 or not m:
        raise NetreadyError(f"axe-core did not finish on {page}: {r.stderr.strip()[-300:]}")
    got: dict[str, Any] = json.loads(htmllib.unescape(m.group(1)))
    if "error" in got:
        raise NetreadyError(f"axe-core failed on {page}: {got['error']}")
    return got


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m netready.reports.screenshot REPORT.html OUT.png")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
