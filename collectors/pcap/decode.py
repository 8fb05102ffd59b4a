"""Frames to transport payloads, sans-IO: link layer, IPv4/IPv6, UDP and TCP, and the
wrappings RTP travels in (TURN Send/Data indications, TURN ChannelData, RFC 4571 framing).

Hand-written with ``struct`` on purpose: dpkt's and scapy's dissectors build objects per
packet and are 3-30x slower than this (docs/pcap.md, *Performance*); only the few header
fields RTP analysis needs are read.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

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

UDP, TCP = 17, 6
STUN_COOKIE = b"\x21\x12\xa4\x42"
#: TURN (RFC 8656) methods carrying application data: Send and Data indications
STUN_SEND, STUN_DATA = 0x0016, 0x0017
ATTR_DATA = 0x0013


def ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]"


def endpoints(ep: bytes) -> tuple[str, str, bool]:
    """Packed endpoints (src IP + dst IP + src port + dst port) -> ("ip:port", "ip:port",
    is_ipv6)."""
    n = (len(ep) - 4) // 2
    sport, dport = struct.unpack_from("!HH", ep, 2 * n)
    return f"{ip_text(ep[:n])}:{sport}", f"{ip_text(ep[n : 2 * n])}:{dport}", n == 16


def network_start(linktype: int, d: bytes, fs: int, fe: int) -> tuple[int, int]:
    """(ethertype, offset of the IP header) of the frame ``d[fs:fe]``; ethertype 0 if the
    link type is not supported or the frame is too short."""
    n = fe - fs
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return 0, 0
        et = (d[fs + 12] << 8) | d[fs + 13]
        o = fs + 14
        while et in (0x8100, 0x88A8, 0x9100) and fe >= o + 4:
            et = (d[o + 2] << 8) | d[o + 3]
            o += 4
        return et, o
    if linktype == LINKTYPE_LINUX_SLL:
        return (((d[fs + 14] << 8) | d[fs + 15]), fs + 16) if n >= 16 else (0, 0)
    if linktype == LINKTYPE_LINUX_SLL2:
        return (((d[fs] << 8) | d[fs + 1]), fs + 20) if n >= 20 else (0, 0)
    if linktype in RAW_ALIASES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return 0, 0
        v = d[fs] >> 4
        return (0x0800 if v == 4 else 0x86DD if v == 6 else 0), fs
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return 0, 0
        fam = struct.unpack_from("<I" if linktype == LINKTYPE_NULL else ">I", d, fs)[0]
        if fam > 0xFFFF:  # written on a big-endian host
            fam = struct.unpack_from(">I", d, fs)[0]
        return (0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0), fs + 4
    return 0, 0


def _ipv4(d: bytes, o: int, fe: int) -> tuple[bytes, int, int, int] | None:
    if fe < o + 20:
        return None
    vihl = d[o]
    if vihl >> 4 != 4 or ((d[o + 6] << 8) | d[o + 7]) & 0x3FFF:  # MF set or offset != 0
        return None
    ihl = (vihl & 0x0F) * 4
    total = (d[o + 2] << 8) | d[o + 3]
    return d[o + 12 : o + 20], d[o + 9], o + ihl, o + total if total >= ihl else fe


def _ipv6(d: bytes, o: int, fe: int) -> tuple[bytes, int, int, int] | None:
    if fe < o + 40:
        return None
    nh = d[o + 6]
    plen = (d[o + 4] << 8) | d[o + 5]
    u = o + 40
    while nh not in (UDP, TCP):
        if nh in (0, 43, 60) and fe >= u + 8:  # hop-by-hop, routing, destination options
            nh = d[u]
            u += (d[u + 1] + 1) * 8
        else:  # fragment (44), ESP, no next header, ...
            return None
    return d[o + 8 : o + 40], nh, u, u + plen if plen else fe


def transport(linktype: int, d: bytes, fs: int, fe: int) -> tuple[int, bytes, int, int, int] | None:
    """Locate the UDP or TCP payload of the frame ``d[fs:fe]``.

    Returns ``(protocol, endpoints, payload_start, payload_end, tcp_seq)`` or ``None`` for
    anything else (fragments, other protocols, truncated headers). ``endpoints`` is source
    IP + destination IP + source port + destination port as packed bytes (12 bytes for
    IPv4, 36 for IPv6); ``tcp_seq`` is 0 for UDP.
    """
    et, o = network_start(linktype, d, fs, fe)
    if et == 0x0800:
        ip = _ipv4(d, o, fe)
    elif et == 0x86DD:
        ip = _ipv6(d, o, fe)
    else:
        return None
    if ip is None:
        return None
    addrs, proto, u, ip_end = ip
    if ip_end > fe:
        ip_end = fe  # snapped capture: what we have
    if proto == UDP:
        if ip_end < u + 8:
            return None
        ulen = (d[u + 4] << 8) | d[u + 5]
        end = u + ulen if ulen >= 8 else ip_end
        return UDP, addrs + d[u : u + 4], u + 8, min(end, fe), 0
    if proto == TCP:
        if ip_end < u + 20:
            return None
        off = (d[u + 12] >> 4) * 4
        if off < 20 or u + off > ip_end:
            return None
        seq = struct.unpack_from("!I", d, u + 4)[0]
        return TCP, addrs + d[u : u + 4], u + off, ip_end, seq
    return None


def unwrap_turn(d: bytes, ps: int, pe: int) -> tuple[int, int] | None:
    """The application data inside a TURN message over UDP (RFC 8656): a ChannelData
    message (first byte 0x40-0x4F: channel, length, data) or a Send/Data indication (the
    DATA attribute). ``(start, end)`` of the data, or None."""
    n = pe - ps
    if n < 4:
        return None
    b0 = d[ps]
    if 0x40 <= b0 <= 0x4F:
        ln = (d[ps + 2] << 8) | d[ps + 3]
        return (ps + 4, ps + 4 + ln) if 4 + ln <= n else None
    if b0 > 3 or n < 20 or d[ps + 4 : ps + 8] != STUN_COOKIE:
        return None
    mtype = (b0 << 8) | d[ps + 1]
    if mtype not in (STUN_SEND, STUN_DATA):
        return None
    end = min(pe, ps + 20 + ((d[ps + 2] << 8) | d[ps + 3]))
    a = ps + 20
    while a + 4 <= end:
        at, ln = struct.unpack_from("!HH", d, a)
        if at == ATTR_DATA:
            return (a + 4, a + 4 + ln) if a + 4 + ln <= end else None
        a += 4 + ((ln + 3) & ~3)
    return None


def tcp_messages(data: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """Split a TCP byte stream that carries media: yields ``(kind, start, end)`` for each
    complete message at the front of ``data`` — kind 0 RFC 4571 framed packet (16-bit
    length prefix), 1 STUN/TURN message (RFC 8489 header: type, length, magic cookie),
    2 TURN ChannelData (RFC 8656 §12.5: padded to 4 bytes over TCP). Stops at the first
    incomplete message; the caller keeps the rest for the next segment."""
    o, n = 0, len(data)
    while o + 4 <= n:
        b0 = data[o]
        if b0 <= 3 and n >= o + 8 and data[o + 4 : o + 8] == STUN_COOKIE:
            ln = 20 + ((data[o + 2] << 8) | data[o + 3])
            kind = 1
        elif 0x40 <= b0 <= 0x4F:
            ln = 4 + ((((data[o + 2] << 8) | data[o + 3]) + 3) & ~3)
            kind = 2
        else:
            ln = 2 + ((b0 << 8) | data[o + 1])
            kind = 0
        if o + ln > n:
            return
        yield kind, o, o + ln
        o += ln
