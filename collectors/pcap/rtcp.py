"""RTCP sender and receiver reports (RFC 3550 §6.4), sans-IO.

A report block about a stream's SSRC carries what its receiver measured: fraction lost
since the last report, cumulative lost, interarrival jitter (timestamp units) and, for
the round trip, LSR (the middle 32 bits of the NTP time of the last SR it received from
that source) and DLSR (how long it held it, 1/65536 s). The round trip is measured at the
capture point: the RR's arrival minus the arrival of the SR whose NTP time is LSR, minus
DLSR (RFC 3550 §6.4.1's A − LSR − DLSR, with both times on the capture's clock, so no
clock needs to be in sync with the sender's).

SRTCP (RFC 3711) encrypts everything after the first 8 bytes and appends an index and an
authentication tag; a compound packet whose RTCP lengths do not add up exactly to the
datagram is taken as SRTCP (or not RTCP) and its reports are not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SR, RR = 200, 201
_BLOCK = struct.Struct("!IB3sIIII")
#: SRs remembered per sender, to match an RR's LSR (bounded: a hostile capture cannot grow it)
KEEP_SR = 64


@dataclass
class Reports:
    """Per reported-on SSRC: the blocks seen; per SR sender: when its SRs passed."""

    blocks: dict[int, list[tuple[float, int, int, float | None]]] = field(default_factory=dict)
    sr_seen: dict[int, dict[int, float]] = field(default_factory=dict)
    packets: int = 0

    def feed(self, d: bytes, ps: int, pe: int, t_ms: float) -> bool:
        """One RTCP datagram ``d[ps:pe]`` seen at ``t_ms``; True if it was plain RTCP."""
        o = ps
        parts = []
        while o + 4 <= pe:
            b0, pt, words = d[o], d[o + 1], (d[o + 2] << 8) | d[o + 3]
            if b0 >> 6 != 2 or not 192 <= pt <= 223:
                return False
            end = o + 4 * (words + 1)
            if end > pe:
                return False
            parts.append((b0 & 0x1F, pt, o, end))
            o = end
        if o != pe or not parts:
            return False  # SRTCP (index and tag after the compound packet) or not RTCP
        self.packets += 1
        for count, pt, start, end in parts:
            if pt == SR and end - start >= 28:
                sender = struct.unpack_from("!I", d, start + 4)[0]
                mid = struct.unpack_from("!I", d, start + 10)[0]  # middle 32 bits of NTP
                seen = self.sr_seen.setdefault(sender, {})
                if len(seen) >= KEEP_SR:
                    seen.pop(next(iter(seen)))
                seen[mid] = t_ms
                self._blocks(d, start + 28, end, count, t_ms)
            elif pt == RR and end - start >= 8:
                self._blocks(d, start + 8, end, count, t_ms)
        return True

    def _blocks(self, d: bytes, o: int, end: int, count: int, t_ms: float) -> None:
        for _ in range(count):
            if o + 24 > end:
                return
            ssrc, frac, _cum, _ext, jitter, lsr, dlsr = _BLOCK.unpack_from(d, o)
            o += 24
            rtt = None
            if lsr:
                sent = self.sr_seen.get(ssrc, {}).get(lsr)
                if sent is not None:
                    rtt = t_ms - sent - dlsr * 1000.0 / 65536.0
                    if rtt < 0:
                        rtt = None  # the SR and the RR were not seen at one point
            blocks = self.blocks.setdefault(ssrc, [])
            if len(blocks) < 100_000:
                blocks.append((t_ms, frac, jitter, rtt))

    def summary(self, ssrc: int, clock: int) -> dict[str, float | int | None]:
        """What the receivers reported about one stream: reports, worst fraction lost (%),
        worst interarrival jitter (ms, at the stream's clock rate), mean round trip (ms)."""
        blocks = self.blocks.get(ssrc, [])
        rtts = [b[3] for b in blocks if b[3] is not None]
        return {
            "rtcp_reports": len(blocks),
            "rtcp_loss_max_pct": round(max(b[1] for b in blocks) * 100 / 256, 3) if blocks else None,
            "rtcp_jitter_max_ms": round(max(b[2] for b in blocks) * 1000 / clock, 3)
            if blocks and clock else None,
            "rtcp_rtt_ms": round(sum(rtts) / len(rtts), 3) if rtts else None,
        }
