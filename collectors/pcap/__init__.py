"""RTP stream analysis of captured calls (pcap / pcapng), as Wireshark's RTP stream analysis.

``netready pcap analyse FILE`` reads a capture made at a site (tcpdump, dumpcap, Wireshark),
finds every RTP stream in it and reports, per stream, what a patient on that call got:
packets, loss, burst loss, reordering, RFC 3550 jitter (mean and maximum of the running
estimate, the way Wireshark's ``tap-rtp-analysis.c`` computes them), bit rate and an E-model
MOS estimate.

Design (see docs/pcap.md):

- The file is streamed in 1 MiB chunks and decoded with ``struct``; it is never loaded whole
  and no per-packet objects are built (scapy's dissector runs at a few thousand packets/s;
  dpkt's and scapy's raw readers are about 3x slower than this one: ``bench/pcap.py``).
- Link types: Ethernet (with 802.1Q/QinQ tags), Linux cooked SLL and SLL2 (``tcpdump -i any``),
  raw IP, IPv4, IPv6, BSD loopback (NULL) and OpenBSD LOOP. IPv4 and IPv6 (extension
  headers walked); UDP only. IP fragments are skipped (Wireshark reassembles them).
- RTP is found by RFC 7983 first-byte demultiplexing (0-3 STUN, 16-19 ZRTP, 20-63 DTLS,
  64-79 TURN channels, 128-191 RTP/RTCP), then RFC 5761: a second byte of 192-223
  (RTCP packet types 192-223) is RTCP and is skipped. SRTP is analysed like RTP (its header
  is in clear). A stream must look like RTP (header length, padding, mostly consecutive
  sequence numbers) to be reported.
- Hostile captures cannot grow memory: sequence numbers follow RFC 3550 A.1 (MAX_DROPOUT,
  MAX_MISORDER, restart on two sequential packets after a very large jump) with a sliding
  window of arrival flags per stream, packets are buffered in bounded batches, and at most
  ``max_streams`` streams are tracked (the rest are counted and reported).
- No sockets here: a path in, ``StreamResult`` values / records out.
"""

from __future__ import annotations

import itertools
import math
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import stats
from netready.errors import ConfigError, ParseError
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure

# --------------------------------------------------------------------------- constants

#: Static RTP payload type -> clock rate (Hz), exactly Wireshark's ``clock_map``
#: (tap-rtp-analysis.c, from the IANA RTP parameters registry / RFC 3551).
STATIC_CLOCK: dict[int, int] = {
    0: 8000, 1: 8000, 2: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000,
    9: 8000, 10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025,
    17: 22050, 18: 8000, 19: 8000, 25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000,
    33: 90000, 34: 90000,
}  # fmt: skip

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
#: Packets buffered before analysis: per stream, and over all streams (bounds memory).
PENDING_PER_STREAM = 4096
PENDING_MAX = 1 << 16
#: Streams tracked (``--max-streams``); packets of further streams are counted, not analysed.
MAX_STREAMS = 10_000

PT_CN, PT_CN_OLD = 13, 19

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
#: DLT_RAW is 12 on most BSDs and 14 on OpenBSD; files from those systems may carry it.
RAW_ALIASES = frozenset({LINKTYPE_RAW, 12, 14})
SUPPORTED_LINKTYPES = frozenset(
    {LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4,
     LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2} | RAW_ALIASES
)  # fmt: skip


class CaptureError(ParseError):
    """The file is not a capture, or is truncated or corrupt. Bad input: exit code 2.
    The message names the file and the byte offset of the problem."""

    exit_code = 2


CHUNK = 1 << 20
MAX_RECORD = 1 << 18  # 256 KiB: larger than any snaplen tcpdump/dumpcap write by default

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microseconds, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

# --------------------------------------------------------------------------- reading


class _Chunks:
    """A growing window over a file: ``need(n)`` makes ``buf[pos:pos+n]`` available."""

    __slots__ = ("base", "buf", "eof", "f", "path", "pos", "progress")

    def __init__(self, f: Any, path: str, progress: Callable[[int], None] | None = None):
        self.f = f
        self.progress = progress
        self.buf = b""
        self.pos = 0
        self.base = 0  # file offset of buf[0]
        self.path = path
        self.eof = False

    def need(self, n: int) -> bool:
        """True if n bytes are available at pos (reading more if needed); False at clean EOF."""
        if self.pos + n <= len(self.buf):
            return True
        if self.eof:
            return False
        rest = self.buf[self.pos :]
        self.base += self.pos
        self.pos = 0
        more = self.f.read(max(CHUNK, n - len(rest)))
        if len(more) < max(CHUNK, n - len(rest)):
            self.eof = True
        self.buf = rest + more
        if self.progress is not None:
            self.progress(self.base + len(self.buf))
        return n <= len(self.buf)

    @property
    def offset(self) -> int:
        return self.base + self.pos


