"""Probe "speedtest" (speedtest-cli). This machine has no internet, so the real library
really fails to fetch www.speedtest.net's configuration: that path is tested for real. The
result mapping is tested on the library's own ``SpeedtestResults`` object (no network)."""

from __future__ import annotations

import asyncio
import json
import time

import speedtest as st_lib
from click.testing import CliRunner
from netready.probes import speedtest
from netready.probes.speedtest import Spec

from netready import registry
from netready.cli import cli


def test_offline_is_one_failed_record() -> None:
    t0 = time.monotonic()
    recs = asyncio.run(speedtest.run(registry.Context(), Spec(timeout_s=3)))
    assert time.monotonic() - t0 < 10
    assert len(recs) == 1
    r = recs[0]
    assert r.measurement == "throughput" and r.result == "unreachable"
    assert r.tags["method"] == "speedtest"
    reason = str(r.fields["reason"])
    assert "www.speedtest.net" in reason and "\n" not in reason


def test_offline_cli_prints_one_line() -> None:
    r = CliRunner().invoke(cli, ["probe", "speedtest", "--timeout", "3"])
    assert r.exit_code == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: speedtest: cannot reach")
    r = CliRunner().invoke(cli, ["probe", "speedtest", "--timeout", "3", "--format", "json"])
    assert json.loads(r.stdout)[0]["tags"]["result"] == "unreachable"


def test_results_mapping_uses_the_library_result_object() -> None:
    res = st_lib.SpeedtestResults(
        download=71.2e6, upload=17.5e6, ping=12.5, server={"id": "1234", "host": "x"}
    )
    res.bytes_received, res.bytes_sent = 90_000_000, 22_000_000
    recs = speedtest.to_records(res.dict(), Spec(server_id=1234), {"site": "Y1"})
    assert [(r.tags["direction"], r.fields["goodput_mbps"]) for r in recs] == [
        ("down", 71.2),
        ("up", 17.5),
    ]
    assert recs[0].fields["bytes"] == 90_000_000 and recs[1].fields["bytes"] == 22_000_000
    assert recs[0].tags["target"] == "1234" and recs[0].fields["rtt_idle_ms"] == 12.5
    assert registry.get("probe", "speedtest").heavy
