"""``make demo``: the main job end to end on the embedded store (no InfluxDB needed).

    python -m netready.lab.demo [--quick] [--loopback]

With root and network namespaces: the link lab brings up four emulated sites (ADSL, FTTC,
FTTP practices and a hospital on a leased line) behind a shaping router; the reflector, media
responder and speed endpoint run in the core namespace; each site has an emulated router on
its side of the link (snmpsim serving a real recording of matching equipment, ``lab/routers``;
the ADSL site's contradicts its declaration); the site agent runs once inside each site's
namespace, so every packet crosses the emulated access line and the router is polled like any
other; then the estate report is printed with what each router reported, and an HTML copy
written. Without root (or with ``--loopback``) it falls back to one site on loopback and says
so. ``--quick`` leaves out the speed test.

Everything lands in ``demo-out/`` (inventory, spool, servers.log, report.html). The lab is
always torn down.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import yaml
from netready.lab import routers
from netready.lab.demo_sites import DEMO_ROUTERS, DEMO_SITES
from netready.lab.netns import PROFILES, Lab, LabError, Profile, check_available, parse_profile

from netready.errors import NetreadyError
from netready.spool import Spool

OUT = Path("demo-out")
#: lab site name -> (ODS code, name, type, tech, down Mbit/s, up Mbit/s, planned clinics)
DEMO_ODS = {
    "adsl-practice": ("Y90001", "Riverside Surgery (ADSL2+)", "gp_practice", "adsl", 7, 0.8, 2),
    "fttc-practice": ("Y90002", "Moorside Medical Centre (FTTC)", "gp_practice", "fttc", 36, 9, 3),
    "fttp-practice": ("Y90003", "Castle Lane Practice (FTTP)", "gp_practice", "fttp", 150, 30, 4),
    "hospital": (
        "RXZ01",
        "St Cuthbert's Hospital (leased line)",
        "hospital",
        "ethernet",
        100,
        100,
        12,
    ),
}
TOKEN_ENV = "NETREADY_DEMO_TOKEN"
#: where the lab's central servers listen (in the core namespace, or on loopback)
RTT_PORT, MEDIA_PORT, SPEED_PORT = 8620, 8630, 8640
LAB_ALLOW = "10.0.0.0/8"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the inventory


def site_targets(core: str, quick: bool) -> list[dict[str, object]]:
    """The probes each demo site runs against the central servers at ``core``."""
    targets: list[dict[str, object]] = [
        {
            "name": "core-reflector",
            "probe": "rtt",
            "address": f"{core}:{RTT_PORT}",
            "params": {"duration_s": 45, "rate_pps": 50},  # three 15 s quality windows
        },
        {
            "name": "core-media",
            "probe": "media",
            "address": f"{core}:{MEDIA_PORT}",
            "params": {
                "profile": "hd",
                "find_capacity": True,
                "step_duration_s": 4,
                "max_calls": 16,
                "budget_s": 60,
            },
        },
    ]
    if not quick:
        targets.append(
            {
                "name": "core-speed",
                "probe": "throughput",
                "address": f"http://{core}:{SPEED_PORT}",
                "params": {"token": f"env:{TOKEN_ENV}", "direction": "both", "max_seconds": 8},
            }
        )
    return targets


def router_entry(name: str, host: str, port: int) -> dict[str, object]:
    """The site's emulated router as the inventory declares a real one (SNMP v2c)."""
    return {
        "host": host,
        "vendor": DEMO_ROUTERS[name].vendor,
        "snmp": {
            "version": "2c",
            "community": f"env:{routers.COMMUNITY_ENV}",
            "port": port,
            "timeout_s": 2,
            "retries": 1,
        },
    }


def site_entry(
    name: str, core: str, quick: bool, router_at: tuple[str, int] | None = None
) -> dict[str, object]:
    ods, title, typ, tech, down, up, clinics = DEMO_ODS[name]
    host, port = router_at or (routers.ROUTER_IP, routers.SNMP_PORT)
    return {
        "ods": ods,
        "name": title,
        "type": typ,
        "icb": "QHM",
        "link": {"tech": tech, "down_mbps": down, "up_mbps": up, "provider": "netready lab"},
        "planned_clinics": clinics,
        # the demo runs at any hour: treat the whole day as clinic hours
        "clinic_hours": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "23:59:59",
        },
        "targets": site_targets(core, quick),
        "router": router_entry(name, host, port),
    }


