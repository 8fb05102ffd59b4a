"""``netready lab``: build, inspect and remove emulated site links (network namespaces)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import click
from netready.lab import netns
from netready.lab.demo_sites import DEMO_SITES
from netready.lab.signals import Terminated

from netready.cli import fail
from netready.errors import ConfigError, NetreadyError


def _sites_from_options(
    profiles: tuple[str, ...], sites: tuple[str, ...], inventory: str | None = None
) -> dict[str, netns.Profile]:
    out: dict[str, netns.Profile] = {}
    if inventory:
        from netready import inventory as inv_mod

        for site in inv_mod.load(inventory).sites:
            link = site.link
            out[site.ods] = netns.profile_for_link(link.tech, link.down_mbps, link.up_mbps)
    for i, text in enumerate(profiles, start=1):
        p = netns.parse_profile(text)
        name = p.name if "=" not in text else f"custom{i}"
        if name in out:
            name = f"{name}-{i}"
        out[name] = p
    for item in sites:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--site {item!r}: use NAME=PROFILE, e.g. A81001=adsl")
        if name in out:
            raise ConfigError(f"--site {item!r}: site {name} given twice")
        out[name] = netns.parse_profile(text)
    if not out:
        out = {name: netns.parse_profile(text) for name, text in DEMO_SITES.items()}
    return out


def _lab_summary(st: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": st["id"],
        "status": st.get("status"),
        "alive": st.get("alive", True),
        "detached": st.get("owner_pid") is None,
        "owner_pid": st.get("owner_pid"),
        "core_ns": st["core_ns"],
        "core_ip": st["core_ip"],
        "router_ns": st["router_ns"],
        "sites": {
            name: {
                "ns": s["ns"],
                "ip": s["ip"],
                "profile": s["profile"]["name"],
                "tech": s["profile"]["tech"],
                "down_mbit": s["down_mbit"],
                "up_mbit": s["up_mbit"],
                "queue_ms": s["profile"]["queue_ms"],
                "loss_pct_down": s["loss_pct_down"],
                "loss_pct_up": s["loss_pct_up"],
                "delay_ms": s["profile"]["delay_ms"],
                "jitter_ms": s["profile"]["jitter_ms"],
                "keep_order": s["profile"].get("keep_order", False),
                "dscp_rewrite": s["dscp_rewrite"],
            }
            for name, s in st["sites"].items()
        },
    }


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
        click.echo(
            f"  site    {s['ns']:<28} {s['ip']:<12} {name}: {s['profile']} ({s['tech']}) "
            f"{s['down_mbit']:g}/{s['up_mbit']:g} Mbit/s, queue {s['queue_ms']:g} ms"
            + (", " + ", ".join(extra) if extra else "")
        )


@click.group("lab")
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
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False),
    default=None,
    help="Add every site of this inventory, named by ODS code, shaped at its link's "
    "contracted rates with the buffer typical of its technology.",
)
@click.option(
    "--id", "lab_id", default=None, help="Lab id (1-12 lower-case letters/digits); default random."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def up_cmd(
    profiles: tuple[str, ...],
    sites: tuple[str, ...],
    inventory: str | None,
    lab_id: str | None,
    fmt: str,
) -> None:
    """Build a lab that stays up until `netready lab down`.

    Stopped while building (SIGTERM, SIGHUP, Ctrl-C), it removes what it built and exits
    128 + the signal number.
    """
    try:
        site_map = _sites_from_options(profiles, sites, inventory)
        netns.check_available()
        stale = netns.cleanup_stale()
        if stale:
            click.echo(f"removed {stale} stale namespace(s) of dead labs", err=True)
        lab_obj = netns.Lab(site_map, lab_id)
        click.echo(f"building lab {lab_obj.lab_id} with {len(site_map)} site(s)...", err=True)
        try:
            lab_obj.up()  # SIGTERM/SIGHUP/Ctrl-C meanwhile: what was built is removed
        except (Terminated, KeyboardInterrupt) as t:
            why = t.signame if isinstance(t, Terminated) else "SIGINT"
            click.echo(f"lab {lab_obj.lab_id}: stopped by {why}; removed what was built", err=True)
            raise SystemExit(t.code if isinstance(t, Terminated) else 130) from None
        lab_obj.detach()
        st = netns.load_state(lab_obj.lab_id) or {}
    except NetreadyError as e:
        raise fail(e) from None
    summary = _lab_summary({**st, "alive": True})
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
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
    try:
        netns.check_available()
        if all_:
            stale = netns.cleanup_stale(orphans=orphans)
            labs = netns.list_labs()
            gone = [st["id"] for st in labs if force or st.get("owner_pid") is None]
            for i in gone:
                netns.destroy(i)
            kept = len(labs) - len(gone)
            left = netns.orphan_ids()
            if left:
                click.echo(
                    f"lab namespaces without state: {', '.join(left)} (`down --id ID` or --orphans)",
                    err=True,
                )
            click.echo(
                f"removed {len(gone)} lab(s) and {stale} stale namespace(s)"
                + (
                    f"; left {kept} lab(s) of running processes (--force removes them)"
                    if kept
                    else ""
                ),
                err=True,
            )
            return
        if lab_id is None:
            ids = [st["id"] for st in netns.list_labs()]
            if len(ids) != 1:
                raise ConfigError(
                    f"{len(ids)} labs are up ({', '.join(ids) or 'none'}): name one with --id, or use --all"
                )
            lab_id = ids[0]
        if not netns.destroy(lab_id):
            raise netns.LabError(f"no lab with id {lab_id!r}")
        click.echo(f"lab {lab_id} removed", err=True)
    except NetreadyError as e:
        raise fail(e) from None


@lab.command("status")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def status_cmd(fmt: str) -> None:
    """Show the labs that are up, their sites, addresses and link settings."""
    try:
        labs = [_lab_summary(st) for st in netns.list_labs()]
    except NetreadyError as e:
        raise fail(e) from None
    if fmt == "json":
        click.echo(json.dumps(labs, indent=2))
        return
    if not labs:
        click.echo("no labs are up", err=True)
    for summary in labs:
        _print_lab(summary)


@lab.command("profiles")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def profiles_cmd(fmt: str) -> None:
    """List the built-in link profiles (rates in Mbit/s, shaped at the IP layer)."""
    from dataclasses import asdict

    if fmt == "json":
        click.echo(json.dumps([asdict(p) for p in netns.PROFILES.values()], indent=2))
        return
    click.echo(
        f"{'name':<10} {'tech':<9} {'down':>7} {'up':>7} {'queue_ms':>9} {'loss%':>7} {'delay_ms':>9}"
    )
    for p in netns.PROFILES.values():
        click.echo(
            f"{p.name:<10} {p.tech:<9} {p.down_mbit:>7g} {p.up_mbit:>7g} {p.queue_ms:>9g} "
            f"{p.loss_pct_down:>3g}/{p.loss_pct_up:<3g} {p.delay_ms:>6g}±{p.jitter_ms:g}"
        )
    click.echo("custom: down=20,up=5,queue_ms=200,loss_up=1 (or base=fttc40,loss=2)", err=True)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--id", "lab_id", default=None, help="The lab (default: the only one).")
@click.argument("where")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(lab_id: str | None, where: str, argv: tuple[str, ...]) -> None:
    """Run a command in a lab namespace: WHERE is core, router or a site name.

    Example: netready lab exec adsl-practice -- ping -c 3 10.77.0.1
    """
    try:
        if lab_id is None:
            ids = [st["id"] for st in netns.list_labs()]
            if len(ids) != 1:
                raise ConfigError(f"{len(ids)} labs are up: name one with --id")
            lab_id = ids[0]
        lab_obj = netns.Lab.from_state(lab_id)
        ns = {"core": lab_obj.core_ns, "router": lab_obj.router_ns}.get(where) or lab_obj.site_ns(
            where
        )
    except NetreadyError as e:
        raise fail(e) from None
    rc = subprocess.call(["ip", "netns", "exec", ns, *argv])
    raise SystemExit(rc)


__all__ = ["lab"]
