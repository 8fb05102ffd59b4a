"""User-space delay line on a TUN device (the kernel here has no netem).

The lab's router sends a delayed site's traffic (both directions) into TUN device ``--dev``
by policy routing; this process reads each packet, holds it for ``delay ± jitter`` ms
(uniform jitter, clamped at 0) and writes it back into the same device, whence the router
forwards it on by its main table. Packets leave in order of their release time, so order
is kept unless the jitter is larger than the gap between packets (as netem does).

Run by ``lab.shaping.DelayLines`` in the router namespace; prints ``ready`` on stderr once it
holds the device. Uses only the standard library, so it starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_HELD = 20_000  # packets; beyond this the line drops (a real line would have, long before)


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
) -> None:
    """Hold each packet read from ``fd`` for delay ± jitter, then write it back. Never returns.

    ``keep_order``: a packet never leaves before the one read ahead of it (release times
    are made non-decreasing), so jitter behaves like queueing and never reorders."""
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
            _, _, pkt = heapq.heappop(held)
            try:
                os.write(fd, pkt)
            except OSError:  # device going away or kernel backlog full: the packet is lost
                stats["write_errors"] += 1


def _sharpen_timers() -> None:
    """1 us timer slack (default 50 us) and a little priority: release times matter here."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass
    with contextlib.suppress(OSError):
        os.nice(-5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", required=True, help="TUN device (already created, in this netns)")
    ap.add_argument("--site-net", default="", help="the site's subnet (informational)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added, ms")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform ± jitter, ms")
    ap.add_argument("--keep-order", action="store_true", help="never reorder (queue-like jitter)")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fd = open_tun(a.dev)
    except OSError as e:
        print(f"delayline: cannot open TUN {a.dev}: {e}", file=sys.stderr, flush=True)
        return 1
    _sharpen_timers()
    print(f"ready {a.dev} delay={a.delay_ms}ms jitter={a.jitter_ms}ms", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(fd, a.delay_ms / 1000.0, a.jitter_ms / 1000.0, a.seed, keep_order=a.keep_order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