def iter_frames(
    path: str | Path, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, int, bytes, int]]:
    """Stream ``(ts_ns, linktype, frame_bytes, file_offset)`` from a pcap or pcapng file.

    ``progress(bytes_read)`` is called each time a chunk (1 MiB) is read. Raises
    ``CaptureError`` (a ``ParseError``) naming the file and byte offset for a non-capture
    file, a truncated record or a corrupt block. Unknown pcapng blocks are skipped.
    """
    p = str(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed in finally
    except OSError as e:
        raise CaptureError(f"{p}: cannot open capture: {e.strerror}") from None
    try:
        rd = _Chunks(f, p, progress)
        if not rd.need(4):
            raise CaptureError(
                f"{p}: not a pcap or pcapng file: only {len(rd.buf)} bytes at byte 0"
            )
        magic = rd.buf[:4]
        if magic in _PCAP_MAGICS:
            yield from _iter_pcap(rd, *_PCAP_MAGICS[magic])
        elif magic == _PCAPNG_SHB:
            yield from _iter_pcapng(rd)
        else:
            raise CaptureError(f"{p}: not a pcap or pcapng file (magic 0x{magic.hex()} at byte 0)")
    finally:
        f.close()


def _iter_pcap(rd: _Chunks, endian: str, ns_mult: int) -> Iterator[tuple[int, int, bytes, int]]:
    p = rd.path
    if not rd.need(24):
        raise CaptureError(f"{p}: truncated pcap file header at byte {rd.offset}")
    _, major, _minor, _, _, snaplen, network = struct.unpack_from(endian + "IHHiIII", rd.buf, 0)
    if major != 2:
        raise CaptureError(f"{p}: unsupported pcap version {major} at byte 4")
    linktype = network & 0x0FFFFFFF  # upper bits may carry FCS length
    rd.pos = 24
    hdr = struct.Struct(endian + "IIII")
    unpack_hdr = hdr.unpack_from
    limit = max(MAX_RECORD, snaplen if snaplen < (1 << 24) else 0)
    buf, pos, base = rd.buf, rd.pos, rd.base
    blen = len(buf)
    while True:
        if pos + 16 > blen:
            rd.pos = pos
            if not rd.need(16):
                if rd.pos < len(rd.buf):
                    raise CaptureError(
                        f"{p}: truncated packet record header at byte {rd.offset} "
                        f"({len(rd.buf) - rd.pos} of 16 bytes)"
                    )
                return
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
        sec, frac, incl, _orig = unpack_hdr(buf, pos)
        if incl > limit:
            raise CaptureError(
                f"{p}: corrupt packet record at byte {base + pos}: captured length {incl} "
                f"exceeds {limit}"
            )
        end = pos + 16 + incl
        if end > blen:
            rd.pos = pos
            if not rd.need(16 + incl):
                raise CaptureError(
                    f"{p}: truncated packet at byte {rd.offset}: record says {incl} bytes, "
                    f"file has {len(rd.buf) - rd.pos - 16}"
                )
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
            end = pos + 16 + incl
        yield sec * 1_000_000_000 + frac * ns_mult, linktype, buf[pos + 16 : end], base + pos
        pos = end


def _tsresol_ns(units: int, resol: int) -> int:
    if resol & 0x80:
        return (units * 1_000_000_000) >> (resol & 0x7F)
    if resol <= 9:
        return units * 10 ** (9 - resol)
    return units // 10 ** (resol - 9)


def _iter_pcapng(rd: _Chunks) -> Iterator[tuple[int, int, bytes, int]]:
    p = rd.path
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, tsresol, tsoffset_s)
    while True:
        if not rd.need(12):
            if rd.pos < len(rd.buf):
                raise CaptureError(
                    f"{p}: truncated pcapng block header at byte {rd.offset} "
                    f"({len(rd.buf) - rd.pos} bytes left)"
                )
            return
        pos = rd.pos
        btype_raw = rd.buf[pos : pos + 4]
        if btype_raw == _PCAPNG_SHB:
            bom = rd.buf[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(
                    f"{p}: corrupt pcapng section header at byte {rd.offset}: "
                    f"byte-order magic 0x{bom.hex()}"
                )
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", rd.buf, pos)
        if blen < 12 or blen % 4 or blen > (1 << 26):
            raise CaptureError(f"{p}: corrupt pcapng block at byte {rd.offset}: length {blen}")
        if not rd.need(blen):
            raise CaptureError(
                f"{p}: truncated pcapng block at byte {rd.offset}: block says {blen} bytes, "
                f"file has {len(rd.buf) - rd.pos}"
            )
        if struct.unpack_from(endian + "I", rd.buf, rd.pos + blen - 4)[0] != blen:
            raise CaptureError(
                f"{p}: corrupt pcapng block at byte {rd.offset}: trailing length differs"
            )
        pos = rd.pos
        buf = rd.buf
        off = rd.base + pos
        rd.pos = pos + blen
        if btype == 6:  # Enhanced Packet Block
            iface, hi, lo, caplen = struct.unpack_from(endian + "IIII", buf, pos + 8)
            if iface >= len(ifaces):
                raise CaptureError(f"{p}: packet at byte {off} names undeclared interface {iface}")
            if 28 + caplen > blen - 4:
                raise CaptureError(f"{p}: corrupt packet block at byte {off}: caplen {caplen}")
            lt, resol, tsoff = ifaces[iface]
            ts = _tsresol_ns((hi << 32) | lo, resol) + tsoff * 1_000_000_000
            yield ts, lt, buf[pos + 28 : pos + 28 + caplen], off
        elif btype == 1:  # Interface Description Block
            lt = struct.unpack_from(endian + "H", buf, pos + 8)[0]
            resol, tsoff = 6, 0
            o = pos + 16
            stop = pos + blen - 4
            while o + 4 <= stop:
                code, olen = struct.unpack_from(endian + "HH", buf, o)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    resol = buf[o + 4]
                elif code == 14 and olen >= 8:
                    tsoff = struct.unpack_from(endian + "q", buf, o + 4)[0]
                o += 4 + ((olen + 3) & ~3)
            ifaces.append((lt, resol, tsoff))
        elif btype == 2:  # obsolete Packet Block
            iface, _drops, hi, lo, caplen = struct.unpack_from(endian + "HHIII", buf, pos + 8)
            if iface >= len(ifaces) or 28 + caplen > blen - 4:
                raise CaptureError(f"{p}: corrupt packet block at byte {off}")
            lt, resol, tsoff = ifaces[iface]
            ts = _tsresol_ns((hi << 32) | lo, resol) + tsoff * 1_000_000_000
            yield ts, lt, buf[pos + 28 : pos + 28 + caplen], off
        # Simple Packet Blocks (3) carry no timestamp: jitter cannot use them; skipped.


# --------------------------------------------------------------------------- decoding


def _ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]"


