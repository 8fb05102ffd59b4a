#!/usr/bin/env python3
"""Fleet benchmark: the national estate's agents writing into one real InfluxDB, in one run.

Three parts, each against a private influxd (Debian 1.6, tests/influxd.py):

1. **Cardinality budget**: one simulated day of every probe and collector a site runs at its
   default interval, for ``--card-sites`` sites, then ``SHOW SERIES EXACT CARDINALITY`` per
   measurement, divided by sites. Side by side: the same day written with ``tech`` as a tag (the
   schema before ``records.FIELD_TAGS``), with a tenth of the sites upgraded fttc -> fttp at
   midday (an upgrade forks every series when tech is a tag). Goal: <= 30 series per site.
2. **Fleet**: ``--agents`` simulated agents (default 7,000), each with its own SQLite spool and
   netready ``Shipper`` (the real shipping path), in ``--workers`` processes. Their records are
   a real site day replayed ``--compress`` times faster than real time, shipped every
   ``ship_interval_s`` (30 s, the agent's default, not compressed: each write carries more
   points, the request rate is the real one). Reported: offered and stored points/s, ingest lag
   (record time -> the store's 204) p50/p99, write latency p99, series cardinality, influxd RSS.
3. **One agent's own cost**: one site's day, uncompressed cadence (2,880 ship cycles of 30 s),
   through spool and shipper: CPU seconds and bytes on the wire (request and response, headers
   included) per day.

The record shapes: ``if_traffic`` and ``dsl_line`` come from the real SNMP collector
(``collectors/snmp`` ``records_from_varbinds``) on a recorded DrayTek VDSL walk
(tests/data/snmprec/draytek_vdsl.snmprec); ``dsl_line`` over SSH is the same record with
``method=ssh``; the probes' records carry the tags their ``run`` sets (rtt/TWAMP-light
``target, method``; icmp; media per direction and profile, one capacity search a day; http
per target; throughput per direction) and the fields their declarations list; ``agent`` is the
self record every ``self_report_s``. Not simulated: ``iperf3``/``speedtest`` (alternative
throughput back ends, same measurement and shape as ``throughput``) and ``pcap`` (capture files
analysed on demand).

    .venv/bin/python bench/fleet.py [--agents 7000] [--compress 24] [--duration 120]

Stopped by SIGTERM/SIGINT/SIGHUP, it stops its influxd and removes its temporary files.
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing as mp
import os
import queue
import random
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from influxd import Influxd  # noqa: E402
from netready.collectors import snmp  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402

from netready import influx  # noqa: E402
from netready.influx import InfluxV1  # noqa: E402
from netready.inventory import StoreConfig  # noqa: E402
from netready.records import Record  # noqa: E402
from netready.shipper import Shipper  # noqa: E402
from netready.spool import Spool  # noqa: E402
from netready.stats import percentile  # noqa: E402

DAY_S = 86_400
SHIP_INTERVAL_S = 30.0
#: concurrent writes per simulating process in the store-only part (7,000 agents write at
#: once from 7,000 machines; one thread each would only add GIL contention)
BARE_THREADS = 16
SELF_REPORT_S = 300.0
SNMPREC = ROOT / "tests" / "data" / "snmprec" / "draytek_vdsl.snmprec"
HTTP_TARGETS = ("teams", "attend-anywhere", "accurx")


def _every(t0: int, every_s: float, rnd: random.Random) -> range:
    off = rnd.randrange(int(every_s * 1000))
    return range(t0 + off, t0 + DAY_S * 1000, int(every_s * 1000))


def site_day(tags: dict[str, str], t0: int, seed: int = 1) -> list[Record]:
    """One day of one site's records at the default intervals, oldest first."""
    rnd = random.Random(seed)
    out: list[Record] = []
    for t in _every(t0, 300, rnd):  # rtt (TWAMP-light), one 15 s window per run
        rt = {**tags, "target": "core-reflector", "method": "twamp_light"}
        if rnd.random() < 0.01:
            out.append(
                Record(
                    "rtt",
                    {**rt, "result": "timeout"},
                    {"reason": "no reply in 17.0 s", "sent": 750, "received": 0},
                    t,
                )
            )
            continue
        rtt = 15 + rnd.random() * 5
        out.append(
            Record(
                "rtt",
                rt,
                {
                    "sent": 750,
                    "received": 750,
                    "loss_pct": 0.0,
                    "rtt_min_ms": rtt * 0.9,
                    "rtt_p50_ms": rtt,
                    "rtt_p95_ms": rtt * 1.3,
                    "rtt_max_ms": rtt * 1.8,
                    "rtt_mean_ms": rtt * 1.05,
                    "jitter_rfc3550_ms": 2.1,
                    "ipdv_p95_ms": 4.0,
                    "burst_loss_200ms_pct": 0.0,
                    "reorder_pct": 0.0,
                    "duplicates": 0,
                    "duration_s": 15.0,
                },
                t,
            )
        )
    for t in _every(t0, 300, rnd):  # icmp
        out.append(
            Record(
                "rtt",
                {**tags, "target": "core", "method": "icmp", "result": "ok"},
                {
                    "sent": 10,
                    "received": 10,
                    "loss_pct": 0.0,
                    "rtt_p50_ms": 16.0,
                    "rtt_min_ms": 14.0,
                    "rtt_max_ms": 22.0,
                },
                t,
            )
        )
    for name in HTTP_TARGETS:  # http front doors
        for t in _every(t0, 300, rnd):
            out.append(
                Record(
                    "http_response",
                    {**tags, "target": name, "method": "get", "result": "ok"},
                    {
                        "dns_ms": 12.0,
                        "connect_ms": 18.0,
                        "tls_ms": 35.0,
                        "ttfb_ms": 120.0,
                        "status": 200,
                    },
                    t,
                )
            )
    for t in _every(t0, 3600, rnd):  # media: one call, both directions
        mt = {**tags, "target": "core-media", "profile": "hd", "method": "udp"}
        for d in ("up", "down"):
            out.append(
                Record(
                    "media",
                    {**mt, "direction": d, "result": "ok"},
                    {
                        "mos": 4.2,
                        "loss_pct": 0.0,
                        "jitter_rfc3550_ms": 2.0,
                        "rtt_p50_ms": 16.0,
                        "goodput_mbps": 1.5,
                        "calls": 1,
                    },
                    t,
                )
            )
    for t in _every(t0, DAY_S, rnd):  # media capacity search
        out.append(
            Record(
                "media",
                {
                    **tags,
                    "target": "core-media",
                    "profile": "hd",
                    "method": "find_capacity",
                    "result": "ok",
                },
                {"capacity_calls": 4},
                t,
            )
        )
    for t in _every(t0, 21600, rnd):  # throughput
        for d in ("down", "up"):
            out.append(
                Record(
                    "throughput",
                    {**tags, "target": "core-speed", "method": "http", "direction": d},
                    {
                        "goodput_mbps": 38.0,
                        "bytes": 47_500_000,
                        "duration_s": 10.0,
                        "rtt_loaded_ms": 40.0,
                    },
                    t,
                )
            )
    vb = snmp.parse_snmprec(SNMPREC.read_text("utf-8", "surrogateescape"))
    prev = None
    base_up = int(vb[snmp.SYS_UPTIME])
    ssh_done = -1
    for k, t in enumerate(range(t0 + rnd.randrange(60_000), t0 + DAY_S * 1000, 60_000)):
        recs, prev = snmp.records_from_varbinds(
            {**vb, snmp.SYS_UPTIME: base_up + k * 6000},
            base_tags=tags,
            device="router",
            prev=prev,
            time_ms=t,
        )
        out += recs
        if t // 3_600_000 != ssh_done:  # the ssh collector, hourly: the same line, over ssh
            ssh_done = t // 3_600_000
            out += [
                Record("dsl_line", {**r.tags, "method": "ssh"}, r.fields, t + 1)
                for r in recs
                if r.measurement == "dsl_line"
            ]
    for t in _every(t0, SELF_REPORT_S, rnd):
        out.append(
            Record(
                "agent",
                {**tags, "host": "netready-box"},
                {
                    "spool_pending": 3,
                    "spool_pending_bytes": 900,
                    "spool_dropped": 0,
                    "dead_lettered": 0,
                    "shipped": 1000,
                    "enqueued": 1003,
                    "loop_restarts": 0,
                    "task_errors": 0,
                    "held_records": 0,
                    "lost_records": 0,
                    "version": "0.1",
                    "tasks": 8,
                    "last_ship_ms": t - 10_000,
                    "rss_mb": 62.0,
                },
                t,
            )
        )
    out.sort(key=lambda r: r.time_ms)
    return out


