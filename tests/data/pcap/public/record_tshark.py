"""Record tshark's own RTP figures for every capture in this folder (``tshark.json``).

    .venv/bin/python tests/data/pcap/public/record_tshark.py           # every capture
    .venv/bin/python tests/data/pcap/public/record_tshark.py FILE ...  # only these

For each capture (pcap or pcapng, gzip-compressed or not) it stores:

- ``sha256``, ``bytes``, ``gzip`` (the file starts with the gzip magic 1f 8b), and what
  ``capinfos`` says: ``file_type``, ``encapsulation`` and ``frames``;
- ``heuristic``: the streams of ``tshark -n -q -r FILE -o rtp.heuristic_rtp:TRUE -z rtp,streams``
  (RTP found by tshark's heuristic dissector on any UDP port, as well as through SDP);
- ``sdp``: where the capture carries SDP, the streams of the same command without the
  heuristic (RTP found only through the SIP/SDP or other signalling in the capture);
- ``sdp_rtpmap``: every distinct ``a=rtpmap`` in the capture's SDP (payload type, encoding,
  clock rate), which is what a signalled clock rate must agree with;
- ``rtcp``: RTCP packets by packet type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP,
  205 RTPFB, 206 PSFB, 207 XR, 208 AVB) as tshark dissects them with its RTP and RTCP
  heuristics on.

Per stream: ``src``/``dst`` address and port, ``ssrc``, ``payload`` (tshark's name),
``packets``, ``lost`` (expected - received, so negative with duplicates), ``lost_pct``,
``min/mean/max_delta_ms`` (arrival-time gap between consecutive packets), ``min/mean/
max_jitter_ms`` (the RFC 3550 running estimate; 0 where tshark has no clock rate),
``problems`` (tshark's ``X``), ``start_s``/``end_s`` (seconds from the first frame).

``-n`` only turns name resolution off (no DNS look-ups; the figures are the same). The
tshark version and the exact commands are kept at the top of ``tshark.json``; the test
(``tests/test_pcap_corpus.py``) imports ``streams()`` from here to check the figures are
reproducible. Licence of this script: MIT (netready).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "tshark.json"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")

HEURISTIC = ["tshark", "-n", "-q", "-r", "FILE", "-o", "rtp.heuristic_rtp:TRUE", "-z",
             "rtp,streams"]  # fmt: skip
SDP_ONLY = ["tshark", "-n", "-q", "-r", "FILE", "-z", "rtp,streams"]
SDP_ATTRS = ["tshark", "-n", "-r", "FILE", "-Y", "sdp", "-T", "fields", "-e", "sdp.media_attr"]
RTCP_TYPES = ["tshark", "-n", "-r", "FILE", "-o", "rtp.heuristic_rtp:TRUE", "-o",
              "rtcp.heuristic_rtcp:TRUE", "-Y", "rtcp", "-T", "fields", "-e", "rtcp.pt"]  # fmt: skip

#: One row of ``-z rtp,streams`` (Wireshark 4.0): start end src sport dst dport SSRC
#: payload (may hold spaces and commas) pkts lost (pct%) 3 deltas 3 jitters [X]
_F = r"(-?[\d.]+)"
_ROW = re.compile(
    r"^\s*([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-Fa-f]{8})\s+(.*?)\s+"
    r"(\d+)\s+(-?\d+)\s+\((-?[\d.]+)%\)\s+" + r"\s+".join([_F] * 6) + r"\s*(X?)\s*$"
)


_SSRC = re.compile(r"\s0x[0-9A-Fa-f]{8}\s")


def _addr(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def command(template: list[str], path: Path) -> list[str]:
    return [str(path) if a == "FILE" else a for a in template]


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def parse_streams(text: str) -> list[dict[str, Any]]:
    """The stream rows of ``-z rtp,streams`` output, in tshark's order. A row that names an
    SSRC but does not parse is an error (a silently dropped stream would pass for agreement)."""
    out = []
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m:
            if _SSRC.search(line):
                raise RuntimeError(f"cannot parse this tshark row: {line!r}")
            continue
        g = m.groups()
        out.append({
            "src": _addr(g[2], g[3]), "dst": _addr(g[4], g[5]), "ssrc": g[6].lower(),
            "payload": g[7], "packets": int(g[8]), "lost": int(g[9]),
            "lost_pct": float(g[10]), "min_delta_ms": float(g[11]),
            "mean_delta_ms": float(g[12]), "max_delta_ms": float(g[13]),
            "min_jitter_ms": float(g[14]), "mean_jitter_ms": float(g[15]),
            "max_jitter_ms": float(g[16]), "problems": g[17] == "X",
            "start_s": float(g[0]), "end_s": float(g[1]),
        })  # fmt: skip
    return out


def streams(path: Path, heuristic: bool = True) -> list[dict[str, Any]]:
    """tshark's streams for one capture (with or without the RTP heuristic)."""
    text = _run(command(HEURISTIC if heuristic else SDP_ONLY, path))
    if "RTP Streams" not in text:
        raise RuntimeError(f"{path}: tshark printed no RTP Streams table:\n{text}")
    return parse_streams(text)


def tshark_version() -> str:
    return _run(["tshark", "--version"]).splitlines()[0].strip()


def _capinfos(path: Path) -> dict[str, Any]:
    text = _run(["capinfos", "-M", "-t", "-E", "-c", str(path)])
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {
        "file_type": info["File type"].strip(),
        "encapsulation": info["File encapsulation"].strip(),
        "frames": int(info["Number of packets"].strip()),
    }


def record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    sdp_lines = _run(command(SDP_ATTRS, path)).splitlines()  # one line per SDP packet
    rtpmap = sorted({a.split(":", 1)[1].strip() for line in sdp_lines
                     for a in line.split(",") if a.startswith("rtpmap:")})  # fmt: skip
    has_sdp = bool(sdp_lines)
    rtcp = Counter(pt for line in _run(command(RTCP_TYPES, path)).split()
                   for pt in line.split(",") if pt)  # fmt: skip
    entry: dict[str, Any] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "gzip": data[:2] == b"\x1f\x8b",
        **_capinfos(path),
        "heuristic": streams(path, heuristic=True),
        "sdp": streams(path, heuristic=False) if has_sdp else None,
        "sdp_rtpmap": rtpmap,
        "rtcp": dict(sorted(rtcp.items())),
    }
    return entry


def captures() -> list[Path]:
    return sorted(p for p in HERE.iterdir() if p.name.endswith(CAPTURE_SUFFIXES))


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or captures()
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    files = old.get("files", {}) if argv else {}
    for p in paths:
        print(f"tshark: {p.name}", file=sys.stderr)
        files[p.name] = record(p)
    doc = {
        "tshark_version": tshark_version(),
        "commands": {
            "heuristic": " ".join(HEURISTIC),
            "sdp": " ".join(SDP_ONLY),
            "sdp_rtpmap": " ".join(SDP_ATTRS),
            "rtcp": " ".join(RTCP_TYPES),
        },
        "files": dict(sorted(files.items())),
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except RuntimeError as e:
        sys.exit(f"record_tshark: {e}")
