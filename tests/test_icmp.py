"""The icmp probe: real raw sockets on loopback and through the link lab, the CAP_NET_RAW
failure as an unprivileged user, and the sans-IO summary against a hand-computed trace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.probes import icmp

from netready.cli import cli
from netready.records import Record
from netready.registry import Context

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MS = 1_000_000


def ping(**kw: object) -> Record:
    (rec,) = asyncio.run(icmp.run(Context(), icmp.Spec.model_validate(kw)))
    return rec


def test_summarise_by_hand() -> None:
    send = {0: 0, 1: 20 * MS, 2: 40 * MS, 3: 60 * MS}
    # seq 2 lost, seq 1 answered twice; RTTs 10 and 12 and 10 ms
    replies = [(0, 10 * MS), (1, 32 * MS), (1, 33 * MS), (3, 70 * MS)]
    f = icmp.summarise(send, replies, 4, 0.06)
    assert f["sent"] == 4 and f["received"] == 3 and f["duplicates"] == 1
    assert f["loss_pct"] == pytest.approx(25.0)
    assert (f["rtt_min_ms"], f["rtt_max_ms"]) == (10.0, 12.0)
    assert f["rtt_p50_ms"] == pytest.approx(10.0)
    # D = +2, -2 -> J = 2/16 = 0.125, then 0.125 + (2 - 0.125)/16 = 0.2421875
    assert f["jitter_rfc3550_ms"] == pytest.approx(0.2421875)
    assert f["ipdv_p95_ms"] == pytest.approx(2.0)


@pytest.mark.parametrize("target", ["127.0.0.1", "::1", "[::1]", "localhost"])
def test_loopback_echo(target: str) -> None:
    """IPv4 and ICMPv6 echo; ``[::1]`` is written as HOST:PORT targets write IPv6."""
    r = ping(target=target, count=50, interval_s=0.002, timeout_s=1, dscp=46)
    assert r.ok and r.tags["method"] == "icmp" and r.measurement == "rtt"
    assert r.fields["sent"] == 50 and r.fields["received"] == 50
    assert r.fields["loss_pct"] == 0.0
    assert 0 < r.fields["rtt_min_ms"] <= r.fields["rtt_p50_ms"] <= r.fields["rtt_max_ms"] < 50


def test_without_raw_socket_permission_is_a_failed_record() -> None:
    """Runs the CLI as user nobody (no CAP_NET_RAW): one clear message, exit 1, a record."""
    cp = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            PY,
            "-m",
            "netready.cli",
            "probe",
            "icmp",
            "--target",
            "127.0.0.1",
            "--count",
            "2",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cp.returncode == 1
    (rec,) = json.loads(cp.stdout)
    assert rec["tags"]["result"] == "error" and "CAP_NET_RAW" in rec["fields"]["reason"]
    assert "Traceback" not in cp.stderr and cp.stderr.count("\n") == 1
    assert "CAP_NET_RAW" in cp.stderr


def test_cli_ipv6_target_json() -> None:
    res = CliRunner().invoke(
        cli,
        ["probe", "icmp", "--target", "[::1]", "--count", "3", "--interval", "0.01", "--format", "json"],
    )
    assert res.exit_code == 0, res.output
    (rec,) = json.loads(res.stdout)
    assert rec["tags"]["target"] == "::1" and rec["fields"]["received"] == 3
    res = CliRunner().invoke(cli, ["probe", "icmp", "--target", "[::1]:80"])
    assert res.exit_code == 2 and "without a port" in res.stderr


def test_unanswered_and_bad_target() -> None:
    r = ping(target="no-such-host.invalid", count=1)
    assert r.result == "unreachable" and "cannot resolve" in r.fields["reason"]
    res = CliRunner().invoke(cli, ["probe", "icmp", "--target", "10.0.0.1:80"])
    assert res.exit_code == 2 and "without a port" in res.stderr


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    from netready.lab.netns import PROFILES, Lab

    with Lab(sites={"ping": PROFILES["fttc40"]}) as lb:
        yield lb


def lab_icmp(lb: object, *args: str) -> tuple[int, list[dict[str, object]], str]:
    p = lb.popen(
        lb.site_ns("ping"),
        [PY, "-m", "netready.cli", "probe", "icmp", "--format", "json", *args],  # type: ignore[attr-defined]
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = p.communicate(timeout=60)
    return p.returncode, json.loads(out), err


def test_lab_loss_and_silence(lab: object) -> None:
    lab.set_loss("ping", 0, 20)  # type: ignore[attr-defined]
    try:
        _rc, (rec,), err = lab_icmp(
            lab,
            "--target",
            lab.core_ip,
            "--count",
            "400",  # type: ignore[attr-defined]
            "--interval",
            "0.003",
            "--timeout",
            "1",
        )
    finally:
        lab.set_loss("ping", 0, 0)  # type: ignore[attr-defined]
    assert rec["tags"]["result"] == "ok", err
    # 20 % of requests dropped: 80 of 400 expected, sd 8
    assert 12.0 <= rec["fields"]["loss_pct"] <= 28.0
    # An address that does not answer at all: a timeout record, not a crash.
    rc, (rec,), _err = lab_icmp(
        lab, "--target", "10.77.0.99", "--count", "3", "--interval", "0.01", "--timeout", "0.5"
    )
    assert rc == 1 and rec["tags"]["result"] == "timeout"
    assert "no echo reply from 10.77.0.99" in rec["fields"]["reason"]
