"""The state file of a lab: what another process (``netready lab down``, ``status``,
``cleanup_stale``) needs to find, judge and tear down a lab it did not build.

One JSON file per lab under ``/run/netready-lab/`` (``NETREADY_LAB_STATE_DIR`` overrides it),
``<id>.json``, schema 1 (docs/lab.md). It is claimed atomically (``O_EXCL``) before anything
is built and rewritten (write + rename) whenever the lab changes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from netready.lab.shell import LabError

SCHEMA = 1


def state_dir() -> Path:
    return Path(os.environ.get("NETREADY_LAB_STATE_DIR", "/run/netready-lab"))


def state_path(lab_id: str) -> Path:
    return state_dir() / f"{lab_id}.json"


def proc_start(pid: int) -> str | None:
    """Process start time (clock ticks since boot), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(state: dict[str, Any]) -> bool:
    pid = state.get("owner_pid")
    if pid is None:  # detached lab (netready lab up): lives until `lab down`
        return True
    return proc_start(int(pid)) == state.get("owner_start")


def owner(detached: bool) -> dict[str, Any]:
    """The owner fields: this process, or none for a detached lab."""
    pid = None if detached else os.getpid()
    return {"owner_pid": pid, "owner_start": proc_start(pid) if pid else None}


def claim(lab_id: str) -> None:
    """Create the state file, failing if it exists: two processes given the same id cannot
    both build."""
    state_dir().mkdir(parents=True, exist_ok=True)
    path = state_path(lab_id)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise LabError(f"lab {lab_id} already exists ({path})") from None


def save(lab_id: str, state: dict[str, Any]) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = state_path(lab_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def remove(lab_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(lab_id).unlink()


def load_state(lab_id: str) -> dict[str, Any] | None:
    path = state_path(lab_id)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LabError(f"{path}: unreadable lab state: {e}") from None


def list_labs() -> list[dict[str, Any]]:
    """The state of every lab in the state directory, each with an ``alive`` flag."""
    d = state_dir()
    out = []
    if d.is_dir():
        for path in sorted(d.glob("*.json")):
            with contextlib.suppress(LabError):
                st = load_state(path.stem)
                if st is not None:
                    st["alive"] = owner_alive(st)
                    out.append(st)
    return out
