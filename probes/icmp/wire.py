"""ICMP echo on a datagram ("ping") socket, sans-IO: the request we write and the reply we
read (RFC 792 for IPv4, RFC 4443 §4 for IPv6).

On a ``SOCK_DGRAM`` ICMP socket (Linux ``net.ipv4.ping_group_range``; macOS for every user) the
kernel owns the identifier (the socket's "port") and computes the checksum, and hands us the
ICMP message without the IP header: all that is left to write is 8 bytes of header, so this is
hand-written rather than built with scapy (24 MB, kept for the raw-socket path, an extra).
"""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
#: family -> (echo request type, echo reply type)
TYPES: dict[int, tuple[int, int]] = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}


def echo_request(family: int, seq: int, payload: bytes) -> bytes:
    """An echo request for a datagram ICMP socket: identifier and checksum 0 (the kernel
    writes both)."""
    return HEADER.pack(TYPES[family][0], 0, 0, 0, seq & 0xFFFF) + payload


def parse_echo_reply(family: int, data: bytes) -> tuple[int, int] | None:
    """``(identifier, sequence)`` of an echo reply read from a datagram ICMP socket, or
    ``None`` for anything else (too short, another type or code)."""
    if len(data) < HEADER.size:
        return None
    typ, code, _ck, ident, seq = HEADER.unpack_from(data)
    if typ != TYPES[family][1] or code != 0:
        return None
    return ident, seq
