"""User-space delay line on a TUN device (the kernel here has no netem).

The lab's router sends a delayed site's traffic (both directions) into TUN device ``--dev``
by policy routing; this process reads each packet, holds it for ``delay ± jitter`` ms
(uniform jitter, clamped at 0) and writes it back into the same device, whence the router
forwards it on by its main table. Packets leave in order of their release time, so order
is kept unless the jitter is larger than the gap between packets (as netem does).

Run by ``lab.shaping.DelayLines`` in the router namespace; prints ``ready`` on stderr once it
holds the device. Uses only the standard library, so it starts fast.

Its own accuracy is part of the truth every tool in the lab is judged against, so it runs
SCHED_FIFO where it may (root; ``--no-realtime`` or no privilege: nice -5), with 1 us timer
slack and its memory locked; a release it misses is late, never early. ``--stats-file``: on
SIGUSR1 it writes how late its releases were (``LateStats``) since the last SIGUSR1, as
JSON, to that file (the lab benchmark reads it per tool).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time
from array import array

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_HELD = 20_000  # packets; beyond this the line drops (a real line would have, long before)


#: SCHED_FIFO priority of the delay line: above every normal task (and below the kernel's
#: own real-time threads, which run at 50 and up).
RT_PRIORITY = 20


class LateStats:
    """How late the delay line's releases were: write time less the intended release time,
    per packet, in microseconds (sans-IO; bounded at ``cap`` samples, the rest counted)."""

    def __init__(self, cap: int = 2_000_000) -> None:
        self.cap = cap
        self.late_us = array("f")
        self.packets = 0

    def add(self, late_s: float) -> None:
        self.packets += 1
        if len(self.late_us) < self.cap:
            self.late_us.append(max(0.0, late_s) * 1e6)

    def summary(self) -> dict[str, float | int | None]:
        """packets, and mean / p50 / p95 / p99 / max lateness (us) and the share over
        100 us and over 1 ms (%) of the samples kept; None where there are none."""
        xs = sorted(self.late_us)
        n = len(xs)

        def q(p: float) -> float | None:
            return round(xs[min(n - 1, int(p / 100 * n))], 1) if n else None

        return {
            "packets": self.packets,
            "mean_us": round(sum(xs) / n, 1) if n else None,
            "p50_us": q(50),
            "p95_us": q(95),
            "p99_us": q(99),
            "max_us": round(xs[-1], 1) if n else None,
            "over_100us_pct": round(100 * sum(1 for x in xs if x > 100) / n, 2) if n else None,
            "over_1ms_pct": round(100 * sum(1 for x in xs if x > 1000) / n, 2) if n else None,
        }

    def reset(self) -> None:
        self.late_us = array("f")
        self.packets = 0


def open_tun(dev: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def serve(
    fd: int,
    delay_s: float,
    jitter_s: float,
    seed: int | None = None,
    stats: dict[str, int] | None = None,
    keep_order: bool = False,
    late: LateStats | None = None,
) -> None:
    """Hold each packet read from ``fd`` for delay ± jitter, then write it back. Never returns.

    ``keep_order``: a packet never leaves before the one read ahead of it (release times
    are made non-decreasing), so jitter behaves like queueing and never reorders.
    ``late``: how late each release was is added to it."""
    stats = stats if stats is not None else {}
    for k in ("packets", "overflow_drops", "write_errors"):
        stats.setdefault(k, 0)
    rng = random.Random(seed)
    held: list[tuple[float, int, bytes]] = []
    seq = 0
    last_release = 0.0
    # select(2) takes a timeval (microseconds); epoll/poll round timeouts up to whole ms.
    rlist = [fd]
    clock = time.monotonic
    while True:
        now = clock()
        timeout = None if not held else max(0.0, held[0][0] - now)
        if select.select(rlist, (), (), timeout)[0]:
            while True:  # drain everything that is ready
                try:
                    pkt = os.read(fd, 65535)
                except BlockingIOError:
                    break
                now = clock()
                stats["packets"] += 1
                if len(held) >= MAX_HELD:
                    stats["overflow_drops"] += 1
                    continue
                d = delay_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
                release = now + max(d, 0.0)
                if keep_order and release < last_release:
                    release = last_release
                last_release = release
                seq += 1
                heapq.heappush(held, (release, seq, pkt))
        now = clock()
        while held and held[0][0] <= now:
            release, _, pkt = heapq.heappop(held)
            if late is not None:
                late.add(clock() - release)
            try:
                os.write(fd, pkt)
            except OSError:  # device going away or kernel backlog full: the packet is lost
                stats["write_errors"] += 1


def _sharpen_timers(realtime: bool = True) -> str:
    """1 us timer slack (default 50 us) and priority: release times matter here. SCHED_FIFO
    (with memory locked, so a page fault never delays a release) where allowed, else nice
    -5. Returns the policy it got: ``fifo`` or ``other``."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        libc = None
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        except (OSError, AttributeError):  # no privilege, or not Linux
            pass
        else:
            if libc is not None and os.geteuid() == 0:  # root: no RLIMIT_MEMLOCK to hit
                libc.mlockall(1 | 2)  # MCL_CURRENT | MCL_FUTURE
            return "fifo"
    with contextlib.suppress(OSError):
        os.nice(-5)
    return "other"


def _stats_writer(path: str, late: LateStats) -> None:
    """On SIGUSR1: ``late``'s summary since the last one, written atomically to ``path``."""

    def write(*_: object) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(late.summary(), f)
        os.replace(tmp, path)
        late.reset()

    signal.signal(signal.SIGUSR1, write)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", required=True, help="TUN device (already created, in this netns)")
    ap.add_argument("--site-net", default="", help="the site's subnet (informational)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added, ms")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform ± jitter, ms")
    ap.add_argument("--keep-order", action="store_true", help="never reorder (queue-like jitter)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--no-realtime", action="store_true", help="do not ask for SCHED_FIFO (nice -5 only)"
    )
    ap.add_argument("--stats-file", default="", help="on SIGUSR1, write release lateness here")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fd = open_tun(a.dev)
    except OSError as e:
        print(f"delayline: cannot open TUN {a.dev}: {e}", file=sys.stderr, flush=True)
        return 1
    sched = _sharpen_timers(not a.no_realtime)
    late = LateStats() if a.stats_file else None
    if late is not None:
        _stats_writer(a.stats_file, late)
    print(
        f"ready {a.dev} delay={a.delay_ms}ms jitter={a.jitter_ms}ms sched={sched}",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            fd,
            a.delay_ms / 1000.0,
            a.jitter_ms / 1000.0,
            a.seed,
            keep_order=a.keep_order,
            late=late,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
