"""``make demo``: the main job end to end on the embedded store (no InfluxDB needed).

With root and network namespaces: the link lab brings up four emulated sites (ADSL, FTTC,
FTTP practices and a hospital on a leased line) behind a shaping router; the reflector, media
responder and speed endpoint run in the core namespace; the site agent runs once inside each
site's namespace, so every packet crosses the emulated access line; then the estate report is
printed and an HTML copy written. Without root it falls back to one site on loopback and says so.

Everything lands in ``demo-out/`` (inventory, spool, report.html). The lab is always torn down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

OUT = Path("demo-out")
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


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def site_entry(name: str, core: str, quick: bool) -> dict[str, object]:
    ods, title, typ, tech, down, up, clinics = DEMO_ODS[name]
    targets: list[dict[str, object]] = [
        {
            "name": "core-reflector",
            "probe": "rtt",
            "address": f"{core}:8620",
            "params": {"duration_s": 45, "rate_pps": 50},
        },  # three 15 s quality windows
        {
            "name": "core-media",
            "probe": "media",
            "address": f"{core}:8630",
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
                "address": f"http://{core}:8640",
                "params": {"token": f"env:{TOKEN_ENV}", "direction": "both", "max_seconds": 8},
            }
        )
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
        "targets": targets,
    }


def write_inventory(sites: list[str], core: str, quick: bool) -> Path:
    OUT.mkdir(exist_ok=True)
    inv = {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {"spool_path": str((OUT / "spool.db").resolve())},
        "sites": [site_entry(s, core, quick) for s in sites],
    }
    path = OUT / "inventory.yaml"
    path.write_text("# written by `make demo`\n" + yaml.safe_dump(inv, sort_keys=False))
    return path


def agent_argv(inv: Path, ods: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "netready.agent",
        "--inventory",
        str(inv),
        "--site",
        ods,
        "--once",
        "--force",
        "--log-format",
        "text",
        "--state-dir",
        str(OUT / "state"),
    ]


def report(inv: Path) -> int:
    html = OUT / "report.html"
    base = [
        sys.executable,
        "-m",
        "netready.cli",
        "report",
        "--inventory",
        str(inv),
        "--since",
        "1d",
    ]
    subprocess.run([*base, "--format", "html", "--out", str(html)], check=False)
    rc = subprocess.run(base, check=False).returncode
    say(f"\nHTML report: {html.resolve()}")
    return rc


def lab_possible() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        from netready.lab.netns import check_available

        check_available()
    except Exception as e:
        say(f"lab unavailable: {e}")
        return False
    return True


def run_lab(quick: bool) -> int:
    from netready.lab.demo_sites import DEMO_SITES
    from netready.lab.netns import PROFILES, Lab, parse_profile

    sites = {n: PROFILES.get(p) or parse_profile(p) for n, p in DEMO_SITES.items()}
    os.environ.setdefault(TOKEN_ENV, "demo-" + os.urandom(8).hex())
    for f in OUT.glob("spool.db*"):
        f.unlink()
    with Lab(sites) as lab:
        say(
            f"lab up: {', '.join(f'{n} ({p.name} {p.down_mbit:g}/{p.up_mbit:g} Mbit/s)' for n, p in sites.items())}"
        )
        allow = "10.0.0.0/8"
        py = sys.executable
        OUT.mkdir(exist_ok=True)
        logs = open(OUT / "servers.log", "w")  # noqa: SIM115 - closed with the lab
        say(
            f"central servers (reflector, media responder, speed endpoint) log to {OUT / 'servers.log'}"
        )
        lab.popen(
            lab.core_ns,
            [
                py,
                "-m",
                "netready.cli",
                "reflector",
                "--listen",
                f"{lab.core_ip}:8620",
                "--allow",
                allow,
                "--media",
                f"{lab.core_ip}:8630",
            ],
            stdout=logs,
            stderr=logs,
        )
        if not quick:
            lab.popen(
                lab.core_ns,
                [
                    py,
                    "-m",
                    "netready.cli",
                    "serve",
                    "--listen",
                    f"{lab.core_ip}:8640",
                    "--token",
                    f"env:{TOKEN_ENV}",
                    "--max-tests",
                    "2",
                    "--allow-plain-http",  # the lab is a closed network of our own
                ],
                stdout=logs,
                stderr=logs,
            )
        time.sleep(2.0)
        inv = write_inventory(list(sites), lab.core_ip, quick)
        # Path quality (light) at every site at once, then the heavy tests one site at a time
        # so the sites do not compete for this machine's two cores.
        say("\n== rtt probe at all four sites at once (45 s: three 15 s windows each)")
        light = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    lab.site_ns(n),
                    *agent_argv(inv, DEMO_ODS[n][0]),
                    "--only",
                    "rtt",
                ]
            )
            for n in sites
        ]
        for p in light:
            p.wait(timeout=300)
        for name in sites:
            ods = DEMO_ODS[name][0]
            say(
                f"\n== video-call capacity and speed test at {ods} {DEMO_ODS[name][1]} "
                f"(namespace {lab.site_ns(name)})"
            )
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    lab.site_ns(name),
                    *agent_argv(inv, ods),
                    "--only",
                    "media,throughput",
                ],
                check=False,
                timeout=600,
            )
    return report(inv)


def run_loopback() -> int:
    say(
        "no root or no network namespaces: falling back to one site on loopback "
        "(no emulated access line; figures show this machine, not a practice link)"
    )
    os.environ.setdefault(TOKEN_ENV, "demo-" + os.urandom(8).hex())
    for f in OUT.glob("spool.db*"):
        f.unlink()
    py = sys.executable
    procs = [
        subprocess.Popen(
            [
                py,
                "-m",
                "netready.cli",
                "reflector",
                "--listen",
                "127.0.0.1:8620",
                "--media",
                "127.0.0.1:8630",
            ]
        )
    ]
    try:
        time.sleep(1.5)
        inv = write_inventory(["fttc-practice"], "127.0.0.1", quick=True)
        subprocess.run(agent_argv(inv, DEMO_ODS["fttc-practice"][0]), check=False, timeout=600)
        # (loopback: one site, so no need to separate light and heavy tests)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return report(inv)


def main() -> None:
    quick = "--quick" in sys.argv
    rc = run_lab(quick) if lab_possible() and "--loopback" not in sys.argv else run_loopback()
    # a NOT READY site is the demo's point, not a failure of the demo
    sys.exit(0 if rc in (0, 3) else rc)


if __name__ == "__main__":
    main()
