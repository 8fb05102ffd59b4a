"""What each emulated line does to its packets, all of it in the router namespace:

- ``Shaper``: the rate and the CPE buffer, per site and direction. ``s<i>`` (towards the site)
  carries the download rate, ``core0`` (towards the core) one HTB class per site for the
  upload rate; each class drains into a byte FIFO sized from the profile's ``queue_ms``, so
  latency rises under load as on a real CPE buffer. With ``qos=dscp`` the FIFO is a strict
  priority queue by DSCP instead (EF, AF41, the rest; each band its own FIFO).
- ``Nftables``: random loss (``numgen random``) and DSCP bleaching, per site and direction.
- ``DelayLines``: fixed delay and jitter through a user-space delay line on a TUN device
  (``lab/delayline.py``), because this kernel has no netem.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netready.lab.shell import LabError, run_in, script_in, sh
from netready.lab.topology import MTU, SiteLink, Topology

from netready.errors import ConfigError

NFT_TABLE = "netready"
LOSS_SCALE = 100_000  # nft numgen modulus: loss in steps of 0.001 %
#: ``qos=dscp``: the priority bands of the router's queue, highest first (DSCP, name); the
#: last band (everything else) is best effort.
DSCP_BANDS = ((46, "EF"), (34, "AF41"))
#: ... their depth: short, so a priority class that outgrows the line loses, not queues
PRIORITY_QUEUE_MS = 20.0
#: ... the share of the line each band (EF, AF41, best effort) is guaranteed (HTB ``rate``;
#: each may borrow up to the line rate): EF at most a third, as RFC 4594 / LLQ practice has it
BAND_SHARES = (0.3, 0.5, 0.2)
#: ... and the AF41 band holds at least this much: a key frame of a few calls sent back to
#: back (probes/media: an HD key frame is ~19 kB; 240 ms at 0.8 Mbit/s)
VIDEO_BURST_BYTES = 24 * 1024


def _check_rate(site: str, mbit: float) -> None:
    if not (0.01 <= mbit <= 10_000):
        raise ConfigError(f"site {site}: rate {mbit} Mbit/s must be 0.01..10000")


class Shaper:
    """HTB class + byte FIFO per site and direction, on the router's egress each way."""

    def __init__(self, topo: Topology):
        self.topo = topo

    @staticmethod
    def limit_bytes(mbit: float, queue_ms: float) -> int:
        return max(int(mbit * 1e6 / 8 * queue_ms / 1000), 2 * (MTU + 14))

    @staticmethod
    def burst(mbit: float) -> int:
        # HTB needs burst >= rate/HZ; keep it small (a couple of packets) at low rates so
        # the line does not release big bursts, larger at high rates so the timer keeps up.
        return max(int(mbit * 1e6 / 8 / 1000), 2 * (MTU + 14))

    @staticmethod
    def _classes(s: SiteLink, down_mbit: float, up_mbit: float) -> list[tuple[str, str, float]]:
        """(device, HTB class, rate) of the site's download and upload."""
        return [(s.router_if, "1:1", down_mbit), ("core0", f"1:{s.index:x}", up_mbit)]

    def _class_lines(
        self, verb: str, dev: str, classid: str, mbit: float, queue_ms: float, qos: str = "none"
    ) -> list[str]:
        rate, burst = f"{mbit * 1000:.0f}kbit", self.burst(mbit)
        leaf = int(classid.split(":")[1], 16) + 0x100
        lines = [
            f"class {verb} dev {dev} parent 1: classid {classid} htb rate {rate} ceil {rate} "
            f"burst {burst} cburst {burst} quantum {MTU + 14}",
        ]
        if qos == "dscp":
            return lines + self._dscp_lines(verb, dev, classid, leaf, mbit, queue_ms)
        leaf_fifo = (
            f"qdisc {verb} dev {dev} parent {classid} handle {leaf:x}: bfifo limit "
            f"{self.limit_bytes(mbit, queue_ms)}"
        )
        return [*lines, leaf_fifo]

    def _dscp_lines(
        self, verb: str, dev: str, classid: str, leaf: int, mbit: float, queue_ms: float
    ) -> list[str]:
        """A DSCP-aware queue (``qos=dscp``; this kernel has HTB but no ``prio``): the site's
        class gets three HTB children, EF (46), AF41 (34) and the rest, each with its own
        byte FIFO, all with ``ceil`` the line rate and HTB priorities 0, 1, 2. A child under
        its guaranteed rate (``BAND_SHARES`` of the line) is served before any child that
        borrows, and among those the lower priority first: EF waits at most for the packet
        on the wire. The best-effort FIFO keeps ``queue_ms``; the priority ones are short
        (``PRIORITY_QUEUE_MS``). u32 filters on the class match the IPv4 TOS byte (DSCP =
        its top six bits) after the forward hook, so a DSCP the nft chain bleached to 0
        lands in best effort."""
        major, minor = classid.split(":")
        lines = []
        for band, (share, ms) in enumerate(
            zip(BAND_SHARES, self.band_queue_ms(queue_ms), strict=True), start=1
        ):
            child = f"{major}:{self.band_minor(int(minor, 16), band):x}"
            rate, ceil = f"{mbit * 1000 * share:.0f}kbit", f"{mbit * 1000:.0f}kbit"
            burst = self.burst(mbit)
            lines += [
                f"class {verb} dev {dev} parent {classid} classid {child} htb rate {rate} "
                f"ceil {ceil} burst {burst} cburst {burst} quantum {MTU + 14} prio {band - 1}",
                f"qdisc {verb} dev {dev} parent {child} handle {band * 0x1000 + leaf:x}: "
                f"bfifo limit {self.band_limit_bytes(mbit, ms, band)}",
            ]
        if verb == "add":
            for band, (dscp, _name) in enumerate(DSCP_BANDS, start=1):
                lines.append(
                    f"filter add dev {dev} parent {classid} protocol ip prio {band} u32 match "
                    f"ip dsfield {dscp << 2:#04x} 0xfc flowid "
                    f"{major}:{self.band_minor(int(minor, 16), band):x}"
                )
            lines.append(
                f"filter add dev {dev} parent {classid} protocol all prio 9 u32 match u32 0 0 "
                f"flowid {major}:{self.band_minor(int(minor, 16), 3):x}"
            )
        return lines

    @staticmethod
    def band_minor(minor: int, band: int) -> int:
        """HTB minor of band 1..3 (EF, AF41, best effort) under the site class ``minor``."""
        return minor * 0x10 + band

    @staticmethod
    def band_queue_ms(queue_ms: float) -> tuple[float, float, float]:
        """Depth of the EF, AF41 and best-effort FIFOs of a ``qos=dscp`` class, ms."""
        return (min(queue_ms, PRIORITY_QUEUE_MS), min(queue_ms, PRIORITY_QUEUE_MS), queue_ms)

    @classmethod
    def band_limit_bytes(cls, mbit: float, ms: float, band: int) -> int:
        """Bytes of one FIFO: ``ms`` at the rate; the AF41 one holds at least a key frame's
        burst (``VIDEO_BURST_BYTES``), whatever the rate."""
        n = cls.limit_bytes(mbit, ms)
        return max(n, VIDEO_BURST_BYTES) if band == 2 else n

    def build(self) -> None:
        batch = ["qdisc add dev core0 root handle 1: htb default 0"]
        for s in self.topo.sites.values():
            batch.append(f"qdisc add dev {s.router_if} root handle 1: htb default 1")
            if s.profile.qos == "dscp":  # the default class is now inner: classify to it
                batch.append(
                    f"filter add dev {s.router_if} parent 1: protocol all prio 1 u32 match "
                    "u32 0 0 flowid 1:1"
                )
            for dev, classid, mbit in self._classes(s, s.down_mbit, s.up_mbit):
                batch += self._class_lines(
                    "add", dev, classid, mbit, s.profile.queue_ms, s.profile.qos
                )
            batch.append(
                f"filter add dev core0 parent 1: protocol ip prio 1 u32 match ip src "
                f"{s.subnet} flowid 1:{s.index:x}"
            )
        self._tc(batch)

    def set_rate(self, site: str, down_mbit: float, up_mbit: float) -> None:
        """Change a site's shaped rates (Mbit/s); the queue keeps its ``queue_ms`` depth."""
        s = self.topo.site(site)
        _check_rate(site, down_mbit)
        _check_rate(site, up_mbit)
        batch = []
        for dev, classid, mbit in self._classes(s, down_mbit, up_mbit):
            batch += self._class_lines(
                "change", dev, classid, mbit, s.profile.queue_ms, s.profile.qos
            )
        self._tc(batch)
        s.down_mbit, s.up_mbit = down_mbit, up_mbit

    def _tc(self, lines: list[str]) -> None:
        script = "\n".join(lines) + "\n"
        script_in(self.topo.router_ns, ["tc", "-batch", "-"], script, "tc -batch", first_line=False)