def retag(recs: list[Record], ods: str, icb: str, tech: str | None = None) -> list[Record]:
    out = []
    for r in recs:
        tags = {**r.tags, "site": ods, "icb": icb}
        if tech:
            tags["tech"] = tech
        out.append(Record(r.measurement, tags, r.fields, r.time_ms))
    return out


# ---------------------------------------------------------------------- 1. cardinality


def cardinality(srv: Influxd, sites: int, day: list[Record], t0: int) -> dict[str, Any]:
    """Series per site, per measurement, with tech as a field (now) and as a tag (before)."""
    res: dict[str, Any] = {}
    for label, field_tags in (
        ("tech as a field", influx.FIELD_TAGS),
        ("tech as a tag", frozenset()),
    ):
        db = "card_field" if field_tags else "card_tag"
        srv.create_db(db)
        influx.FIELD_TAGS = field_tags
        try:
            with InfluxV1(
                StoreConfig(kind="influxdb_v1", url=srv.url, database=db, timeout_s=120)
            ) as c:
                for i in range(sites):
                    recs = retag(day, f"C{i:05d}", "QHM", "fttc")
                    if i % 10 == 0:  # upgraded at midday
                        half = t0 + DAY_S * 500
                        recs = [r if r.time_ms < half else r.with_tags(tech="fttp") for r in recs]
                    for j in range(0, len(recs), 20_000):
                        c.write_lines(influx.encode_many(recs[j : j + 20_000]))
                per: dict[str, float] = {}
                for m in sorted({r.measurement for r in day}):
                    q = c.query(f'SHOW SERIES EXACT CARDINALITY FROM "{m}"', epoch=None)
                    per[m] = sum(int(v[0]) for s in q for v in s.values) / sites
                total = c.query("SHOW SERIES EXACT CARDINALITY", epoch=None)
                per["all"] = sum(int(v[0]) for s in total for v in s.values) / sites
        finally:
            influx.FIELD_TAGS = frozenset({"tech"})
        res[label] = per
    res["points per site per day"] = len(day)
    return res


