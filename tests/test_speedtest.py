"""Probe "speedtest" (speedtest-cli). This machine has no internet, so the real library
really fails to fetch www.speedtest.net's configuration: that path is tested for real. The
result mapping is tested on the library's own ``SpeedtestResults`` object (no network), and
the byte cap on the library's own download and upload threads against a loopback HTTP
server (the requests speedtest-cli makes: GET of an image, POST of ``content1=...``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import timeit
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import speedtest as st_lib
from click.testing import CliRunner
from netready.probes import speedtest
from netready.probes.speedtest import Spec

from netready import registry
from netready.cli import cli


def test_offline_is_one_failed_record() -> None:
    t0 = time.monotonic()
    recs = asyncio.run(speedtest.run(registry.Context(), Spec(timeout_s=3)))
    assert time.monotonic() - t0 < 10
    assert len(recs) == 1
    r = recs[0]
    assert r.measurement == "throughput" and r.result == "unreachable"
    assert r.tags["method"] == "speedtest"
    reason = str(r.fields["reason"])
    assert "www.speedtest.net" in reason and "\n" not in reason


def test_offline_cli_prints_one_line() -> None:
    r = CliRunner().invoke(cli, ["probe", "speedtest", "--timeout", "3"])
    assert r.exit_code == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: speedtest: cannot reach")
    r = CliRunner().invoke(cli, ["probe", "speedtest", "--timeout", "3", "--format", "json"])
    assert json.loads(r.stdout)[0]["tags"]["result"] == "unreachable"


def test_results_mapping_uses_the_library_result_object() -> None:
    res = st_lib.SpeedtestResults(
        download=71.2e6, upload=17.5e6, ping=12.5, server={"id": "1234", "host": "x"}
    )
    res.bytes_received, res.bytes_sent = 90_000_000, 22_000_000
    recs = speedtest.to_records(res.dict(), Spec(server_id=1234), {"site": "Y1"})
    assert [(r.tags["direction"], r.fields["goodput_mbps"]) for r in recs] == [
        ("down", 71.2),
        ("up", 17.5),
    ]
    assert recs[0].fields["bytes"] == 90_000_000 and recs[1].fields["bytes"] == 22_000_000
    assert recs[0].tags["target"] == "1234" and recs[0].fields["rtt_idle_ms"] == 12.5
    assert registry.get("probe", "speedtest").heavy


class _Images(BaseHTTPRequestHandler):
    """GET: 20 MB of image bytes, as a speedtest server's random4000x4000.jpg (31 MB);
    POST: reads the upload body and answers ``size=N``, as its upload.php."""

    timeout = 5
    received = 0

    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(20_000_000))
        self.end_headers()
        block = b"\xff" * 65536
        try:
            for _ in range(20_000_000 // 65536):
                self.wfile.write(block)
        except OSError:
            pass  # the client stopped reading: what the cap is for

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        got = 0
        try:
            while got < n:
                chunk = self.rfile.read(min(65536, n - got))
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        type(self).received += got
        if got == n:
            body = f"size={got}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def images() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_byte_cap_stops_the_librarys_download_and_upload_threads(images: str) -> None:
    """The metered opener counts what speedtest-cli's own HTTPDownloader/HTTPUploader threads
    move and sets the library's shutdown event at the cap: four threads that would fetch
    80 MB stop at 1 MB, give or take a 10 KB chunk each; an upload stops the same way."""
    stop = speedtest._Stop()
    meter = speedtest.Meter(stop)
    opener = speedtest.MeteredOpener(st_lib.build_opener(timeout=5), meter)
    meter.start(1_000_000)
    start = timeit.default_timer()
    down = [
        st_lib.HTTPDownloader(
            i,
            st_lib.build_request(f"{images}/random4000x4000.jpg", bump=str(i)),
            start,
            10,
            opener=opener,
            shutdown_event=stop,
        )
        for i in range(4)
    ]
    for t in down:
        t.start()
    for t in down:
        t.join(15)
    got = sum(sum(t.result) for t in down)
    assert meter.hit and stop.is_set()
    assert 1_000_000 <= got <= 1_000_000 + 4 * speedtest.CHUNK
    assert meter.used == got
    # upload: the body is read while it is sent; the library's data object stops at the cap
    meter.start(500_000)
    assert not stop.is_set()
    size = 7_340_032  # speedtest-cli's largest upload chunk
    data = st_lib.HTTPUploaderData(size, 0, 10, shutdown_event=stop)
    req = st_lib.build_request(f"{images}/upload.php", data, headers={"Content-length": size})
    up = st_lib.HTTPUploader(0, req, timeit.default_timer(), size, 10, opener=opener,
                             shutdown_event=stop)  # fmt: skip
    up.start()
    up.join(15)
    assert meter.hit and 500_000 <= up.result <= 500_000 + 10240
    assert _Images.received <= up.result


def test_to_records_marks_capped_and_refused_directions() -> None:
    res = st_lib.SpeedtestResults(download=9.0e6, ping=12.0, server={"id": "7"})
    res.bytes_received = 1_000_000
    down, up = speedtest.to_records(res.dict(), Spec(), {}, {"down": True, "up": True})
    assert down.ok and down.fields["byte_capped"] is True and down.fields["bytes"] == 1_000_000
    assert up.result == "budget_exceeded" and "byte cap" in str(up.fields["reason"])
