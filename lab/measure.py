"""Measure what the lab's links really do: TCP goodput per direction and latency under load.

``python -m lab.measure [PROFILE ...] [--seconds 3]`` builds one lab with a site per profile,
then for each site in turn: iperf3 TCP (CUBIC by default, like a practice PC; the host
default here is BBR, which keeps queues short) up and down (server in core, client in site),
ping idle and while iperf3 fills the upload, and prints one table with the expected goodput
(rate x 0.956, the TCP/IP header overhead at 1500-byte MTU) next to the measured one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from netready.lab.netns import PROFILES, Lab, LabError, parse_profile

TCP_EFFICIENCY = 0.956
_ports = itertools.count(5201)


@dataclass
class LinkMeasurement:
    site: str
    profile: str
    down_mbit: float
    up_mbit: float
    down_tcp_mbps: float
    up_tcp_mbps: float
    rtt_idle_ms: float
    rtt_loaded_up_ms: float
    rtt_loaded_down_ms: float


def _iperf3(lab: Lab, site: str, seconds: float, *args: str) -> subprocess.Popen[str]:
    port = next(_ports)
    lab.popen(lab.core_ns, ["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not lab.run(lab.core_ns, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
        if time.monotonic() > deadline:
            raise LabError(f"iperf3 server on port {port} did not start")
        time.sleep(0.05)
    argv = ["iperf3", "-c", lab.core_ip, "-p", str(port), "-t", f"{seconds:g}", "-J", *args]
    return lab.popen(lab.site_ns(site), argv, stdout=subprocess.PIPE, text=True)


def _goodput(p: subprocess.Popen[str]) -> float:
    out, _ = p.communicate(timeout=120)
    j = json.loads(out)
    if "error" in j:
        raise LabError(f"iperf3: {j['error']}")
    return float(j["end"]["sum_received"]["bits_per_second"]) / 1e6


def _ping(lab: Lab, site: str, count: int) -> float:
    argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "3", lab.core_ip]
    out = lab.run(lab.site_ns(site), argv, check=False).stdout
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    return statistics.median(rtts) if rtts else float("nan")


def measure_site(lab: Lab, site: str, seconds: float = 3.0, cc: str = "cubic") -> LinkMeasurement:
    prof = lab.sites[site]
    idle = _ping(lab, site, 5)
    results = {}
    loaded = {}
    for direction, flag in (("up", ()), ("down", ("-R",))):
        p = _iperf3(lab, site, seconds, "-C", cc, *flag)
        time.sleep(min(1.0, seconds / 3))
        loaded[direction] = _ping(lab, site, max(3, int((seconds - 1.5) / 0.2)))
        results[direction] = _goodput(p)
    return LinkMeasurement(
        site, prof.name, prof.down_mbit, prof.up_mbit, results["down"], results["up"],
        idle, loaded["up"], loaded["down"],
    )  # fmt: skip


def format_table(rows: list[LinkMeasurement]) -> str:
    head = (
        f"{'profile':<14} {'down':>6} {'exp':>7} {'meas':>7} {'ratio':>6} | "
        f"{'up':>6} {'exp':>7} {'meas':>7} {'ratio':>6} | {'rtt idle':>8} {'load up':>8} {'load dn':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ed, eu = r.down_mbit * TCP_EFFICIENCY, r.up_mbit * TCP_EFFICIENCY
        lines.append(
            f"{r.profile:<14} {r.down_mbit:>6g} {ed:>7.2f} {r.down_tcp_mbps:>7.2f} {r.down_tcp_mbps / ed:>6.3f} | "
            f"{r.up_mbit:>6g} {eu:>7.2f} {r.up_tcp_mbps:>7.2f} {r.up_tcp_mbps / eu:>6.3f} | "
            f"{r.rtt_idle_ms:>8.2f} {r.rtt_loaded_up_ms:>8.1f} {r.rtt_loaded_down_ms:>8.1f}"
        )
    lines.append(
        "rates in Mbit/s; exp = shaped rate x 0.956 (TCP goodput at 1500 MTU); "
        "rtt = median ping site->core, ms (idle / while iperf3 TCP fills up / down)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure the lab's shaped links with iperf3 and ping.")
    ap.add_argument("profiles", nargs="*", default=list(PROFILES), help="profile names or custom")
    ap.add_argument("--seconds", type=float, default=3.0, help="iperf3 run per direction")
    ap.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    ap.add_argument(
        "--cc", default="cubic", help="TCP congestion control for iperf3 (-C); cubic fills buffers"
    )
    a = ap.parse_args(argv)
    sites = {f"m{i}": parse_profile(t) for i, t in enumerate(a.profiles, start=1)}
    rows = []
    with Lab(sites) as lab:
        for site in sites:
            print(f"measuring {sites[site].name} ...", file=sys.stderr, flush=True)
            rows.append(measure_site(lab, site, a.seconds, a.cc))
    if a.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
