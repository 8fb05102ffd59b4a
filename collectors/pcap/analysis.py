"""``analyse``: every RTP stream of a capture, sans-IO (a path in, ``StreamResult`` out).

The reader and the packet loop are fused for classic pcap files (most captures): one
``struct`` call reads a record header, one more reads Ethernet/SLL type + IPv4 + UDP + the
RTP fixed header of a packet of a stream already known, and the packet is appended to its
stream's batch without building a frame object (docs/pcap.md, *Performance*). Anything
else — the first packet of a stream, other link types, IPv6, TCP, TURN, SIP, RTCP, pcapng
— takes the general path (``_Scan.frame``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netready.collectors.pcap import capture, decode
from netready.collectors.pcap.capture import CaptureError
from netready.collectors.pcap.rtcp import Reports
from netready.collectors.pcap.sdp import Signalled, is_telephone_event
from netready.collectors.pcap.stream import (
    PENDING_MAX,
    PENDING_PER_STREAM,
    STATIC_CLOCK,
    StreamState,
)

from netready import stats
from netready.errors import ConfigError

#: Streams tracked (``--max-streams``); packets of further streams are counted, not analysed.
MAX_STREAMS = 10_000
#: TCP flows whose media byte stream is reassembled at once, and the bytes kept per flow.
MAX_TCP_FLOWS = 1024
MAX_TCP_BUFFER = 1 << 16


@dataclass(frozen=True)
class StreamResult:
    """What ``analyse`` reports per stream (JSON output uses exactly these field names)."""

    ssrc: str
    src: str
    dst: str
    payload_type: int
    packets: int
    expected: int
    lost: int
    loss_pct: float
    duplicates: int
    jitter_mean_ms: float
    jitter_max_ms: float
    max_delta_ms: float
    gap_max_ms: float
    max_burst_loss: int
    reorder: int
    duration_s: float
    bitrate_kbps: float
    mos_emodel: float
    transport: str
    rtcp_reports: int
    rtcp_loss_max_pct: float | None
    rtcp_jitter_max_ms: float | None
    rtcp_rtt_ms: float | None
    clock_hz: int
    clock_source: str
    start_time_ms: int

    #: Fields left out of ``--format json`` stream objects (they go into records/tables).
    INTERNAL = ("clock_hz", "clock_source", "start_time_ms")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self.INTERNAL}

    @property
    def media(self) -> str:
        if self.clock_source == "event":
            return "event"
        return "video" if self.clock_hz == 90000 else "audio" if self.clock_hz else "unknown"


def parse_clock(values: list[str] | tuple[str, ...]) -> dict[int, int]:
    """``["96=90000", "111=48000"]`` -> ``{96: 90000, 111: 48000}``; ConfigError otherwise."""
    out: dict[int, int] = {}
    for v in values:
        pt, sep, hz = v.partition("=")
        try:
            if not sep:
                raise ValueError
            p, h = int(pt), int(hz)
        except ValueError:
            raise ConfigError(f"--clock {v!r}: expected PT=HZ, e.g. 96=90000") from None
        if not 0 <= p <= 127 or not 1000 <= h <= 10_000_000:
            raise ConfigError(f"--clock {v!r}: payload type 0-127 and rate 1000-10000000 Hz")
        out[p] = h
    return out


class Analysis(list[StreamResult]):
    """``analyse``'s result: the streams, plus what was left out when the capture held more
    than ``max_streams`` RTP streams (``untracked_packets`` in ``untracked_streams`` further
    streams, the latter counted up to ``max_streams`` and then "at least")."""

    max_streams: int = MAX_STREAMS
    untracked_streams: int = 0
    untracked_packets: int = 0
    sdp_messages: int = 0
    rtcp_packets: int = 0

    @property
    def note(self) -> str | None:
        """One line for people when streams were left out, else None."""
        if not self.untracked_packets:
            return None
        more = f"{self.untracked_streams:,}" + ("+" if self.untracked_streams >= self.max_streams
                                                 else "")  # fmt: skip
        return (
            f"{self.untracked_packets:,} RTP-like packets in {more} more streams were not "
            f"analysed: only the first {self.max_streams:,} streams are tracked "
            "(raise it with --max-streams)"
        )


def rtp_header_fits(d: bytes, b0: int, ps: int, pe: int) -> bool:
    """CSRC list, header extension and padding count of an RTP header fit the packet."""
    plen = pe - ps
    hlen = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if plen < hlen + 4:
            return False
        hlen += 4 + 4 * ((d[ps + hlen + 2] << 8) | d[ps + hlen + 3])
    if hlen > plen:
        return False
    if b0 & 0x20:  # padding: count in the last octet
        padn = d[pe - 1]
        if padn == 0 or hlen + padn > plen:
            return False
    return True


class _Scan:
    """The state of one pass over a capture: streams, signalling, RTCP, TCP flows."""

    def __init__(self, clock: Mapping[int, int], max_streams: int) -> None:
        self.overrides = dict(clock)
        self.max_streams = max_streams
        self.streams: dict[tuple[int, bytes], StreamState] = {}
        self.pending: dict[tuple[int, bytes], list[Any]] = {}  # stream -> its pending list
        self.kinds: dict[tuple[int, bytes], str] = {}  # stream -> transport
        self.first_t: dict[tuple[int, bytes], float] = {}
        self.untracked: set[tuple[int, bytes]] = set()
        self.untracked_packets = 0
        self.buffered = 0
        self.sdp = Signalled()
        self.rtcp = Reports()
        self.tcp: dict[bytes, tuple[int, bytearray]] = {}  # flow -> (next seq, bytes)
        self.unsupported: dict[int, int] = {}
        self.total = 0

    # -- clock rates

    def lookup(self, src: str, dst: str) -> Callable[[int], tuple[int, str]]:
        overrides, sdp = self.overrides, self.sdp

        def rate(pt: int) -> tuple[int, str]:
            if pt in overrides:
                return overrides[pt], "option"
            sig = sdp.lookup(src, dst, pt)
            if sig is not None:
                return sig[1], "event" if is_telephone_event(sig[0]) else "sdp"
            if pt in STATIC_CLOCK:
                return STATIC_CLOCK[pt], "static"
            return 0, ""

        return rate

    # -- packets

    def rtp(self, t: float, ep: bytes, d: bytes, ps: int, pe: int, kind: str) -> None:
        """One candidate RTP/RTCP packet ``d[ps:pe]`` between the endpoints ``ep``."""
        if pe - ps < 12:
            return
        b0, b1 = d[ps], d[ps + 1]
        if b0 < 128 or b0 > 191:
            return  # RFC 7983: not RTP/RTCP (STUN 0-3, DTLS 20-63, TURN 64-79, ...)
        if 192 <= b1 <= 223:  # RFC 5761: RTCP packet types 192-223 (SR, RR, SDES, ...)
            self.rtcp.feed(d, ps, pe, t)
            return
        if b0 & 0x3F and not rtp_header_fits(d, b0, ps, pe):
            return
        seq, rts, ssrc = struct.unpack_from("!HII", d, ps + 2)
        key = (ssrc, ep)
        st = self.streams.get(key)
        if st is None:
            if len(self.streams) >= self.max_streams:
                self.untracked_packets += 1
                if len(self.untracked) < self.max_streams:
                    self.untracked.add(key)
                return
            src, dst, v6 = decode.endpoints(ep)
            st = StreamState(ssrc, src, dst, v6, b1 & 0x7F, self.lookup(src, dst))
            self.streams[key] = st
            self.pending[key] = st.pending
            self.kinds[key] = kind
            self.first_t[key] = t
        self.append(st, (t, seq, rts, b1, pe - ps, d[pe - 8 : pe]))

    def append(self, st: StreamState, p: Any) -> None:
        pend = st.pending
        pend.append(p)
        if len(pend) >= PENDING_PER_STREAM:
            st.flush()
        self.buffered += 1
        if self.buffered >= PENDING_MAX // 2:
            self.flush_all()

    def flush_all(self) -> None:
        """Many streams, each a little buffered: analyse all (bounds memory)."""
        for other in self.streams.values():
            other.flush(force=True)
        self.buffered = 0

    def frame(self, t: float, lt: int, d: bytes, fs: int, fe: int) -> None:
        """The general path: any frame of a supported link type."""
        tr = decode.transport(lt, d, fs, fe)
        if tr is None:
            if lt not in decode.SUPPORTED_LINKTYPES:
                self.unsupported[lt] = self.unsupported.get(lt, 0) + 1
            return
        proto, ep, ps, pe, tseq = tr
        if pe <= ps:
            return
        if proto == decode.TCP:
            self.tcp_segment(t, ep, d, ps, pe, tseq)
            return
        b0 = d[ps]
        if b0 >= 128:
            self.rtp(t, ep, d, ps, pe, "udp")
        elif b0 <= 3 or 0x40 <= b0 <= 0x4F:  # STUN/TURN: media inside Send/Data/ChannelData
            inner = decode.unwrap_turn(d, ps, pe)
            if inner is not None:
                self.rtp(t, ep, d, inner[0], inner[1], "turn")
        elif 65 <= b0 <= 90:  # a capital letter: SIP
            self.sdp.feed(d[ps:pe])

    def tcp_segment(self, t: float, ep: bytes, d: bytes, ps: int, pe: int, tseq: int) -> None:
        """RTP over TCP: RFC 4571 framing, or TURN over TCP (STUN and ChannelData framing);
        SIP over TCP. In-order segments of a flow are joined; a gap restarts the flow."""
        seg = d[ps:pe]
        flow = self.tcp.get(ep)
        if flow is not None and flow[0] == tseq:
            data = flow[1]
            data += seg
        else:
            if 65 <= seg[0] <= 90 and self.sdp.feed(seg):
                return
            if flow is None and len(self.tcp) >= MAX_TCP_FLOWS:
                return
            data = bytearray(seg)
        used = 0
        for kind, a, b in decode.tcp_messages(data):
            used = b
            if kind == 0:
                self.rtp(t, ep, bytes(data), a + 2, b, "tcp")
            elif kind in (1, 2):
                msg = bytes(data[a:b])
                inner = decode.unwrap_turn(msg, 0, len(msg))
                if inner is not None:
                    self.rtp(t, ep, msg, inner[0], inner[1], "turn-tcp")
        rest = data[used:]
        if len(rest) > MAX_TCP_BUFFER:
            rest = bytearray()
        self.tcp[ep] = ((tseq + pe - ps) & 0xFFFFFFFF, rest)


def _scan_pcap(sc: _Scan, rd: capture.Chunks) -> float:
    """The fused loop over a classic pcap file; returns the first frame's time (ns)."""
    p = rd.path
    endian, ns_mult, lt, limit = capture.pcap_header(rd)
    unpack_hdr = struct.Struct(endian + "IIII").unpack_from
    # ethertype + IPv4 without options + UDP + RTP fixed header in one call; the ethertype
    # sits just before the IP header in Ethernet and SLL frames
    unpack_fast = struct.Struct("!HB5xHxB14xH2xBBHII").unpack_from
    fo = {decode.LINKTYPE_ETHERNET: 14, decode.LINKTYPE_LINUX_SLL: 16}.get(lt, 0)
    fmul = ns_mult * 1e-6  # fraction units -> ms
    pending_get = sc.pending.get
    frame = sc.frame
    fast_max = PENDING_MAX // 2  # with the general path's own count: at most PENDING_MAX
    buffered = 0
    buf, pos, base = rd.buf, rd.pos, rd.base
    blen = len(buf)
    sec0 = frac0 = sec_last = -1
    base_ms = 0.0
    total = 0
    while True:
        if pos + 16 > blen:
            rd.pos = pos
            if not rd.need(16):
                if rd.pos < len(rd.buf):
                    raise rd.truncated_record()
                break
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
        sec, frac, incl, _orig = unpack_hdr(buf, pos)
        if incl > limit:
            raise capture.record_too_long(p, base + pos, incl, limit)
        fs = pos + 16
        fe = fs + incl
        if fe > blen:
            rd.pos = pos
            if not rd.need(16 + incl):
                raise capture.truncated_packet(rd, incl)
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
            continue
        pos = fe
        total += 1
        if sec != sec_last:  # ms of the whole second, once per second of capture
            if sec0 < 0:
                sec0, frac0 = sec, frac
            sec_last = sec
            base_ms = (sec - sec0) * 1000.0 - frac0 * fmul
        t = base_ms + frac * fmul
        if fo and incl >= fo + 40:
            et, vihl, fl, proto, ulen, b0, b1, seq, rts, ssrc = unpack_fast(buf, fs + fo - 2)
            ip = fs + fo
            pe = ip + 20 + ulen
            # IPv4 without options, UDP, unfragmented; RTP version 2 without padding,
            # extension or CSRCs (first byte 0x80), not RTCP (RFC 5761); complete
            if (
                b0 == 128 and proto == 17 and et == 0x0800 and vihl == 0x45 and pe <= fe
                and ulen >= 20 and not fl & 0x3FFF and not 192 <= b1 <= 223
            ):  # fmt: skip
                pend = pending_get((ssrc, buf[ip + 12 : ip + 24]))
                if pend is not None:  # a known stream: the whole fast path is this append
                    pend.append((t, seq, rts, b1, ulen - 8, buf[pe - 8 : pe]))
                    buffered += 1
                    if buffered >= fast_max:
                        sc.flush_all()
                        buffered = 0
                    continue
        frame(t, lt, buf, fs, fe)
    sc.total = total
    return sec0 * 1e9 + frac0 * ns_mult if total else 0.0


