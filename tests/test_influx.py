"""Line protocol and the v1 HTTP client against a real InfluxDB 1.6 (Debian influxd)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxd import Influxd, free_port

from netready.errors import (
    PointRejected,
    StoreAuthError,
    StoreNotFound,
    StoreRetryable,
    StoreUnreachable,
)
from netready.influx import InfluxV1, LineProtocolError, encode, quote_ident
from netready.inventory import StoreConfig
from netready.records import Record
from netready.shipper import Backoff, Shipper
from netready.spool import Spool

HOSTILE_TAGS = [
    "plain",
    "with space",
    "com,ma",
    "equals=sign",
    'dq"uote',
    "sq'uote",
    "back\\slash",
    "back\\,comma",
    "ends with space ",
    "tab\there",
    "Ysgol Feddygol Cymru — Llanfair Pwllgwyngyll 🚑",
    "=leading",
    "a\\\\b",
]
HOSTILE_STRINGS = [*HOSTILE_TAGS, "trailing backslash\\", '\\"', "", "{json: [1, 2]}"]


def client(url: str, db: str, **kw: object) -> InfluxV1:
    return InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("gzip", [True, False])
def test_hostile_values_round_trip_byte_for_byte(influxdb: tuple[str, str], gzip: bool) -> None:
    url, db = influxdb
    meas = "weird meas,ure"
    recs = [
        Record(
            meas,
            {"site": t, "target": f"k{i}"},
            {"s": HOSTILE_STRINGS[i], "i": i, "f": 1.0},
            1_700_000_000_000 + i,
        )
        for i, t in enumerate(HOSTILE_TAGS)
    ] + [
        Record(
            meas,
            {"site": "x", "target": f"s{i}"},
            {"s": s, "i": 100 + i, "f": 2.5},
            1_700_000_100_000 + i,
        )
        for i, s in enumerate(HOSTILE_STRINGS)
    ]
    with client(url, db, gzip=gzip) as c:
        c.write(recs)
        rows = c.query(f"SELECT * FROM {quote_ident(meas)}")[0].dicts()
        fields = c.query(f"SHOW FIELD KEYS FROM {quote_ident(meas)}")[0].dicts()
    got = {(r["time"], r["site"], r["s"], r["i"], r["f"]) for r in rows}
    want = {(r.time_ms, r.tags["site"], r.fields["s"], r.fields["i"], r.fields["f"]) for r in recs}
    assert got == want
    types = {f["fieldKey"]: f["fieldType"] for f in fields}
    assert types == {"s": "string", "i": "integer", "f": "float"}  # 1.0 stayed a float


def test_encoding_rules() -> None:
    r = Record("m", {"t": "a b,c=d"}, {"x": 1.0, "n": 2, "b": True, "s": 'q"\\'}, 5)
    assert encode(r) == 'm,t=a\\ b\\,c\\=d x=1.0,n=2i,b=true,s="q\\"\\\\" 5'
    with pytest.raises(LineProtocolError, match="newline"):
        encode(Record("m", {"t": "a\nb"}, {"x": 1.0}, 1))
    with pytest.raises(LineProtocolError, match="newline"):
        encode(Record("m", {}, {"s": "line1\nline2"}, 1))
    with pytest.raises(LineProtocolError, match="ends with a backslash"):
        encode(Record("m", {"t": "oops\\"}, {"x": 1.0}, 1))
    # None and NaN mean "no data": dropped, never written as 0
    assert encode(Record("m", {}, {"x": float("nan"), "y": None, "z": 0.5}, 1)) == "m z=0.5 1"  # type: ignore[dict-item]


def test_unreachable_server_one_line() -> None:
    port = free_port()
    with (
        client(f"http://127.0.0.1:{port}", "db", timeout_s=2) as c,
        pytest.raises(StoreUnreachable) as ei,
    ):
        c.write([Record("m", {}, {"x": 1.0}, 1)])
    msg = str(ei.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "unreachable" in msg


def test_missing_database(influxd: Influxd) -> None:
    with client(influxd.url, "no_such_db") as c:
        with pytest.raises(StoreNotFound, match="no_such_db"):
            c.write([Record("m", {}, {"x": 1.0}, 1)])
        with pytest.raises(StoreNotFound):
            c.query("SELECT * FROM m")


def test_rejected_point(influxdb: tuple[str, str]) -> None:
    url, db = influxdb
    with client(url, db) as c:
        c.write([Record("m", {}, {"x": 1.0}, 1)])
        with pytest.raises(PointRejected, match="field type conflict"):
            c.write([Record("m", {}, {"x": "now a string"}, 2)])


def test_auth_errors_and_basic_auth() -> None:
    srv = Influxd(auth=True).start()
    try:
        import httpx

        httpx.post(
            srv.url + "/query",
            data={"q": "CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES"},
        ).raise_for_status()
        httpx.post(srv.url + "/query", data={"q": 'CREATE DATABASE "d"'}, auth=("admin", "pw"))
        import os

        os.environ["NR_TEST_USER"], os.environ["NR_TEST_PW"] = "admin", "wrong"
        with (
            client(srv.url, "d", username="env:NR_TEST_USER", password="env:NR_TEST_PW") as c,
            pytest.raises(StoreAuthError, match="HTTP 401"),
        ):
            c.write([Record("m", {}, {"x": 1.0}, 1)])
        os.environ["NR_TEST_PW"] = "pw"
        with client(srv.url, "d", username="env:NR_TEST_USER", password="env:NR_TEST_PW") as c:
            c.write([Record("m", {}, {"x": 1.0}, 1)])
            assert c.query("SELECT count(x) FROM m")[0].values[0][1] == 1
    finally:
        srv.close()


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Stands in for a reverse proxy or captive portal between a site and InfluxDB (no real
    InfluxDB answers a write like this). Wire contract: every POST is answered
    ``200 OK``, ``Server: nginx/1.24.0``, ``Content-Type: text/html``, a login page body."""

    posts = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Proxy.posts += 1
        body = b"<html><body><h1>Sign in to the guest Wi-Fi</h1></body></html>"
        self.send_response(200)
        self.send_header("Server", "nginx/1.24.0")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def version_string(self) -> str:
        return "nginx/1.24.0"

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.posts = 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def test_a_proxy_200_is_not_an_acknowledgement(proxy: str, tmp_path: Path) -> None:
    """Only 204 means stored: a 200 HTML page is a retryable error that says what answered,
    and nothing leaves the spool."""
    with client(proxy, "d") as c, pytest.raises(StoreRetryable) as ei:
        c.write([Record("m", {}, {"x": 1.0}, 1)])
    msg = str(ei.value)
    assert "HTTP 200" in msg and "text/html" in msg and "nginx/1.24.0" in msg and "204" in msg
    with Spool(tmp_path / "s.db") as sp, client(proxy, "d") as c:
        sp.enqueue(
            [Record("m", {"site": "Y81001"}, {"seq": i}, 1_700_000_000_000 + i) for i in range(20)]
        )
        res = Shipper(sp, c, backoff=Backoff(base_s=0.01, cap_s=0.05)).drain(
            deadline=time.monotonic() + 1
        )
        st = sp.stats()
    assert res.shipped == 0 and st.pending == 20 and st.shipped == 0
    assert _Proxy.posts >= 2  # retried with backoff, not given up on
    assert st.last_error and "HTTP 200" in st.last_error


def test_real_influxdb_acknowledges_with_204(influxdb: tuple[str, str], tmp_path: Path) -> None:
    """The same shipper against the real server: 204, every point shipped and stored."""
    url, db = influxdb
    with Spool(tmp_path / "s.db") as sp, client(url, db) as c:
        sp.enqueue(
            [Record("m", {"site": "Y81001"}, {"seq": i}, 1_700_000_000_000 + i) for i in range(20)]
        )
        res = Shipper(sp, c).drain()
        assert (res.shipped, sp.stats().pending) == (20, 0)
        assert c.query('SELECT count("seq") FROM m')[0].values[0][1] == 20
