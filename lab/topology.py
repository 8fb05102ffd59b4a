"""The lab's topology: its sites, their names and addresses, and the namespaces, veth pairs,
addresses and routes that join them (``build``); ``teardown`` removes all of it.

    core (10.77.0.1) -- eth0 ~~ core0 -- router -- s1 ~~ eth0 -- site 1 (10.77.1.2)
                                                 -- s2 ~~ eth0 -- site 2 (10.77.2.2) ...

Every interface is created inside a namespace (``ip -n ROUTER link add ... peer ... netns
SITE``), so nothing appears in the root namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from netready.lab.profiles import Profile, parse_profile
from netready.lab.shell import kill_ns, run_in, sh

from netready.errors import ConfigError

SUBNET = "10.77"  # 10.77.0.0/16: core link 10.77.0.0/24, site i on 10.77.i.0/24
MAX_SITES = 250
MTU = 1500

_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_ID_RE = re.compile(r"^[a-z0-9]{1,12}$")
_RESERVED = {"core", "router"}


@dataclass(eq=False)
class SiteLink:
    """One site of a lab: its place in the address plan, its profile, and the settings its
    line has now (``set_rate``, ``set_loss`` and ``set_dscp_rewrite`` change them)."""

    name: str
    index: int
    profile: Profile
    loss_down: float = 0.0
    loss_up: float = 0.0
    dscp_rewrite: bool = False
    down_mbit: float = 0.0
    up_mbit: float = 0.0

    @classmethod
    def new(cls, name: str, index: int, p: Profile) -> SiteLink:
        return cls(name, index, p, p.loss_pct_down, p.loss_pct_up, False, p.down_mbit, p.up_mbit)

    @property
    def router_if(self) -> str:
        """The router's interface towards this site (its egress carries the download)."""
        return f"s{self.index}"

    @property
    def subnet(self) -> str:
        return f"{SUBNET}.{self.index}.0/24"


def _profiles(sites: Mapping[str, Profile | str]) -> dict[str, Profile]:
    if not sites:
        raise ConfigError("a lab needs at least one site")
    if len(sites) > MAX_SITES:
        raise ConfigError(f"a lab holds at most {MAX_SITES} sites, got {len(sites)}")
    out: dict[str, Profile] = {}
    for name, prof in sites.items():
        if not _SITE_RE.match(name) or name in _RESERVED:
            raise ConfigError(
                f"site name {name!r}: use 1-40 letters, digits, '.', '_' or '-' (not core/router)"
            )
        if isinstance(prof, str):  # a profile name or custom text, as in DEMO_SITES
            prof = parse_profile(prof)
        elif not isinstance(prof, Profile):
            raise ConfigError(f"site {name}: profile must be a Profile, got {type(prof).__name__}")
        out[name] = prof
    return out