def _scan_any(sc: _Scan, path: str, progress: Any) -> float:
    t0 = None
    total = 0
    for ts_ns, lt, d, _off in capture.iter_frames(path, progress):
        total += 1
        if t0 is None:
            t0 = ts_ns
        sc.frame((ts_ns - t0) / 1e6, lt, d, 0, len(d))
    sc.total = total
    return float(t0 or 0)


def analyse(
    path: str | Path,
    clock: Mapping[int, int] | None = None,
    latency_ms: float = 0.0,
    min_packets: int = 2,
    progress: Any = None,
    max_streams: int = MAX_STREAMS,
) -> Analysis:
    """Analyse every RTP stream in a capture. Pure: a file in, results out.

    ``clock`` overrides the SDP and static clock rates (``{96: 90000}``). ``latency_ms`` is
    the one-way network delay assumed for the MOS (a capture at one point cannot measure
    it; 0 means the MOS is a best case). ``progress(bytes_read)`` is called now and then
    for long files. Memory is bounded by ``max_streams`` (about 4 kB per stream) and
    ``PENDING_MAX`` buffered packets, whatever the capture holds; the packets of streams
    beyond ``max_streams`` are counted in the result (``Analysis.note``).
    """
    p = str(path)
    sc = _Scan(clock or {}, max_streams)
    rd = capture.start(p, progress)
    try:
        if rd.buf[:4] in capture.PCAP_MAGICS:
            t0_ns = _scan_pcap(sc, rd)
        else:
            rd.f.close()
            t0_ns = _scan_any(sc, p, progress)
    finally:
        rd.f.close()
    if sc.unsupported and sum(sc.unsupported.values()) == sc.total:
        raise CaptureError(
            f"{path}: link type {', '.join(map(str, sorted(sc.unsupported)))} is not supported "
            "(Ethernet, Linux cooked SLL/SLL2, raw IP, BSD NULL/LOOP)"
        )
    results = Analysis()
    for key, st in sc.streams.items():
        st.flush(final=True)
        if st.total_nr < max(min_packets, 2) or not st.looks_like_rtp():
            continue
        start_ms = int((t0_ns + sc.first_t[key] * 1e6) // 1_000_000)
        results.append(_result(st, sc, latency_ms, start_ms, sc.kinds[key]))
    results.sort(key=lambda r: (r.start_time_ms, r.src, r.dst, r.ssrc))
    results.max_streams = max_streams
    results.untracked_streams = len(sc.untracked)
    results.untracked_packets = sc.untracked_packets
    results.sdp_messages = sc.sdp.messages
    results.rtcp_packets = sc.rtcp.packets
    return results


def effective_loss_pct(lost: int, expected: int, late_ms: float, packets: int,
                       duration_ms: float) -> float:  # fmt: skip
    """Loss for the MOS: lost packets plus the media time that arrived later than the
    playout buffer (``late_ms``) counted as packets of the stream's mean interval (a
    jitter-buffer discard counts as a loss in the E-model, ITU-T G.107 Ppl; RFC 3611
    §4.7.2 and §4.7.5)."""
    if expected <= 0:
        return 0.0
    interval = duration_ms / (packets - 1) if packets > 1 and duration_ms > 0 else 20.0
    late = late_ms / interval
    return 100.0 * (lost + late) / (expected + late)


def _result(st: StreamState, sc: _Scan, latency_ms: float, start_ms: int,
            kind: str) -> StreamResult:  # fmt: skip
    expected, lost, burst = st.loss()
    loss_pct = 100.0 * lost / expected if expected else 0.0
    dur_ms = st.t_last - st.t_first
    overhead = 48 if st.ipv6 else 28  # IP + UDP headers, as Wireshark counts bandwidth
    wire_bytes = st.bytes + overhead * st.total_nr
    bitrate = wire_bytes * 8 / dur_ms if dur_ms > 0 else 0.0  # bits/ms == kbit/s
    eff = effective_loss_pct(lost, expected, st.late_ms, st.total_nr, dur_ms)
    mos = stats.emodel_mos(latency_ms, st.mean_jitter, eff)
    rtcp = sc.rtcp.summary(st.ssrc, st.clock)
    return StreamResult(
        ssrc=f"0x{st.ssrc:08x}",
        src=st.src,
        dst=st.dst,
        payload_type=st.first_pt,
        packets=st.total_nr,
        expected=expected,
        lost=lost,
        loss_pct=round(loss_pct, 3),
        duplicates=st.dups,
        jitter_mean_ms=round(st.mean_jitter, 3),
        jitter_max_ms=round(st.max_jitter, 3),
        max_delta_ms=round(st.max_delta, 3),
        gap_max_ms=round(st.gap_max, 3),
        max_burst_loss=burst,
        reorder=st.reorder,
        duration_s=round(dur_ms / 1000.0, 6),
        bitrate_kbps=round(bitrate, 3),
        mos_emodel=round(mos, 2),
        transport=kind,
        rtcp_reports=int(rtcp["rtcp_reports"] or 0),
        rtcp_loss_max_pct=rtcp["rtcp_loss_max_pct"],
        rtcp_jitter_max_ms=rtcp["rtcp_jitter_max_ms"],
        rtcp_rtt_ms=rtcp["rtcp_rtt_ms"],
        clock_hz=st.clock or 0,
        clock_source=st.clock_source,
        start_time_ms=start_ms,
    )


__all__ = ["MAX_STREAMS", "Analysis", "StreamResult", "analyse",
           "parse_clock", "rtp_header_fits"]  # fmt: skip
