"""Emulated site routers: snmpsim serving a real recording of matching equipment, inside a
site's namespace, at a LAN address of its own (on the namespace's ``lo``), so the site's agent polls
it with the snmp collector exactly as it would poll the practice's CPE.

The recordings are the detection corpus (``tests/data/snmprec``, real devices from public
sources; ``tests/data/SOURCES_collectors.md``), so the demo needs a checkout. Each router gets
its own data directory holding its one recording as ``<COMMUNITY>.snmprec`` (snmpsim takes
the community from the file name), so every site uses the same community, read from the
environment like any other secret.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from netready.lab.shell import LabError, sh

#: where the real recordings are (a checkout's tests/data/snmprec)
RECORDINGS = Path(__file__).resolve().parents[1] / "tests" / "data" / "snmprec"
#: the address of the emulated router inside a site's namespace, and its SNMP port
ROUTER_IP = "192.168.1.254"
SNMP_PORT = 161
COMMUNITY = "netready-demo"
COMMUNITY_ENV = "NETREADY_DEMO_SNMP_COMMUNITY"


@dataclass(frozen=True)
class EmulatedRouter:
    """A real recording standing in for a site's router."""

    recording: str  # file stem in tests/data/snmprec
    vendor: str  # inventory router.vendor
    note: str  # what it is, and why it stands in for this site

    @property
    def path(self) -> Path:
        return RECORDINGS / f"{self.recording}.snmprec"


def responder_argv(data_dir: Path, host: str, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("snmpsim-command-responder")
    if not exe.exists():
        raise LabError(f"{exe} not found: run `make venv` (snmpsim is in the dev extra)")
    return [
        str(exe),
        f"--data-dir={data_dir}",
        f"--cache-dir={data_dir / 'cache'}",
        f"--agent-udpv4-endpoint={host}:{port}",
    ]


def prepare(router: EmulatedRouter, work: Path) -> Path:
    """A data directory holding ``router``'s recording under the demo community's name."""
    if not router.path.exists():
        raise LabError(
            f"{router.path} not found: the demo's routers are the recordings in a checkout's "
            "tests/data/snmprec"
        )
    data = work / router.recording
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copyfile(router.path, data / f"{COMMUNITY}.snmprec")
    return data


def add_lan_address(ns: str, ip: str = ROUTER_IP) -> None:
    """The router's LAN address in the site's namespace, on its ``lo`` (no dummy-interface
    module needed): reachable from the site, not from the core."""
    sh(["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "lo"])


def wait_answering(host: str, port: int, ns: str | None, proc: subprocess.Popen[Any],
                   log: Path, timeout_s: float = 60.0) -> None:  # fmt: skip
    """Until snmpsim answers a sysUpTime GET (it indexes the recording first); bounded."""
    argv = ["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.5", "-r", "0", f"{host}:{port}",
            "1.3.6.1.2.1.1.3.0"]  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sh(argv, ns=ns, check=False, timeout=10).returncode == 0:
            return
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise LabError(f"snmpsim for {host}:{port} exited {proc.returncode}: {' '.join(tail)}")
        time.sleep(0.3)
    raise LabError(f"snmpsim at {host}:{port} did not answer within {timeout_s:g} s")


def responder_env() -> dict[str, str]:
    """snmpsim refuses to run as root unless told (the lab runs as root)."""
    return {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}


def start(
    router: EmulatedRouter,
    work: Path,
    host: str,
    port: int,
    popen: Any,
    logs: IO[Any],
) -> subprocess.Popen[Any]:
    """Start snmpsim serving ``router`` at ``host:port`` with ``popen(argv, **kw)`` (the lab's,
    inside a namespace, or ``subprocess.Popen`` on loopback)."""
    data = prepare(router, work)
    return popen(
        responder_argv(data, host, port), stdout=logs, stderr=logs, env=responder_env()
    )