class Nftables:
    """Random loss and DSCP rewriting per site and direction: one nft chain each, jumped to
    from the router's ``forward`` hook by interface."""

    def __init__(self, topo: Topology):
        self.topo = topo

    def build(self) -> None:
        sites = self.topo.sites.values()
        lines = [f"table inet {NFT_TABLE} {{"]
        for s in sites:
            lines += [f"  chain up_{s.router_if} {{ }}", f"  chain down_{s.router_if} {{ }}"]
        lines.append("  chain forward {")
        lines.append("    type filter hook forward priority 0; policy accept;")
        for s in sites:
            lines.append(f'    iifname "{s.router_if}" jump up_{s.router_if}')
            lines.append(f'    oifname "{s.router_if}" jump down_{s.router_if}')
        lines += ["  }", "}"]
        self._nft(lines)
        for name in self.topo.sites:
            self.apply(name)

    def apply(self, site: str) -> None:
        """Rewrite the site's two chains from its current loss and DSCP settings."""
        s = self.topo.site(site)
        lines = []
        for chain, pct in ((f"up_{s.router_if}", s.loss_up), (f"down_{s.router_if}", s.loss_down)):
            lines.append(f"flush chain inet {NFT_TABLE} {chain}")
            rule = f"add rule inet {NFT_TABLE} {chain}"
            if s.dscp_rewrite:
                lines.append(f"{rule} ip dscp set cs0")
            n = round(pct * LOSS_SCALE / 100)  # drop n in LOSS_SCALE packets
            if n >= LOSS_SCALE:
                lines.append(f"{rule} counter drop")
            elif n > 0:
                lines.append(f"{rule} numgen random mod {LOSS_SCALE} < {n} counter drop")
        self._nft(lines)

    def set_loss(self, site: str, down_pct: float = 0, up_pct: float = 0) -> None:
        """Random per-packet loss in percent (0.001 % steps), per direction."""
        s = self.topo.site(site)
        for v in (down_pct, up_pct):
            if not (0 <= v <= 100):
                raise ConfigError(f"site {site}: loss {v}% must be 0..100")
        s.loss_down, s.loss_up = float(down_pct), float(up_pct)
        self.apply(site)

    def set_dscp_rewrite(self, site: str, on: bool) -> None:
        """Rewrite DSCP to 0 (CS0) on the site's traffic, both directions."""
        self.topo.site(site).dscp_rewrite = bool(on)
        self.apply(site)

    def _nft(self, lines: list[str]) -> None:
        script = "\n".join(lines) + "\n"
        script_in(self.topo.router_ns, ["nft", "-f", "-"], script, "nft", first_line=True)


