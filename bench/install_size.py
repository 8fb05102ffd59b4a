#!/usr/bin/env python3
"""Benchmark: how big an install of netready is, base (the site agent) and with each extra.

Builds the wheel from this checkout, installs it into a fresh virtual environment per variant
with the exact versions of ``requirements.lock`` (pip, from PyPI or pip's cache), and prints
the size of what landed in site-packages (pip and setuptools, which every venv has, are shown
apart) and the number of distributions. The goal (issue 11): the agent's install under 80 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netready.lab.signals import exit_on_signals  # noqa: E402

VARIANTS = {
    "base (agent)": "",
    "+ server": "[server]",
    "+ charts": "[charts]",
    "+ influxdb2": "[influxdb2]",
    "+ grafana": "[grafana]",
    "+ ssh": "[ssh]",
    "+ raw-icmp": "[raw-icmp]",
    "all extras": "[all]",
}
VENV_OWN = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")
GOAL_MB = 80.0


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            fp = Path(dirpath, f)
            if not fp.is_symlink():
                total += fp.stat().st_size
    return total


def measure(wheel: Path, extra: str, work: Path) -> tuple[float, float, int]:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "-c", str(ROOT / "requirements.lock"), f"{wheel}{extra}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    site = next((venv / "lib").glob("python*/site-packages"))
    own = sum(du(site / n) if (site / n).is_dir() else 0 for n in VENV_OWN)
    own += sum(du(p) for p in site.glob("pip-*.dist-info")) + sum(
        du(p) for p in site.glob("setuptools-*.dist-info")
    )
    dists = len(list(site.glob("*.dist-info"))) - 2  # pip, setuptools
    return (du(site) - own) / 1e6, own / 1e6, dists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(VARIANTS), action="append", help="measure only these")
    args = ap.parse_args()
    with exit_on_signals(), tempfile.TemporaryDirectory(prefix="nr-install-") as tmp:
        t = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(t), str(ROOT)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wheel = next(t.glob("nhs_netready-*.whl"))
        print(f"{'install':<14} {'MB':>7} {'dists':>6} {'+ pip/setuptools MB':>20}  goal")
        for name, extra in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            work = t / name.replace(" ", "_").replace("+", "p").replace("(", "").replace(")", "")
            work.mkdir()
            mb, own, dists = measure(wheel, extra, work)
            goal = f"< {GOAL_MB:g} MB: {'met' if mb < GOAL_MB else 'NOT met'}" if not extra else ""
            print(f"{name:<14} {mb:>7.1f} {dists:>6} {own:>20.1f}  {goal}", flush=True)


if __name__ == "__main__":
    main()
