"""What the HTML, accessibility and PDF report tests share: a real embedded store (the spool's
SQLite) holding 14 days of the deterministic synthetic estate (reports/synthetic.py, with
media capacity searches so the sites have capacity by day), and ``netready report`` run on it
with the example inventory, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from netready.reports import synthetic

from netready.cli.report import report
from netready.records import now_ms
from netready.spool import Spool

DAY = 86_400_000
INVENTORY = Path(__file__).resolve().parent.parent / "site_inventory.yaml"
SITES = [
    synthetic.SynthSite("Y81001", "QHM", "adsl", 6.0),
    synthetic.SynthSite("Y81002", "QHM", "fttc"),
    synthetic.SynthSite("Y81003", "QHM", "fttc", 1.0, 0.2),
    synthetic.SynthSite("Y60010", "QWE", "fttp"),
    synthetic.SynthSite("RXA01", "QHM", "ethernet"),
]


def store(d: Path) -> tuple[Path, int]:
    """The spool file and the report's --now."""
    now = now_ms()
    with Spool(d / "spool.db", ship=False, embedded=True, max_age_s=10**9) as sp:
        sp.enqueue(synthetic.history(SITES, now - 14 * DAY, now, rtt_every_s=3600,
                                     media_every_s=86400))  # fmt: skip
    return d / "spool.db", now


def run(spool: Path, now: int, fmt: str, out: Path | None, *extra: str) -> Result:
    args = ["--inventory", str(INVENTORY), "--spool", str(spool), "--format", fmt,
            "--now", str(now), *extra]  # fmt: skip
    if out is not None:
        args += ["--out", str(out)]
    return CliRunner().invoke(report, args)


def written(tmp_path_factory: pytest.TempPathFactory, fmt: str) -> Path:
    """A fresh store and ``netready report --format FMT --out FILE`` on it: the file, once the
    command exited 0, wrote nothing on stdout and named the file on stderr."""
    d = tmp_path_factory.mktemp(fmt)
    spool, now = store(d)
    out = d / f"report.{fmt}"
    r = run(spool, now, fmt, out)
    assert r.exit_code == 0, r.output
    assert str(out) in r.stderr and r.stdout == ""
    return out
