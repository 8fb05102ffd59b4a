"""The link lab, on real network namespaces, veths, HTB qdiscs, nftables and iperf3 (as root).

Every lab here gets a random id; the fixture tears it down even when a test fails, and the
last test checks that no namespace of ours is left behind.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from netready.lab import netns
from netready.lab.demo_sites import DEMO_SITES
from netready.lab.netns import PROFILES, Lab, LabError, parse_profile
from netready.lab.shaping import DelayLines

from netready.cli.lab import lab as lab_cli
from netready.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TCP_EFFICIENCY = 0.956  # TCP goodput / tbf-or-htb rate at 1500-byte MTU (docs/design.md)

pytestmark = pytest.mark.root


def ours(lab_id: str) -> list[str]:
    return [ns for ns in netns.list_netns() if ns.startswith(f"nr-{lab_id}-")]


def state(lab_id: str) -> dict[str, Any]:
    st = netns.load_state(lab_id)
    assert st is not None, f"no state file for lab {lab_id}"
    return st


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def root_links() -> set[str]:
    """Root-namespace links with the names the lab uses inside its namespaces (should be none).

    Other engineers' tests may add their own links meanwhile, so only our names count.
    """
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    return {n for n in names if re.fullmatch(r"core0|[sd]\d+", n)}


def root_nft_tables() -> str:
    out = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in out.splitlines() if "netready" in line)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    sites = {
        "adsl": PROFILES["adsl"],
        "fttc": PROFILES["fttc40"],
        "lossy": parse_profile("down=50,up=50"),
        "dscp": parse_profile("down=50,up=50"),
        "delay": parse_profile("down=50,up=50,delay_ms=15"),
        "jitter": parse_profile("down=50,up=50,delay_ms=15,jitter_ms=5"),
        "jitord": parse_profile("down=50,up=50,delay_ms=15,jitter_ms=5,keep_order=1"),
    }
    before_links, before_nft = root_links(), root_nft_tables()
    lab = Lab(sites)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
    assert ours(lab.lab_id) == []
    assert root_links() == before_links
    assert root_nft_tables() == before_nft


def wait_listening(lab: Lab, ns: str, port: int, proto: str = "t") -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = lab.run(ns, ["ss", f"-Hl{proto}n", f"sport = :{port}"]).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} in {ns}")


_ports = itertools.count(5301)


def iperf3_server(lab: Lab) -> int:
    """A one-off iperf3 server in core on a fresh port (3.12 trips on back-to-back tests)."""
    port = next(_ports)
    lab.popen(lab.core_ns, ["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    wait_listening(lab, lab.core_ns, port)
    return port


# --------------------------------------------------------------------------- profiles


def test_parse_profile_named_custom_and_errors() -> None:
    assert parse_profile("adsl") is PROFILES["adsl"]
    p = parse_profile("down=20,up=5,queue_ms=200,loss_up=1")
    assert (p.down_mbit, p.up_mbit, p.queue_ms, p.loss_pct_up, p.loss_pct_down) == (
        20,
        5,
        200,
        1,
        0,
    )
    assert p.tech == "unknown"
    b = parse_profile("base=fttc40,loss=2,delay_ms=10")
    assert (b.down_mbit, b.up_mbit, b.tech) == (36, 9, "fttc")
    assert (b.loss_pct_down, b.loss_pct_up, b.delay_ms) == (2, 2, 10)
    assert not b.keep_order and parse_profile("base=adsl,jitter_ms=3,keep_order=1").keep_order
    odd = parse_profile("down=0.123456789,up=1,jitter_ms=2.5,keep_order=yes,loss_up=0.0125")
    for p in [*PROFILES.values(), odd]:
        assert parse_profile(netns.profile_to_text(p)) == p
    for bad in (
        "vdsl9",
        "down=20",
        "down=x,up=1",
        "down=20,up=5,colour=red",
        "down=0,up=1",
        "down=5,up=5,loss=101",
        "down=5,up=5,tech=isdn",
        "down=5,up=5,keep_order=maybe",
    ):
        with pytest.raises(ConfigError):
            parse_profile(bad)
    # The brief's rates; copper carries deeper CPE buffers than fibre.
    want = {
        "adsl": (7, 0.8),
        "fttc40": (36, 9),
        "fttc80": (70, 18),
        "fttp": (150, 30),
        "ethernet": (100, 100),
    }
    for name, rates in want.items():
        assert (PROFILES[name].down_mbit, PROFILES[name].up_mbit) == rates
    assert PROFILES["adsl"].queue_ms > PROFILES["fttc40"].queue_ms > PROFILES["fttp"].queue_ms
    for prof in DEMO_SITES.values():
        parse_profile(prof)
    assert {parse_profile(p).tech for p in DEMO_SITES.values()} == {
        "adsl",
        "fttc",
        "fttp",
        "ethernet",
    }


def test_bad_site_names_and_ids_are_config_errors() -> None:
    for sites, lab_id in (
        ({"core": PROFILES["adsl"]}, None),
        ({"a b": PROFILES["adsl"]}, None),
        ({}, None),
        ({"a": PROFILES["adsl"]}, "Bad-ID"),
    ):
        with pytest.raises(ConfigError):
            Lab(sites, lab_id)


# --------------------------------------------------------------------------- topology


def test_topology_addresses_and_isolation(lab: Lab) -> None:
    assert lab.core_ns == f"nr-{lab.lab_id}-core" and lab.router_ns == f"nr-{lab.lab_id}-router"
    present = set(netns.list_netns())
    assert set(lab.namespaces()) <= present
    for site in lab.sites:
        ns = lab.site_ns(site)
        assert lab.site_ip(site) in lab.run(ns, ["ip", "-4", "-o", "addr"]).stdout
        assert "lo" in lab.run(ns, ["ip", "-o", "link", "show", "up"]).stdout
    # core reaches every site through the router (two hops)
    out = lab.run(lab.core_ns, ["ping", "-c", "1", "-W", "2", lab.site_ip("fttc")]).stdout
    assert "ttl=63" in out
    # nothing routes out of the lab: no default route in core or router
    for ns in (lab.core_ns, lab.router_ns):
        cp = lab.run(ns, ["ip", "route", "get", "1.1.1.1"], check=False)
        assert cp.returncode != 0 and "unreachable" in cp.stderr.lower()
    # shaping lives in the router, never on an endpoint's own interface
    assert "htb" in lab.run(lab.router_ns, ["tc", "qdisc", "show", "dev", "core0"]).stdout
    for ns in (lab.core_ns, lab.site_ns("adsl")):
        assert "htb" not in lab.run(ns, ["tc", "qdisc", "show"]).stdout
    assert "table inet netready" in lab.run(lab.router_ns, ["nft", "list", "tables"]).stdout
    st = netns.load_state(lab.lab_id)
    assert (
        st is not None and st["status"] == "up" and st["sites"]["adsl"]["ip"] == lab.site_ip("adsl")
    )


# --------------------------------------------------------------------------- shaping


def iperf3_client(lab: Lab, site: str, *args: str) -> subprocess.Popen[str]:
    """Start an iperf3 client in ``site`` against a fresh server in core (JSON on stdout)."""
    port = iperf3_server(lab)
    argv = ["iperf3", "-c", lab.core_ip, "-p", str(port), "-J", *args]
    return lab.popen(lab.site_ns(site), argv, stdout=subprocess.PIPE, text=True)


def iperf3_result(p: subprocess.Popen[str], lab: Lab | None = None, site: str = "") -> dict:
    """The ``end`` section of an iperf3 run. Given ``lab`` and ``site``, a UDP run whose
    set-up datagram was lost (iperf3 does not retransmit it, esnet/iperf#862; on a lossy
    link that happens at the loss rate) is run again, up to twice."""
    for attempt in range(3):
        out, _ = p.communicate(timeout=30)
        j = json.loads(out)
        err = j.get("error")
        if err is None:
            return j["end"]
        if lab is None or "stream socket" not in err or attempt == 2:
            raise AssertionError(f"iperf3: {err}")
        argv = [str(a) for a in p.args]  # type: ignore[union-attr]
        p = iperf3_client(lab, site, *argv[argv.index("-J") + 1 :])
    raise AssertionError("unreachable")


#: Share of all CPUs busy (steal included) from which a low TCP reading may be the machine's
#: fault (iperf3 starved of CPU) rather than the shaper's.
SATURATED = 0.85


class CpuMeter:
    """Share of all CPUs busy (user, system, irq, steal ...) since it was made."""

    def __init__(self) -> None:
        self.t0 = psutil.cpu_times()

    def busy(self) -> float:
        t1 = psutil.cpu_times()
        # guest time is already counted in user time on Linux
        d = {f: getattr(t1, f) - getattr(self.t0, f) for f in t1._fields if "guest" not in f}
        total = sum(d.values())
        return 1 - (d["idle"] + d.get("iowait", 0.0)) / total if total > 0 else 0.0


def tcp_goodput(
    lab: Lab, sites: Sequence[str], flag: Sequence[str], seconds: str
) -> tuple[dict[str, float], float]:
    """iperf3 TCP goodput (Mbit/s) of ``sites`` measured at once, and the CPUs' busy share."""
    meter = CpuMeter()
    procs = {site: iperf3_client(lab, site, "-t", seconds, *flag) for site in sites}
    got = {s: iperf3_result(p)["sum_received"]["bits_per_second"] / 1e6 for s, p in procs.items()}
    return got, meter.busy()


