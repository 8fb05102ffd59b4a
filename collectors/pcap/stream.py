"""One RTP stream's analysis, sans-IO: loss (RFC 3550 A.1), duplicates, jitter exactly as
Wireshark's ``rtppacket_analyse`` (ui/tap-rtp-analysis.c, 4.0), maximum delta, longest
gap, late arrivals beyond a playout buffer (for the MOS), and the clock-rate guess.

Packets are appended to ``StreamState.pending`` by the reader (cheap) and analysed in
batches by ``flush`` with local variables (fast).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

STATIC_CLOCK: dict[int, int] = {
    0: 8000, 1: 8000, 2: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000,
    9: 8000, 10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025,
    17: 22050, 18: 8000, 19: 8000, 25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000,
    33: 90000, 34: 90000,
}  # fmt: skip
"""Static RTP payload type -> clock rate (Hz), exactly Wireshark's ``clock_map``
(tap-rtp-analysis.c, from the IANA RTP parameters registry / RFC 3551)."""

#: Payload type names (RFC 3551 table 4/5), for the table output only.
PT_NAMES: dict[int, str] = {
    0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4-16k", 7: "LPC", 8: "PCMA", 9: "G722",
    10: "L16-2ch", 11: "L16", 12: "QCELP", 13: "CN", 14: "MPA", 15: "G728", 18: "G729",
    19: "CN-old", 25: "CelB", 26: "JPEG", 28: "nv", 31: "H261", 32: "MPV", 33: "MP2T",
    34: "H263",
}  # fmt: skip

#: Clock rates a dynamic payload type may be snapped to by the heuristic: the usual ones
#: (Opus 48000, AMR/iLBC/telephone-event 8000, AMR-WB/SILK-WB 16000, video 90000). They
#: are at least 1.5x apart, so a sender whose pacing drifts by 10 % cannot flip the guess
#: (44100 and 24000 are left out for that reason; give them with --clock).
DYNAMIC_CANDIDATES: tuple[int, ...] = (8000, 16000, 32000, 48000, 90000)
#: Packets and seconds of a dynamic-PT stream buffered before its clock rate is guessed.
GUESS_PACKETS = 50
GUESS_SECONDS = 1.0

#: RFC 3550 A.1: the largest step forward that is still in order, and the most a packet may
#: arrive behind the highest sequence number and still count as late (not a jump).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
#: Arrival flags kept per stream: the last 2 x SEQ_WINDOW sequence numbers, one byte each.
SEQ_WINDOW = 1024
assert SEQ_WINDOW > MAX_MISORDER  # a late packet always finds its flag in the window
#: A duplicate is found among the last DUP_WINDOW sequence numbers of its stream.
DUP_WINDOW = 16
#: Playout (jitter) buffer assumed for the MOS: a packet later than this against its
#: timestamp leaves the listener with silence for the rest of the delay (docs/pcap.md).
PLAYOUT_BUFFER_MS = 100.0
#: Packets buffered before analysis: per stream, and over all streams (bounds memory).
PENDING_PER_STREAM = 4096
PENDING_MAX = 1 << 16

PT_CN, PT_CN_OLD = 13, 19
#: Wireshark's default payload type of RFC 4733 events without SDP (rtpevent preference).
PT_EVENT_DEFAULT = 101

#: (arrival ms since first frame, seq, rtp timestamp, second header byte, rtp bytes, tail)
Pending = tuple[float, int, int, int, int, bytes]


class StreamState:
    """One RTP stream (ssrc + src + dst).

    Loss, burst loss and reorder follow RFC 3550 A.1 (``update_seq``) on extended sequence
    numbers, in memory that does not depend on the packets: a window of arrival flags for
    the last ``2 * SEQ_WINDOW`` sequence numbers (one byte each) slides forward with the
    highest sequence number; flags that leave it are final and are folded into counters
    (lost, the current run of losses, the longest run). A step forward of less than
    ``MAX_DROPOUT`` is in order; a packet at most ``MAX_MISORDER`` behind is late (it
    fills its hole: reorder) or a repeat; anything else is a "very large jump": only when
    the next packet follows it does the sender count as restarted (A.1's re-sync).

    A repeat of a sequence number already received is a *duplicate* when it also has the
    same RTP timestamp, length and last 8 bytes (for SRTP the authentication tag, a keyed
    hash of the whole packet) as the packet last received with that number among the last
    ``DUP_WINDOW`` numbers. Duplicates count in ``packets`` and jitter (as Wireshark) and in
    ``duplicates``, never in loss or in the small-step test of ``looks_like_rtp``.
    """

    __slots__ = (
        "bad_seq",
        "buf",
        "bytes",
        "clock",
        "clock_source",
        "divs",
        "dst",
        "dups",
        "event",
        "ext_max",
        "ext_min",
        "fin_expected",
        "fin_lost",
        "first_pt",
        "first_ts",
        "gap_max",
        "guessing",
        "ipv6",
        "jitter",
        "lastnominal",
        "late_ms",
        "lookup",
        "max_burst",
        "max_delta",
        "max_jitter",
        "mean_jitter",
        "pending",
        "pt",
        "recent",
        "reorder",
        "restarts",
        "run",
        "seq_lo",
        "src",
        "ssrc",
        "steps",
        "t_first",
        "t_last",
        "time",
        "total_nr",
    )  # fmt: skip

    def __init__(self, ssrc: int, src: str, dst: str, ipv6: bool, pt: int,
                 lookup: Callable[[int], tuple[int, str]]):  # fmt: skip
        """``lookup(pt) -> (clock Hz, source)``: 0 Hz for no jitter; source "option",
        "sdp", "static", "event" or "" (unknown: a dynamic type is guessed)."""
        self.ssrc = ssrc
        self.src = src
        self.dst = dst
        self.ipv6 = ipv6
        self.lookup = lookup
        rate, how = lookup(pt)
        self.clock = rate
        self.clock_source = how
        self.event = how == "event"
        self.guessing = how == "" and pt >= 96
        if how == "" and not self.guessing:
            self.clock_source = "unknown"  # unassigned static type: no jitter, as Wireshark
        self.pending: list[Pending] = []
        self.pt = self.first_pt = pt
        self.first_ts = 0
        self.time = self.lastnominal = 0.0
        self.jitter = self.max_jitter = self.mean_jitter = 0.0
        self.max_delta = self.gap_max = self.late_ms = 0.0
        self.total_nr = 0
        self.divs: dict[int, int] = {}
        self.ext_max = self.ext_min = 0  # highest and lowest extended sequence number
        self.seq_lo = 0  # extended sequence number of buf[0]
        self.buf = bytearray()  # arrival flags of seq_lo .. seq_lo + 2 * SEQ_WINDOW - 1
        self.recent: list[Any] = [None] * DUP_WINDOW  # last packets by ext seq mod window
        self.bad_seq = -1  # A.1 bad_seq: the number that would confirm a restart
        self.fin_lost = self.fin_expected = 0
        self.run = self.max_burst = self.restarts = self.reorder = 0
        self.steps = 0  # packets that moved the highest sequence number on by 1-512
        self.dups = 0
        self.bytes = 0
        self.t_first = self.t_last = 0.0

    # -- the batch: set-up, then one loop with locals

    def _ready(self, final: bool, force: bool) -> bool:
        """A dynamic payload type with no known clock rate waits until ``GUESS_PACKETS``
        packets over ``GUESS_SECONDS`` are buffered (or the end, or ``PENDING_PER_STREAM``
        packets, or ``force``: memory is short), then its clock rate is guessed."""
        pend = self.pending
        if not self.guessing:
            return True
        if (
            not (final or force)
            and len(pend) < PENDING_PER_STREAM
            and (len(pend) < GUESS_PACKETS or pend[-1][0] - pend[0][0] < GUESS_SECONDS * 1000)
        ):
            return False
        if looks_like_events(pend):
            self.clock, self.clock_source, self.event = 8000, "event", True
        else:
            self.clock, self.clock_source = guess_clock(pend), "guessed"
        self.guessing = False
        return True

    def _first(self, p: Pending) -> None:
        t, seq, ts, _b1, _size, _tail = p
        self.first_ts = ts
        self.time = self.t_first = self.t_last = t
        # Wireshark converts ticks to ms by dividing by (guint32)clock_rate / 1000; events
        # (RFC 4733) carry no audio timing: no jitter from them
        self.divs = {self.first_pt: 0 if self.event else self.clock // 1000}
        self.ext_max = self.ext_min = seq
        self.seq_lo = seq - SEQ_WINDOW  # room for packets that arrive before the first
        self.buf = bytearray(2 * SEQ_WINDOW)

    def flush(self, final: bool = False, force: bool = False) -> None:
        """Analyse the pending packets (see ``_ready`` for a clock rate still to guess)."""
        pend = self.pending
        if not pend or not self._ready(final, force):
            return
        if self.total_nr == 0:
            self._first(pend[0])
        self._loop(pend)
        pend.clear()  # the same list: the reader holds it (analysis.py)

    def _loop(self, pend: list[Pending]) -> None:
        first_ts, divs, recent = self.first_ts, self.divs, self.recent
        time_, lastnominal, t_prev = self.time, self.lastnominal, self.t_last
        jitter, max_jitter, mean_jitter = self.jitter, self.max_jitter, self.mean_jitter
        max_delta, gap_max, late_ms = self.max_delta, self.gap_max, self.late_ms
        n, prev_pt = self.total_nr, self.pt
        ext_max, ext_min, buf, lo = self.ext_max, self.ext_min, self.buf, self.seq_lo
        hi = lo + len(buf)  # first extended number past the window
        bad_seq = self.bad_seq
        max_dropout, late, dmask, jb = MAX_DROPOUT, 0x10000 - MAX_MISORDER, DUP_WINDOW - 1, \
            PLAYOUT_BUFFER_MS  # fmt: skip
        reorder = steps = nbytes = dups = 0
        for p in pend:
            t, seq, ts, b1, size, tail = p
            nbytes += size
            # -- loss, reorder, duplicates: RFC 3550 A.1 update_seq on extended numbers
            delta = (seq - ext_max) & 0xFFFF
            if delta < max_dropout:  # in order, with a permissible gap (or a repeat)
                if delta:
                    ext_max += delta
                    if delta <= 512:
                        steps += 1
                    if ext_max >= hi:
                        lo, buf = self._slide(ext_max, lo, buf, ext_min)
                        hi = lo + len(buf)
                    buf[ext_max - lo] = 1
                    recent[ext_max & dmask] = p
                elif buf[ext_max - lo]:
                    q = recent[ext_max & dmask]
                    if q is not None and q[1] == seq and q[2] == ts and q[4] == size and q[5] == tail:
                        dups += 1
                else:
                    buf[ext_max - lo] = 1
                    recent[ext_max & dmask] = p
            elif delta > late:  # late (by under MAX_MISORDER) or a repeat: in the window
                ext = ext_max - 0x10000 + delta
                i = ext - lo
                if not buf[i]:
                    reorder += 1
                    buf[i] = 1
                    if ext_max - ext < DUP_WINDOW:
                        recent[ext & dmask] = p
                else:
                    q = recent[ext & dmask]
                    if q is not None and q[1] == seq and q[2] == ts and q[4] == size and q[5] == tail:
                        dups += 1
                if ext < ext_min:
                    ext_min = ext
            elif seq == bad_seq:  # two sequential packets after a very large jump: restart
                self._close(lo, buf, ext_min, ext_max)
                self.restarts += 1
                ext_min, ext_max = seq - 1, seq
                lo = ext_min - SEQ_WINDOW
                buf = bytearray(2 * SEQ_WINDOW)
                hi = lo + len(buf)
                buf[SEQ_WINDOW] = buf[SEQ_WINDOW + 1] = 1
                bad_seq = -1
            else:  # a very large jump: set aside until the next packet confirms it
                bad_seq = (seq + 1) & 0xFFFF
            # -- longest gap between arrivals (any packets: a freeze shows with no loss)
            if t - t_prev > gap_max:
                gap_max = t - t_prev
            t_prev = t
            # -- jitter and delta: Wireshark 4.0 rtppacket_analyse
            if n == 0:  # first packet: state only
                n = 1
                continue
            pt = b1 & 0x7F
            dts = (ts - first_ts) & 0xFFFFFFFF
            div = divs.get(pt)
            if div is None:
                div = divs[pt] = self._div_of(pt)
            if dts < 0x80000000:  # in time sequence: not before the first packet's stamp
                if div:
                    nominal = dts / div
                    d = t - (time_ + (nominal - lastnominal))
                    if d > jb:
                        late_ms += d - jb
                    jitter = (15.0 * jitter + abs(d)) / 16.0
                    lastnominal = nominal
                    # "regular" packets only: no marker, no comfort noise before or now
                    if not b1 & 0x80 and pt != 13 and pt != 19 and prev_pt != 13 and prev_pt != 19:
                        if jitter > max_jitter:
                            max_jitter = jitter
                        if t - time_ > max_delta:
                            max_delta = t - time_
                        mean_jitter = (mean_jitter * (n - 1) + jitter) / n
                elif (
                    t - time_ > max_delta
                    and not b1 & 0x80 and pt != 13 and pt != 19 and prev_pt != 13 and prev_pt != 19
                ):  # fmt: skip
                    max_delta = t - time_
                time_ = t
            prev_pt = pt
            n += 1
        self.time, self.lastnominal, self.t_last = time_, lastnominal, t_prev
        self.jitter, self.max_jitter, self.mean_jitter = jitter, max_jitter, mean_jitter
        self.max_delta, self.gap_max, self.late_ms = max_delta, gap_max, late_ms
        self.total_nr, self.pt = n, prev_pt
        self.ext_max, self.ext_min, self.buf, self.seq_lo = ext_max, ext_min, buf, lo
        self.bad_seq = bad_seq
        self.reorder += reorder
        self.steps += steps
        self.bytes += nbytes
        self.dups += dups

    def _final(self, flags: bytes) -> None:
        """Fold arrival flags that are final, in sequence order, into the counters."""
        n = len(flags)
        got = flags.count(1)
        if got == n:
            if self.run:
                self.max_burst = max(self.max_burst, self.run)
                self.run = 0
            return
        self.fin_lost += n - got
        if not got:
            self.run += n
            return
        first, last = flags.find(1), flags.rfind(1)
        self.max_burst = max(self.max_burst, self.run + first)
        if last - first + 1 > got:  # losses between the first and last arrival
            self.max_burst = max(self.max_burst, *map(len, flags[first:last].split(b"\x01")))
        self.run = n - 1 - last

    def _slide(self, ext: int, lo: int, buf: bytearray, ext_min: int) -> tuple[int, bytearray]:
        """Move the window so that ``ext`` is in it with ``SEQ_WINDOW - 1`` numbers behind;
        the numbers that leave it are final."""
        size = len(buf)
        new_lo = ext - SEQ_WINDOW + 1
        start = max(lo, ext_min)  # numbers below the sequence's lowest were never expected
        if start < new_lo:
            self._final(bytes(buf[start - lo : min(new_lo, lo + size) - lo]))
            beyond = new_lo - max(lo + size, start)  # jumped over, never in the window
            if beyond > 0:
                self.fin_lost += beyond
                self.run += beyond
        keep = lo + size - new_lo
        nbuf = bytearray(size)
        if keep > 0:
            nbuf[:keep] = buf[size - keep :]
        return new_lo, nbuf

    def _close(self, lo: int, buf: bytearray, ext_min: int, ext_max: int) -> None:
        """The sequence ends (a restart or the end of the capture): all of it is final."""
        start = max(lo, ext_min)
        if start <= ext_max:
            self._final(bytes(buf[start - lo : ext_max - lo + 1]))
        self.max_burst = max(self.max_burst, self.run)
        self.run = 0
        self.fin_expected += ext_max - ext_min + 1

    def _div_of(self, pt: int) -> int:
        """Per-packet clock (Wireshark looks it up per packet): a payload type other than the
        stream's first uses the option, SDP or static table, else no jitter for that packet
        (as Wireshark does for a dynamic type it has no SDP for, e.g. telephone-event)."""
        rate, how = self.lookup(pt)
        return 0 if how == "event" else rate // 1000

    def loss(self) -> tuple[int, int, int]:
        """(expected, lost, longest run lost) over every sequence of the stream: highest −
        lowest extended sequence number + 1, and the numbers in that range never received.
        After the final ``flush``: it closes the current sequence (once)."""
        if self.buf:
            self._close(self.seq_lo, self.buf, self.ext_min, self.ext_max)
            self.buf = bytearray()
        return self.fin_expected, self.fin_lost, self.max_burst

    def looks_like_rtp(self) -> bool:
        """Most packets move the sequence number on by a small step (1-512, so even 90 %
        loss passes): rules out random UDP that passed the first-byte test (DNS ids, game
        traffic), whose 16-bit "sequence numbers" jump at random. Duplicates do not count
        against a stream (a SPAN port that copies every frame twice)."""
        n = self.total_nr - self.dups
        return n >= 2 and 2 * self.steps >= n - 1


def looks_like_events(pending: list[Pending]) -> bool:
    """RFC 4733 telephone events without SDP: every packet is a 12-byte header and one
    4-byte event (event code 0-255, E/R/volume, duration)."""
    return bool(pending) and all(p[4] == 16 for p in pending)


def guess_clock(pending: list[Pending]) -> int:
    """Clock rate of a dynamic payload type, from its first buffered packets.

    The RTP timestamp advances at the media clock rate, so ticks / elapsed arrival time is
    the rate, snapped (in log distance) to the nearest common rate in
    ``DYNAMIC_CANDIDATES``. With under 0.2 s of data: 90000 if a quarter of the packets share
    their timestamp with the previous one (video frames split over packets) or half are
    larger than 400 bytes, else 48000 (Opus, the usual dynamic audio codec).
    """
    if len(pending) >= 2:
        t0, _, ts0 = pending[0][:3]
        t1, _, ts1 = pending[-1][:3]
        ticks = (ts1 - ts0) & 0xFFFFFFFF
        dt = (t1 - t0) / 1000.0
        if dt > 0.2 and 0 < ticks < 0x80000000:
            rate = ticks / dt
            return min(DYNAMIC_CANDIDATES, key=lambda c: abs(math.log(rate / c)))
    same = sum(1 for a, b in itertools.pairwise(pending) if a[2] == b[2])
    big = sum(1 for x in pending if x[4] > 400)
    if pending and (same * 4 >= len(pending) or big * 2 >= len(pending)):
        return 90000
    return 48000


