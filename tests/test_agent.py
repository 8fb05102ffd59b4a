"""The site agent end to end: reflector on loopback -> agent --once -> real InfluxDB -> report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from influxd import Influxd, free_port


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def reflector_addr() -> Iterator[str]:
    port = udp_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "netready.cli", "reflector", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stderr.readline()  # type: ignore[union-attr]  # bound and listening
    yield f"127.0.0.1:{port}"
    p.terminate()
    p.wait(10)


def inventory(
    tmp_path: Path,
    store: dict[str, object],
    target: str,
    duration: float = 3,
    *,
    interval_s: float | None = None,
    spool: Path | None = None,
    **agent_cfg: object,
) -> Path:
    inv = {
        "version": 1,
        "store": store,
        "agent": {
            "spool_path": str(spool or tmp_path / "spool.db"),
            "ship_interval_s": 1,
            "splay_s": 0,
            **agent_cfg,
        },
        "sites": [
            {
                "ods": "Y81001",
                "name": "Riverside Surgery",
                "type": "gp_practice",
                "icb": "QHM",
                "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
                "clinic_hours": {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "00:00",
                    "end": "23:59:59",
                },
                "targets": [
                    {
                        "name": "core",
                        "probe": "rtt",
                        "address": target,
                        "params": {"duration_s": duration, "rate_pps": 50, "window_s": 1},
                        **({"interval_s": interval_s} if interval_s else {}),
                    }
                ],
            }
        ],
    }
    p = tmp_path / "inv.yaml"
    p.write_text(yaml.safe_dump(inv))
    return p


def agent(inv: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "netready-agent",
            "--inventory",
            str(inv),
            "--state-dir",
            str(inv.parent / "state"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_agent_once_to_influxdb_and_report(
    influxd: Influxd, influxdb: tuple[str, str], reflector_addr: str, tmp_path: Path
) -> None:
    url, db = influxdb
    inv = inventory(tmp_path, {"kind": "influxdb_v1", "url": url, "database": db}, reflector_addr)
    r = agent(inv, "--once")
    assert r.returncode == 0, r.stderr
    logs = [json.loads(line) for line in r.stderr.splitlines()]
    assert any(x.get("task") == "probe:rtt:core" and x.get("result") == "ok" for x in logs)
    res = influxd.query('SELECT * FROM "rtt"', db)["results"][0]["series"][0]
    rows = [dict(zip(res["columns"], v)) for v in res["values"]]
    assert len(rows) == 3  # one record per 1 s window
    for row in rows:
        assert row["site"] == "Y81001" and row["icb"] == "QHM" and row["tech"] == "fttc"
        assert row["sent"] == 50 and row["received"] == 50 and row["loss_pct"] == 0
        assert 0 < row["rtt_p50_ms"] < 50
    ag = influxd.query('SELECT * FROM "agent"', db)["results"][0]["series"][0]
    agent_row = dict(zip(ag["columns"], ag["values"][0]))
    assert agent_row["version"] and agent_row["rss_mb"] > 0
    st = subprocess.run(
        ["netready", "spool", "stats", "--inventory", str(inv), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    stats = json.loads(st.stdout)
    assert stats["pending"] == 0 and stats["shipped"] == 4 and stats["dropped"] == 0
    rep = subprocess.run(
        ["netready", "report", "--inventory", str(inv), "--format", "json", "--since", "1d"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 0, rep.stderr
    site = next(s for s in json.loads(rep.stdout)["sites"] if s["ods"] == "Y81001")
    assert (
        min(r["rtt_p50_ms"] for r in rows) <= site["rtt_ms"] <= max(r["rtt_p50_ms"] for r in rows)
    )
    assert site["loss_pct"] == 0


def test_agent_keeps_records_when_influxdb_is_down(reflector_addr: str, tmp_path: Path) -> None:
    inv = inventory(
        tmp_path,
        {
            "kind": "influxdb_v1",
            "url": f"http://127.0.0.1:{free_port()}",
            "database": "netready",
            "timeout_s": 1,
        },
        reflector_addr,
        1,
    )
    r = agent(inv, "--once", "--ship-timeout", "3")
    assert r.returncode == 1
    assert "records stay in the spool" in r.stderr
    st = json.loads(
        subprocess.run(
            ["netready", "spool", "stats", "--inventory", str(inv), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert st["pending"] == 2 and st["shipped"] == 0  # the rtt record (1 s) and the agent record
    assert "unreachable" in st["last_error"]


def test_agent_embedded_store_feeds_report(reflector_addr: str, tmp_path: Path) -> None:
    inv = inventory(tmp_path, {"kind": "embedded"}, reflector_addr, 3)
    assert agent(inv, "--once").returncode == 0
    rep = subprocess.run(
        ["netready", "report", "--inventory", str(inv), "--format", "json", "--since", "1d"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    site = json.loads(rep.stdout)["sites"][0]
    assert site["ods"] == "Y81001" and site["rtt_ms"] is not None and site["rtt_ms"] > 0


def test_sigterm_stops_promptly_and_cleanly(reflector_addr: str, tmp_path: Path) -> None:
    inv = inventory(tmp_path, {"kind": "embedded"}, reflector_addr, duration=60)
    p = subprocess.Popen(
        ["netready-agent", "--inventory", str(inv), "--state-dir", str(tmp_path / "state")],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "starting" in p.stderr.readline()  # type: ignore[union-attr]
    time.sleep(1.0)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0
    assert time.monotonic() - t0 < 10  # did not wait for the 60 s probe to finish
    assert "agent stopped" in err and "Traceback" not in err


def test_bad_site_and_bad_inventory_exit_2(tmp_path: Path) -> None:
    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:1")
    r = agent(inv, "--once", "--site", "Z99999")
    assert r.returncode == 2 and "no site with ODS code Z99999" in r.stderr
    inv.write_text(inv.read_text().replace("probe: rtt", "probe: rtx"))
    r = agent(inv, "--once")
    assert r.returncode == 2 and "unknown probe 'rtx'" in r.stderr and "Traceback" not in r.stderr
    inv.write_text(
        inv.read_text().replace("probe: rtx", "probe: rtt").replace("rate_pps: 50", "rate_pps: -5")
    )
    r = agent(inv, "--once")
    assert r.returncode == 2 and "site Y81001 target core: rate_pps" in r.stderr


def test_agent_py_is_the_same_entry_point(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, str(root / "agent.py"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert r.stdout.startswith("netready-agent, version ")


def test_secrets_never_reach_logs_or_records(tmp_path: Path) -> None:
    """A wrong SNMP community (from env:) on an unreachable router: the failure is recorded and
    logged, and the secret's value appears nowhere — not in the log, not in the spool."""
    secret = "hunter2-" + os.urandom(4).hex()
    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:9", duration=0.2)
    data = yaml.safe_load(inv.read_text())
    data["sites"][0]["router"] = {
        "host": "127.0.0.1",
        "snmp": {
            "version": "2c",
            "port": udp_port(),
            "community": "env:NR_TEST_COMMUNITY",
            "timeout_s": 0.3,
            "retries": 0,
        },
    }
    inv.write_text(yaml.safe_dump(data))
    r = subprocess.run(
        [
            "netready-agent",
            "--inventory",
            str(inv),
            "--once",
            "--log-level",
            "debug",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NR_TEST_COMMUNITY": secret},
    )
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    assert any(
        json.loads(x).get("task") == "collector:snmp:router-snmp"
        for x in r.stderr.splitlines()
        if x.startswith("{")
    )
    dump = b"".join(p.read_bytes() for p in tmp_path.glob("spool.db*"))
    assert secret.encode() not in dump
    assert b"router" in dump or b"if_traffic" in dump or b"snmp" in dump


def test_heavy_probe_not_run_in_clinic_hours_unless_forced(tmp_path: Path) -> None:
    """The media probe is heavy: in clinic hours the agent records why it did not run."""
    from netready.spool import Spool

    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:9", duration=0.2)
    data = yaml.safe_load(inv.read_text())
    data["sites"][0]["targets"] = [
        {
            "name": "media",
            "probe": "media",
            "address": f"127.0.0.1:{udp_port()}",
            "params": {"duration_s": 1, "timeout_s": 0.5},
        }
    ]
    inv.write_text(yaml.safe_dump(data))
    assert agent(inv, "--once").returncode == 0
    with Spool(tmp_path / "spool.db") as sp:
        (rec,) = sp.records("media")
    assert rec.result == "skipped" and "clinic hours" in str(rec.fields["reason"])
    assert agent(inv, "--once", "--force").returncode == 0
    with Spool(tmp_path / "spool.db") as sp:
        results = sorted(r.result for r in sp.records("media"))
    assert results.count("skipped") == 1  # the first run only
    assert any(r in ("refused", "timeout", "unreachable") for r in results)  # forced: it ran
