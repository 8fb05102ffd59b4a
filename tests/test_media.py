"""The video-consultation probe and its responder: sans-IO statistics against hand-computed
traces, loopback calls against a real responder process, failures as records, and the link
lab (network namespaces, shaped by the router) for capacity, loss and DSCP bleaching."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from netready.records import Record
from netready.registry import Context
from probes import media
from probes.media import Arrival, trace_stats
from probes.media_responder import MediaResponder, responder_command

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MS = 1_000_000  # ns


# --------------------------------------------------------------------------- sans-IO


def audio(seq: int, send_ms: float, recv_ms: float, tos: int | None = 46 << 2) -> Arrival:
    return Arrival(seq, media.STREAM_AUDIO, int(send_ms * MS), int(recv_ms * MS), 172, tos)


def test_trace_stats_jitter_ipdv_pdv_by_hand() -> None:
    # Five audio packets 20 ms apart; one-way delay 10 ms except packet 2 (18 ms).
    arr = [audio(0, 0, 10), audio(1, 20, 30), audio(2, 40, 58), audio(3, 60, 70), audio(4, 80, 90)]
    st = trace_stats(arr, 5, 0.1, dscp_audio=46)
    # D = 0, +8, -8, 0 -> J = 0, 0.5, 0.96875, 0.908203125; mean of the running series.
    assert st.jitter_rfc3550_ms == pytest.approx((0 + 0.5 + 0.96875 + 0.908203125) / 4)
    # |IPDV| = 0, 8, 8, 0 -> p95 (linear) = 8; PDV = delay - min = 0,0,8,0,0 -> p95 = 6.4.
    assert st.ipdv_p95_ms == pytest.approx(8.0)
    assert st.pdv_p95_ms == pytest.approx(6.4)
    assert st.loss_pct == 0 and st.reorder_pct == 0 and st.received == 5
    assert st.dscp_preserved is True and st.dscp_audio_rx == 46
    # 5 x 172 bytes over 0.1 s = 68.8 kbit/s
    assert st.achieved_kbps == pytest.approx(68.8)


def test_trace_stats_loss_reorder_duplicates() -> None:
    # 10 packets; 3 lost; 6 arrives before 5; 7 duplicated.
    order = [0, 1, 2, 4, 6, 5, 7, 7, 8, 9]
    arr = [audio(s, s * 20, s * 20 + 5 + i * 0.01) for i, s in enumerate(order)]
    st = trace_stats(arr, 10, 0.2)
    assert st.received == 9 and st.duplicates == 1
    assert st.loss_pct == pytest.approx(10.0)
    assert st.reorder_pct == pytest.approx(100 / 9)  # 1 late out of 9 distinct arrivals
    assert st.max_burst_lost == 1


def test_trace_stats_burst_windows_and_interpolated_send_times() -> None:
    # 1000 packets 10 ms apart; 5 consecutive lost from t = 5.00 s.
    lost = set(range(500, 505))
    arr = [audio(s, s * 10, s * 10 + 3) for s in range(1000) if s not in lost]
    st = trace_stats(arr, 1000, 10.0, send_span_ns=(0, 999 * 10 * MS))
    assert st.loss_pct == pytest.approx(0.5)
    assert st.burst_loss_200ms_worst_pct == pytest.approx(25.0)  # 5 of 20 in [5.0, 5.2)
    assert st.loss_15s_worst_pct == pytest.approx(0.5)
    assert st.max_burst_lost == 5


def test_trailing_losses_are_placed_by_the_senders_span() -> None:
    # 100 packets 10 ms apart, the last 30 lost. With the sender's last send time they fall
    # in [0.7, 1.0) s: the window [0.8, 1.0) lost everything. Without it they would pile up
    # at the last received time (0.69 s) and the worst window would read 75 %.
    arr = [audio(s, s * 10, s * 10 + 1) for s in range(70)]
    with_span = trace_stats(arr, 100, 1.0, send_span_ns=(0, 990 * MS))
    without = trace_stats(arr, 100, 1.0)
    assert with_span.burst_loss_200ms_worst_pct == pytest.approx(100.0)
    assert without.burst_loss_200ms_worst_pct == pytest.approx(75.0)
    assert with_span.loss_pct == pytest.approx(30.0)


def test_rtt_from_echo_and_dscp_bleaching() -> None:
    a = Arrival(0, media.STREAM_AUDIO, 1 * MS, 100 * MS, 172, 0, echo_ns=40 * MS, hold_ns=10 * MS)
    b = Arrival(1, media.STREAM_VIDEO, 2 * MS, 101 * MS, 1000, 0, echo_ns=41 * MS, hold_ns=20 * MS)
    st = trace_stats([a, b], 2, 0.1, dscp_audio=46, dscp_video=34)
    # RTT = recv - echo - hold: 100 - 40 - 10 = 50 and 101 - 41 - 20 = 40
    assert st.rtt_p50_ms == pytest.approx(45.0) and st.rtt_p95_ms == pytest.approx(49.5)
    assert st.rtt_samples == 2
    assert st.dscp_preserved is False and st.dscp_audio_rx == 0 and st.dscp_video_rx == 0


def test_frame_packets_respect_size_and_rate() -> None:
    for prof in media.MEDIA_PROFILES.values():
        sizes = [
            frame_sz for k in range(60) for frame_sz in media.frame_packets(k, prof.video_kbps)
        ]
        assert max(sizes) <= media.MAX_PACKET
        # 60 frames = 2 s of video: the average rate holds within 0.5 %
        assert sum(sizes) * 8 / 2 / 1000 == pytest.approx(prof.video_kbps, rel=0.005)
    assert len(media.frame_packets(0, 1500)) > len(media.frame_packets(1, 1500))  # key frame


def test_evaluate_gates() -> None:
    good = {
        "loss_15s_worst_pct": 0.0,
        "jitter_rfc3550_15s_worst_ms": 1.0,
        "burst_loss_200ms_worst_pct": 0.0,
        "reorder_pct": 0.0,
        "rtt_p50_ms": 20.0,
        "mos": 4.4,
        "sent_kbps": 1570.0,
        "offered_kbps": 1568.8,
    }
    v = media.evaluate({"up": good, "down": good})
    assert v.passed and v.tier == "recommended" and not v.reasons
    bad_up = {**good, "loss_15s_worst_pct": 2.5, "mos": 3.0}
    v = media.evaluate({"up": bad_up, "down": {**good, "jitter_rfc3550_15s_worst_ms": 20.0}})
    assert not v.passed and v.tier == "not_ready"
    assert any(r.startswith("upload: worst 15 s loss 2.5%") for r in v.reasons)
    assert any("download" in r and "jitter" in r for r in v.recommended_reasons)
    # between not-ready and minimum (rubric bands from reports/rubric.py): marginal
    v = media.evaluate({"up": {**good, "burst_loss_200ms_worst_pct": 15.0}, "down": good})
    assert (v.passed, v.tier) == (False, "marginal")
    assert v.reasons == ["upload: worst 200 ms burst loss 15% ≥ 10%"]
    v = media.evaluate({"up": good, "down": {**good, "rtt_p50_ms": 100.0}})  # "≤ 100 ms"
    assert (v.passed, v.tier) == (True, "minimum")
    assert v.recommended_reasons == ["download: RTT p50 under load 100 ms > 60 ms"]
    # a missing figure never passes; a sender that fell short invalidates the verdict
    v = media.evaluate({"up": {k: x for k, x in good.items() if k != "mos"}, "down": good})
    assert not v.passed and "upload: MOS (E-model) not measured" in v.reasons
    v = media.evaluate({"up": good, "down": {**good, "sent_kbps": 1000.0}})
    assert not v.passed and "sender reached only" in v.reasons[0]
    v = media.evaluate({"up": {**good, "host_drops": 3}, "down": good})
    assert v.reasons == [
        "upload: 3 packets dropped in the receiving host's socket buffer "
        "(host overloaded; result not valid)"
    ]


def test_receive_buffer_overflow_is_counted() -> None:
    """SO_RXQ_OVFL: packets our own socket dropped are counted, not blamed on the network."""
    rx = media.open_media_socket(socket.AF_INET)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # tiny, on purpose
    rx.bind(("127.0.0.1", 0))
    clock = media.Clock()
    got = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(200):
            tx.sendto(bytes(1200), rx.getsockname())
        # the kernel stamps the drop count on the packets queued *after* a drop
        for _ in range(2):
            with contextlib.suppress(BlockingIOError):
                while True:
                    _d, anc, _f, _a = rx.recvmsg(2048, 256)
                    clock.from_cmsg(anc)
                    got += 1
            tx.sendto(bytes(1200), rx.getsockname())
            time.sleep(0.05)
    rx.close()
    assert got + clock.drops == 201 and clock.drops > 100


def test_admission_is_pure_and_checks_everything() -> None:
    r = MediaResponder(
        "127.0.0.1:5004",
        ["10.0.0.0/8"],
        secret="s3cret",
        max_mbps_session=2,
        max_mbps_total=3,
        max_duration_s=60,
    )
    hello = {
        "op": "hello",
        "v": 1,
        "sid": 7,
        "video_kbps": 1500.0,
        "duration_s": 10,
        "dscp_audio": 46,
        "dscp_video": 34,
        "nonce": "ab",
        "time": 1000.0,
    }
    signed = {**hello, "hmac": media.sign(hello, "s3cret")}
    assert r.admit(signed, "10.1.2.3", 1000.0) is None
    assert r.admit(signed, "127.0.0.1", 1000.0) == (
        "refused",
        "source 127.0.0.1 is not in the responder's allow-list",
    )
    assert r.admit(signed, "::ffff:10.1.2.3", 1000.0) is None  # v4-mapped source
    assert r.admit(hello, "10.1.2.3", 1000.0)[0] == "auth_failed"
    assert r.admit({**hello, "hmac": media.sign(hello, "other")}, "10.1.2.3", 1000.0) == (
        "auth_failed",
        "bad hmac: wrong shared secret",
    )
    assert r.admit(signed, "10.1.2.3", 2000.0)[0] == "auth_failed"  # clock skew > 300 s
    r.nonces["ab"] = 0.0
    assert "replayed" in r.admit(signed, "10.1.2.3", 1000.0)[1]
    r.nonces.clear()
    v2 = {**hello, "v": 2}
    assert "version 2" in r.admit({**v2, "hmac": media.sign(v2, "s3cret")}, "10.1.2.3", 1000)[1]
    big = {**hello, "video_kbps": 2500.0}
    assert (
        "per-session cap"
        in r.admit({**big, "hmac": media.sign(big, "s3cret")}, "10.1.2.3", 1000.0)[1]
    )
    long = {**hello, "duration_s": 61}
    assert (
        "limit 60 s" in r.admit({**long, "hmac": media.sign(long, "s3cret")}, "10.1.2.3", 1000.0)[1]
    )


# --------------------------------------------------------------------------- loopback


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def responder() -> Iterator[Callable[..., int]]:
    """Start real responder processes (``python -m probes.media_responder``) on loopback."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> int:
        port = free_port()
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        p = subprocess.Popen(
            [PY, "-m", "probes.media_responder", "--listen", listen, *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        procs.append(p)
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "listening on" in line, line
        return port

    yield start
    for p in procs:
        p.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
        if p.poll() is None:
            p.kill()


def probe(**kw: object) -> list[Record]:
    spec = media.Spec.model_validate(kw)
    return asyncio.run(media.run(Context(), spec))


def by(records: list[Record]) -> dict[str, Record]:
    return {r.tags.get("direction") or r.tags.get("gate") or r.tags["method"]: r for r in records}


def test_loopback_call_both_directions(responder: Callable[..., int]) -> None:
    port = responder()
    recs = by(probe(target=f"127.0.0.1:{port}", profile="hd", duration_s=2, calls=2))
    prof = media.MEDIA_PROFILES["hd"]
    # The schedule is exact: 100 audio packets and 60 frames in 2 s, per call.
    per_call = 100 + sum(len(media.frame_packets(k, prof.video_kbps)) for k in range(60))
    for d in ("up", "down"):
        f = recs[d].fields
        assert recs[d].ok and recs[d].tags["profile"] == "hd"
        assert f["sent"] == 2 * per_call and f["received"] == 2 * per_call
        assert f["loss_pct"] == 0.0 and f["reorder_pct"] == 0.0
        assert f["dscp_preserved"] is True and f["dscp_audio_rx"] == 46
        assert f["dscp_video_rx"] == 34
        # the sender kept to its schedule (exact counts above); rate over the run within 8 %
        assert f["sent_kbps"] == pytest.approx(prof.kbps, rel=0.08)
        assert f["achieved_kbps"] == pytest.approx(prof.kbps, rel=0.08)
        assert 0 < f["rtt_p50_ms"] < 50
        assert f["mos"] > 4.0 and f["calls"] == 2
    gate = recs["minimum"]
    assert gate.fields["passed"] is True and gate.fields["tier"] == "recommended"
    # IP bytes moved (payload + 28 B per packet, both directions) for the agent's budget
    payload = (
        2
        * 2
        * (
            100 * media.AUDIO_PACKET
            + sum(sum(media.frame_packets(k, prof.video_kbps)) for k in range(60))
        )
    )
    assert gate.fields["bytes"] == payload + 28 * 4 * per_call


def test_ipv6_loopback_call(responder: Callable[..., int]) -> None:
    port = responder("--allow", "::1/128", host="::1")
    recs = by(probe(target=f"[::1]:{port}", profile="sd", duration_s=1))
    for d in ("up", "down"):
        f = recs[d].fields
        assert f["loss_pct"] == 0.0 and f["received"] > 100
        assert f["dscp_preserved"] is True and f["dscp_video_rx"] == 34  # IPV6_TCLASS path


def test_secret_accepted_refused_and_missing(
    responder: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = responder(
        "--secret", "env:NR_TEST_MEDIA_SECRET", env={"NR_TEST_MEDIA_SECRET": "correct horse"}
    )
    monkeypatch.setenv("NR_TEST_MEDIA_SECRET", "correct horse")
    monkeypatch.setenv("NR_TEST_WRONG_SECRET", "wrong")
    ok = by(probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=0.5,
                  secret="env:NR_TEST_MEDIA_SECRET"))  # fmt: skip
    assert ok["up"].ok and ok["up"].fields["received"] > 0
    (bad,) = probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=0.5,
                   secret="env:NR_TEST_WRONG_SECRET")  # fmt: skip
    assert bad.result == "auth_failed" and "wrong shared secret" in bad.fields["reason"]
    (none,) = probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=0.5)
    assert none.result == "auth_failed" and "requires a shared secret" in none.fields["reason"]


