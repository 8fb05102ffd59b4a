"""Statistics of one rtt run, sans-IO: send times and replies in, record fields out.

``summarise`` computes one set of fields (RTT percentiles less the reflector's turnaround,
RFC 3550 jitter of the round trip and of each path, IPDV, loss, burst loss, reorder);
``windows`` cuts a run into the 15 s windows the quality targets are defined over.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from netready.probes.rtt import twamp

from netready import stats


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply as received: sender seq, our monotonic rx time (s), the reflected packet."""

    seq: int
    rx_mono: float
    rx_wall_ntp: int
    pkt: twamp.ReflectedPacket


def summarise(
    send_mono: Sequence[float], replies: Sequence[Reply], duration_s: float
) -> dict[str, float | int]:
    """Pure statistics of one run. ``send_mono[i]`` is when seq i was sent (monotonic s)."""
    sent = len(send_mono)
    first, dup, order = _first_replies(replies, sent)
    received = len(first)
    out: dict[str, float | int] = {
        "sent": sent,
        "received": received,
        "duplicates": dup,
        "loss_pct": 100.0 * (sent - received) / sent if sent else 0.0,
        "duration_s": duration_s,
    }
    if not received:
        return out
    rtts = [_rtt_ms(first[s], send_mono[s]) for s in sorted(first)]
    out.update(
        rtt_min_ms=min(rtts),
        rtt_max_ms=max(rtts),
        rtt_mean_ms=sum(rtts) / len(rtts),
        rtt_p50_ms=stats.percentile(rtts, 50) or 0.0,
        rtt_p95_ms=stats.percentile(rtts, 95) or 0.0,
    )
    out.update(_jitters([first[s] for s in order], send_mono))
    ip = [abs(x) for x in stats.ipdv(rtts)]
    if ip:
        out["ipdv_p95_ms"] = stats.percentile(ip, 95) or 0.0
    out["burst_loss_200ms_pct"] = (
        stats.worst_window_loss_pct(send_mono, [i in first for i in range(sent)], 0.2) or 0.0
    )
    out["reorder_pct"] = stats.reorder_pct(order) or 0.0
    return out


def _first_replies(replies: Sequence[Reply], sent: int) -> tuple[dict[int, Reply], int, list[int]]:
    """(first reply per sequence number, duplicates, sequence numbers in arrival order);
    replies to sequence numbers we did not send are not ours."""
    first: dict[int, Reply] = {}
    dup = 0
    order: list[int] = []
    for r in replies:
        if r.seq >= sent:
            continue
        if r.seq in first:
            dup += 1
            continue
        first[r.seq] = r
        order.append(r.seq)
    return first, dup, order


def _rtt_ms(r: Reply, sent_at: float) -> float:
    """Round trip on our monotonic clock less the reflector's turnaround, ms."""
    turnaround = twamp.ntp_to_s(r.pkt.timestamp) - twamp.ntp_to_s(r.pkt.receive_ts)
    return ((r.rx_mono - sent_at) - max(0.0, turnaround)) * 1000.0


def _jitters(arrival: Sequence[Reply], send_mono: Sequence[float]) -> dict[str, float]:
    """RFC 3550 jitter, in arrival order, of the round trip (our clock), the forward path
    (sender -> reflector timestamps) and the return path (reflector -> our wall clock)."""
    ntp = twamp.ntp_to_s
    paths = {
        "jitter_rfc3550_ms": [(send_mono[r.seq], r.rx_mono) for r in arrival],
        "jitter_up_rfc3550_ms": [(ntp(r.pkt.sender_ts), ntp(r.pkt.receive_ts)) for r in arrival],
        "jitter_down_rfc3550_ms": [(ntp(r.pkt.timestamp), ntp(r.rx_wall_ntp)) for r in arrival],
    }
    out: dict[str, float] = {}
    for key, pairs in paths.items():
        j, _ = stats.rfc3550_jitter([a * 1000 for a, _ in pairs], [b * 1000 for _, b in pairs])
        if j is not None:
            out[key] = j
    return out


@dataclass
class Trace:
    """Everything one run observed: send times by sequence number and the replies."""

    send_mono: list[float]
    replies: list[Reply]
    sent_for: float
    error: OSError | None = None


def windows(trace: Trace, window_s: float) -> list[tuple[float, dict[str, float | int]]]:
    """Statistics per ``window_s`` of send time: [(offset_s, fields), ...].

    Quality targets (loss, jitter) are defined over 15 s windows, so a 60 s run gives four
    records; a run shorter than one window gives one record over the whole run.
    """
    send = trace.send_mono
    if not send:
        return []
    t0 = send[0]
    bounds: list[int] = [0]
    for i, t in enumerate(send):
        if t - t0 >= window_s * len(bounds):
            bounds.append(i)
    # a trailing fragment shorter than half a window joins the previous window
    if len(bounds) > 1 and send[-1] - send[bounds[-1]] < window_s / 2:
        bounds.pop()
    bounds.append(len(send))
    out = []
    for a, b in itertools.pairwise(bounds):
        reps = [
            Reply(r.seq - a, r.rx_mono, r.rx_wall_ntp, r.pkt)
            for r in trace.replies
            if a <= r.seq < b
        ]
        dur = (send[b - 1] - send[a]) + (trace.sent_for / len(send))
        out.append((send[a] - t0, summarise(send[a:b], reps, dur)))
    return out
