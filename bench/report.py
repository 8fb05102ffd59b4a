"""Benchmark: ``netready report`` over a real InfluxDB holding 14 days of estate history.

For each estate size (default 100, 1,000 and 5,000 sites) this loads synthetic history
(``reports/synthetic.py``: rtt windows, throughput per direction with link_busy samples, media
capacity) into a private influxd (Debian 1.6, tests/influxd.py), then runs
``netready report --format json`` as a child process and measures its wall time and peak RSS
(``wait4`` rusage). Side by side, the reference: the very same InfluxQL statements the report
sent, POSTed by a bare HTTP client (the server's own time for the aggregation — the ceiling).

The agents' real cadences by default: an rtt window every ``--rtt-every`` seconds (300 s, the
probe's interval), a media capacity search a day, a throughput test per direction every 6 h.
Each size is timed twice on the same points: reading the **raw** points (the database as the
agents write it), and reading the **hourly** series after ``netready store init`` and a
``backfill`` (the continuous queries' ``SELECT ... INTO`` over the 14 days, timed), with the raw
retention set to 7 days so that a 14-day window starts before the raw horizon (what the
report does for any window longer than the raw retention). The two reports are compared site by
site (verdicts, rtt p95) to show what the hourly approximation changes. Report time should grow
with sites, not with raw points.

    .venv/bin/python bench/report.py [--sizes 1000,7000] [--rtt-every 300]

Stopped by SIGTERM/SIGINT/SIGHUP, it stops its influxd and removes its temporary files.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from influxd import Influxd  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402
from netready.reports import synthetic  # noqa: E402
from netready.reports.query import InfluxStore  # noqa: E402

from netready import inventory as inv_mod  # noqa: E402
from netready import retention  # noqa: E402
from netready.influx import InfluxV1, encode, quote_ident  # noqa: E402
from netready.inventory import StoreConfig  # noqa: E402
from netready.records import Record  # noqa: E402

DAY = 86_400_000


def inventory(path: Path, sites: list[synthetic.SynthSite], url: str, db: str) -> None:
    lines = ["version: 1", f"store: {{kind: influxdb_v1, url: '{url}', database: {db}}}", "sites:"]
    for i, s in enumerate(sites):
        lines.append(
            f"  - {{ods: {s.ods}, name: Site {i}, type: gp_practice, icb: {s.icb}, "
            f"registered_patients: {1000 + (i * 37) % 15000}, "
            f"link: {{tech: {s.tech}, down_mbps: 40, up_mbps: 10}}, planned_clinics: {1 + i % 4}}}"
        )
    path.write_text("\n".join(lines) + "\n")


#: Sites generated record by record; the others reuse one of these histories with their own
#: ``site`` tag (60 divides the 10-tech and 6-ICB cycles of ``synthetic.estate``, so a copy
#: keeps the tech and ICB the inventory gives it). Encoding 2 M records one by one would
#: dominate the run; this keeps the data realistic per site and the load bounded.
TEMPLATES = 60


def template_lines(now: int, rtt_every: int) -> list[list[str]]:
    sites = synthetic.estate(TEMPLATES)
    out: list[list[str]] = [[] for _ in sites]
    index = {s.ods: i for i, s in enumerate(sites)}
    for rec in synthetic.history(
        sites, now - 14 * DAY, now, rtt_every_s=rtt_every, media_every_s=86400
    ):
        out[index[rec.tags["site"]]].append(encode(rec))
    return out


def hourly_templates(
    url: str, templates: list[list[str]], now: int
) -> tuple[list[list[str]], int, float]:
    """The hourly series of the template sites, made by the real continuous queries'
    ``SELECT ... INTO`` (``retention.backfill``) in a database of their own, read back as line
    protocol per site (the sites beyond the templates reuse them, as for the raw points).
    Returns (lines per template, raw points downsampled, backfill seconds)."""
    db = "templates"
    plan = retention.Plan(db, raw_duration="100d")
    with InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db, timeout_s=300)) as c:
        retention.init(c, plan)
        load(url, db, TEMPLATES, templates)
        t = time.monotonic()
        retention.backfill(c, plan, now - 15 * DAY, now + 1)
        back_s = time.monotonic() - t
        out: list[list[str]] = [[] for _ in templates]
        for m in retention.DOWNSAMPLED:
            for res in c.query(f'SELECT * FROM "hourly".{quote_ident(m)} GROUP BY *'):
                j = int(res.tags["site"][1:])
                for row in res.dicts():
                    fields = {
                        k: (int(v) if k.endswith("_n") else float(v))
                        for k, v in row.items()
                        if k != "time" and v is not None
                    }
                    out[j].append(encode(Record(m, res.tags, fields, int(row["time"]))))
    return out, sum(len(t) for t in templates), back_s


def compare(raw: Path, hourly: Path) -> tuple[float, float, int]:
    """(share of sites with the same verdict, median |rtt p95 hourly - raw| ms, sites)."""
    import json
    import statistics

    a = {s["ods"]: s for s in json.loads(raw.read_text())["sites"]}
    b = {s["ods"]: s for s in json.loads(hourly.read_text())["sites"]}
    same = sum(a[k]["verdict"] == b[k]["verdict"] for k in a) / len(a)
    d = [
        abs(b[k]["rtt_ms"] - a[k]["rtt_ms"])
        for k in a
        if a[k]["rtt_ms"] is not None and b[k]["rtt_ms"] is not None
    ]
    return same, statistics.median(d) if d else 0.0, len(a)


def load(
    url: str, db: str, n: int, templates: list[list[str]], rp: str | None = None
) -> tuple[int, float]:
    """Write the history in big gzip'd batches; returns (points, seconds)."""
    import gzip

    t = time.monotonic()
    count = 0
    batch: list[str] = []
    client = httpx.Client(timeout=300)

    def flush() -> None:
        body = gzip.compress(("\n".join(batch) + "\n").encode(), 1)
        r = client.post(
            f"{url}/write",
            params={"db": db, "precision": "ms", **({"rp": rp} if rp else {})},
            content=body,
            headers={"Content-Encoding": "gzip"},
        )
        r.raise_for_status()
        batch.clear()

    for i in range(n):
        j = i % TEMPLATES
        # the tag after the measurement or another tag, before a tag or the fields: ",site=X"
        src, dst = f",site=S{j:05d}", f",site=S{i:05d}"
        lines = templates[j]
        batch.extend(lines if i == j else [ln.replace(src, dst, 1) for ln in lines])
        count += len(lines)
        if len(batch) >= 50_000:
            flush()
    if batch:
        flush()
    client.close()
    return count, time.monotonic() - t


