"""Telegraf interop: ``--format influx`` for ``inputs.exec``, the sample configuration, and the
agent shipping to ``inputs.influxdb_listener`` (the InfluxDB v1 write API).

Telegraf itself is not installable here (not in Debian 12, and nothing outside the package
registries can be fetched), so the line protocol is checked against the real InfluxDB 1.6 (the
parser Telegraf's own is compatible with) and the listener's answers against its source: see
``test_shipper_against_telegraf_listener_contract``.
"""

from __future__ import annotations

import gzip
import json
import shlex
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from netready import registry
from netready.cli import cli
from netready.influx import InfluxV1, encode
from netready.inventory import StoreConfig
from netready.records import Record
from netready.shipper import Shipper
from netready.spool import Spool

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "telegraf-netready.conf"
PCAP = ROOT / "tests" / "data" / "pcap" / "call_lo_ether.pcap"


def _collect(fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["netready", "collect", "pcap", str(PCAP), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_format_influx_lines_load_into_real_influxdb(influxdb: tuple[str, str]) -> None:
    """What inputs.exec reads: one line per record, ns timestamps, stdout only; InfluxDB
    takes every line at Telegraf's default precision (ns) and stores what --format json says."""
    url, db = influxdb
    as_json = _collect("json")
    as_influx = _collect("influx")
    assert as_json.returncode == as_influx.returncode == 0, as_influx.stderr
    records = [Record.from_dict(d) for d in json.loads(as_json.stdout)]
    lines = as_influx.stdout.splitlines()
    assert records and len(lines) == len(records)
    assert as_influx.stdout.endswith("\n") and "\x1b" not in as_influx.stdout
    for line, rec in zip(lines, records):
        assert line.startswith(rec.measurement + ",")
        assert line.rsplit(" ", 1)[1] == str(rec.time_ms * 1_000_000)  # ns
    r = httpx.post(f"{url}/write", params={"db": db}, content=as_influx.stdout)  # ns: default
    assert r.status_code == 204, r.text
    meas = records[0].measurement
    field = next(k for k, v in records[0].fields.items() if isinstance(v, (int, float)))
    q = httpx.get(
        f"{url}/query",
        params={"db": db, "epoch": "ms", "q": f'SELECT "{field}" FROM "{meas}"'},
    ).json()
    got = sorted(tuple(v) for v in q["results"][0]["series"][0]["values"])
    want = sorted(
        (r.time_ms, r.fields[field]) for r in records if r.measurement == meas and field in r.fields
    )
    assert [(t, pytest.approx(v)) for t, v in want] == got


def test_format_influx_on_every_probe_and_collector_command() -> None:
    for kind, group in (("probe", "probe"), ("collector", "collect")):
        for name in registry.names(kind):
            res = CliRunner().invoke(cli, [group, name, "--help"], terminal_width=200)
            assert res.exit_code == 0, res.output
            assert "influx" in res.output.split("--format", 1)[1].split("\n\n")[0], (group, name)


def test_sample_telegraf_conf_parses_and_its_commands_exist() -> None:
    """The sample is TOML (Telegraf's config language); every exec command is a netready
    command that takes ``--format influx``; the listener listens where the doc says."""
    conf = tomllib.loads(CONF.read_text())
    execs = conf["inputs"]["exec"]
    assert execs and all(e["data_format"] == "influx" for e in execs)
    for e in execs:
        for command in e["commands"]:
            argv = shlex.split(command)
            assert argv[0] == "netready" and argv[-2:] == ["--format", "influx"]
            res = CliRunner().invoke(cli, [*argv[1:3], "--help"])
            assert res.exit_code == 0, (command, res.output)
            # every option the sample passes is one the command has
            for opt in (a for a in argv[3:] if a.startswith("--")):
                assert opt in res.output, (command, opt)
    listener = conf["inputs"]["influxdb_listener"][0]
    assert listener["service_address"] == "127.0.0.1:8186"
    assert conf["outputs"]["influxdb"][0]["database"] == "netready"
    doc = (ROOT / "docs" / "telegraf.md").read_text()
    assert "deploy/telegraf-netready.conf" in doc and "8186" in doc


def _records(n: int, bad: int | None = None) -> list[Record]:
    return [
        Record("rtt", {"site": "Y81001", "result": "ok"}, {"rtt_ms": float(i), "bad": i == bad},
               1_700_000_000_000 + i)
        for i in range(n)
    ]


def test_agent_ships_to_v1_endpoint_real_influxd(influxdb: tuple[str, str], tmp_path: Path) -> None:
    """The agent's shipper against a real v1 write API (what the listener speaks)."""
    url, db = influxdb
    with Spool(tmp_path / "spool.db", ship=True) as sp:
        sp.enqueue(_records(50))
        cfg = StoreConfig(kind="influxdb_v1", url=url, database=db, timeout_s=5)
        with InfluxV1(cfg) as w:
            res = Shipper(sp, w, batch_size=20).drain()
        assert res.shipped == 50 and res.error is None
        assert sp.stats().pending == 0
    q = httpx.get(f"{url}/query", params={"db": db, "q": "SELECT count(rtt_ms) FROM rtt"}).json()
    assert q["results"][0]["series"][0]["values"][0][1] == 50


class _Listener(BaseHTTPRequestHandler):
    """Telegraf's influxdb_listener as its source answers (plugins/inputs/influxdb_listener/
    influxdb_listener.go): ``POST /write`` 204 when every line parsed; a line that does not
    parse: 400, ``Content-Type: application/json``, ``X-Influxdb-Error`` and ``{"error": ...}``,
    the good lines of the body kept all the same; ``GET /ping`` 204 with
    ``X-Influxdb-Version: 1.0``; ``/query`` 200 ``{"results":[]}``; ``db`` is ignored.
    A contract fake (Telegraf cannot run here): "does not parse" is a line with ``bad=true``."""

    accepted: list[str]
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]]

    def log_message(self, *a: object) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", ctype: str | None = None,
                error: str | None = None) -> None:
        self.send_response(status)
        self.send_header("X-Influxdb-Version", "1.0")
        if ctype:
            self.send_header("Content-Type", ctype)
        if error:
            self.send_header("X-Influxdb-Error", error)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self._answer(204)
        elif path == "/query":
            self._answer(200, b'{"results":[]}', "application/json")
        else:
            self._answer(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        u = urlsplit(self.path)
        if u.path == "/query":
            self._answer(200, b'{"results":[]}', "application/json")
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests.append((u.path, parse_qs(u.query), dict(self.headers)))
        lines = body.decode().splitlines()
        bad = [x for x in lines if "bad=true" in x]
        self.accepted.extend(x for x in lines if "bad=true" not in x)
        if bad:
            err = f"metric parse error: expected field at 1:{len(bad[0])}"
            self._answer(400, json.dumps({"error": err}).encode(), "application/json", err)
        else:
            self._answer(204)


@pytest.fixture
def listener() -> Iterator[tuple[str, type[_Listener]]]:
    handler = type("L", (_Listener,), {"accepted": [], "requests": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()


def test_shipper_against_telegraf_listener_contract(
    listener: tuple[str, type[_Listener]], tmp_path: Path
) -> None:
    url, seen = listener
    cfg = StoreConfig(kind="influxdb_v1", url=url, database="netready", timeout_s=5)
    with Spool(tmp_path / "spool.db", ship=True) as sp, InfluxV1(cfg) as w:
        assert w.ping() == "1.0"
        sp.enqueue(_records(40, bad=17))
        res = Shipper(sp, w, batch_size=40).drain()
        # the one bad point is dead-lettered, the rest acknowledged (204) and gone from the spool
        assert res.dead_lettered == 1 and res.error is None
        assert sp.stats().pending == 0
        assert len(sp.dead_letters()) == 1
    path, params, headers = seen.requests[0]
    assert path == "/write" and params["precision"] == ["ms"] and params["db"] == ["netready"]
    assert headers["Content-Encoding"] == "gzip"
    # every good point reached Telegraf (some twice: a 400 batch keeps its good lines, and the
    # shipper re-sends them in halves; same series and time, so InfluxDB stores each once)
    want = {encode(r) for r in _records(40) if r.fields["rtt_ms"] != 17.0}
    assert set(seen.accepted) == want
