"""TWAMP-light test packets (RFC 5357 §4.1.2 and §4.2.1, unauthenticated mode). Sans-IO.

Sender -> reflector (14 bytes + padding)::

    0       4               12      14
    | seq   | timestamp(NTP)| errest| padding ...

Reflector -> sender (41 bytes + padding)::

    | seq | timestamp | errest | MBZ(2) | receive ts | sender seq | sender ts |
    | sender errest | MBZ(2) | sender TTL(1) | padding ...

Timestamps are NTP 32.32 fixed point (seconds since 1900). netready's sender pads its packets
to at least ``REFLECT_MIN`` bytes so a reflector can answer with a packet of the same size
(RFC 6038 symmetric size), which is what keeps reflectors from amplifying: the reply is never
larger than the request.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
SENDER_FMT = struct.Struct("!IQH")  # 14 bytes
REFLECT_FMT = struct.Struct("!IQHHQIQHHB")  # 41 bytes
SENDER_MIN = SENDER_FMT.size
REFLECT_MIN = REFLECT_FMT.size
# Error estimate: S=1 (synchronised? we do not claim it: 0), Z=0, scale 0, multiplier 1.
ERR_EST = 0x0001


def ntp_now() -> int:
    return to_ntp(time.time_ns())


def to_ntp(unix_ns: int) -> int:
    secs, ns = divmod(unix_ns, 1_000_000_000)
    return ((secs + NTP_EPOCH_OFFSET) << 32) | ((ns << 32) // 1_000_000_000)


def ntp_to_s(ntp: int) -> float:
    """NTP 32.32 to Unix seconds (float)."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


@dataclass(frozen=True, slots=True)
class SenderPacket:
    seq: int
    timestamp: int
    err_est: int = ERR_EST


@dataclass(frozen=True, slots=True)
class ReflectedPacket:
    seq: int
    timestamp: int  # reflector's transmit time
    err_est: int
    receive_ts: int  # reflector's receive time
    sender_seq: int
    sender_ts: int
    sender_err_est: int
    sender_ttl: int


def pack_sender(seq: int, timestamp: int, size: int = REFLECT_MIN) -> bytes:
    head = SENDER_FMT.pack(seq & 0xFFFFFFFF, timestamp, ERR_EST)
    return head + bytes(max(0, size - len(head)))


def unpack_sender(data: bytes) -> SenderPacket:
    if len(data) < SENDER_MIN:
        raise ValueError(f"TWAMP test packet too short: {len(data)} < {SENDER_MIN} bytes")
    seq, ts, err = SENDER_FMT.unpack_from(data)
    return SenderPacket(seq, ts, err)


def pack_reflected(
    seq: int, tx_ts: int, rx_ts: int, sender: SenderPacket, ttl: int, size: int
) -> bytes:
    """The reply, exactly ``size`` bytes (``size`` >= REFLECT_MIN; the request's length)."""
    head = REFLECT_FMT.pack(
        seq & 0xFFFFFFFF,
        tx_ts,
        ERR_EST,
        0,
        rx_ts,
        sender.seq,
        sender.timestamp,
        sender.err_est,
        0,
        ttl & 0xFF,
    )
    return head + bytes(max(0, size - len(head)))


def unpack_reflected(data: bytes) -> ReflectedPacket:
    if len(data) < REFLECT_MIN:
        raise ValueError(f"TWAMP reflected packet too short: {len(data)} < {REFLECT_MIN} bytes")
    seq, ts, err, _mbz, rx, sseq, sts, serr, _mbz2, ttl = REFLECT_FMT.unpack_from(data)
    return ReflectedPacket(seq, ts, err, rx, sseq, sts, serr, ttl)
