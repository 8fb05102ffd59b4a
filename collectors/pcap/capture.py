"""Capture files, sans analysis: pcap and pcapng, plain or gzip/zstd-compressed.

``open_capture`` opens a file and undoes its compression (gzip: the stdlib; zstd: the
``zstandard`` package, the ``zstd`` extra); ``Chunks`` is a growing window over it;
``iter_frames`` streams ``(ts_ns, linktype, frame, offset)`` from any capture, and
``pcap_header`` reads a classic pcap header for the analyser's fused fast loop
(``analysis.py``), which walks the records itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from netready.errors import MissingExtra, ParseError

CHUNK = 1 << 20
MAX_RECORD = 1 << 18  # 256 KiB: larger than any snaplen tcpdump/dumpcap write by default

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # microseconds, little-endian
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class CaptureError(ParseError):
    """The file is not a capture, or is truncated or corrupt. Bad input: exit code 2.
    The message names the file and the byte offset of the problem."""

    exit_code = 2


def open_capture(path: str) -> BinaryIO:
    """The file, decompressed when it starts with the gzip or zstd magic. Raises
    ``CaptureError`` for a file that cannot be opened and ``MissingExtra`` (one line) for
    a zstd file without the ``zstandard`` package."""
    try:
        f: BinaryIO = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise CaptureError(f"{path}: cannot open capture: {e.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if head[:2] == GZIP_MAGIC:
        import gzip

        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        # not netready.optional.require: httpx probes for zstandard too, and the tests that
        # keep the agent free of extras block every module that registry names
        try:
            import zstandard
        except ImportError:
            f.close()
            raise MissingExtra(
                f"{path}: a zstd-compressed capture needs zstandard, which is not installed: "
                "pip install 'nhs-netready[zstd]'"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
    return f


class Chunks:
    """A growing window over a file: ``need(n)`` makes ``buf[pos:pos+n]`` available.
    Offsets are of the decompressed stream."""

    __slots__ = ("base", "buf", "eof", "f", "path", "pos", "progress")

    def __init__(self, f: Any, path: str, progress: Callable[[int], None] | None = None):
        self.f = f
        self.progress = progress
        self.buf = b""
        self.pos = 0
        self.base = 0  # stream offset of buf[0]
        self.path = path
        self.eof = False

    def _read(self, n: int) -> bytes:
        try:
            first = self.f.read(n)
            if len(first) == n or not first:
                return first
            out = bytearray(first)
            while len(out) < n:  # decompressing readers may return less than asked
                more = self.f.read(n - len(out))
                if not more:
                    break
                out += more
            return bytes(out)
        except (OSError, EOFError, ValueError) as e:  # gzip/zlib/zstd: corrupt stream
            raise CaptureError(
                f"{self.path}: corrupt compressed capture after byte {self.base + len(self.buf)}"
                f" of its content: {e}"
            ) from None

    def need(self, n: int) -> bool:
        """True if n bytes are available at pos (reading more if needed); False at clean EOF."""
        if self.pos + n <= len(self.buf):
            return True
        if self.eof:
            return False
        rest = self.buf[self.pos :]
        self.base += self.pos
        self.pos = 0
        want = max(CHUNK, n - len(rest))
        more = self._read(want)
        if len(more) < want:
            self.eof = True
        self.buf = rest + more
        if self.progress is not None:
            self.progress(self.base + len(self.buf))
        return n <= len(self.buf)

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def truncated_record(self) -> CaptureError:
        return CaptureError(
            f"{self.path}: truncated packet record header at byte {self.offset} "
            f"({len(self.buf) - self.pos} of 16 bytes)"
        )


def start(path: str | Path, progress: Callable[[int], None] | None = None) -> Chunks:
    """Open a capture and read its first bytes; ``CaptureError`` if it is not one."""
    p = str(path)
    rd = Chunks(open_capture(p), p, progress)
    try:
        if not rd.need(4):
            raise CaptureError(
                f"{p}: not a pcap or pcapng file: only {len(rd.buf)} bytes at byte 0"
            )
        if rd.buf[:4] not in PCAP_MAGICS and rd.buf[:4] != PCAPNG_SHB:
            raise CaptureError(
                f"{p}: not a pcap or pcapng file (magic 0x{rd.buf[:4].hex()} at byte 0)"
            )
    except BaseException:
        rd.f.close()
        raise
    return rd


def pcap_header(rd: Chunks) -> tuple[str, int, int, int]:
    """Read a classic pcap file header: (byte order, ns per fraction unit, link type,
    largest record accepted); leaves ``rd.pos`` at the first record."""
    p = rd.path
    endian, ns_mult = PCAP_MAGICS[rd.buf[:4]]
    if not rd.need(24):
        raise CaptureError(f"{p}: truncated pcap file header at byte {rd.offset}")
    _, major, _minor, _, _, snaplen, network = struct.unpack_from(endian + "IHHiIII", rd.buf, 0)
    if major != 2:
        raise CaptureError(f"{p}: unsupported pcap version {major} at byte 4")
    rd.pos = 24
    limit = max(MAX_RECORD, snaplen if snaplen < (1 << 24) else 0)
    return endian, ns_mult, network & 0x0FFFFFFF, limit  # upper bits may carry FCS length


def iter_frames(
    path: str | Path, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, int, bytes, int]]:
    """Stream ``(ts_ns, linktype, frame_bytes, offset)`` from a pcap or pcapng file (plain,
    gzip or zstd).

    ``progress(bytes_read)`` is called each time a chunk (1 MiB) is read. Raises
    ``CaptureError`` (a ``ParseError``) naming the file and byte offset for a non-capture
    file, a truncated record or a corrupt block. Unknown pcapng blocks are skipped.
    """
    rd = start(path, progress)
    try:
        if rd.buf[:4] == PCAPNG_SHB:
            yield from iter_pcapng(rd)
        else:
            yield from iter_pcap(rd)
    finally:
        rd.f.close()


def iter_pcap(rd: Chunks) -> Iterator[tuple[int, int, bytes, int]]:
    p = rd.path
    endian, ns_mult, linktype, limit = pcap_header(rd)
    unpack_hdr = struct.Struct(endian + "IIII").unpack_from
    buf, pos, base = rd.buf, rd.pos, rd.base
    blen = len(buf)
    while True:
        if pos + 16 > blen:
            rd.pos = pos
            if not rd.need(16):
                if rd.pos < len(rd.buf):
                    raise rd.truncated_record()
                return
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
        sec, frac, incl, _orig = unpack_hdr(buf, pos)
        if incl > limit:
            raise record_too_long(p, base + pos, incl, limit)
        end = pos + 16 + incl
        if end > blen:
            rd.pos = pos
            if not rd.need(16 + incl):
                raise truncated_packet(rd, incl)
            buf, pos, base = rd.buf, rd.pos, rd.base
            blen = len(buf)
            end = pos + 16 + incl
        yield sec * 1_000_000_000 + frac * ns_mult, linktype, buf[pos + 16 : end], base + pos
        pos = end


def record_too_long(p: str, off: int, incl: int, limit: int) -> CaptureError:
    return CaptureError(
        f"{p}: corrupt packet record at byte {off}: captured length {incl} exceeds {limit}"
    )


def truncated_packet(rd: Chunks, incl: int) -> CaptureError:
    return CaptureError(
        f"{rd.path}: truncated packet at byte {rd.offset}: record says {incl} bytes, "
        f"file has {len(rd.buf) - rd.pos - 16}"
    )


def _tsresol_ns(units: int, resol: int) -> int:
    if resol & 0x80:
        return (units * 1_000_000_000) >> (resol & 0x7F)
    if resol <= 9:
        return units * 10 ** (9 - resol)
    return units // 10 ** (resol - 9)


def _section_endian(rd: Chunks, pos: int) -> str:
    bom = rd.buf[pos + 8 : pos + 12]
    if bom == b"\x4d\x3c\x2b\x1a":
        return "<"
    if bom == b"\x1a\x2b\x3c\x4d":
        return ">"
    raise CaptureError(
        f"{rd.path}: corrupt pcapng section header at byte {rd.offset}: byte-order magic "
        f"0x{bom.hex()}"
    )


def _next_block(rd: Chunks, endian: str) -> tuple[int, int] | None:
    """Check the block at ``rd.pos`` and make all of it available: (type, length)."""
    p = rd.path
    btype, blen = struct.unpack_from(endian + "II", rd.buf, rd.pos)
    if blen < 12 or blen % 4 or blen > (1 << 26):
        raise CaptureError(f"{p}: corrupt pcapng block at byte {rd.offset}: length {blen}")
    if not rd.need(blen):
        raise CaptureError(
            f"{p}: truncated pcapng block at byte {rd.offset}: block says {blen} bytes, "
            f"file has {len(rd.buf) - rd.pos}"
        )
    if struct.unpack_from(endian + "I", rd.buf, rd.pos + blen - 4)[0] != blen:
        raise CaptureError(f"{p}: corrupt pcapng block at byte {rd.offset}: trailing length differs")
    return btype, blen


def _interface(buf: bytes, pos: int, blen: int, endian: str) -> tuple[int, int, int]:
    """An Interface Description Block: (link type, if_tsresol, if_tsoffset seconds)."""
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
    return lt, resol, tsoff


def iter_pcapng(rd: Chunks) -> Iterator[tuple[int, int, bytes, int]]:
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
        if rd.buf[rd.pos : rd.pos + 4] == PCAPNG_SHB:
            endian = _section_endian(rd, rd.pos)
            ifaces = []
        btype, blen = _next_block(rd, endian)  # type: ignore[misc]
        pos, buf, off = rd.pos, rd.buf, rd.offset
        rd.pos = pos + blen
        if btype == 6 or btype == 2:  # Enhanced Packet Block, obsolete Packet Block
            if btype == 6:
                iface, hi, lo, caplen = struct.unpack_from(endian + "IIII", buf, pos + 8)
            else:
                iface, _drops, hi, lo, caplen = struct.unpack_from(endian + "HHIII", buf, pos + 8)
            if iface >= len(ifaces):
                raise CaptureError(f"{p}: packet at byte {off} names undeclared interface {iface}")
            if 28 + caplen > blen - 4:
                raise CaptureError(f"{p}: corrupt packet block at byte {off}: caplen {caplen}")
            lt, resol, tsoff = ifaces[iface]
            ts = _tsresol_ns((hi << 32) | lo, resol) + tsoff * 1_000_000_000
            yield ts, lt, buf[pos + 28 : pos + 28 + caplen], off
        elif btype == 1:  # Interface Description Block
            ifaces.append(_interface(buf, pos, blen, endian))
        # Simple Packet Blocks (3) carry no timestamp: jitter cannot use them; skipped.