def udp_payload(linktype: int, d: bytes) -> tuple[bytes, int, int] | None:
    """Locate the UDP payload of one frame.

    Returns ``(endpoints, payload_start, payload_end)`` or ``None`` for anything that is not
    a complete-header, unfragmented UDP datagram. ``endpoints`` is source IP + destination
    IP + source port + destination port as packed bytes (12 bytes for IPv4, 36 for IPv6),
    the layout of an IPv4 header from byte 12 on, so the fast path can slice it directly.
    """
    n = len(d)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return None
        et = (d[12] << 8) | d[13]
        o = 14
        while et in (0x8100, 0x88A8, 0x9100) and n >= o + 4:
            et = (d[o + 2] << 8) | d[o + 3]
            o += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        et = (d[14] << 8) | d[15]
        o = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        et = (d[0] << 8) | d[1]
        o = 20
    elif linktype in RAW_ALIASES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return None
        v = d[0] >> 4
        et = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
        o = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return None
        fam = struct.unpack_from("<I" if linktype == LINKTYPE_NULL else ">I", d, 0)[0]
        if fam > 0xFFFF:  # written on a big-endian host
            fam = struct.unpack_from(">I", d, 0)[0]
        et = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
        o = 4
    else:
        return None
    if et == 0x0800:
        if n < o + 20:
            return None
        vihl = d[o]
        if vihl >> 4 != 4 or d[o + 9] != 17:
            return None
        if ((d[o + 6] << 8) | d[o + 7]) & 0x3FFF:  # MF set or fragment offset != 0
            return None
        ihl = (vihl & 0x0F) * 4
        total = (d[o + 2] << 8) | d[o + 3]
        src = d[o + 12 : o + 16]
        dst = d[o + 16 : o + 20]
        u = o + ihl
        ip_end = o + total if total >= ihl else n
    elif et == 0x86DD:
        if n < o + 40:
            return None
        nh = d[o + 6]
        plen = (d[o + 4] << 8) | d[o + 5]
        src = d[o + 8 : o + 24]
        dst = d[o + 24 : o + 40]
        u = o + 40
        ip_end = u + plen if plen else n
        while nh != 17:
            if nh in (0, 43, 60) and n >= u + 8:  # hop-by-hop, routing, destination options
                nh = d[u]
                u += (d[u + 1] + 1) * 8
            else:  # fragment (44), ESP, no next header, TCP, ...
                return None
    else:
        return None
    if n < u + 8:
        return None
    ulen = (d[u + 4] << 8) | d[u + 5]
    end = u + ulen if ulen >= 8 else ip_end
    if end > n:
        end = n  # snapped capture: what we have
    return src + dst + d[u : u + 4], u + 8, end


