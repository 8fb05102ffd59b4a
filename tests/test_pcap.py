"""RTP analysis of captured calls (collectors/pcap.py), checked against tshark.

Real parts: ffmpeg sends RTP (G.711, MPEG video at 90 kHz, H.264 with a dynamic payload
type) over loopback in a network namespace of our own, an nft rule drops 4 % of those UDP
packets at lo's egress (before the capture point, so the loss is in the capture), tcpdump
and dumpcap record it (pcap/Ethernet, pcap/SLL2, pcapng/SLL), and
``tshark -q -z rtp,streams`` analyses the same files. A Python sender on real sockets
multiplexes RTP, SRTP, RTCP, STUN, DTLS-like and TURN ChannelData packets on one port.
Synthetic captures (written with struct) cover the link types and file formats tcpdump
does not produce here, sequence wrap, reorder, duplicates, truncation and non-pcap input;
each is also read by tshark, so the expected numbers come from the reference tool or from
the known sequence of packets written, never from netready itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.collectors import pcap

from netready import registry
from netready.cli.pcap import pcap_command
from netready.errors import ParseError
from netready.records import Record

DATA = Path(__file__).parent / "data" / "pcap"
FIELDS = [
    "ssrc", "src", "dst", "payload_type", "packets", "expected", "lost", "loss_pct",
    "duplicates", "jitter_mean_ms", "jitter_max_ms", "max_delta_ms", "gap_max_ms",
    "max_burst_loss", "reorder", "duration_s", "bitrate_kbps", "mos_emodel", "transport",
    "rtcp_reports", "rtcp_loss_max_pct", "rtcp_jitter_max_ms", "rtcp_rtt_ms",
]  # fmt: skip

# --------------------------------------------------------------------------- tshark


_ROW = re.compile(
    r"^\s*\S+\s+\S+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-Fa-f]{8})\s+(.*?)\s+(\d+)\s+"
    r"(-?\d+)\s+\((-?[\d.]+)%\)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+"
    r"(-?[\d.]+)\s+(-?[\d.]+)\s*X?\s*$"
)


def _addr(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def tshark(path: Path, *extra: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """``tshark -q -z rtp,streams`` rows keyed by (ssrc, src, dst) as netready writes them."""
    p = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-q", "-z", "rtp,streams",
         "-o", "rtp.heuristic_rtp:TRUE", *extra],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    out = {}
    for line in p.stdout.splitlines():
        m = _ROW.match(line)
        if m:
            out[(m[5].lower(), _addr(m[1], m[2]), _addr(m[3], m[4]))] = {
                "packets": int(m[7]), "lost": int(m[8]), "jitter_mean_ms": float(m[14]),
                "jitter_max_ms": float(m[15]),
            }  # fmt: skip
    assert out, f"tshark found no RTP stream in {path}:\n{p.stdout}"
    return out


def by_key(results: list[pcap.StreamResult]) -> dict[tuple[str, str, str], pcap.StreamResult]:
    return {(r.ssrc, r.src, r.dst): r for r in results}


def assert_matches_tshark(path: Path, jitter: bool = True, **kw: object) -> None:
    """packets and lost equal, jitter within 5 % (plus 0.002 ms for tshark's rounding)."""
    ours = by_key(pcap.analyse(path, **kw))  # type: ignore[arg-type]
    ref = tshark(path)
    assert set(ours) == set(ref), (sorted(ours), sorted(ref))
    for k, t in ref.items():
        o = ours[k]
        assert (o.packets, o.lost) == (t["packets"], t["lost"]), (k, o, t)
        if jitter:
            for f in ("jitter_mean_ms", "jitter_max_ms"):
                assert abs(getattr(o, f) - t[f]) <= 0.05 * t[f] + 0.002, (k, f, o, t)


# --------------------------------------------------------------------------- writing captures

ETH_HDR = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"


def rtp(seq: int, ts: int, ssrc: int, pt: int = 0, marker: bool = False, size: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + b"\xd5" * size  # fmt: skip


def ip_udp(payload: bytes, v6: bool = False, sport: int = 40000, dport: int = 5004) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if v6:
        src = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        dst = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
        return struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, src, dst) + udp
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp  # fmt: skip


def link(kind: str, ip: bytes) -> tuple[int, bytes]:
    """Wrap an IP packet for a link type; returns (linktype, frame)."""
    v6 = ip[0] >> 4 == 6
    et = b"\x86\xdd" if v6 else b"\x08\x00"
    if kind == "ether":
        return 1, ETH_HDR + et + ip
    if kind == "vlan":
        return 1, ETH_HDR + b"\x81\x00\x00\x64" + et + ip
    if kind == "sll":  # packet type, ARPHRD_ETHER, addr len, addr(8), protocol
        return 113, struct.pack("!HHH8s", 0, 1, 6, b"\x02" * 6 + b"\0\0") + et + ip
    if kind == "sll2":  # protocol, reserved, ifindex, ARPHRD, pkttype, addrlen, addr(8)
        return 276, et + struct.pack("!HIHBB8s", 0, 1, 772, 0, 6, b"\0" * 8) + ip
    if kind == "raw":
        return 101, ip
    if kind == "null":  # BSD loopback: address family in host (here little-endian) order
        return 0, struct.pack("<I", 30 if v6 else 2) + ip
    raise ValueError(kind)


def write_pcap(path: Path, frames: list[tuple[float, bytes]], linktype: int,
               nanos: bool = False, big: bool = False) -> None:  # fmt: skip
    e = ">" if big else "<"
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0,
                            262144, linktype))  # fmt: skip
        for t, d in frames:
            sec, us = divmod(round(t * 1e6), 1_000_000)  # all helpers work in microseconds
            frac = us * 1000 if nanos else us
            f.write(struct.pack(e + "IIII", sec, frac, len(d), len(d)) + d)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path: Path, frames: list[tuple[float, bytes]], linktype: int,
                 tsresol: int = 9) -> None:  # fmt: skip
    """pcapng: SHB, a first unused interface, then ours with if_tsresol, then EPBs."""
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(_block(1, struct.pack("<HHI", 1, 0, 65535)))  # interface 0: unused Ethernet
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        f.write(_block(1, struct.pack("<HHI", linktype, 0, 65535) + opts))
        f.write(_block(2989, b"custom block, skipped"))  # unknown block type
        for t, d in frames:
            units = round(t * 1e6) * 10**tsresol // 10**6
            f.write(_block(6, struct.pack("<IIIII", 1, units >> 32, units & 0xFFFFFFFF,
                                          len(d), len(d)) + d))  # fmt: skip


