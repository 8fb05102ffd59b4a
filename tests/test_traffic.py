"""The agent's monthly traffic (``traffic_month_mb``) against what really crossed the link.

Each probe's run is counted by what its plugin declares (``Plugin.traffic``, netready/budget.py
``wire_bytes``). The truth here is the kernel's: a private network namespace whose only
traffic is the test's, with a real TWAMP-light reflector, a real media responder and an HTTP
server on its loopback, and ``netready-agent --once --force --only NAME`` run inside it, one
probe at a time, the loopback's MTU set to Ethernet's 1500. The loopback's
``tx_bytes``/``tx_packets`` (IP bytes and packets of both directions: every packet crosses
``lo`` once) plus 14 B of Ethernet header per packet is what an Ethernet link would have
carried; the agent's count must equal it within the header
allowance each probe states (what the count leaves out on purpose: the media probe's
control exchange, the HTTP request, the TCP handshake and ACKs).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_pcap import Netns

from netready import budget
from netready.plugin import Context
from netready.spool import Spool

ODS = "Y81001"
BODY = 300_000  # bytes the HTTP probe fetches


def lo(n: Netns) -> tuple[int, int]:
    """(bytes, packets) the namespace's loopback has carried."""
    stats = "/sys/class/net/lo/statistics"
    out = subprocess.run(n.cmd("cat", f"{stats}/tx_bytes", f"{stats}/tx_packets"),
                         capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    b, p = out.stdout.split()
    return int(b), int(p)


def free_port(kind: int) -> int:
    """A port nothing in the (new, empty) namespace uses: any fixed one would do; take one
    the root namespace's kernel hands out, so two test runs never agree by chance."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Netns, dict[str, str]]]:
    """The namespace (tests/test_pcap.py ``Netns``) and the three servers in it."""
    n = Netns()
    try:
        # an Ethernet-sized MTU and no segmentation offload (one skb, one counted packet, at
        # most one segment), so TCP segments are what a real line carries (1448 B of payload
        # in 1514 B) and counted one by one, not loopback's 64 kB ones
        n.run("ip", "link", "set", "lo", "mtu", "1500", "gso_max_segs", "1", "gso_max_size",
              "1500")  # fmt: skip
        d = tmp_path_factory.mktemp("www")
        (d / "body.bin").write_bytes(os.urandom(BODY))
        rtt, media, http = (free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM),
                            free_port(socket.SOCK_STREAM))  # fmt: skip
        py = [sys.executable, "-m"]
        for argv in (
            [*py, "netready.cli", "reflector", "--listen", f"127.0.0.1:{rtt}"],
            [*py, "netready.cli", "responder", "--listen", f"127.0.0.1:{media}"],
        ):
            p = n.popen(*argv)
            assert p.stderr is not None
            head = [p.stderr.readline()]  # INFO lines may come before "listening on"
            while b"listening" not in head[-1] and head[-1] and len(head) < 6:
                head.append(p.stderr.readline())
            assert b"listening" in head[-1], head
        n.popen(*py, "http.server", "--bind", "127.0.0.1", "--directory", str(d), str(http))
        for _ in range(100):  # http.server says nothing until its first request
            ss = subprocess.run(n.cmd("ss", "-ltnH", f"sport = :{http}"), capture_output=True,
                                text=True, timeout=30)  # fmt: skip
            if ss.stdout.strip():
                break
            time.sleep(0.1)
        yield n, {"rtt": f"127.0.0.1:{rtt}", "media": f"127.0.0.1:{media}",
                  "http": f"http://127.0.0.1:{http}/body.bin"}  # fmt: skip
    finally:
        n.close()


def inventory(tmp: Path, addr: dict[str, str]) -> Path:
    targets = [
        {"name": "rtt", "probe": "rtt", "address": addr["rtt"],
         "params": {"duration_s": 2, "rate_pps": 100, "size": 500, "window_s": 1}},
        {"name": "icmp", "probe": "icmp", "address": "127.0.0.1",
         "params": {"count": 200, "interval_s": 0.005, "size": 1000}},
        {"name": "media", "probe": "media", "address": addr["media"],
         "params": {"duration_s": 2, "profile": "sd"}},
        {"name": "http", "probe": "http", "address": addr["http"],
         "params": {"max_bytes": 1_000_000}},
    ]  # fmt: skip
    inv = {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {"spool_path": str(tmp / "spool.db"), "splay_s": 0},
        "sites": [
            {
                "ods": ODS,
                "name": "Riverside Surgery",
                "type": "gp_practice",
                "icb": "QHM",
                "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
                "targets": targets,
            }
        ],
    }
    p = tmp / "inv.yaml"
    p.write_text(yaml.safe_dump(inv))
    return p


#: What each probe's count leaves out, per run, on top of the packets it declares (bytes,
#: the least and the most of wire - counted): rtt and icmp nothing (every packet is a
#: declared test packet); media its control exchange (hello, cookie, start, stats: a few JSON
#: datagrams of <= 1.5 kB each way); http the receiver's ACKs (66 B for every one or two
#: 1514 B segments: 2.2-4.4 % of the body; x 1/0.956 counts the segments' own headers), the
#: handshake, the request and response headers and the close.
ALLOWANCE = {
    "rtt": (0, 0),
    "icmp": (0, 0),
    "media": (0, 12_000),
    "http": (0, int(0.045 * BODY) + 3_000),
}


@pytest.mark.root
def test_traffic_month_equals_what_crossed_the_link(
    netns: tuple[Netns, dict[str, str]], tmp_path: Path
) -> None:
    n, addr = netns
    inv = inventory(tmp_path, addr)
    ctx = Context(state_dir=tmp_path / "state")
    got = {}
    for name in ("rtt", "icmp", "media", "http"):
        b0, p0 = lo(n)
        c0 = budget.traffic_month(ctx, ODS)
        argv = ["netready-agent", "--inventory", str(inv), "--state-dir", str(ctx.state_dir),
                "--once", "--force", "--only", name]  # fmt: skip
        r = subprocess.run(n.cmd(*argv), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        b1, p1 = lo(n)
        wire = (b1 - b0) + budget.ETHERNET * (p1 - p0)
        counted = budget.traffic_month(ctx, ODS) - c0
        got[name] = (counted, wire)
        lo_ok, hi_ok = ALLOWANCE[name]
        assert lo_ok <= wire - counted <= hi_ok, (name, counted, wire)
    # each run was what it said it was (not an empty one that agrees trivially)
    with Spool(tmp_path / "spool.db") as sp:
        results = {(r.measurement, r.tags.get("method")): r.result for r in sp.records()
                   if r.measurement != "agent"}  # fmt: skip
    assert set(results.values()) == {"ok"}, results
    assert got["media"][0] > 200_000 and got["icmp"][0] == 200 * 2 * (1000 + 42)
    assert got["rtt"][0] == 200 * 2 * (500 + 42)
    # the agent record reports the month's total (MB) beside the budget
    with Spool(tmp_path / "spool.db") as sp:
        agent_rec = max(sp.records("agent"), key=lambda r: r.time_ms)
    assert agent_rec.fields["traffic_month_mb"] == pytest.approx(
        sum(c for c, _ in got.values()) / 1e6, abs=1e-6
    )
