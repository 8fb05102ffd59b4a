"""Emulated site links in network namespaces.

Topology (all inside namespaces; nothing is created in the root namespace)::

    core (10.77.0.1) -- eth0 ~~ core0 -- router -- s1 ~~ eth0 -- site 1 (10.77.1.2)
                                                 -- s2 ~~ eth0 -- site 2 (10.77.2.2) ...

The router namespace shapes on its egress towards each side: ``s<i>`` (towards the site)
carries the download rate, ``core0`` (towards the core) carries one HTB class per site for
the upload rate. Each class drains into a byte FIFO sized from the profile's ``queue_ms``,
so latency rises under load as on a real CPE buffer. Random loss and DSCP rewriting are
nftables rules in the router. A fixed delay / jitter goes through a user-space delay line
(``lab/delayline.py``) on a TUN device in the router, because this kernel has no netem.

State shared across processes (``netready lab up`` / ``down`` / ``status``) lives in a small
JSON file per lab under ``/run/netready-lab/`` (``NETREADY_LAB_STATE_DIR`` overrides it).

Stopping: from ``up()`` until ``down()`` (or ``detach()``), SIGTERM and SIGHUP raise
``lab.signals.Terminated`` in the main thread, so ``with Lab(...)``, ``finally`` blocks and
the ``atexit`` hook tear the lab down as they do on Ctrl-C; a teardown holds further
signals off until it is complete (``lab/signals.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from netready.lab import signals

from netready.errors import ConfigError, NetreadyError

NS_PREFIX = "nr-"
SUBNET = "10.77"  # 10.77.0.0/16: core link 10.77.0.0/24, site i on 10.77.i.0/24
MAX_SITES = 250
TECHS = ("adsl", "fttc", "sogea", "fttp", "ethernet", "unknown")
MTU = 1500
NFT_TABLE = "netready"
LOSS_SCALE = 100_000  # nft numgen modulus: loss in steps of 0.001 %


class LabError(NetreadyError):
    """The lab could not be built or a command inside it failed (runtime, exit code 1)."""


class LabUnavailable(LabError):
    """Not root, or ``ip netns`` does not work on this machine."""


def state_dir() -> Path:
    return Path(os.environ.get("NETREADY_LAB_STATE_DIR", "/run/netready-lab"))


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """One access line. Rates in Mbit/s at the IP layer (what tc shapes), per direction.

    ``queue_ms`` sizes the bottleneck buffer: bytes = rate x queue_ms, so a full buffer adds
    about ``queue_ms`` of delay (bufferbloat). Loss is random, per packet, per direction.
    ``delay_ms`` / ``jitter_ms`` are one-way, added in each direction by the delay line.
    """

    name: str
    tech: str
    down_mbit: float
    up_mbit: float
    queue_ms: float = 50.0
    loss_pct_down: float = 0.0
    loss_pct_up: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    keep_order: bool = False  # jitter without reordering (queueing-like); see docs/lab.md

    def __post_init__(self) -> None:
        if self.tech not in TECHS:
            raise ConfigError(
                f"profile {self.name}: tech {self.tech!r} is not one of {', '.join(TECHS)}"
            )
        for f in ("down_mbit", "up_mbit"):
            v = getattr(self, f)
            if not (0.01 <= v <= 10_000):
                raise ConfigError(f"profile {self.name}: {f}={v} must be between 0.01 and 10000")
        if not (1 <= self.queue_ms <= 5_000):
            raise ConfigError(f"profile {self.name}: queue_ms={self.queue_ms} must be 1..5000")
        for f in ("loss_pct_down", "loss_pct_up"):
            v = getattr(self, f)
            if not (0 <= v <= 100):
                raise ConfigError(f"profile {self.name}: {f}={v} must be 0..100")
        if not (0 <= self.delay_ms <= 10_000) or not (0 <= self.jitter_ms <= 10_000):
            raise ConfigError(f"profile {self.name}: delay_ms/jitter_ms must be 0..10000")

    @property
    def needs_delay_line(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        # ADSL2+ on a long-ish line; ADSL routers carry deep buffers (bufferbloat).
        Profile("adsl", "adsl", 7.0, 0.8, queue_ms=250),
        Profile("fttc40", "fttc", 36.0, 9.0, queue_ms=120),
        Profile("fttc80", "fttc", 70.0, 18.0, queue_ms=120),
        Profile("sogea80", "sogea", 70.0, 18.0, queue_ms=120),
        Profile("fttp", "fttp", 150.0, 30.0, queue_ms=30),
        Profile("ethernet", "ethernet", 100.0, 100.0, queue_ms=20),
    )
}

#: CPE buffer depth by access technology, for profiles made from an inventory's link.
QUEUE_MS_BY_TECH = {
    "adsl": 250.0,
    "fttc": 120.0,
    "sogea": 120.0,
    "fttp": 30.0,
    "ethernet": 20.0,
    "unknown": 50.0,
}


def profile_for_link(
    tech: str, down_mbit: float, up_mbit: float, name: str | None = None
) -> Profile:
    """A profile for an inventory link (``site.link``): its contracted rates, shaped as they
    are, and the CPE buffer typical of its technology."""
    return Profile(
        name or f"{tech}-{down_mbit:g}/{up_mbit:g}",
        tech,
        float(down_mbit),
        float(up_mbit),
        queue_ms=QUEUE_MS_BY_TECH.get(tech, 50.0),
    )


_KEYS = {
    "down": "down_mbit",
    "down_mbit": "down_mbit",
    "up": "up_mbit",
    "up_mbit": "up_mbit",
    "queue_ms": "queue_ms",
    "queue": "queue_ms",
    "loss": "loss",
    "loss_pct": "loss",
    "loss_down": "loss_pct_down",
    "loss_pct_down": "loss_pct_down",
    "loss_up": "loss_pct_up",
    "loss_pct_up": "loss_pct_up",
    "delay_ms": "delay_ms",
    "delay": "delay_ms",
    "jitter_ms": "jitter_ms",
    "jitter": "jitter_ms",
    "keep_order": "keep_order",
    "tech": "tech",
    "name": "name",
    "base": "base",
}


def parse_profile(text: str) -> Profile:
    """A profile by name (``adsl``) or custom ``key=value`` pairs separated by commas.

    Keys: down, up (Mbit/s), queue_ms, loss (both directions), loss_down, loss_up (percent),
    delay_ms, jitter_ms (one-way), tech, name, base (start from a named profile).
    Example: ``down=20,up=5,queue_ms=200,loss_up=1`` or ``base=fttc40,loss=2``.
    """
    text = text.strip()
    if not text:
        raise ConfigError("empty link profile")
    if "=" not in text:
        if text in PROFILES:
            return PROFILES[text]
        raise ConfigError(f"unknown link profile {text!r}; known: {', '.join(PROFILES)}")
    values: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS:
            raise ConfigError(
                f"link profile {text!r}: bad item {part!r} (keys: {', '.join(sorted(_KEYS))})"
            )
        k = _KEYS[key]
        val = val.strip()
        if k in ("tech", "name", "base"):
            values[k] = val
            continue
        if k == "keep_order":
            if val.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"link profile {text!r}: keep_order={val!r} is not 1/0")
            values[k] = val.lower() in ("1", "true", "yes")
            continue
        try:
            num = float(val)
        except ValueError:
            raise ConfigError(f"link profile {text!r}: {key}={val!r} is not a number") from None
        if k == "loss":
            values["loss_pct_down"] = values["loss_pct_up"] = num
        else:
            values[k] = num
    base_name = values.pop("base", None)
    if base_name is not None:
        if base_name not in PROFILES:
            raise ConfigError(f"link profile {text!r}: unknown base {base_name!r}")
        base = PROFILES[base_name]
        values.setdefault("name", f"{base.name}+custom")
        return replace(base, **values)
    for req in ("down_mbit", "up_mbit"):
        if req not in values:
            raise ConfigError(f"link profile {text!r}: needs down= and up= (Mbit/s) or base=NAME")
    values.setdefault("name", "custom")
    values.setdefault("tech", "unknown")
    return Profile(**values)


def profile_to_text(p: Profile) -> str:
    """The inverse of ``parse_profile`` for any profile (round-trips exactly)."""
    return (
        f"name={p.name},tech={p.tech},down={p.down_mbit!r},up={p.up_mbit!r},"
        f"queue_ms={p.queue_ms!r},loss_down={p.loss_pct_down!r},loss_up={p.loss_pct_up!r},"
        f"delay_ms={p.delay_ms!r},jitter_ms={p.jitter_ms!r},keep_order={int(p.keep_order)}"
    )


# --------------------------------------------------------------------------- helpers

_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_ID_RE = re.compile(r"^[a-z0-9]{1,12}$")
_RESERVED = {"core", "router"}


def _sh(
    argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise LabUnavailable(f"{argv[0]} not found: install iproute2/nftables") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(argv)} timed out after {timeout:g}s") from e
    if check and cp.returncode != 0:
        err = (cp.stderr or cp.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv)} failed (exit {cp.returncode}): {err[-1] if err else ''}")
    return cp


def list_netns() -> list[str]:
    cp = _sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    cp = _sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def _proc_start(pid: int) -> str | None:
    """Process start time (clock ticks since boot), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(state: dict[str, Any]) -> bool:
    pid = state.get("owner_pid")
    if pid is None:  # detached lab (netready lab up): lives until `lab down`
        return True
    return _proc_start(int(pid)) == state.get("owner_start")


