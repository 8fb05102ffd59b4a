"""Prometheus interop: the central servers' ``/metrics`` and the agent's node_exporter textfile,
scraped by Debian's real ``prometheus`` (and ``prometheus-node-exporter`` for the textfile)
on loopback: start prometheus with a temporary config, wait for a scrape, query its HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from influxd import free_port
from netready.probes.rtt import twamp
from prometheus_client.parser import text_string_to_metric_families
from test_agent import agent, inventory

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
#: How long a scrape may take to show up on a loaded machine (bounded; not a timing assert).
WAIT_S = 90.0


@contextmanager
def server(
    *args: str, env: dict[str, str] | None = None, listening: int = 1
) -> Iterator[subprocess.Popen[str]]:
    """A netready server command, running until the block ends (SIGTERM, then wait); yields
    once it has logged ``listening`` "listening on" lines (its sockets are bound)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "netready.cli", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        seen = 0
        while seen < listening:
            line = p.stderr.readline()  # type: ignore[union-attr]
            assert line, f"{args[0]} exited {p.wait(10)} before listening"
            seen += "listening on" in line
        yield p
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_http(url: str, proc: subprocess.Popen[Any] | None = None) -> None:
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"{proc.args} exited {proc.returncode}: {err}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@contextmanager
def prometheus(tmp: Path, targets: list[str]) -> Iterator[str]:
    """Debian's prometheus scraping ``targets`` every second; yields its base URL."""
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        + "".join(
            f"  - job_name: j{i}\n    static_configs:\n      - targets: ['{t}']\n"
            for i, t in enumerate(targets)
        )
    )
    p = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", p)
        yield url
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def query_until(url: str, promql: str, ok: Any) -> list[dict[str, Any]]:
    """Query prometheus until ``ok(result)`` holds (bounded by WAIT_S); the last result."""
    end = time.monotonic() + WAIT_S
    result: list[dict[str, Any]] = []
    while time.monotonic() < end:
        r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert r["status"] == "success", r
        result = r["data"]["result"]
        if ok(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql}: {result}")


def by(result: list[dict[str, Any]], **labels: str) -> float:
    for s in result:
        if all(s["metric"].get(k) == v for k, v in labels.items()):
            return float(s["value"][1])
    raise KeyError(labels)


