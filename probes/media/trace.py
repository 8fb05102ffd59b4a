"""The receive side of one direction of a call, sans-IO: packets in (``RxTrace.add``),
statistics out (``RxTrace.stats`` / ``trace_stats``), in memory bounded by the declared
schedule. The probe and the responder (``servers/``) both use it, so the upstream and the
downstream are measured the same way."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from netready.probes.media.playout import Frame, audio_playout, video_playout
from netready.probes.media.wire import (
    AUDIO_INTERVAL_NS,
    FPS,
    STREAM_AUDIO,
    STREAM_VIDEO,
    schedule,
)

from netready import stats


@dataclass(frozen=True, slots=True)
class Arrival:
    """One received media packet. ``send_ns`` is in the sender's clock, ``recv_ns`` in the
    receiver's (monotonic, ns); ``echo_ns``/``hold_ns`` carry the RTT echo (0 if none)."""

    seq: int
    stream: int
    send_ns: int
    recv_ns: int
    size: int
    tos: int | None = None
    echo_ns: int = 0
    hold_ns: int = 0


@dataclass
class DirectionStats:
    """Receive statistics of one direction of one call (what ``trace_stats`` returns)."""

    sent: int
    received: int
    duplicates: int = 0
    loss_pct: float | None = None
    loss_15s_worst_pct: float | None = None
    burst_loss_200ms_worst_pct: float | None = None
    max_burst_lost: int = 0
    reorder_pct: float | None = None
    jitter_rfc3550_ms: float | None = None
    jitter_rfc3550_15s_worst_ms: float | None = None
    video_jitter_rfc3550_ms: float | None = None
    ipdv_p95_ms: float | None = None
    pdv_p95_ms: float | None = None
    achieved_kbps: float | None = None
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None
    rtt_samples: int = 0
    dscp_audio_rx: int | None = None
    dscp_video_rx: int | None = None
    dscp_preserved: bool | None = None
    dscp_note: str | None = None  # DSCP_NOT_MEASURABLE when no packet carried its TOS
    host_drops: int = 0  # dropped by the receiving host's socket buffer (not the network)
    audio_discard_pct: float | None = None  # arrived after the play-out deadline (playout)
    audio_buffer_ms: float | None = None
    voice_mos_g107: float | None = None
    voice_codec: str | None = None
    voice_burst_r: float | None = None
    video_discard_pct: float | None = None
    freeze_count: int | None = None
    freeze_total_ms: float | None = None
    freeze_longest_ms: float | None = None
    frames_rendered_pct: float | None = None
    #: Per stream (``_streams``; the QoS check, probes/qos, compares classes by them): loss,
    #: and the one-way delay (receive time - send time, ms, in the two ends' clocks: off by
    #: their unknown offset, so only differences between figures of one direction mean
    #: anything) minimum, median and 95th percentile.
    audio_loss_pct: float | None = None
    video_loss_pct: float | None = None
    audio_owd_min_ms: float | None = None
    audio_owd_p50_ms: float | None = None
    audio_owd_p95_ms: float | None = None
    video_owd_min_ms: float | None = None
    video_owd_p50_ms: float | None = None
    video_owd_p95_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DirectionStats:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def _send_times(
    kind: bytearray, send_ns: Sequence[int], sent: int, span: tuple[int, int] | None
) -> array[float]:
    """Send time (ns) of every sequence number 0..sent-1: measured when received
    (``kind[s]`` non-zero), otherwise interpolated between the nearest received neighbours
    (or the sender's first/last send time, ``span``). One pass; no per-packet objects."""
    n = min(sent, len(kind))

    def anchors() -> Iterator[tuple[int, int]]:
        last = -1
        if span is not None and not (n > 0 and kind[0]):
            yield 0, span[0]
            last = 0
        for s in range(n):
            if kind[s]:
                yield s, send_ns[s]
                last = s
        if span is not None and last != sent - 1:
            yield sent - 1, span[1]

    it = anchors()
    cur = next(it, None)
    if cur is None:
        return array("d", bytes(8 * sent))
    nxt = next(it, None)
    out = array("d")
    for s in range(sent):
        while nxt is not None and nxt[0] <= s:
            cur, nxt = nxt, next(it, None)
        a, ta = cur
        if s == a or nxt is None or s < a:
            out.append(float(ta))
        else:
            b, tb = nxt
            out.append(ta + (tb - ta) * (s - a) / (b - a))
    return out


