"""Statistics of one rtt run, sans-IO: send times and replies in, record fields out.

``summarise`` computes one set of fields (RTT percentiles less the reflector's turnaround,
RFC 3550 jitter of the round trip and of each path, IPDV, loss, burst loss, reorder, and the
one-way delay variation of each direction); ``windows`` cuts a run into the 15 s windows the
quality targets are defined over.

Which direction is congested (as Crusader does): each reply carries our send time, the
reflector's receive and send times, and we note our receive time, so a packet's upstream
delay is ``receive_ts - sender_ts`` and its downstream delay ``our rx - reflector tx``, each
off by the (unknown) offset between the two clocks, with opposite signs. The offset cancels
in the variation: each direction's delay less its minimum over the whole run (the idle
minimum, when the run starts idle) is the delay that direction's queue added. ``owd_clock``
says so: ``variation`` (always, today: neither end claims a synchronised clock in its TWAMP
error estimate, so absolute one-way delays are not reported). Clock drift between the two
ends over a run (parts per million: microseconds a minute) is far below the queue delays this
is for.
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


#: the added delay (ms, sum of both directions' median variation) below which no direction
#: is called congested
CONGESTED_MIN_MS = 5.0
#: the share of the added delay one direction must hold to be named alone
CONGESTED_SHARE = 0.7


def one_way_ms(r: Reply) -> tuple[float, float]:
    """(upstream, downstream) one-way delay of one reply, ms, each off by the clock offset
    (with opposite signs): reflector receive - our send, our receive - reflector send."""
    ntp = twamp.ntp_to_s
    up = ntp(r.pkt.receive_ts) - ntp(r.pkt.sender_ts)
    down = ntp(r.rx_wall_ntp) - ntp(r.pkt.timestamp)
    return up * 1000.0, down * 1000.0


def owd_base(replies: Sequence[Reply]) -> tuple[float, float] | None:
    """The idle minimum of each direction over a run: (min upstream, min downstream)."""
    ways = [one_way_ms(r) for r in replies]
    if not ways:
        return None
    return min(u for u, _ in ways), min(d for _, d in ways)


def congested(up_ms: float, down_ms: float) -> str:
    """``up``, ``down``, ``both`` or ``none`` from the median added delay of each direction."""
    total = max(0.0, up_ms) + max(0.0, down_ms)
    if total < CONGESTED_MIN_MS:
        return "none"
    share = max(0.0, up_ms) / total
    if share >= CONGESTED_SHARE:
        return "up"
    if share <= 1 - CONGESTED_SHARE:
        return "down"
    return "both"


def direction_fields(
    replies: Sequence[Reply], base: tuple[float, float] | None
) -> dict[str, float | str]:
    """One-way delay variation per direction above ``base`` (``owd_base`` of the run)."""
    if not replies or base is None:
        return {}
    ways = [one_way_ms(r) for r in replies]
    up = [u - base[0] for u, _ in ways]
    down = [d - base[1] for _, d in ways]
    up50, down50 = stats.percentile(up, 50) or 0.0, stats.percentile(down, 50) or 0.0
    total = max(0.0, up50) + max(0.0, down50)
    out: dict[str, float | str] = {
        "owd_clock": "variation",
        "owd_up_p50_ms": up50,
        "owd_down_p50_ms": down50,
        "owd_up_p95_ms": stats.percentile(up, 95) or 0.0,
        "owd_down_p95_ms": stats.percentile(down, 95) or 0.0,
        "congested": congested(up50, down50),
    }
    if total > 0:
        out["owd_up_share"] = max(0.0, up50) / total
    return out


def summarise(
    send_mono: Sequence[float],
    replies: Sequence[Reply],
    duration_s: float,
    base: tuple[float, float] | None = None,
) -> dict[str, float | int | str]:
    """Pure statistics of one run. ``send_mono[i]`` is when seq i was sent (monotonic s);
    ``base`` the idle minimum of each direction (``owd_base``; default: of these replies)."""
    sent = len(send_mono)
    first, dup, order = _first_replies(replies, sent)
    received = len(first)
    out: dict[str, float | int | str] = {
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
    out.update(_jitters([first[s] for s in sorted(first)], send_mono))
    ip = [abs(x) for x in stats.ipdv(rtts)]
    if ip:
        out["ipdv_p95_ms"] = stats.percentile(ip, 95) or 0.0
    out["burst_loss_200ms_pct"] = (
        stats.worst_window_loss_pct(send_mono, [i in first for i in range(sent)], 0.2) or 0.0
    )
    out["reorder_pct"] = stats.reorder_pct(order) or 0.0
    firsts = [first[s] for s in sorted(first)]
    out.update(direction_fields(firsts, base if base is not None else owd_base(firsts)))
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


def _turnaround(r: Reply) -> float:
    """How long the reflector held the packet (its send less its receive timestamp), s."""
    return max(0.0, twamp.ntp_to_s(r.pkt.timestamp) - twamp.ntp_to_s(r.pkt.receive_ts))


def _rtt_ms(r: Reply, sent_at: float) -> float:
    """Round trip on our monotonic clock less the reflector's turnaround, ms."""
    return ((r.rx_mono - sent_at) - _turnaround(r)) * 1000.0


def _jitters(by_seq: Sequence[Reply], send_mono: Sequence[float]) -> dict[str, float]:
    """RFC 3550 jitter of the round trip (our clock, less the reflector's turnaround, as the
    RTT figures: how long the reflector took to answer is not the path's), the forward path
    (sender -> reflector timestamps) and the return path (reflector -> our wall clock): the
    settled mean of the running J (``stats.settled_jitter``), over the replies in *sending*
    order.

    Sending order, not arrival order: at 500 packets/s (2 ms apart) a path whose delay varies
    by more than the gap reorders packets, and J over arrival order then pairs each packet
    with whichever arrived just before it, reading high (+5 % for uniform +-2 ms, +9 % for
    +-5 ms, by simulation): the figure would depend on our send rate, not only on the path."""
    ntp = twamp.ntp_to_s
    paths = {
        "jitter_rfc3550_ms": [(send_mono[r.seq], r.rx_mono - _turnaround(r)) for r in by_seq],
        "jitter_up_rfc3550_ms": [(ntp(r.pkt.sender_ts), ntp(r.pkt.receive_ts)) for r in by_seq],
        "jitter_down_rfc3550_ms": [(ntp(r.pkt.timestamp), ntp(r.rx_wall_ntp)) for r in by_seq],
    }
    out: dict[str, float] = {}
    for key, pairs in paths.items():
        j = stats.settled_jitter([a * 1000 for a, _ in pairs], [b * 1000 for _, b in pairs])
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


def windows(trace: Trace, window_s: float) -> list[tuple[float, dict[str, float | int | str]]]:
    """Statistics per ``window_s`` of send time: [(offset_s, fields), ...].

    Quality targets (loss, jitter) are defined over 15 s windows, so a 60 s run gives four
    records; a run shorter than one window gives one record over the whole run. The one-way
    delay variation of every window is taken above the minimum of the whole run.
    """
    send = trace.send_mono
    if not send:
        return []
    base = owd_base([r for r in trace.replies if r.seq < len(send)])
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
        out.append((send[a] - t0, summarise(send[a:b], reps, dur, base)))
    return out
