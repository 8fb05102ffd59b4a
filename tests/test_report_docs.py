"""docs/reports.md stays true: every option of `netready report`/`assess` and every field and
tag `assess` writes is documented (in the style of datasette's test_docs)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import click
from netready.reports import readiness
from netready.reports.assess import readiness_records

from netready.cli.report import assess, report
from netready.inventory import loads
from netready.rubric import PROFILES

DOC = (Path(__file__).resolve().parent.parent / "docs" / "reports.md").read_text()


def test_every_option_is_documented() -> None:
    for cmd in (report, assess):
        for p in cmd.params:
            if isinstance(p, click.Option) and "--help" not in p.opts:
                assert f"`{p.opts[0]}" in DOC, f"{cmd.name} {p.opts[0]} missing from docs"


def test_every_readiness_field_and_tag_is_documented() -> None:
    inv = loads("""
version: 1
sites:
  - {ods: A10001, name: A, type: gp_practice, icb: QHM, lat: 54.9, lon: -1.6,
     link: {tech: adsl, down_mbps: 8, up_mbps: 1}}
""")
    ev = readiness.Evidence(
        quality={
            k: readiness.Figure(1.0, 1.0, 5)
            for k in ("rtt_ms", "jitter_ms", "loss_pct", "burst_loss_pct", "reorder_pct")
        },
        windows=100,
        sessions_with_data=5,
        sessions_total=5,
        tp={"up": {"n": 4, "p10": 5.0}, "down": {"n": 4, "p10": 20.0}},
        failures={"throughput": {"link_busy": 1}},
        newest_ms=1_790_000_000_000,
        detected_tech="adsl",
    )
    site = readiness.evaluate(inv.sites[0], ev, PROFILES["gp_video"], 1_790_000_000_000)
    e = SimpleNamespace(sites=[site], since_s=1209600.0, now_ms=1_790_000_000_000)
    (rec,) = readiness_records(e)
    table = DOC[DOC.index("## Records written by `netready assess`") :]
    documented = set(re.findall(r"`([a-z_0-9]+)`", table))
    missing = (set(rec.fields) | set(rec.tags)) - documented
    assert not missing, f"undocumented readiness fields/tags: {sorted(missing)}"
    # and the exit codes the commands promise
    for code in ("`0`", "`1`", "`2`", "`3`"):
        assert code in DOC
