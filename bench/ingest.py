#!/usr/bin/env python3
"""Ingest benchmark: spool -> real InfluxDB, against the server's own ceiling, in one run.

The ceiling is the same line protocol POSTed in the same batch sizes by a bare HTTP client
(httpx, one connection, no spool, no bookkeeping). netready's shipper reads the oldest batch
from the SQLite spool, sends it, and deletes it only after the 204 — the real shipping path.
Target (issue 2): the shipper reaches at least 80 % of the ceiling.

    python bench/ingest.py [--points 200000] [--batch 5000]

Stopped by SIGTERM/SIGINT/SIGHUP, it stops its influxd and removes its temporary files.
"""

from __future__ import annotations

import argparse
import shutil
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netready-bench-ingest-"))
    srv = Influxd()
    try:
        srv.start()
        recs = make_records(args.points)
        spool_path = work / "spool.db"
        with Spool(spool_path, synchronous="NORMAL", max_bytes=10**10) as sp:
            for i in range(0, len(recs), 20_000):
                sp.enqueue(recs[i : i + 20_000])
            lines = [line for _, line in sp.oldest(args.points)]
        shutil.copy(spool_path, work / "spool2.db")
        results: list[tuple[str, float]] = []

        # 1. the server's ceiling: a bare HTTP client, same lines, same batch size
        srv.create_db("ceiling")
        with httpx.Client(timeout=60) as c:
            t = time.perf_counter()
            for i in range(0, len(lines), args.batch):
                r = c.post(
                    f"{srv.url}/write",
                    params={"db": "ceiling", "precision": "ms"},
                    content="\n".join(lines[i : i + args.batch]).encode(),
                )
                r.raise_for_status()
            results.append(("bare HTTP client (ceiling)", time.perf_counter() - t))

        # 2/3. netready's shipper from the spool, without and with gzip
        for name, path, gz in (
            ("netready shipper", spool_path, False),
            ("netready shipper, gzip", work / "spool2.db", True),
        ):
            db = "ship_gz" if gz else "ship"
            srv.create_db(db)
            cfg = StoreConfig(kind="influxdb_v1", url=srv.url, database=db, gzip=gz, timeout_s=60)
            with Spool(path) as sp, InfluxV1(cfg) as w:
                t = time.perf_counter()
                res = Shipper(sp, w, batch_size=args.batch).drain()
                dt = time.perf_counter() - t
                assert res.shipped == args.points and res.error is None, res
                assert sp.stats().pending == 0
            results.append((name, dt))

        for db in ("ceiling", "ship", "ship_gz"):
            n = srv.query('SELECT count("sent") FROM "rtt"', db)["results"][0]["series"][0][
                "values"
            ][0][1]
            assert n == args.points, (db, n)
        base = args.points / results[0][1]
        print(
            f"\ningest: {args.points:,} points, batch {args.batch:,}, InfluxDB "
            f"{httpx.get(srv.url + '/ping').headers.get('X-Influxdb-Version')} on loopback\n"
        )
        print(f"{'writer':32} {'seconds':>8} {'points/s':>10} {'vs ceiling':>11}")
        for name, dt in results:
            pps = args.points / dt
            print(f"{name:32} {dt:8.2f} {pps:10,.0f} {pps / base:10.0%}")
        print(
            "\ntarget: shipper >= 80% of the ceiling; every point verified in InfluxDB "
            "(count equals points written)"
        )
    finally:
        srv.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with exit_on_signals():  # SIGTERM/SIGHUP: stop influxd, remove the temp files
        main()
