"""``netready lab``: build, inspect and remove emulated site links (network namespaces).
What each command does is ``lab/manage.py``; this parses and prints."""

from __future__ import annotations

import subprocess
from typing import Any

import click

from netready.cli.base import Group
from netready.cli.options import inventory_option
from netready.cli.output import format_option, print_json, print_table
from netready.lab import manage, netns
from netready.lab.signals import Terminated


def _say(text: str) -> None:
    click.echo(text, err=True)


def _print_lab(summary: dict[str, Any]) -> None:
    if not summary["alive"]:
        flag = "  (STALE: owner process gone; `netready lab down --all`)"
    elif summary["owner_pid"] is not None:
        flag = f"  (owned by running process {summary['owner_pid']})"
    else:
        flag = "  (detached: `netready lab down --id " + summary["id"] + "`)"
    click.echo(f"lab {summary['id']}: {summary['status']}{flag}")
    click.echo(f"  core    {summary['core_ns']:<28} {summary['core_ip']}")
    click.echo(f"  router  {summary['router_ns']}")
    for name, s in summary["sites"].items():
        extra = []
        if s["loss_pct_down"] or s["loss_pct_up"]:
            extra.append(f"loss {s['loss_pct_down']:g}/{s['loss_pct_up']:g}%")
        if s["delay_ms"] or s["jitter_ms"]:
            extra.append(
                f"delay {s['delay_ms']:g}±{s['jitter_ms']:g} ms"
                + (" (in order)" if s["keep_order"] else "")
            )
        if s["dscp_rewrite"]:
            extra.append("dscp->0")
        if s.get("qos", "none") != "none":
            extra.append(f"qos={s['qos']}")
        click.echo(
            f"  site    {s['ns']:<28} {s['ip']:<12} {name}: {s['profile']} ({s['tech']}) "
            f"{s['down_mbit']:g}/{s['up_mbit']:g} Mbit/s, queue {s['queue_ms']:g} ms"
            + (", " + ", ".join(extra) if extra else "")
        )


@click.group("lab", cls=Group)
def lab() -> None:
    """Emulated copper and fibre sites in network namespaces (needs root).

    A `core` namespace (servers run there), a `router` namespace that shapes each site's
    link (HTB + CPE-sized FIFO, nft random loss, optional delay line) and one namespace per
    site. Run tools inside with `netready lab exec SITE -- COMMAND` or
    `ip netns exec <namespace> <command>`.
    """


@lab.command("up")
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    metavar="NAME|CUSTOM",
    help="Add a site with this profile (named after it), e.g. adsl or 'down=20,up=5,queue_ms=200,loss_up=1'. Repeatable.",
)
@click.option(
    "--site",
    "sites",
    multiple=True,
    metavar="NAME=PROFILE",
    help="Add a named site, e.g. A81001=adsl or 'B2=down=20,up=5'. Repeatable. "
    "Without --profile/--site/--inventory: the four demo sites.",
)
@inventory_option(
    default=None,
    help="Add every site of this inventory, named by ODS code, shaped at its link's "
    "contracted rates with the buffer typical of its technology.",
)
@click.option(
    "--id", "lab_id", default=None, help="Lab id (1-12 lower-case letters/digits); default random."
)
@format_option
def up_cmd(
    profiles: tuple[str, ...],
    sites: tuple[str, ...],
    inventory_path: str | None,
    lab_id: str | None,
    fmt: str,
) -> None:
    """Build a lab that stays up until `netready lab down`.

    Stopped while building (SIGTERM, SIGHUP, Ctrl-C), it removes what it built and exits
    128 + the signal number.
    """
    site_map = manage.sites_from_options(profiles, sites, inventory_path)
    try:
        summary = manage.up(site_map, lab_id, _say)
    except Terminated as t:
        raise SystemExit(t.code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if fmt == "json":
        print_json(summary)
    else:
        _print_lab(summary)


@lab.command("down")
@click.option("--id", "lab_id", default=None, help="The lab to remove (default: the only one).")
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Remove every detached lab (from `lab up`) and every stale one; labs owned by a "
    "running process (someone's tests) are left to it unless --force.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --all: also remove labs of running processes.",
)
@click.option(
    "--orphans",
    is_flag=True,
    help="With --all: also remove lab namespaces that have no state file (safe only when no "
    "other lab state directory is in use on this machine).",
)
def down_cmd(lab_id: str | None, all_: bool, force: bool, orphans: bool) -> None:
    """Remove a lab: its processes, namespaces, veths, qdiscs, nft rules and state."""
    if not all_:
        _say(f"lab {manage.down(lab_id)} removed")
        return
    res = manage.down_all(force=force, orphans=orphans)
    if res.orphans:
        _say(
            f"lab namespaces without state: {', '.join(res.orphans)} (`down --id ID` or --orphans)"
        )
    _say(
        f"removed {res.removed} lab(s) and {res.stale} stale namespace(s)"
        + (
            f"; left {res.kept} lab(s) of running processes (--force removes them)"
            if res.kept
            else ""
        )
    )


@lab.command("status")
@format_option
def status_cmd(fmt: str) -> None:
    """Show the labs that are up, their sites, addresses and link settings."""
    labs = manage.status()
    if fmt == "json":
        print_json(labs)
        return
    if not labs:
        _say("no labs are up")
    for summary in labs:
        _print_lab(summary)


@lab.command("profiles")
@format_option
def profiles_cmd(fmt: str) -> None:
    """List the built-in link profiles (rates in Mbit/s, shaped at the IP layer)."""
    from dataclasses import asdict

    if fmt == "json":
        print_json([asdict(p) for p in netns.PROFILES.values()])
        return
    print_table(
        ("name", "tech", "down", "up", "queue_ms", "loss% down/up", "delay_ms"),
        [
            (
                p.name,
                p.tech,
                f"{p.down_mbit:g}",
                f"{p.up_mbit:g}",
                f"{p.queue_ms:g}",
                f"{p.loss_pct_down:g}/{p.loss_pct_up:g}",
                f"{p.delay_ms:g}±{p.jitter_ms:g}",
            )
            for p in netns.PROFILES.values()
        ],
        right=(2, 3, 4, 5, 6),
    )
    _say("custom: down=20,up=5,queue_ms=200,loss_up=1 (or base=fttc40,loss=2)")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--id", "lab_id", default=None, help="The lab (default: the only one).")
@click.argument("where")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(lab_id: str | None, where: str, argv: tuple[str, ...]) -> None:
    """Run a command in a lab namespace: WHERE is core, router or a site name.

    Example: netready lab exec adsl-practice -- ping -c 3 10.77.0.1
    """
    ns = manage.namespace(lab_id, where)
    raise SystemExit(subprocess.call(["ip", "netns", "exec", ns, *argv]))


__all__ = ["lab"]