#: The child reports its own peak RSS (VmHWM of its address space) when it exits: wait4's
#: ru_maxrss would include the parent's RSS inherited across fork/exec.
CHILD = """
import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f, open(os.environ["NETREADY_BENCH_HWM"], "w") as o:
        o.write(next(l for l in f if l.startswith("VmHWM")).split()[1])
atexit.register(_hwm)
from netready.cli import main
main(sys.argv[1:])
"""


def run_report(inv: Path, now: int, out: Path) -> tuple[float, float]:
    """``netready report`` in a child process: (wall seconds, peak RSS MiB)."""
    hwm = out.with_suffix(".hwm")
    args = [
        "report",
        "--inventory",
        str(inv),
        "--format",
        "json",
        "--out",
        str(out),
        "--now",
        str(now),
    ]
    t = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env={**os.environ, "NETREADY_BENCH_HWM": str(hwm)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    wall = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"netready report failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return wall, int(hwm.read_text()) / 1024.0


def statements(inv: Path, now: int) -> list[str]:
    """The InfluxQL statements the report sends (captured in-process)."""
    from netready.reports.assess import Selection, build

    from netready.influx import InfluxV1

    sent: list[str] = []
    orig = InfluxV1.query

    def spy(self: InfluxV1, q: str, **kw: Any) -> Any:
        sent.append(q)
        return orig(self, q, **kw)

    InfluxV1.query = spy  # type: ignore[method-assign]
    try:
        build(Selection(str(inv), now=str(now)))
    finally:
        InfluxV1.query = orig  # type: ignore[method-assign]
    return sent


def replay(url: str, db: str, qs: list[str], workers: int) -> float:
    """The same statements by a bare HTTP client, one per request, ``workers`` at a time (as
    the report sends them): the server's own time for the aggregation."""
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(timeout=300) as c:

        def one(q: str) -> None:
            r = c.post(f"{url}/query", data={"db": db, "q": q, "epoch": "ms"})
            r.raise_for_status()
            r.json()

        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, qs))
        return time.monotonic() - t


