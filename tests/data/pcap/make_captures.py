"""Re-make the reference captures in this folder (run as root, from the repo root):

    .venv/bin/python tests/data/pcap/make_captures.py

A throwaway network namespace; ffmpeg sends a 3 s 'call' over its loopback (G.711 u-law
audio PT 0, MPEG-1 video PT 32 at 90 kHz, H.264 PT 96); nft drops 4 % of those UDP packets
at lo's egress hook; tcpdump (pcap, Ethernet) and dumpcap (pcapng, Linux cooked SLL) record
it. ``expected.json`` keeps what ``tshark -q -z rtp,streams`` (Wireshark 4.0.17) said about
each file when it was made. Licence: MIT (generated here, no third-party content).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent.parent.parent))

from test_pcap import tshark  # noqa: E402


def main() -> None:
    ns = f"nrpcapmk{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        ex = ["ip", "netns", "exec", ns]
        subprocess.run([*ex, "ip", "link", "set", "lo", "up"], check=True)
        rule = ("table netdev nrloss { chain eg { type filter hook egress device lo priority 0;"
                " udp dport { 5004, 5006, 5008 } numgen random mod 100 < 4 drop; }\n}\n")  # fmt: skip
        subprocess.run([*ex, "nft", "-f", "-"], input=rule.encode(), check=True)
        lo = HERE / "call_lo_ether.pcap"
        anyf = HERE / "call_any_sll.pcapng"
        procs.append(subprocess.Popen([*ex, "tcpdump", "--immediate-mode", "-i", "lo", "-U", "-w", str(lo),
                                       "udp", "port", "5004", "or", "udp", "port", "5006"]))  # fmt: skip
        procs.append(subprocess.Popen([*ex, "dumpcap", "-q", "-i", "any", "-f",
                                       "udp port 5004 or udp port 5008", "-w", str(anyf)]))  # fmt: skip
        time.sleep(1.5)
        subprocess.run(
            [*ex, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
             "-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
             "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=3",
             "-map", "0:a", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1",
             "-f", "rtp", "rtp://127.0.0.1:5004",
             "-map", "1:v", "-c:v", "mpeg1video", "-b:v", "100k", "-f", "rtp",
             "rtp://127.0.0.1:5006",
             "-map", "1:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-b:v", "100k", "-f", "rtp", "rtp://127.0.0.1:5008"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    expected = {}
    for f in (lo, anyf):
        os.chmod(f, 0o644)
        expected[f.name] = {"|".join(k): v for k, v in sorted(tshark(f).items())}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main()
