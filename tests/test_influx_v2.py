"""The v2 write API (InfluxDB 2.x/3.x) through influxdb-client.

No InfluxDB 2 or 3 can run on this machine (Debian ships 1.6, which has no /api/v2/write), so
these tests use a local HTTP server that records requests and check the exact wire contract:
path, query parameters, token header, gzip body and line protocol, plus the error mapping:
only 204 is stored; 400/413/422 split the batch; 429/5xx are retried by the shipper.
"""

from __future__ import annotations

import gzip
import http.server
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from netready.errors import PointRejected, StoreAuthError, StoreRetryable, StoreUnreachable
from netready.influx import InfluxV2, encode
from netready.inventory import StoreConfig
from netready.records import Record
from netready.shipper import Shipper
from netready.spool import Spool


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


def test_v2_only_204_is_stored_and_the_client_does_not_retry(recorder: str) -> None:
    """A 2xx that is not 204 (a proxy's 200 page) is a retryable error naming what answered;
    a 503 is one request per write: influxdb-client retries nothing, the shipper owns backoff."""
    Recorder.status, Recorder.body = 200, b"<html>captive portal</html>"
    with InfluxV2(cfg(recorder)) as c, pytest.raises(StoreRetryable, match=r"HTTP 200.*not 204"):
        c.write([Record("m", {}, {"x": 1.0}, 1)])
    Recorder.requests, Recorder.status, Recorder.body = [], 503, b'{"message":"busy"}'
    with InfluxV2(cfg(recorder)) as c, pytest.raises(StoreRetryable, match="503"):
        c.write([Record("m", {}, {"x": 1.0}, 1)])
    assert len(Recorder.requests) == 1


class Partial2x(http.server.BaseHTTPRequestHandler):
    """Stands in for InfluxDB 2.x's ``/api/v2/write`` partial-write behaviour (no 2.x can run
    here). Wire contract, as 2.x OSS documents it: the field ``seq`` already exists as an
    integer; a batch whose lines all carry ``seq=<n>i`` is stored and answered ``204``; in a
    batch with a ``seq`` string the other lines are still stored and the answer is ``422`` with
    2.x's JSON body ``{"code":"unprocessable entity","message":"failure writing points to
    database: partial write: field type conflict: ... dropped=N"}``."""

    stored: set[str] = set()
    posts = 0

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        Partial2x.posts += 1
        lines = [ln for ln in raw.decode().split("\n") if ln]
        bad = [ln for ln in lines if 'seq="' in ln]
        Partial2x.stored.update(ln for ln in lines if ln not in bad)
        if not bad:
            self.send_response(204)
            self.end_headers()
            return
        body = json.dumps(
            {
                "code": "unprocessable entity",
                "message": "failure writing points to database: partial write: field type "
                'conflict: input field "seq" on measurement "m" is type string, already '
                f"exists as type integer dropped={len(bad)}",
            }
        ).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


def test_v2_partial_write_422_dead_letters_only_the_bad_point(tmp_path: Path) -> None:
    """1 bad point in 1,000: the batch is split, 999 land, the one bad point is dead-lettered
    with 2.x's reason, in about 2*log2(1000) requests (today: 119 attempts, 0 shipped)."""
    Partial2x.stored, Partial2x.posts = set(), 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Partial2x)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        batch = [
            Record("m", {"site": "Y81001"}, {"seq": i}, 1_700_000_000_000 + i) for i in range(1000)
        ]
        batch[617] = Record("m", {"site": "Y81001"}, {"seq": "poison"}, batch[617].time_ms)
        with (
            Spool(tmp_path / "s.db") as sp,
            InfluxV2(cfg(f"http://127.0.0.1:{srv.server_port}")) as c,
        ):
            sp.enqueue(batch)
            res = Shipper(sp, c, batch_size=1000).drain(deadline=time.monotonic() + 60)
            st = sp.stats()
            dead = sp.dead_letters()
    finally:
        srv.shutdown()
    assert res.error is None and (res.shipped, res.dead_lettered) == (999, 1)
    assert (st.pending, st.shipped, st.dead_lettered) == (0, 999, 1)
    assert res.attempts <= 2 * math.ceil(math.log2(1000)) + 1 == Partial2x.posts
    assert len(dead) == 1 and 'seq="poison"' in dead[0][0]
    assert "HTTP 422" in dead[0][1] and "field type conflict" in dead[0][1]
    assert Partial2x.stored == {encode(r) for i, r in enumerate(batch) if i != 617}