def endpoints(ep: bytes) -> tuple[str, str, bool]:
    """``udp_payload`` endpoints -> ("ip:port", "ip:port", is_ipv6)."""
    n = (len(ep) - 4) // 2
    sport, dport = struct.unpack_from("!HH", ep, 2 * n)
    return f"{_ip_text(ep[:n])}:{sport}", f"{_ip_text(ep[n : 2 * n])}:{dport}", n == 16


# --------------------------------------------------------------------------- analysis


class StreamState:
    """One RTP stream (ssrc + src + dst).

    Packets are appended to ``pending`` by the reader loop (cheap) and analysed in batches by
    ``flush`` with local variables (fast). The jitter arithmetic follows
    ``rtppacket_analyse`` of Wireshark 4.0 (ui/tap-rtp-analysis.c) statement for statement.

    Loss, burst loss and reorder follow RFC 3550 A.1 (``update_seq``) on extended sequence
    numbers, in memory that does not depend on the packets: a window of arrival flags for
    the last ``2 * SEQ_WINDOW`` sequence numbers (one byte each) slides forward with the
    highest sequence number; flags that leave it are final and are folded into counters
    (lost, the current run of losses, the longest run). A step forward of less than
    ``MAX_DROPOUT`` is in order (the numbers jumped over are lost unless they arrive late);
    a packet at most ``MAX_MISORDER`` behind is late (it fills its hole: reorder) or a
    duplicate (counted once); anything else is a "very large jump": it is set aside, and
    only when the next packet follows it (two sequential packets) does the sender count as
    restarted, A.1's re-sync: the old sequence is closed and its expected and lost figures
    kept, and a new one starts. Nothing a sequence number says can grow the state.
    """

    __slots__ = (
        "bad_seq", "buf", "bytes", "clock", "divs", "dst", "ext_max", "ext_min", "fin_expected",
        "fin_lost", "first_pt", "first_ts", "guessing", "ipv6", "jitter", "lastnominal",
        "markers", "max_burst", "max_jitter", "mean_jitter", "overrides", "pending", "pt",
        "reorder", "restarts", "run", "seq_lo", "src", "ssrc", "steps", "t_first", "t_last",
        "time", "total_nr",
    )  # fmt: skip

    def __init__(self, ssrc: int, src: str, dst: str, ipv6: bool, clock: int | None,
                 overrides: Mapping[int, int]):  # fmt: skip
        self.ssrc = ssrc
        self.overrides = overrides
        self.src = src
        self.dst = dst
        self.ipv6 = ipv6
        self.clock = clock  # None: dynamic PT, rate not yet known
        self.guessing = clock is None
        #: (arrival ms since first frame, seq, rtp timestamp, second header byte, rtp bytes)
        self.pending: list[tuple[float, int, int, int, int]] = []
        self.pt = self.first_pt = -1
        self.first_ts = 0
        self.time = self.lastnominal = 0.0
        self.jitter = self.max_jitter = self.mean_jitter = 0.0
        self.total_nr = 0
        self.divs: dict[int, int] = {}
        # sequence accounting (RFC 3550 A.1): the current sequence ...
        self.ext_max = self.ext_min = 0  # highest and lowest extended sequence number
        self.seq_lo = 0  # extended sequence number of buf[0]
        self.buf = bytearray()  # arrival flags of seq_lo .. seq_lo + 2 * SEQ_WINDOW - 1
        self.bad_seq = -1  # A.1 bad_seq: the number that would confirm a restart
        # ... and what is final: numbers left behind by the window, sequences closed
        self.fin_lost = 0
        self.fin_expected = 0
        self.run = 0  # losses in a row at the end of what is final
        self.max_burst = 0
        self.restarts = 0
        self.reorder = 0
        self.steps = 0  # packets that moved the highest sequence number on by 1-512
        self.bytes = 0
        self.t_first = self.t_last = 0.0
        self.markers = 0

    def flush(self, final: bool = False, force: bool = False) -> None:
        """Analyse the pending packets. A dynamic payload type with no known clock rate waits
        until ``GUESS_PACKETS`` packets over ``GUESS_SECONDS`` are buffered (or the end, or
        ``PENDING_PER_STREAM`` packets, or ``force``: memory is short)."""
        pend = self.pending
        if not pend:
            return
        if self.guessing:
            if (
                not (final or force)
                and len(pend) < PENDING_PER_STREAM
                and (len(pend) < GUESS_PACKETS or pend[-1][0] - pend[0][0] < GUESS_SECONDS * 1000)
            ):
                return
            self.clock = guess_clock(pend)
            self.guessing = False
        self.pending = []
        # -- state to locals
        if self.total_nr == 0:
            t, seq, ts, b1, size = pend[0]
            self.pt = self.first_pt = b1 & 0x7F
            self.first_ts = ts
            self.time = self.t_first = t
            # Wireshark converts ticks to ms by dividing by (guint32)clock_rate / 1000
            self.divs = {self.first_pt: (self.clock or 0) // 1000}
            self.ext_max = self.ext_min = seq
            self.seq_lo = seq - SEQ_WINDOW  # room for packets that arrive before the first
            self.buf = bytearray(2 * SEQ_WINDOW)
        first_ts = self.first_ts
        divs = self.divs
        time_ = self.time
        lastnominal = self.lastnominal
        jitter = self.jitter
        max_jitter = self.max_jitter
        mean_jitter = self.mean_jitter
        n = self.total_nr
        prev_pt = self.pt
        ext_max = self.ext_max
        ext_min = self.ext_min
        buf = self.buf
        lo = self.seq_lo
        hi = lo + len(buf)  # first extended number past the window
        bad_seq = self.bad_seq
        max_dropout = MAX_DROPOUT
        late = 0x10000 - MAX_MISORDER
        reorder = 0
        steps = 0
        nbytes = 0
        markers = 0
        t = 0.0
        for t, seq, ts, b1, size in pend:
            nbytes += size
            # -- loss and reorder: RFC 3550 A.1 update_seq on extended sequence numbers
            delta = (seq - ext_max) & 0xFFFF
            if delta < max_dropout:  # in order, with a permissible gap (or a duplicate)
                if delta:
                    ext_max += delta
                    if delta <= 512:
                        steps += 1
                    if ext_max >= hi:
                        lo, buf = self._slide(ext_max, lo, buf, ext_min)
                        hi = lo + len(buf)
                buf[ext_max - lo] = 1
            elif delta > late:  # late (by under MAX_MISORDER) or a duplicate: in the window
                ext = ext_max - 0x10000 + delta
                i = ext - lo
                if not buf[i]:
                    reorder += 1
                    buf[i] = 1
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
            # -- jitter: Wireshark 4.0 rtppacket_analyse
            marker = b1 & 0x80
            if marker:
                markers += 1
            if n == 0:  # first packet: state only
                n = 1
                continue
            pt = b1 & 0x7F
            dts = (ts - first_ts) & 0xFFFFFFFF
            in_seq = dts < 0x80000000  # not before the first packet's timestamp
            div = divs.get(pt)
            if div is None:
                div = divs[pt] = self._div_of(pt)
            if in_seq:
                if div:
                    nominal = dts / div
                    jitter = (15.0 * jitter + abs(t - (time_ + (nominal - lastnominal)))) / 16.0
                    lastnominal = nominal
                    # "regular" packets only: no marker, no comfort noise before or now
                    if not marker and pt != 13 and pt != 19 and prev_pt != 13 and prev_pt != 19:
                        if jitter > max_jitter:
                            max_jitter = jitter
                        mean_jitter = (mean_jitter * (n - 1) + jitter) / n
                time_ = t
            prev_pt = pt
            n += 1
        # -- locals to state
        self.time = time_
        self.lastnominal = lastnominal
        self.jitter = jitter
        self.max_jitter = max_jitter
        self.mean_jitter = mean_jitter
        self.total_nr = n
        self.pt = prev_pt
        self.ext_max = ext_max
        self.ext_min = ext_min
        self.buf = buf
        self.seq_lo = lo
        self.bad_seq = bad_seq
        self.reorder += reorder
        self.steps += steps
        self.bytes += nbytes
        self.markers += markers
        self.t_last = t

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
        stream's first uses the option or static table, else no jitter for that packet
        (as Wireshark does for a dynamic type it has no SDP for, e.g. telephone-event)."""
        rate = self.overrides.get(pt) or STATIC_CLOCK.get(pt) or 0
        return rate // 1000

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
        traffic), whose 16-bit "sequence numbers" jump at random."""
        n = self.total_nr
        return n >= 2 and 2 * self.steps >= n - 1


def guess_clock(pending: list[tuple[float, int, int, int, int]]) -> int:
    """Clock rate of a dynamic payload type, from its first buffered packets.

    The RTP timestamp advances at the media clock rate, so ticks / elapsed arrival time is
    the rate, snapped (in log distance) to the nearest common rate in
    ``DYNAMIC_CANDIDATES``. With under 0.2 s of data: 90000 if a quarter of the packets share
    their timestamp with the previous one (video frames split over packets) or half are
    larger than 400 bytes, else 48000 (Opus, the usual dynamic audio codec).
    """
    if len(pending) >= 2:
        t0, _, ts0, _, _ = pending[0]
        t1, _, ts1, _, _ = pending[-1]
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
    jitter_mean_ms: float
    jitter_max_ms: float
    max_burst_loss: int
    reorder: int
    duration_s: float
    bitrate_kbps: float
    mos_emodel: float
    clock_hz: int
    clock_source: str
    start_time_ms: int

    #: Fields left out of ``--format json`` stream objects (they go into records/tables).
    INTERNAL = ("clock_hz", "clock_source", "start_time_ms")

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in self.INTERNAL}
        return d

    @property
    def media(self) -> str:
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