def audio_stream(n: int = 300, seq0: int = 1000, ts0: int = 5000, ssrc: int = 0x1234ABCD,
                 seed: int = 3, lose: frozenset[int] = frozenset(), swap: tuple[int, ...] = (),
                 dup: tuple[int, ...] = ()) -> list[tuple[float, bytes]]:  # fmt: skip
    """G.711 at 20 ms with 0-8 ms arrival jitter; packets by index: ``lose`` never sent,
    ``swap`` index i arrives after i+1, ``dup`` delivered twice. Returns RTP payloads."""
    rnd = random.Random(seed)
    pk = []
    for i in range(n):
        t = 1_700_000_000 + 0.02 * i + rnd.uniform(0, 0.008)
        if i in lose:
            continue
        pk.append((t, rtp(seq0 + i, ts0 + 160 * i, ssrc, marker=i == 0)))
        if i in dup:
            pk.append((t + 0.0005, pk[-1][1]))
    for i in swap:  # swap payloads, keep arrival times increasing
        j = next(k for k, (_, p) in enumerate(pk) if struct.unpack_from("!H", p, 2)[0]
                 == (seq0 + i) & 0xFFFF)  # fmt: skip
        (ta, pa), (tb, pb) = pk[j], pk[j + 1]
        pk[j], pk[j + 1] = (ta, pb), (tb, pa)
    return pk


def frames_of(payloads: list[tuple[float, bytes]], kind: str = "ether", v6: bool = False
              ) -> tuple[int, list[tuple[float, bytes]]]:  # fmt: skip
    lt = 1
    out = []
    for t, p in payloads:
        lt, fr = link(kind, ip_udp(p, v6=v6))
        out.append((t, fr))
    return lt, out


# --------------------------------------------------------------------------- lab captures


def _wait_for(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 10.0) -> None:
    """Read the capturer's stderr until it says it is capturing."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = b""
    os.set_blocking(proc.stderr.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stderr.read() or b""
        seen += chunk
        if text in seen:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"capturer did not start: {seen.decode(errors='replace')}")


class Netns:
    """A throwaway network namespace with lo up; always deleted."""

    def __init__(self) -> None:
        self.name = f"nrpcap{os.getpid()}{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.run("ip", "link", "set", "lo", "up")

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, timeout: float = 30, input: bytes | None = None) -> None:
        subprocess.run(self.cmd(*args), check=True, timeout=timeout, input=input,
                       capture_output=True)  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(self.cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def drop_udp(self, ports: list[int], pct: int) -> None:
        """nft: drop pct % of UDP to these ports at lo's egress hook - before tcpdump's tap,
        and silently for the sender (an output-hook drop would fail its sendto)."""
        rule = (
            "table netdev nrloss { chain eg { type filter hook egress device lo priority 0; "
            f"udp dport {{ {', '.join(map(str, ports))} }} numgen random mod 100 < {pct} drop; }}\n}}\n"
        )
        self.run("nft", "-f", "-", input=rule.encode())

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture(scope="module")
def netns_factory() -> Iterator[list[Netns]]:
    made: list[Netns] = []
    yield made
    for ns in made:
        ns.close()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns.name in left for ns in made)


PORT_AUDIO, PORT_MPV, PORT_H264 = 5004, 5006, 5008


@pytest.fixture(scope="module")
def lab_call(tmp_path_factory: pytest.TempPathFactory, netns_factory: list[Netns]
             ) -> dict[str, Path]:  # fmt: skip
    """One ffmpeg 'call' (G.711 audio, MPEG-1 video PT 32, H.264 PT 96; 4 s) over a lossy
    loopback, captured three ways at once."""
    d = tmp_path_factory.mktemp("lab")
    ns = Netns()
    netns_factory.append(ns)
    ns.drop_udp([PORT_AUDIO, PORT_MPV, PORT_H264], 4)
    caps = {
        "ether.pcap": ns.popen(
            "tcpdump", "--immediate-mode", "-i", "lo", "-U", "-w", str(d / "ether.pcap"), "udp"
        ),
        "sll2.pcap": ns.popen(
            "tcpdump", "--immediate-mode", "-i", "any", "-U", "-w", str(d / "sll2.pcap"), "udp"
        ),
        "sll.pcapng": ns.popen("dumpcap", "-i", "any", "-f", "udp", "-w", str(d / "sll.pcapng")),
    }
    for name, p in caps.items():
        _wait_for(p, b"listening on" if name.endswith(".pcap") else b"Capturing on")
    ns.run(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
        "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4",
        "-map", "0:a", "-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1",
        "-f", "rtp", f"rtp://127.0.0.1:{PORT_AUDIO}",
        "-map", "1:v", "-c:v", "mpeg1video", "-b:v", "150k",
        "-f", "rtp", f"rtp://127.0.0.1:{PORT_MPV}",
        "-map", "1:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-b:v", "150k", "-f", "rtp", f"rtp://127.0.0.1:{PORT_H264}",
        timeout=60,
    )  # fmt: skip
    time.sleep(0.3)
    for p in caps.values():
        ns.stop(p)
    return {name: d / name for name in caps}


# --------------------------------------------------------------------------- tests: real calls


@pytest.mark.parametrize("name", ["ether.pcap", "sll2.pcap", "sll.pcapng"])
def test_ffmpeg_call_matches_tshark(lab_call: dict[str, Path], name: str) -> None:
    path = lab_call[name]
    header = path.read_bytes()[:24]
    if name == "sll2.pcap":
        assert struct.unpack("<I", header[20:24])[0] == 276  # really Linux cooked v2
    results = pcap.analyse(path)
    pts = sorted(r.payload_type for r in results)
    assert pts == [0, 32, 96], results
    assert sum(r.lost for r in results) > 0, "the nft rule dropped nothing?"
    for r in results:
        assert r.expected == r.packets + r.lost
        assert 2.5 < r.duration_s < 8.0  # 4 s of media; generous for a slow, busy box
    # tshark has no clock rate for a dynamic type without SDP: it reports jitter 0 there
    static = {k: v for k, v in by_key(results).items() if v.payload_type < 96}
    ref = tshark(path)
    assert set(by_key(results)) == set(ref)
    for k, t in ref.items():
        o = by_key(results)[k]
        assert (o.packets, o.lost) == (t["packets"], t["lost"]), (o, t)
        if k in static:
            for f in ("jitter_mean_ms", "jitter_max_ms"):
                assert abs(getattr(o, f) - t[f]) <= 0.05 * t[f] + 0.002, (f, o, t)


def test_dynamic_h264_clock_is_guessed_as_90k(lab_call: dict[str, Path]) -> None:
    """libx264 over RTP uses PT 96: the guess must say 90 kHz, giving the same figures as
    telling it --clock 96=90000. (At this small size every frame is one packet with the
    marker bit set, and Wireshark leaves marker packets out of mean/max jitter.)"""
    path = lab_call["ether.pcap"]
    guessed = next(r for r in pcap.analyse(path) if r.payload_type == 96)
    told = next(r for r in pcap.analyse(path, {96: 90000}) if r.payload_type == 96)
    assert (guessed.clock_hz, guessed.clock_source) == (90000, "guessed")
    assert told.clock_source == "option"
    assert (guessed.jitter_mean_ms, guessed.jitter_max_ms) == (told.jitter_mean_ms,
                                                               told.jitter_max_ms)  # fmt: skip
    audio = next(r for r in pcap.analyse(path) if r.payload_type == 0)
    assert (audio.clock_hz, audio.clock_source) == (8000, "static")
    # bit rate: G.711 is 64 kbit/s of payload + 12 RTP + 28 IP/UDP bytes per packet
    assert 70 < audio.bitrate_kbps < 95


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.pcap*")))
def test_recorded_captures(name: str) -> None:
    """Committed captures (tests/data/pcap, see SOURCES_pcap.md): equal to the tshark
    figures recorded when they were made, and to tshark now."""
    path = DATA / name
    expected = json.loads((DATA / "expected.json").read_text())[name]
    ours = by_key(pcap.analyse(path))
    assert sorted("|".join(k) for k in ours) == sorted(expected)
    for key, t in expected.items():
        ssrc, src, dst = key.split("|")
        o = ours[(ssrc, src, dst)]
        assert (o.packets, o.lost) == (t["packets"], t["lost"])
        if o.payload_type < 96:
            for f in ("jitter_mean_ms", "jitter_max_ms"):
                assert abs(getattr(o, f) - t[f]) <= 0.05 * t[f] + 0.002, (f, o, t)
    assert_matches_tshark(path, jitter=False)


# --------------------------------------------------------------------------- multiplexed port

MUX_PORT = 6000


def test_multiplexed_port_rtp_rtcp_stun_dtls(tmp_path: Path, netns_factory: list[Netns]
                                             ) -> None:  # fmt: skip
    """RFC 7983/5761: RTP, SRTP, RTCP, STUN, DTLS-like and TURN ChannelData on one 5-tuple,
    sent with real sockets, captured with tcpdump. Only the two media streams are reported,
    with exactly the packets, losses and reorders that were sent."""
    ns = Netns()
    netns_factory.append(ns)
    cap = tmp_path / "mux.pcap"
    p = ns.popen(
        "tcpdump",
        "--immediate-mode",
        "-i",
        "lo",
        "-U",
        "-w",
        str(cap),
        "udp",
        "port",
        str(MUX_PORT),
    )
    _wait_for(p, b"listening on")
    sender = r"""