# ---------------------------------------------------------------------- 2. fleet


def fleet_db(bare: bool) -> str:
    """The database of a fleet run: the store-alone run writes to its own."""
    return "fleet_bare" if bare else "fleet"


def _worker(args: tuple[int, int, int, str, str, float, float, Any, int, Any, Any, bool]) -> None:
    _wid, first, count, url, work, compress, duration, start, seed, q, go, bare = args
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    day0 = 1_700_000_000_000 - 1_700_000_000_000 % (DAY_S * 1000)
    day = site_day({"site": "T", "icb": "Q", "tech": "fttc"}, day0, seed)
    span_ms = DAY_S * 1000
    times = [r.time_ms - day0 for r in day]
    db = fleet_db(bare)
    cfg = StoreConfig(kind="influxdb_v1", url=url, database=db, timeout_s=120, gzip=True)
    writer = InfluxV1(cfg)
    rnd = random.Random(seed)
    n = len(day)
    agents: list[dict[str, Any]] = []
    for a in range(first, first + count):
        sp = None if bare else Spool(Path(work) / f"a{a}.db", synchronous="NORMAL")
        i0 = rnd.randrange(n)  # each agent starts at its own point of the day
        agents.append(
            {
                "ods": f"F{a:05d}",
                "icb": f"Q{a % 42:02d}",
                "spool": sp,
                "ship": None if sp is None else Shipper(sp, writer),
                "i": i0,
                "pos0": times[i0],
                "splay": rnd.uniform(0, SHIP_INTERVAL_S),
            }
        )
    q.put("ready")  # every spool open: the clock starts for all workers at once
    go.wait()
    start_at = start.value
    for ag in agents:
        ag["next"] = start_at + ag["splay"]
    # a heap of (next ship time, agent index): min() over 2,000+ agents per cycle was the
    # simulator's own bottleneck
    due = [(ag["next"], k) for k, ag in enumerate(agents)]
    heapq.heapify(due)

    def offset(i: int) -> int:  # simulated ms since day0 of the agent's i-th record
        return (i // n) * span_ms + times[i % n]

    offered = stored = 0
    lags: list[float] = []
    post: list[float] = []
    behind: list[float] = []  # how late the simulator started each ship (its own lag)
    pool = ThreadPoolExecutor(max_workers=BARE_THREADS)
    pending: list[Any] = []

    def post_bare(batch: list[Record], emits: list[float]) -> int:
        t = time.time()
        writer.write(batch)  # raises on anything but 204: the run fails loudly
        done = time.time()
        post.append(done - t)
        lags.extend(done - e for e in emits)
        return len(batch)

    cpu0 = time.process_time()
    end = start_at + duration
    base_ms = int(start_at * 1000)
    while True:
        now = time.time()
        if now >= end:
            break
        ag = agents[due[0][1]]
        if ag["next"] > now:
            time.sleep(min(ag["next"] - now, end - now))
            continue
        behind.append(now - ag["next"])
        # the records "measured" up to this ship, at the compressed cadence
        upto = ag["pos0"] + (ag["next"] - start_at) * compress * 1000
        batch: list[Record] = []
        emits: list[float] = []
        i = ag["i"]
        while offset(i) < upto:
            r, sim = day[i % n], offset(i) - ag["pos0"]
            batch.append(
                Record(
                    r.measurement,
                    {**r.tags, "site": ag["ods"], "icb": ag["icb"]},
                    r.fields,
                    base_ms + sim,
                )
            )
            emits.append(start_at + sim / 1000 / compress)
            i += 1
        ag["i"] = i
        if bare:  # the store alone: the batch POSTed as it is, many agents' writes at once
            if batch:
                offered += len(batch)
                pending.append(pool.submit(post_bare, batch, emits))
            ag["next"] += SHIP_INTERVAL_S
            heapq.heapreplace(due, (ag["next"], due[0][1]))
            continue
        if batch:
            ag["spool"].enqueue(batch)
            offered += len(batch)
        t = time.time()
        res = ag["ship"].drain(deadline=time.monotonic() + 20)
        done = time.time()
        post.append(done - t)
        stored += res.shipped
        lags.extend(done - e for e in emits[: res.shipped])
        ag["next"] += SHIP_INTERVAL_S
        heapq.heapreplace(due, (ag["next"], due[0][1]))
    stored += sum(f.result() for f in pending)
    pool.shutdown()
    cpu = time.process_time() - cpu0
    for ag in agents:
        if ag["spool"] is not None:
            ag["spool"].close()
    writer.close()
    q.put(
        {
            "offered": offered,
            "stored": stored,
            "lags": lags,
            "post": post,
            "behind": behind,
            "cpu": cpu,
            "agents": count,
        }
    )


def fleet(
    srv: Influxd,
    agents: int,
    workers: int,
    compress: float,
    duration: float,
    work: Path,
    bare: bool = False,
) -> dict[str, Any]:
    db = fleet_db(bare)
    srv.create_db(db)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    per = (agents + workers - 1) // workers
    start = ctx.Value("d", 0.0)
    go = ctx.Event()
    procs = []
    for w in range(workers):
        first, count = w * per, min(per, agents - w * per)
        if count <= 0:
            break
        p = ctx.Process(
            target=_worker,
            args=(
                (
                    w,
                    first,
                    count,
                    srv.url,
                    str(work),
                    compress,
                    duration,
                    start,
                    w + 1,
                    q,
                    go,
                    bare,
                ),
            ),
        )
        p.start()
        procs.append(p)
    for _ in procs:
        assert q.get(timeout=3600) == "ready"
    start.value = time.time() + 1
    go.set()
    import psutil

    infl = psutil.Process(srv.proc.pid)
    rss_peak = 0.0
    cpu0 = infl.cpu_times()
    parts: list[Any] = []
    while len(parts) < len(procs):
        try:
            parts.append(q.get(timeout=2))
        except queue.Empty:  # sample influxd meanwhile
            pass
        rss_peak = max(rss_peak, infl.memory_info().rss / 2**20)
    for p in procs:
        p.join()
    cpu1 = infl.cpu_times()
    lags = sorted(x for p in parts for x in p["lags"])
    post = sorted(x for p in parts for x in p["post"])
    behind = sorted(x for p in parts for x in p["behind"])
    with InfluxV1(StoreConfig(kind="influxdb_v1", url=srv.url, database=db, timeout_s=120)) as c:
        card = sum(
            int(v[0])
            for s in c.query("SHOW SERIES EXACT CARDINALITY", epoch=None)
            for v in s.values
        )
    return {
        "agents": agents,
        "offered": sum(p["offered"] for p in parts),
        "stored": sum(p["stored"] for p in parts),
        "duration": duration,
        "lag_p50": percentile(lags, 50) if lags else None,
        "lag_p99": percentile(lags, 99) if lags else None,
        "post_p99": percentile(post, 99) if post else None,
        "behind_p99": percentile(behind, 99) if behind else None,
        "writes": len(post),
        "series": card,
        "rss_peak": rss_peak,
        "rss_end": infl.memory_info().rss / 2**20,
        "influxd_cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "shipper_cpu": sum(p["cpu"] for p in parts),
    }


# ---------------------------------------------------------------------- 3. one agent


def one_agent(srv: Influxd, day: list[Record], work: Path) -> dict[str, float]:
    """A day of one site, shipped every 30 s as the agent does: CPU s and bytes per day."""
    srv.create_db("one")
    sent = {"req": 0, "resp": 0}

    def on_request(r: httpx.Request) -> None:
        sent["req"] += len(r.content) + sum(len(k) + len(v) + 4 for k, v in r.headers.raw)
        sent["req"] += len(r.method) + len(r.url.raw_path) + 12

    def on_response(r: httpx.Response) -> None:
        sent["resp"] += sum(len(k) + len(v) + 4 for k, v in r.headers.raw) + 17
        sent["resp"] += len(r.read())

    cfg = StoreConfig(kind="influxdb_v1", url=srv.url, database="one", timeout_s=60)
    w = InfluxV1(cfg)
    w._http.event_hooks = {"request": [on_request], "response": [on_response]}
    t0 = day[0].time_ms - day[0].time_ms % (DAY_S * 1000)
    cycles = int(DAY_S / SHIP_INTERVAL_S)
    step = int(SHIP_INTERVAL_S * 1000)
    i = 0
    cpu = 0.0
    with Spool(work / "one.db", synchronous="FULL") as sp:  # the agent's default durability
        sh = Shipper(sp, w)
        for k in range(cycles):
            j = i
            while j < len(day) and day[j].time_ms < t0 + (k + 1) * step:
                j += 1
            c0 = time.process_time()
            if j > i:
                sp.enqueue(day[i:j])
            sh.drain()
            cpu += time.process_time() - c0
            i = j
        pending = sp.stats().pending
    w.close()
    assert pending == 0
    return {
        "cpu_s": cpu,
        "bytes_up": sent["req"],
        "bytes_down": sent["resp"],
        "points": len(day),
        "writes": cycles,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=7000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument(
        "--compress",
        type=float,
        default=24.0,
        help="simulated seconds per real second (24: a day an hour)",
    )
    ap.add_argument("--duration", type=float, default=120.0, help="real seconds of fleet run")
    ap.add_argument("--card-sites", type=int, default=100)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: card,fleet,store,one")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="netready-bench-fleet-"))
    load0 = os.getloadavg()
    srv = Influxd()
    out: dict[str, Any] = {}
    try:
        srv.start()
        t0 = 1_700_000_000_000 - 1_700_000_000_000 % (DAY_S * 1000)
        day = site_day({"site": "T", "icb": "QHM", "tech": "fttc"}, t0)
        if "card" not in skip:
            print("  cardinality ...", file=sys.stderr)
            out["card"] = cardinality(srv, a.card_sites, day, t0)
        if "one" not in skip:
            print("  one agent's day ...", file=sys.stderr)
            out["one"] = one_agent(srv, retag(day, "A81001", "QHM"), work)
        if "fleet" not in skip:
            print(f"  fleet of {a.agents} agents for {a.duration:.0f} s ...", file=sys.stderr)
            out["fleet"] = fleet(srv, a.agents, a.workers, a.compress, a.duration, work)
        if "store" not in skip:
            print(
                f"  the store alone: {a.agents} agents' writes for {a.duration:.0f} s ...",
                file=sys.stderr,
            )
            out["store"] = fleet(srv, a.agents, a.workers, a.compress, a.duration, work, bare=True)
    finally:
        srv.close()
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    print(
        f"\nfleet benchmark, InfluxDB 1.6 on loopback, {os.cpu_count()} cores; load average "
        f"{load0[0]:.1f} at start, {load1[0]:.1f} at end"
    )
    if "card" in out:
        c = out["card"]
        print(
            f"\n1. series per site after one simulated day ({a.card_sites} sites, a tenth "
            f"upgraded fttc -> fttp at midday; {c['points per site per day']:,} points per "
            "site per day)"
        )
        ms = [m for m in c["tech as a field"] if m != "all"] + ["all"]
        print(f"{'measurement':16} {'tech as a field (now)':>22} {'tech as a tag (before)':>23}")
        for m in ms:
            print(f"{m:16} {c['tech as a field'][m]:22.2f} {c['tech as a tag'][m]:23.2f}")
        ok = c["tech as a field"]["all"] <= 30
        print(f"goal <= 30 series per site: {'met' if ok else 'NOT met'}")
    if "one" in out:
        o = out["one"]
        print(
            f"\n3. one agent's shipping cost per day ({o['points']:,} points, "
            f"{o['writes']:,} ship cycles of {SHIP_INTERVAL_S:.0f} s, gzip, spool synchronous=FULL)"
        )
        print(f"{'CPU s/day':>10} {'bytes up/day':>14} {'bytes down/day':>15} {'bytes/point':>12}")
        print(
            f"{o['cpu_s']:10.1f} {o['bytes_up']:14,} {o['bytes_down']:15,} "
            f"{o['bytes_up'] / o['points']:12.1f}"
        )
    for part, title in (
        ("fleet", "simulated agents: spool + Shipper each"),
        ("store", "the store alone: the same batches POSTed without spool or Shipper"),
    ):
        if part not in out:
            continue
        f = out[part]
        real = (
            f["agents"] * (out.get("card", {}).get("points per site per day") or len(day)) / DAY_S
        )
        print(
            f"\n2{'a' if part == 'fleet' else 'b'}. {title}: {f['agents']:,} agents, "
            f"{a.compress:g}x compressed time, {f['duration']:.0f} s, ship every "
            f"{SHIP_INTERVAL_S:.0f} s, {a.workers} processes (real estate: "
            f"{f['agents'] / SHIP_INTERVAL_S:,.0f} writes/s)"
        )
        print(
            f"{'offered pts/s':>14} {'stored pts/s':>13} {'real-time estate pts/s':>23} "
            f"{'writes/s':>9} {'lag p50 s':>10} {'lag p99 s':>10} {'write p99 s':>12} "
            f"{'series':>8} {'influxd RSS MiB (peak)':>23} {'influxd CPU s':>14} "
            f"{'sim CPU s':>10} {'sim behind p99 s':>17}"
        )
        print(
            f"{f['offered'] / f['duration']:14,.0f} {f['stored'] / f['duration']:13,.0f} "
            f"{real:23,.0f} {f['writes'] / f['duration']:9.0f} {f['lag_p50']:10.1f} "
            f"{f['lag_p99']:10.1f} {f['post_p99']:12.2f} {f['series']:8,} "
            f"{f['rss_peak']:23.0f} {f['influxd_cpu']:14.1f} {f['shipper_cpu']:10.1f} "
            f"{f['behind_p99']:17.1f}"
        )
    if "fleet" in out or "store" in out:
        print(
            "lag: a record's (compressed) measurement time to the store's 204; the agent ships "
            f"every {SHIP_INTERVAL_S:.0f} s, so ~{SHIP_INTERVAL_S / 2:.0f} s is the floor of p50. "
            "sim behind: how late the simulating processes started a ship against its schedule "
            "(their own CPU limit, not the store's); above a few seconds the row measures the "
            "simulator, and the store-alone row is the store's figure"
        )


if __name__ == "__main__":
    with exit_on_signals():  # SIGTERM/SIGHUP: stop influxd, remove the temp files
        main()