def _kill_ns(ns: str) -> None:
    """Kill every process in a namespace, then delete it. Quiet if it is already gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = netns_pids(ns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and netns_pids(ns):
            time.sleep(0.02)
    _sh(["ip", "netns", "del", ns], check=False)


def check_available() -> None:
    """Raise ``LabUnavailable`` (one line) unless we are root and ``ip netns`` works."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces): run as root")
    probe = f"{NS_PREFIX}probe{os.getpid()}{secrets.token_hex(2)}"
    cp = _sh(["ip", "netns", "add", probe], check=False)
    if cp.returncode != 0:
        raise LabUnavailable(f"ip netns does not work here: {cp.stderr.strip() or cp.returncode}")
    _sh(["ip", "netns", "del", probe], check=False)


# --------------------------------------------------------------------------- the lab

_LIVE: set[Lab] = set()


@atexit.register
def _down_all() -> None:  # pragma: no cover - safety net for crashed tests
    for lab in list(_LIVE):
        with contextlib.suppress(Exception):
            lab.down()


@dataclass(eq=False)
class _Site:
    name: str
    index: int
    profile: Profile
    loss_down: float = 0.0
    loss_up: float = 0.0
    dscp_rewrite: bool = False
    down_mbit: float = 0.0
    up_mbit: float = 0.0


