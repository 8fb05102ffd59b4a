"""Probe "http": how long a video platform's web front door takes to answer, step by step.

For one URL (a target in the inventory: the video platforms a practice really uses), one
request, timed in its phases on the probe's monotonic clock:

1. DNS: ``getaddrinfo`` of the host (the site's resolver, as a browser would use it);
2. TCP connect to the first address that accepts (the others are tried in order, as
   ``socket.create_connection`` does);
3. TLS handshake (https only; certificate and host name verified unless ``verify_tls`` is
   off; ``ca_file`` trusts a private CA instead of the system's);
4. time to first byte: from the request having been written to the first byte of the answer
   (one round trip plus the server's think time);
5. the answer: its status line, headers and at most ``max_bytes`` of body (the rest is not
   downloaded). Redirects are not followed: the first answer is what is measured.

HTTP/1.1 is spoken with ``h11`` (sans-IO: bytes in, events out) over asyncio streams of our
own socket, so that each phase has its own clock reading; an HTTP client library times the
connection as one step (DNS, TCP and TLS together).

A failure is a record (``records.failure``) carrying the phases that completed: ``unreachable``
(name does not resolve, no route), ``refused``, ``timeout`` (the whole request over
``timeout_s``), ``error`` (TLS failure, not an HTTP/1.1 answer, or a status other than
``expect_status`` when that is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import h11
from pydantic import BaseModel, ConfigDict, Field, field_validator

from netready import __version__, budget
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

MEASUREMENT = "http_response"
READ = 65536


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(description="URL to request, http(s)://HOST[:PORT][/path][?query]")
    method: Literal["GET", "HEAD"] = Field("GET", description="HTTP method")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="seconds for the whole request, DNS to the last byte read",
        json_schema_extra={"cli": "--timeout"},
    )
    verify_tls: bool = Field(
        True,
        description="verify the server's TLS certificate and host name (--insecure: do not)",
        json_schema_extra={"cli": "--verify-tls/--insecure"},
    )
    ca_file: str | None = Field(
        None, description="PEM file of the CA(s) to trust instead of the system's"
    )
    expect_status: int | None = Field(
        None, ge=100, le=599, description="the status the answer must have (else any status)"
    )
    max_bytes: int = Field(
        1_000_000, ge=0, le=100_000_000, description="most bytes of the body read"
    )

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{v!r} is not an http(s)://HOST[:PORT][/path] URL")
        u.port  # noqa: B018 - raises ValueError on a bad port
        if u.username or u.password:
            raise ValueError("the URL carries credentials (user:password@)")
        return v


class _Failed(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result, self.reason = result, reason


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


async def _connect(infos: list[Any], where: str) -> tuple[socket.socket, str]:
    """A connected non-blocking socket to the first address that accepts."""
    loop = asyncio.get_running_loop()
    err: OSError | None = None
    for fam, typ, proto, _, addr in infos:
        sock = socket.socket(fam, typ, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
            return sock, str(addr[0])
        except OSError as e:
            sock.close()
            err = e
    if isinstance(err, ConnectionRefusedError):
        raise _Failed("refused", f"{where}: connection refused")
    reason = err.strerror if err is not None and err.strerror else str(err)
    raise _Failed("unreachable", f"{where}: cannot connect: {reason}")


def _tls_context(spec: Spec) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=spec.ca_file)
    if not spec.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _exchange(
    spec: Spec, fields: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send the request, read the answer into ``fields`` (status, ttfb, bytes)."""
    u = urlsplit(spec.target)
    default = 443 if u.scheme == "https" else 80
    host = u.hostname or ""
    host_header = f"[{host}]" if ":" in host else host
    if u.port and u.port != default:
        host_header += f":{u.port}"
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method=spec.method,
        target=path,
        headers=[
            ("Host", host_header),
            ("User-Agent", f"netready/{__version__} (network readiness probe)"),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    writer.write(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
    await writer.drain()
    t_sent = time.perf_counter()
    first = True
    body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ)
            if first and data:
                fields["ttfb_ms"] = _ms(t_sent)
                first = False
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            fields["status"] = event.status_code
            fields["http_version"] = f"HTTP/{event.http_version.decode()}"
        elif isinstance(event, h11.Data):
            take = min(len(event.data), spec.max_bytes - body)
            body += take
            if body >= spec.max_bytes:
                break
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    fields["bytes"] = body


async def measure(spec: Spec, fields: dict[str, Any]) -> None:
    """One request; the phases that complete land in ``fields``. ``_Failed`` on a failure."""
    u = urlsplit(spec.target)
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    where = spec.target
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise _Failed("unreachable", f"{where}: cannot resolve {host}: {e.strerror}") from None
    fields["dns_ms"] = _ms(t0)
    t1 = time.perf_counter()
    sock, address = await _connect(infos, where)
    fields["connect_ms"] = _ms(t1)
    fields["address"] = address
    writer: asyncio.StreamWriter | None = None
    try:
        if u.scheme == "https":
            t2 = time.perf_counter()
            try:
                reader, writer = await asyncio.open_connection(
                    sock=sock, ssl=_tls_context(spec), server_hostname=host
                )
            except ssl.SSLCertVerificationError as e:
                raise _Failed(
                    "error", f"{where}: TLS certificate not trusted: {e.verify_message}"
                ) from None
            except (ssl.SSLError, ConnectionError) as e:
                raise _Failed("error", f"{where}: TLS handshake failed: {e}") from None
            fields["tls_ms"] = _ms(t2)
            tls = writer.get_extra_info("ssl_object")
            if tls is not None:
                fields["tls_version"] = tls.version()
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
        try:
            await _exchange(spec, fields, reader, writer)
        except h11.RemoteProtocolError as e:
            raise _Failed("error", f"{where}: not an HTTP/1.1 answer ({e})") from None
        except ConnectionError as e:
            raise _Failed("error", f"{where}: connection lost: {e}") from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        else:
            sock.close()
    fields["total_ms"] = _ms(t0)


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """DNS, TCP connect, TLS handshake and time to first byte of one request to a URL."""
    tags = {**ctx.tags, "target": spec.target, "method": spec.method.lower()}
    fields: dict[str, Any] = {}
    t = now_ms()
    try:
        await asyncio.wait_for(measure(spec, fields), spec.timeout_s)
    except _Failed as e:
        return [failure(MEASUREMENT, tags, e.result, e.reason, t, **fields)]
    except TimeoutError:
        done = ", ".join(k for k in ("dns_ms", "connect_ms", "tls_ms", "ttfb_ms") if k in fields)
        reason = f"{spec.target}: no complete answer in {spec.timeout_s:g} s"
        return [
            failure(
                MEASUREMENT,
                tags,
                "timeout",
                reason + (f" (done: {done})" if done else ""),
                t,
                **fields,
            )
        ]
    status = fields.get("status")
    if spec.expect_status is not None and status != spec.expect_status:
        reason = f"{spec.target}: HTTP {status}, expected {spec.expect_status}"
        return [failure(MEASUREMENT, tags, "error", reason, t, **fields)]
    return [Record(MEASUREMENT, {**tags, "result": "ok"}, fields, t)]


PLUGIN = Plugin(
    kind="probe",
    name="http",
    spec=Spec,
    run=run,
    measurement=MEASUREMENT,
    method="get",
    summary="One HTTP(S) request to a URL (a video platform's front door): DNS, TCP connect, "
    "TLS handshake and time to first byte, each timed on its own; the status.",
    interval_s=300.0,
    traffic=budget.tcp_bytes_traffic,
    fields=(
        Metric("dns_ms", "ms", "name resolution (getaddrinfo) of the URL's host"),
        Metric("connect_ms", "ms", "TCP connect to the address that accepted"),
        Metric("address", "text", "the IP address connected to"),
        Metric("tls_ms", "ms", "https: TLS handshake, certificate verification included"),
        Metric("tls_version", "text", "https: the negotiated TLS version, e.g. TLSv1.3"),
        Metric("ttfb_ms", "ms", "time to first byte: request written -> first byte of the "
               "answer (one round trip plus the server's think time)"),
        Metric("status", "code", "HTTP status of the answer (redirects are not followed)"),
        Metric("http_version", "text", "HTTP version of the answer, e.g. HTTP/1.1"),
        Metric("bytes", "bytes", "body bytes read (at most max_bytes)"),
        Metric("total_ms", "ms", "from the DNS query to the last byte read"),
    ),
)  # fmt: skip
