"""The systemd units in deploy/: hardened (systemd-analyze security rates each 3.0 or better),
restarted only when a restart can help, and every ExecStart flag a real option of its command.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
#: what every unit must set (issue 10, "Deployment")
REQUIRED = {
    "UMask": "0077",
    "SystemCallFilter": "@system-service",
    "RestrictNamespaces": "true",
    "ProtectClock": "true",
    "PrivateDevices": "true",
    "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true",
    "ProtectKernelLogs": "true",
    "NoNewPrivileges": "true",
    "RestartPreventExitStatus": "2",
}


def parse(unit: Path) -> dict[str, list[str]]:
    """``Key=Value`` lines of the [Service] and [Unit] sections (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_there_is_a_unit_for_the_agent_and_each_central_server() -> None:
    assert {u.name for u in UNITS} == {
        "netready-agent.service",
        "netready-reflector.service",
        "netready-responder.service",
        "netready-serve.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_is_hardened(unit: Path) -> None:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze missing: `make sysdeps` installs the systemd package"
    r = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 3.0, r.stdout
    keys = parse(unit)
    for k, v in REQUIRED.items():
        assert v in keys.get(k, []), f"{unit.name}: {k}={v} missing"
    assert keys.get("Restart") == ["on-failure"]


def test_agent_waits_for_the_clock() -> None:
    keys = parse(DEPLOY / "netready-agent.service")
    for k in ("After", "Wants"):
        assert any("time-sync.target" in v.split() for v in keys[k]), k


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_execstart_flags_exist(unit: Path) -> None:
    """Each ``--flag`` in ExecStart is an option in the command's ``--help``; a unit that
    passed a renamed flag would fail at start with exit 2 and never restart."""
    (cmdline,) = parse(unit)["ExecStart"]
    argv = shlex.split(re.sub(r"\$\{\w+\}", "X", cmdline).replace("%d", "/run/credentials/u"))
    exe = Path(argv[0]).name
    cmd = ["netready-agent"] if exe == "netready-agent" else ["netready", argv[1]]
    assert exe in ("netready-agent", "netready"), argv[0]
    help_text = subprocess.run(
        [*cmd, "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    flags = [a.split("=")[0] for a in argv if a.startswith("--")]
    assert flags
    for flag in flags:
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", help_text, re.M), (
            f"{unit.name}: {' '.join(cmd)} has no option {flag}"
        )