def analyse(
    path: str | Path,
    clock: Mapping[int, int] | None = None,
    latency_ms: float = 0.0,
    min_packets: int = 2,
    progress: Any = None,
    max_streams: int = MAX_STREAMS,
) -> Analysis:
    """Analyse every RTP stream in a capture. Pure: a file in, results out.

    ``clock`` overrides/extends the static table (``{96: 90000}``). ``latency_ms`` is the
    one-way network delay assumed for the MOS estimate (a capture at one point cannot
    measure it; 0 means the MOS is a best case). ``progress(bytes_read)`` is called now and
    then for long files. Memory is bounded by ``max_streams`` (about 4 kB per stream) and
    ``PENDING_MAX`` buffered packets, whatever the capture holds; the packets of streams
    beyond ``max_streams`` are counted in the result (``Analysis.note``).
    """
    overrides = dict(clock or {})
    untracked: set[tuple[Any, ...]] = set()  # keys of streams beyond max_streams (bounded)
    untracked_packets = 0
    buffered = 0  # packets appended to pending lists since the last global flush
    per_stream, pending_max = PENDING_PER_STREAM, PENDING_MAX
    streams: dict[tuple[Any, ...], StreamState] = {}
    first_ns: dict[tuple[Any, ...], int] = {}
    t0: int | None = None
    udp = udp_payload
    unpack_rtp = struct.Struct("!BBHII").unpack_from
    # IPv4 without options + UDP + RTP fixed header in one call (the common case)
    # ethertype + IPv4 without options + UDP + RTP fixed header in one call (the common
    # case); the ethertype sits just before the IP header in Ethernet and SLL frames
    unpack_fast = struct.Struct("!HB5xHxB14xH2xBBHII").unpack_from
    fast_offset = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}
    sll2 = LINKTYPE_LINUX_SLL2
    frames = iter_frames(path, progress)
    first = next(frames, None)
    if first is not None:
        t0 = first[0]
        frames = itertools.chain((first,), frames)
    sget = streams.get
    unsupported: dict[int, int] = {}  # link type -> frames
    total = 0
    for ts_ns, lt, d, _off in frames:
        total += 1
        # -- locate IPv4/UDP/RTP; fast path first
        n = len(d)
        o = fast_offset.get(lt, -1)
        if o < 0 and lt == sll2 and n >= 60 and d[0] == 8 and d[1] == 0 and d[20] == 0x45:
            o = 20
            _, _, frag, proto, ulen, b0, b1, seq, rts, ssrc = unpack_fast(b"\x08\x00" + d[20:60])
        elif o > 0 and n >= o + 40:
            et, vihl, frag, proto, ulen, b0, b1, seq, rts, ssrc = unpack_fast(d, o - 2)
            if et != 0x0800 or vihl != 0x45:
                o = -1
        else:
            o = -1
        if o > 0:
            if proto != 17 or frag & 0x3FFF:
                continue
            ep = d[o + 12 : o + 24]
            ps = o + 28
            pe = o + 20 + ulen
            if ulen < 8 or pe > n:
                pe = n
        else:
            u = udp(lt, d)
            if u is None:
                if lt not in SUPPORTED_LINKTYPES:
                    unsupported[lt] = unsupported.get(lt, 0) + 1
                continue
            ep, ps, pe = u
            if pe - ps < 12:
                continue
            b0, b1, seq, rts, ssrc = unpack_rtp(d, ps)
        plen = pe - ps
        if plen < 12 or b0 < 128 or b0 > 191:
            continue  # RFC 7983: not RTP/RTCP (STUN 0-3, DTLS 20-63, TURN 64-79, ...)
        if 192 <= b1 <= 223:
            continue  # RFC 5761: RTCP packet types 192-223 (SR, RR, SDES, BYE, APP, ...)
        if b0 & 0x3F != 0:  # CSRCs, header extension or padding: check they fit
            hlen = 12 + 4 * (b0 & 0x0F)
            if b0 & 0x10:
                if plen < hlen + 4:
                    continue
                hlen += 4 + 4 * ((d[ps + hlen + 2] << 8) | d[ps + hlen + 3])
            if hlen > plen:
                continue
            if b0 & 0x20:  # padding: count in the last octet
                padn = d[pe - 1]
                if padn == 0 or hlen + padn > plen:
                    continue
        key = (ssrc, ep)
        st = sget(key)
        if st is None:
            if len(streams) >= max_streams:
                untracked_packets += 1
                if len(untracked) < max_streams:
                    untracked.add(key)
                continue
            pt = b1 & 0x7F
            rate = overrides.get(pt) or STATIC_CLOCK.get(pt)
            if rate is None and pt < 96:
                rate = 0  # unassigned static type: no jitter, as Wireshark
            st = StreamState(ssrc, *endpoints(ep), rate, overrides)
            streams[key] = st
            first_ns[key] = ts_ns
        pend = st.pending
        pend.append(((ts_ns - t0) / 1e6, seq, rts, b1, plen))  # type: ignore[operator]
        if len(pend) >= per_stream:
            st.flush()
        buffered += 1
        if buffered >= pending_max:  # many streams, each with a little buffered: analyse all
            for other in streams.values():
                other.flush(force=True)
            buffered = 0
    if unsupported and sum(unsupported.values()) == total:
        raise CaptureError(
            f"{path}: link type {', '.join(map(str, sorted(unsupported)))} is not supported "
            "(Ethernet, Linux cooked SLL/SLL2, raw IP, BSD NULL/LOOP)"
        )
    results = Analysis()
    for key, st in streams.items():
        st.flush(final=True)
        if st.total_nr < max(min_packets, 2) or not st.looks_like_rtp():
            continue
        results.append(_result(st, overrides, latency_ms, first_ns[key]))
    results.sort(key=lambda r: (r.start_time_ms, r.src, r.dst, r.ssrc))
    results.max_streams = max_streams
    results.untracked_streams = len(untracked)
    results.untracked_packets = untracked_packets
    return results


