"""The throughput probe's wire protocol with the speed endpoint (``netready serve``,
``servers/speed.py``). Sans-IO and standard library only: the probe imports it on a base
install (no aiohttp) and the endpoint imports it, so both sides speak from one definition.

HTTP/1.1, keep-alive and pipelining allowed; every request carries
``Authorization: Bearer <token>``:

``GET /download?bytes=N&test=ID``
    200 with exactly N bytes of incompressible data (``Content-Length: N``).
``POST /upload?test=ID``
    the body (``Content-Length``) is read and discarded; 200 ``{"bytes": n}``.
``GET /ping?test=ID``
    200 JSON ``PingReply``: the endpoint's clock and the counters of test ``ID``.
``GET /config``
    200 JSON in the form of draft-ietf-ippm-responsiveness's configuration (``config_body``):
    the draft's three URLs mapped onto these paths (/small is /ping, /large is /download,
    /slurp is /upload).

``test`` (``TEST_ID_RE``) groups the parallel connections of one test. Refusals are 401
(token), 404, 405, 400 and 429 with ``Retry-After`` (seconds).

``tcp_info``/``delivered_bytes`` define the byte counts both sides report from TCP_INFO (the
endpoint's ``tx_delivered`` for a download, the probe's own for an upload), so the two
directions are measured the same way; ``set_congestion_control`` the algorithm both sides
may give their data connections. These are the only system calls here: they read or set
options of a socket the caller already has (``congestion_control_problem`` tries one on a
socket it opens and closes); they send and receive nothing.
"""

from __future__ import annotations

import re
import socket
import struct
from typing import TypedDict

from netready import platform

PATH_DOWNLOAD = "/download"
PATH_UPLOAD = "/upload"
PATH_PING = "/ping"
PATH_CONFIG = "/config"
#: the size of the draft's "large" download in the /config answer (the probe itself asks
#: for sizes reserved from its byte cap)
CONFIG_LARGE_BYTES = 8_000_000_000
#: query parameters: the size of a download, the test a connection belongs to
Q_BYTES = "bytes"
Q_TEST = "test"
#: a client-chosen test id
TEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the end of a request or response head
HEAD_END = b"\r\n\r\n"
#: a response head longer than this is not the endpoint's
MAX_HEAD = 16384


def download_path(nbytes: int, test_id: str) -> str:
    return f"{PATH_DOWNLOAD}?{Q_BYTES}={nbytes}&{Q_TEST}={test_id}"


def upload_path(test_id: str) -> str:
    return f"{PATH_UPLOAD}?{Q_TEST}={test_id}"


def ping_path(test_id: str) -> str:
    return f"{PATH_PING}?{Q_TEST}={test_id}"


def config_body(base_url: str) -> dict[str, object]:
    """The ``/config`` answer for an endpoint at ``base_url`` (scheme, host, port, prefix):
    the draft's ``urls`` object (section 4.4 of draft -09) with its three URLs on our paths."""
    b = base_url.rstrip("/")
    return {
        "version": 1,
        "urls": {
            "small_https_download_url": b + PATH_PING,
            "large_https_download_url": f"{b}{PATH_DOWNLOAD}?{Q_BYTES}={CONFIG_LARGE_BYTES}",
            "https_upload_url": b + PATH_UPLOAD,
        },
    }


def request_head(
    method: str, target: str, host: str, token: str, length: int | None = None
) -> bytes:
    """One request head: ``target`` is the path (with the endpoint's prefix and query),
    ``host`` the ``Host`` header; ``length`` the upload body's ``Content-Length``."""
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {token}",
        "User-Agent: netready",
    ]
    if length is not None:
        lines += [f"Content-Length: {length}", "Content-Type: application/octet-stream"]
    return ("\r\n".join(lines)).encode() + HEAD_END


def bearer(authorization: str) -> bytes | None:
    """The credentials of an ``Authorization: Bearer ...`` value as the bytes the client
    sent (the header decoded as UTF-8 with surrogateescape, as aiohttp does), or None."""
    scheme, _, cred = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        return cred.strip().encode("utf-8", "surrogateescape")
    except UnicodeError:
        return None


