"""Probe "http" against real loopback servers: http.server in a thread, TLS with a
self-signed certificate made here (``cryptography``), a port nobody listens on, a server that
accepts and never answers, a name that does not resolve. The phase timings are checked
against what the server did (it waits 200 ms before answering ``/slow``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from netready.probes import http

from netready import registry
from netready.cli import cli
from netready.records import Record

BODY = b"x" * 5000


class _Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's name
        if self.path.startswith("/slow"):
            time.sleep(0.2)
        code = 404 if self.path.startswith("/missing") else 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


def _serve(srv: ThreadingHTTPServer) -> Iterator[int]:
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def plain() -> Iterator[int]:
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Site))


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = _self_signed(tmp_path)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    for port in _serve(srv):
        yield port, cert


def probe(**kw: object) -> Record:
    (rec,) = asyncio.run(http.run(registry.Context(), http.Spec.model_validate(kw)))
    assert rec.measurement == "http_response"
    return rec


def test_plain_http_phases_status_and_body(plain: int) -> None:
    r = probe(target=f"http://localhost:{plain}/slow?a=1")
    assert r.ok, r
    f = r.fields
    assert f["status"] == 200 and f["bytes"] == len(BODY) and f["http_version"] == "HTTP/1.1"
    assert f["address"] == "127.0.0.1"
    assert f["ttfb_ms"] >= 200  # the server's think time lands in time to first byte
    assert f["total_ms"] >= f["dns_ms"] + f["connect_ms"] + f["ttfb_ms"]
    assert "tls_ms" not in f and r.tags["method"] == "get"
    assert r.tags["target"] == f"http://localhost:{plain}/slow?a=1"
    # at most max_bytes of the body; HEAD reads none
    assert probe(target=f"http://127.0.0.1:{plain}/", max_bytes=1000).fields["bytes"] == 1000
    # a status other than the expected one is a failure that keeps its timings
    r = probe(target=f"http://127.0.0.1:{plain}/missing", expect_status=200)
    assert r.result == "error" and "HTTP 404, expected 200" in str(r.fields["reason"])
    assert r.fields["status"] == 404 and "ttfb_ms" in r.fields
    assert probe(target=f"http://127.0.0.1:{plain}/missing").ok  # any status, unless expected


def test_tls_self_signed_certificate(tls: tuple[int, Path]) -> None:
    port, cert = tls
    url = f"https://localhost:{port}/"
    r = probe(target=url, ca_file=str(cert))
    assert r.ok, r
    assert r.fields["tls_ms"] > 0 and r.fields["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert r.fields["status"] == 200
    # the system's CAs do not know it: a failed record, with the phases before it
    r = probe(target=url)
    assert r.result == "error" and "certificate not trusted" in str(r.fields["reason"])
    assert "connect_ms" in r.fields and "tls_ms" not in r.fields
    assert probe(target=url, verify_tls=False).ok


def test_refused_unreachable_and_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = probe(target=f"http://127.0.0.1:{closed}/")
    assert r.result == "refused" and "dns_ms" in r.fields
    r = probe(target="https://no-such-host.invalid/")
    assert r.result == "unreachable" and "cannot resolve" in str(r.fields["reason"])
    with socket.socket() as mute:  # accepts (the kernel completes the handshake), never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        t0 = time.monotonic()
        r = probe(target=f"http://127.0.0.1:{mute.getsockname()[1]}/", timeout_s=0.5)
        assert time.monotonic() - t0 < 3
    assert r.result == "timeout" and "connect_ms" in r.fields and "ttfb_ms" not in r.fields
    assert "done: dns_ms, connect_ms" in str(r.fields["reason"])


def test_connect_takes_the_first_address_that_accepts(plain: int) -> None:
    """A name with several addresses: a refused one is passed over, as a browser would."""
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        closed = s.getsockname()
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", closed),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", plain)),
    ]

    async def go() -> str:
        sock, address = await http._connect(infos, "t")
        sock.close()
        return address

    assert asyncio.run(go()) == "127.0.0.1"
    with pytest.raises(http._Failed) as e:
        asyncio.run(http._connect(infos[:1], "t"))
    assert e.value.result == "refused"


def test_cli_json_and_bad_input(plain: int) -> None:
    res = CliRunner().invoke(
        cli, ["probe", "http", "--target", f"http://127.0.0.1:{plain}/", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    (d,) = json.loads(res.stdout)
    assert d["tags"]["result"] == "ok" and d["fields"]["status"] == 200
    res = CliRunner().invoke(
        cli, ["probe", "http", "--target", f"http://127.0.0.1:{plain}/missing", "--expect-status", "200"]
    )
    assert res.exit_code == 1 and res.stderr.strip().splitlines() == [
        f"Error: http://127.0.0.1:{plain}/missing: HTTP 404, expected 200"
    ]
    res = CliRunner().invoke(cli, ["probe", "http", "--target", "ftp://example.org/"])
    assert res.exit_code == 2 and "not an http(s)" in res.stderr and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["probe", "http", "--target", "https://u:p@example.org/"])
    assert res.exit_code == 2 and "credentials" in res.stderr
