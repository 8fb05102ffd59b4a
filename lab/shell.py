"""Commands about and inside network namespaces: ``ip netns``, ``ip netns exec``, the lab's
errors, and the processes a lab starts (killed when it goes down).

Every failure is a ``LabError`` with a one-line message naming the namespace, the command and
the last line it printed; a missing tool is ``LabUnavailable``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from typing import Any

from netready.errors import NetreadyError


class LabError(NetreadyError):
    """The lab could not be built or a command inside it failed (runtime, exit code 1)."""


class LabUnavailable(LabError):
    """Not root, or ``ip netns`` does not work on this machine."""


def _last(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def sh(
    argv: list[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30,
    ns: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, in this namespace (``ip -n NS ...`` reaches into the others) or, given
    ``ns``, inside that one (``ip netns exec``)."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    where = f"{ns}: {' '.join(argv)}" if ns else " ".join(argv)
    try:
        cp = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise LabUnavailable(f"{full[0]} not found: install iproute2/nftables") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{where} timed out after {timeout:g}s") from e
    if check and cp.returncode != 0:
        raise LabError(f"{where} failed (exit {cp.returncode}): {_last(cp.stderr or cp.stdout)}")
    return cp


def run_in(
    ns: str, argv: list[str], timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``ns``; raises ``LabError`` on failure if ``check``."""
    return sh(argv, check=check, timeout=timeout, ns=ns)


def script_in(ns: str, argv: list[str], script: str, what: str, *, first_line: bool) -> None:
    """Feed ``script`` to a batch tool (``tc -batch -``, ``nft -f -``) inside ``ns``; on failure
    the error names the tool and the line of its complaint that says what went wrong (tc puts
    it last, nft first)."""
    cp = sh(argv, check=False, input=script, ns=ns)
    if cp.returncode != 0:
        err = cp.stderr.strip().splitlines()
        msg = (err[0] if first_line else err[-1]) if err else cp.returncode
        raise LabError(f"{ns}: {what} failed: {msg}")


def list_netns() -> list[str]:
    cp = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    cp = sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def kill_ns(ns: str) -> None:
    """Kill every process in a namespace, then delete it. Quiet if it is already gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = netns_pids(ns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and netns_pids(ns):
            time.sleep(0.02)
    sh(["ip", "netns", "del", ns], check=False)


def check_available(prefix: str = "nr-") -> None:
    """Raise ``LabUnavailable`` (one line) unless we are root and ``ip netns`` works."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces): run as root")
    probe = f"{prefix}probe{os.getpid()}{secrets.token_hex(2)}"
    cp = sh(["ip", "netns", "add", probe], check=False)
    if cp.returncode != 0:
        raise LabUnavailable(f"ip netns does not work here: {cp.stderr.strip() or cp.returncode}")
    sh(["ip", "netns", "del", probe], check=False)


class Processes:
    """The processes a lab started in its namespaces (``Lab.popen``), stopped by ``stop``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def popen(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        """SIGTERM each, wait up to 2 s, then SIGKILL; forgets them."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)
        self.procs.clear()
