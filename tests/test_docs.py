"""Docs stay true: every measurement, command and rtt field is documented."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from netready import registry
from netready.cli import COMMANDS, HELP, cli
from netready.records import MEASUREMENTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
README = (ROOT / "README.md").read_text()


def test_every_measurement_is_documented() -> None:
    for m in MEASUREMENTS:
        assert re.search(rf"`{m}`", DOCS), f"measurement {m} is not documented in docs/"


def test_every_command_has_help_and_is_in_readme() -> None:
    for name in COMMANDS:
        assert HELP.get(name), f"{name} has no help line"
        assert f"netready {name}" in README, f"README does not mention `netready {name}`"
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.stdout


def test_every_command_loads() -> None:
    """A broken import would otherwise only show as 'unavailable' at run time."""
    for name in COMMANDS:
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0, f"netready {name} --help: {r.output}"
        assert "is unavailable" not in r.output


def test_every_builtin_plugin_registers() -> None:
    for kind in registry.GROUPS:
        for name in registry.names(kind):
            assert registry.get(kind, name).name == name


def test_rtt_fields_match_docs() -> None:
    """Every field the rtt probe writes appears in docs/agent.md's table."""
    from netready.probes import rtt

    doc = (ROOT / "docs" / "agent.md").read_text()
    trace = rtt.Trace(
        [0.0, 0.01, 0.02],
        [
            rtt.Reply(i, 0.005 + i * 0.01, 0, rtt.twamp.ReflectedPacket(i, 0, 1, 0, i, 0, 1, 64))
            for i in range(3)
        ],
        0.03,
    )
    ((_, fields),) = rtt.windows(trace, 15)
    assert len(fields) >= 15
    for f in fields:
        assert f"`{f}`" in doc, f"rtt field {f} is not in docs/agent.md"
