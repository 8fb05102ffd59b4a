#!/usr/bin/env python3
"""Benchmark: every Grafana panel query of the generated dashboards at estate scale.

A private influxd (Debian 1.6, tests/influxd.py) is loaded with what ``--sites`` site agents
(default 7,000) and ``netready assess`` write at their real cadences:

- ``readiness``: two profiles, one assessment every 6 h, over ``--days`` days (the fields of
  ``reports/assess.py readiness_records``);
- ``agent``: the self record every 300 s (``self_report_s``) over the last day;
- the measurements the site dashboard reads (``rtt`` every 300 s, ``throughput`` 4 a day per
  direction, ``media`` capacity daily: ``reports/synthetic.py``) over the last day.

Each site is a copy of one of 60 generated template sites with its own ``site`` tag (as in
bench/report.py). Then every panel query of ``dashboards/generated/*.json``
(``dashboards.build.panel_queries``) is substituted the way Grafana does it (the same
``interpolate`` and ``backend_macros`` tests/test_dashboards.py checks against Grafana's
rules), for the dashboards' own default time range and "All" ICBs (the estate team's first
view; the site dashboard and the agent dashboard for one site) and timed, three runs each
(median), side by side with the goal: under 2 s each.

    .venv/bin/python bench/dashboards.py [--sites 7000] [--days 7]

Stopped by SIGTERM/SIGINT/SIGHUP, it stops its influxd and removes its temporary files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from influxd import Influxd  # noqa: E402
from netready.dashboards import build  # noqa: E402
from netready.lab.signals import exit_on_signals  # noqa: E402
from netready.reports import synthetic  # noqa: E402
from report import load  # noqa: E402  (bench/report.py)
from test_dashboards import ALL, backend_macros, interpolate  # noqa: E402

from netready.influx import encode  # noqa: E402
from netready.records import Record  # noqa: E402

H = 3_600_000
DAY = 24 * H
TEMPLATES = 60  # divides synthetic.estate's tech and ICB cycles: a copy keeps both
PROFILES = ("gp_video", "imaging")
DB = "netready"
GOAL_S = 2.0
VERDICTS = ("READY", "READY", "MARGINAL", "NOT READY", "READY", "NO DATA")
GRADES = {"READY": "Good", "MARGINAL": "Poor", "NOT READY": "Unusable", "NO DATA": "No grade"}


def template_records(now: int, days: int) -> list[list[Record]]:
    """The template sites' records: readiness over ``days``, agent and measurements a day."""
    sites = synthetic.estate(TEMPLATES)
    out: list[list[Record]] = [[] for _ in sites]
    for i, s in enumerate(sites):
        tags = {"site": s.ods, "icb": s.icb, "tech": s.tech}
        rtt0, jit0, loss0, down0, up0 = synthetic.PROFILES[s.tech]
        for k in range(days * 4):
            t = now - k * 6 * H - i * 1000
            for p in PROFILES:
                v = VERDICTS[(i + k) % len(VERDICTS)] if p == "gp_video" else "NOT READY"
                out[i].append(
                    Record(
                        "readiness",
                        {**tags, "profile": p, "detected_tech": s.tech},
                        {
                            "verdict": v,
                            "verdict_code": 0,
                            "ready": v == "READY",
                            "capacity": int(up0 / 1.5),
                            "capacity_calls": int(up0 / 1.5),
                            "planned_clinics": 1 + i % 4,
                            "reasons": "all gates met" if v == "READY" else "upload per call",
                            "grade": GRADES[v],
                            "grade_reason": "upload per call",
                            "lat": 51.0 + i / 100,
                            "lon": -1.0 - i / 100,
                            "up_p10_mbps": up0 * 0.8,
                            "down_p10_mbps": down0 * 0.8,
                            "rtt_ms": rtt0 * 1.6,
                            "jitter_ms": jit0,
                            "loss_pct": loss0,
                            "mos": 4.2,
                            "confidence": "high",
                            "tech_check": "match",
                        },
                        t,
                    )
                )
        for k in range(288):  # the agent's self record every 300 s
            t = now - k * 300_000 - 7_000 - i * 100
            out[i].append(
                Record(
                    "agent",
                    {**tags, "host": f"nr-{s.ods.lower()}"},
                    {
                        "spool_pending": k % 40,
                        "spool_pending_bytes": 300 * (k % 40),
                        "spool_dropped": 0,
                        "dead_lettered": 0,
                        "evicted": 0,
                        "shipped": 5000 + 60 * k,
                        "enqueued": 5000 + 60 * k,
                        "version": "0.2.0",
                        "tasks": 4,
                        "loop_restarts": 0,
                        "task_errors": 0,
                        "last_ship_ms": t - 2_000,
                        "ship_latency_s": 0.4,
                        "rss_mb": 48.5,
                    },
                    t,
                )
            )
    for rec in synthetic.history(sites, now - DAY, now, rtt_every_s=300, media_every_s=86400):
        out[int(rec.tags["site"][1:])].append(rec)
    return out