def write_inventory(
    sites: list[str],
    core: str,
    quick: bool,
    out: Path | None = None,
    router_at: dict[str, tuple[str, int]] | None = None,
) -> Path:
    """The demo's inventory in ``out`` (default ``OUT``); ``router_at`` overrides where a
    site's router answers (default: ``routers.ROUTER_IP`` port 161 in the site's namespace)."""
    out = out or OUT
    out.mkdir(exist_ok=True)
    at = router_at or {}
    inv = {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {"spool_path": str((out / "spool.db").resolve())},
        "sites": [site_entry(s, core, quick, at.get(s)) for s in sites],
    }
    path = out / "inventory.yaml"
    path.write_text("# written by `make demo`\n" + yaml.safe_dump(inv, sort_keys=False))
    return path


# --------------------------------------------------------------------------- commands


def netready_argv(*args: str) -> list[str]:
    """The ``netready`` command with this interpreter (works in a namespace, no PATH needed)."""
    return [sys.executable, "-m", "netready.cli", *args]


def site_spool(ods: str) -> Path:
    """Each site's agent keeps its own spool, as each practice's box does (one writer per
    spool: the four agents of the rtt step run at the same time)."""
    return OUT / "sites" / f"{ods}.db"


def agent_argv(inv: Path, ods: str, only: str | None = None) -> list[str]:
    """One agent run (``--once``) for site ``ods``; ``only``: a comma-separated probe list."""
    script = Path(sys.executable).with_name("netready-agent")  # the installed entry point
    if not script.exists():
        raise LabError(f"{script} not found: run `make venv` (it installs netready-agent)")
    argv = [str(script), "--inventory", str(inv), "--site", ods, "--once", "--force"]
    argv += ["--spool", str(site_spool(ods)), "--state-dir", str(OUT / "state")]
    return argv + ["--log-format", "text"] + (["--only", only] if only else [])


def gather(sites: Iterable[str]) -> int:
    """Copy every site's points into the demo's embedded store, the inventory's spool, which
    the report reads (for a real estate, shipping to the central store does this)."""
    n = 0
    with Spool(OUT / "spool.db", ship=False, embedded=True) as central:
        for ods in sites:
            path = site_spool(ods)
            if path.exists():
                with Spool(path, readonly=True) as sp:
                    n += central.enqueue(sp.records())
    return n


def reflector_argv(host: str, allow: str | None) -> list[str]:
    """The TWAMP-light reflector, with the media responder beside it."""
    argv = ["reflector", "--listen", f"{host}:{RTT_PORT}", "--media", f"{host}:{MEDIA_PORT}"]
    return netready_argv(*argv, *(["--allow", allow] if allow else []))


def speed_argv(host: str) -> list[str]:
    return netready_argv(
        "serve",
        "--listen",
        f"{host}:{SPEED_PORT}",
        "--token",
        f"env:{TOKEN_ENV}",
        "--max-tests",
        "2",
        "--allow-plain-http",  # the lab is a closed network of our own
    )


def report(inv: Path) -> int:
    """The estate report on stdout and as HTML; returns the report's exit code."""
    html = OUT / "report.html"
    base = netready_argv("report", "--inventory", str(inv), "--since", "1d")
    subprocess.run([*base, "--format", "html", "--out", str(html)], check=False)
    rc = subprocess.run(base, check=False).returncode
    say(f"\nHTML report: {html.resolve()}")
    return rc


def fresh_spool() -> None:
    """A new demo starts from an empty embedded store and a token for the speed endpoint."""
    os.environ.setdefault(TOKEN_ENV, "demo-" + os.urandom(8).hex())
    os.environ.setdefault(routers.COMMUNITY_ENV, routers.COMMUNITY)
    for f in [*OUT.glob("spool.db*"), *OUT.glob("sites/*.db*")]:
        f.unlink()


# --------------------------------------------------------------------------- the lab demo


def lab_possible() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        check_available()
    except LabError as e:
        say(f"lab unavailable: {e}")
        return False
    return True


def demo_profiles() -> dict[str, Profile]:
    return {n: PROFILES.get(p) or parse_profile(p) for n, p in DEMO_SITES.items()}


