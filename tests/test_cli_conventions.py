"""The command line keeps one set of habits: a test walks every command of ``netready`` and
``netready-agent`` (the generated probe and collector commands included) and checks each
option that several commands share against the one definition in netready/cli/options.py.

- ``-h`` works on every command and group, and on ``netready-agent`` (the real script too);
- ``--inventory FILE``, ``--spool FILE``, ``--state-dir DIR``, ``--listen HOST:PORT``,
  ``--log-level`` and ``--log-format`` as choices, ``--format`` a choice with table and json
  (default table) on every command that prints a result;
- an option that takes a secret takes a reference (``env:NAME|file:PATH``) or reads it from an
  environment variable, never only as plain text on the command line;
- every option says what it is for (help text);
- the default inventory: ``$NETREADY_INVENTORY``, else /etc/netready/site_inventory.yaml, else
  ./site_inventory.yaml, and a command run where none is found says so in one line (exit 2);
- ``--format json`` of ``inventory check`` (its problems too), ``ship`` and ``dashboards
  build``: JSON on stdout, nothing else there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from netready.cli import cli
from netready.cli import options as opts
from netready.cli.agent import agent_command

ROOT = Path(__file__).resolve().parent.parent

#: Commands that print no result of their own, so no --format: the servers and the agent
#: log (JSON lines via --log-format), `lab exec` runs another command, `lab down` says
#: what it removed on stderr.
NO_FORMAT = {
    "netready reflector",
    "netready responder",
    "netready serve",
    "netready config serve",
    "netready lab exec",
    "netready lab down",
    "netready-agent",
}
SECRETS = {"--secret", "--token", "--influx-token", "--influx-password"}


def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            yield from walk(sub, (*path, name))


COMMANDS = dict(walk(cli, ("netready",))) | dict(walk(agent_command, ("netready-agent",)))
LEAVES = {n: c for n, c in COMMANDS.items() if not isinstance(c, click.Group)}


def option(cmd: click.Command, name: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and name in p.opts), None)


def test_the_walk_finds_every_command() -> None:
    # (a floor, not a list: new commands are welcome; these must be there)
    for name in ("netready probe rtt", "netready collect snmp", "netready dashboards build",
                 "netready ship", "netready inventory check", "netready-agent"):  # fmt: skip
        assert name in LEAVES
    assert len(LEAVES) >= 25


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_dash_h_on_every_command(name: str) -> None:
    top, *rest = name.split()
    res = CliRunner().invoke(cli if top == "netready" else agent_command, [*rest, "-h"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("Usage: ") and "--help" in res.stdout


def test_dash_h_on_the_agent_script() -> None:
    for argv in (["netready-agent", "-h"], [sys.executable, str(ROOT / "agent.py"), "-h"]):
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0 and "Usage: netready-agent" in cp.stdout, cp.stderr
        assert "Exit codes:" in cp.stdout


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_shared_options_mean_one_thing(name: str) -> None:
    cmd = LEAVES[name]
    checks = {
        "--inventory": lambda o: isinstance(o.type, click.Path) and not o.type.dir_okay
        and o.metavar == "FILE" and "-i" in o.opts,
        "--spool": lambda o: isinstance(o.type, click.Path) and not o.type.dir_okay
        and o.metavar == "FILE",
        "--state-dir": lambda o: isinstance(o.type, click.Path) and not o.type.file_okay
        and o.metavar == "DIR",
        "--listen": lambda o: o.metavar == "HOST:PORT" and o.callback is not None,
        "--media": lambda o: o.metavar == "HOST:PORT",
        "--log-level": lambda o: isinstance(o.type, click.Choice)
        and set(o.type.choices) == {"debug", "info", "warning", "error"},
        "--log-format": lambda o: isinstance(o.type, click.Choice)
        and set(o.type.choices) == {"json", "text"},
        "--out": lambda o: isinstance(o.type, click.Path),
        "--tls-cert": lambda o: isinstance(o.type, click.Path),
        "--tls-key": lambda o: isinstance(o.type, click.Path),
    }  # fmt: skip
    for flag, ok in checks.items():
        o = option(cmd, flag)
        if o is not None:
            assert ok(o), f"{name} {flag}: not as netready/cli/options.py defines it"
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden:
            assert (p.help or "").strip(), f"{name} {p.opts[0]}: no help text"
            if set(p.opts) & SECRETS:
                assert p.metavar == "env:NAME|file:PATH" or p.envvar, (
                    f"{name} {p.opts[0]}: a secret only as plain text on the command line"
                )


@pytest.mark.parametrize("name", sorted(set(LEAVES) - NO_FORMAT))
def test_format_json_wherever_there_is_a_result(name: str) -> None:
    o = option(LEAVES[name], "--format")
    assert o is not None, f"{name}: no --format"
    assert isinstance(o.type, click.Choice) and {"table", "json"} <= set(o.type.choices)
    assert o.default == "table"


def test_no_format_list_is_not_stale() -> None:
    assert set(LEAVES) >= NO_FORMAT
    for name in NO_FORMAT:
        assert option(LEAVES[name], "--format") is None, f"{name} has --format now: unlist it"


# ---------------------------------------------------------------------------- the inventory


def _inventory(path: Path, spool: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "store": {"kind": "embedded"},
                "agent": {"spool_path": str(spool)},
                "sites": [
                    {
                        "ods": "Y81001",
                        "name": "Riverside Surgery",
                        "type": "gp_practice",
                        "icb": "QHM",
                        "link": {"tech": "fttp", "down_mbps": 80, "up_mbps": 20},
                    }
                ],
            }
        )
    )
    return path


def netready(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != opts.INVENTORY_ENV} | (env or {})
    return subprocess.run(
        ["netready", *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=120
    )


def test_default_inventory_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(opts.INVENTORY_ENV, raising=False)
    assert not Path(opts.SYSTEM_INVENTORY).exists()  # this box is no practice box
    path, why = opts.default_inventory()
    assert path == "site_inventory.yaml" and str(tmp_path) in why
    monkeypatch.setenv(opts.INVENTORY_ENV, "/srv/estate.yaml")
    assert opts.default_inventory() == ("/srv/estate.yaml", "$NETREADY_INVENTORY")


def test_no_inventory_anywhere_is_one_line(tmp_path: Path) -> None:
    for args in (["report"], ["spool", "stats"], ["ship"], ["collect", "snmp", "--site", "Y81001"]):
        cp = netready(*args, cwd=tmp_path)
        assert cp.returncode == 2, (args, cp.stderr)
        assert cp.stderr.startswith(
            "Error: no inventory: give --inventory FILE, set $NETREADY_INVENTORY"
        )
        assert cp.stderr.count("\n") == 1


def test_netready_inventory_env_and_report_says_what_it_reads(tmp_path: Path) -> None:
    inv = _inventory(tmp_path / "estate.yaml", tmp_path / "spool.db")
    env = {opts.INVENTORY_ENV: str(inv)}
    cp = netready("report", "--format", "json", cwd=tmp_path, env=env)
    assert cp.returncode == 0, cp.stderr
    assert [s["ods"] for s in json.loads(cp.stdout)["sites"]] == ["Y81001"]
    assert (
        f"reading {inv} ($NETREADY_INVENTORY); store embedded {tmp_path / 'spool.db'}" in cp.stderr
    )
    # an explicit --inventory wins and is named as such
    other = _inventory(tmp_path / "other.yaml", tmp_path / "other.db")
    cp = netready("report", "--inventory", str(other), "--format", "json", cwd=tmp_path, env=env)
    assert f"reading {other} (--inventory)" in cp.stderr
    # from a checkout: the example, and the report says that is what it read
    cp = netready("report", "--format", "json", cwd=ROOT)
    assert cp.returncode in (0, 3), cp.stderr
    assert f"reading site_inventory.yaml (./site_inventory.yaml in {ROOT}" in cp.stderr


def test_inventory_check_json_problems_on_stdout(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nsites:\n  - ods: Y81001\n    link: {tech: dialup}\n")
    cp = netready("inventory", "check", str(bad), "--format", "json", cwd=tmp_path)
    assert cp.returncode == 2 and cp.stderr == ""
    out = json.loads(cp.stdout)
    assert out["ok"] is False and out["file"] == str(bad)
    tech = next(p for p in out["problems"] if p["field"] == "sites[0].link.tech")
    assert (tech["file"], tech["line"], tech["col"]) == (str(bad), 4, 18)
    assert tech["message"].startswith("'dialup' is not one of")
    assert tech["text"] == f"{bad}:4:18: sites[0].link.tech: {tech['message']}"
    # the same problems as the table form prints, one per line on stderr
    table = netready("inventory", "check", str(bad), cwd=tmp_path)
    assert table.returncode == 2
    assert [p["text"] for p in out["problems"]] == [
        line.removeprefix("Error: ") for line in table.stderr.splitlines()
    ]
    missing = netready("inventory", "check", "nope.yaml", "--format", "json", cwd=tmp_path)
    assert missing.returncode == 2
    (p,) = json.loads(missing.stdout)["problems"]
    assert p["line"] is None and p["message"] == "file not found"
    good = _inventory(tmp_path / "good.yaml", tmp_path / "s.db")
    ok = json.loads(
        netready("inventory", "check", str(good), "--format", "json", cwd=tmp_path).stdout
    )
    assert ok["ok"] is True and ok["problems"] == [] and ok["sites"] == 1


def test_ship_json(tmp_path: Path) -> None:
    inv = _inventory(tmp_path / "estate.yaml", tmp_path / "spool.db")
    cp = netready("ship", "--inventory", str(inv), "--format", "json", cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == {"store": "embedded", "shipped": 0, "dead_lettered": 0,
                                     "pending": 0}  # fmt: skip


def test_dashboards_build_json(tmp_path: Path) -> None:
    cp = netready(
        "dashboards", "build", "--out", str(tmp_path / "d"), "--format", "json", cwd=tmp_path
    )
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["unchanged"] == 0 and len(out["written"]) >= 3
    assert all(Path(p).is_file() for p in out["written"])
    again = json.loads(
        netready(
            "dashboards",
            "build",
            "--out",
            str(tmp_path / "d"),
            "--check",
            "--format",
            "json",
            cwd=tmp_path,
        ).stdout
    )
    assert again["stale"] == [] and again["files"] == len(out["written"])


# ---------------------------------------------------------------------------- make demo


def test_make_demo_installs_only_the_demo_extra(tmp_path: Path) -> None:
    import tomllib

    cp = subprocess.run(
        ["make", "-n", "demo", f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert cp.returncode == 0, cp.stderr
    assert "-e '.[demo]'" in cp.stdout and "[dev]" not in cp.stdout
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    demo = " ".join(extras["demo"])
    assert not any(tool in demo for tool in ("pytest", "ruff", "mypy", "dev"))


def test_demo_explore_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands the demo prints at the end are ones that work, typed from where it ran."""
    from netready.lab import demo

    monkeypatch.setattr(demo, "OUT", Path("demo-out"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-out").mkdir()
    inv = demo.write_inventory(["fttc-practice"], "127.0.0.1", True, Path("demo-out"))
    demo.gather([])  # the demo's store, as its end leaves it (nothing measured here)
    cmds = demo.explore_commands(inv, ["fttc-practice"])
    assert cmds[0].endswith("report --inventory demo-out/inventory.yaml --since 1d")
    assert cmds[-1].startswith("export NETREADY_INVENTORY=demo-out/inventory.yaml")
    for cmd in cmds[:-1]:
        cp = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
        assert cp.returncode in (0, 3), (cmd, cp.stderr)  # 3: the named site is not READY
        assert "Traceback" not in cp.stderr
    assert (tmp_path / "demo-out" / "report.html").is_file()