def embedded(d: Path, n: int, now: int, rtt_every: int, inv_influx: Path) -> tuple[float, float]:
    """The same kind of history in the embedded store (spool ``points``): report time, RSS."""
    from netready.spool import Spool

    spool = d / f"spool{n}.db"
    sites = synthetic.estate(n)
    with Spool(
        spool, ship=False, embedded=True, max_age_s=10**9, max_bytes=1 << 40, synchronous="OFF"
    ) as sp:
        batch = []
        for rec in synthetic.history(
            sites, now - 14 * DAY, now, rtt_every_s=rtt_every, media_every_s=86400
        ):
            batch.append(rec)
            if len(batch) >= 50_000:
                sp.enqueue(batch)
                batch = []
        sp.enqueue(batch)
    inv = d / f"inv{n}-embedded.yaml"
    text = inv_influx.read_text().splitlines()
    text[1] = f"store: {{kind: embedded}}\nagent: {{spool_path: '{spool}'}}"
    inv.write_text("\n".join(text) + "\n")
    return run_report(inv, now, d / f"e{n}.json")


def growth(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sum(
        (x - mx) ** 2 for x in lx
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,7000")
    ap.add_argument(
        "--raw-max",
        type=int,
        default=10**9,
        help="load raw points (and time the raw report) only up to this many sites; above it "
        "only the hourly series are loaded (the report's cost from them does not depend on the "
        "raw cadence: one point per series and hour)",
    )
    ap.add_argument("--rtt-every", type=int, default=300, help="seconds between rtt windows")
    ap.add_argument(
        "--embedded-max",
        type=int,
        default=0,
        help="also time the embedded store up to this many sites (0: never)",
    )
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    now = (int(time.time() * 1000) // 60_000) * 60_000
    templates = template_lines(now, a.rtt_every)
    load_avg = os.getloadavg()[0]
    srv = Influxd()
    rows = []
    hourly_rows: list[tuple[Any, ...]] = []
    try:
        srv.start()
        print("  downsampling the template sites ...", file=sys.stderr)
        htemplates, tpts, back_s = hourly_templates(srv.url, templates, now)
        with tempfile.TemporaryDirectory(prefix="netready-bench-report-") as d:
            for n in sizes:
                db = f"bench{n}"
                client = InfluxV1(
                    StoreConfig(kind="influxdb_v1", url=srv.url, database=db, timeout_s=300)
                )
                retention.init(client, retention.Plan(db, raw_duration="100d"))
                sites = synthetic.estate(n)
                inv = Path(d) / f"inv{n}.yaml"
                inventory(inv, sites, srv.url, db)
                t = time.monotonic()
                inv_mod.load(inv)
                inv_s = time.monotonic() - t
                raw = n <= a.raw_max
                if raw:
                    pts, load_s = load(srv.url, db, n, templates)
                    qs = statements(inv, now)  # also warms the server after the load
                    wall, rss = run_report(inv, now, Path(d) / f"r{n}.json")
                    ref = replay(srv.url, db, qs, InfluxStore.WORKERS)
                    print(f"  {n} sites: raw report {wall:.2f} s", file=sys.stderr)
                hpts, _ = load(srv.url, db, n, htemplates, rp="hourly")
                retention.init(client, retention.Plan(db, raw_duration="7d"))
                client.close()
                hqs = statements(inv, now)
                hwall, hrss = run_report(inv, now, Path(d) / f"h{n}.json")
                href = replay(srv.url, db, hqs, InfluxStore.WORKERS)
                same, drtt = (
                    compare(Path(d) / f"r{n}.json", Path(d) / f"h{n}.json")[:2]
                    if raw
                    else (None, None)
                )
                hourly_rows.append((n, hpts, hwall, hrss, href, len(hqs), same, drtt, inv_s))
                print(f"  {n} sites: hourly report {hwall:.2f} s", file=sys.stderr)
                if not raw:
                    continue
                emb = (
                    embedded(Path(d), n, now, a.rtt_every, inv)
                    if n <= a.embedded_max
                    else (None, None)
                )
                rows.append((n, pts, load_s, wall, rss, ref, len(qs), inv_s, *emb))
                print(
                    f"  {n} sites: {pts:,} points loaded in {load_s:.1f} s; report {wall:.2f} s",
                    file=sys.stderr,
                )
    finally:
        srv.close()

    print(
        f"\nnetready report, 14 days of history, rtt every {a.rtt_every} s, throughput "
        f"4/day/direction; load average at start {load_avg:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"{'sites':>6} {'points':>10} {'load s':>7} | {'report s':>8} {'(inventory s)':>13} "
        f"{'RSS MiB':>7} | {'same InfluxQL bare client s':>27} {'stmts':>5} {'ratio':>5} | "
        f"{'embedded report s':>17} {'RSS MiB':>7}"
    )
    for n, pts, load_s, wall, rss, ref, nq, inv_s, ew, er in rows:
        cell = f"{ew:>17.2f} {er:>7.0f}" if ew is not None else f"{'—':>17} {'—':>7}"
        print(
            f"{n:>6} {pts:>10,} {load_s:>7.1f} | {wall:>8.2f} {inv_s:>13.2f} {rss:>7.0f} | "
            f"{ref:>27.2f} {nq:>5} {wall / ref:>5.2f} | {cell}"
        )
    if len(rows) >= 2:
        ns = [float(r[0]) for r in rows]
        print(
            f"growth exponent (time ~ sites^k): netready report k = "
            f"{growth(ns, [r[3] for r in rows]):.2f}, server queries k = "
            f"{growth(ns, [r[5] for r in rows]):.2f}, points k = "
            f"{growth(ns, [float(r[1]) for r in rows]):.2f}"
        )
    print(
        "\nthe same report from the hourly series (store init + backfill; raw retention 7 d, "
        "so the 14-day window reads hourly)"
    )
    print(
        f"{'sites':>6} {'hourly pts':>10} | {'report s':>8} {'RSS MiB':>7} {'(inventory s)':>13} | "
        f"{'same InfluxQL bare client s':>27} {'stmts':>5} | {'same verdict':>12} "
        f"{'median |d rtt p95| ms':>21}"
    )
    print(
        f"(the hourly series of {TEMPLATES} template sites made by the continuous queries' "
        f"SELECT ... INTO: {tpts:,} raw points downsampled in {back_s:.1f} s)"
    )
    for n, hp, hw, hr, hf, hq, same, drtt, inv_s in hourly_rows:
        cmp = f"{same:>12.1%} {drtt:>21.2f}" if same is not None else f"{'(no raw)':>12} {'—':>21}"
        print(
            f"{n:>6} {hp:>10,} | {hw:>8.2f} {hr:>7.0f} {inv_s:>13.2f} | {hf:>27.2f} {hq:>5} | {cmp}"
        )
    if len(hourly_rows) >= 2:
        ns = [float(r[0]) for r in hourly_rows]
        print(f"growth exponent (hourly): report k = {growth(ns, [r[2] for r in hourly_rows]):.2f}")
    for r in hourly_rows:
        if r[0] == 7000:
            ok = "met" if r[2] < 10 else "NOT met"
            print(f"target 7,000 sites x 14 days < 10 s: {ok} ({r[2]:.2f} s, hourly series)")


if __name__ == "__main__":
    with exit_on_signals():  # SIGTERM/SIGHUP: stop influxd, remove the temp files
        main()