def assert_goodput(
    lab: Lab,
    site: str,
    flag: Sequence[str],
    want: float,
    tol: float,
    first: tuple[float, float],
    seconds: str,
) -> None:
    """The reading ``first`` (Mbit/s, CPU busy share) is within ``want`` ±``tol``.

    A busy machine can only lower a TCP reading, never raise it: a reading above the window
    fails, and so does one below it taken while the CPUs had room to spare; one below it
    taken on saturated CPUs is measured again, alone, up to twice (the last reading counts).
    """
    readings = [first]
    while readings[-1][0] < (1 - tol) * want and readings[-1][1] >= SATURATED:
        if len(readings) == 3:
            break
        got, busy = tcp_goodput(lab, [site], flag, seconds)
        readings.append((got[site], busy))
    shown = ", then ".join(f"{m:.3f} Mbit/s (CPUs {b:.0%} busy)" for m, b in readings)
    direction = "down" if "-R" in flag else "up"
    assert abs(readings[-1][0] - want) <= tol * want, (
        f"{site} {direction}: {shown}; want {want:.3f} ±{tol:.0%}"
    )


def test_shaped_tcp_rates_match_profiles_both_directions(lab: Lab) -> None:
    """iperf3 TCP goodput within ±7% of rate x 0.956, adsl and fttc40 measured side by side
    (a low reading on saturated CPUs is measured again: ``assert_goodput``; the accuracy
    figures are lab/measure.py's and bench/throughput.py's)."""
    for direction, flag in (("up", []), ("down", ["-R"])):
        got, busy = tcp_goodput(lab, ("adsl", "fttc"), flag, "3")
        for site, mbps in got.items():
            prof = lab.sites[site]
            rate = prof.up_mbit if direction == "up" else prof.down_mbit
            assert_goodput(lab, site, flag, rate * TCP_EFFICIENCY, 0.07, (mbps, busy), "3")


def test_set_rate_changes_the_shaped_rate(lab: Lab) -> None:
    lab.set_rate("fttc", 36, 3)
    try:
        got, busy = tcp_goodput(lab, ["fttc"], [], "2")
        assert_goodput(lab, "fttc", [], 3 * TCP_EFFICIENCY, 0.1, (got["fttc"], busy), "2")
        assert state(lab.lab_id)["sites"]["fttc"]["up_mbit"] == 3
    finally:
        lab.set_rate("fttc", 36, 9)


