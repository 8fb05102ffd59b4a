"""``netready collect snmp|ssh``: read one site's router by hand and print the records.

Commands parse options, call the registered collector once, and print records on stdout
(``--format json``: a clean JSON list of records; ``table``: one row per record). Diagnostics
go to stderr. Exit codes: 0 when at least one record is ok, 1 when every record failed
(timeout, refused, credentials...), 2 for bad input (inventory, options).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from netready.cli import fail, output
from netready.cli.output import format_option
from netready.errors import NetreadyError
from netready.records import Record

_inventory = click.option(
    "--inventory",
    "-i",
    "inventory_path",
    default="site_inventory.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site inventory file.",
)
_site = click.option("--site", "-s", "ods", required=True, help="ODS code of the site.")
_host = click.option("--host", default=None, help="Router address (overrides the inventory).")
_port = click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Router port (overrides the inventory).",
)
_device = click.option("--device", default=None, help="device tag (default: the router host).")
_format = format_option
_state = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".netready-state"),
    show_default=True,
    help="Where collectors keep state between runs (SNMP counters).",
)


@click.group("collect")
def collect() -> None:
    """Read a site router (snmp, ssh) and print the records it yields."""


def _run(
    kind: str, ods: str, inventory_path: Path, state_dir: Path, params: dict[str, Any]
) -> list[Record]:
    from netready import inventory as inv_mod
    from netready import registry

    inv = inv_mod.load(inventory_path)
    site = inv.site(ods)
    plugin = registry.get("collector", kind)
    spec = plugin.make_spec(
        {k: v for k, v in params.items() if v is not None}, where=f"collect {kind}"
    )
    ctx = registry.Context(site=site, inventory=inv, state_dir=state_dir)
    return asyncio.run(plugin.run(ctx, spec))


def _emit(records: list[Record], fmt: str) -> None:
    if fmt == "json":
        output.print_records(records, "json")
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(show_lines=False)
        for col in ("measurement", "ifname", "dir", "result", "fields"):
            t.add_column(col, overflow="fold")
        for r in records:
            fields = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.fields.items()
            )
            t.add_row(
                r.measurement,
                r.tags.get("ifname", ""),
                r.tags.get("direction", ""),
                r.result,
                fields,
            )
        Console(file=sys.stdout, width=200).print(t)
    if records and not any(r.ok for r in records):
        reasons = "; ".join(sorted({str(r.fields.get("reason", r.result)) for r in records}))
        click.echo(f"collect failed: {reasons}", err=True)
        sys.exit(1)


@collect.command("snmp")
@_site
@_inventory
@_host
@_port
@_device
@click.option(
    "--interfaces",
    type=click.Choice(["wan", "all"]),
    default="wan",
    show_default=True,
    help="Traffic for the WAN interface only, or for every interface.",
)
@_state
@_format
def snmp_command(
    ods: str,
    inventory_path: Path,
    host: str | None,
    port: int | None,
    device: str | None,
    interfaces: str,
    state_dir: Path,
    fmt: str,
) -> None:
    """Poll the router over SNMP (v2c or v3 authPriv, from the inventory): WAN traffic and
    utilisation (if_traffic), DSL line figures (dsl_line), copper-or-fibre detection.

    Rates need two polls: the first poll of a device records a baseline in --state-dir.
    """
    try:
        records = _run(
            "snmp",
            ods,
            inventory_path,
            state_dir,
            {"host": host, "port": port, "device": device, "interfaces": interfaces},
        )
    except NetreadyError as e:
        raise fail(e) from None
    _emit(records, fmt)


@collect.command("ssh")
@_site
@_inventory
@_host
@_port
@_device
@click.option("--controller", default=None, help="Cisco VDSL controller, e.g. 0/2/0 (default).")
@click.option(
    "--known-hosts",
    default=None,
    type=click.Path(dir_okay=False),
    help="known_hosts file (default: router.ssh.known_hosts, else ~/.ssh/known_hosts).",
)
@click.option(
    "--trust-on-first-use",
    is_flag=True,
    default=False,
    help="Accept an unknown host key once and record it in known_hosts "
    "(a changed key is still refused).",
)
@_format
def ssh_command(
    ods: str,
    inventory_path: Path,
    host: str | None,
    port: int | None,
    device: str | None,
    controller: str | None,
    known_hosts: str | None,
    trust_on_first_use: bool,
    fmt: str,
) -> None:
    """Read DSL line status from the router CLI over SSH (key authentication; Cisco IOS-XE
    `show controller vdsl`, Huawei VRP `display interface`) into dsl_line records."""
    try:
        records = _run(
            "ssh",
            ods,
            inventory_path,
            Path(".netready-state"),
            {
                "host": host,
                "port": port,
                "device": device,
                "controller": controller,
                "known_hosts": known_hosts,
                "trust_on_first_use": trust_on_first_use,
            },
        )
    except NetreadyError as e:
        raise fail(e) from None
    _emit(records, fmt)


def __getattr__(name: str) -> Any:
    """``netready pcap`` is mapped to ``collectors.cli:pcap``; the command itself lives in
    ``collectors/pcap.py`` (another owner), found here lazily under its likely names."""
    if name == "pcap":
        from netready.collectors import pcap as _pcap

        for attr in ("pcap", "pcap_command", "pcap_group", "cli"):
            cmd = getattr(_pcap, attr, None)
            if isinstance(cmd, click.Command):
                return cmd
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