def start_servers(lab: Lab, quick: bool, logs: IO[Any]) -> None:
    """Reflector + media responder (and the speed endpoint) in the core namespace."""
    say(f"central servers (reflector, media responder, speed endpoint) log to {logs.name}")
    lab.popen(lab.core_ns, reflector_argv(lab.core_ip, LAB_ALLOW), stdout=logs, stderr=logs)
    if not quick:
        lab.popen(lab.core_ns, speed_argv(lab.core_ip), stdout=logs, stderr=logs)
    time.sleep(2.0)


def start_routers(lab: Lab, sites: Iterable[str], logs: IO[Any]) -> None:
    """Each site's emulated router: snmpsim in the site's namespace at ``routers.ROUTER_IP``."""
    procs = []
    for name in sites:
        ns, r = lab.site_ns(name), DEMO_ROUTERS[name]
        say(f"router of {name}: {r.note} ({r.recording}.snmprec at {routers.ROUTER_IP})")
        routers.add_lan_address(ns)

        def popen(argv: list[str], _ns: str = ns, **kw: Any) -> subprocess.Popen[Any]:
            return lab.popen(_ns, argv, **kw)

        proc = routers.start(r, OUT / "routers", routers.ROUTER_IP, routers.SNMP_PORT, popen, logs)
        procs.append((ns, proc))
    for ns, proc in procs:
        routers.wait_answering(routers.ROUTER_IP, routers.SNMP_PORT, ns, proc, Path(logs.name))


def router_rows(sites: Iterable[str]) -> list[dict[str, Any]]:
    """What each site's router told its agent (the newest dsl_line, else the WAN if_traffic
    record), beside what the inventory declares, from the demo's embedded store."""
    rows = []
    with Spool(OUT / "spool.db", readonly=True) as sp:
        recs = [r for r in sp.records() if r.measurement in ("dsl_line", "if_traffic") and r.ok]
    for name in sites:
        ods, tech = DEMO_ODS[name][0], DEMO_ODS[name][3]
        mine = [r for r in recs if r.tags.get("site") == ods]
        line = next((r for r in reversed(mine) if r.measurement == "dsl_line"), None)
        wan = next((r for r in reversed(mine) if r.fields.get("is_wan")), None)
        best = line or wan
        f = best.fields if best else {}
        rows.append(
            {
                "ods": ods,
                "declared": tech,
                "router": DEMO_ROUTERS[name].recording,
                "detected": (best.tags.get("detected_tech") if best else None) or "?",
                "interface": (best.tags.get("ifname") if best else None) or "?",
                "sync_kbps": (f.get("sync_down_kbps"), f.get("sync_up_kbps")),
                "snr_db": (f.get("snr_margin_down_db"), f.get("snr_margin_up_db")),
                "atten_db": (f.get("atten_down_db"), f.get("atten_up_db")),
                "mismatch": f.get("tech_mismatch"),
            }
        )
    return rows


def _pair(v: tuple[Any, Any], digits: int = 0) -> str:
    return " / ".join("—" if x is None else f"{x:,.{digits}f}" for x in v)


def print_routers(sites: Iterable[str]) -> None:
    """The routers' answers under the report: detected technology and DSL line figures."""
    rows = router_rows(sites)
    cols = ("site", "declared", "router (real recording)", "detected", "WAN / line",
            "sync kbit/s dn/up", "SNR margin dB", "atten dB", "contradicts")  # fmt: skip
    body = [
        (
            r["ods"],
            r["declared"],
            r["router"],
            r["detected"],
            r["interface"],
            _pair(r["sync_kbps"]),
            _pair(r["snr_db"], 1),
            _pair(r["atten_db"], 1),
            {True: "YES", False: "no"}.get(r["mismatch"], "?"),
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *body)]
    print("\nWhat each site's router reported (collector snmp):")
    for line in (cols, *body):
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())