def test_latency_rises_under_load_on_adsl_upload(lab: Lab) -> None:
    """Bufferbloat: ping RTT idle vs while iperf3 fills the 0.8 Mbit/s upload (250 ms buffer)."""
    site_ns = lab.site_ns("adsl")

    def rtts(count: int) -> list[float]:
        argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "2", lab.core_ip]
        out = lab.run(site_ns, argv).stdout
        return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]

    idle = rtts(5)
    # CUBIC (as on a practice PC) fills the buffer; the host default here, BBR, would not.
    load = iperf3_client(lab, "adsl", "-t", "4", "-C", "cubic")
    time.sleep(1.0)  # let TCP fill the buffer
    loaded = rtts(12)
    iperf3_result(load)
    assert statistics.median(idle) < 5, idle
    queue_ms = lab.sites["adsl"].queue_ms
    # The queue fills to about queue_ms of upload; it must not be unbounded either.
    assert 0.6 * queue_ms < statistics.median(loaded) < 1.3 * queue_ms + 20, loaded


# --------------------------------------------------------------------------- loss


def test_random_loss_two_percent_per_direction(lab: Lab) -> None:
    """2% loss on download only: iperf3 -u sees ~2% down (10k packets) and ~0% up.

    2,500 packets/s per direction and 2 MB socket buffers, so a busy CPU does not add loss
    at the endpoints; ±0.6 points is over 4 standard deviations of a 2% Bernoulli count.
    """
    lab.set_loss("lossy", down_pct=2, up_pct=0)
    udp = ("-u", "-b", "4M", "-l", "200", "-t", "4", "-w", "2M")
    down_p, up_p = iperf3_client(lab, "lossy", *udp, "-R"), iperf3_client(lab, "lossy", *udp)
    down = iperf3_result(down_p, lab, "lossy")["sum"]
    up = iperf3_result(up_p, lab, "lossy")["sum"]
    assert down["packets"] > 9_000
    assert abs(down["lost_percent"] - 2.0) < 0.6, down
    assert up["lost_percent"] < 0.3, up
    # the router's own drop counter accounts for what iperf3 lost
    idx = lab.site_ip("lossy").split(".")[2]
    chain = lab.run(lab.router_ns, ["nft", "list", "chain", "inet", "netready", f"down_s{idx}"])
    dropped = int(re.search(r"counter packets (\d+)", chain.stdout).group(1))  # type: ignore[union-attr]
    assert abs(dropped - down["lost_packets"]) <= 3 + 0.02 * dropped, (dropped, down)
    lab.set_loss("lossy", down_pct=0.25, up_pct=0)  # 0.001 % steps
    assert "mod 100000 < 250" in lab.run(lab.router_ns, ["nft", "list", "ruleset"]).stdout
    st = state(lab.lab_id)["sites"]["lossy"]
    assert (st["loss_pct_down"], st["loss_pct_up"]) == (0.25, 0)
    lab.set_loss("lossy", 0, 0)
    assert (
        "numgen" not in lab.run(lab.router_ns, ["nft", "list", "table", "inet", "netready"]).stdout
    )


# --------------------------------------------------------------------------- DSCP

