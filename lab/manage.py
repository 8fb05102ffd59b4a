"""Managing labs as ``netready lab`` does: which sites a lab gets, building one that stays up,
removing labs, summaries for people and scripts, and the namespace a command runs in.

No click here: the command line is ``netready/cli/lab.py``; errors are ``NetreadyError``
(``LabError``, ``ConfigError``) and progress goes to a ``say`` callback (stderr in the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netready.lab import netns
from netready.lab.demo_sites import DEMO_SITES
from netready.lab.signals import Terminated

from netready.errors import ConfigError

Say = Callable[[str], None]


def sites_from_options(
    profiles: tuple[str, ...], sites: tuple[str, ...], inventory: str | None = None
) -> dict[str, netns.Profile]:
    """``--inventory`` sites (by ODS code, at their contracted rates), then ``--profile``
    sites (named after the profile), then ``--site NAME=PROFILE``; none: the demo sites."""
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


def summary(st: dict[str, Any]) -> dict[str, Any]:
    """A lab's state file as ``lab status --format json`` shows it."""
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
                "qos": s["profile"].get("qos", "none"),
                "dscp_rewrite": s["dscp_rewrite"],
            }
            for name, s in st["sites"].items()
        },
    }


def up(site_map: dict[str, netns.Profile], lab_id: str | None, say: Say) -> dict[str, Any]:
    """Build a lab that stays up (detached) until ``down``; returns its summary.

    Stopped while building (SIGTERM, SIGHUP: ``Terminated``; Ctrl-C: ``KeyboardInterrupt``),
    it removes what it built, says so and re-raises."""
    netns.check_available()
    stale = netns.cleanup_stale()
    if stale:
        say(f"removed {stale} stale namespace(s) of dead labs")
    lab = netns.Lab(site_map, lab_id)
    say(f"building lab {lab.lab_id} with {len(site_map)} site(s)...")
    try:
        lab.up()  # SIGTERM/SIGHUP/Ctrl-C meanwhile: what was built is removed
    except (Terminated, KeyboardInterrupt) as t:
        why = t.signame if isinstance(t, Terminated) else "SIGINT"
        say(f"lab {lab.lab_id}: stopped by {why}; removed what was built")
        raise
    lab.detach()
    return summary({**(netns.load_state(lab.lab_id) or {}), "alive": True})


def status() -> list[dict[str, Any]]:
    """Summaries of the labs that are up (stale ones too, ``alive`` false)."""
    return [summary(st) for st in netns.list_labs()]


def down(lab_id: str | None) -> str:
    """Remove one lab (default: the only one); returns its id. ``LabError`` if there is none."""
    netns.check_available()
    if lab_id is None:
        ids = [st["id"] for st in netns.list_labs()]
        if len(ids) != 1:
            raise ConfigError(
                f"{len(ids)} labs are up ({', '.join(ids) or 'none'}): name one with --id, "
                "or use --all"
            )
        lab_id = str(ids[0])
    if not netns.destroy(lab_id):
        raise netns.LabError(f"no lab with id {lab_id!r}")
    return lab_id


@dataclass
class DownAll:
    removed: int  # labs removed
    stale: int  # stale namespaces removed
    kept: int  # labs of running processes left alone
    orphans: list[str]  # lab namespaces without a state file, left alone


def down_all(force: bool = False, orphans: bool = False) -> DownAll:
    """Remove every detached and every stale lab (and, ``force``, those of running
    processes; ``orphans``, namespaces without state)."""
    netns.check_available()
    stale = netns.cleanup_stale(orphans=orphans)
    labs = netns.list_labs()
    gone = [st["id"] for st in labs if force or st.get("owner_pid") is None]
    for i in gone:
        netns.destroy(i)
    return DownAll(len(gone), stale, len(labs) - len(gone), netns.orphan_ids())


def namespace(lab_id: str | None, where: str) -> str:
    """The namespace of ``where`` (core, router or a site name) in a lab (default: the only one)."""
    if lab_id is None:
        ids = [st["id"] for st in netns.list_labs()]
        if len(ids) != 1:
            raise ConfigError(f"{len(ids)} labs are up: name one with --id")
        lab_id = str(ids[0])
    lab = netns.Lab.from_state(lab_id)
    return {"core": lab.core_ns, "router": lab.router_ns}.get(where) or lab.site_ns(where)