#: The fields ``DirectionStats`` gets from the receiver's play-out model (``playout``).
PLAYOUT_FIELDS = (
    "audio_discard_pct",
    "audio_buffer_ms",
    "voice_mos_g107",
    "voice_codec",
    "voice_burst_r",
    "video_discard_pct",
    "freeze_count",
    "freeze_total_ms",
    "freeze_longest_ms",
    "frames_rendered_pct",
)


@dataclass(frozen=True)
class Layout:
    """The sender's declared schedule (``wire.schedule``), which maps each sequence number
    to its stream and video frame: what the play-out model needs to know frames."""

    video_kbps: float
    duration_s: float
    keyframes: bool = True
    keyframe_offset: int = 0


def _audio_seqs(layout: Layout) -> Iterator[int]:
    """The sequence numbers of the audio packets of ``layout``'s schedule."""
    seq = 0
    for _off, stream, _frame, sizes in schedule(
        layout.video_kbps,
        layout.duration_s,
        keyframes=layout.keyframes,
        keyframe_offset=layout.keyframe_offset,
    ):
        if stream == STREAM_AUDIO:
            yield seq
        seq += len(sizes)


#: Running-J values left out of the jitter means while J converges from 0 (``stats``).
JITTER_WARMUP = stats.JITTER_WARMUP