import socket, struct, time, os
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 6002))
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 6000))
to = ("127.0.0.1", 6000)
def rtp(seq, ts, ssrc, pt, body):
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body
stun = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
dtls = bytes([22, 0xFE, 0xFD]) + b"\0" * 8 + struct.pack("!H", 40) + os.urandom(40)
dtls_app = bytes([23, 0xFE, 0xFD]) + b"\0" * 8 + struct.pack("!H", 60) + os.urandom(60)
turn = struct.pack("!HH", 0x4001, 40) + os.urandom(40)
sr = struct.pack("!BBHI", 0x80, 200, 6, 0xAAAA0001) + os.urandom(20)
rr = struct.pack("!BBHI", 0x81, 201, 7, 0xAAAA0001) + struct.pack("!I", 0x0000BEEF) + os.urandom(20)
sdes = struct.pack("!BBHI", 0x81, 202, 2, 0xAAAA0001) + b"\x01\x02ab\0\0\0\0"
lose = {10, 11, 12, 40}
late = {60, 90}
pending = None
t0 = time.monotonic()
for i in range(120):
    if i % 25 == 0:
        for m in (stun, dtls, dtls_app, turn, sr, rr, sdes):
            s.sendto(m, to)
    # Opus-like (PT 111, 48 kHz, 20 ms) and SRTP (PT 96: header clear, payload + 10-byte tag)
    a = rtp(65500 + i, 480 * i, 0xAAAA0001, 111, os.urandom(80))
    v = rtp(7 + i, 900 * i, 0xBBBB0002, 96 | (0x80 if i % 3 == 2 else 0), os.urandom(300) + os.urandom(10))
    if i not in lose:
        if i in late:
            pending = a
        else:
            s.sendto(a, to)
            if pending is not None:
                s.sendto(pending, to)
                pending = None
    s.sendto(v, to)
    time.sleep(max(0.0, t0 + 0.01 * (i + 1) - time.monotonic()))  # paced by a clock
