"""The v2 write API (InfluxDB 2.x/3.x) through influxdb-client.

No InfluxDB 2 or 3 can run on this machine (Debian ships 1.6, which has no /api/v2/write), so
these tests use a local HTTP server that records requests and check the exact wire contract:
path, query parameters, token header, gzip body and line protocol, plus the error mapping.
"""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from netready.errors import PointRejected, StoreAuthError, StoreUnreachable
from netready.influx import InfluxV2, encode
from netready.inventory import StoreConfig
from netready.records import Record


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, object]] = []
    status = 204
    body = b""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        Recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
        self.send_response(Recorder.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(Recorder.body)))
        self.end_headers()
        self.wfile.write(Recorder.body)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.requests, Recorder.status, Recorder.body = [], 204, b""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def cfg(url: str, gz: bool = True) -> StoreConfig:
    os.environ["NR_V2_TOKEN"] = "tok-123"
    return StoreConfig(
        kind="influxdb_v2",
        url=url,
        token="env:NR_V2_TOKEN",
        org="nhs-org",  # type: ignore[arg-type]
        bucket="netready",
        gzip=gz,
    )


@pytest.mark.parametrize("gz", [True, False])
def test_v2_write_wire_contract(recorder: str, gz: bool) -> None:
    recs = [
        Record(
            "rtt",
            {"site": "Y81001", "target": "a b"},
            {"rtt_p50_ms": 12.5, "sent": 750},
            1_700_000_000_123,
        ),
        Record("rtt", {"site": "Y81002"}, {"loss_pct": 0.0}, 1_700_000_000_456),
    ]
    with InfluxV2(cfg(recorder, gz)) as c:
        c.write(recs)
    assert len(Recorder.requests) == 1
    req = Recorder.requests[0]
    u = urlparse(str(req["path"]))
    assert u.path == "/api/v2/write"
    assert parse_qs(u.query) == {"org": ["nhs-org"], "bucket": ["netready"], "precision": ["ms"]}
    headers = {k.lower(): v for k, v in req["headers"].items()}  # type: ignore[attr-defined]
    assert headers["authorization"] == "Token tok-123"
    assert (headers.get("content-encoding") == "gzip") is gz
    assert req["body"].decode().split("\n") == [encode(r) for r in recs]  # type: ignore[attr-defined]


def test_v2_errors_map_to_netready_errors(recorder: str) -> None:
    Recorder.status, Recorder.body = 401, b'{"code":"unauthorized","message":"unauthorized access"}'
    with InfluxV2(cfg(recorder)) as c, pytest.raises(StoreAuthError):
        c.write([Record("m", {}, {"x": 1.0}, 1)])
    Recorder.status, Recorder.body = (
        400,
        b'{"code":"invalid","message":"partial write: field type conflict"}',
    )
    with InfluxV2(cfg(recorder)) as c, pytest.raises(PointRejected, match="type conflict"):
        c.write([Record("m", {}, {"x": 1.0}, 1)])


def test_v2_unreachable() -> None:
    from influxd import free_port

    c = InfluxV2(cfg(f"http://127.0.0.1:{free_port()}").model_copy(update={"timeout_s": 2.0}))
    with c, pytest.raises(StoreUnreachable):
        c.write([Record("m", {}, {"x": 1.0}, 1)])
