"""Benchmark: ``netready report --profile all`` (every profile, one reading of the store) against
four separate ``--profile NAME`` runs on the same store.

Synthetic 14-day history (``reports/synthetic.py``: an rtt window every ``--rtt-every`` s,
throughput per direction every 6 h, a media capacity search a day) for ``--sites`` sites,
loaded into the embedded store (the spool's SQLite) and into a private influxd 1.6
(tests/influxd.py). For each store: the wall time of ``assess.build`` (what ``netready report
--format json`` does before rendering: inventory, store questions, the model) with ``--profile
all``, and the sum of the four single-profile builds; each timed ``--repeat`` times, the
median kept; beside them the number of store questions each asked, and whether the grades of
the one run equal the four runs' (site by site). Run in-process, so Python's start-up (about
0.5 s a run) does not flatter the one run.

    .venv/bin/python bench/profiles.py [--sites 500] [--rtt-every 900] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from influxd import Influxd  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402
from netready.reports import assess, synthetic  # noqa: E402
from report import inventory  # noqa: E402

from netready.influx import InfluxV1  # noqa: E402
from netready.inventory import StoreConfig  # noqa: E402
from netready.rubric import PROFILES  # noqa: E402
from netready.spool import Spool  # noqa: E402

DAY = 86_400_000


def counted(fn: Any) -> tuple[Any, int]:
    """Run ``fn()`` counting the questions the report's stores are asked."""
    from netready.reports.query import InfluxStore

    from netready.store import SqliteStore

    asked = 0
    names = ("aggregate", "failures", "latest", "detected_tech", "series")
    saved = {(c, m): getattr(c, m) for c in (SqliteStore, InfluxStore) for m in names
             if hasattr(c, m)}  # fmt: skip

    def wrap(orig: Any) -> Any:
        def f(*a: Any, **kw: Any) -> Any:
            nonlocal asked
            asked += 1
            return orig(*a, **kw)

        return f

    for (c, m), orig in saved.items():
        setattr(c, m, wrap(orig))
    try:
        return fn(), asked
    finally:
        for (c, m), orig in saved.items():
            setattr(c, m, orig)


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def measure(inv: Path, spool: Path | None, now: int, repeat: int) -> dict[str, Any]:
    def sel(profile: str) -> assess.Selection:
        return assess.Selection(str(inv), str(spool) if spool else None, profile=profile,
                                now=str(now), history_weeks=0)  # fmt: skip

    one_s, one = timed(lambda: assess.build(sel(assess.ALL_PROFILES)), repeat)
    _, one_q = counted(lambda: assess.build(sel(assess.ALL_PROFILES)))
    four_s, singles = 0.0, {}
    four_q = 0
    for name in PROFILES:
        s, e = timed(lambda name=name: assess.build(sel(name)), repeat)
        four_s += s
        singles[name] = e
        four_q += counted(lambda name=name: assess.build(sel(name)))[1]
    same = all(
        [(r.grade, r.grade_reason, r.verdict) for r in one.by_profile[p]]
        == [(r.grade, r.grade_reason, r.verdict) for r in singles[p].sites]
        for p in PROFILES
    )
    return {"one_s": one_s, "four_s": four_s, "one_q": one_q, "four_q": four_q, "same": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=500)
    ap.add_argument("--rtt-every", type=int, default=900, help="seconds between rtt windows")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    now = (int(time.time() * 1000) // 60_000) * 60_000
    sites = synthetic.estate(a.sites)
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="netready-bench-profiles-") as d:
        recs = list(synthetic.history(sites, now - 14 * DAY, now, rtt_every_s=a.rtt_every,
                                      media_every_s=86400))  # fmt: skip
        print(f"  {len(recs):,} points for {a.sites} sites", file=sys.stderr)
        spool = Path(d) / "spool.db"
        with Spool(spool, ship=False, embedded=True, max_age_s=10**9, max_bytes=1 << 40,
                   synchronous="OFF") as sp:  # fmt: skip
            for i in range(0, len(recs), 50_000):
                sp.enqueue(recs[i : i + 50_000])
        srv = Influxd()
        try:
            srv.start()
            inv = Path(d) / "inv.yaml"
            inventory(inv, sites, srv.url, "bench")
            cfg = StoreConfig(kind="influxdb_v1", url=srv.url, database="bench", timeout_s=300)
            with InfluxV1(cfg) as c:
                c.create_database()
                for i in range(0, len(recs), 20_000):
                    c.write(recs[i : i + 20_000])
            emb = Path(d) / "inv-embedded.yaml"
            text = inv.read_text().splitlines()
            text[1] = "store: {kind: embedded}"
            emb.write_text("\n".join(text) + "\n")
            print("  embedded store ...", file=sys.stderr)
            rows.append(("embedded", measure(emb, spool, now, a.repeat)))
            print("  influxdb 1.6 ...", file=sys.stderr)
            rows.append(("influxdb 1.6", measure(inv, None, now, a.repeat)))
        finally:
            srv.close()
    load1 = os.getloadavg()
    print(
        f"\nnetready report --profile all vs four --profile runs: {a.sites} sites, 14 days, "
        f"{len(recs):,} points, rtt every {a.rtt_every} s; median of {a.repeat}; load average "
        f"{load0[0]:.1f} at start, {load1[0]:.1f} at end, {os.cpu_count()} cores"
    )
    print(
        f"{'store':<13} | {'all: s':>7} {'questions':>9} | {'4 runs: s':>9} {'questions':>9} | "
        f"{'time ratio':>10} | {'same grades':>11}"
    )
    for name, m in rows:
        print(
            f"{name:<13} | {m['one_s']:>7.2f} {m['one_q']:>9} | {m['four_s']:>9.2f} "
            f"{m['four_q']:>9} | {m['one_s'] / m['four_s']:>10.2f} | {m['same']!s:>11}"
        )


if __name__ == "__main__":
    with exit_on_signals():
        main()