"""
    ns.run("python3", "-c", sender, timeout=30)
    time.sleep(0.2)
    ns.stop(p)
    res = by_key(pcap.analyse(cap, {111: 48000}))
    assert set(res) == {
        ("0xaaaa0001", "127.0.0.1:6002", "127.0.0.1:6000"),
        ("0xbbbb0002", "127.0.0.1:6002", "127.0.0.1:6000"),
    }, res
    a = res[("0xaaaa0001", "127.0.0.1:6002", "127.0.0.1:6000")]
    assert (a.payload_type, a.packets, a.expected, a.lost) == (111, 116, 120, 4)
    assert (a.max_burst_loss, a.reorder) == (3, 2)  # seq 65510-65512 wrap area; 60, 90 late
    v = res[("0xbbbb0002", "127.0.0.1:6002", "127.0.0.1:6000")]
    assert (v.payload_type, v.packets, v.lost, v.reorder) == (96, 120, 0, 0)
    assert v.clock_hz == 90000 and v.clock_source == "guessed"
    # without --clock, the Opus-like stream's rate is guessed from ticks per second
    guessed = by_key(pcap.analyse(cap))[("0xaaaa0001", "127.0.0.1:6002", "127.0.0.1:6000")]
    assert (guessed.clock_hz, guessed.clock_source) == (48000, "guessed")
    assert guessed.jitter_mean_ms == a.jitter_mean_ms


def test_clock_guess_fallbacks_for_short_streams() -> None:
    """Under 0.2 s of packets the rate cannot be measured: split frames (shared
    timestamps) or big packets mean video (90 kHz), otherwise Opus-like audio (48 kHz)."""
    video = [(i * 1.0, i, 3000 * (i // 3), 96, 900) for i in range(9)]
    big = [(i * 1.0, i, 3000 * i, 96, 1100) for i in range(9)]
    opus = [(i * 20.0, i, 960 * i, 111, 90) for i in range(5)]
    assert pcap.guess_clock(video) == pcap.guess_clock(big) == 90000
    assert pcap.guess_clock(opus) == 48000
    g722 = [(i * 20.0, i, 320 * i, 9, 170) for i in range(30)]  # 16 kHz over 0.58 s
    assert pcap.guess_clock(g722) == 16000


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("kind", "fmt", "v6"),
    [
        ("ether", "pcap-us", False),
        ("ether", "pcap-ns-bigendian", False),
        ("vlan", "pcap-us", True),
        ("sll", "pcap-us", False),
        ("sll2", "pcap-ns", True),
        ("raw", "pcapng-ns", False),
        ("null", "pcapng-us", True),
        ("ether", "pcapng-ns", True),
        ("sll2", "pcapng-ns", False),
    ],
)
def test_link_types_and_formats_match_tshark(tmp_path: Path, kind: str, fmt: str, v6: bool
                                             ) -> None:  # fmt: skip
    payloads = audio_stream(lose=frozenset({5, 6, 7, 100}))
    lt, frames = frames_of(payloads, kind, v6)
    path = tmp_path / f"{kind}.{fmt.split('-')[0]}"
    if fmt.startswith("pcapng"):
        write_pcapng(path, frames, lt, tsresol=9 if fmt.endswith("ns") else 6)
    else:
        write_pcap(path, frames, lt, nanos="-ns" in fmt, big=fmt.endswith("bigendian"))
    (r,) = pcap.analyse(path)
    assert (r.packets, r.lost, r.expected, r.max_burst_loss) == (296, 4, 300, 3)
    assert r.src == ("[2001:db8::1]:40000" if v6 else "10.0.0.1:40000")
    assert_matches_tshark(path)
    # the same packets give the same jitter whatever the wrapping (IPv6 header is larger
    # only in the bit rate)
    lt0, f0 = frames_of(payloads, "ether", v6)
    write_pcap(tmp_path / "ref.pcap", f0, lt0, nanos=True)
    (r0,) = pcap.analyse(tmp_path / "ref.pcap")
    assert (r.jitter_mean_ms, r.jitter_max_ms, r.bitrate_kbps) == (
        r0.jitter_mean_ms, r0.jitter_max_ms, r0.bitrate_kbps)  # fmt: skip


def test_pcapng_sections_byte_orders_tsoffset_and_old_packet_blocks(tmp_path: Path) -> None:
    """Two sections (little- then big-endian), binary timestamp resolution (2^-20 s) and
    if_tsoffset in the second, obsolete Packet Blocks (type 2) there: the same packets, so
    the same results as the plain pcap, and as tshark."""
    payloads = audio_stream(lose=frozenset({7, 8}))
    lt, frames = frames_of(payloads)
    half = len(frames) // 2

    def block(e: str, btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    out = bytearray()
    out += block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block("<", 1, struct.pack("<HHI", lt, 0, 0))  # default resolution: microseconds
    for tm, d in frames[:half]:
        us = round(tm * 1e6)
        out += block(
            "<", 6, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(d), len(d)) + d
        )
    offset = 1_600_000_000  # if_tsoffset: seconds added to every timestamp
    opts = struct.pack(">HHB3x", 9, 1, 0x80 | 20) + struct.pack(">HHq", 14, 8, offset)
    out += block(">", 0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(">", 1, struct.pack(">HHI", lt, 0, 0) + opts + b"\0\0\0\0")
    for tm, d in frames[half:]:
        units = ((round(tm * 1e6) - offset * 10**6) << 20) // 10**6  # 2^-20 s ticks
        out += block(">", 2, struct.pack(">HHIIII", 0, 0, units >> 32, units & 0xFFFFFFFF,
                                         len(d), len(d)) + d)  # fmt: skip
    ng = tmp_path / "sections.pcapng"
    ng.write_bytes(bytes(out))
    write_pcap(tmp_path / "plain.pcap", frames, lt, nanos=True)
    (a,) = pcap.analyse(ng)
    (b,) = pcap.analyse(tmp_path / "plain.pcap")
    assert (a.packets, a.lost, a.expected) == (b.packets, b.lost, b.expected) == (298, 2, 300)
    # binary 2^-20 s ticks are within 1 us of the original times
    assert abs(a.jitter_mean_ms - b.jitter_mean_ms) < 0.002
    assert abs(a.duration_s - b.duration_s) < 2e-6
    assert_matches_tshark(ng)


def test_sequence_and_timestamp_wrap(tmp_path: Path) -> None:
    """Sequence 65400 -> wraps at 65535; RTP timestamp wraps at 2^32 too; losses on both
    sides of the wrap."""
    payloads = audio_stream(n=400, seq0=65400, ts0=0xFFFFFFFF - 160 * 50,
                            lose=frozenset({130, 135, 136, 137, 138, 139, 300}))  # fmt: skip
    lt, frames = frames_of(payloads)
    write_pcap(tmp_path / "wrap.pcap", frames, lt)
    (r,) = pcap.analyse(tmp_path / "wrap.pcap")
    assert (r.packets, r.expected, r.lost, r.max_burst_loss, r.reorder) == (393, 400, 7, 5, 0)
    assert_matches_tshark(tmp_path / "wrap.pcap")


def test_reorder_and_duplicates(tmp_path: Path) -> None:
    """Three late packets and one duplicate. Jitter, max and mean, follow Wireshark's
    handling of out-of-order packets exactly (compared with tshark). Loss counts sequence
    numbers never received (RFC 3550), so a duplicate does not hide a loss: Wireshark's
    lost = expected - packets is one lower here (documented in docs/pcap.md)."""
    payloads = audio_stream(lose=frozenset({20, 200}), swap=(50, 120, 250), dup=(77,))
    lt, frames = frames_of(payloads)
    path = tmp_path / "reorder.pcap"
    write_pcap(path, frames, lt)
    (r,) = pcap.analyse(path)
    assert (r.packets, r.expected, r.lost, r.reorder, r.max_burst_loss) == (299, 300, 2, 3, 1)
    ((key, t),) = tshark(path).items()
    assert key == (r.ssrc, r.src, r.dst)
    assert t["packets"] == r.packets and t["lost"] == r.lost - 1
    assert (r.jitter_mean_ms, r.jitter_max_ms) == (t["jitter_mean_ms"], t["jitter_max_ms"])


def test_heavy_loss_is_reported_and_random_udp_is_not(tmp_path: Path) -> None:
    """A stream that lost 85 % of its packets is exactly what this tool must show; random
    UDP whose first byte happens to look like RTP (128-191) must not become a stream."""
    rnd = random.Random(11)
    lose = frozenset(i for i in range(1, 400) if rnd.random() < 0.85)
    payloads = audio_stream(n=400, lose=lose)
    noise = []
    for k in range(300):
        # fixed "SSRC" so that all of it would form one stream with random sequence numbers
        junk = bytes([0x80, 96]) + rnd.randbytes(6) + b"\xde\xad\xbe\xef" + rnd.randbytes(50)
        noise.append((1_700_000_000 + 0.013 * k, junk))
    frames = [link("ether", ip_udp(p))[1] for _, p in payloads]
    frames += [link("ether", ip_udp(p, sport=53000, dport=4444))[1] for _, p in noise]
    times = [t for t, _ in payloads] + [t for t, _ in noise]
    path = tmp_path / "lossy.pcap"
    write_pcap(path, sorted(zip(times, frames)), 1)
    (r,) = pcap.analyse(path)
    assert r.ssrc == "0x1234abcd"
    last = max(i for i in range(400) if i not in lose)
    assert (r.packets, r.lost) == (400 - len(lose), sum(1 for i in lose if i < last))
    assert r.loss_pct > 70


def test_comfort_noise_and_marker_packets_leave_jitter_stats_as_wireshark(tmp_path: Path
                                                                          ) -> None:  # fmt: skip
    """Marker packets and comfort noise (PT 13) are not 'regular' in Wireshark's mean/max."""
    rnd = random.Random(9)
    pk = []
    for i in range(200):
        t = 1_700_000_000 + 0.02 * i + rnd.uniform(0, 0.01)
        pt = 13 if 80 <= i < 90 else 8
        pk.append((t, rtp(i, 160 * i, 0x0C0FFEE0, pt=pt, marker=i % 40 == 0)))
    lt, frames = frames_of(pk)
    write_pcap(tmp_path / "cn.pcap", frames, lt)
    assert_matches_tshark(tmp_path / "cn.pcap")


