"""Benchmark: netready's adaptive throughput probe vs iperf3 vs the truth, on the link lab.

    sudo .venv/bin/python bench/throughput.py [--iperf3-seconds 10] [--sites adsl,fttp]
    sudo .venv/bin/python bench/throughput.py --cpu     # client CPU: raw asyncio vs aiohttp
    sudo .venv/bin/python bench/throughput.py --rpm [--sites adsl,fttc40]   # RPM vs the truth

Every lab profile plus two odd rates (3.3/0.45 and 23/6 Mbit/s), both directions. The truth is
the shaped rate x 0.956 (TCP/IP + Ethernet overhead at 1500-byte MTU; docs/design.md). netready runs
alone, site after site; iperf3 (1 and 4 streams, ``-t`` seconds) runs on all sites at once per
configuration, each site against its own ``iperf3 -s`` (the lab shapes each site separately).
``nr s`` is the probe's transfer time (ramp-up included; ~0.2 s of idle pings and process start
not included); ``ip3 s`` is iperf3's test duration. Target: |error| <= 2% of the truth with at
most half the bytes of ``iperf3 -P1``.

``--rpm``: responsiveness. Per site and direction, the loaded round trip the RPM implies
(60000 / ``rpm``) against the truth, the base RTT plus the queue's delay at the shaped rate
(``queue_ms``: the buffer holds rate x queue_ms bytes, and ``drain``, the HTB class's bytes
sent per second from ``tc -s class`` over the test's last 40 % (ending at the last sample with bytes queued) against the shaped rate,
checks that a full buffer then takes queue_ms to drain; ``qdisc``: the base RTT plus the
delay of the bytes the queue really held, ``tc -s qdisc`` backlog / rate sampled every 0.2 s
over the last 40 % of the test, which shows whether the load had filled it; ``peak`` its
largest sample). The base RTT is the probe's own idle round trip (``rtt_idle_ms``); as a
reference irtt (UDP, 20 packets/s) runs through the test (a Crusader-style latency probe
beside the load): its median over the last 40 % of the test against its own idle median
over the second before + queue_ms. The load's senders (the endpoint for download, the probe
for upload) use cubic (``--congestion-control``): this host defaults to BBR, which keeps a
queue short by design (docs/lab.md). flent/Crusader are not installed here; Apple's networkQuality (macOS) and
goresponsiveness (Go) do not run here. Target: |error| <= 10 % of the truth.

Stopped by SIGTERM/SIGINT/SIGHUP (e.g. ``timeout``), it tears its lab down (namespaces, the
endpoint, the iperf3 processes, the state file) and removes its copy of iperf3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netready.lab.netns  # noqa: E402
from netready.lab.netns import PROFILES, Lab, LabError, parse_profile  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402

# Workaround: `lab.netns.cleanup_stale()` run with a private NETREADY_LAB_STATE_DIR (as the lab
# tests do) treats any live `nr-<id>-core` namespace it has no state file for as debris and
# removes it. A distinct prefix keeps a long benchmark out of its reach on a shared machine.
netready.lab.netns.NS_PREFIX = "nrtp-"
from netready.probes.iperf3 import parse as parse_iperf3  # noqa: E402

OVERHEAD = 0.956
# The real iperf3 binary under its own name: other work on this machine may `pkill iperf3`.
IPERF3 = f"/tmp/nrbench-iperf3-{os.getpid()}"
IRTT = f"/tmp/nrbench-irtt-{os.getpid()}"
#: irtt's run beside one direction: longer than its idle second + the probe's time cap (15 s)
#: + the RPM hold (8 s)
IRTT_S = 26
TOKEN_ENV = "NR_BENCH_TOKEN"
#: the RPM's load senders (endpoint for download, probe for upload) use cubic: this host's
#: default, which the lab's namespaces inherit, is BBR, which keeps a bottleneck's queue short
#: by design (docs/lab.md), while the truth is a full buffer, as the loss-based senders of a
#: practice (Windows, macOS) leave it
RPM_CC = "cubic"
#: a row tests the truth when the queue held at least this share of it on average
FILLED = 0.9
#: the netready command of this interpreter (its probes and the speed endpoint)
NETREADY = [sys.executable, "-m", "netready.cli"]

SITES = {
    **{n: p for n, p in PROFILES.items()},
    "odd-3.3": parse_profile("name=odd-3.3,tech=adsl,down=3.3,up=0.45,queue_ms=200"),
    "odd-23": parse_profile("name=odd-23,tech=fttc,down=23,up=6,queue_ms=100"),
}


def run_netready(lab: Lab, site: str) -> dict[str, dict]:
    argv = [
        *NETREADY,
        "probe",
        "throughput",
        "--target",
        f"http://{lab.core_ip}:8080",
        "--token",
        f"env:{TOKEN_ENV}",
        "--format",
        "json",
    ]
    try:
        cp = lab.run(lab.site_ns(site), argv, timeout=120, check=False)
    except LabError as e:
        print(f"  netready {site}: {e}", file=sys.stderr)
        return {}
    out = {}
    for r in json.loads(cp.stdout or "[]"):
        out[r["tags"]["direction"]] = r
    return out


def iperf3(lab: Lab, site: str, port: int, direction: str, streams: int, secs: float) -> dict:
    """One iperf3 run against a fresh one-off server (``-s -1``) on ``port`` in the core."""
    srv = lab.popen(
        lab.core_ns,
        [IPERF3, "-s", "-1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    argv = [
        IPERF3,
        "-c",
        lab.core_ip,
        "-p",
        str(port),
        "-J",
        "-t",
        f"{secs:g}",
        "-P",
        str(streams),
        "--connect-timeout",
        "3000",
    ]
    if direction == "down":
        argv.append("-R")
    try:
        cp = lab.run(lab.site_ns(site), argv, timeout=secs + 20, check=False)
        text = cp.stdout or cp.stderr
    except LabError as e:
        text = json.dumps({"error": str(e)})
    finally:
        srv.kill()
        srv.wait()
    return parse_iperf3(text, direction).to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iperf3-seconds", type=float, default=10.0)
    ap.add_argument("--sites", default=",".join(SITES))
    ap.add_argument("--cpu", action="store_true", help="only compare client CPU (loopback)")
    ap.add_argument("--rpm", action="store_true", help="only RPM against the queue's truth")
    a = ap.parse_args()
    with exit_on_signals():  # SIGTERM/SIGHUP unwind through the finally blocks
        if a.cpu:
            cpu_compare()
            return
        names = a.sites.split(",")
        unknown = [n for n in names if n not in SITES]
        if unknown:
            ap.error(f"--sites: unknown {', '.join(unknown)} (known: {', '.join(SITES)})")
        if a.rpm:
            try:
                shutil.copy2(shutil.which("irtt") or "/usr/bin/irtt", IRTT)
                rpm_bench(names)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(IRTT)
            return
        try:
            shutil.copy2(shutil.which("iperf3") or "/usr/bin/iperf3", IPERF3)
            nr, ip3, t_start = run_all(names, a.iperf3_seconds)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(IPERF3)
    wall = time.monotonic() - t_start
    print_table(names, nr, ip3, a.iperf3_seconds, wall)


def run_all(names: list[str], secs: float) -> tuple[dict, dict, float]:
    os.environ[TOKEN_ENV] = "bench-token-0123456789"
    t_start = time.monotonic()
    with Lab(sites={n: SITES[n] for n in names}) as lab:
        _endpoint(lab)
        ports = {n: 5301 + i for i, n in enumerate(names)}
        nr = {}
        for n in names:
            print(f"netready {n} ...", file=sys.stderr, flush=True)
            nr[n] = run_netready(lab, n)
        ip3: dict[tuple[str, str, int], dict] = {}
        for streams in (1, 4):
            for d in ("down", "up"):
                print(f"iperf3 -P{streams} {d} (all sites) ...", file=sys.stderr, flush=True)
                ex = ThreadPoolExecutor(len(names))
                try:
                    futs = {n: ex.submit(iperf3, lab, n, ports[n], d, streams, secs) for n in names}
                    for n, f in futs.items():
                        ip3[(n, d, streams)] = f.result()
                finally:
                    # stopped early: do not wait here for the runs; the lab's teardown
                    # kills their processes, which ends the threads
                    ex.shutdown(wait=False, cancel_futures=True)
    return nr, ip3, t_start


def _endpoint(lab: Lab, cc: str | None = None) -> None:
    """The speed endpoint in the lab's core, with limits no benchmark reaches (and TCP
    congestion control ``cc`` for its sockets)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srv = lab.popen(
        lab.core_ns,
        [
            *NETREADY,
            "serve",
            "--listen",
            f"{lab.core_ip}:8080",
            "--token",
            f"env:{TOKEN_ENV}",
            "--max-tests",
            "4",
            "--max-mb",
            "100000",
            "--allow-plain-http",  # the lab is a closed network of our own
            *(["--congestion-control", cc] if cc else []),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert srv.stderr is not None and "listening" in srv.stderr.readline()
    # keep reading its log so the endpoint never blocks on a full pipe
    threading.Thread(target=srv.stderr.read, daemon=True).start()


def _irtt_rtts(out: str) -> list[tuple[float, float]]:
    """(send wall time s, RTT ms) of every answered packet in irtt's JSON."""
    d = json.loads(out)
    rows = []
    for rt in d.get("round_trips") or []:
        if rt.get("lost") not in (None, "false", False):
            continue
        rtt = rt.get("delay", {}).get("rtt")
        if rtt is None:
            continue
        rows.append((rt["timestamps"]["client"]["send"]["wall"] / 1e9, rtt / 1e6))
    return rows


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def _queue(lab: Lab, site: str, d: str) -> tuple[int, int] | None:
    """(bytes waiting in the bfifo, bytes the HTB class has sent) of the site's download
    (router side) or upload (core side) queue, from ``tc -s``: the backlog shows how full the
    buffer was, the sent count how fast the class really drained it."""
    s = lab.topo.sites[site]
    dev, cls = (s.router_if, 1) if d == "down" else ("core0", s.index)
    leaf = cls + 0x100
    cp = lab.run(lab.router_ns, ["tc", "-s", "qdisc", "show", "dev", dev], check=False)
    backlog = None
    for b in cp.stdout.split("qdisc "):
        if b.startswith(f"bfifo {leaf:x}:"):
            m = re.search(r"backlog (\d+)b", b)
            backlog = int(m.group(1)) if m else None
    cp = lab.run(
        lab.router_ns,
        ["tc", "-s", "class", "show", "dev", dev, "classid", f"1:{cls:x}"],
        check=False,
    )
    m = re.search(r"Sent (\d+) bytes", cp.stdout)
    if backlog is None or m is None:
        return None
    return backlog, int(m.group(1))


def rpm_one(lab: Lab, site: str, d: str) -> dict[str, Any]:
    """One direction of one site: irtt beside netready's throughput test, the queue sampled."""
    load0 = os.getloadavg()[0]
    ip = lab.popen(
        lab.site_ns(site),
        [IRTT, "client", "-i", "50ms", "-d", f"{IRTT_S}s", "--wait=1s", "-Q", "-o", "-",
         f"{lab.core_ip}:2112"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(1.2)  # the idle second: irtt's base RTT
    q: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            v = _queue(lab, site, d)
            if v is not None:
                q.append((time.time(), *v))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.time()
    argv = [
        *NETREADY, "probe", "throughput", "--target", f"http://{lab.core_ip}:8080",
        "--token", f"env:{TOKEN_ENV}", "--direction", d, "--format", "json",
        "--congestion-control", RPM_CC,
    ]  # fmt: skip
    cp = lab.run(lab.site_ns(site), argv, timeout=120, check=False)
    t1 = time.time()
    done.set()
    th.join()
    # irtt writes no JSON when interrupted: it runs its whole duration
    out, _ = ip.communicate(timeout=IRTT_S + 15)
    recs = json.loads(cp.stdout or "[]")
    f = recs[0]["fields"] if recs else {}
    rtts = _irtt_rtts(out) if out.strip() else []
    dur = float(f.get("duration_s", t1 - t0))
    p = SITES[site]
    rate = (p.down_mbit if d == "down" else p.up_mbit) * 1e6 / 8
    # the load's end: the last sample with bytes queued (the process then tears down and
    # exits while the queue drains, which is not part of the test)
    t_end = max((x[0] for x in q if x[1] > 0), default=t1)
    tail = [x for x in q if t_end - 0.4 * dur <= x[0] <= t_end]
    drain = None
    if len(tail) >= 2 and tail[-1][0] > tail[0][0]:
        # while the buffer held packets the class sent at its real drain rate
        drain = (tail[-1][2] - tail[0][2]) / (tail[-1][0] - tail[0][0]) / rate
    return {
        "nr": f,
        "queue_ms": sum(x[1] for x in tail) / len(tail) / rate * 1000 if tail else None,
        "peak_ms": max(x[1] for x in q) / rate * 1000 if q else None,
        "drain": drain,
        "base": _median([r for t, r in rtts if t < t0]),
        "irtt_loaded": _median([r for t, r in rtts if t_end - 0.4 * dur <= t <= t_end]),
        "load": (load0, os.getloadavg()[0]),
    }


def rpm_bench(names: list[str]) -> None:
    os.environ[TOKEN_ENV] = "bench-token-0123456789"
    up0 = os.getloadavg()[0]
    rows = []
    with Lab(sites={n: SITES[n] for n in names}) as lab:
        _endpoint(lab, RPM_CC)
        lab.popen(
            lab.core_ns,
            [IRTT, "server", "-b", f"{lab.core_ip}:2112", "-i", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        for n in names:
            for d in ("down", "up"):
                print(f"rpm {n} {d} ...", file=sys.stderr, flush=True)
                rows.append((n, d, rpm_one(lab, n, d)))
    print_rpm(rows, up0, os.getloadavg()[0])


def print_rpm(rows: list[tuple[str, str, dict[str, Any]]], up0: float, up1: float) -> None:
    print(
        f"{'site':7} {'dir':4} {'Mbit/s':>6} {'queue':>5} {'base':>5} {'truth':>6} "
        f"{'qdisc':>6} {'peak':>6} {'drain':>5} | "
        f"{'60000/RPM':>9} {'ratio':>5} {'/qdisc':>6} {'conf':>6} {'f/s/rx':>9} {'rtx%':>5} | "
        f"{'irtt ld':>7} {'ratio':>5} | {'tcp_f':>6} {'http_f':>6} {'self':>6} | {'load':>9} "
        f"verdict"
    )
    ok = nfilled = near = 0
    for n, d, r in rows:
        p, f = SITES[n], r["nr"]
        base = f.get("rtt_idle_ms")  # the probe's own idle round trip (HTTP /ping)
        ibase = r["base"]  # irtt's, for irtt's own truth
        rate = p.down_mbit if d == "down" else p.up_mbit
        truth = (base or 0.0) + p.queue_ms
        held = (base or 0.0) + (r["queue_ms"] or 0.0)  # what the queue really held
        nr_ms = f.get("rpm_loaded_ms")
        il = r["irtt_loaded"]

        def e(v: float | None, t: float) -> str:
            return f"{v / t:5.2f}" if v and t else " fail"

        within = bool(nr_ms and base is not None and abs(nr_ms / truth - 1) <= 0.10)
        # a row tests the truth only if the load kept the buffer full: else say so
        filled = r["queue_ms"] is not None and held >= FILLED * truth
        verdict = ("met" if within else "off") if filled else "unfilled"
        ok += within and filled
        nfilled += filled
        near += bool(nr_ms and r["queue_ms"] is not None and abs(nr_ms / held - 1) <= 0.10)
        segs = f.get("bytes", 0) / 1448
        rtx = f"{f['retransmits'] / segs * 100:5.1f}" if segs and f.get("retransmits") else "    -"
        probes = (
            f"{f.get('rpm_probes_foreign', 0)}/{f.get('rpm_probes_self', 0)}/"
            f"{f.get('rpm_probes_retransmitted', 0)}"
        )
        print(
            f"{n:7} {d:4} {rate:6.1f} {p.queue_ms:5.0f} {base or 0:5.1f} {truth:6.1f} "
            f"{held:6.1f} {(base or 0) + (r['peak_ms'] or 0):6.1f} {r['drain'] or 0:5.3f} | "
            f"{nr_ms or 0:9.1f} {e(nr_ms, truth)} {e(nr_ms, held):>6} "
            f"{f.get('rpm_confidence', '-'):>6} {probes:>9} {rtx} | "
            f"{il or 0:7.1f} {e(il, (ibase or 0) + p.queue_ms)} | "
            f"{f.get('rpm_foreign_tcp_ms', 0):6.1f} "
            f"{f.get('rpm_foreign_http_ms', 0):6.1f} {f.get('rpm_self_ms', 0):6.1f} | "
            f"{r['load'][0]:4.1f}/{r['load'][1]:4.1f} {verdict}"
        )
    print(
        f"\n{ok}/{nfilled} rows whose buffer the load kept >= {FILLED:.0%} full are within 10 % "
        f"of the truth (the probe's idle RTT + queue_ms; 'unfilled': the load did not, so "
        f"the row does not test it); {near}/{len(rows)} rows within 10 % of what the queue "
        f"really held. "
        f"Load average {up0:.1f} before, {up1:.1f} after (2 cores). Load senders: "
        f"{RPM_CC}. qdisc: base + mean backlog / rate over the last 40 % of the test (what "
        "the queue really held; /qdisc: 60000/RPM against it), peak: its largest sample; "
        "drain: HTB class bytes sent / s over that time / shaped rate; f/s/rx: foreign / "
        "self probes counted / self probes left out (retransmitted); rtx%: retransmitted "
        "segments / segments of the load; irtt ratio: against irtt's idle RTT + queue_ms; "
        "load: 1-min load average before / after the row."
    )


def _err(mbps: float | None, truth: float) -> str:
    return f"{(mbps / truth - 1) * 100:+.1f}" if mbps else "fail"


def print_table(names, nr, ip3, secs, wall) -> None:
    hdr = (
        f"{'site':9} {'dir':4} {'truth':>7} | {'netready':>8} {'err%':>5} {'MB':>6} "
        f"{'s':>4} {'str':>3} | {'ip3 P1':>7} {'err%':>5} {'MB':>6} | {'ip3 P4':>7} "
        f"{'err%':>5} {'MB':>6} {'s':>4} | {'MB nr/P1':>8}"
    )
    print(
        f"\nthroughput: netready vs iperf3 -t {secs:g} vs truth (rate x {OVERHEAD}); "
        f"Mbit/s, MB = 1e6 bytes"
    )
    print(hdr)
    print("-" * len(hdr))
    errs, ratios = [], []
    for n in names:
        p = SITES[n]
        for d in ("down", "up"):
            truth = (p.down_mbit if d == "down" else p.up_mbit) * OVERHEAD
            r = nr[n].get(d, {"fields": {}, "tags": {}})
            f = r["fields"]
            g = f.get("goodput_mbps")
            i1 = ip3[(n, d, 1)]["fields"]
            i4 = ip3[(n, d, 4)]["fields"]
            nb, b1 = f.get("bytes", 0) / 1e6, i1.get("bytes", 0) / 1e6
            ratio = nb / b1 if b1 else float("nan")
            if g:
                errs.append(abs(g / truth - 1) * 100)
                ratios.append(ratio)
            print(
                f"{n:9} {d:4} {truth:7.2f} | {g or 0:8.2f} {_err(g, truth):>5} {nb:6.1f} "
                f"{f.get('duration_s', 0):4.1f} {f.get('streams', 0):3} | "
                f"{i1.get('goodput_mbps', 0):7.2f} {_err(i1.get('goodput_mbps'), truth):>5} "
                f"{b1:6.1f} | {i4.get('goodput_mbps', 0):7.2f} "
                f"{_err(i4.get('goodput_mbps'), truth):>5} {i4.get('bytes', 0) / 1e6:6.1f} "
                f"{i4.get('duration_s', 0):4.1f} | {ratio:8.2f}"
            )
    for n in names:
        for d in ("down", "up"):
            for what, r in (
                ("netready", nr[n].get(d)),
                ("iperf3 -P1", ip3[(n, d, 1)]),
                ("iperf3 -P4", ip3[(n, d, 4)]),
            ):
                if r is None or r["tags"].get("result") != "ok":
                    why = (r or {}).get("fields", {}).get("reason", "no record")
                    print(f"  {n} {d} {what} failed: {why}")
    if errs:
        print(
            f"\nnetready: max |error| {max(errs):.2f}% (target 2%), mean {sum(errs) / len(errs):.2f}%;"
            f" bytes vs iperf3 -P1: max {max(ratios):.2f}x, mean {sum(ratios) / len(ratios):.2f}x"
            f" (target <= 0.5x). Wall time {wall:.0f} s."
        )


CPU_PORT = 18099
CPU_URL = f"http://127.0.0.1:{CPU_PORT}"


def _cpu_endpoint() -> subprocess.Popen[str]:
    """`netready serve` on loopback with limits far above what the comparison moves."""
    limits = ["--max-mb", "1000000", "--max-rate-mbps", "100000", "--max-streams", "32"]
    srv = subprocess.Popen(
        [
            *NETREADY,
            "serve",
            "--listen",
            f"127.0.0.1:{CPU_PORT}",
            "--token",
            f"env:{TOKEN_ENV}",
            *limits,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert srv.stderr and "listening" in srv.stderr.readline()
    return srv


async def _probe_client(total: int, streams: int, token: str) -> None:
    """The throughput probe's own transfer (BufferedProtocol into one buffer, no copies)."""
    import asyncio

    from netready.probes.throughput import Endpoint, Spec, _Run

    spec = Spec(
        target=CPU_URL, token=f"env:{TOKEN_ENV}", start_streams=streams, max_streams=streams
    )
    run = _Run(spec, Endpoint.from_spec(spec), "down", total, None)
    run.rate_Bps = 4e9  # large segments, as at full speed
    await run.grow(streams)
    while not all(s.idle for s in run.streams):
        await asyncio.sleep(0.01)
    run.running = False
    run._abort_data()


async def _streams_client(total: int, streams: int, token: str) -> None:
    """asyncio streams: one GET /download per connection, read in 256 KiB pieces."""
    import asyncio

    per = total // streams

    async def one() -> None:
        r, w = await asyncio.open_connection("127.0.0.1", CPU_PORT)
        w.write(
            f"GET /download?bytes={per}&test=s HTTP/1.1\r\nHost: x\r\nAuthorization: "
            f"Bearer {token}\r\n\r\n".encode()
        )
        await r.readuntil(b"\r\n\r\n")
        left = per
        while left:
            n = len(await r.read(min(left, 262144)))
            if not n:
                raise RuntimeError("connection closed early")
            left -= n
        w.close()

    await asyncio.gather(*(one() for _ in range(streams)))


async def _aiohttp_client(total: int, streams: int, token: str) -> None:
    """aiohttp's client session, chunked reads."""
    import asyncio

    import aiohttp

    per = total // streams
    hdr = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(CPU_URL, headers=hdr) as http:

        async def one() -> None:
            async with http.get(f"/download?bytes={per}&test=a") as resp:
                resp.raise_for_status()
                async for _ in resp.content.iter_chunked(262144):
                    pass

        await asyncio.gather(*(one() for _ in range(streams)))


def _cpu_and_rate(client: Any, total: int, streams: int, token: str) -> tuple[float, float]:
    """(CPU seconds of this process, elapsed seconds) to download ``total`` bytes."""
    import asyncio
    import resource

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    asyncio.run(client(total, streams, token))
    el = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), el


def cpu_compare(total_mb: int = 1000, streams: int = 4) -> None:
    """Client CPU seconds per GB downloaded over loopback from `netready serve`: the probe's
    BufferedProtocol (no copies), asyncio streams, and aiohttp's client."""
    import aiohttp  # noqa: F401 - imported before the clock starts, not counted as transfer CPU
    import netready.probes.throughput  # noqa: F401

    tok = "cpu-token-0123456789"
    os.environ[TOKEN_ENV] = tok
    srv = _cpu_endpoint()
    try:
        print(
            f"\nclient CPU, {total_mb} MB over {streams} loopback connections "
            "(server in another process):"
        )
        for name, client in (
            ("probe (BufferedProtocol)", _probe_client),
            ("asyncio streams", _streams_client),
            ("aiohttp client", _aiohttp_client),
        ):
            time.sleep(1.2)  # let the endpoint forget the previous test
            cpu, el = _cpu_and_rate(client, total_mb * 1_000_000, streams, tok)
            print(
                f"  {name:26} {cpu / (total_mb / 1000):5.2f} CPU s/GB  "
                f"{total_mb * 8 / el / 1000:5.2f} Gbit/s"
            )
    finally:
        srv.terminate()
        srv.wait(timeout=10)


if __name__ == "__main__":
    main()