class Topology:
    """Names and addresses of a lab's namespaces, and building them."""

    def __init__(self, sites: Mapping[str, Profile | str], lab_id: str, prefix: str):
        """``sites`` maps a site name to a ``Profile`` (or a profile name / custom text)."""
        profiles = _profiles(sites)
        if not _ID_RE.match(lab_id):
            raise ConfigError(f"lab id {lab_id!r}: use 1-12 lower-case letters or digits")
        self.lab_id = lab_id
        self.prefix = prefix
        self.core_ns = f"{prefix}{lab_id}-core"
        self.router_ns = f"{prefix}{lab_id}-router"
        self.core_ip = f"{SUBNET}.0.1"
        self.router_core_ip = f"{SUBNET}.0.2"
        self.sites: dict[str, SiteLink] = {
            name: SiteLink.new(name, i, prof)
            for i, (name, prof) in enumerate(profiles.items(), start=1)
        }

    def site(self, site: str) -> SiteLink:
        try:
            return self.sites[site]
        except KeyError:
            raise ConfigError(
                f"lab {self.lab_id}: no site {site!r} (have {', '.join(self.sites)})"
            ) from None

    def site_ns(self, site: str) -> str:
        return f"{self.prefix}{self.lab_id}-{self.site(site).name}"

    def site_ip(self, site: str) -> str:
        return f"{SUBNET}.{self.site(site).index}.2"

    def site_gw(self, site: str) -> str:
        return f"{SUBNET}.{self.site(site).index}.1"

    def namespaces(self) -> list[str]:
        return [self.core_ns, self.router_ns, *(self.site_ns(s) for s in self.sites)]

    # -- building

    def build(self) -> None:
        """Namespaces, the veth pairs core-router and router-site, addresses and routes."""
        r, c = self.router_ns, self.core_ns
        for ns in self.namespaces():
            sh(["ip", "netns", "add", ns])
            self._ns_base(ns, forward=(ns == r))
        self._veth(r, "core0", c)
        self._addr(c, "eth0", f"{self.core_ip}/24")
        self._addr(r, "core0", f"{self.router_core_ip}/24")
        sh(["ip", "-n", c, "route", "add", f"{SUBNET}.0.0/16", "via", self.router_core_ip])
        for name, s in self.sites.items():
            ns = self.site_ns(name)
            self._veth(r, s.router_if, ns)
            self._addr(ns, "eth0", f"{self.site_ip(name)}/24")
            self._addr(r, s.router_if, f"{self.site_gw(name)}/24")
            sh(["ip", "-n", ns, "route", "add", "default", "via", self.site_gw(name)])

    @staticmethod
    def _veth(ns: str, dev: str, peer_ns: str) -> None:
        """A veth pair: ``dev`` in ``ns``, ``eth0`` in ``peer_ns``."""
        sh(["ip", "-n", ns, *f"link add {dev} type veth peer name eth0 netns {peer_ns}".split()])

    @staticmethod
    def _ns_base(ns: str, forward: bool) -> None:
        sysctls = [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            f"net.ipv4.ip_forward={int(forward)}",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ]
        run_in(ns, ["sysctl", "-q", "-w", *sysctls])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    @staticmethod
    def _addr(ns: str, dev: str, cidr: str) -> None:
        # One segment per skb (no TSO/GSO aggregates; veth GRO is off by default): the router
        # must queue and drop real 1500-byte packets, not 64 kB aggregates that would
        # overflow a small CPE buffer whole and make shaping bursty.
        sh(["ip", "-n", ns, *f"link set {dev} gso_max_segs 1 gso_max_size {MTU + 14}".split()])
        sh(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
        sh(["ip", "-n", ns, "link", "set", dev, "up"])

    # -- the state file's view

    def describe(self) -> dict[str, Any]:
        """Names, addresses and each site's current settings (the state file's body)."""
        return {
            "core_ns": self.core_ns,
            "core_ip": self.core_ip,
            "router_ns": self.router_ns,
            "namespaces": self.namespaces(),
            "sites": {
                n: {
                    "ns": self.site_ns(n),
                    "ip": self.site_ip(n),
                    "gateway": self.site_gw(n),
                    "profile": asdict(s.profile),
                    "down_mbit": s.down_mbit,
                    "up_mbit": s.up_mbit,
                    "loss_pct_down": s.loss_down,
                    "loss_pct_up": s.loss_up,
                    "dscp_rewrite": s.dscp_rewrite,
                }
                for n, s in self.sites.items()
            },
        }

    def restore(self, sites: Mapping[str, Mapping[str, Any]]) -> None:
        """Take each site's current settings from a state file's ``sites``."""
        for n, v in sites.items():
            s = self.sites[n]
            s.down_mbit, s.up_mbit = v["down_mbit"], v["up_mbit"]
            s.loss_down, s.loss_up = v["loss_pct_down"], v["loss_pct_up"]
            s.dscp_rewrite = v["dscp_rewrite"]


def teardown(namespaces: Iterable[str], delay_pids: Iterable[int]) -> None:
    """Kill the delay lines, then every namespace (and every process in it); sites and router
    first, core last. Quiet about what is already gone."""
    for pid in delay_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for ns in reversed(list(namespaces)):
        kill_ns(ns)
