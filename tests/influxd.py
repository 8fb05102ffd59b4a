"""A real InfluxDB (Debian's influxd 1.6) on a free loopback port, data in a temp dir.

Used by the pytest fixture ``influxdb`` (tests/conftest.py), by bench/ and by ``make demo``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = {auth}
  log-enabled = false
  max-body-size = 0
  max-concurrent-write-limit = 0
[continuous_queries]
  enabled = false
[logging]
  level = "error"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Influxd:
    """Start/stop a private influxd. ``url`` is ready once ``start()`` returns."""

    def __init__(self, workdir: str | None = None, auth: bool = False):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="netready-influx-"))
        self.own_dir = workdir is None
        self.auth = auth
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Influxd:
        exe = shutil.which("influxd") or "/usr/bin/influxd"
        if not os.path.exists(exe):
            raise RuntimeError("influxd not installed: run `make test` (apt-get install influxdb)")
        cfg = self.dir / "influxdb.conf"
        cfg.write_text(
            CONFIG.format(
                d=self.dir, rpc=free_port(), http=self.port, auth="true" if self.auth else "false"
            )
        )
        self.log = open(self.dir / "influxd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, "-config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"influxd exited: {(self.dir / 'influxd.log').read_text()[-500:]}"
                )
            try:
                if httpx.get(self.url + "/ping", timeout=1).status_code == 204:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("influxd did not start in time")

    def query(self, q: str, db: str | None = None) -> dict:
        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        r = httpx.post(self.url + "/query", data=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def create_db(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def pause(self) -> None:
        assert self.proc
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        cfgport = self.port
        self.port = cfgport
        self.start()

    def close(self) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