class DelayLines:
    """One delay-line process per delayed site, on TUN ``d<i>`` in the router; policy routing
    sends the site's traffic (both directions) through it."""

    def __init__(self, topo: Topology):
        self.topo = topo
        #: pids of the delay lines (in the state file, so another process can kill them)
        self.pids: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        #: SCHED_FIFO for the delay lines (their lateness is error in every tool's truth)
        self.realtime = True
        #: set before ``build`` to read each line's release lateness (``lateness``)
        self.stats_dir: Path | None = None
        self._by_site: dict[str, subprocess.Popen[bytes]] = {}
        #: the scheduling policy the last line started got (``fifo`` or ``other``)
        self.sched = ""

    def build(self) -> None:
        for name, s in self.topo.sites.items():
            if s.profile.needs_delay_line:
                self.start(name)

    def _route_through(self, s: SiteLink, dev: str) -> None:
        r, table = self.topo.router_ns, str(100 + s.index)
        sh(["ip", "-n", r, "tuntap", "add", "mode", "tun", "name", dev])
        # A long TUN queue rides out the moments the (user-space) delay line is descheduled.
        sh(["ip", "-n", r, "link", "set", dev, "txqueuelen", "10000", "up"])
        run_in(r, ["sysctl", "-q", "-w", f"net.ipv4.conf.{dev}.rp_filter=0"])
        sh(["ip", "-n", r, "route", "add", "default", "dev", dev, "table", table])
        rule = ["ip", "-n", r, "rule", "add"]
        sh([*rule, "iif", s.router_if, "lookup", table, "pref", "1000"])
        sh([*rule, "iif", "core0", "to", s.subnet, "lookup", table, "pref", "1001"])

    def start(self, site: str) -> None:
        """The TUN device, its routing, and the delay line process (once it says ``ready``)."""
        s = self.topo.site(site)
        dev = f"d{s.index}"
        self._route_through(s, dev)
        p = s.profile
        argv = [sys.executable, "-m", "netready.lab.delayline", "--dev", dev]
        argv += ["--site-net", s.subnet, "--delay-ms", repr(p.delay_ms)]
        argv += ["--jitter-ms", repr(p.jitter_ms), *(["--keep-order"] if p.keep_order else [])]
        argv += [] if self.realtime else ["--no-realtime"]
        if self.stats_dir is not None:
            argv += ["--stats-file", str(self.stats_dir / f"{dev}.json")]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.topo.router_ns, *argv],
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pids.append(proc.pid)
        self._procs.append(proc)
        self._by_site[site] = proc
        # The delay line says "ready" on stderr once it holds the TUN device.
        line = proc.stderr.readline() if proc.stderr else b""
        if b"ready" not in line:
            raise LabError(
                f"{self.topo.router_ns}: delay line for site {site} did not start: "
                f"{line.decode(errors='replace').strip()}"
            )
        if proc.stderr:
            proc.stderr.close()
        self.sched = line.decode(errors="replace").rpartition("sched=")[2].strip()

    def lateness(self, site: str, timeout_s: float = 2.0) -> dict[str, Any]:
        """How late ``site``'s delay line released packets since the last call (or since it
        started): ``LateStats.summary`` (packets; mean/p50/p95/p99/max us; % over 100 us and
        over 1 ms). Needs ``stats_dir`` set before ``build``."""
        if self.stats_dir is None:
            raise LabError("DelayLines.lateness needs stats_dir set before the lab is built")
        path = self.stats_dir / f"d{self.topo.site(site).index}.json"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.kill(self._by_site[site].pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline:
                raise LabError(f"delay line of site {site} wrote no stats to {path}")
            time.sleep(0.01)
        return dict(json.loads(path.read_text()))

    def reap(self) -> None:
        """Wait for the delay lines the teardown killed; forget them."""
        for p in self._procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        self._by_site.clear()
        self.pids = []