def in_site(lab: Lab, site: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", lab.site_ns(site), *argv]


def light_tests(lab: Lab, inv: Path, sites: Iterable[str]) -> None:
    """Path quality (rtt) and the router poll (snmp) at every site at once: light, so the
    sites do not disturb each other."""
    say("\n== rtt probe and router poll at all four sites at once (45 s: three 15 s windows each)")
    procs = [
        subprocess.Popen(in_site(lab, n, agent_argv(inv, DEMO_ODS[n][0], "rtt,snmp")))
        for n in sites
    ]
    for p in procs:
        p.wait(timeout=300)


def heavy_tests(lab: Lab, inv: Path, sites: Iterable[str]) -> None:
    """Video-call capacity and the speed test one site at a time, so the sites do not compete
    for this machine's two cores."""
    for name in sites:
        ods = DEMO_ODS[name][0]
        say(
            f"\n== video-call capacity and speed test at {ods} {DEMO_ODS[name][1]} "
            f"(namespace {lab.site_ns(name)})"
        )
        argv = in_site(lab, name, agent_argv(inv, ods, "media,throughput"))
        subprocess.run(argv, check=False, timeout=600)


def run_lab(quick: bool) -> int:
    sites = demo_profiles()
    fresh_spool()
    OUT.mkdir(exist_ok=True)
    with Lab(sites) as lab, open(OUT / "servers.log", "w") as logs:
        rates = (f"{n} ({p.name} {p.down_mbit:g}/{p.up_mbit:g} Mbit/s)" for n, p in sites.items())
        say(f"lab up: {', '.join(rates)}")
        start_servers(lab, quick, logs)
        start_routers(lab, sites, logs)
        inv = write_inventory(list(sites), lab.core_ip, quick)
        light_tests(lab, inv, sites)
        heavy_tests(lab, inv, sites)
    gather(DEMO_ODS[n][0] for n in sites)
    rc = report(inv)
    print_routers(sites)
    print_explore(inv, sites)
    return rc


def explore_commands(inv: Path, sites: Iterable[str]) -> list[str]:
    """The exact commands to explore what the demo measured, as a person would type them
    from here (the demo's inventory names the spool the report reads)."""
    exe = Path(sys.executable).parent / "netready"
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    base = f"{shlex.quote(str(exe))} report --inventory {shlex.quote(str(inv))} --since 1d"
    first = DEMO_ODS[next(iter(sites))][0]
    return [
        base,
        f"{base} --site {first}",
        f"{base} --format json",
        f"{base} --format html --out {shlex.quote(str(OUT / 'report.html'))}",
        f"{shlex.quote(str(exe))} spool stats --inventory {shlex.quote(str(inv))}",
        f"export NETREADY_INVENTORY={shlex.quote(str(inv))}   # then no --inventory is needed",
    ]


def print_explore(inv: Path, sites: Iterable[str]) -> None:
    print("\nExplore the results (the report reads the demo's store, named in its inventory):")
    for cmd in explore_commands(inv, sites):
        print(f"  {cmd}")


# --------------------------------------------------------------------------- no lab


def run_loopback() -> int:
    say(
        "no root or no network namespaces: falling back to one site on loopback "
        "(no emulated access line; figures show this machine, not a practice link)"
    )
    fresh_spool()
    OUT.mkdir(exist_ok=True)
    name = "fttc-practice"
    port = free_udp_port()
    with open(OUT / "servers.log", "w") as logs:
        server = subprocess.Popen(reflector_argv("127.0.0.1", None))
        router = routers.start(
            DEMO_ROUTERS[name], OUT / "routers", "127.0.0.1", port, subprocess.Popen, logs
        )
        try:
            routers.wait_answering("127.0.0.1", port, None, router, OUT / "servers.log")
            inv = write_inventory([name], "127.0.0.1", True, router_at={name: ("127.0.0.1", port)})
            # one site: no need to separate light and heavy tests
            ods = DEMO_ODS[name][0]
            subprocess.run(agent_argv(inv, ods), check=False, timeout=600)
        finally:
            for p in (server, router):
                p.terminate()
                p.wait(10)
    gather([ods])
    rc = report(inv)
    print_routers([name])
    print_explore(inv, [name])
    return rc


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    try:
        rc = run_lab(quick) if lab_possible() and "--loopback" not in args else run_loopback()
    except NetreadyError as e:
        say(f"Error: {e}")
        sys.exit(e.exit_code)
    # a NOT READY site is the demo's point, not a failure of the demo
    sys.exit(0 if rc in (0, 3) else rc)


if __name__ == "__main__":
    main()
