"""Docs stay true: every measurement, command and rtt field is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
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


#: Groups whose sub-commands are the registered plugins: each plugin's own doc has them.
PLUGIN_GROUPS = ("probe", "collect")


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every command and sub-command of ``netready`` but the plugin groups' (``"lab up"``),
    and ``netready-agent``."""
    from netready.cli.agent import agent_command

    ctx = click.Context(cli)

    def walk(path: str, cmd: click.Command) -> Iterator[tuple[str, click.Command]]:
        yield path, cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                got = cmd.get_command(ctx, sub)
                assert got is not None, f"{path} {sub}"
                yield from walk(f"{path} {sub}", got)

    for name in COMMANDS:
        if name not in PLUGIN_GROUPS:
            got = cli.get_command(ctx, name)
            assert got is not None, name
            yield from walk(name, got)
    yield "netready-agent", agent_command


def test_every_sub_command_is_in_readme() -> None:
    """README's command table names each sub-command in its group's row, e.g.
    `netready lab up / down / status / profiles / exec`."""
    rows = re.findall(r"^\| `netready ([a-z]+)([^|]*)\|", README, re.M)
    for path, _ in commands():
        group, _, sub = path.partition(" ")
        if sub and " " not in sub:
            row = " ".join(rest for g, rest in rows if g == group)
            assert re.search(rf"\b{sub}\b", row), f"README's table lacks `netready {path}`"


def test_every_command_and_option_has_help() -> None:
    """`--help` says what each command and option is for (the docs quote it)."""
    for path, cmd in commands():
        assert (cmd.help or "").strip(), f"netready {path} has no help text"
        for p in cmd.params:
            if isinstance(p, click.Option) and "--help" not in p.opts:
                assert (p.help or "").strip(), f"netready {path} {p.opts[0]} has no help text"


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


def test_a_command_that_cannot_load_still_lists_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lazy group: a broken import does not break `netready --help`; running the command
    prints one line naming it, whatever options it was given, and exits 1."""
    monkeypatch.setitem(COMMANDS, "broken", "netready.no_such_module:cmd")
    monkeypatch.setitem(HELP, "broken", "A command whose module is missing.")
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "broken" in r.stdout
    r = CliRunner().invoke(cli, ["broken", "--any-option", "x"])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines() == [
        "Error: broken is unavailable: No module named 'netready.no_such_module'"
    ]