class RxTrace:
    """The receive side of one direction of a call, fed one packet at a time (``add``), in
    memory bounded by ``capacity`` sequence numbers whatever the packets' size.

    Kept per sequence number: whether and on which stream it arrived, its send and
    receive time and its RTT sample (25 bytes), and its place in the arrival order
    (4 bytes). Nothing is kept for a duplicate or a sequence number outside
    0..capacity-1 (both counted). The responder sizes ``capacity`` from the session's
    declared schedule (``schedule_packets``), so a session's memory is at most
    ``BYTES_PER_PACKET`` x that. ``stats(sent, ...)`` is ``trace_stats``: packets with a
    sequence number >= ``sent`` are left out, except from the duplicate, byte and DSCP
    counts, which are kept as packets arrive (a sender on its schedule sends none).
    """

    BYTES_PER_PACKET = 29

    def __init__(self, capacity: int):
        self.capacity = max(0, capacity)
        self.kind = bytearray()  # per seq: 0 not received, else 1 + stream
        self.send_ns = array("Q")
        self.recv_ns = array("Q")
        self.rtt_ms = array("d")  # per seq: NaN when the packet carried no usable echo
        self.order = array("I")  # first arrivals, in arrival order
        self.tos: Counter[tuple[int, int]] = Counter()  # (stream, DSCP) of first arrivals
        self.bytes = 0  # UDP payload of first arrivals
        self.arrivals = 0
        self.duplicates = 0
        self.out_of_range = 0

    def _grow(self, seq: int) -> None:
        have = len(self.kind)
        k = min(self.capacity, max(seq + 1, 2 * have, 256)) - have
        self.kind.extend(bytes(k))
        zeros = bytes(8 * k)
        self.send_ns.frombytes(zeros)
        self.recv_ns.frombytes(zeros)
        self.rtt_ms.frombytes(zeros)

    def add(
        self,
        seq: int,
        stream: int,
        send_ns: int,
        recv_ns: int,
        size: int,
        tos: int | None = None,
        echo_ns: int = 0,
        hold_ns: int = 0,
    ) -> None:
        self.arrivals += 1
        if not 0 <= seq < self.capacity:
            self.out_of_range += 1
            return
        if seq >= len(self.kind):
            self._grow(seq)
        if self.kind[seq]:
            self.duplicates += 1
            return
        self.kind[seq] = 1 + min(stream, 254)
        self.send_ns[seq] = send_ns
        self.recv_ns[seq] = recv_ns
        rtt = (recv_ns - echo_ns - hold_ns) / 1e6 if echo_ns else math.nan
        self.rtt_ms[seq] = rtt if 0 <= rtt < 60_000 else math.nan
        self.order.append(seq)
        self.bytes += size
        if tos is not None:
            self.tos[(stream, tos >> 2)] += 1

    def memory_bytes(self) -> int:
        """Bytes held by the per-packet arrays (what grows with the packet count)."""
        return (
            len(self.kind)
            + sum(a.itemsize * len(a) for a in (self.send_ns, self.recv_ns, self.rtt_ms))
            + self.order.itemsize * len(self.order)
        )

    def stats(
        self,
        sent: int,
        duration_s: float,
        *,
        send_span_ns: tuple[int, int] | None = None,
        dscp_audio: int | None = None,
        dscp_video: int | None = None,
        window_s: float = 15.0,
        burst_window_ms: float = 200.0,
        layout: Layout | None = None,
    ) -> DirectionStats:
        """Statistics of this direction once ``sent`` packets were sent (see ``trace_stats``)."""
        n = min(max(sent, 0), len(self.kind))
        received = n - self.kind.count(0, 0, n)
        st = DirectionStats(sent=sent, received=received, duplicates=self.duplicates)
        if sent <= 0:
            return st
        order: Sequence[int] = self.order
        if max(order, default=-1) >= sent:
            order = array("I", (s for s in order if s < sent))
        st.loss_pct = 100.0 * (sent - received) / sent
        st.reorder_pct = stats.reorder_pct(order)
        if duration_s > 0:
            st.achieved_kbps = self.bytes * 8 / duration_s / 1000.0
        self._loss(st, sent, n, send_span_ns, window_s, burst_window_ms)
        if not received:
            return st
        self._jitter(st, order, n, window_s)
        self._delay(st, n)
        self._dscp(st, dscp_audio, dscp_video)
        self._voice(st, n, duration_s, layout)
        if layout is not None:
            self._video(st, n, layout)
            self._streams(st, sent, n, layout)
        return st

    def _streams(self, st: DirectionStats, sent: int, n: int, layout: Layout) -> None:
        """Loss and one-way delay percentiles of each stream (the schedule says which
        sequence numbers are audio)."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        audio = {s for s in _audio_seqs(layout) if s < sent}
        for stream, name in ((STREAM_AUDIO, "audio"), (STREAM_VIDEO, "video")):
            mine = 1 + stream
            seqs = audio if stream == STREAM_AUDIO else None
            n_sent = len(audio) if seqs is not None else sent - len(audio)
            delays = array("d", ((recv[s] - send[s]) / 1e6 for s in range(n) if kind[s] == mine))
            if n_sent > 0:
                setattr(st, f"{name}_loss_pct", 100.0 * max(0, n_sent - len(delays)) / n_sent)
            if delays:
                p50, p95 = stats.percentiles(delays, 50, 95)
                setattr(st, f"{name}_owd_min_ms", min(delays))
                setattr(st, f"{name}_owd_p50_ms", p50)
                setattr(st, f"{name}_owd_p95_ms", p95)

    def _audio_packets(
        self, n: int, duration_s: float, layout: Layout | None
    ) -> Iterator[tuple[float, float] | None]:
        """The audio packets in send order, (send_ms, recv_ms) or None where lost. With the
        sender's ``layout`` each sequence number's stream is known exactly. Without it, how
        many audio packets were lost is still exact (the schedule's count less those
        received), but where is estimated: on the 20 ms grid between received audio send
        times, never more than that count (a late sender's back-to-back pair is not a loss),
        the rest at the end."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        audio = 1 + STREAM_AUDIO
        if layout is not None:
            for s in _audio_seqs(layout):
                yield (send[s] / 1e6, recv[s] / 1e6) if s < n and kind[s] == audio else None
            return
        expected = math.ceil(duration_s * 1e9 / AUDIO_INTERVAL_NS)
        lost = max(0, expected - sum(1 for s in range(n) if kind[s] == audio))
        prev = None
        for s in range(n):
            if kind[s] != audio:
                continue
            if prev is not None:
                gap = min(lost, max(0, round((send[s] - prev) / AUDIO_INTERVAL_NS) - 1))
                lost -= gap
                yield from [None] * gap
            prev = send[s]
            yield send[s] / 1e6, recv[s] / 1e6
        yield from [None] * lost

    def _voice(self, st: DirectionStats, n: int, duration_s: float, layout: Layout | None) -> None:
        """Audio through the jitter buffer (``playout``), then G.107 of what is played."""
        a = audio_playout(self._audio_packets(n, duration_s, layout))
        if not a.sent or a.buffer_ms is None:
            return
        codec = stats.CODECS[stats.DEFAULT_CODEC]
        one_way = (st.rtt_p50_ms or 0.0) / 2.0 + a.buffer_ms + codec.delay_ms
        st.audio_discard_pct = a.discard_pct
        st.audio_buffer_ms = a.buffer_ms
        st.voice_burst_r = a.burst_r
        st.voice_codec = codec.name
        st.voice_mos_g107 = stats.g107_mos(one_way, a.ppl_pct, a.burst_r, codec.name)

    def _video(self, st: DirectionStats, n: int, layout: Layout) -> None:
        """Video frames (the schedule maps sequence numbers to frames) through the buffer."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        frames: list[Frame] = []
        seq = video_sent = 0
        for _off, stream, _frame, sizes in schedule(
            layout.video_kbps,
            layout.duration_s,
            keyframes=layout.keyframes,
            keyframe_offset=layout.keyframe_offset,
        ):
            seqs = range(seq, seq + len(sizes))
            seq += len(sizes)
            if stream != STREAM_VIDEO:
                continue
            video_sent += len(sizes)
            got = [s for s in seqs if s < n and kind[s] == 1 + STREAM_VIDEO]
            if not got:
                frames.append(Frame(0.0, 0.0, False, 0))
                continue
            done = max(recv[s] for s in got) / 1e6
            frames.append(
                Frame(
                    send[got[0]] / 1e6, done, len(got) == len(sizes) and got[0] == seqs[0], len(got)
                )
            )
        if not frames:
            return
        v = video_playout(frames, 1000.0 / FPS)
        st.video_discard_pct = 100.0 * v.discarded_packets / video_sent if video_sent else None
        st.freeze_count = v.freezes
        st.freeze_total_ms = v.freeze_total_ms
        st.freeze_longest_ms = v.freeze_longest_ms
        st.frames_rendered_pct = 100.0 * v.rendered / v.frames

    def _loss(
        self,
        st: DirectionStats,
        sent: int,
        n: int,
        span: tuple[int, int] | None,
        window_s: float,
        burst_window_ms: float,
    ) -> None:
        """Loss in time windows: every packet sent, with interpolated send times for lost ones."""
        times = _send_times(self.kind, self.send_ns, sent, span)
        got = bytes(self.kind[:n]) + bytes(sent - n)  # non-zero: received
        st.loss_15s_worst_pct = stats.worst_window_loss_pct(times, got, window_s * 1e9)
        st.burst_loss_200ms_worst_pct = stats.worst_window_loss_pct(
            times, got, burst_window_ms * 1e6
        )
        st.max_burst_lost = stats.max_burst(got)

    def _jitter(self, st: DirectionStats, order: Sequence[int], n: int, window_s: float) -> None:
        """RFC 3550 jitter in arrival order; the 15 s windows (by arrival) of the audio's.

        The figures are means of the running J once it has settled: J starts at 0 and
        needs about three time constants (16 packets each) to converge, so the first
        ``JITTER_WARMUP`` values are left out when there are at least twice as many (on a
        path of steady jitter, including them reads 4 % low over 8 s, 2 % over 15 s)."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        audio_kind, video_kind = 1 + STREAM_AUDIO, 1 + STREAM_VIDEO
        audio_n = sum(1 for s in order if kind[s] == audio_kind)
        skip = JITTER_WARMUP if audio_n - 1 >= 2 * JITTER_WARMUP else 0
        ja, jv = stats.RunningJitter(), stats.RunningJitter()
        win: dict[int, list[float]] = {}
        t0: int | None = None
        for s in order:
            k = kind[s]
            if k == audio_kind:
                j = ja.add(send[s] / 1e6, recv[s] / 1e6)
                if j is not None:
                    if t0 is None:
                        t0 = recv[s]
                    if ja.n <= skip:
                        continue
                    acc = win.setdefault(int((recv[s] - t0) // (window_s * 1e9)), [0.0, 0.0])
                    acc[0] += j
                    acc[1] += 1
            elif k == video_kind:
                jv.add(send[s] / 1e6, recv[s] / 1e6)
        if ja.n:
            st.jitter_rfc3550_ms = sum(a for a, _ in win.values()) / sum(b for _, b in win.values())
            st.jitter_rfc3550_15s_worst_ms = max(a / b for a, b in win.values())
            by_seq = array(
                "d", ((recv[s] - send[s]) / 1e6 for s in range(n) if kind[s] == audio_kind)
            )
            ipdv = array("d", (abs(x) for x in stats.ipdv(by_seq)))
            (st.ipdv_p95_ms,) = stats.percentiles(ipdv, 95)
        if jv.n:
            st.video_jitter_rfc3550_ms = jv.mean

    def _delay(self, st: DirectionStats, n: int) -> None:
        """PDV (RFC 5481) over every packet, and the RTT samples' percentiles."""
        kind, send, recv = self.kind, self.send_ns, self.recv_ns
        delays = array("d", ((recv[s] - send[s]) / 1e6 for s in range(n) if kind[s]))
        (p95,) = stats.percentiles(delays, 95)  # of delay - min delay: the same, shifted
        st.pdv_p95_ms = None if p95 is None else p95 - min(delays)
        del delays
        rtt = self.rtt_ms
        rtts = array("d", (rtt[s] for s in range(n) if kind[s] and not math.isnan(rtt[s])))
        st.rtt_samples = len(rtts)
        st.rtt_p50_ms, st.rtt_p95_ms = stats.percentiles(rtts, 50, 95)

    def _dscp(self, st: DirectionStats, dscp_audio: int | None, dscp_video: int | None) -> None:
        """The DSCP each stream mostly arrived with, and whether every packet kept its mark;
        when packets arrived but none carried its TOS (the host cannot read it: no
        IP_RECVTOS), ``dscp_note`` says so and the DSCP fields stay absent, never 0."""
        if self.arrivals and not self.tos:
            st.dscp_note = DSCP_NOT_MEASURABLE
            return
        tos_a = Counter({d: c for (stream, d), c in self.tos.items() if stream == STREAM_AUDIO})
        tos_v = Counter({d: c for (stream, d), c in self.tos.items() if stream == STREAM_VIDEO})
        if tos_a:
            st.dscp_audio_rx = tos_a.most_common(1)[0][0]
        if tos_v:
            st.dscp_video_rx = tos_v.most_common(1)[0][0]
        checks = []
        if tos_a and dscp_audio is not None:
            checks.append(tos_a.get(dscp_audio, 0) == sum(tos_a.values()))
        if tos_v and dscp_video is not None:
            checks.append(tos_v.get(dscp_video, 0) == sum(tos_v.values()))
        if checks:
            st.dscp_preserved = all(checks)


#: ``dscp_note`` of a direction whose receiver cannot read the TOS byte of what arrives.
DSCP_NOT_MEASURABLE = "not measurable here"


def trace_stats(
    arrivals: Iterable[Arrival],
    sent: int,
    duration_s: float,
    *,
    send_span_ns: tuple[int, int] | None = None,
    dscp_audio: int | None = None,
    dscp_video: int | None = None,
    window_s: float = 15.0,
    burst_window_ms: float = 200.0,
    layout: Layout | None = None,
) -> DirectionStats:
    """Statistics of one direction of a call from its received packet trace (no I/O).

    ``arrivals`` in arrival order; ``sent`` packets were sent (sequence numbers 0..sent-1)
    over ``duration_s`` seconds; ``send_span_ns`` is the sender's first and last send time
    (its clock), used to place trailing/leading losses in time. Jitter, IPDV and the 15 s
    jitter windows use the audio stream (the packets every 20 ms that MOS is about); loss,
    burst loss and reorder use every packet; PDV uses every packet. Packets with a sequence
    number >= ``sent`` are ignored. The same as feeding an ``RxTrace`` packet by packet.
    """
    rx = RxTrace(sent)
    for a in arrivals:
        rx.add(a.seq, a.stream, a.send_ns, a.recv_ns, a.size, a.tos, a.echo_ns, a.hold_ns)
    return rx.stats(
        sent,
        duration_s,
        send_span_ns=send_span_ns,
        dscp_audio=dscp_audio,
        dscp_video=dscp_video,
        window_s=window_s,
        burst_window_ms=burst_window_ms,
        layout=layout,
    )
