"""The rtt probe's socket edge: send TWAMP-light test packets on a monotonic schedule from a
connected UDP socket of our own, collect the replies, then ``run`` turns the trace into
records (``analysis``)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from netready.probes.rtt import twamp
from netready.probes.rtt.analysis import Reply, Trace, summarise, windows
from netready.probes.rtt.spec import Spec

from netready import platform
from netready.inventory import split_hostport
from netready.plugin import Context
from netready.records import Record, failure

log = logging.getLogger("netready.probes.rtt")


class _Receiver:
    """Reads the replies off our socket with their receive time: the kernel's timestamp
    (``SO_TIMESTAMPNS``) where the platform has it, so the time this process waited for the
    CPU is not counted as path delay or jitter; else the time we read them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.replies: list[Reply] = []
        self.error: OSError | None = None
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        platform.enable_rx_timestamps(sock)

    def on_readable(self) -> None:
        for _ in range(256):
            try:
                data, anc, _flags, _addr = platform.recv_ancillary(self.sock, 2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # an ICMP error (port unreachable) surfaced on the socket
                self.error = e
                return
            rx_ns = platform.monotonic_rx_ns(anc, self.offset_ns)
            try:
                pkt = twamp.unpack_reflected(data)
            except ValueError:
                continue
            wall = twamp.to_ntp(rx_ns + self.offset_ns)
            self.replies.append(Reply(pkt.sender_seq, rx_ns / 1e9, wall, pkt))


async def measure(spec: Spec) -> Trace | tuple[str, str]:
    """Run one measurement: the raw trace, or (failure result, reason) if it could not start."""
    host, port = split_hostport(spec.target, 862)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        return "unreachable", f"cannot resolve {host}: {e.strerror}"
    fam, _, _, _, addr = infos[0]
    # Our own connected socket: asyncio's remote_addr takes only (host, port), but an IPv6
    # address from getaddrinfo is (host, port, flowinfo, scope_id).
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(addr)
    except OSError as e:
        sock.close()
        return "unreachable", f"cannot reach {spec.target}: {e.strerror or e}"
    proto = _Receiver(sock)
    loop.add_reader(sock.fileno(), proto.on_readable)
    try:
        if spec.dscp and not platform.mark_dscp(sock, fam, spec.dscp):
            log.info("rtt: DSCP %d not set (%s): packets leave unmarked", spec.dscp,
                     platform.NOT_MEASURABLE)  # fmt: skip
        n = max(1, round(spec.duration_s * spec.rate_pps))
        interval = 1.0 / spec.rate_pps
        send_mono: list[float] = []
        t0 = time.monotonic()
        for seq in range(n):
            deadline = t0 + seq * interval
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            send_mono.append(time.monotonic())
            try:  # sends at once; waits only if the socket buffer is full
                await loop.sock_sendall(sock, twamp.pack_sender(seq, twamp.ntp_now(), spec.size))
            except OSError as e:  # e.g. the port-unreachable of an earlier packet
                proto.error = e
        sent_for = time.monotonic() - t0
        # Wait for stragglers: stop early once everything is back.
        end = time.monotonic() + spec.timeout_s
        while time.monotonic() < end and len({r.seq for r in proto.replies}) < n:
            await asyncio.sleep(0.02)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return Trace(send_mono, proto.replies, sent_for, proto.error)


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Isochronous UDP round trips to a TWAMP-light reflector: RTT, jitter, loss, reorder.

    One record per ``window_s`` (15 s) of sending; a failure (nothing came back) is one record.
    """
    tags = {**ctx.tags, "target": spec.target, "method": "twamp_light"}
    t_start = int(time.time() * 1000)
    trace = await measure(spec)
    if isinstance(trace, tuple):
        return [failure("rtt", tags, trace[0], trace[1], t_start)]
    if not trace.replies:
        whole = summarise(trace.send_mono, [], trace.sent_for)
        if trace.error is not None and getattr(trace.error, "errno", None) == 111:
            return [
                failure(
                    "rtt",
                    tags,
                    "refused",
                    f"{spec.target}: port unreachable (no reflector listening)",
                    t_start,
                    **whole,
                )
            ]
        return [
            failure(
                "rtt",
                tags,
                "timeout",
                f"no reply from {spec.target} to {len(trace.send_mono)} packets in "
                f"{trace.sent_for + spec.timeout_s:.1f} s",
                t_start,
                **whole,
            )
        ]
    return [
        Record("rtt", tags, fields, t_start + int(offset * 1000))
        for offset, fields in windows(trace, spec.window_s)
    ]
