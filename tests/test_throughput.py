"""Probe "throughput" and netready/budget.py.

Real parts: the speed endpoint (aiohttp) on loopback and in the link lab's core namespace,
the probe in a lab site namespace behind the lab's HTB shaper, SQLite for the budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.probes import throughput
from netready.probes.throughput import Estimator, Spec, bufferbloat_grade, rpm
from netready.servers.speed import Limits, SpeedServer

from netready import budget, registry
from netready.cli import cli
from netready.inventory import Budget, ClinicHours, Link, Site
from netready.records import Record

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "lab-token-0123456789"
os.environ["NR_TP_TOKEN"] = TOKEN
OVERHEAD = 0.956  # TCP/IP goodput at 1500-byte MTU (docs/design.md)


# --------------------------------------------------------------------------- estimator


def _feed(est: Estimator, rates_mbps: list[float], dt_s: float = 0.25) -> list[str]:
    return [est.add_window(int(r * 1e6 / 8 * dt_s), dt_s) for r in rates_mbps]


def test_estimator_grows_then_stops_on_three_stable_windows() -> None:
    est = Estimator(streams=2, max_streams=8)
    # slow start, plateau at 2 streams -> add; 4 streams give no rise -> three stable windows
    acts = _feed(est, [20, 36, 36.1, 36.0, 35.9, 36.0])
    assert acts == ["wait", "wait", "add", "wait", "wait", "done"]
    assert est.streams == 4
    nbytes, secs = est.result()  # type: ignore[misc]
    assert nbytes * 8 / secs / 1e6 == pytest.approx(36.0, rel=1e-3)  # ramp windows discarded


def test_estimator_keeps_growing_while_streams_help() -> None:
    est = Estimator(streams=1, max_streams=8)
    acts = _feed(est, [10, 10, 19, 19, 30, 30, 30.2, 30.1, 30.0])
    assert acts[:6] == ["wait", "add", "wait", "add", "wait", "add"]
    assert est.streams == 8 and acts[-1] == "done"
    nbytes, secs = est.result()  # type: ignore[misc]
    assert nbytes * 8 / secs / 1e6 == pytest.approx(30.1, rel=1e-3)


def test_estimator_goes_back_when_more_streams_hurt() -> None:
    est = Estimator(streams=1, max_streams=8)
    acts = _feed(est, [0.40, 0.43, 0.43, 0.41, 0.415, 0.43, 0.431, 0.429])
    assert acts[:5] == ["wait", "wait", "add", "wait", "shrink"]
    assert est.streams == 1 and acts[-1] == "done"
    nbytes, secs = est.result()  # type: ignore[misc]
    assert nbytes * 8 / secs / 1e6 == pytest.approx(0.43, rel=1e-2)


def test_estimator_needs_agreement_within_tolerance() -> None:
    est = Estimator(streams=4, max_streams=4)  # no growth: only the first window is ramp
    acts = _feed(est, [5, 10, 10.5, 9.6, 10.0, 10.1, 9.95])
    assert "done" not in acts[:5]  # 10.5 vs 9.6 is outside ±2% of their mean
    assert acts[-1] == "done"


def test_estimator_window_stretches_on_slow_lines() -> None:
    est = Estimator(streams=1, max_streams=1, min_window_s=0.25)
    _feed(est, [0.8])
    assert 0.4 < est.window_s() < 0.5  # 30 full-size packets at 0.8 Mbit/s
    _feed(est, [100])
    assert est.window_s() == 0.25


@pytest.mark.parametrize(
    ("ms", "grade"),
    [
        (0, "A"),
        (29.9, "A"),
        (30, "B"),
        (59, "B"),
        (60, "C"),
        (199, "C"),
        (200, "D"),
        (399, "D"),
        (400, "F"),
        (2000, "F"),
    ],
)
def test_bufferbloat_grades(ms: float, grade: str) -> None:
    assert bufferbloat_grade(ms) == grade


def test_spec_rejects_inline_token_and_bad_url() -> None:
    plugin = registry.get("probe", "throughput")
    from netready.errors import ConfigError

    with pytest.raises(ConfigError, match="inline"):
        plugin.make_spec({"target": "http://h:1", "token": "abc"})
    with pytest.raises(ConfigError, match="not an http"):
        plugin.make_spec({"target": "ftp://h", "token": "env:X"})
    assert plugin.heavy


# --------------------------------------------------------------------------- RPM (pure)


def test_rpm_trimmed_mean_drops_the_worst_five_percent() -> None:
    vals = [10.0] * 19 + [1000.0]  # 20 values: the top 5 % is the one outlier
    assert rpm.trimmed_mean(vals) == pytest.approx(10.0)
    assert rpm.trimmed_mean([10.0, 20.0]) == pytest.approx(15.0)  # nothing to trim
    assert rpm.trimmed_mean([]) is None


def test_rpm_formula_of_draft_09() -> None:
    """Foreign RPM from the mean of the three foreign times, self RPM from the self probes,
    the result their arithmetic mean (draft -09 section 5.3.1); without TLS two times."""
    p = rpm.Probes()
    for i in range(10):
        p.tcp_f.append((i, 60.0))
        p.tls_f.append((i, 90.0))
        p.http_f.append((i, 30.0))
        p.http_s.append((i, 20.0))
    r = rpm.responsiveness(p)
    assert r is not None
    assert r.foreign_rpm == pytest.approx(1000.0)  # 60000 / 60
    assert r.self_rpm == pytest.approx(3000.0)  # 60000 / 20
    assert r.rpm == pytest.approx(2000.0)
    p.tls_f.clear()
    r = rpm.responsiveness(p)
    assert r is not None and r.foreign_rpm == pytest.approx(60000 / 45)
    assert rpm.responsiveness(rpm.Probes(p.tcp_f[:4], [], p.http_f[:4], p.http_s)) is None


def test_rpm_stability_rule_of_moving_averages() -> None:
    s = rpm.Stability()
    # ramp: the moving averages still rise
    assert not any(s.add(v) for v in (1.0, 4.0, 8.0, 10.0, 10.0))
    # a plateau: once the last MAD moving averages agree within 5 % (8, 9.5, 10, 10 do not;
    # 9.5, 10, 10, 10 do)
    assert [s.add(v) for v in (10.0, 10.0, 10.0, 10.0)] == [False, False, False, True]
    rising = rpm.Stability()  # goodput still climbing 10 % an interval: never stable
    assert not any(rising.add(10.0 * 1.1**i) for i in range(12))


def test_rpm_probe_overhead_limits_and_confidence() -> None:
    # 100 probes a second at most, however fast the line
    assert rpm.probe_gap_s(10e9, 1200) == pytest.approx(0.01)
    # 0.8 Mbit/s: a 1200-byte probe may come every 0.24 s (5 % of the line)
    assert rpm.probe_gap_s(0.8e6, 1200) == pytest.approx(1200 * 8 / (0.05 * 0.8e6))
    assert rpm.confidence(True, True, 30, 25) == "high"
    assert rpm.confidence(True, False, 30, 25) == "medium"
    assert rpm.confidence(True, True, 30, 10) == "medium"
    assert rpm.confidence(False, True, 30, 30) == "low"
    assert rpm.confidence(True, True, 4, 30) == "low"


def test_rpm_connect_time_from_the_kernel_unless_the_syn_was_resent() -> None:
    # the kernel's handshake sample (31.2 ms) stands in for a client that woke up late (45 ms)
    assert rpm.connect_ms(45.0, 31_200, 0) == pytest.approx(31.2)
    # a lost SYN: the kernel times the second SYN only; the client waited the 1 s timer too
    assert rpm.connect_ms(1031.0, 30_900, 1) == pytest.approx(1031.0)
    # no TCP_INFO (not Linux), or a sample the client cannot have seen: the client's time
    assert rpm.connect_ms(12.0, None, None) == pytest.approx(12.0)
    assert rpm.connect_ms(12.0, 40_000, 0) == pytest.approx(12.0)


def test_rpm_self_probes_repaired_by_tcp_are_left_out() -> None:
    """A ping whose request we sent twice, or whose reply the endpoint sent twice (its
    connection's retransmit count rose by the next reply), timed TCP's loss repair."""
    own = [0, 0, 1, 0, 0, 0]
    peer = [3, 3, 3, 3, 4, 4]  # reply 3 was sent again (seen in reply 4)
    assert rpm.unrepaired(own, peer) == [True, True, False, False, True, True]
    # the last reply's fate is unknown: kept; an endpoint without the counter: own only
    assert rpm.unrepaired([0, 0], [0, 1]) == [False, True]
    assert rpm.unrepaired([0, 2, 0], [None, None, None]) == [True, False, True]
    assert rpm.unrepaired([], []) == []


def test_rpm_fields_on_loopback() -> None:
    recs, _ = _loop_run(Limits(max_rate_mbps=40), direction="down", max_seconds=6)
    (r,) = recs
    assert r.ok, r.fields
    f = r.fields
    assert f["rpm_probes_foreign"] >= rpm.MIN_SAMPLES and f["rpm_probes_self"] >= rpm.MIN_SAMPLES
    assert f["rpm"] == pytest.approx((f["rpm_foreign"] + f["rpm_self"]) / 2)
    assert f["rpm_loaded_ms"] == pytest.approx(60000 / f["rpm"])
    assert "rpm_foreign_tls_ms" not in f  # plain HTTP: no TLS handshake to time
    assert f["rpm_probes_retransmitted"] == 0  # loopback loses nothing
    assert f["rpm_confidence"] in ("high", "medium", "low")


def test_config_maps_the_drafts_urls_onto_the_endpoint() -> None:
    """GET /config answers in the draft's configuration form; each URL it names works."""
    import urllib.request

    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, Limits(max_tests=4))  # each plain request is a test
        port = await srv.start("127.0.0.1", 0)

        def get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
            req = urllib.request.Request(url, data, {"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()

        try:
            base = f"http://127.0.0.1:{port}"
            _, body = await asyncio.to_thread(get, base + "/config")
            urls = json.loads(body)["urls"]
            small = await asyncio.to_thread(get, urls["small_https_download_url"])
            large = urls["large_https_download_url"].replace("8000000000", "1000")
            large_r = await asyncio.to_thread(get, large)
            up = await asyncio.to_thread(get, urls["https_upload_url"], b"x" * 500)
            return json.loads(body), small, large_r, up
        finally:
            await srv.close()

    cfg, small, large, up = asyncio.run(go())
    assert cfg["version"] == 1
    assert set(cfg["urls"]) == {
        "small_https_download_url",
        "large_https_download_url",
        "https_upload_url",
    }
    assert small[0] == 200 and "t" in json.loads(small[1])
    assert large == (200, large[1]) and len(large[1]) == 1000
    assert up[0] == 200 and json.loads(up[1]) == {"bytes": 500}


# --------------------------------------------------------------------------- loopback


def _loop_run(limits: Limits, token: str = "env:NR_TP_TOKEN", **spec_kw):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, limits)
        port = await srv.start("127.0.0.1", 0)
        try:
            spec = Spec(target=f"http://127.0.0.1:{port}", token=token, **spec_kw)
            recs = await throughput.run(registry.Context(), spec)
            return recs, srv
        finally:
            await srv.close()

    return asyncio.run(go())


def test_both_sides_use_the_congestion_control_asked_for() -> None:
    """--congestion-control on the endpoint and the probe: ``ss`` shows the algorithm on the
    upload's data sockets of a running loopback test, at both ends, and it is one the system
    does not default to. (A socket is set just after it connects, so only those that have
    moved data are judged.)"""
    import re

    default = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    algos = set(Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split())
    cc = "reno" if default != "reno" else "cubic"
    seen: dict[str, set[str]] = {"endpoint": set(), "probe": set()}

    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, Limits(max_rate_mbps=40), congestion_control=cc)
        port = await srv.start("127.0.0.1", 0)
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.2):
                out = subprocess.run(
                    ["ss", "-tinH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                # one socket: an address line, then its TCP_INFO line (indented)
                for head, info in re.findall(r"^(\S.*)\n\s+(.*)$", out, re.M):
                    moved = max(map(int, re.findall(r"bytes_(?:acked|received):(\d+)", info)), default=0)
                    algo = next((w for w in info.split() if w in algos), "?")  # after ts, sack
                    if moved > 1_000_000:
                        local = head.split()[-2]
                        seen["endpoint" if local.endswith(f":{port}") else "probe"].add(algo)

        th = threading.Thread(target=watch)
        th.start()
        try:
            spec = Spec(
                target=f"http://127.0.0.1:{port}", token="env:NR_TP_TOKEN", direction="up",
                max_seconds=3, rpm_hold_s=0, congestion_control=cc,
            )  # fmt: skip
            return await throughput.run(registry.Context(), spec)
        finally:
            stop.set()
            await asyncio.to_thread(th.join)
            await srv.close()

    (rec,) = asyncio.run(go())
    assert rec.ok, rec.fields
    assert seen == {"endpoint": {cc}, "probe": {cc}}, seen
    with pytest.raises(ValueError, match="congestion control 'no-such-cc' cannot be used"):
        SpeedServer(TOKEN, congestion_control="no-such-cc")


def test_byte_cap_is_respected_by_client_and_endpoint() -> None:
    cap = 1_500_000  # 40 Mbit/s would need ~2.5 MB for 5 windows: the cap ends it first
    recs, srv = _loop_run(Limits(max_rate_mbps=40), direction="both", max_mb=cap / 1e6)
    (client,) = srv.clients.values()
    sent = sum(t.tx_bytes for t in client.tests.values())
    received = sum(t.rx_bytes for t in client.tests.values())
    assert 0 < sent + received <= cap
    assert sum(int(r.fields.get("bytes", 0)) for r in recs) <= cap
    down = recs[0]
    assert down.tags["direction"] == "down"
    assert down.result in ("ok", "budget_exceeded")
    if down.ok:
        assert down.fields["stop"] == "byte_cap" and down.fields["stable"] is False


def test_wrong_token_and_closed_port_are_failed_records() -> None:
    os.environ["NR_TP_WRONG"] = "not-the-token-xx"
    recs, _ = _loop_run(Limits(), token="env:NR_TP_WRONG", direction="down")
    assert [r.result for r in recs] == ["auth_failed"]
    assert "401" in str(recs[0].fields["reason"])

    async def closed():  # type: ignore[no-untyped-def]
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        spec = Spec(target=f"http://127.0.0.1:{port}", token="env:NR_TP_TOKEN", direction="up")
        return await throughput.run(registry.Context(), spec)

    recs = asyncio.run(closed())
    assert [r.result for r in recs] == ["refused"]
    assert recs[0].tags["direction"] == "up"


def test_cli_json_is_clean_and_failures_are_one_line() -> None:
    r = CliRunner().invoke(
        cli,
        [
            "probe",
            "throughput",
            "--target",
            "http://127.0.0.1:9",
            "--token",
            "env:NR_TP_TOKEN",
            "--direction",
            "down",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data[0]["tags"]["result"] == "refused"
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("Error: ")
    r = CliRunner().invoke(
        cli, ["probe", "throughput", "--target", "http://127.0.0.1:9", "--token", "inline-secret"]
    )
    assert r.exit_code == 2 and "inline" in r.output and "Traceback" not in r.output
    for argv in (
        ["probe", "throughput", "--target", "http://127.0.0.1:9", "--token", "env:NR_TP_TOKEN"],
        ["serve", "--listen", "127.0.0.1:9", "--token", "env:NR_TP_TOKEN"],
    ):
        r = CliRunner().invoke(cli, [*argv, "--congestion-control", "no-such-cc"])
        assert r.exit_code == 2, r.output
        assert "--congestion-control: TCP congestion control 'no-such-cc'" in r.output
        assert r.output.strip().count("\n") == 0 and "Traceback" not in r.output


# --------------------------------------------------------------------------- budget


def _site(**kw) -> Site:  # type: ignore[no-untyped-def]
    base = dict(
        ods="Y81001",
        name="Riverside",
        type="gp_practice",
        icb="QHM",
        link=Link(tech="adsl", down_mbps=8, up_mbps=0.8),
        clinic_hours=ClinicHours(
            days=["mon", "tue", "wed", "thu", "fri"], start=dt.time(8), end=dt.time(18, 30)
        ),
        budget=Budget(test_mb=50, daily_mb=120),
    )
    base.update(kw)
    return Site(**base)  # type: ignore[arg-type]


def test_admit_clinic_hours_budget_and_force(tmp_path: Path) -> None:
    ctx = registry.Context(site=_site(), state_dir=tmp_path)
    plugin = registry.get("probe", "throughput")
    spec = plugin.make_spec({"target": "http://h:1", "token": "env:X"})
    # Wednesday 2026-07-15 09:00 UTC = 10:00 BST: clinic hours
    clinic = dt.datetime(2026, 7, 15, 9, 0, tzinfo=dt.UTC)
    evening = dt.datetime(2026, 7, 15, 18, 0, tzinfo=dt.UTC)  # 19:00 BST
    winter_evening = dt.datetime(2026, 1, 14, 18, 0, tzinfo=dt.UTC)  # 18:00 GMT: clinic
    refused = budget.admit(ctx, plugin, spec, clinic)
    assert refused is not None and refused.code is budget.Reason.CLINIC_HOURS
    assert "clinic hours" in refused.reason and "Y81001" in refused.reason
    assert budget.admit(ctx, plugin, spec, evening) is None
    winter = budget.admit(ctx, plugin, spec, winter_evening)
    assert winter is not None and winter.code is budget.Reason.CLINIC_HOURS
    rec = budget.refusal(ctx, plugin, refused)
    assert rec.result == "skipped" and rec.fields["reason"] == refused.reason
    # the declared measurement and method, not a name looked up in the budget
    assert (rec.measurement, rec.tags["method"]) == ("throughput", "http")
    # budget: 120 MB/day, 50 MB per test
    assert budget.charge(ctx, "Y81001", 60_000_000, evening) == 60_000_000
    assert budget.admit(ctx, plugin, spec, evening) is None  # 60 + 50 <= 120
    budget.charge(ctx, "Y81001", 20_000_000, evening)
    refused = budget.admit(ctx, plugin, spec, evening)
    assert refused is not None and refused.code is budget.Reason.DAILY_BUDGET
    assert "daily budget" in refused.reason
    assert budget.refusal(ctx, plugin, refused).result == "budget_exceeded"
    # next UTC day starts afresh; the count persists across contexts (SQLite file)
    tomorrow = evening + dt.timedelta(days=1)
    ctx2 = registry.Context(site=_site(), state_dir=tmp_path)
    assert budget.used_today(ctx2, "Y81001", evening) == 80_000_000
    assert budget.admit(ctx2, plugin, spec, tomorrow) is None
    # per-test cap: min(spec, site test_mb, what is left today)
    assert budget.test_cap_bytes(ctx2, None, evening) == 40_000_000
    assert budget.test_cap_bytes(ctx2, 10, evening) == 10_000_000
    assert budget.test_cap_bytes(ctx2, None, tomorrow) == 50_000_000
    # force skips clinic hours and the daily budget; light plugins always pass
    forced = registry.Context(site=_site(), state_dir=tmp_path, force=True)
    assert budget.admit(forced, plugin, spec, clinic) is None
    assert budget.test_cap_bytes(forced, None, evening) == 50_000_000
    rtt = registry.get("probe", "rtt")
    assert budget.admit(ctx, rtt, rtt.make_spec({"target": "h:862"}), clinic) is None
    assert all(registry.get("probe", n).heavy for n in ("iperf3", "speedtest", "media"))


def test_cost_over_the_test_cap_is_refused_even_when_forced(tmp_path: Path) -> None:
    """A plugin whose bytes are known before it runs (its declared ``cost``) is refused by the
    generic budget when they exceed the per-test cap: a UDP iperf3 test, an emulated call."""
    forced = registry.Context(site=_site(), state_dir=tmp_path, force=True)  # 50 MB per test
    iperf3 = registry.get("probe", "iperf3")
    udp = iperf3.make_spec(
        {"target": "h", "protocol": "udp", "bitrate_mbps": 30, "duration_s": 10}
    )  # 2 x 37.5 MB
    refused = budget.admit(forced, iperf3, udp)
    assert refused is not None and refused.code is budget.Reason.TEST_CAP
    assert "over the 50 MB budget" in refused.reason
    rec = budget.refusal(forced, iperf3, refused)
    assert (rec.measurement, rec.tags["method"], rec.result) == (
        "throughput",
        "iperf3",
        "budget_exceeded",
    )
    small = iperf3.make_spec({"target": "h", "protocol": "udp", "bitrate_mbps": 5})  # 12.5 MB
    assert budget.admit(forced, iperf3, small) is None
    assert budget.admit(forced, iperf3, small.model_copy(update={"max_mb": 10})) is not None
    tcp = iperf3.make_spec({"target": "h"})  # paced to the cap while it runs: no cost
    assert iperf3.cost is not None and iperf3.cost(tcp) is None
    assert budget.admit(forced, iperf3, tcp) is None
    media = registry.get("probe", "media")
    call = media.make_spec({"target": "h:1", "profile": "fhd", "calls": 4, "duration_s": 60})
    refused = budget.admit(forced, media, call)
    assert refused is not None and refused.code is budget.Reason.TEST_CAP
    assert budget.refusal(forced, media, refused).measurement == "media"


def _tp(direction: str, mbps: float, t_ms: int) -> Record:
    return Record(
        "throughput",
        {"direction": direction, "result": "ok", "method": "http"},
        {"goodput_mbps": mbps, "bytes": 1000},
        t_ms,
    )


def _if(direction: str, rate: float, end_ms: int, wan: bool = True) -> Record:
    return Record(
        "if_traffic",
        {"direction": direction, "result": "ok", "method": "snmp"},
        {"rate_mbps": rate, "interval_s": 60.0, "is_wan": wan, "util_pct": 1.0},
        end_ms,
    )


def test_link_busy_with_and_without_snmp() -> None:
    t0, t1 = 1_000_000_000, 1_000_010_000  # a 10 s test
    recs = [_tp("down", 6.7, t1), _tp("up", 0.76, t1)]
    assert budget.mark_link_busy(recs, [], t0, t1) == recs  # no SNMP: unchanged
    # quiet minute before, and a sample overlapping the test carrying only the test itself
    quiet = [
        _if("in", 0.1, t0 - 1000),
        _if("out", 0.02, t0 - 1000),
        _if("in", 6.7 / 0.956 * 10 / 60 + 0.05, t1 + 50_000),
    ]
    assert [r.result for r in budget.mark_link_busy(recs, quiet, t0, t1)] == ["ok", "ok"]
    # someone uploading 0.3 Mbit/s (a scan?) during the minute before the test
    busy = [*quiet, _if("out", 0.3, t0 - 5000), _if("out", 50.0, t0, wan=False)]
    out = budget.mark_link_busy(recs, busy, t0, t1)
    assert [r.result for r in out] == ["ok", "link_busy"]
    assert out[1].fields["goodput_mbps"] == 0.76 and "link busy" in str(out[1].fields["reason"])
    # samples long before the lookback do not count
    old = [_if("out", 0.3, t0 - 600_000)]
    assert [r.result for r in budget.mark_link_busy(recs, old, t0, t1)] == ["ok", "ok"]
    assert budget.bytes_used(out) == 2000


# --------------------------------------------------------------------------- lab


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    import netready.lab.netns as netns
    from netready.lab.netns import PROFILES, Lab

    # lab.netns.cleanup_stale() run elsewhere with a private state directory (the lab tests,
    # on a shared machine) removes any live `nr-<id>-core` lab it has no state file for; a
    # distinct prefix keeps this module's lab out of its reach. Restored afterwards.
    saved, netns.NS_PREFIX = netns.NS_PREFIX, "nrtp-"
    try:
        yield from _lab_up(Lab, PROFILES)
    finally:
        netns.NS_PREFIX = saved


def _lab_up(Lab, PROFILES) -> Iterator[object]:  # type: ignore[no-untyped-def]
    with Lab(sites={"adsl": PROFILES["adsl"], "fttc40": PROFILES["fttc40"]}) as lb:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        srv = lb.popen(
            lb.core_ns,
            [
                sys.executable,
                "-m",
                "netready.cli",
                "serve",
                "--listen",
                f"{lb.core_ip}:8080",
                "--token",
                "env:NR_TP_TOKEN",
                "--max-tests",
                "2",
                "--allow-plain-http",  # the lab is a closed network of our own
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "listening" in srv.stderr.readline()
        # keep reading its log so the endpoint never blocks on a full pipe
        threading.Thread(target=srv.stderr.read, daemon=True).start()
        yield lb


def _lab_probe(lb, site: str, *extra: str) -> list[dict]:  # type: ignore[no-untyped-def]
    argv = [
        sys.executable,
        "-m",
        "netready.cli",
        "probe",
        "throughput",
        "--target",
        f"http://{lb.core_ip}:8080",
        "--token",
        "env:NR_TP_TOKEN",
        "--format",
        "json",
        *extra,
    ]
    cp = lb.run(lb.site_ns(site), argv, timeout=90, check=False)
    assert cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)  # type: ignore[no-any-return]


@pytest.mark.root
@pytest.mark.parametrize("site", ["adsl", "fttc40"])
def test_goodput_matches_shaped_rate_both_directions(lab, site: str) -> None:  # type: ignore[no-untyped-def]
    from netready.lab.netns import PROFILES

    p = PROFILES[site]
    recs = _lab_probe(lab, site)
    assert [r["tags"]["direction"] for r in recs] == ["down", "up"]
    for r in recs:
        f = r["fields"]
        assert r["tags"]["result"] == "ok", f
        truth = (p.down_mbit if r["tags"]["direction"] == "down" else p.up_mbit) * OVERHEAD
        assert f["goodput_mbps"] == pytest.approx(truth, rel=0.05), (site, r)
        # streams = the count goodput was measured with: 1 when a second stream made it worse
        # (on saturated CPUs it can: the estimator goes back, test_estimator_goes_back_...)
        assert 1 <= f["streams"] <= Spec.model_fields["max_streams"].default
        assert isinstance(f["retransmits"], int)
        # bounded: fewer bytes than a 10 s iperf3 run at the line rate plus the load the RPM
        # may hold after goodput is measured (Spec.rpm_hold_s)
        hold = Spec.model_fields["rpm_hold_s"].default
        assert f["bytes"] < truth * 1e6 / 8 * (10 + hold)
        assert f["bufferbloat_grade"] in "ABCDF"
    if site == "adsl":
        up = recs[1]["fields"]
        # 250 ms of buffer on a 0.8 Mbit/s upload: the loaded RTT must show it
        assert up["rtt_loaded_ms"] > up["rtt_idle_ms"] + 100
        assert up["bufferbloat_grade"] in "CDF"


_PINGS = """
import json, socket, sys
from netready.probes.throughput import wire
s = socket.create_connection((sys.argv[1], 8080), timeout=20)
req = wire.request_head("GET", wire.ping_path("rx-test"), sys.argv[1], sys.argv[2])
f = s.makefile("rb")
def ping():
    s.sendall(req)
    head = b""
    while not head.endswith(wire.HEAD_END):
        head += f.readline()
    _, h = wire.parse_head(head[:-4])
    return json.loads(f.read(int(h["content-length"])))["conn_retransmits"]
out = [ping()]
print("ready", flush=True)
sys.stdin.readline()  # the download now drops everything
out += [ping(), ping()]
print(json.dumps(out), flush=True)
"""


@pytest.mark.root
def test_endpoint_reports_a_ping_reply_it_had_to_send_again(lab) -> None:  # type: ignore[no-untyped-def]
    """The wire contract the probe's self-probe filter rests on, on the real kernel: a
    keep-alive connection's second reply is dropped on the line (nft, 100 % download loss
    for a second) and TCP sends it again; the third reply's ``conn_retransmits`` is higher
    than the second's, and ``rpm.unrepaired`` leaves out exactly the second ping."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = lab.popen(
        lab.site_ns("fttc40"),
        [sys.executable, "-c", _PINGS, lab.core_ip, TOKEN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "ready"
        lab.set_loss("fttc40", down_pct=100)
        p.stdin.write("go\n")
        p.stdin.flush()
        threading.Event().wait(1.0)  # the reply and its resends are dropped meanwhile
    finally:
        lab.set_loss("fttc40", down_pct=0)
    out, _ = p.communicate(timeout=30)
    r1, r2, r3 = json.loads(out)
    assert r1 == r2 and r3 > r2, (r1, r2, r3)
    assert rpm.unrepaired([0, 0, 0], [r1, r2, r3]) == [True, False, True]


@pytest.mark.root
def test_rpm_shows_the_adsl_upload_queue(lab) -> None:  # type: ignore[no-untyped-def]
    """The loaded round trip the RPM implies on the ADSL upload (0.8 Mbit/s, 250 ms of
    buffer) holds most of the queue; the exact agreement with the truth is in
    bench/throughput.py (a generous bound here: the machine may be loaded)."""
    from netready.lab.netns import PROFILES

    recs = _lab_probe(lab, "adsl", "--direction", "up")
    f = recs[0]["fields"]
    assert recs[0]["tags"]["result"] == "ok", f
    assert f["rpm_probes_foreign"] >= 5 and f["rpm_probes_self"] >= 5
    assert f["rpm_loaded_ms"] > f["rtt_idle_ms"] + 0.5 * PROFILES["adsl"].queue_ms
    assert f["rpm_foreign_tcp_ms"] > 0.5 * PROFILES["adsl"].queue_ms  # the SYN queues too
    assert f["rpm_confidence"] in ("high", "medium", "low")
    # the probes kept to the draft's overhead limit: the foreign ones at most 4 % of the
    # bytes on a line that was measured at goodput_mbps
    secs = f["duration_s"]
    probe_bits = f["rpm_probes_foreign"] * rpm.FOREIGN_PROBE_BYTES * 8
    assert probe_bits <= 0.05 * f["goodput_mbps"] * 1e6 * secs


def test_https_endpoint_with_and_without_verification(tmp_path: Path) -> None:
    import ssl

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(cert, key)

    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, Limits(max_rate_mbps=20))
        port = await srv.start("127.0.0.1", 0, sctx)
        try:
            out = []
            for verify in (False, True):
                await asyncio.sleep(1.1)  # the previous test at the endpoint is over
                spec = Spec(
                    target=f"https://127.0.0.1:{port}",
                    token="env:NR_TP_TOKEN",
                    direction="down",
                    verify_tls=verify,
                    max_seconds=5,
                )
                out += await throughput.run(registry.Context(), spec)
            return out
        finally:
            await srv.close()

    insecure, verified = asyncio.run(go())
    assert insecure.ok and insecure.fields["goodput_mbps"] == pytest.approx(20, rel=0.15)
    # https: the foreign probes time the TLS handshake apart from the connect and the GET
    f = insecure.fields
    assert f["rpm_foreign_tls_ms"] > 0 and f["rpm_foreign_tcp_ms"] > 0
    assert f["rpm_loaded_ms"] == pytest.approx(60000 / f["rpm"])
    assert verified.result == "error" and "TLS" in str(verified.fields["reason"])


def test_docs_list_every_field_the_probes_write() -> None:
    """docs/throughput.md and the module docstrings name every field a record carries."""
    from netready.probes import iperf3, speedtest

    docs = (ROOT / "docs" / "throughput.md").read_text()
    recs, _ = _loop_run(Limits(max_rate_mbps=20), direction="down", max_seconds=4)
    data = ROOT / "tests" / "data"
    ip3 = [
        iperf3.parse((data / f).read_text(), "up")
        for f in ("iperf3_tcp_p2.json", "iperf3_udp.json")
    ]
    st = speedtest.to_records(
        {
            "download": 1e6,
            "upload": 1e6,
            "ping": 3.0,
            "bytes_sent": 1,
            "bytes_received": 1,
            "server": {"id": "1"},
        },
        speedtest.Spec(threads=2),
        {},
    )
    for mod, records in ((throughput, recs), (iperf3, ip3), (speedtest, st)):
        for r in records:
            assert r.ok, r
            for name in r.fields:
                assert f"`{name}`" in docs, f"docs/throughput.md does not document {name}"
                assert name in (mod.__doc__ or ""), f"{mod.__name__} docstring lacks {name}"
            for tag in r.tags:
                assert tag in ("site", "icb", "tech", "target", "method", "direction", "result")


def test_ipv6_loopback_endpoint() -> None:
    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, Limits(max_rate_mbps=20))
        port = await srv.start("::1", 0)
        try:
            spec = Spec(
                target=f"http://[::1]:{port}",
                token="env:NR_TP_TOKEN",
                direction="up",
                max_seconds=5,
            )
            return await throughput.run(registry.Context(), spec)
        finally:
            await srv.close()

    (r,) = asyncio.run(go())
    assert r.ok, r
    assert r.tags["target"].startswith("[::1]:")
    assert r.fields["goodput_mbps"] == pytest.approx(20, rel=0.1)
    assert r.fields["endpoint_limited"] is True  # the endpoint throttled: its cap, not the line


def test_probe_cli_against_serve_command_on_ipv6_loopback() -> None:
    """`netready probe throughput` against `netready serve --listen [::1]:PORT`, both real
    commands in their own processes, both directions over IPv6."""
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srv = subprocess.Popen(
        [
            *(sys.executable, "-m", "netready.cli", "serve", "--listen", f"[::1]:{port}"),
            *("--token", "env:NR_TP_TOKEN", "--max-rate-mbps", "40"),
        ],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stderr is not None
        assert f"listening on http://[::1]:{port}" in srv.stderr.readline()
        cp = subprocess.run(
            [
                *("netready", "probe", "throughput", "--target", f"http://[::1]:{port}"),
                *("--token", "env:NR_TP_TOKEN", "--max-seconds", "6", "--format", "json"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        srv.send_signal(signal.SIGTERM)
        _, err = srv.communicate(timeout=20)
    assert cp.returncode == 0, cp.stderr
    recs = json.loads(cp.stdout)
    assert [r["tags"]["direction"] for r in recs] == ["down", "up"]
    for r in recs:
        assert r["tags"]["result"] == "ok", r
        assert r["tags"]["target"] == f"[::1]:{port}"
        # the endpoint's 40 Mbit/s limit is the bottleneck on loopback, and says so
        assert r["fields"]["goodput_mbps"] == pytest.approx(40, rel=0.15), r
        assert r["fields"]["endpoint_limited"] is True
    assert srv.returncode == 0 and "Traceback" not in err


def _both_directions(probe_share: float) -> tuple[list[Record], int, float, int]:
    """Both directions of one test at once against a loopback endpoint with the default ping
    limit: (records, pings the endpoint was sent, seconds, requests it refused with 429)."""
    from netready.servers.speed import PATH_PING

    async def go():  # type: ignore[no-untyped-def]
        srv = SpeedServer(TOKEN, Limits(max_rate_mbps=40))
        method, handler = srv._routes[PATH_PING]
        pings = []

        async def counted(request):  # type: ignore[no-untyped-def]
            pings.append(time.monotonic())
            return await handler(request)

        srv._routes[PATH_PING] = (method, counted)  # counts every ping, refused ones too
        port = await srv.start("127.0.0.1", 0)
        try:
            spec = Spec(target=f"http://127.0.0.1:{port}", token="env:NR_TP_TOKEN", max_seconds=6)
            ep = throughput.Endpoint.from_spec(spec)
            test_id = secrets.token_hex(8)
            t0 = time.monotonic()
            recs = await asyncio.gather(
                *(
                    throughput.measure_direction(
                        spec, ep, d, 10**9, {}, None, test_id, probe_share=probe_share
                    )
                    for d in ("down", "up")
                )
            )
            return list(recs), len(pings), time.monotonic() - t0, srv.refusals.get(429, 0)
        finally:
            await srv.close()

    return asyncio.run(go())  # type: ignore[no-any-return]


def test_two_directions_at_once_stay_within_the_endpoints_ping_limit() -> None:
    """The qos check loads both directions of one test at once, each at a share of a test's
    probe rate (``qos.QOS_PROBE_SHARE``): on loopback, where no queue slows the pings, together
    they stay under the endpoint's default 50 pings/s, and none is refused. (At a full share
    each, the two sent more than the limit and one direction failed with HTTP 429.)"""
    from netready.probes import qos

    recs, pings, seconds, refused = _both_directions(qos.QOS_PROBE_SHARE)
    assert all(r.ok for r in recs), [r.fields for r in recs]
    assert refused == 0
    assert pings / seconds < Limits().max_pings_per_s, (pings, seconds)
    spec = Spec(target="http://127.0.0.1:9", token="env:NR_TP_TOKEN")
    ep = throughput.Endpoint.from_spec(spec)
    with pytest.raises(ValueError, match="probe_share"):
        asyncio.run(throughput.measure_direction(spec, ep, "down", 1, {}, probe_share=0))