TOS_RECEIVER = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(5)
seen = []
try:
    while len(seen) < 3:
        _, anc, _, _ = s.recvmsg(2048, 64)
        seen += [c[2][0] for c in anc if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
except TimeoutError:
    pass
print(json.dumps(seen))
"""
TOS_SENDER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8)  # DSCP EF
for _ in range(10):
    s.sendto(b"x" * 100, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.005)
"""


def received_tos(lab: Lab, src_ns: str, dst_ns: str, dst_ip: str, port: int) -> list[int]:
    rx = lab.popen(
        dst_ns, [sys.executable, "-c", TOS_RECEIVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    wait_listening(lab, dst_ns, port, "u")
    lab.run(src_ns, [sys.executable, "-c", TOS_SENDER, dst_ip, str(port)])
    out, _ = rx.communicate(timeout=10)
    return json.loads(out)


def test_dscp_rewrite_both_directions(lab: Lab) -> None:
    site_ns, site_ip = lab.site_ns("dscp"), lab.site_ip("dscp")
    assert set(received_tos(lab, site_ns, lab.core_ns, lab.core_ip, 5401)) == {0xB8}
    lab.set_dscp_rewrite("dscp", True)
    assert set(received_tos(lab, site_ns, lab.core_ns, lab.core_ip, 5402)) == {0}
    assert set(received_tos(lab, lab.core_ns, site_ns, site_ip, 5403)) == {0}
    # other sites keep their marking
    assert set(received_tos(lab, lab.site_ns("fttc"), lab.core_ns, lab.core_ip, 5404)) == {0xB8}
    lab.set_dscp_rewrite("dscp", False)
    assert set(received_tos(lab, lab.core_ns, site_ns, site_ip, 5405)) == {0xB8}


# --------------------------------------------------------------------------- delay line


def ping_rtts(lab: Lab, site: str, count: int = 25) -> list[float]:
    out = lab.run(
        lab.site_ns(site), ["ping", "-c", str(count), "-i", "0.04", "-W", "2", lab.core_ip]
    ).stdout
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]


def iqr(xs: list[float]) -> float:
    q = statistics.quantiles(xs, n=4)
    return q[2] - q[0]


Check = Callable[[list[float]], "str | None"]


def spread_ok(site: str, want_iqr: tuple[float, float], want_median: tuple[float, float]) -> Check:
    """A check of one ping reading: None when its IQR and median are in range, else why."""

    def check(rtts: list[float]) -> str | None:
        spread, mid = iqr(rtts), statistics.median(rtts)
        if want_iqr[0] < spread < want_iqr[1] and want_median[0] < mid < want_median[1]:
            return None
        return f"{site}: IQR {spread:.2f} ms, median {mid:.2f} ms in {rtts}"

    return check


def assert_delay_reading(lab: Lab, site: str, check: Check) -> list[float]:
    """Ping ``site`` and hold the reading to ``check``; like ``assert_goodput``, a reading
    that fails while the CPUs were saturated (a descheduled user-space delay line can only add
    delay, never remove it) is taken again, alone, up to twice; the last reading counts.
    What a busy machine cannot cause (a packet early, a packet lost) is never retried."""
    readings: list[tuple[str | None, float]] = []
    while True:
        meter = CpuMeter()
        rtts = ping_rtts(lab, site, 40)
        assert len(rtts) == 40, rtts
        readings.append((check(rtts), meter.busy()))
        if readings[-1][0] is None or readings[-1][1] < SATURATED or len(readings) == 3:
            break
    shown = "; then ".join(f"{why} (CPUs {busy:.0%} busy)" for why, busy in readings)
    assert readings[-1][0] is None, shown
    return rtts


def test_delay_line_adds_fixed_delay_and_jitter(lab: Lab) -> None:
    """15 ms each way: RTT >= 30 ms, always (a hiccup can delay a packet, never speed it up);
    the spread is judged by quartiles, and a failing reading taken on saturated CPUs is taken
    again (``assert_delay_reading``)."""
    assert lab.delays.sched == "fifo"  # its lateness would be error in every tool's truth
    fixed = assert_delay_reading(lab, "delay", spread_ok("delay", (0.0, 1.5), (29.9, 32.5)))
    assert min(fixed) >= 30.0, fixed
    # RTT = 30 ms + two independent U(-5, +5) ms: triangular on 20..40 ms, IQR ~5.9 ms
    jit = assert_delay_reading(lab, "jitter", spread_ok("jitter", (3.0, 10.0), (26.0, 35.0)))
    assert min(jit) >= 19.5, jit


def test_delay_line_lateness_summary() -> None:
    """``LateStats``: lateness in us by hand (a release is never early: negative counts 0),
    percentiles by rank, the shares over 100 us and 1 ms; reset starts again."""
    from netready.lab.delayline import LateStats

    late = LateStats(cap=8)
    for s in (-1e-6, 10e-6, 20e-6, 30e-6, 40e-6, 50e-6, 150e-6, 2e-3, 1e-6, 1e-6):
        late.add(s)
    got = late.summary()
    assert got["packets"] == 10  # all counted; the first 8 kept
    assert got["mean_us"] == pytest.approx((0 + 10 + 20 + 30 + 40 + 50 + 150 + 2000) / 8, abs=0.1)
    assert (got["p50_us"], got["max_us"]) == (pytest.approx(40, abs=0.1), pytest.approx(2000))
    assert (got["over_100us_pct"], got["over_1ms_pct"]) == (25.0, 12.5)
    late.reset()
    assert late.summary()["packets"] == 0 and late.summary()["p99_us"] is None


SCHED_PROBE = r"""
import os, sys
if sys.argv[1] == "denied":
    def denied(*a):
        raise PermissionError(1, "Operation not permitted")
    os.sched_setscheduler = denied
from netready.lab import delayline
got = delayline._sharpen_timers(sys.argv[1] != "off")
print(got, os.sched_getscheduler(0) == os.SCHED_FIFO)
"""


@pytest.mark.parametrize(
    ("mode", "want"), [("on", "fifo True"), ("denied", "other False"), ("off", "other False")]
)
def test_delay_line_runs_sched_fifo_or_falls_back(mode: str, want: str) -> None:
    """As root the delay line runs SCHED_FIFO; refused it (no privilege) or told not to, it
    falls back to nice -5 and says so, without an error (in a child: pytest stays as it is)."""
    out = subprocess.run(
        [sys.executable, "-c", SCHED_PROBE, mode], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want


SEQ_RECEIVER = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(15)
seqs = []
try:
    while len(seqs) < int(sys.argv[2]):
        seqs.append(int(s.recv(2048)[:8]))
        s.settimeout(2)
except TimeoutError:
    pass
print(json.dumps(seqs))
"""
SEQ_SENDER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gap = float(sys.argv[4])
for i in range(int(sys.argv[3])):
    s.sendto(b"%08d" % i + b"x" * 992, (sys.argv[1], int(sys.argv[2])))
    if gap:
        time.sleep(gap)
"""


def arrival_order(lab: Lab, site: str, count: int, gap_s: float, port: int) -> list[int]:
    """Send ``count`` numbered datagrams core -> site, ``gap_s`` apart; the order they arrive."""
    argv = [sys.executable, "-c", SEQ_RECEIVER, str(port), str(count)]
    rx = lab.popen(lab.site_ns(site), argv, stdout=subprocess.PIPE, text=True)
    wait_listening(lab, lab.site_ns(site), port, "u")
    tx = [sys.executable, "-c", SEQ_SENDER, lab.site_ip(site), str(port), str(count), str(gap_s)]
    lab.run(lab.core_ns, tx)
    out, _ = rx.communicate(timeout=15)
    return json.loads(out)


def test_delay_line_reorders_only_when_jitter_exceeds_the_gap(lab: Lab) -> None:
    """Release by time (as netem): a 40-packet burst through ±5 ms jitter arrives shuffled;
    packets 25 ms apart (more than the 10 ms jitter spread) keep their order; a fixed delay
    never reorders."""
    burst = arrival_order(lab, "jitter", 40, 0, 5501)
    assert sorted(burst) == list(range(40))  # nothing lost or duplicated
    assert burst != list(range(40))
    spaced = arrival_order(lab, "jitter", 25, 0.025, 5502)
    assert spaced == list(range(25))
    fixed = arrival_order(lab, "delay", 40, 0, 5503)
    assert fixed == list(range(40))
    # keep_order=1: the same jitter, but a burst leaves in order
    assert arrival_order(lab, "jitord", 40, 0, 5504) == list(range(40))
    rtts = ping_rtts(lab, "jitord", 40)
    assert min(rtts) >= 19.5 and 3.0 < iqr(rtts) < 10.0, rtts


# --------------------------------------------------------------------------- lifecycle


def test_failure_during_up_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last step fails after namespaces, veths, qdiscs, nft rules, the TUN device and the
    delay-line process exist: all of it must go."""
    before_links = root_links()
    bad = Lab({"a": PROFILES["adsl"], "d": parse_profile("down=5,up=5,delay_ms=5")})
    real = DelayLines.start
    started: list[int] = []

    def broken(self: DelayLines, site: str) -> None:
        real(self, site)
        started.extend(self.pids)
        assert len(ours(bad.lab_id)) == 4
        raise LabError("injected failure after the delay line started")

    monkeypatch.setattr(DelayLines, "start", broken)
    with pytest.raises(LabError, match="injected"):
        bad.up()
    assert started and not any(running(pid) for pid in started)
    assert ours(bad.lab_id) == []
    assert netns.load_state(bad.lab_id) is None
    assert root_links() == before_links
    bad.down()  # idempotent
    bad.down()


def test_up_refuses_an_existing_id_and_down_is_idempotent() -> None:
    a = Lab({"s": PROFILES["ethernet"]})
    with a:
        clash = Lab({"s": PROFILES["ethernet"]}, a.lab_id)
        with pytest.raises(LabError, match="already exists"):
            clash.up()
        clash.down()  # must not tear down the lab it clashed with
        assert len(ours(a.lab_id)) == 3
        assert "ttl=64" in a.run(a.site_ns("s"), ["ping", "-c", "1", "10.77.1.1"]).stdout
    a.down()
    assert ours(a.lab_id) == []


def test_popen_processes_are_killed_by_down() -> None:
    with Lab({"s": PROFILES["ethernet"]}) as a:
        p = a.popen(a.core_ns, ["sleep", "60"])
        # and one started behind the lab's back, with plain `ip netns exec`
        q = subprocess.Popen(["ip", "netns", "exec", a.site_ns("s"), "sleep", "60"])
        time.sleep(0.1)
    assert p.wait(timeout=5) != 0
    assert q.wait(timeout=5) != 0


CRASHER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from netready.lab.netns import Lab, parse_profile
lab = Lab({"s": parse_profile("down=5,up=5,delay_ms=3")}, sys.argv[2]).up()
print("up", flush=True)
time.sleep(60)  # the test SIGKILLs us: a crash that leaves the lab behind
"""


def crashed_lab(lab_id: str) -> list[int]:
    """A lab whose owner process died by SIGKILL; returns its delay-line pids."""
    p = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(ROOT), lab_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        # checked while the owner lives (another test's cleanup_stale may remove it after)
        assert len(ours(lab_id)) == 3
        pids = state(lab_id)["delay_pids"]
        assert pids and all(running(pid) for pid in pids)
    finally:
        p.kill()
        p.wait(timeout=10)
    return list(pids)


def test_cleanup_stale_removes_dead_labs_only() -> None:
    dead_id = f"x{os.getpid() % 100000}"
    delay_pids = crashed_lab(dead_id)
    with Lab({"s": PROFILES["ethernet"]}) as live:
        removed = netns.cleanup_stale()
        assert isinstance(removed, int)
        assert ours(dead_id) == []
        assert netns.load_state(dead_id) is None
        assert len(ours(live.lab_id)) == 3  # a live process's lab is left alone
        assert "ttl=64" in live.run(live.site_ns("s"), ["ping", "-c", "1", "10.77.1.1"]).stdout
    # the dead lab's delay line (a process in its router namespace) is gone too
    assert not any(running(pid) for pid in delay_pids)


# --------------------------------------------------------------------------- CLI


def test_cli_up_status_down() -> None:
    runner = CliRunner()
    lab_id = f"c{os.getpid() % 100000}"
    try:
        r = runner.invoke(
            lab_cli,
            [
                "up",
                "--id",
                lab_id,
                "--profile",
                "adsl",
                "--site",
                "B2=down=20,up=5,loss_up=1",
                "--format",
                "json",
            ],
        )
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert (
            summary["sites"]["adsl"]["down_mbit"] == 7
            and summary["sites"]["B2"]["loss_pct_up"] == 1
        )
        assert len(ours(lab_id)) == 4
        r = runner.invoke(lab_cli, ["status", "--format", "json"])
        labs = {x["id"]: x for x in json.loads(r.stdout)}
        assert labs[lab_id]["detached"] and labs[lab_id]["alive"]
        # a re-attached Lab drives the same namespaces
        again = Lab.from_state(lab_id)
        assert again.site_ip("B2") == summary["sites"]["B2"]["ip"]
        assert "ttl=63" in again.run(again.site_ns("B2"), ["ping", "-c", "1", again.core_ip]).stdout
        r = runner.invoke(lab_cli, ["down", "--id", lab_id])
        assert r.exit_code == 0, r.output
        assert ours(lab_id) == []
        r = runner.invoke(lab_cli, ["down", "--id", lab_id])
        assert r.exit_code == 1 and "no lab" in r.stderr
        r = runner.invoke(lab_cli, ["up", "--site", "bad"])
        assert r.exit_code == 2 and "NAME=PROFILE" in r.stderr
    finally:
        netns.destroy(lab_id)


def test_cli_down_all_spares_labs_of_running_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`down --all` removes detached and dead labs, not a running process's lab (unless
    --force). A private state directory keeps other labs on this machine out of view."""
    monkeypatch.setenv("NETREADY_LAB_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    det, dead = f"d{os.getpid() % 100000}", f"k{os.getpid() % 100000}"
    try:
        with Lab({"s": PROFILES["ethernet"]}) as live:
            r = runner.invoke(lab_cli, ["up", "--id", det, "--profile", "ethernet"])
            assert r.exit_code == 0, r.output
            crashed_lab(dead)
            assert len(ours(det)) == 3
            # nobody else reads this private state directory: the count is exact
            assert netns.cleanup_stale() == 3
            assert ours(dead) == []
            crashed_lab(dead)  # again, for `down --all` to find
            r = runner.invoke(lab_cli, ["down", "--all"])
            assert r.exit_code == 0, r.output
            assert "left 1 lab" in r.stderr
            assert ours(det) == [] and ours(dead) == []
            assert len(ours(live.lab_id)) == 3
            r = runner.invoke(lab_cli, ["down", "--all", "--force"])
            assert r.exit_code == 0 and ours(live.lab_id) == []
        assert list(tmp_path.glob("*.json")) == []
    finally:
        netns.destroy(det)
        netns.destroy(dead)


def test_cli_up_from_inventory(example_inventory: Path) -> None:
    from netready.inventory import load

    inv = load(example_inventory)
    lab_id = f"i{os.getpid() % 100000}"
    try:
        r = CliRunner().invoke(
            lab_cli,
            ["up", "--id", lab_id, "--inventory", str(example_inventory), "--format", "json"],
        )
        assert r.exit_code == 0, r.output
        sites = json.loads(r.stdout)["sites"]
        assert set(sites) == {s.ods for s in inv.sites}
        for s in inv.sites:
            got = sites[s.ods]
            assert (got["tech"], got["down_mbit"], got["up_mbit"]) == (
                s.link.tech,
                s.link.down_mbps,
                s.link.up_mbps,
            )
            assert got["queue_ms"] == netns.QUEUE_MS_BY_TECH[s.link.tech]
        assert len(ours(lab_id)) == 2 + len(inv.sites)
    finally:
        netns.destroy(lab_id)
    assert ours(lab_id) == []
    r = CliRunner().invoke(lab_cli, ["up", "--inventory", "/nonexistent/inv.yaml"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_cli_profiles_json() -> None:
    r = CliRunner().invoke(lab_cli, ["profiles", "--format", "json"])
    assert r.exit_code == 0
    names = [p["name"] for p in json.loads(r.stdout)]
    assert {"adsl", "fttc40", "fttc80", "fttp", "ethernet"} <= set(names)


def test_cli_without_root_says_so_in_one_line() -> None:
    """A real unprivileged process (uid 65534), not a mocked geteuid."""
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from netready.cli import main; main()"
    cp = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
            str(ROOT),
            "lab",
            "up",
            "--profile",
            "adsl",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert cp.returncode == 1, cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1 and "root" in cp.stderr, cp.stderr
    assert "Traceback" not in cp.stderr


# --------------------------------------------------------------------------- stopping


def _wait_for(cond, timeout: float, what: str, step: float = 0.02):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def _only_lab(state_dir: Path) -> dict[str, Any] | None:
    """The one lab state file in a private state directory, once it is readable."""
    files = list(state_dir.glob("*.json"))
    if len(files) != 1:
        return None
    try:
        return json.loads(files[0].read_text())  # type: ignore[no-any-return]
    except ValueError:
        return None  # being written


def _assert_gone(st: dict[str, Any], pids: list[int], state_dir: Path) -> None:
    """Nothing of lab ``st`` is left: no namespace, no process, no state file."""
    left = [ns for ns in netns.list_netns() if ns.startswith(st["core_ns"].rsplit("-", 1)[0])]
    assert left == [], left
    assert [p for p in pids if running(p)] == []
    assert list(state_dir.iterdir()) == []


def _lab_pids(st: dict[str, Any]) -> list[int]:
    """Every process inside the lab's namespaces, and its delay lines."""
    pids = list(st.get("delay_pids", []))
    for ns in st["namespaces"]:
        pids += netns.netns_pids(ns)
    return sorted(set(pids))


OWNER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from netready.lab.netns import Lab, parse_profile
with Lab({"s": parse_profile("down=5,up=5,delay_ms=3"), "t": "ethernet"}) as lab:
    lab.popen(lab.core_ns, ["sleep", "300"])
    lab.popen(lab.site_ns("t"), ["sleep", "300"])
    print("up", flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("sigs", [("SIGTERM",), ("SIGINT",), ("SIGHUP",), ("SIGTERM", "SIGTERM")])
def test_a_signal_to_the_owner_of_a_lab_leaves_nothing(
    sigs: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``with Lab(...)`` in a process stopped by SIGTERM, SIGHUP or Ctrl-C (and a second
    SIGTERM during the teardown): no namespace, delay line, child process or state file is
    left, and the exit code tells which signal stopped it."""
    monkeypatch.setenv("NETREADY_LAB_STATE_DIR", str(tmp_path))
    p = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        st = _wait_for(lambda: _only_lab(tmp_path), 5, "the state file")
        assert len(st["delay_pids"]) == 1
        # the delay line and the two sleeps (each in its namespace once `ip netns exec` is)
        pids = _wait_for(lambda: len(_lab_pids(st)) >= 3 and _lab_pids(st), 10, "3 processes")
        assert all(running(pid) for pid in pids)
        sleeps = [pid for pid in pids if pid not in st["delay_pids"]]
        for i, name in enumerate(sigs):
            if i:  # again, once the teardown is under way (its first step ends the sleeps)
                _wait_for(lambda: not any(running(x) for x in sleeps), 10, "the teardown", 0.002)
            p.send_signal(getattr(signal, name))
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        netns.cleanup_stale()  # only this private state directory: a failure leaves no debris
    # SIGTERM/SIGHUP: Terminated, exit 128 + n; Ctrl-C: Python dies by SIGINT after cleanup.
    # A second SIGTERM that lands after the teardown, as the process exits, may end it by
    # the default action instead: the teardown was complete either way (checked below).
    first = getattr(signal, sigs[0])
    expected = {-first if first == signal.SIGINT else 128 + first}
    if len(sigs) > 1:
        expected.add(-first)
    assert rc in expected, rc
    _assert_gone(st, pids, tmp_path)


def test_sigterm_while_netready_lab_up_builds_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`netready lab up` stopped half-way through building: what it built is removed and it
    says so in one line (exit 143)."""
    monkeypatch.setenv("NETREADY_LAB_STATE_DIR", str(tmp_path))
    lab_id = f"b{os.getpid() % 100000}"
    sites = [a for i in range(10) for a in ("--site", f"s{i}=down=10,up=5,delay_ms=2")]
    p = subprocess.Popen(
        ["netready", "lab", "up", "--id", lab_id, *sites],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []

    def building() -> bool:
        st = _only_lab(tmp_path)
        if st is None or st.get("status") != "building":
            return False
        seen.extend(st.get("delay_pids", []))
        return len(ours(lab_id)) >= 2  # namespaces exist: the build is under way

    try:
        _wait_for(building, 20, "the build to start", step=0.005)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        netns.destroy(lab_id)
    assert p.returncode == 143, err
    assert f"lab {lab_id}: stopped by SIGTERM; removed what was built" in err
    assert "Traceback" not in err
    assert ours(lab_id) == [] and list(tmp_path.iterdir()) == []
    assert not any(running(pid) for pid in seen)


def _sigterm_a_bench(
    argv: list[str],
    state: Path,
    min_pids: int,
    prefix: str = "nr-",
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[int], str]:
    """Run benchmark ``argv`` with its labs' state in ``state``; once its lab is up and
    ``min_pids`` processes run in it, SIGTERM the benchmark alone (the worst case: `timeout`
    also signals its process group). Returns (the lab's state, those pids, stderr)."""
    p = subprocess.Popen(
        [sys.executable, *argv],
        env={**os.environ, "NETREADY_LAB_STATE_DIR": str(state), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        st = _wait_for(
            lambda: (s := _only_lab(state)) and s.get("status") == "up" and s, 60, "its lab"
        )
        pids = _wait_for(
            lambda: len(_lab_pids(st)) >= min_pids and _lab_pids(st), 30, "its processes"
        )
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        with pytest.MonkeyPatch.context() as mp:  # a failure leaves no debris either
            mp.setenv("NETREADY_LAB_STATE_DIR", str(state))
            netns.cleanup_stale(prefix=prefix)
    assert p.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return st, pids, err


def test_sigterm_during_bench_path_leaves_no_lab(tmp_path: Path) -> None:
    """`timeout` stopping bench/path.py mid-run: its lab (namespaces, delay line, the four
    servers and the tool running, the state file) and its private tool copies are gone."""
    state, tmp = tmp_path / "state", tmp_path / "tmp"
    state.mkdir()
    tmp.mkdir()
    path_py = str(ROOT / "bench" / "path.py")
    # delay line + media responder, reflector, irtt and iperf3 servers + the first probe
    st, pids, _ = _sigterm_a_bench(
        [path_py, "--scenarios", "2", "--seconds", "30"], state, 6, env={"TMPDIR": str(tmp)}
    )
    _assert_gone(st, pids, state)
    assert list(tmp.glob("nr-bench-path-*")) == []


def test_sigterm_during_bench_throughput_leaves_no_lab(tmp_path: Path) -> None:
    """The same for bench/throughput.py: its lab, the endpoint, the probe and its copy of
    iperf3 (named after its pid)."""
    before = set(Path("/tmp").glob("nrbench-iperf3-*"))
    argv = [str(ROOT / "bench" / "throughput.py"), "--sites", "adsl"]
    st, pids, _ = _sigterm_a_bench(argv, tmp_path, 2, prefix="nrtp-")  # endpoint + probe
    _assert_gone(st, pids, tmp_path)
    assert set(Path("/tmp").glob("nrbench-iperf3-*")) <= before


def test_every_benchmark_takes_help_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench/X.py --help` prints usage and builds nothing: no lab, no temp files."""
    state, tmp = tmp_path / "state", tmp_path / "tmp"
    state.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("NETREADY_LAB_STATE_DIR", str(state))
    benches = sorted(b for b in (ROOT / "bench").glob("*.py") if b.name != "soak.py")
    assert {b.name for b in benches} >= {"path.py", "throughput.py", "ingest.py"}
    try:
        for b in benches:
            cp = subprocess.run(
                [sys.executable, str(b), "--help"],
                env={**os.environ, "TMPDIR": str(tmp)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cp.returncode == 0, (b.name, cp.stderr[-500:])
            assert cp.stdout.startswith("usage:"), (b.name, cp.stdout[:200])
            assert list(state.iterdir()) == [] and list(tmp.iterdir()) == [], b.name
    finally:
        netns.cleanup_stale()


def test_signal_helpers() -> None:
    """exit_on_signals turns SIGTERM into Terminated(143) (nested uses keep it), restores
    the default after; deferred_signals lets a teardown finish and then delivers; a handler
    someone else installed is left alone."""
    code = r"""
import signal, sys
sys.path.insert(0, sys.argv[1])
from netready.lab import signals
log = []
with signals.exit_on_signals():
    with signals.exit_on_signals():
        pass
    try:
        signal.raise_signal(signal.SIGTERM)
    except signals.Terminated as t:
        log.append(f"raised {t.code} {t.signame}")
    try:
        with signals.deferred_signals():
            signal.raise_signal(signal.SIGTERM)
            log.append("teardown finished")
    except signals.Terminated:
        log.append("then delivered")
log.append(f"default again: {signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}")
mine = lambda n, f: log.append("own handler ran")
signal.signal(signal.SIGTERM, mine)
with signals.exit_on_signals():
    signal.raise_signal(signal.SIGTERM)
log.append(f"own kept: {signal.getsignal(signal.SIGTERM) is mine}")
print("; ".join(log))
"""
    cp = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=30
    )
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == (
        "raised 143 SIGTERM; teardown finished; then delivered; default again: True; "
        "own handler ran; own kept: True"
    )


# --------------------------------------------------------------------------- the demo


def test_demo_inventory_agent_and_report_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` (netready.lab.demo) without running its 10 minutes: the inventory it writes
    passes `inventory check` with every target's params (both the quick and the full one),
    declares each site's link as the lab emulates it, its agent command line is one the agent
    accepts, and its report commands render a report (NO DATA: nothing measured yet)."""
    from netready.lab import demo

    from netready import registry
    from netready.inventory import load

    monkeypatch.setattr(demo, "OUT", tmp_path)
    profiles = demo.demo_profiles()
    assert set(profiles) == set(demo.DEMO_ODS) == set(DEMO_SITES)
    for quick in (True, False):
        inv = load(
            demo.write_inventory(list(profiles), "10.77.0.1", quick, tmp_path),
            spec_for=registry.spec_for,
        )
        assert len(inv.sites) == 4
        for s in inv.sites:
            probes = [t.probe for t in s.targets]
            assert probes == ["rtt", "media"] + ([] if quick else ["throughput"])
    for name, (ods, _title, _type, tech, down, up, _clinics) in demo.DEMO_ODS.items():
        site, prof = inv.site(ods), profiles[name]
        assert (site.link.tech, site.link.down_mbps, site.link.up_mbps) == (tech, down, up)
        assert (prof.tech, prof.down_mbit, prof.up_mbit) == (tech, down, up), name
    path = tmp_path / "inventory.yaml"
    # every flag of the agent's command line parses: the unknown site is the only complaint
    cp = subprocess.run(
        demo.agent_argv(path, "Y99999", "media,throughput"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 2 and "Y99999" in cp.stderr, cp.stderr
    assert "No such option" not in cp.stderr and "Traceback" not in cp.stderr
    # and the central servers' command lines name only options their commands have (click
    # refuses an unknown option before it answers the --help at the end)
    for argv in (demo.reflector_argv("10.77.0.1", demo.LAB_ALLOW), demo.speed_argv("10.77.0.1")):
        cp = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0 and cp.stdout.startswith("Usage:"), (argv, cp.stderr)
    rc = demo.report(path)
    assert rc == 0
    html = (tmp_path / "report.html").read_text()
    assert all(ods in html for ods, *_ in demo.DEMO_ODS.values())
    # each site's agent has its own spool (they run at once); the report reads them gathered
    from netready.records import Record
    from netready.spool import Spool

    odss = [ods for ods, *_ in demo.DEMO_ODS.values()]
    for i, ods in enumerate(odss[:2]):
        with Spool(demo.site_spool(ods), ship=False, embedded=True) as sp:
            sp.enqueue([Record("rtt", {"site": ods}, {"rtt_p50_ms": 10.0 + i}, 1000 + i)] * 2)
    assert demo.gather(odss) == 4
    with Spool(tmp_path / "spool.db", readonly=True) as sp:
        got = [(r.tags["site"], r.fields["rtt_p50_ms"]) for r in sp.records("rtt")]
    assert got == [(odss[0], 10.0)] * 2 + [(odss[1], 11.0)] * 2


def test_no_namespaces_of_ours_left(lab: Lab) -> None:
    """Runs last in this file: no lab of this process but the module's shared one (its
    fixture checks its own teardown) and none of the fixed ids used above is still around.
    Other engineers' labs may be, so only ours are checked."""
    mine = [st["id"] for st in netns.list_labs() if st.get("owner_pid") == os.getpid()]
    assert mine == [lab.lab_id]
    n = os.getpid() % 100000
    for lab_id in (f"x{n}", f"c{n}", f"i{n}", f"d{n}", f"k{n}"):
        assert ours(lab_id) == [], lab_id
        assert netns.load_state(lab_id) is None, lab_id


def test_demo_routers_are_real_recordings_polled_across_the_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The demo's emulated routers: snmpsim serving each site's real recording at the site's
    LAN address inside its namespace, polled by the site's own agent (`--only snmp`); the
    report then shows detected technology, the ADSL site contradicted by its router, and the
    router table the DrayTek's line figures. What arrived over the wire equals the snmp
    collector's reading of the same recording file."""
    from netready.collectors import snmp
    from netready.lab import demo, routers
    from netready.lab.demo_sites import DEMO_ROUTERS

    monkeypatch.setattr(demo, "OUT", tmp_path)
    monkeypatch.setenv(routers.COMMUNITY_ENV, routers.COMMUNITY)
    names = list(DEMO_SITES)
    lab = Lab(demo.demo_profiles())
    try:
        lab.up()
        with open(tmp_path / "servers.log", "w") as logs:
            demo.start_routers(lab, names, logs)
        inv = demo.write_inventory(names, lab.core_ip, True, tmp_path)
        procs = [
            subprocess.Popen(
                demo.in_site(lab, n, demo.agent_argv(inv, demo.DEMO_ODS[n][0], "snmp")),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for n in names
        ]
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out
        # the router is on the site's side: the core cannot reach it
        cp = subprocess.run(
            ["ip", "netns", "exec", lab.core_ns, "ping", "-c1", "-W1", routers.ROUTER_IP],
            capture_output=True,
        )
        assert cp.returncode != 0
    finally:
        lab.down()
    assert demo.gather(demo.DEMO_ODS[n][0] for n in names) > 0
    rows = {r["ods"]: r for r in demo.router_rows(names)}
    for name in names:
        ods, tech = demo.DEMO_ODS[name][0], demo.DEMO_ODS[name][3]
        vb = snmp.parse_snmprec(DEMO_ROUTERS[name].path.read_text("utf-8", "surrogateescape"))
        recs, _ = snmp.records_from_varbinds(
            vb, base_tags={"site": ods, "tech": tech}, device="x", prev=None, time_ms=0,
            vendor=DEMO_ROUTERS[name].vendor,
        )  # fmt: skip
        best = next((r for r in recs if r.ok and r.measurement == "dsl_line"), None) or next(
            r for r in recs if r.ok and r.fields.get("is_wan")
        )
        row = rows[ods]
        assert row["detected"] == best.tags["detected_tech"] != "?", name
        assert row["mismatch"] == best.fields.get("tech_mismatch"), name
        assert row["interface"] == best.tags["ifname"], name
    fttc, adsl = rows["Y90002"], rows["Y90001"]
    # the DrayTek's line as its VDSL2-LINE-MIB / ADSL-LINE-MIB report it (EXPECTED.md)
    assert fttc["sync_kbps"] == (110162.0, 33029.0) and fttc["snr_db"] == (5.0, 5.0)
    assert fttc["atten_db"] == (16.0, 13.0) and fttc["mismatch"] is False
    assert adsl["mismatch"] is True  # declared ADSL, the router is a G.fast/VDSL2 modem
    assert rows["RXZ01"]["mismatch"] is not True and rows["Y90003"]["mismatch"] is not True
    capfd.readouterr()
    assert demo.report(inv) in (0, 3)
    demo.print_routers(names)
    out = capfd.readouterr().out
    assert f"adsl / {adsl['detected']} ≠" in out  # the report's tech column flags it
    assert f"fttc / {fttc['detected']}" in out and "110,162 / 33,029" in out
