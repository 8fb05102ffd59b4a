#!/usr/bin/env python3
"""Ingest benchmark: spool -> real InfluxDB, against the server's own ceiling, in one run.

The ceiling is the same line protocol POSTed in the same batch sizes by a bare HTTP client
(httpx, one connection, no spool, no bookkeeping). netready's shipper reads the oldest batch
from the SQLite spool, sends it, and deletes it only after the 204 — the real shipping path.
Target (issue 13): the shipper reaches at least 90 % of the ceiling. Beside it, the variants
that were profiled: the sequential loop it replaced, gzip levels, a larger batch.

    python bench/ingest.py [--points 200000] [--batch 5000] [--rounds 3]

Stopped by SIGTERM/SIGINT/SIGHUP, it stops its influxd and removes its temporary files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from influxd import Influxd  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402

from netready.influx import InfluxV1  # noqa: E402
from netready.inventory import StoreConfig  # noqa: E402
from netready.records import Record  # noqa: E402
from netready.shipper import Shipper  # noqa: E402
from netready.spool import Spool  # noqa: E402


def make_records(n: int) -> list[Record]:
    """Realistic rtt records: 6,000 sites' worth of tags, ~15 fields each."""
    t0 = 1_700_000_000_000
    out = []
    for i in range(n):
        site = f"Y{i % 6000:05d}"
        out.append(
            Record(
                "rtt",
                {
                    "site": site,
                    "icb": f"Q{i % 42:02d}",
                    "tech": "fttc",
                    "target": "core",
                    "method": "twamp_light",
                },
                {
                    "sent": 750,
                    "received": 749,
                    "loss_pct": 0.133,
                    "rtt_min_ms": 11.2,
                    "rtt_p50_ms": 14.5 + (i % 7),
                    "rtt_p95_ms": 22.1,
                    "rtt_max_ms": 40.3,
                    "rtt_mean_ms": 15.2,
                    "jitter_rfc3550_ms": 1.7,
                    "ipdv_p95_ms": 3.1,
                    "burst_loss_200ms_pct": 10.0,
                    "reorder_pct": 0.0,
                    "duplicates": 0,
                    "duration_s": 15.0,
                },
                t0 + (i // 6000) * 15_000,
            )
        )
    return out


def sequential(sh: Shipper) -> int:
    """The shipper's loop before pipelining: read, send, wait, delete, record ``last_error``,
    one batch after the other (``ship_batch``)."""
    n = 0
    while True:
        k = sh.ship_batch()
        if not k:
            return n
        sh.spool.set_meta("last_error", None)
        n += k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3, help="ceiling and shipper, this many times")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netready-bench-ingest-"))
    srv = Influxd()
    load0 = os.getloadavg()[0]
    try:
        srv.start()
        recs = make_records(args.points)
        pristine = work / "pristine.db"
        with Spool(pristine, synchronous="NORMAL", max_bytes=10**10) as sp:
            for i in range(0, len(recs), 20_000):
                sp.enqueue(recs[i : i + 20_000])
            lines = [line for _, line in sp.oldest(args.points)]
        #: (name, batch, gzip level or None, pipelined)
        variants = [
            ("shipper, sequential (before)", args.batch, None, False),
            ("shipper, pipelined", args.batch, None, True),
            ("shipper, pipelined, gzip 1", args.batch, 1, True),
            ("shipper, pipelined, gzip 6", args.batch, 6, True),
            ("shipper, pipelined, batch 20000", 20_000, None, True),
        ]
        times: dict[str, list[float]] = {"bare HTTP client (ceiling)": []}
        runs = 0

        def fresh_db() -> str:
            nonlocal runs
            runs += 1
            db = f"r{runs}"
            srv.create_db(db)
            return db

        for rnd in range(args.rounds):
            print(f"  round {rnd + 1}/{args.rounds}", file=sys.stderr)
            # 1. the server's ceiling: a bare HTTP client, same lines, same batch size
            db = fresh_db()
            with httpx.Client(timeout=60) as c:
                t = time.perf_counter()
                for i in range(0, len(lines), args.batch):
                    r = c.post(
                        f"{srv.url}/write",
                        params={"db": db, "precision": "ms"},
                        content="\n".join(lines[i : i + args.batch]).encode(),
                    )
                    r.raise_for_status()
                times["bare HTTP client (ceiling)"].append(time.perf_counter() - t)
            # 2. netready's shipper from the spool (the agent's synchronous=FULL)
            for name, batch, level, piped in variants:
                db = fresh_db()
                path = work / f"{db}.db"
                shutil.copy(pristine, path)
                cfg = StoreConfig(
                    kind="influxdb_v1",
                    url=srv.url,
                    database=db,
                    gzip=level is not None,
                    timeout_s=60,
                )
                with Spool(path) as sp, InfluxV1(cfg) as w:
                    if level is not None:
                        w.gzip_level = level
                    sh = Shipper(sp, w, batch_size=batch)
                    t = time.perf_counter()
                    if piped:
                        res = sh.drain()
                        assert res.shipped == args.points and res.error is None, res
                    else:
                        assert sequential(sh) == args.points
                    times.setdefault(name, []).append(time.perf_counter() - t)
                    assert sp.stats().pending == 0
                path.unlink()
        for k in range(1, runs + 1):
            q = srv.query('SELECT count("sent") FROM "rtt"', f"r{k}")
            n = q["results"][0]["series"][0]["values"][0][1]
            assert n == args.points, (k, n)
        ceiling = times["bare HTTP client (ceiling)"]
        print(
            f"\ningest: {args.points:,} points, batch {args.batch:,}, InfluxDB "
            f"{httpx.get(srv.url + '/ping').headers.get('X-Influxdb-Version')} on loopback, "
            f"{args.rounds} rounds; load average {load0:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at end on {os.cpu_count()} cores\n"
        )
        print(f"{'writer':34} {'median s':>9} {'points/s':>10} {'vs ceiling, per round':>30}")
        for name, ts in times.items():
            med = statistics.median(ts)
            per = " ".join(f"{c / t:5.0%}" for c, t in zip(ceiling, ts, strict=True))
            print(f"{name:34} {med:9.2f} {args.points / med:10,.0f} {per:>30}")
        print(
            "\ntarget: shipper >= 90% of the ceiling (same round, same lines); every point "
            "verified in InfluxDB (count equals points written)"
        )
    finally:
        srv.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with exit_on_signals():  # SIGTERM/SIGHUP: stop influxd, remove the temp files
        main()
