"""Benchmark: the media responder's memory per session against the packets sent to it.

    .venv/bin/python bench/responder.py [--packets 10000,100000,400000,630000] [--rate 25000]

Each row starts a fresh responder (``netready responder`` on loopback), opens
one session the way the probe does (hello, cookie, hello + cookie) declaring the largest
session the default caps allow (19.9 Mbit/s of video for 300 s: a schedule of about 638,000
packets), then sends it N header-only 40-byte media packets, the worst case for per-packet
state, at ``--rate`` packets/s. Three kinds of traffic:

- ``distinct``: sequence numbers 0..N-1, as a sender on its schedule;
- ``duplicates``: sequence numbers 0..999 over and over;
- ``beyond``: sequence numbers past the declared schedule (random, up to 2^32).

Columns: the responder's RSS growth while receiving (psutil, resident set), its peak RSS
growth including the statistics at ``stop`` (``VmHWM`` after ``clear_refs``), the packets
that reached it (N less its socket-buffer drops, ``host_drops``), RSS bytes per packet, and side by side what the former design (one ``Arrival`` object
per packet in a list, measured here with tracemalloc) holds for the same N; the goal is
< 50 MB per session. Needs root for ``clear_refs`` (else the peak column is blank).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from rich.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netready.probes import media  # noqa: E402

SID = 4242
GOAL_MB = 50.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def responder() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "netready.cli", "responder", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        line = p.stderr.readline()
        if "listening on" not in line:
            raise SystemExit(f"responder did not start: {line.strip()}")
        yield p, port
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def control(s: socket.socket, msg: dict[str, Any], want: set[str]) -> dict[str, Any]:
    """Send ``msg`` and return the first control reply whose op is in ``want`` (skipping
    downstream media), retrying every second, five times."""
    for _ in range(5):
        s.send(media.pack_control(msg))
        end = time.monotonic() + 1.0
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                reply = media.parse_control(s.recv(65535))
            except TimeoutError:
                break
            if reply and reply.get("op") in want:
                return reply
    raise SystemExit(f"no {'/'.join(sorted(want))} from the responder")


def open_session(s: socket.socket) -> None:
    hello: dict[str, Any] = {
        "op": "hello",
        "v": media.PROTOCOL_VERSION,
        "sid": SID,
        "profile": "fhd",
        "video_kbps": 19_900.0,
        "duration_s": 300.0,
        "dscp_audio": 46,
        "dscp_video": 34,
        "keyframes": True,
        "keyframe_offset": 0,
        "nonce": os.urandom(8).hex(),
        "time": time.time(),
    }
    reply = control(s, hello, {"retry", "accept", "reject"})
    if reply["op"] == "retry":
        reply = control(s, {**hello, "cookie": reply["cookie"]}, {"accept", "reject"})
    if reply["op"] != "accept":
        raise SystemExit(f"session refused: {reply.get('reason')}")


def seqs(kind: str, n: int, cap: int) -> Iterator[int]:
    rng = random.Random(1)
    for i in range(n):
        if kind == "distinct":
            yield i
        elif kind == "duplicates":
            yield i % 1000
        else:
            yield rng.randrange(cap, 2**32)


def vm_hwm(pid: int) -> int | None:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_row(kind: str, n: int, rate: float, progress: Progress) -> dict[str, Any]:
    cap = media.schedule_packets(19_900.0, 300.0) + 64
    with responder() as (p, port), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # the downstream: ignored
        proc = psutil.Process(p.pid)
        open_session(s)
        time.sleep(1.0)  # the downstream in its steady state
        rss0 = proc.memory_info().rss
        hwm_ok = reset_hwm(p.pid)
        task = progress.add_task(f"{kind} x {n:,}", total=n)
        t0 = time.monotonic()
        sent = 0
        for seq in seqs(kind, n, cap):
            s.send(media.pack_media(SID, seq, 1, time.monotonic_ns(), 0, 0, 0))
            sent += 1
            if sent % 500 == 0:
                progress.update(task, completed=sent)
                ahead = t0 + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        progress.update(task, completed=sent)
        time.sleep(0.5)
        rss1 = proc.memory_info().rss
        top = max(s for s in seqs(kind, n, cap)) if kind != "beyond" else 0
        st = control(
            s,
            {"op": "stop", "v": media.PROTOCOL_VERSION, "sid": SID, "sent": min(top + 1, cap)},
            {"stats"},
        )
        hwm = vm_hwm(p.pid) if hwm_ok else None
        up = st.get("up") or {}
        progress.remove_task(task)
    counted = n - int(up.get("host_drops", 0))
    return {
        "kind": kind,
        "n": n,
        "counted": counted,
        "rss_mb": (rss1 - rss0) / 1e6,
        "peak_mb": (hwm - rss0) / 1e6 if hwm is not None else None,
        "per_pkt": (rss1 - rss0) / n,
        "policed": st.get("policed"),
        "secs": time.monotonic() - t0,
    }


def former_design_mb(n: int) -> float:
    """What the old responder held for n packets: one Arrival per packet, in a list."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    now = time.monotonic_ns()
    arrivals = [media.Arrival(i, 1, now + i, now + i + 5, 40, 136, 0, 0) for i in range(n)]
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del arrivals
    return used / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--packets", default="10000,100000,400000,630000", help="N per row, comma-separated"
    )
    ap.add_argument("--rate", type=float, default=25_000.0, help="packets/s sent per session")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally-blocks stop responders
    sizes = [int(x) for x in args.packets.split(",")]
    rows = []
    t0 = time.monotonic()
    with Progress(transient=True, console=None) as progress:
        for kind in ("distinct", "duplicates", "beyond"):
            for n in sizes if kind == "distinct" else sizes[-1:]:
                rows.append(run_row(kind, n, args.rate, progress))
    head = (
        f"{'traffic':<11} {'packets':>8} {'arrived':>8} {'RSS Δ MB':>9} {'peak Δ MB':>9} "
        f"{'B/packet':>8} {'former MB':>9} {'goal MB':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        print(
            f"{r['kind']:<11} {r['n']:>8,} {r['counted']:>8,} {r['rss_mb']:>9.1f} {peak:>9} "
            f"{r['per_pkt']:>8.1f} {former_design_mb(r['n']):>9.1f} {GOAL_MB:>7.0f}"
            + ("  (policed)" if r["policed"] else "")
        )
    cap = media.schedule_packets(19_900.0, 300.0) + 64
    print(
        f"\n{time.monotonic() - t0:.0f} s. One session declared 19.9 Mbit/s for 300 s: its trace "
        f"holds at most {cap:,} packets x {media.RxTrace.BYTES_PER_PACKET} B = "
        f"{cap * media.RxTrace.BYTES_PER_PACKET / 1e6:.1f} MB, whatever the packets' size; "
        "duplicates and sequence numbers beyond the schedule are counted, not kept. 'former' "
        "is one Arrival object per packet in a list (the old responder kept every packet)."
    )


if __name__ == "__main__":
    main()