# --------------------------------------------------------------------------- errors + CLI


def test_truncated_file_one_line_error_with_offset(tmp_path: Path) -> None:
    lt, frames = frames_of(audio_stream(n=20))
    good = tmp_path / "good.pcap"
    write_pcap(good, frames, lt)
    data = good.read_bytes()
    last = len(data) - (16 + len(frames[-1][1]))  # offset of the last record
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(data[:-30])
    with pytest.raises(ParseError, match=rf"cut\.pcap: truncated packet at byte {last}\b"):
        pcap.analyse(bad)
    res = CliRunner().invoke(pcap_command, ["analyse", str(bad)])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and f"byte {last}" in lines[0], lines
    # a cut in the middle of a record header, and a cut pcapng
    (tmp_path / "cut2.pcap").write_bytes(data[: last + 7])
    with pytest.raises(ParseError, match=rf"truncated packet record header at byte {last}\b"):
        pcap.analyse(tmp_path / "cut2.pcap")
    write_pcapng(tmp_path / "g.pcapng", frames, lt)
    ng = (tmp_path / "g.pcapng").read_bytes()
    (tmp_path / "cut.pcapng").write_bytes(ng[:-10])
    with pytest.raises(ParseError, match=r"cut\.pcapng: truncated pcapng block at byte \d+"):
        pcap.analyse(tmp_path / "cut.pcapng")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ssrc,src,dst\n0x1,a,b\n", "not a pcap or pcapng file (magic 0x73737263 at byte 0)"),
        (b"", "not a pcap or pcapng file: only 0 bytes at byte 0"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header at byte 0"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "notes.csv"
    f.write_bytes(content)
    res = CliRunner().invoke(pcap_command, ["analyse", str(f), "--format", "json"])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.strip() == f"Error: {f}: {message}"


def test_unsupported_link_type_is_a_clear_error(tmp_path: Path) -> None:
    """An 802.11 radiotap capture (link type 127) holds no frames we can decode: say so
    rather than report 'no RTP streams'."""
    _lt, frames = frames_of(audio_stream(n=5))
    write_pcap(tmp_path / "wifi.pcap", [(t, b"\0\0\x08\0\0\0\0\0" + f) for t, f in frames], 127)
    with pytest.raises(ParseError, match=r"wifi\.pcap: link type 127 is not supported"):
        pcap.analyse(tmp_path / "wifi.pcap")
    empty = tmp_path / "empty.pcap"
    write_pcap(empty, [], 127)
    assert pcap.analyse(empty) == []


def test_cli_json_is_clean_list_with_exact_fields(tmp_path: Path) -> None:
    lt, frames = frames_of(audio_stream(lose=frozenset({3})))
    write_pcap(tmp_path / "a.pcap", frames, lt)
    res = CliRunner().invoke(pcap_command, ["analyse", str(tmp_path / "a.pcap"),
                                                 "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, list) and len(data) == 1
    assert list(data[0]) == FIELDS
    s = data[0]
    assert (s["ssrc"], s["src"], s["dst"], s["payload_type"]) == (
        "0x1234abcd", "10.0.0.1:40000", "10.0.0.2:5004", 0)  # fmt: skip
    assert (s["packets"], s["expected"], s["lost"]) == (299, 300, 1)
    assert s["loss_pct"] == pytest.approx(100 / 300, abs=1e-3)
    assert isinstance(s["packets"], int) and isinstance(s["jitter_mean_ms"], float)
    # MOS: E-model with the measured jitter and loss, latency 0 unless told
    from netready.stats import emodel_mos

    assert s["mos_emodel"] == round(emodel_mos(0, s["jitter_mean_ms"], s["loss_pct"]), 2)
    res2 = CliRunner().invoke(pcap_command, ["analyse", str(tmp_path / "a.pcap"),
                                                  "--format", "json", "--latency-ms", "150"])  # fmt: skip
    assert json.loads(res2.stdout)[0]["mos_emodel"] < s["mos_emodel"]
    table = CliRunner().invoke(pcap_command, ["analyse", str(tmp_path / "a.pcap")])
    assert table.exit_code == 0 and "0x1234abcd" in table.stdout and "PCMU" in table.stdout


def test_cli_clock_option_is_validated(tmp_path: Path) -> None:
    lt, frames = frames_of(audio_stream(n=10))
    write_pcap(tmp_path / "a.pcap", frames, lt)
    for bad in ("96", "96=fast", "200=8000", "96=10"):
        res = CliRunner().invoke(pcap_command,
                                 ["analyse", str(tmp_path / "a.pcap"), "--clock", bad])  # fmt: skip
        assert res.exit_code == 2 and "--clock" in res.stderr and "Traceback" not in res.output


def test_registered_collector_writes_records(tmp_path: Path) -> None:
    import asyncio

    lt, frames = frames_of(audio_stream(lose=frozenset({9})))
    write_pcap(tmp_path / "a.pcap", frames, lt)
    plugin = registry.get("collector", "pcap")

    async def run(path: Path) -> list[Record]:
        return await plugin.run(registry.Context(), plugin.make_spec({"path": str(path)}))

    (rec,) = asyncio.run(run(tmp_path / "a.pcap"))
    assert rec.measurement == "rtp_stream" and rec.ok
    assert rec.tags["stream"] == "audio"
    assert "ssrc" not in rec.tags and rec.fields["ssrc"] == "0x1234abcd"
    assert rec.fields["lost"] == 1 and rec.fields["clock_hz"] == 8000
    assert abs(rec.time_ms - frames[0][0] * 1000) <= 1
    (tmp_path / "bad.pcap").write_bytes(b"nope")
    (fail,) = asyncio.run(run(tmp_path / "bad.pcap"))
    assert fail.result == "error" and "bad.pcap" in str(fail.fields["reason"])


def test_two_streams_same_start_get_distinct_timestamps(tmp_path: Path) -> None:
    """Both directions of a call usually start in the same millisecond; as records of the
    same series they must not overwrite each other in InfluxDB."""
    a = audio_stream(n=50, ssrc=1)
    b = [(t, rtp(struct.unpack_from("!H", p, 2)[0], 0, 2)) for t, p in a]
    lt, frames = frames_of(sorted(a + b))
    write_pcap(tmp_path / "two.pcap", frames, lt)
    recs = pcap.to_records(pcap.analyse(tmp_path / "two.pcap"))
    assert len(recs) == 2
    assert len({(r.measurement, tuple(sorted(r.tags.items())), r.time_ms) for r in recs}) == 2


def test_docs_list_every_field() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "pcap.md").read_text()
    for f in [*FIELDS, "clock_hz", "rtp_stream", "stream"]:
        assert f"`{f}`" in doc, f


def test_corrupt_captures_never_crash(tmp_path: Path) -> None:
    """Random truncations and byte flips of the recorded captures: either results or one
    ParseError naming the file, never another exception (no traceback for bad input)."""
    rnd = random.Random(5)
    sources = [(DATA / n).read_bytes() for n in ("call_lo_ether.pcap", "call_any_sll.pcapng")]
    tmp = tmp_path / "fuzz.pcap"
    for _ in range(150):
        d = bytearray(rnd.choice(sources))
        if rnd.random() < 0.3:
            d = d[: rnd.randrange(len(d))]
        else:
            for _ in range(rnd.randrange(1, 40)):
                d[rnd.randrange(len(d))] = rnd.randrange(256)
        tmp.write_bytes(d)
        try:
            pcap.analyse(tmp)
        except ParseError as e:
            assert str(tmp) in str(e) and "\n" not in str(e)


def test_wired_into_netready_cli() -> None:
    """`netready pcap analyse` through the lazy top-level group."""
    from netready import cli

    path = DATA / "call_lo_ether.pcap"
    res = CliRunner().invoke(cli.cli, ["pcap", "analyse", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert {s["payload_type"] for s in json.loads(res.stdout)} == {0, 32}
    res = CliRunner().invoke(cli.cli, ["pcap", "analyse", "--help"])
    assert "--clock" in res.stdout and "--latency-ms" in res.stdout


# --------------------------------------------------------------------------- hostile captures


def minimal_frame(seq: int, ssrc: int, pt: int = 0, ts: int = 0, sport: int = 40000) -> bytes:
    """Ethernet/IPv4/UDP/RTP with an empty payload: the smallest packet that is RTP."""
    return link("ether", ip_udp(rtp(seq, ts, ssrc, pt=pt, size=0), sport=sport))[1]


def peak_of(fn: object, *args: object, **kw: object) -> tuple[object, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn(*args, **kw)  # type: ignore[operator]
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sequence_jumps_do_not_grow_memory(tmp_path: Path) -> None:
    """The loss bitmap grew by up to 32 KiB per packet on sequence jumps (a 1.34 MB capture
    took 1.18 GB). Three hostile streams in one capture: +32767 on every packet (forward by
    the old rule, a "very large jump" by RFC 3550 A.1), +2999 on every packet (the largest
    in-order step), and a dynamic payload type whose packets all arrive at the same
    instant (its clock-rate guess waited for a second of packets that never comes). Memory
    stays a few MB; the in-order stream's figures are the known truth."""
    frames = []
    t = 1_700_000_000.0
    for k in range(5000):
        frames.append((t + k * 1e-5, minimal_frame(k * 32767, 0xB0B0B0B0, sport=40002)))
        frames.append((t + k * 1e-5, minimal_frame(k * 2999, 0xA0A0A0A0, sport=40004)))
        frames.append((t + k * 1e-5, minimal_frame(k * 512, 0xD0D0D0D0, sport=40008)))
    for k in range(20000):
        frames.append((t + 0.1, minimal_frame(k, 0xC0C0C0C0, pt=96, ts=k * 3000, sport=40006)))
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "jumps.pcap"
    write_pcap(path, frames, 1)
    assert path.stat().st_size < 2_600_000
    res, peak = peak_of(pcap.analyse, path)
    assert peak < 16 << 20, f"{peak / 1e6:.1f} MB"
    by_ssrc = {r.ssrc: r for r in res}  # type: ignore[attr-defined]
    d = by_ssrc["0xd0d0d0d0"]  # 511 of every 512 lost: still a sequence (docs/pcap.md)
    assert (d.packets, d.expected, d.lost) == (5000, 512 * 4999 + 1, 511 * 4999)
    assert (d.max_burst_loss, d.reorder) == (511, 0)
    c = by_ssrc["0xc0c0c0c0"]
    assert (c.packets, c.lost, c.expected) == (20000, 0, 20000)
    # every packet a jump, or 2,998 of 2,999 lost: not a sequence, not reported as RTP
    assert "0xb0b0b0b0" not in by_ssrc and "0xa0a0a0a0" not in by_ssrc


def test_restart_and_stray_packets_follow_rfc3550_a1(tmp_path: Path) -> None:
    """A sender that restarts its sequence numbers (A.1: two sequential packets after a very
    large jump re-sync) and a stray packet from far away (one packet: set aside): loss is
    what the known packets say, not 25,000 phantom losses."""
    pk = []
    for i in range(100):  # seq 1000..1099, one loss (1050)
        if i != 50:
            pk.append((1_700_000_000 + 0.02 * i, rtp(1000 + i, 160 * i, 0x51515151)))
    pk.append((1_700_000_002.01, rtp(26000, 0, 0x51515151)))  # a stray, far ahead
    for i in range(100, 200):  # the sender restarts at 40000; 40010 lost
        if i != 110:
            pk.append((1_700_000_000 + 0.02 * i + 0.015,
                       rtp(40000 + i - 100, 160 * i, 0x51515151)))  # fmt: skip
    lt, frames = frames_of(pk)
    path = tmp_path / "restart.pcap"
    write_pcap(path, frames, lt)
    (r,) = pcap.analyse(path)
    assert r.packets == 199  # every packet of the stream, as Wireshark counts
    assert (r.expected, r.lost, r.max_burst_loss, r.reorder) == (200, 2, 1, 0)


def test_late_beyond_max_misorder_counts_as_lost(tmp_path: Path) -> None:
    """A packet more than MAX_MISORDER (100) behind the highest is a jump, not a late
    packet (A.1): its number stays lost (2 s late at 50 packets/s is past any playout);
    one 5 behind fills its hole and counts as reordered."""
    pk = [(1_700_000_000 + 0.02 * i, rtp(5000 + i, 160 * i, 0x61616161))
          for i in range(300) if i not in (20, 250)]  # fmt: skip
    pk.insert(150, (pk[149][0] + 0.001, rtp(5020, 160 * 20, 0x61616161)))  # 130 late
    pk.insert(258, (pk[257][0] + 0.001, rtp(5250, 160 * 250, 0x61616161)))  # 5 late
    lt, frames = frames_of(pk)
    write_pcap(tmp_path / "late.pcap", frames, lt)
    (r,) = pcap.analyse(tmp_path / "late.pcap")
    assert (r.packets, r.expected, r.lost, r.reorder) == (300, 300, 1, 1)


def test_stream_cap_bounds_memory_and_says_so(tmp_path: Path) -> None:
    """80k SSRCs took 738 MB (8 KiB of bitmap each). Streams beyond --max-streams are
    counted, not tracked; the table says so, JSON stays clean on stdout (stderr warns), the
    collector adds a ``skipped`` record; memory grows with the streams tracked."""
    frames = []
    for k in range(20000):
        for j in range(3):
            frames.append((1_700_000_000 + 0.02 * j + k * 1e-7, minimal_frame(j, 0x10000 + k)))
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "ssrcs.pcap"
    write_pcap(path, frames, 1)
    res, peak = peak_of(pcap.analyse, path, max_streams=2000)
    assert len(res) == 2000  # type: ignore[arg-type]
    assert res.untracked_packets == 18000 * 3 and res.untracked_streams == 2000  # type: ignore[attr-defined]
    assert "54,000 RTP-like packets in 2,000+ more streams" in res.note  # type: ignore[attr-defined]
    assert peak < 24 << 20, f"{peak / 1e6:.1f} MB"  # 2,000 streams, whatever the 20,000
    small, peak_small = peak_of(pcap.analyse, path, max_streams=200)
    assert len(small) == 200  # type: ignore[arg-type]
    per_stream = (peak - peak_small) / 1800  # grows with the streams tracked, not the file
    assert 0 < per_stream < 8000, per_stream
    t = CliRunner().invoke(pcap_command, ["analyse", str(path), "--max-streams", "50"])
    assert t.exit_code == 0 and t.stdout.rstrip().splitlines()[-1] == (
        "! 59,850 RTP-like packets in 50+ more streams were not analysed: only the first 50 "
        "streams are tracked (raise it with --max-streams)")  # fmt: skip
    j = CliRunner().invoke(pcap_command, ["analyse", str(path), "--max-streams", "50",
                                               "--format", "json"])  # fmt: skip
    assert j.exit_code == 0 and len(json.loads(j.stdout)) == 50
    assert j.stderr.startswith("Warning: 59,850 RTP-like packets")
    import asyncio

    plugin = registry.get("collector", "pcap")
    spec = plugin.make_spec({"path": str(path), "max_streams": 10})
    recs = asyncio.run(plugin.run(registry.Context(), spec))  # type: ignore[arg-type]
    assert len(recs) == 11 and recs[-1].result == "skipped"
    assert recs[-1].fields["untracked_packets"] == 59_970


def test_real_sender_restarts_are_restarts_not_losses() -> None:
    """rtpproxy's sess6 recording (tests/data/SOURCES_pcap.md): a G.729 sender restarts its
    sequence numbers at 0 twice (5-174, 0-299, 0-2075; same SSRC). RFC 3550 A.1 re-syncs on
    each restart, so the three sequences hold exactly the 2,546 packets and lose none;
    before, the restarts were folded into one range 0-2075 (expected 2,076 < 2,546 packets,
    5 "reordered"), and tshark says lost −475."""
    path = DATA / "public" / "rtpproxy-sess6.a.pcap"
    (r,) = pcap.analyse(path)
    assert (r.ssrc, r.packets, r.expected, r.lost, r.reorder) == ("0x49954fd1", 2546, 2546, 0, 0)
    recorded = json.loads((DATA / "public" / "tshark.json").read_text())
    (t,) = recorded["files"]["rtpproxy-sess6.a.pcap"]["heuristic"]
    assert (t["packets"], t["lost"]) == (2546, -475)  # the reference tool's figure, on file
    assert r.jitter_max_ms == t["max_jitter_ms"]  # jitter is still Wireshark's arithmetic


# --------------------------------------------------------------------------- issue 12


PUBLIC = DATA / "public"


def test_gzip_and_zstd_captures_are_read_directly(tmp_path: Path) -> None:
    """A real capture compressed by the gzip and zstd tools gives the same streams; a cut
    compressed file is a one-line error naming the file."""
    src = PUBLIC / "wiki-sip-rtp-ilbc.pcap"
    subprocess.run(["gzip", "-k", "-c", str(src)], stdout=(tmp_path / "a.pcap.gz").open("wb"),
                   check=True)  # fmt: skip
    subprocess.run(["zstd", "-q", "-o", str(tmp_path / "a.pcap.zst"), str(src)], check=True)
    plain = pcap.analyse(src)
    assert plain and pcap.analyse(tmp_path / "a.pcap.gz") == plain
    assert pcap.analyse(tmp_path / "a.pcap.zst") == plain
    data = (tmp_path / "a.pcap.gz").read_bytes()
    (tmp_path / "cut.pcap.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ParseError, match=r"cut\.pcap\.gz: ") as e:
        pcap.analyse(tmp_path / "cut.pcap.gz")
    assert "\n" not in str(e.value)


def test_zstd_without_the_extra_is_one_line(tmp_path: Path) -> None:
    subprocess.run(["zstd", "-q", "-o", str(tmp_path / "a.pcap.zst"),
                    str(PUBLIC / "wiki-sip-rtp-ilbc.pcap")], check=True)  # fmt: skip
    code = ("import sys; sys.modules['zstandard'] = None; from netready.cli import main; "
            f"sys.argv = ['netready', 'pcap', 'analyse', {str(tmp_path / 'a.pcap.zst')!r}]; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "a.pcap.zst" in p.stderr and "nhs-netready[zstd]" in p.stderr, p.stderr


def test_every_frame_twice_keeps_the_stream_and_its_loss(tmp_path: Path) -> None:
    """Real SPAN-style duplicates (ndpi-skinny: every RTP frame twice) and a synthetic
    stream whose every packet was captured twice with 2 lost: both streams reported, loss
    exact, duplicates counted; tshark's lost is ours minus the duplicates."""
    real = {r.ssrc: (r.packets, r.duplicates, r.lost) for r in pcap.analyse(PUBLIC / "ndpi-skinny.pcap")}
    assert real["0xf6bf57dc"] == (36, 18, 0) and real["0x7c1071e2"] == (33, 16, 0), real
    n = 200
    lt, frames = frames_of(audio_stream(n=n, lose=frozenset({50, 51}), dup=tuple(range(n))))
    write_pcap(tmp_path / "d.pcap", frames, lt)
    (r,) = pcap.analyse(tmp_path / "d.pcap")
    assert (r.packets, r.duplicates, r.lost, r.expected) == (2 * (n - 2), n - 2, 2, n)
    (t,) = tshark(tmp_path / "d.pcap").values()
    assert t["packets"] == r.packets and t["lost"] == r.lost - r.duplicates


def test_a_freeze_without_loss_shows_as_a_gap_and_lowers_the_mos(tmp_path: Path) -> None:
    """G.711 at 20 ms; from packet 100 on everything arrives 5.8 s late (a freeze of the
    path, nothing lost): 5.8 s of silence for the listener. Max delta equals tshark's."""
    pk = [(1_700_000_000 + 0.02 * i + (5.8 if i >= 100 else 0.0), rtp(i, 160 * i, 0x5EED))
          for i in range(500)]  # fmt: skip
    lt, frames = frames_of(pk)
    write_pcap(tmp_path / "f.pcap", frames, lt)
    (r,) = pcap.analyse(tmp_path / "f.pcap")
    assert r.lost == 0 and r.gap_max_ms > 5800
    assert r.mos_emodel < 3.0, r
    out = subprocess.run(["tshark", "-n", "-q", "-r", str(tmp_path / "f.pcap"), "-o",
                          "rtp.heuristic_rtp:TRUE", "-z", "rtp,streams"],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    max_delta = float(re.search(r"\(\S+%\)\s+\S+\s+\S+\s+(\S+)", out)[1])  # type: ignore[index]
    assert abs(r.max_delta_ms - max_delta) < 0.0015
    lt, frames = frames_of(audio_stream(n=500))
    write_pcap(tmp_path / "s.pcap", frames, lt)
    assert pcap.analyse(tmp_path / "s.pcap")[0].mos_emodel > 4.2


def test_sdp_clock_rates_from_the_capture(tmp_path: Path) -> None:
    """Real SIP calls: the dynamic PT 99 takes its rate from the capture's a=rtpmap (Opus
    48000, iLBC 8000), and --clock still overrides it."""
    (opus,) = pcap.analyse(PUBLIC / "wiki-sip-rtp-opus.pcap")
    assert (opus.payload_type, opus.clock_hz, opus.clock_source) == (99, 48000, "sdp")
    (ilbc,) = pcap.analyse(PUBLIC / "wiki-sip-rtp-ilbc.pcap")
    assert (ilbc.clock_hz, ilbc.clock_source) == (8000, "sdp")
    speex = {r.clock_hz for r in pcap.analyse(PUBLIC / "wiki-sip-rtp-speex.pcap")}
    assert speex == {8000, 16000, 32000}  # three calls, three SDPs, one PT 99
    (forced,) = pcap.analyse(PUBLIC / "wiki-sip-rtp-ilbc.pcap", clock={99: 16000})
    assert (forced.clock_hz, forced.clock_source) == (16000, "option")


def test_telephone_events_give_no_jitter() -> None:
    """rtpproxy's dtmf capture: RFC 4733 events only, no SDP: recognised as events, no
    jitter, and the repeated end packets are duplicates."""
    res = pcap.analyse(PUBLIC / "rtpproxy-dtmf.pcap")
    assert res and all(r.clock_source == "event" and r.media == "event" for r in res)
    assert all(r.jitter_mean_ms == 0 and r.jitter_max_ms == 0 for r in res)
    assert sum(r.duplicates for r in res) == 52


def _tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "rtp.heuristic_rtp:TRUE", "-o",
           "rtcp.heuristic_rtcp:TRUE", "-Y", "rtcp.ssrc.identifier", "-T", "fields"]  # fmt: skip
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_rtcp_reports_match_tshark_dissection() -> None:
    """The VoLTE call's RTCP: per reported SSRC, the number of report blocks and the worst
    fraction lost and jitter equal what tshark's RTCP dissector reads from the same file."""
    path = PUBLIC / "nokia-00_udp_volte.pcap.gz"
    blocks: dict[int, list[tuple[int, int]]] = {}
    for ids, fracs, jits in _tshark_fields(path, "rtcp.ssrc.identifier", "rtcp.ssrc.fraction",
                                            "rtcp.ssrc.jitter"):  # fmt: skip
        # report blocks come first in a compound packet (RFC 3550 §6.1); SDES chunks' SSRCs
        # (same field) follow them
        for i, f, j in zip(ids.split(","), fracs.split(","), jits.split(","), strict=False):
            blocks.setdefault(int(i, 16), []).append((int(f), int(j)))
    res = pcap.analyse(path)
    assert any(r.rtcp_rtt_ms for r in res)
    for r in res:
        b = blocks[int(r.ssrc, 16)]
        assert r.rtcp_reports == len(b)
        assert r.rtcp_loss_max_pct == round(max(f for f, _ in b) * 100 / 256, 3)
        assert r.rtcp_jitter_max_ms == round(max(j for _, j in b) * 1000 / r.clock_hz, 3)


def _tcp(payload: bytes, seq: int, sport: int = 40252, dport: int = 5000) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + tcp  # fmt: skip


def test_rtp_over_tcp_rfc4571_across_segments(tmp_path: Path) -> None:
    """RFC 4571 frames (2-byte length + RTP) written as one TCP byte stream cut into
    segments that split frames anywhere: every packet is found, and the real capture's
    TCP stream (ndpi-rtp.pcapng, port 5000) too."""
    stream = b"".join(struct.pack("!H", len(p)) + p for _, p in audio_stream(n=100))
    frames, seq, o, t = [], 1000, 0, 1_700_000_000.0
    rnd = random.Random(5)
    while o < len(stream):
        n = rnd.randrange(50, 700)
        frames.append((t, ETH_HDR + b"\x08\x00" + _tcp(stream[o : o + n], seq)))
        seq, o, t = seq + len(stream[o : o + n]), o + n, t + 0.02
    write_pcap(tmp_path / "t.pcap", frames, 1)
    (r,) = pcap.analyse(tmp_path / "t.pcap")
    assert (r.packets, r.lost, r.transport) == (100, 0, "tcp")
    real = [r for r in pcap.analyse(PUBLIC / "ndpi-rtp.pcapng") if r.transport == "tcp"]
    assert [(r.packets, r.payload_type) for r in real] == [(17, 8)]


def test_rtp_inside_turn_send_indications_and_tcp_data_indications() -> None:
    """WebRTC through TURN: SRTP in Send indications over UDP, RTP in Data indications over
    TCP; packets equal tshark's (which decodes the TURN framing)."""
    udp = pcap.analyse(PUBLIC / "ndpi-stun_dtls_rtp_unidir.pcapng")
    assert sorted((r.packets, r.transport) for r in udp) == [(4, "turn"), (4, "turn")]
    tcp = [r for r in pcap.analyse(PUBLIC / "ndpi-stun_dtls_rtp.pcapng")
           if r.transport == "turn-tcp"]  # fmt: skip
    assert sorted(r.packets for r in tcp) == [2, 9]