def _result(st: StreamState, overrides: Mapping[int, int], latency_ms: float,
            first_ns: int) -> StreamResult:  # fmt: skip
    expected, lost, burst = st.loss()
    loss_pct = 100.0 * lost / expected if expected else 0.0
    dur_ms = st.t_last - st.t_first
    overhead = 48 if st.ipv6 else 28  # IP + UDP headers, as Wireshark counts bandwidth
    wire_bytes = st.bytes + overhead * st.total_nr
    bitrate = wire_bytes * 8 / dur_ms if dur_ms > 0 else 0.0  # bits/ms == kbit/s
    pt = st.first_pt
    if pt in overrides:
        how = "option"
    elif pt in STATIC_CLOCK:
        how = "static"
    elif pt >= 96:
        how = "guessed"
    else:
        how = "unknown"
    mos = stats.emodel_mos(latency_ms, st.mean_jitter, loss_pct)
    return StreamResult(
        ssrc=f"0x{st.ssrc:08x}",
        src=st.src,
        dst=st.dst,
        payload_type=pt,
        packets=st.total_nr,
        expected=expected,
        lost=lost,
        loss_pct=round(loss_pct, 3),
        jitter_mean_ms=round(st.mean_jitter, 3),
        jitter_max_ms=round(st.max_jitter, 3),
        max_burst_loss=burst,
        reorder=st.reorder,
        duration_s=round(dur_ms / 1000.0, 6),
        bitrate_kbps=round(bitrate, 3),
        mos_emodel=round(mos, 2),
        clock_hz=st.clock or 0,
        clock_source=how,
        start_time_ms=first_ns // 1_000_000,
    )


