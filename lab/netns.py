"""Emulated site links in network namespaces: ``Lab``, and the functions that find and remove
labs on this machine (``destroy``, ``cleanup_stale``, ``orphan_ids``).

Topology (all inside namespaces; nothing is created in the root namespace)::

    core (10.77.0.1) -- eth0 ~~ core0 -- router -- s1 ~~ eth0 -- site 1 (10.77.1.2)
                                                 -- s2 ~~ eth0 -- site 2 (10.77.2.2) ...

The router namespace shapes on its egress towards each side, drops at random and rewrites
DSCP with nftables, and adds delay through a user-space delay line (``lab/shaping.py``).
A ``Lab`` composes its parts, each in its own module:

- ``lab/profiles.py``: ``Profile``, ``PROFILES``, ``parse_profile`` (what a line does)
- ``lab/topology.py``: names, addresses, building the namespaces, veths and routes
- ``lab/shaping.py``: ``Shaper`` (rate, buffer), ``Nftables`` (loss, DSCP), ``DelayLines``
- ``lab/shell.py``: commands in namespaces, the processes a lab starts, ``LabError``
- ``lab/state.py``: the state file shared across processes (``netready lab up`` / ``down`` /
  ``status``), one JSON file per lab under ``/run/netready-lab/``
  (``NETREADY_LAB_STATE_DIR`` overrides it)

This module re-exports their public names, so ``from netready.lab.netns import ...`` reaches
everything.

Stopping: from ``up()`` until ``down()`` (or ``detach()``), SIGTERM and SIGHUP raise
``lab.signals.Terminated`` in the main thread, so ``with Lab(...)``, ``finally`` blocks and
the ``atexit`` hook tear the lab down as they do on Ctrl-C; a teardown holds further
signals off until it is complete (``lab/signals.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from netready.lab import signals, state
from netready.lab.profiles import (
    PROFILES,
    QUEUE_MS_BY_TECH,
    TECHS,
    Profile,
    parse_profile,
    profile_for_link,
    profile_to_text,
)
from netready.lab.shaping import LOSS_SCALE, NFT_TABLE, DelayLines, Nftables, Shaper
from netready.lab.shell import (
    LabError,
    LabUnavailable,
    Processes,
    list_netns,
    netns_pids,
    run_in,
)
from netready.lab.shell import check_available as _check_available
from netready.lab.state import list_labs, load_state, state_dir
from netready.lab.topology import MAX_SITES, MTU, SUBNET, Topology, teardown

__all__ = [
    "LOSS_SCALE",
    "MAX_SITES",
    "MTU",
    "NFT_TABLE",
    "NS_PREFIX",
    "PROFILES",
    "QUEUE_MS_BY_TECH",
    "SUBNET",
    "TECHS",
    "Lab",
    "LabError",
    "LabUnavailable",
    "Profile",
    "check_available",
    "cleanup_stale",
    "destroy",
    "list_labs",
    "list_netns",
    "load_state",
    "netns_pids",
    "orphan_ids",
    "parse_profile",
    "profile_for_link",
    "profile_to_text",
    "state_dir",
]

#: Namespace names start with this; a process may set another before it builds a lab (the
#: throughput benchmark does, to keep its labs out of other processes' ``cleanup_stale``).
NS_PREFIX = "nr-"


def check_available() -> None:
    """Raise ``LabUnavailable`` (one line) unless we are root and ``ip netns`` works."""
    _check_available(NS_PREFIX)


# --------------------------------------------------------------------------- the lab

_LIVE: set[Lab] = set()


@atexit.register
def _down_all() -> None:  # pragma: no cover - safety net for crashed tests
    for lab in list(_LIVE):
        with contextlib.suppress(Exception):
            lab.down()


class Lab:
    """Emulated sites behind a shaping router. ``with Lab({"a": PROFILES["adsl"]}) as lab:``."""

    def __init__(
        self, sites: dict[str, Profile] | dict[str, Profile | str], lab_id: str | None = None
    ):
        """``sites`` maps a site name to a ``Profile`` (or a profile name / custom text)."""
        self.topo = Topology(sites, secrets.token_hex(3) if lab_id is None else lab_id, NS_PREFIX)
        self.lab_id = self.topo.lab_id
        self.core_ns, self.router_ns = self.topo.core_ns, self.topo.router_ns
        self.core_ip, self.router_core_ip = self.topo.core_ip, self.topo.router_core_ip
        self.shaper = Shaper(self.topo)
        self.nft = Nftables(self.topo)
        self.delays = DelayLines(self.topo)
        self.procs = Processes()
        self.is_up = False
        self.detached = False
        self._owns = False  # True once this object built (or re-attached to) the lab
        self._holding = False  # this lab holds SIGTERM/SIGHUP -> Terminated (lab.signals)

    # -- names and addresses

    @property
    def sites(self) -> dict[str, Profile]:
        return {n: s.profile for n, s in self.topo.sites.items()}

    def site_ns(self, site: str) -> str:
        return self.topo.site_ns(site)

    def site_ip(self, site: str) -> str:
        return self.topo.site_ip(site)

    def site_gw(self, site: str) -> str:
        return self.topo.site_gw(site)

    def namespaces(self) -> list[str]:
        return self.topo.namespaces()

    @property
    def state_path(self) -> Path:
        return state.state_path(self.lab_id)

    # -- running things

    def run(
        self, ns: str, argv: list[str], timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside namespace ``ns``; raises ``LabError`` on failure if ``check``."""
        return run_in(ns, argv, timeout, check)

    def popen(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``ns``; the process is killed by ``down()``."""
        return self.procs.popen(ns, argv, **kw)

    # -- changing a line while the lab runs

    def set_rate(self, site: str, down_mbit: float, up_mbit: float) -> None:
        """Change a site's shaped rates (Mbit/s); the queue keeps its ``queue_ms`` depth."""
        self.shaper.set_rate(site, down_mbit, up_mbit)
        self._refresh_state()

    def set_loss(self, site: str, down_pct: float = 0, up_pct: float = 0) -> None:
        """Random per-packet loss in percent (0.001 % steps), per direction, in the router."""
        self.nft.set_loss(site, down_pct, up_pct)
        self._refresh_state()

    def set_dscp_rewrite(self, site: str, on: bool) -> None:
        """Rewrite DSCP to 0 (CS0) on the site's traffic, both directions, like a bleaching ISP."""
        self.nft.set_dscp_rewrite(site, on)
        self._refresh_state()

    # -- the state file

    def _write_state(self, status: str) -> None:
        doc = {"schema": state.SCHEMA, "id": self.lab_id, "status": status}
        doc.update(state.owner(self.detached))
        doc["created_ms"] = int(time.time() * 1000)
        topo = self.topo.describe()
        sites = topo.pop("sites")
        state.save(self.lab_id, {**doc, **topo, "delay_pids": self.delays.pids, "sites": sites})

    def _refresh_state(self) -> None:
        if self.is_up and self.state_path.exists():
            self._write_state("up")

    def describe(self) -> dict[str, Any]:
        return load_state(self.lab_id) or {}

    @classmethod
    def from_state(cls, lab_id: str) -> Lab:
        """Re-attach to a running lab (e.g. one started by ``netready lab up``)."""
        st = load_state(lab_id)
        if st is None:
            raise LabError(f"no lab with id {lab_id!r} (no {state.state_path(lab_id)})")
        lab = cls({n: Profile(**v["profile"]) for n, v in st["sites"].items()}, lab_id)
        lab.topo.restore(st["sites"])
        lab.delays.pids = list(st.get("delay_pids", []))
        lab.is_up = st.get("status") == "up"
        lab.detached = st.get("owner_pid") is None
        lab._owns = True
        return lab

    # -- lifecycle

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def detach(self) -> None:
        """Let the lab outlive this process (``netready lab up``); ``netready lab down`` ends it."""
        self.detached = True
        _LIVE.discard(self)
        if self.is_up:
            self._write_state("up")
        self._release_signals()

    def _release_signals(self) -> None:
        if self._holding:
            self._holding = False
            signals.release()

    def up(self) -> Lab:
        """Build everything. On any failure, tear down what was built and raise ``LabError``."""
        if self.is_up:
            return self
        check_available()
        if not self._holding:  # from here on, SIGTERM tears down what was built
            self._holding = True
            signals.hold()
        try:
            return self._up()
        except BaseException:
            self._release_signals()
            raise

    def _up(self) -> Lab:
        existing = set(list_netns())
        clash = [ns for ns in self.namespaces() if ns in existing]
        if clash or self.state_path.exists():
            raise LabError(
                f"lab {self.lab_id} already exists ({', '.join(clash) or self.state_path}); "
                f"use another id or `netready lab down --id {self.lab_id}`"
            )
        try:
            # Claim the id atomically (O_EXCL), so two processes given the same id cannot both
            # build, and write the state first, so cleanup_stale never mistakes us for debris.
            with signals.deferred_signals():  # claimed and owned, or neither
                state.claim(self.lab_id)
                self._owns = True
                self._write_state("building")
                _LIVE.add(self)
            self._build()
            self.is_up = True
            self._write_state("up")
        except BaseException:  # a failure, Ctrl-C or SIGTERM: remove what was built
            self.down()
            raise
        return self

    def _build(self) -> None:
        self.topo.build()
        self.shaper.build()
        self.nft.build()
        self.delays.build()

    def down(self) -> None:
        """Remove everything this lab built (processes, namespaces, state). Idempotent.

        SIGTERM/SIGINT/SIGHUP that arrive meanwhile are delivered once it is done."""
        try:
            with signals.deferred_signals():
                self._down()
        finally:
            self._release_signals()

    def _down(self) -> None:
        self.procs.stop()
        if not self._owns:  # never built: the id may belong to someone else's lab
            return
        _teardown(self.lab_id, self.namespaces(), self.delays.pids)
        self.delays.reap()  # the teardown killed them
        self.is_up = False
        _LIVE.discard(self)


# --------------------------------------------------------------------------- labs on this machine


def _teardown(lab_id: str, namespaces: list[str], delay_pids: list[int]) -> None:
    teardown(namespaces, delay_pids)
    state.remove(lab_id)


def destroy(lab_id: str) -> bool:
    """Tear down the lab with this id (from its state file, or by namespace names)."""
    st = load_state(lab_id)
    names = [ns for ns in list_netns() if ns.startswith(f"{NS_PREFIX}{lab_id}-")]
    if st is None and not names:
        return False
    nss = list(dict.fromkeys([*(st or {}).get("namespaces", []), *names]))
    with signals.deferred_signals():
        _teardown(lab_id, nss, list((st or {}).get("delay_pids", [])))
    return True


def orphan_ids(prefix: str = NS_PREFIX) -> list[str]:
    """Ids of labs whose ``<prefix><id>-core``/``-router`` namespace has no state file here."""
    ids = []
    for ns in list_netns():
        m = re.match(rf"^{re.escape(prefix)}([a-z0-9]{{1,12}})-(core|router)$", ns)
        if m and m.group(1) not in ids and load_state(m.group(1)) is None:
            ids.append(m.group(1))
    return ids


def cleanup_stale(prefix: str = NS_PREFIX, orphans: bool = False) -> int:
    """Remove labs whose owning process is dead. Returns the number of namespaces removed.

    A lab is stale when its state file names an owner pid that is no longer running. Labs
    started by ``netready lab up`` (detached) and labs of live processes are left alone, so
    this is safe to call from any test while other labs run. With ``orphans=True`` it also
    removes labs whose core/router namespace has no state file at all (state deleted by
    hand); that is only safe when every lab on the machine uses this state directory.
    """
    present = list_netns()
    removed = 0
    stale_ids: set[str] = set()
    for st in list_labs():
        if not st["alive"] and all(ns.startswith(prefix) for ns in st.get("namespaces", [])):
            stale_ids.add(st["id"])
    if orphans:
        stale_ids.update(orphan_ids(prefix))
    for lab_id in stale_ids:
        st = load_state(lab_id) or {}
        nss = [ns for ns in present if ns.startswith(f"{prefix}{lab_id}-")]
        nss = list(dict.fromkeys([*st.get("namespaces", []), *nss]))
        removed += sum(1 for ns in nss if ns in present)
        _teardown(lab_id, nss, list(st.get("delay_pids", [])))
    return removed
