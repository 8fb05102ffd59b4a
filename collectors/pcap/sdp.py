"""Clock rates from the capture's own signalling, sans-IO: SDP (RFC 8866) inside SIP
(RFC 3261) messages over UDP or TCP.

Each SDP media description (``m=audio 49170 RTP/AVP 0 96``) with its connection address
(``c=IN IP4 ...``, media-level or session-level) says: RTP sent *to* that address and
port uses these payload types, with the ``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]``
clock rates (static types without an rtpmap keep RFC 3551's). A stream is matched by its
destination, else by its source (the answerer usually sends from the port it receives
on, RFC 4961); failing both, a payload type that every SDP of the capture maps to one
clock rate uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Start of a SIP request or response (RFC 3261 §7.1, §7.2).
_SIP_START = re.compile(rb"^(?:[A-Z]+ \S+ SIP/2\.0|SIP/2\.0 \d{3} )")
_RTPMAP = re.compile(rb"^a=rtpmap: *(\d{1,3}) +([^/\s]+)/(\d+)", re.MULTILINE)


@dataclass
class Signalled:
    """What the SDP seen so far says: ``(ip, port) -> {pt: (encoding, clock)}`` and, per
    payload type, every clock rate any SDP gave it."""

    by_addr: dict[tuple[str, int], dict[int, tuple[str, int]]] = field(default_factory=dict)
    by_pt: dict[int, set[tuple[str, int]]] = field(default_factory=dict)
    messages: int = 0

    def lookup(self, src: str, dst: str, pt: int) -> tuple[str, int] | None:
        """(encoding, clock) for payload type ``pt`` of a stream ``src`` -> ``dst``
        (``ip:port`` text as ``endpoints`` gives it)."""
        for ep in (dst, src):
            ip, _, port = ep.rpartition(":")
            m = self.by_addr.get((ip.strip("[]"), int(port)))
            if m is not None and pt in m:
                return m[pt]
        maps = self.by_pt.get(pt)
        if maps and len({c for _, c in maps}) == 1:
            return next(iter(maps))
        return None

    def feed(self, payload: bytes) -> bool:
        """Read one UDP datagram or TCP segment; True if it was a SIP message with SDP."""
        if not _SIP_START.match(payload):
            return False
        _head, sep, body = payload.partition(b"\r\n\r\n")
        if not sep or b"v=0" not in body[:8]:
            return False
        self.messages += 1
        self._sdp(body.decode("latin-1"))
        return True

    def _sdp(self, text: str) -> None:
        session_ip = ""
        media: list[tuple[int, list[int], str, dict[int, tuple[str, int]]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("c=IN IP"):
                parts = line.split()
                ip = parts[2].split("/")[0] if len(parts) >= 3 else ""
                if media:
                    media[-1] = (media[-1][0], media[-1][1], ip, media[-1][3])
                else:
                    session_ip = ip
            elif line.startswith("m="):
                parts = line[2:].split()
                if len(parts) >= 3 and parts[1].isdigit():
                    pts = [int(p) for p in parts[3:] if p.isdigit() and int(p) < 128]
                    media.append((int(parts[1]), pts, "", {}))
            elif line.startswith("a=rtpmap:") and media:
                m = _RTPMAP.match(line.encode("latin-1"))
                if m and int(m[1]) < 128 and int(m[3]) > 0:
                    media[-1][3][int(m[1])] = (m[2].decode("latin-1"), int(m[3]))
        for port, _pts, ip, maps in media:
            if port == 0 or not maps:
                continue
            self.by_addr.setdefault((ip or session_ip, port), {}).update(maps)
            for pt, v in maps.items():
                self.by_pt.setdefault(pt, set()).add(v)


def is_telephone_event(encoding: str) -> bool:
    """RFC 4733 named telephone events (DTMF) or tones: no audio, no jitter."""
    return encoding.lower() in ("telephone-event", "tone")
