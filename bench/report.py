"""Benchmark: ``netready report`` over a real InfluxDB holding 14 days of estate history.

For each estate size (default 100, 1,000 and 5,000 sites) this loads synthetic history
(``reports/synthetic.py``: rtt windows, throughput per direction with link_busy samples, media
capacity) into a private influxd (Debian 1.6, tests/influxd.py), then runs
``netready report --format json`` as a child process and measures its wall time and peak RSS
(``wait4`` rusage). Side by side, the reference: the very same InfluxQL statements the report
sent, POSTed by a bare HTTP client (the server's own time for the aggregation — the ceiling).

The per-site sample rate is reduced to bound the load time: one rtt window per
``--rtt-every`` seconds (default 3600 s; the agent's default is 300 s) and a throughput test
per direction every 6 h. Report time should grow with sites, not with raw points: the points
are aggregated in InfluxDB.

    .venv/bin/python bench/report.py [--sizes 100,1000,5000] [--rtt-every 3600]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from influxd import Influxd  # noqa: E402

from netready.influx import encode  # noqa: E402
from reports import synthetic  # noqa: E402
from reports.query import InfluxStore  # noqa: E402

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


def load(url: str, db: str, n: int, templates: list[list[str]]) -> tuple[int, float]:
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
            params={"db": db, "precision": "ms"},
            content=body,
            headers={"Content-Encoding": "gzip"},
        )
        r.raise_for_status()
        batch.clear()

    for i in range(n):
        j = i % TEMPLATES
        src, dst = f"site=S{j:05d},", f"site=S{i:05d},"
        lines = templates[j]
        batch.extend(lines if i == j else [ln.replace(src, dst, 1) for ln in lines])
        count += len(lines)
        if len(batch) >= 50_000:
            flush()
    if batch:
        flush()
    client.close()
    return count, time.monotonic() - t


def run_report(inv: Path, now: int, out: Path) -> tuple[float, float]:
    """``netready report`` in a child process: (wall seconds, peak RSS MiB)."""
    code = (
        "import sys; from netready.cli import main; "
        "sys.argv=['netready']+sys.argv[1:]; main(sys.argv[1:])"
    )
    t = time.monotonic()
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "report",
            "--inventory",
            str(inv),
            "--format",
            "json",
            "--out",
            str(out),
            "--now",
            str(now),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode != 0:
        raise SystemExit(f"netready report failed ({p.returncode}): {err[-500:]}")
    return wall, ru.ru_maxrss / 1024.0


def statements(inv: Path, now: int) -> list[str]:
    """The InfluxQL statements the report sends (captured in-process)."""
    from netready.influx import InfluxV1
    from reports.cli import build

    sent: list[str] = []
    orig = InfluxV1.query

    def spy(self, q, **kw):  # type: ignore[no-untyped-def]
        sent.append(q)
        return orig(self, q, **kw)

    InfluxV1.query = spy  # type: ignore[method-assign]
    try:
        build(str(inv), None, (), (), "14d", "gp_video", str(now))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--rtt-every", type=int, default=3600, help="seconds between rtt windows")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    now = (int(time.time() * 1000) // 60_000) * 60_000
    templates = template_lines(now, a.rtt_every)
    srv = Influxd().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="netready-bench-report-") as d:
            for n in sizes:
                db = f"bench{n}"
                srv.create_db(db)
                sites = synthetic.estate(n)
                pts, load_s = load(srv.url, db, n, templates)
                inv = Path(d) / f"inv{n}.yaml"
                inventory(inv, sites, srv.url, db)
                qs = statements(inv, now)  # also warms the server after the load
                wall, rss = run_report(inv, now, Path(d) / f"r{n}.json")
                ref = replay(srv.url, db, qs, InfluxStore.WORKERS)
                rows.append((n, pts, load_s, wall, rss, ref, len(qs)))
                print(
                    f"  {n} sites: {pts:,} points loaded in {load_s:.1f} s; report {wall:.2f} s",
                    file=sys.stderr,
                )
    finally:
        srv.close()

    print(
        f"\nnetready report over InfluxDB 1.6 (14 days, rtt every {a.rtt_every} s, "
        "throughput 4/day/direction)"
    )
    print(
        f"{'sites':>6} {'points':>10} {'load s':>7} | {'netready report s':>17} "
        f"{'peak RSS MiB':>12} | {'same InfluxQL, bare client s':>28} {'stmts':>5} "
        f"{'ratio':>6}"
    )
    for n, pts, load_s, wall, rss, ref, nq in rows:
        print(
            f"{n:>6} {pts:>10,} {load_s:>7.1f} | {wall:>17.2f} {rss:>12.0f} | {ref:>28.2f} "
            f"{nq:>5} {wall / ref:>6.2f}"
        )
    if len(rows) >= 2:
        xs = [math.log(r[0]) for r in rows]
        ys = [math.log(r[3]) for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        ys2 = [math.log(r[5]) for r in rows]
        my2 = sum(ys2) / len(ys2)
        k2 = sum((x - mx) * (y - my2) for x, y in zip(xs, ys2, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        print(
            f"growth exponent (time ~ sites^k): netready k = {k:.2f}, server queries k = {k2:.2f}"
        )
    for n, _pts, _l, wall, *_ in rows:
        if n == 1000:
            print(f"target 1,000 sites < 10 s: {'met' if wall < 10 else 'NOT met'} ({wall:.2f} s)")


if __name__ == "__main__":
    main()