def test_real_prometheus_scrapes_reflector_responder_and_speed(tmp_path: Path) -> None:
    refl, media, speed = free_port(), free_port(), free_port()
    m1, m2 = free_port(), free_port()
    token = "t0ken-for-metrics"
    with server(
        "reflector", "--listen", f"127.0.0.1:{refl}", "--media", f"127.0.0.1:{media}",
        "--metrics", str(m1), listening=2,
    ) as p1, server(
        "serve", "--listen", f"127.0.0.1:{speed}", "--token", "env:NR_TOKEN", "--metrics", str(m2),
        env={"NR_TOKEN": token},
    ) as p2:
        wait_http(f"http://127.0.0.1:{m1}/metrics", p1)
        wait_http(f"http://127.0.0.1:{m2}/metrics", p2)
        # the reflector: 3 good requests and 2 too short; the responder: 1 datagram not ours
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            good = [twamp.pack_sender(i, twamp.ntp_now()) for i in range(3)]
            for pkt in good:
                s.sendto(pkt, ("127.0.0.1", refl))
                assert len(s.recv(2048)) == len(pkt)
            for _ in range(2):
                s.sendto(b"\x00" * 8, ("127.0.0.1", refl))
            s.sendto(b"hello?", ("127.0.0.1", media))
        # one real call (2 s) through the responder: one session, media both ways
        call = subprocess.run(
            [sys.executable, "-m", "netready.cli", "probe", "media", "--target",
             f"127.0.0.1:{media}", "--profile", "sd", "--duration", "2", "--format", "json"],
            capture_output=True, text=True, timeout=120,
        )
        assert call.returncode == 0, call.stderr
        upstream = next(r for r in json.loads(call.stdout) if r["tags"].get("direction") == "up")
        # the speed endpoint: one request without the token, one ping with it
        assert httpx.get(f"http://127.0.0.1:{speed}/ping").status_code == 401
        ok = httpx.get(
            f"http://127.0.0.1:{speed}/ping", headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 200
        with prometheus(tmp_path, [f"127.0.0.1:{m1}", f"127.0.0.1:{m2}"]) as prom:
            up = query_until(prom, "up", lambda r: len(r) == 2 and all(
                s["value"][1] == "1" for s in r))
            assert len(up) == 2
            ref = query_until(
                prom, "netready_server_refusals_total",
                lambda r: {s["metric"].get("reason") for s in r} >= {"too_short", "not_ours",
                                                                      "http_401"},
            )
            assert by(ref, server="reflector", reason="too_short") == 2
            assert by(ref, server="responder", reason="not_ours") == 1
            assert by(ref, server="speed", reason="http_401") == 1
            byt = query_until(prom, "netready_server_bytes_total", lambda r: len(r) == 6)
            sent = sum(len(p) for p in good)
            assert by(byt, server="reflector", direction="rx") == sent + 16
            assert by(byt, server="reflector", direction="tx") == sent  # never more than sent
            req = query_until(prom, "netready_server_requests_total", lambda r: len(r) == 3)
            assert by(req, server="reflector") == 5
            # every datagram the responder read: the call's upstream media and a few control
            assert upstream["fields"]["received"] <= by(req, server="responder") - 1
            assert by(req, server="responder") <= upstream["fields"]["sent"] + 20
            assert by(req, server="speed") == 2
            ses = query_until(prom, "netready_server_sessions_total", lambda r: len(r) == 3)
            assert by(ses, server="responder") == 1
            assert by(ses, server="reflector") == 0 and by(ses, server="speed") == 0
            # the responder sent the downstream of a 0.5 Mbit/s 2 s call: tens of kB
            assert by(byt, server="responder", direction="tx") > 50_000
            assert by(byt, server="responder", direction="rx") > 50_000
            lim = query_until(prom, "netready_server_rate_limited_total", lambda r: len(r) == 3)
            assert all(float(s["value"][1]) == 0 for s in lim)
            act = query_until(prom, "netready_server_sessions_open", lambda r: len(r) == 3)
            assert all(float(s["value"][1]) == 0 for s in act)


def test_metrics_refuses_the_measurement_port() -> None:
    port = free_port()
    r = subprocess.run(
        [sys.executable, "-m", "netready.cli", "reflector", "--listen", f"127.0.0.1:{port}",
         "--metrics", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert "measurement port" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_agent_textfile_through_real_node_exporter_and_prometheus(tmp_path: Path) -> None:
    """The agent (--once, rtt against a real reflector) writes its record as a textfile;
    prometheus-client's parser reads it; node_exporter's textfile collector serves it and
    prometheus scrapes the same values."""
    refl = free_port()
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    prom_file = textdir / "netready.prom"
    with server("reflector", "--listen", f"127.0.0.1:{refl}"):
        inv = inventory(tmp_path, {"kind": "embedded"}, f"127.0.0.1:{refl}", duration=1)
        r = agent(inv, "--once", "--textfile", str(prom_file))
    assert r.returncode == 0, r.stderr
    text = prom_file.read_text()
    assert not list(textdir.glob("*.tmp*"))  # renamed into place, nothing left behind
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    enq = fams["netready_agent_enqueued"].samples[0]
    assert enq.labels["site"] == "Y81001" and enq.value >= 1
    assert fams["netready_agent_info"].samples[0].labels["version"]
    assert fams["netready_agent_loop_restarts"].samples[0].value == 0
    port = free_port()
    ne = subprocess.Popen(
        [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textdir}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", ne)
        with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom:
            got = query_until(prom, "netready_agent_enqueued", lambda res: len(res) == 1)
            assert got[0]["metric"]["site"] == "Y81001"
            assert float(got[0]["value"][1]) == enq.value
            err = query_until(prom, "node_textfile_scrape_error", lambda res: len(res) == 1)
            assert err[0]["value"][1] == "0"
    finally:
        ne.terminate()
        ne.wait(10)


def test_agent_textfile_bad_path_is_one_line_exit_2(tmp_path: Path) -> None:
    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:9")
    r = agent(inv, "--once", "--textfile", str(tmp_path / "nodir" / "x.prom"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = agent(inv, "--once", "--textfile", str(tmp_path / "x.txt"))
    assert r.returncode == 2 and ".prom" in r.stderr


@pytest.mark.parametrize("cmd", ["reflector", "responder", "serve"])
def test_metrics_option_in_help(cmd: str) -> None:
    r = subprocess.run([sys.executable, "-m", "netready.cli", cmd, "--help"],
                       capture_output=True, text=True, timeout=60)
    assert "--metrics" in r.stdout
