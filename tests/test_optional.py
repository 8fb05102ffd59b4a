"""The base install is the agent's: without the extras (charts, influxdb2, grafana, server)
the agent measures, spools and reports, and every command that needs an extra says which one.

The throughput probe runs on a base install too: it speaks to the speed endpoint (which needs
aiohttp) through the sans-IO ``probes/throughput/wire.py``, never through the endpoint's code.

The extras are forced missing with an import blocker installed through ``sitecustomize`` in
the subprocess (``PYTHONPATH``): the same code path a pip install without them takes. The
blocker also records every blocked import the agent attempted, so the test proves the agent
never reaches for them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netready.servers.speed import Limits, SpeedServer
from test_agent import inventory, reflector_addr  # noqa: F401  (fixture)

from netready.optional import EXTRAS

BLOCKER = """
import importlib.abc, os, sys
BLOCKED = set(os.environ["NETREADY_TEST_BLOCK"].split(","))
LOG = os.environ["NETREADY_TEST_BLOCK_LOG"]
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            with open(LOG, "a") as f:
                f.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def _env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "NETREADY_TEST_BLOCK": ",".join(EXTRAS),
        "NETREADY_TEST_BLOCK_LOG": str(tmp_path / "blocked.log"),
    }


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netready.cli", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agent_measures_spools_and_reports_without_extras(
    tmp_path: Path,
    reflector_addr: str,  # noqa: F811
) -> None:
    inv = inventory(tmp_path, {"kind": "embedded"}, reflector_addr)
    agent = subprocess.run(
        [
            "netready-agent",
            "--inventory",
            str(inv),
            "--state-dir",
            str(tmp_path / "state"),
            "--once",
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert agent.returncode == 0, agent.stderr
    rep = _run(tmp_path, "report", "--inventory", str(inv), "--format", "json", "--since", "1d")
    assert rep.returncode == 0, rep.stderr
    assert '"Y81001"' in rep.stdout
    log = tmp_path / "blocked.log"
    attempted = log.read_text().split() if log.exists() else []
    assert attempted == [], f"the agent and the JSON report reached for extras: {attempted}"


def test_commands_that_need_an_extra_name_it(tmp_path: Path) -> None:
    import yaml

    inv = inventory(tmp_path, {"kind": "embedded"}, "127.0.0.1:9")
    with_router = yaml.safe_load(inv.read_text())
    key = tmp_path / "key"
    key.write_text("not a key\n")
    with_router["sites"][0]["router"] = {
        "host": "127.0.0.1",
        "vendor": "cisco_iosxe",
        "ssh": {"port": 9, "username": "netready", "key_file": f"file:{key}"},
    }
    inv2 = tmp_path / "inv2.yaml"
    inv2.write_text(yaml.safe_dump(with_router))
    cases = {
        "ssh": ["collect", "ssh", "--site", "Y81001", "--inventory", str(inv2)],
        "charts": ["report", "--inventory", str(inv), "--format", "html", "--since", "1d"],
        "grafana": ["dashboards", "build", "--check"],
        "server": ["serve", "--listen", "127.0.0.1:0"],
    }
    pdf = ["report", "--inventory", str(inv), "--format", "pdf", "--out", str(tmp_path / "r.pdf")]
    for extra, args in [*cases.items(), ("charts", pdf)]:
        r = _run(tmp_path, *args)
        assert r.returncode != 0, (extra, r.stdout)
        assert f"pip install 'nhs-netready[{extra}]'" in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "r.pdf").exists()


@contextmanager
def _speed_endpoint(token: str) -> Iterator[int]:
    """The real speed endpoint on loopback in a thread of this process (which has aiohttp);
    yields its port."""
    loop = asyncio.new_event_loop()
    srv = SpeedServer(token, Limits(max_rate_mbps=40))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop.run_until_complete(srv.start("127.0.0.1", port))
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()


def test_throughput_probe_runs_without_the_server_extra(tmp_path: Path) -> None:
    """`netready probe throughput` with aiohttp (and every other extra) missing measures
    against a real endpoint: the probe never imports the endpoint. (No --max-mb: loopback
    fills a 10 MB cap before the first measurement window on a busy host.)"""
    token = "base-install-token-0123"
    with _speed_endpoint(token) as port:
        env = {**_env(tmp_path), "NR_OPT_TOKEN": token}
        r = subprocess.run(
            [sys.executable, "-m", "netready.cli", "probe", "throughput",
             "--target", f"http://127.0.0.1:{port}", "--token", "env:NR_OPT_TOKEN",
             "--direction", "down", "--max-seconds", "6", "--rpm-hold-s", "0",
             "--format", "json"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert rec["tags"]["result"] == "ok" and rec["tags"]["direction"] == "down", rec
    assert rec["fields"]["bytes"] > 0
    log = tmp_path / "blocked.log"
    attempted = log.read_text().split() if log.exists() else []
    assert attempted == [], f"the throughput probe reached for extras: {attempted}"