class Lab:
    """Emulated sites behind a shaping router. ``with Lab({"a": PROFILES["adsl"]}) as lab:``."""

    def __init__(
        self, sites: dict[str, Profile] | dict[str, Profile | str], lab_id: str | None = None
    ):
        """``sites`` maps a site name to a ``Profile`` (or a profile name / custom text)."""
        if not sites:
            raise ConfigError("a lab needs at least one site")
        if len(sites) > MAX_SITES:
            raise ConfigError(f"a lab holds at most {MAX_SITES} sites, got {len(sites)}")
        profiles: dict[str, Profile] = {}
        for name, prof in sites.items():
            if not _SITE_RE.match(name) or name in _RESERVED:
                raise ConfigError(
                    f"site name {name!r}: use 1-40 letters, digits, '.', '_' or '-' (not core/router)"
                )
            if isinstance(prof, str):  # a profile name or custom text, as in DEMO_SITES
                prof = parse_profile(prof)
            elif not isinstance(prof, Profile):
                raise ConfigError(
                    f"site {name}: profile must be a Profile, got {type(prof).__name__}"
                )
            profiles[name] = prof
        if lab_id is None:
            lab_id = secrets.token_hex(3)
        if not _ID_RE.match(lab_id):
            raise ConfigError(f"lab id {lab_id!r}: use 1-12 lower-case letters or digits")
        self.lab_id = lab_id
        self.core_ns = f"{NS_PREFIX}{lab_id}-core"
        self.router_ns = f"{NS_PREFIX}{lab_id}-router"
        self.core_ip = f"{SUBNET}.0.1"
        self.router_core_ip = f"{SUBNET}.0.2"
        self._sites: dict[str, _Site] = {
            name: _Site(
                name,
                i,
                prof,
                prof.loss_pct_down,
                prof.loss_pct_up,
                False,
                prof.down_mbit,
                prof.up_mbit,
            )
            for i, (name, prof) in enumerate(profiles.items(), start=1)
        }
        self._procs: list[subprocess.Popen[Any]] = []
        self._delay_pids: list[int] = []
        self._delay_procs: list[subprocess.Popen[bytes]] = []
        self.is_up = False
        self.detached = False
        self._owns = False  # True once this object built (or re-attached to) the lab
        self._holding = False  # this lab holds SIGTERM/SIGHUP -> Terminated (lab.signals)

    # -- names and addresses

    @property
    def sites(self) -> dict[str, Profile]:
        return {n: s.profile for n, s in self._sites.items()}

    def _site(self, site: str) -> _Site:
        try:
            return self._sites[site]
        except KeyError:
            raise ConfigError(
                f"lab {self.lab_id}: no site {site!r} (have {', '.join(self._sites)})"
            ) from None

    def site_ns(self, site: str) -> str:
        return f"{NS_PREFIX}{self.lab_id}-{self._site(site).name}"

    def site_ip(self, site: str) -> str:
        return f"{SUBNET}.{self._site(site).index}.2"

    def site_gw(self, site: str) -> str:
        return f"{SUBNET}.{self._site(site).index}.1"

    def namespaces(self) -> list[str]:
        return [self.core_ns, self.router_ns, *(self.site_ns(s) for s in self._sites)]

    @property
    def state_path(self) -> Path:
        return state_dir() / f"{self.lab_id}.json"

    # -- running things

    def run(
        self, ns: str, argv: list[str], timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside namespace ``ns``; raises ``LabError`` on failure if ``check``."""
        full = ["ip", "netns", "exec", ns, *argv]
        try:
            cp = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"{ns}: {' '.join(argv)} timed out after {timeout:g}s") from e
        if check and cp.returncode != 0:
            err = (cp.stderr or cp.stdout).strip().splitlines()
            raise LabError(
                f"{ns}: {' '.join(argv)} failed (exit {cp.returncode}): {err[-1] if err else ''}"
            )
        return cp

    def popen(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``ns``; the process is killed by ``down()``."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self._procs.append(p)
        return p

    # -- lifecycle

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _write_state(self, status: str) -> None:
        d = state_dir()
        d.mkdir(parents=True, exist_ok=True)
        pid = None if self.detached else os.getpid()
        state = {
            "schema": 1,
            "id": self.lab_id,
            "status": status,
            "owner_pid": pid,
            "owner_start": _proc_start(pid) if pid else None,
            "created_ms": int(time.time() * 1000),
            "core_ns": self.core_ns,
            "core_ip": self.core_ip,
            "router_ns": self.router_ns,
            "namespaces": self.namespaces(),
            "delay_pids": self._delay_pids,
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
                for n, s in self._sites.items()
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

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
                f"lab {self.lab_id} already exists ({', '.join(clash) or self.state_path}); use another id or `netready lab down --id {self.lab_id}`"
            )
        # Claim the id atomically (O_EXCL), so two processes given the same id cannot both
        # build, and write the state first, so cleanup_stale never mistakes us for debris.
        state_dir().mkdir(parents=True, exist_ok=True)
        try:
            with signals.deferred_signals():  # claimed and owned, or neither
                try:
                    os.close(os.open(self.state_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                except FileExistsError:
                    raise LabError(
                        f"lab {self.lab_id} already exists ({self.state_path})"
                    ) from None
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
        r, c = self.router_ns, self.core_ns
        for ns in self.namespaces():
            _sh(["ip", "netns", "add", ns])
            self._ns_base(ns, forward=(ns == r))
        _sh(
            [
                "ip",
                "-n",
                r,
                "link",
                "add",
                "core0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                c,
            ]
        )
        self._addr(c, "eth0", f"{self.core_ip}/24")
        self._addr(r, "core0", f"{self.router_core_ip}/24")
        _sh(["ip", "-n", c, "route", "add", f"{SUBNET}.0.0/16", "via", self.router_core_ip])
        for name, s in self._sites.items():
            ns, ifr = self.site_ns(name), f"s{s.index}"
            _sh(
                [
                    "ip",
                    "-n",
                    r,
                    "link",
                    "add",
                    ifr,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                ]
            )
            self._addr(ns, "eth0", f"{self.site_ip(name)}/24")
            self._addr(r, ifr, f"{self.site_gw(name)}/24")
            _sh(["ip", "-n", ns, "route", "add", "default", "via", self.site_gw(name)])
        self._shaping()
        self._nft_base()
        for name in self._sites:
            self._nft_site(name)
        for name, s in self._sites.items():
            if s.profile.needs_delay_line:
                self._delay_line(name)

    def _ns_base(self, ns: str, forward: bool) -> None:
        sysctls = [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            f"net.ipv4.ip_forward={int(forward)}",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ]
        self.run(ns, ["sysctl", "-q", "-w", *sysctls])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _addr(self, ns: str, dev: str, cidr: str) -> None:
        # One segment per skb (no TSO/GSO aggregates; veth GRO is off by default): the router
        # must queue and drop real 1500-byte packets, not 64 kB aggregates that would
        # overflow a small CPE buffer whole and make shaping bursty.
        _sh(
            ["ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1", "gso_max_size", str(MTU + 14)]
        )
        _sh(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
        _sh(["ip", "-n", ns, "link", "set", dev, "up"])

    # -- shaping: HTB class + byte FIFO per site and direction, in the router

    @staticmethod
    def _limit_bytes(mbit: float, queue_ms: float) -> int:
        return max(int(mbit * 1e6 / 8 * queue_ms / 1000), 2 * (MTU + 14))

    @staticmethod
    def _burst(mbit: float) -> int:
        # HTB needs burst >= rate/HZ; keep it small (a couple of packets) at low rates so
        # the line does not release big bursts, larger at high rates so the timer keeps up.
        return max(int(mbit * 1e6 / 8 / 1000), 2 * (MTU + 14))

    def _class_line(self, verb: str, dev: str, classid: str, mbit: float) -> str:
        rate, burst = f"{mbit * 1000:.0f}kbit", self._burst(mbit)
        return (
            f"class {verb} dev {dev} parent 1: classid {classid} htb rate {rate} ceil {rate} "
            f"burst {burst} cburst {burst} quantum {MTU + 14}"
        )

    def _shaping(self) -> None:
        r = self.router_ns
        batch: list[str] = ["qdisc add dev core0 root handle 1: htb default 0"]
        for s in self._sites.values():
            ifr, idx, q = f"s{s.index}", s.index, s.profile.queue_ms
            batch.append(f"qdisc add dev {ifr} root handle 1: htb default 1")
            for dev, classid, mbit in (
                (ifr, "1:1", s.down_mbit),
                ("core0", f"1:{idx:x}", s.up_mbit),
            ):
                batch.append(self._class_line("add", dev, classid, mbit))
                leaf = classid.split(":")[1]
                batch.append(
                    f"qdisc add dev {dev} parent {classid} handle {int(leaf, 16) + 0x100:x}: bfifo limit {self._limit_bytes(mbit, q)}"
                )
            batch.append(
                f"filter add dev core0 parent 1: protocol ip prio 1 u32 match ip src {SUBNET}.{idx}.0/24 flowid 1:{idx:x}"
            )
        self._tc_batch(r, batch)

    def _tc_batch(self, ns: str, lines: list[str]) -> None:
        full = ["ip", "netns", "exec", ns, "tc", "-batch", "-"]
        cp = subprocess.run(
            full, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30
        )
        if cp.returncode != 0:
            raise LabError(
                f"{ns}: tc -batch failed: {cp.stderr.strip().splitlines()[-1] if cp.stderr.strip() else cp.returncode}"
            )

    def set_rate(self, site: str, down_mbit: float, up_mbit: float) -> None:
        """Change a site's shaped rates (Mbit/s); the queue keeps its ``queue_ms`` depth."""
        s = self._site(site)
        for v in (down_mbit, up_mbit):
            if not (0.01 <= v <= 10_000):
                raise ConfigError(f"site {site}: rate {v} Mbit/s must be 0.01..10000")
        q = s.profile.queue_ms
        batch = []
        for dev, classid, mbit in (
            (f"s{s.index}", "1:1", down_mbit),
            ("core0", f"1:{s.index:x}", up_mbit),
        ):
            batch.append(self._class_line("change", dev, classid, mbit))
            leaf = int(classid.split(":")[1], 16) + 0x100
            batch.append(
                f"qdisc change dev {dev} parent {classid} handle {leaf:x}: bfifo limit {self._limit_bytes(mbit, q)}"
            )
        self._tc_batch(self.router_ns, batch)
        s.down_mbit, s.up_mbit = down_mbit, up_mbit
        self._refresh_state()

    # -- nftables: loss and DSCP rewrite, per site and direction, in the router

    def _nft(self, script: str) -> None:
        full = ["ip", "netns", "exec", self.router_ns, "nft", "-f", "-"]
        cp = subprocess.run(full, input=script, capture_output=True, text=True, timeout=30)
        if cp.returncode != 0:
            raise LabError(
                f"{self.router_ns}: nft failed: {cp.stderr.strip().splitlines()[0] if cp.stderr.strip() else cp.returncode}"
            )

    def _nft_base(self) -> None:
        lines = [f"table inet {NFT_TABLE} {{"]
        for s in self._sites.values():
            lines += [f"  chain up_s{s.index} {{ }}", f"  chain down_s{s.index} {{ }}"]
        lines.append("  chain forward {")
        lines.append("    type filter hook forward priority 0; policy accept;")
        for s in self._sites.values():
            lines.append(f'    iifname "s{s.index}" jump up_s{s.index}')
            lines.append(f'    oifname "s{s.index}" jump down_s{s.index}')
        lines += ["  }", "}"]
        self._nft("\n".join(lines) + "\n")

    def _nft_site(self, site: str) -> None:
        s = self._site(site)
        lines = []
        for chain, pct in ((f"up_s{s.index}", s.loss_up), (f"down_s{s.index}", s.loss_down)):
            lines.append(f"flush chain inet {NFT_TABLE} {chain}")
            if s.dscp_rewrite:
                lines.append(f"add rule inet {NFT_TABLE} {chain} ip dscp set cs0")
            n = round(pct * LOSS_SCALE / 100)  # drop n in LOSS_SCALE packets
            if n >= LOSS_SCALE:
                lines.append(f"add rule inet {NFT_TABLE} {chain} counter drop")
            elif n > 0:
                lines.append(
                    f"add rule inet {NFT_TABLE} {chain} numgen random mod {LOSS_SCALE} < {n} counter drop"
                )
        self._nft("\n".join(lines) + "\n")

    def set_loss(self, site: str, down_pct: float = 0, up_pct: float = 0) -> None:
        """Random per-packet loss in percent (0.001 % steps), per direction, in the router."""
        s = self._site(site)
        for v in (down_pct, up_pct):
            if not (0 <= v <= 100):
                raise ConfigError(f"site {site}: loss {v}% must be 0..100")
        s.loss_down, s.loss_up = float(down_pct), float(up_pct)
        self._nft_site(site)
        self._refresh_state()

    def set_dscp_rewrite(self, site: str, on: bool) -> None:
        """Rewrite DSCP to 0 (CS0) on the site's traffic, both directions, like a bleaching ISP."""
        s = self._site(site)
        s.dscp_rewrite = bool(on)
        self._nft_site(site)
        self._refresh_state()

    def _refresh_state(self) -> None:
        if self.is_up and self.state_path.exists():
            self._write_state("up")

    # -- delay line (TUN in the router; see lab/delayline.py)

    def _delay_line(self, site: str) -> None:
        s = self._site(site)
        r, dev, table = self.router_ns, f"d{s.index}", str(100 + s.index)
        _sh(["ip", "-n", r, "tuntap", "add", "mode", "tun", "name", dev])
        # A long TUN queue rides out the moments the (user-space) delay line is descheduled.
        _sh(["ip", "-n", r, "link", "set", dev, "txqueuelen", "10000", "up"])
        self.run(r, ["sysctl", "-q", "-w", f"net.ipv4.conf.{dev}.rp_filter=0"])
        subnet = f"{SUBNET}.{s.index}.0/24"
        _sh(["ip", "-n", r, "route", "add", "default", "dev", dev, "table", table])
        _sh(["ip", "-n", r, "rule", "add", "iif", f"s{s.index}", "lookup", table, "pref", "1000"])
        _sh(
            [
                "ip",
                "-n",
                r,
                "rule",
                "add",
                "iif",
                "core0",
                "to",
                subnet,
                "lookup",
                table,
                "pref",
                "1001",
            ]
        )
        argv = [
            sys.executable,
            "-m",
            "netready.lab.delayline",
            "--dev",
            dev,
            "--site-net",
            subnet,
            "--delay-ms",
            repr(s.profile.delay_ms),
            "--jitter-ms",
            repr(s.profile.jitter_ms),
            *(["--keep-order"] if s.profile.keep_order else []),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = (
            str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
        )
        p = subprocess.Popen(
            ["ip", "netns", "exec", r, *argv],
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._delay_pids.append(p.pid)
        self._delay_procs.append(p)
        # The delay line says "ready" on stderr once it holds the TUN device.
        line = p.stderr.readline() if p.stderr else b""
        if b"ready" not in line:
            raise LabError(
                f"{r}: delay line for site {site} did not start: {line.decode(errors='replace').strip()}"
            )
        if p.stderr:
            p.stderr.close()

    def down(self) -> None:
        """Remove everything this lab built (processes, namespaces, state). Idempotent.

        SIGTERM/SIGINT/SIGHUP that arrive meanwhile are delivered once it is done."""
        try:
            with signals.deferred_signals():
                self._down()
        finally:
            self._release_signals()

    def _down(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)
        self._procs.clear()
        if not self._owns:  # never built: the id may belong to someone else's lab
            return
        _teardown(self.lab_id, self.namespaces(), self._delay_pids)
        for dp in self._delay_procs:  # reap (teardown killed them)
            with contextlib.suppress(subprocess.TimeoutExpired):
                dp.wait(timeout=2)
        self._delay_procs.clear()
        self._delay_pids = []
        self.is_up = False
        _LIVE.discard(self)

    # -- status

    def describe(self) -> dict[str, Any]:
        return load_state(self.lab_id) or {}

    @classmethod
    def from_state(cls, lab_id: str) -> Lab:
        """Re-attach to a running lab (e.g. one started by ``netready lab up``)."""
        st = load_state(lab_id)
        if st is None:
            raise LabError(f"no lab with id {lab_id!r} (no {state_dir() / (lab_id + '.json')})")
        sites = {n: Profile(**v["profile"]) for n, v in st["sites"].items()}
        lab = cls(sites, lab_id)
        for n, v in st["sites"].items():
            s = lab._sites[n]
            s.down_mbit, s.up_mbit = v["down_mbit"], v["up_mbit"]
            s.loss_down, s.loss_up, s.dscp_rewrite = (
                v["loss_pct_down"],
                v["loss_pct_up"],
                v["dscp_rewrite"],
            )
        lab._delay_pids = list(st.get("delay_pids", []))
        lab.is_up = st.get("status") == "up"
        lab.detached = st.get("owner_pid") is None
        lab._owns = True
        return lab


def _teardown(lab_id: str, namespaces: list[str], delay_pids: list[int]) -> None:
    for pid in delay_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for ns in reversed(namespaces):  # sites and router first; core last
        _kill_ns(ns)
    with contextlib.suppress(FileNotFoundError):
        (state_dir() / f"{lab_id}.json").unlink()


def load_state(lab_id: str) -> dict[str, Any] | None:
    path = state_dir() / f"{lab_id}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LabError(f"{path}: unreadable lab state: {e}") from None


def list_labs() -> list[dict[str, Any]]:
    d = state_dir()
    out = []
    if d.is_dir():
        for path in sorted(d.glob("*.json")):
            with contextlib.suppress(LabError):
                st = load_state(path.stem)
                if st is not None:
                    st["alive"] = _owner_alive(st)
                    out.append(st)
    return out


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
