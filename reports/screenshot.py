"""Render a report file in headless Chromium: a PNG screenshot or the DOM after layout.

Used by the HTML report test and by ``make demo``'s closing note. Debian's ``chromium``,
offline (a dead proxy makes any network fetch fail), a throw-away profile directory.

    python -m reports.screenshot report.html report.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m reports.screenshot REPORT.html OUT.png")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