def test_refused_by_allow_list_and_caps(responder: Callable[..., int]) -> None:
    port = responder("--allow", "10.0.0.0/8")
    (r,) = probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=0.5)
    assert r.result == "refused" and "allow-list" in r.fields["reason"]
    port = responder("--max-mbps-session", "1", "--max-mbps-total", "2", "--max-duration", "5")
    (r,) = probe(target=f"127.0.0.1:{port}", profile="hd", duration_s=0.5)
    assert r.result == "refused" and "per-session cap" in r.fields["reason"]
    (r,) = probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=6)
    assert r.result == "refused" and "limit 5 s" in r.fields["reason"]
    (r,) = probe(target=f"127.0.0.1:{port}", profile="sd", duration_s=1, calls=4)
    assert r.result == "link_busy" and "total cap" in r.fields["reason"]
    assert "of 4 calls failed" in r.fields["reason"]


def test_unreachable_and_silent_responder() -> None:
    port = free_port()  # nothing listens: ICMP port unreachable
    (r,) = probe(target=f"127.0.0.1:{port}", duration_s=1, timeout_s=2)
    assert r.result == "unreachable" and f"127.0.0.1:{port} unreachable" in r.fields["reason"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:  # bound, never answers
        hole.bind(("127.0.0.1", 0))
        t = time.monotonic()
        (r,) = probe(target=f"127.0.0.1:{hole.getsockname()[1]}", duration_s=1, timeout_s=1)
        assert time.monotonic() - t < 3
    assert r.result == "timeout" and "no answer from media responder" in r.fields["reason"]
    (r,) = probe(target="no-such-host.invalid:5004", duration_s=1)
    assert r.result == "unreachable" and "cannot resolve" in r.fields["reason"]


def test_budgets(responder: Callable[..., int]) -> None:
    port = responder()
    (r,) = probe(target=f"127.0.0.1:{port}", profile="fhd", duration_s=15, calls=4, max_mb=1)
    assert r.result == "budget_exceeded" and "over the 1 MB budget" in r.fields["reason"]
    (r,) = probe(target=f"127.0.0.1:{port}", find_capacity=True, step_duration_s=2, budget_s=1)
    assert r.result == "budget_exceeded" and "time budget" in r.fields["reason"]
    # Room for one SD call of 1 s (142 kB both ways) but not two more: a partial answer.
    recs = probe(
        target=f"127.0.0.1:{port}",
        profile="sd",
        find_capacity=True,
        step_duration_s=1,
        max_mb=0.3,
    )
    cap = recs[-1]
    assert cap.ok and cap.tags["method"] == "find_capacity" and cap.tags["profile"] == "sd"
    assert cap.fields["capacity_calls"] == 1 and cap.fields["search_complete"] is False
    assert "byte budget" in cap.fields["limit_reason"] and cap.fields["steps"] == "1:pass"


def test_responder_ends_a_session_that_sends_too_much(responder: Callable[..., int]) -> None:
    port = responder()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(2)
        hello = {"op": "hello", "v": 1, "sid": 99, "video_kbps": 100.0, "duration_s": 3}
        s.send(media.pack_control(hello))
        assert media.parse_control(s.recv(2048))["op"] == "accept"
        pad = bytes(1200 - media.HEADER_SIZE)
        t0 = time.monotonic()
        seq = 0
        while time.monotonic() - t0 < 2.2:  # ~5 Mbit/s against a declared 0.17
            for _ in range(25):
                s.send(media.pack_media(99, seq, 1, time.monotonic_ns(), 0, 0, 0) + pad)
                seq += 1
            time.sleep(0.05)
        s.send(media.pack_control({"op": "stop", "sid": 99, "sent": seq}))
        while True:
            msg = media.parse_control(s.recv(4096))
            if msg and msg["op"] == "stats":
                break
    assert msg["policed"] is True and msg["up"] is None
    assert msg["down"]["sent"] < 200  # its downstream stopped early (3 s would be 240)


def test_cli_json_and_bad_input(responder: Callable[..., int]) -> None:
    port = responder()
    res = CliRunner().invoke(
        media.media_command,
        [
            "--target",
            f"127.0.0.1:{port}",
            "--profile",
            "sd",
            "--duration",
            "0.5",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = json.loads(res.stdout)
    assert {r["tags"].get("direction") for r in recs} == {"up", "down", None}
    res = CliRunner().invoke(media.media_command, ["--target", "nohostport"])
    assert res.exit_code == 2 and "missing :PORT" in res.stderr
    assert "Traceback" not in res.output
    res = CliRunner().invoke(responder_command, ["--allow", "not-a-cidr"])
    assert res.exit_code == 2 and "not a CIDR" in res.stderr


# --------------------------------------------------------------------------- the link lab


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    from lab.netns import PROFILES, Lab

    with Lab(
        sites={"adsl": PROFILES["adsl"], "fttc40": PROFILES["fttc40"], "eth": PROFILES["ethernet"]}
    ) as lb:
        p = lb.popen(
            lb.core_ns,
            [
                PY,
                "-m",
                "probes.media_responder",
                "--listen",
                f"{lb.core_ip}:5004",
                "--allow",
                "10.77.0.0/16",
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "listening on" in p.stderr.readline()
        try:
            yield lb
        finally:
            p.terminate()
            p.wait(5)


def lab_probe(lb: object, site: str, *args: str, timeout: float = 90) -> list[Record]:
    p = lb.popen(
        lb.site_ns(site),
        [
            PY,
            "-m",
            "probes.media",
            "--target",  # type: ignore[attr-defined]
            f"{lb.core_ip}:5004",
            "--format",
            "json",
            *args,
        ],  # type: ignore[attr-defined]
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = p.communicate(timeout=timeout)
    assert out.lstrip().startswith("["), err
    return [Record.from_dict(d) for d in json.loads(out)]


def capacity(recs: list[Record]) -> Record:
    (cap,) = [r for r in recs if "capacity_calls" in r.fields]
    return cap


def test_lab_adsl_has_no_hd_capacity_because_of_upload(lab: object) -> None:
    cap = capacity(lab_probe(lab, "adsl", "--find-capacity", "--step-duration", "2"))
    assert cap.fields["capacity_calls"] == 0 and cap.tags["profile"] == "hd"
    assert cap.fields["limit_reason"].startswith("1 call(s): upload: worst 15 s loss")
    assert "download: worst 15 s loss" not in cap.fields["limit_reason"]  # 7 Mbit/s down is fine


def test_lab_fttc40_carries_at_least_one_hd_call(lab: object) -> None:
    cap = capacity(
        lab_probe(lab, "fttc40", "--find-capacity", "--step-duration", "2", "--max-calls", "2")
    )
    assert cap.fields["capacity_calls"] >= 1


def test_lab_ethernet_carries_several_and_keeps_dscp(lab: object) -> None:
    recs = lab_probe(lab, "eth", "--find-capacity", "--step-duration", "2", "--max-calls", "8")
    assert capacity(recs).fields["capacity_calls"] >= 4
    dirs = [r for r in recs if r.tags.get("direction")]
    assert dirs and all(r.fields["dscp_preserved"] is True for r in dirs)


def test_lab_injected_two_percent_loss_is_measured(lab: object) -> None:
    lab.set_loss("eth", 2, 2)  # type: ignore[attr-defined]
    try:
        recs = by(lab_probe(lab, "eth", "--profile", "fhd", "--calls", "8", "--duration", "4"))
    finally:
        lab.set_loss("eth", 0, 0)  # type: ignore[attr-defined]
    for d in ("up", "down"):
        f = recs[d].fields
        assert f["sent"] >= 10_000
        assert abs(f["loss_pct"] - 2.0) <= 0.5, (d, f)
    assert recs["minimum"].fields["passed"] is False  # 2 % > the 1 % gate


def test_lab_dscp_bleaching_is_detected(lab: object) -> None:
    lab.set_dscp_rewrite("fttc40", True)  # type: ignore[attr-defined]
    try:
        recs = by(lab_probe(lab, "fttc40", "--profile", "sd", "--duration", "2"))
    finally:
        lab.set_dscp_rewrite("fttc40", False)  # type: ignore[attr-defined]
    for d in ("up", "down"):
        assert recs[d].fields["dscp_preserved"] is False
        assert recs[d].fields["dscp_audio_rx"] == 0
