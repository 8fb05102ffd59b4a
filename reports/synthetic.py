"""Synthetic estate history (deterministic) for tests, the benchmark and demos.

Not measurements: plausible records with the same measurements, tags and fields the probes
write (``rtt`` per 15 s window, ``throughput`` per direction with some ``link_busy`` samples,
``media`` capacity), so the report can be exercised at estate scale without 5,000 real sites.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from netready.records import Record

#: tech -> (rtt ms, jitter ms, loss %, down Mbps, up Mbps)
PROFILES = {
    "adsl": (38.0, 9.0, 0.4, 6.5, 0.6),
    "fttc": (16.0, 3.0, 0.05, 45.0, 9.0),
    "sogea": (15.0, 3.0, 0.05, 40.0, 9.0),
    "fttp": (7.0, 1.0, 0.01, 300.0, 45.0),
    "ethernet": (4.0, 0.5, 0.0, 900.0, 900.0),
    "unknown": (30.0, 6.0, 0.2, 20.0, 2.0),
}


@dataclass(frozen=True)
class SynthSite:
    ods: str
    icb: str
    tech: str
    quality: float = 1.0  # >1 makes rtt/jitter/loss worse
    speed: float = 1.0  # <1 makes throughput lower


def estate(n: int, seed: int = 1) -> list[SynthSite]:
    """``n`` sites with ODS-like codes, a mix of techs and a few troubled lines."""
    rnd = random.Random(seed)
    techs = ["adsl"] * 2 + ["fttc"] * 4 + ["sogea"] + ["fttp"] * 2 + ["ethernet"]
    icbs = ["QHM", "QWE", "QUE", "QOX", "QKS", "QRV"]
    out = []
    for i in range(n):
        q = rnd.choice([1.0] * 8 + [2.5, 6.0])
        out.append(
            SynthSite(
                f"S{i:05d}",
                icbs[i % len(icbs)],
                techs[i % len(techs)],
                q,
                rnd.choice([1.0] * 6 + [0.5, 0.2]),
            )
        )
    return out


def _rtt(
    s: SynthSite, rnd: random.Random, t0_ms: int, t1_ms: int, every_s: int, fail_share: float
) -> Iterator[Record]:
    """One rtt record per ``every_s`` (a 15 s window's figures), a few of them timeouts."""
    rtt0, jit0, loss0, _down0, _up0 = PROFILES[s.tech]
    tags = {"site": s.ods, "icb": s.icb, "tech": s.tech}
    rt = {**tags, "target": "core-reflector", "method": "twamp_light"}
    off = rnd.randrange(every_s) * 1000
    for t in range(t0_ms + off, t1_ms, every_s * 1000):
        if rnd.random() < fail_share:
            yield Record(
                "rtt",
                {**rt, "result": "timeout"},
                {"reason": "no reply in 17.0 s", "sent": 750, "received": 0},
                t,
            )
            continue
        q = s.quality * rnd.lognormvariate(0, 0.35)
        rtt = round(rtt0 * (0.8 + 0.4 * q), 3)
        loss = round(max(0.0, rnd.gauss(loss0 * q, loss0 * 0.5 + 0.01)), 3)
        recv = 750 - round(750 * loss / 100)
        fields = {
            "sent": 750,
            "received": recv,
            "loss_pct": round(100 * (750 - recv) / 750, 4),
            "rtt_min_ms": round(rtt * 0.9, 3),
            "rtt_p50_ms": rtt,
            "rtt_p95_ms": round(rtt * 1.3, 3),
            "rtt_max_ms": round(rtt * 1.8, 3),
            "rtt_mean_ms": round(rtt * 1.05, 3),
            "jitter_rfc3550_ms": round(jit0 * q * rnd.uniform(0.6, 1.4), 3),
            "ipdv_p95_ms": round(jit0 * q * 2, 3),
            "burst_loss_200ms_pct": round(min(100.0, loss * rnd.uniform(1, 8)), 3),
            "reorder_pct": 0.0 if rnd.random() < 0.9 else round(rnd.uniform(0, 0.04), 4),
            "duplicates": 0,
            "duration_s": 15.0,
        }
        yield Record("rtt", rt, fields, t)


def _throughput(
    s: SynthSite, rnd: random.Random, t0_ms: int, t1_ms: int, every_s: int, busy_share: float
) -> Iterator[Record]:
    """A speed test per ``every_s``, both directions; some refused as ``link_busy``."""
    _rtt0, _jit0, _loss0, down0, up0 = PROFILES[s.tech]
    tags = {"site": s.ods, "icb": s.icb, "tech": s.tech}
    off = rnd.randrange(every_s) * 1000
    for t in range(t0_ms + off, t1_ms, every_s * 1000):
        for d, base in (("down", down0), ("up", up0)):
            tt = {**tags, "target": "core-speed", "method": "http", "direction": d}
            if rnd.random() < busy_share:
                yield Record(
                    "throughput",
                    {**tt, "result": "link_busy"},
                    {"reason": "router counters show 64% in use", "goodput_mbps": 1.0},
                    t,
                )
                continue
            g = base * s.speed * rnd.uniform(0.75, 1.0)
            # loaded latency: the idle RTT plus a queue that grows as the line gets slower
            idle = _rtt0 * s.quality
            fields = {
                "goodput_mbps": round(g, 3),
                "bytes": int(g * 1e6),
                "duration_s": 10.0,
                "rtt_idle_ms": round(idle, 3),
                "rtt_loaded_ms": round(idle + 250.0 / (1.0 + g), 3),
            }
            yield Record("throughput", tt, fields, t)


def _capacity(
    s: SynthSite, rnd: random.Random, t0_ms: int, t1_ms: int, every_s: int
) -> Iterator[Record]:
    """A media capacity search per ``every_s``: 0.75 of the upload at 1.5 Mbit/s a call."""
    up0 = PROFILES[s.tech][4]
    tags = {"site": s.ods, "icb": s.icb, "tech": s.tech}
    off = rnd.randrange(every_s) * 1000
    for t in range(t0_ms + off, t1_ms, every_s * 1000):
        up = up0 * s.speed * rnd.uniform(0.75, 1.0)
        yield Record(
            "media",
            {**tags, "target": "core-media", "method": "capacity"},
            {"capacity_calls": int(0.75 * up / 1.5)},
            t,
        )


def history(
    sites: Sequence[SynthSite],
    t0_ms: int,
    t1_ms: int,
    *,
    rtt_every_s: int = 900,
    tp_every_s: int = 21600,
    media_every_s: int = 0,
    seed: int = 7,
    busy_share: float = 0.1,
    fail_share: float = 0.01,
) -> Iterator[Record]:
    """Records for every site in [t0, t1), oldest first per site (per measurement)."""
    rnd = random.Random(seed)
    for s in sites:
        yield from _rtt(s, rnd, t0_ms, t1_ms, rtt_every_s, fail_share)
        yield from _throughput(s, rnd, t0_ms, t1_ms, tp_every_s, busy_share)
        if media_every_s:
            yield from _capacity(s, rnd, t0_ms, t1_ms, media_every_s)