def time_filter(now: int, dash: dict[str, Any]) -> str:
    """The dashboard's default range (``now-24h``) in Grafana's backend form."""
    spec = dash.get("time", {}).get("from", "now-24h")
    unit = {"h": H, "d": DAY, "m": 60_000}[spec[-1]]
    span = int(spec[len("now-") : -1]) * unit
    return f"time >= {now - span}ms and time <= {now}ms"


def run_queries(url: str, now: int, repeats: int) -> list[tuple[str, str, str, float, int, int]]:
    """(dashboard, panel, ref, median seconds, series, rows) per panel query."""
    out = []
    variables = {"icb": ALL, "site": ["S00001"], "profile": "gp_video", "silent": "2h"}
    with httpx.Client(timeout=600) as client:
        for pq in build.panel_queries():
            dash = json.loads((build.HERE / "generated" / pq.dashboard).read_text())
            q = backend_macros(interpolate(pq.query, variables, dash), time_filter(now, dash))
            times = []
            series = rows = 0
            for _ in range(repeats):
                t = time.monotonic()
                r = client.post(f"{url}/query", data={"db": DB, "q": q, "epoch": "ms"})
                r.raise_for_status()
                body = r.json()
                times.append(time.monotonic() - t)
                got = [s for res in body.get("results", []) for s in res.get("series", [])]
                series, rows = len(got), sum(len(s.get("values", [])) for s in got)
            out.append((pq.dashboard, pq.panel, pq.ref_id, statistics.median(times), series, rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=7000)
    ap.add_argument("--days", type=int, default=7, help="days of readiness history")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    now = (int(time.time() * 1000) // 60_000) * 60_000
    srv = Influxd()
    try:
        srv.start()
        srv.create_db(DB)
        print(f"  generating {TEMPLATES} template sites ...", file=sys.stderr)
        templates = template_records(now, a.days)
        print(f"  loading {a.sites:,} sites ...", file=sys.stderr)
        # bench/report.py's loader: each copy gets its own ``site`` tag (the agent's ``host``
        # tag stays the template's: no panel groups by it)
        pts, load_s = load(srv.url, DB, a.sites, [[encode(r) for r in t] for t in templates])
        print(f"  {pts:,} points in {load_s:.0f} s; timing the panel queries ...", file=sys.stderr)
        rows = run_queries(srv.url, now, a.repeats)
    finally:
        srv.close()
    load1 = os.getloadavg()[0]
    print(
        f"\nGrafana panel queries at {a.sites:,} sites ({pts:,} points: readiness {a.days} d, "
        f"agent and measurements 1 d), InfluxDB 1.6, {os.cpu_count()} cores, load average "
        f"{load0:.1f} at start, {load1:.1f} at end; median of {a.repeats} runs; 'All' ICBs, "
        "site S00001"
    )
    print(f"{'dashboard':20} {'panel':44} {'ref':>3} {'s':>7} {'series':>7} {'rows':>7} goal")
    for dash, panel, ref, s, nser, nrows in sorted(rows, key=lambda r: -r[3]):
        ok = "ok" if s < GOAL_S else "OVER"
        print(f"{dash[:-5]:20} {panel[:44]:44} {ref:>3} {s:7.2f} {nser:7,} {nrows:7,} {ok}")
    over = [r for r in rows if r[3] >= GOAL_S]
    print(
        f"{len(rows)} panel queries; slowest {max(r[3] for r in rows):.2f} s; "
        f"{len(over)} at or over the {GOAL_S:g} s goal"
    )


if __name__ == "__main__":
    with exit_on_signals():  # SIGTERM/SIGHUP: stop influxd, remove the temp files
        main()