# --------------------------------------------------------------------------- records

MEASUREMENT = "rtp_stream"


def to_records(results: list[StreamResult], base_tags: Mapping[str, str] | None = None
               ) -> list[Record]:  # fmt: skip
    """One ``rtp_stream`` record per stream.

    Tag ``stream`` is the media kind (audio / video / unknown): low cardinality, so Grafana
    can group by it. SSRC, addresses and ports change every call and are fields: as tags
    they would create a new series per call and blow up InfluxDB's series index.
    Two streams of the same kind starting in the same millisecond would share series and
    timestamp (and overwrite each other), so later ones are moved on by 1 ms.
    """
    out: list[Record] = []
    used: set[tuple[str, int]] = set()
    for r in results:
        t = r.start_time_ms
        while (r.media, t) in used:
            t += 1
        used.add((r.media, t))
        fields: dict[str, Any] = {k: v for k, v in r.to_json().items()}
        fields["clock_hz"] = r.clock_hz
        tags = {**(base_tags or {}), "stream": r.media, "source": "pcap"}
        out.append(Record(MEASUREMENT, tags, fields, t))
    return out


class Spec(BaseModel):
    """Analyse one capture file."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="pcap or pcapng file", json_schema_extra={"cli": "FILE"})
    clock: dict[int, int] = Field(
        default_factory=dict,
        description="clock rate of a payload type, PT=HZ, e.g. 96=90000 (repeatable); static "
        "types use RFC 3551, other dynamic types are guessed",
        json_schema_extra={"cli": "--clock", "metavar": "PT=HZ"},
    )
    latency_ms: float = Field(
        0.0, ge=0, description="one-way delay to assume for the MOS (a capture cannot measure it)"
    )
    min_packets: int = Field(2, ge=2, description="ignore streams with fewer RTP packets")
    max_streams: int = Field(
        MAX_STREAMS,
        ge=1,
        le=10_000_000,
        description="most streams tracked (about 4 kB each); further streams are counted only",
    )

    @field_validator("clock")
    @classmethod
    def _clock_ok(cls, v: dict[int, int]) -> dict[int, int]:
        for pt, hz in v.items():
            if not 0 <= pt <= 127 or not 1000 <= hz <= 10_000_000:
                raise ValueError(f"clock {pt}={hz}: payload type 0-127, rate 1000-10000000 Hz")
        return v


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """RTP streams of a captured call (one ``rtp_stream`` record per stream)."""
    import asyncio  # here, not at the top: keeps `netready pcap` start-up short

    tags = {**ctx.tags, "source": "pcap"}
    try:
        res = await asyncio.to_thread(
            analyse, spec.path, spec.clock, spec.latency_ms, spec.min_packets, None,
            spec.max_streams,
        )  # fmt: skip
    except ParseError as e:
        return [failure(MEASUREMENT, tags, "error", str(e))]
    out = to_records(res, ctx.tags)
    if res.note:
        out.append(failure(MEASUREMENT, tags, "skipped", res.note,
                           untracked_streams=res.untracked_streams,
                           untracked_packets=res.untracked_packets))  # fmt: skip
    return out


PLUGIN = Plugin(
    kind="collector",
    name="pcap",
    spec=Spec,
    run=run,
    measurement=MEASUREMENT,
    method="pcap",
    summary="RTP streams of a captured call (pcap or pcapng), as Wireshark's RTP stream "
    "analysis: loss, burst loss, reorder, jitter, bit rate, MOS.",
    fields=(
        Metric("ssrc", "text", "SSRC as 0x + 8 lower-case hex digits"),
        Metric("src", "text", "source ip:port ([v6]:port for IPv6)"),
        Metric("dst", "text", "destination ip:port"),
        Metric("payload_type", "PT", "payload type of the first packet"),
        Metric("clock_hz", "Hz", "RTP clock rate used (RFC 3551, --clock, or guessed)"),
        Metric("packets", "packets", "RTP packets received (duplicates included, as Wireshark)"),
        Metric("expected", "packets", "highest - lowest extended sequence number + 1 (RFC 3550 "
               "A.3), summed over sender restarts"),
        Metric("lost", "packets", "sequence numbers in that range never received (or too late)"),
        Metric("loss_pct", "%", "100 x lost / expected"),
        Metric("jitter_mean_ms", "ms", "Wireshark's Mean Jitter: mean of the running RFC 3550 "
               "estimate"),
        Metric("jitter_max_ms", "ms", "Wireshark's Max Jitter: maximum of the running estimate"),
        Metric("max_burst_loss", "packets", "longest run of consecutive lost sequence numbers"),
        Metric("reorder", "packets", "packets that arrived after a higher sequence number"),
        Metric("duration_s", "s", "last - first arrival"),
        Metric("bitrate_kbps", "kbit/s", "(RTP bytes + IP/UDP headers) x 8 / duration"),
        Metric("mos_emodel", "1-4.5", "E-model MOS estimate (see docs/pcap.md)"),
        Metric("untracked_streams", "streams", "result=skipped: further streams not analysed "
               "(beyond max_streams)"),
        Metric("untracked_packets", "packets", "result=skipped: their RTP-like packets"),
    ),
)  # fmt: skip


# --------------------------------------------------------------------------- table

#: Column heads of the stream table ``netready pcap analyse`` prints (``table_rows``).
TABLE_COLUMNS = ("SSRC", "Source", "Destination", "PT", "Clock", "Pkts", "Lost", "Loss%",
                 "Burst", "Reord", "Jit mean", "Jit max", "Secs", "kbit/s", "MOS")  # fmt: skip


def table_rows(results: list[StreamResult]) -> list[tuple[str, ...]]:
    """One row of cells per stream, under ``TABLE_COLUMNS``: the payload type with its RFC
    3551 name, a guessed clock rate marked ``*``, figures rounded for people."""
    rows = []
    for r in results:
        name = PT_NAMES.get(r.payload_type, "dyn" if r.payload_type >= 96 else "?")
        clk = f"{r.clock_hz}" + ("*" if r.clock_source == "guessed" else "")
        rows.append((
            r.ssrc, r.src, r.dst, f"{r.payload_type} {name}", clk, str(r.packets),
            str(r.lost), f"{r.loss_pct:.2f}", str(r.max_burst_loss), str(r.reorder),
            f"{r.jitter_mean_ms:.3f}", f"{r.jitter_max_ms:.3f}", f"{r.duration_s:.2f}",
            f"{r.bitrate_kbps:.1f}", f"{r.mos_emodel:.2f}",
        ))  # fmt: skip
    return rows