def parse_head(head: bytes) -> tuple[int, dict[str, str]] | None:
    """(status, headers with lower-case names) of a response head without its ``HEAD_END``,
    or None when it is not an HTTP/1.x response."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


class PingReply(TypedDict):
    """The ``/ping`` answer: ``t`` the endpoint's monotonic clock (s); ``throttled``: the
    client's rate limit made the endpoint wait in the last second; the counters of the test
    (zeros when unknown): ``rx_bytes`` upload bytes received and ``rx_t`` the time of the
    last one; ``tx_bytes`` download bytes written, ``tx_delivered`` of them acknowledged
    (``delivered_bytes``) and ``tx_t`` the time of the last ACK; ``retransmits`` the sum of
    ``tcpi_total_retrans`` over the test's connections; ``conn_retransmits`` the endpoint's
    ``tcpi_total_retrans`` on the connection this reply goes out on, before it is written (a
    rise from one reply to the next on a keep-alive connection: the earlier reply was sent
    again)."""

    t: float
    throttled: bool
    rx_bytes: int
    rx_t: float
    tx_bytes: int
    retransmits: int
    tx_delivered: int
    tx_t: float
    conn_retransmits: int


def ping_reply(
    t: float,
    throttled: bool,
    *,
    rx_bytes: int = 0,
    rx_t: float = 0.0,
    tx_bytes: int = 0,
    retransmits: int = 0,
    tx_delivered: int = 0,
    tx_t: float = 0.0,
    conn_retransmits: int = 0,
) -> PingReply:
    return PingReply(
        t=t,
        throttled=throttled,
        rx_bytes=rx_bytes,
        rx_t=rx_t,
        tx_bytes=tx_bytes,
        retransmits=retransmits,
        tx_delivered=tx_delivered,
        tx_t=tx_t,
        conn_retransmits=conn_retransmits,
    )


# --------------------------------------------------------------------------- TCP_INFO

#: Offsets in Linux ``struct tcp_info`` (include/uapi/linux/tcp.h); all stable since 4.x.
TCPI_LEN = 232
TCPI = {
    "snd_mss": (16, "I"),
    "rcv_mss": (20, "I"),
    "sacked": (28, "I"),
    "last_data_recv_ms": (52, "I"),
    "last_ack_recv_ms": (56, "I"),
    "rtt_us": (68, "I"),
    "total_retrans": (100, "I"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "data_segs_in": (152, "I"),
    "delivered": (192, "I"),
}


def parse_tcp_info(raw: bytes) -> dict[str, int]:
    """The ``TCPI`` fields present in a ``TCP_INFO`` buffer (an older kernel's is shorter)."""
    out = {}
    for name, (off, fmt) in TCPI.items():
        size = struct.calcsize(fmt)
        if len(raw) >= off + size:
            out[name] = struct.unpack_from("=" + fmt, raw, off)[0]
    return out


def tcp_info(sock: socket.socket | None) -> dict[str, int] | None:
    """A few TCP_INFO fields of a connected TCP socket, or ``None`` where the OS has none
    (``netready.platform``: the ``tcp_info`` capability) or the socket is closed."""
    if sock is None or not platform.caps().tcp_info:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCPI_LEN)
    except OSError:
        return None
    return parse_tcp_info(raw)


#: Linux ``TCP_CONGESTION`` (include/uapi/linux/tcp.h), where the socket module lacks it
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)


def set_congestion_control(sock: socket.socket, name: str) -> None:
    """Make ``sock`` use TCP congestion control ``name`` (Linux ``TCP_CONGESTION``); OSError
    when the kernel has no such algorithm or does not let this user pick it."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, name.encode())


def congestion_control_problem(name: str) -> str | None:
    """None when TCP congestion control ``name`` can be set on a socket here, else why not
    (one line). Both sides of the test take it for their data connections: the sender's
    algorithm decides how full a bottleneck's buffer gets (a loss-based one such as cubic,
    the default of Windows, macOS and most Linux, fills it; BBR keeps it short)."""
    if not platform.caps().tcp_info:  # TCP_CONGESTION is Linux's, as TCP_INFO here
        return "choosing the TCP congestion control needs Linux"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            set_congestion_control(s, name)
        except OSError as e:
            return (
                f"TCP congestion control {name!r} cannot be used here ({e.strerror}; see "
                "net.ipv4.tcp_available_congestion_control and, for non-root users, "
                "tcp_allowed_congestion_control)"
            )
    return None


def delivered_bytes(info: dict[str, int]) -> int:
    """Bytes a TCP sender knows reached the receiver: cumulatively acknowledged bytes (exact)
    plus segments SACKed beyond a hole (``tcpi_sacked`` x MSS, estimated). Unlike in-order
    counts this does not stall during loss recovery; unlike ``tcpi_delivered`` x MSS it is
    not inflated by short segments."""
    return info["bytes_acked"] + info.get("sacked", 0) * info["snd_mss"]
