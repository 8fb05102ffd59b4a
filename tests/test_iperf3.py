"""Probe "iperf3": parser on recorded iperf3 3.12 output, and the real iperf3 on loopback
(a closed port for the failure JSON, ``iperf3 -s`` for real results)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.probes import iperf3
from netready.probes.iperf3 import Spec, parse

from netready import registry
from netready.cli import cli

DATA = Path(__file__).resolve().parent / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parse_recorded_reverse_tcp() -> None:
    r = parse((DATA / "iperf3_tcp_reverse.json").read_text(), "down", {"site": "Y1"})
    assert r.ok and r.tags["method"] == "iperf3" and r.tags["direction"] == "down"
    assert r.fields["goodput_mbps"] == pytest.approx(20.968835, rel=1e-6)
    assert r.fields["bytes"] == 2621440 and r.fields["streams"] == 1
    assert "retransmits" not in r.fields  # -R: the server sent; its TCP_INFO is not ours
    assert r.tags["site"] == "Y1"


def test_parse_recorded_forward_tcp_two_streams() -> None:
    r = parse((DATA / "iperf3_tcp_p2.json").read_text(), "up")
    assert r.ok and r.fields["streams"] == 2
    assert r.fields["retransmits"] == 0
    d = json.loads((DATA / "iperf3_tcp_p2.json").read_text())
    rtts_us = [st["sender"]["mean_rtt"] for st in d["end"]["streams"]]
    assert len(rtts_us) == 2
    assert r.fields["rtt_loaded_ms"] == pytest.approx(sum(rtts_us) / 2 / 1000)
    assert r.fields["duration_s"] == pytest.approx(1.000143)


def test_parse_recorded_udp() -> None:
    r = parse((DATA / "iperf3_udp.json").read_text(), "up")
    assert r.ok and r.tags["method"] == "iperf3_udp"
    assert r.fields["loss_pct"] == 0 and r.fields["jitter_rfc3550_ms"] == pytest.approx(
        0.0054767, rel=1e-4
    )
    assert r.fields["goodput_mbps"] == pytest.approx(5.24213, rel=1e-5)


def test_parse_recorded_error_and_garbage() -> None:
    r = parse((DATA / "iperf3_refused.json").read_text(), "up", {"target": "h:5201"})
    assert r.result == "refused"
    assert r.fields["reason"] == "iperf3 h:5201: unable to connect to server: Connection refused"
    assert parse("iperf3: error - some text\n", "down").result == "error"
    assert "lacks" in str(parse('{"end": {}}', "down").fields["reason"])
    for text, result in (
        ('{"error": "unable to connect to server: No route to host"}', "unreachable"),
        ('{"error": "control socket has closed unexpectedly"}', "error"),
        ('{"error": "unable to connect to server: Connection timed out"}', "timeout"),
    ):
        assert parse(text, "down").result == result


def test_real_iperf3_closed_port_is_a_clear_error() -> None:
    spec = Spec(target=f"127.0.0.1:{_free_port()}", duration_s=1, direction="up")
    t0 = time.monotonic()
    (r,) = asyncio.run(iperf3.run(registry.Context(), spec))
    assert time.monotonic() - t0 < 10
    assert r.result == "refused"
    assert "unable to connect to server: Connection refused" in str(r.fields["reason"])
    r = CliRunner().invoke(cli, ["probe", "iperf3", "--target", spec.target, "--direction", "down"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: iperf3 {spec.target}: unable to connect to server: Connection refused"
    ]


@contextlib.contextmanager
def _iperf3_on(host: str) -> Iterator[int]:
    """``iperf3 -s -B host`` on a free port, once it says it listens; the port. (Probing
    it with a connection instead makes iperf3 3.12 reset the next real test now and then:
    "unable to receive control message".)"""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        port = int(s.getsockname()[1])
    p = subprocess.Popen(
        ["iperf3", "-s", "-p", str(port), "-B", host, "--forceflush"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert p.stdout is not None
        for _ in range(5):
            if "Server listening on" in p.stdout.readline():
                break
        else:
            raise AssertionError("iperf3 -s did not say it listens")
        threading.Thread(target=p.stdout.read, daemon=True).start()  # never block it
        yield port
    finally:
        p.terminate()
        p.wait(timeout=5)


@pytest.fixture
def iperf3_server() -> Iterator[str]:
    with _iperf3_on("127.0.0.1") as port:
        yield f"127.0.0.1:{port}"


def test_real_iperf3_tcp_both_directions_and_udp(iperf3_server: str) -> None:
    spec = Spec(target=iperf3_server, duration_s=1, bitrate_mbps=40)
    recs = asyncio.run(iperf3.run(registry.Context(), spec))
    assert [(r.tags["direction"], r.result) for r in recs] == [("down", "ok"), ("up", "ok")]
    for r in recs:  # -b 40M paces the sender: the receiver sees about that
        assert r.fields["goodput_mbps"] == pytest.approx(40, rel=0.1)
        assert r.tags["target"] == iperf3_server
    assert isinstance(recs[1].fields["retransmits"], int)
    udp = Spec(target=iperf3_server, duration_s=1, protocol="udp", bitrate_mbps=5, direction="up")
    (u,) = asyncio.run(iperf3.run(registry.Context(), udp))
    assert u.ok and u.tags["method"] == "iperf3_udp"
    assert u.fields["goodput_mbps"] == pytest.approx(5, rel=0.1)
    assert 0 <= u.fields["loss_pct"] < 5
    r = CliRunner().invoke(
        cli,
        ["probe", "iperf3", "--target", iperf3_server, "--duration", "1", "--direction", "up", "--format", "json"],
    )
    assert r.exit_code == 0
    assert json.loads(r.stdout)[0]["tags"]["method"] == "iperf3"


def test_argv() -> None:
    a = iperf3.argv(Spec(target="h", protocol="udp", bitrate_mbps=2.5, streams=4), "down")
    assert a[:5] == ["iperf3", "-c", "h", "-p", "5201"]
    assert "-R" in a and "-u" in a and a[a.index("-b") + 1] == "2500000"
    assert a[a.index("-P") + 1] == "4"


def test_real_iperf3_over_ipv6_loopback() -> None:
    """iperf3 -s on ::1 only; the probe with ``[::1]:PORT`` (both directions, and the CLI)."""
    with _iperf3_on("::1") as port:
        target = f"[::1]:{port}"
        spec = Spec(target=target, duration_s=1, bitrate_mbps=40)
        assert iperf3.argv(spec, "up")[1:5] == ["-c", "::1", "-p", str(port)]
        recs = asyncio.run(iperf3.run(registry.Context(), spec))
        assert [(r.tags["direction"], r.result) for r in recs] == [("down", "ok"), ("up", "ok")]
        for r in recs:
            assert r.fields["goodput_mbps"] == pytest.approx(40, rel=0.1)
            assert r.tags["target"] == target
        r = CliRunner().invoke(
            cli,
            ["probe", "iperf3", "--target", target, "--duration", "1", "--direction", "down", "--format", "json"],
        )
        assert r.exit_code == 0, r.output
        (rec,) = json.loads(r.stdout)
        assert rec["tags"]["result"] == "ok" and rec["tags"]["target"] == target
    # a bare IPv6 address takes the default port
    assert iperf3.argv(Spec(target="::1"), "up")[1:5] == ["-c", "::1", "-p", "5201"]
    assert iperf3.argv(Spec(target="[2001:db8::1]"), "up")[1:5] == [
        "-c",
        "2001:db8::1",
        "-p",
        "5201",
    ]


def test_tcp_is_paced_inside_the_byte_cap(iperf3_server: str) -> None:
    """iperf3 cannot stop a timed test at a byte count (one end condition only), so a TCP
    test is paced with -b to its share of the cap: loopback (gigabits) is measured at the
    pace, within the cap, and says so (``byte_capped``)."""
    spec = Spec(target=iperf3_server, duration_s=2, max_mb=2)
    pace = iperf3.tcp_pace_mbps(spec, 1_000_000)
    assert iperf3.argv(spec, "up", pace)[-2:] == ["-b", f"{pace * 1e6:.0f}"]
    recs = asyncio.run(iperf3.run(registry.Context(), spec))
    assert [(r.tags["direction"], r.result) for r in recs] == [("down", "ok"), ("up", "ok")]
    # the whole test within the cap; up gets what down left, so at least down's pace
    assert sum(int(r.fields["bytes"]) for r in recs) <= 2_000_000
    for r in recs:
        assert r.fields["byte_capped"] is True and r.fields["goodput_mbps"] >= pace * 0.9
    # a set rate under the pace is the user's choice, not the cap's
    (r,) = asyncio.run(
        iperf3.run(registry.Context(), Spec(target=iperf3_server, duration_s=1, bitrate_mbps=5, direction="up"))
    )
    assert r.ok and "byte_capped" not in r.fields
    # a cap with no room for one send block per stream is refused before iperf3 runs
    tiny = Spec(target=iperf3_server, duration_s=1, streams=16, max_mb=1, direction="up")
    (r,) = asyncio.run(iperf3.run(registry.Context(), tiny))
    assert r.result == "budget_exceeded" and "byte cap" in str(r.fields["reason"])
    r2 = CliRunner().invoke(
        cli, ["probe", "iperf3", "--target", iperf3_server, "--duration", "1", "--max-mb", "1",
              "--direction", "up", "--format", "json"]
    )  # fmt: skip
    assert r2.exit_code == 0, r2.output
    (d,) = json.loads(r2.stdout)
    assert d["fields"]["bytes"] <= 1_000_000 and d["fields"]["byte_capped"] is True
