"""The plugin contract (netready/plugin.py), checked over every registered plugin.

- it registers by entry point and declares itself (kind, name, measurement, method, summary);
- its Spec forbids extra fields and every field has a description; the generated command has
  an option (or argument) for every field;
- a failed measurement is a record with ``result`` and ``reason`` under a measurement it
  declares: each plugin runs against a closed loopback port, a name that does not resolve or a
  missing file (``FAILING``);
- every field it writes is declared: each plugin runs once for real (``SAMPLES``: loopback
  reflector, responder, speed endpoint, iperf3 -s, HTTP server; recorded router and capture
  files) and every field of every record must be declared for that measurement;
- a plugin is one folder (Telegraf's shape): its entry point names a package under
  ``probes/`` or ``collectors/`` whose ``__init__.py`` holds the declaration (``PLUGIN``), with
  a ``README.md``;
- every declared field is in its README's metric table: ``<folder>/README.md`` carries the
  option and metric tables rendered from the declaration, and must equal what it renders now
  (``python tests/test_plugin_contract.py --write`` rewrites them);
- no plugin name appears in the core (netready/*.py outside netready/cli/).

A new plugin needs an entry in ``FAILING`` and ``SAMPLES`` here (the test says so).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from pydantic import BaseModel, ConfigDict

from netready import inventory, registry
from netready.cli.plugins import GROUP, command, field_params
from netready.errors import ConfigError
from netready.plugin import Context, Plugin
from netready.records import RESULT_OK, RESULTS, Record, failure

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
PLUGINS: list[tuple[str, str]] = [(k, n) for k in registry.GROUPS for n in registry.names(k)]
BEGIN = "<!-- BEGIN generated from the plugin's declaration: python tests/test_plugin_contract.py --write -->"
END = "<!-- END generated -->"
SECRET_ENV = "NR_CONTRACT_SECRET"
os.environ.setdefault(SECRET_ENV, "contract-test-token")


def _ids() -> list[str]:
    return [f"{k}:{n}" for k, n in PLUGINS]


def _closed_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site(router: dict[str, Any] | None = None) -> inventory.Site:
    return inventory.Site.model_validate(
        {
            "ods": "Z99001",
            "name": "Contract Surgery",
            "type": "gp_practice",
            "icb": "QHM",
            "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
            **({"router": router} if router else {}),
        }
    )


# --------------------------------------------------------------------------- the declaration


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_declaration_and_spec(kind: registry.Kind, name: str) -> None:
    p = registry.get(kind, name)
    assert isinstance(p, Plugin) and (p.kind, p.name) == (kind, name)
    assert p.measurement and p.method and p.summary.strip() and p.interval_s > 0
    assert p.spec.model_config.get("extra") == "forbid", f"{name}: Spec must forbid extra fields"
    with pytest.raises(ConfigError, match=r"surely_not_a_field: Extra inputs are not permitted"):
        p.make_spec({"surely_not_a_field": 1})
    for fname, info in p.spec.model_fields.items():
        assert (info.description or "").strip(), f"{name}: Spec field {fname} has no description"
    names = [m.name for m in p.fields]
    assert len(names) == len({(m.measurement or p.measurement, m.name) for m in p.fields})
    assert all(m.unit and m.definition for m in p.fields)
    # the generated command has a parameter for every field, and no option twice
    cmd = command(p)
    params, _ = field_params(p.spec)
    assert {x.name for x in params} >= set(p.spec.model_fields)
    opts = [o for x in cmd.params for o in x.opts + x.secondary_opts]
    assert len(opts) == len(set(opts)), f"{name}: an option name is used twice: {opts}"
    if p.needs is not None:
        assert kind == "collector" and {"--site", "--inventory", "--state-dir"} <= set(opts)


def test_registered_by_entry_point_and_listed_without_import() -> None:
    from importlib.metadata import entry_points

    for kind, group in registry.GROUPS.items():
        eps = {ep.name: ep.value for ep in entry_points(group=group)}
        assert sorted(eps) == registry.names(kind)
        for value in eps.values():
            assert value.endswith(":PLUGIN"), value
    code = (
        "import sys; from netready import registry; registry.names('probe'); "
        "registry.names('collector'); "
        "print(sorted(m for m in sys.modules if m.startswith(('netready.probes', "
        "'netready.collectors'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    with pytest.raises(Exception, match="unknown probe 'nope'"):
        registry.get("probe", "nope")


def test_generated_commands_map_options_onto_the_spec(tmp_path: Path) -> None:
    """The generated commands: a cli_flag sets its field, a run by hand goes through the same
    budget admission as the agent's, a dict is KEY=VALUE, a positional argument, the exit rule
    (0 ok, 1 a failed record with one stderr line, 2 bad input)."""
    import json

    from click.testing import CliRunner

    from netready.cli import cli

    run = CliRunner().invoke
    # --udp is protocol=udp: a UDP test's bytes are known, 37.5 GB is over the 100 MB cap
    r = run(cli, ["probe", "iperf3", "--target", "127.0.0.1:1", "--udp", "--bitrate-mbps",
                  "1000", "--duration", "300", "--direction", "up", "--format", "json"])  # fmt: skip
    assert r.exit_code == 1, r.output
    (d,) = json.loads(r.stdout)
    assert d["tags"]["result"] == "budget_exceeded" and d["tags"]["method"] == "iperf3"
    assert r.stderr.count("\n") == 1 and "over the 100 MB budget" in r.stderr
    cap = str(DATA / "pcap" / "call_lo_ether.pcap")
    r = run(cli, ["collect", "pcap", cap, "--clock", "96=90000", "--format", "json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)
    assert recs and all(x["measurement"] == "rtp_stream" for x in recs)
    r = run(cli, ["collect", "pcap", cap, "--clock", "96"])
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.stderr
    r = run(cli, ["collect", "pcap", cap, "--clock", "96=1"])
    assert r.exit_code == 2 and "collect pcap: clock" in r.stderr
    r = run(cli, ["collect", "pcap", str(tmp_path / "none.pcap")])
    assert r.exit_code == 1 and r.stdout == "" and r.stderr.startswith("Error: ")
    r = run(cli, ["collect", "snmp"])
    assert r.exit_code == 2 and "--site" in r.stderr
    r = run(cli, ["probe", "rtt", "--target", "h:1", "--no-such-option"])
    assert r.exit_code == 2 and "No such option" in r.stderr
    assert run(cli, ["probe", "nope"]).exit_code == 2


class _NoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def test_agent_is_generic_over_the_declaration(tmp_path: Path) -> None:
    """A collector declared in-process (as a third-party one would be) is scheduled for a
    site that has what it ``needs``, at its declared interval unless the inventory overrides
    it; the ``if_traffic`` it writes feeds the link-busy check, whatever its name; a task
    that raises becomes an ``error`` record under its declared measurement."""
    from netready.agent import Agent, build_tasks
    from netready.spool import Spool

    async def counters(ctx: Context, spec: Any) -> list[Record]:
        tags = {**ctx.tags, "direction": "in", "result": "ok"}
        return [Record("if_traffic", tags, {"rate_mbps": 5.0, "interval_s": 60.0, "is_wan": True})]

    async def broken(ctx: Context, spec: Any) -> list[Record]:
        raise RuntimeError("bug")

    router_counters = Plugin(
        kind="collector", name="zz-counters", spec=_NoSpec, run=counters,
        measurement="if_traffic", method="test", summary="s", interval_s=42.0,
        needs="router.snmp",
    )  # fmt: skip
    sink = Plugin(kind="collector", name="zz-broken", spec=_NoSpec, run=broken,
                  measurement="dsl_line", method="test", summary="s", needs="router.ssh")  # fmt: skip
    registry.register(router_counters)
    registry.register(sink)
    try:
        snmp = {"host": "192.0.2.1", "snmp": {"community": f"env:{SECRET_ENV}"}}
        inv = inventory.Inventory.model_validate(
            {"sites": [_site(snmp).model_dump(mode="json")], "store": {"kind": "embedded"}}
        )
        site = inv.sites[0]
        tasks = {t.plugin.name: t for t in build_tasks(inv, site)}
        assert "zz-broken" not in tasks  # the site has no router.ssh
        assert tasks["zz-counters"].interval_s == 42.0 and tasks["zz-counters"].name == "router-snmp"
        assert tasks["snmp"].interval_s == registry.get("collector", "snmp").interval_s
        override = inv.model_copy(
            update={"defaults": inventory.Defaults(intervals_s={"zz-counters": 7})}
        )
        assert {t.plugin.name: t.interval_s for t in build_tasks(override, site)}["zz-counters"] == 7
        assert build_tasks(inv, site, {"zz-counters"})[0].plugin is router_counters
        with Spool(tmp_path / "spool.db", ship=False, embedded=True) as sp:
            agent = Agent(inv, site, sp, tmp_path, only={"zz-counters"})
            asyncio.run(agent.run_task(agent.tasks[0]))
            assert [r.fields["rate_mbps"] for r in agent.recent_traffic] == [5.0]
            ssh = {**snmp, "ssh": {"username": "u", "key_file": f"file:{tmp_path}/k"}}
            inv2 = inv.model_copy(update={"sites": [_site(ssh)]})
            agent2 = Agent(inv2, inv2.sites[0], sp, tmp_path, only={"zz-broken"})
            (rec,) = asyncio.run(agent2.run_task(agent2.tasks[0]))
            assert (rec.measurement, rec.result) == ("dsl_line", "error")
            assert "RuntimeError: bug" in str(rec.fields["reason"])
            assert agent2.health.task_errors == 1
    finally:
        for p in (router_counters, sink):
            registry._LOADED.pop((p.kind, p.name), None)


# --------------------------------------------------------------------------- failure is data


def _key_file(tmp: Path) -> Path:
    key = tmp / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    return key


#: A run of each plugin that cannot succeed: (spec params, site or None).
FAILING: dict[str, Callable[[Path], tuple[dict[str, Any], inventory.Site | None]]] = {
    "rtt": lambda _: ({"target": f"127.0.0.1:{_closed_port(socket.SOCK_DGRAM)}",
                      "duration_s": 0.2, "timeout_s": 0.5}, None),
    "icmp": lambda _: ({"target": "no-such-host.invalid", "count": 1}, None),
    "media": lambda _: ({"target": f"127.0.0.1:{_closed_port(socket.SOCK_DGRAM)}",
                        "duration_s": 0.5, "timeout_s": 0.5}, None),
    "throughput": lambda _: ({"target": f"http://127.0.0.1:{_closed_port()}",
                             "token": f"env:{SECRET_ENV}", "direction": "down"}, None),
    "iperf3": lambda _: ({"target": f"127.0.0.1:{_closed_port()}", "duration_s": 1,
                         "direction": "up"}, None),
    "speedtest": lambda _: ({"timeout_s": 3}, None),  # no internet here: speedtest.net unreachable
    "http": lambda _: ({"target": f"http://127.0.0.1:{_closed_port()}/"}, None),
    "qos": lambda _: ({"target": f"127.0.0.1:{_closed_port(socket.SOCK_DGRAM)}",
                      "load_target": f"http://127.0.0.1:{_closed_port()}",
                      "load_token": f"env:{SECRET_ENV}", "idle_s": 0.5, "timeout_s": 0.5}, None),
    "snmp": lambda _: ({"port": _closed_port(socket.SOCK_DGRAM), "host": "127.0.0.1"},
                       _site({"host": "127.0.0.1", "snmp": {"community": f"env:{SECRET_ENV}",
                                                            "timeout_s": 0.3, "retries": 0}})),
    "ssh": lambda tmp: ({"port": _closed_port(), "host": "127.0.0.1"},
                        _site({"host": "127.0.0.1", "vendor": "cisco_iosxe",
                               "ssh": {"username": "u", "key_file": f"file:{_key_file(tmp)}",
                                       "timeout_s": 2}})),
    "pcap": lambda tmp: ({"path": str(tmp / "missing.pcap")}, None),
}  # fmt: skip


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_a_failure_is_a_record_with_result_and_reason(
    kind: registry.Kind, name: str, tmp_path: Path
) -> None:
    assert name in FAILING, f"add a failing run of {kind} {name} to FAILING"
    p = registry.get(kind, name)
    params, site = FAILING[name](tmp_path)
    ctx = Context(site=site, state_dir=tmp_path)
    recs = asyncio.run(asyncio.wait_for(p.run(ctx, p.make_spec(params)), 60))
    assert recs, f"{name}: no record for a failed run"
    for r in recs:
        assert r.result != RESULT_OK and r.result in RESULTS, r
        assert isinstance(r.fields.get("reason"), str) and r.fields["reason"], r
        assert "\n" not in str(r.fields["reason"])
        assert r.measurement in p.measurements, f"{name} wrote undeclared {r.measurement}"
        _declared(p, r)
    assert any(r.measurement == p.measurement for r in recs)


def _declared(p: Plugin, r: Record) -> None:
    names = {m.name for m in p.fields_of(r.measurement)} | {"reason"}
    extra = set(r.fields) - names
    assert not extra, f"{p.kind} {p.name} writes undeclared {r.measurement} fields {sorted(extra)}"


# --------------------------------------------------------------------------- every field declared


@contextlib.contextmanager
def _background(coro: Callable[[asyncio.Event, asyncio.Event], Awaitable[Any]]) -> Iterator[None]:
    """Run a server coroutine in its own event loop in a thread until the block ends."""
    loop = asyncio.new_event_loop()
    ready, stop = asyncio.Event(), asyncio.Event()

    async def main() -> None:
        task = asyncio.ensure_future(coro(ready, stop))
        await stop.wait()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    for _ in range(500):
        if ready.is_set():
            break
        threading.Event().wait(0.01)
    assert ready.is_set(), "server did not start"
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def _run(p: Plugin, params: dict[str, Any], site: inventory.Site | None = None) -> list[Record]:
    ctx = Context(site=site)
    return asyncio.run(asyncio.wait_for(p.run(ctx, p.make_spec(params)), 90))


def _rtt(p: Plugin) -> list[Record]:
    from netready.servers import reflector

    port = _closed_port(socket.SOCK_DGRAM)

    async def serve(ready: asyncio.Event, stop: asyncio.Event) -> Any:
        return await reflector.serve(f"127.0.0.1:{port}", ["127.0.0.0/8"], ready=ready, stop=stop)

    with _background(serve):
        return _run(p, {"target": f"127.0.0.1:{port}", "duration_s": 1, "rate_pps": 50})


def _media(p: Plugin) -> list[Record]:
    from netready.servers import responder

    port = _closed_port(socket.SOCK_DGRAM)

    async def serve(ready: asyncio.Event, stop: asyncio.Event) -> Any:
        return await responder.serve(f"127.0.0.1:{port}", ["127.0.0.0/8"], ready=ready)

    with _background(serve):
        target = f"127.0.0.1:{port}"
        call = _run(p, {"target": target, "profile": "sd", "duration_s": 1})
        search = _run(p, {"target": target, "profile": "sd", "find_capacity": True,
                          "step_duration_s": 1, "max_calls": 2})  # fmt: skip
        return call + search


def _throughput(p: Plugin) -> list[Record]:
    from netready.servers.speed import Limits, SpeedServer

    port = _closed_port()

    async def serve(ready: asyncio.Event, stop: asyncio.Event) -> Any:
        srv = SpeedServer(os.environ[SECRET_ENV], Limits(max_rate_mbps=40))
        await srv.start("127.0.0.1", port)
        ready.set()
        try:
            await stop.wait()
        finally:
            await srv.close()

    with _background(serve):
        return _run(p, {"target": f"http://127.0.0.1:{port}", "token": f"env:{SECRET_ENV}",
                        "max_seconds": 3})  # fmt: skip


def _qos(p: Plugin) -> list[Record]:
    """Loopback has no queue: the verdict is "not tested", every figure is still written."""
    from netready.servers import responder
    from netready.servers.speed import Limits, SpeedServer

    uport, tport = _closed_port(socket.SOCK_DGRAM), _closed_port()

    async def serve(ready: asyncio.Event, stop: asyncio.Event) -> Any:
        # the endpoint's default ping limit (50/s): both directions of the load at once, each
        # at half a test's probe rate (probe_share=0.5), stay within it even on loopback,
        # where no queue slows the pings (a 429 would make the record result=refused)
        srv = SpeedServer(os.environ[SECRET_ENV], Limits(max_rate_mbps=40))
        await srv.start("127.0.0.1", tport)
        try:
            await responder.serve(f"127.0.0.1:{uport}", ["127.0.0.0/8"], ready=ready)
        finally:
            await srv.close()

    with _background(serve):
        return _run(p, {"target": f"127.0.0.1:{uport}", "load_target": f"http://127.0.0.1:{tport}",
                        "load_token": f"env:{SECRET_ENV}", "idle_s": 0.5, "ramp_s": 0.5,
                        "duration_s": 1, "streams": 1})  # fmt: skip


def _iperf3(p: Plugin) -> list[Record]:
    port = _closed_port()
    srv = subprocess.Popen(
        ["iperf3", "-s", "-p", str(port), "-B", "127.0.0.1", "--forceflush"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert srv.stdout is not None
        for _ in range(5):
            if "Server listening" in srv.stdout.readline():
                break
        threading.Thread(target=srv.stdout.read, daemon=True).start()
        target = f"127.0.0.1:{port}"
        tcp = _run(p, {"target": target, "duration_s": 1, "max_mb": 4})
        udp = _run(p, {"target": target, "duration_s": 1, "protocol": "udp", "direction": "up"})
        return tcp + udp
    finally:
        srv.terminate()
        srv.wait(5)


def _icmp(p: Plugin) -> list[Record]:
    return _run(p, {"target": "127.0.0.1", "count": 3, "interval_s": 0.01})  # tests run as root


def _speedtest(p: Plugin) -> list[Record]:
    import speedtest as st_lib
    from netready.probes import speedtest

    res = st_lib.SpeedtestResults(download=9e6, upload=2e6, ping=12.0, server={"id": "1"})
    res.bytes_received, res.bytes_sent = 11_000_000, 2_500_000
    spec = speedtest.Spec(threads=4)
    return speedtest.to_records(res.dict(), spec, {}, {"down": True})  # no internet: the mapping


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _http(p: Plugin) -> list[Record]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        return _run(p, {"target": f"http://127.0.0.1:{srv.server_address[1]}/"})
    finally:
        srv.shutdown()
        srv.server_close()


def _snmp(p: Plugin) -> list[Record]:
    """The collector's whole interpretation of two polls of recorded routers (no I/O)."""
    from netready.collectors import snmp

    out: list[Record] = []
    for name, vendor in (("draytek_vdsl", "draytek"), ("iosxe_isr4321", "cisco_iosxe")):
        vb = snmp.parse_snmprec((DATA / "snmprec" / f"{name}.snmprec").read_text())
        kw: dict[str, Any] = dict(base_tags={"tech": "fttc"}, device="r", vendor=vendor,
                                  contract_down_mbps=40, contract_up_mbps=10)  # fmt: skip
        first, s1 = snmp.records_from_varbinds(vb, prev=None, time_ms=1_000_000, **kw)
        second, _ = snmp.records_from_varbinds(vb, prev=s1, time_ms=1_060_000, **kw)
        out += first + second
    return out


def _ssh(p: Plugin) -> list[Record]:
    from netready.collectors import ssh
    from netready.collectors.dsl import dsl_record

    out: list[Record] = []
    for vendor, cmd, f in (
        ("cisco_iosxe", "show controller vdsl 0/2/0", "cisco_iosxe_c1112_show_controller_vdsl.txt"),
        ("huawei_vrp", "display interface", "huawei_vrp_ar_display_interface.raw"),
    ):
        text = (DATA / "router-cli" / f).read_text(errors="replace")
        for ln in ssh.parse_output(vendor, cmd, text):
            out.append(dsl_record(ln, {"tech": "fttc"}, method="ssh", device="r",
                                  contract_down_mbps=40, contract_up_mbps=10))  # fmt: skip
    return out


def _pcap(p: Plugin) -> list[Record]:
    return _run(p, {"path": str(DATA / "pcap" / "call_lo_ether.pcap")}) + _run(
        p, {"path": str(DATA / "pcap" / "call_lo_ether.pcap"), "max_streams": 1}
    )


#: One real run (or the collector's whole interpretation of recorded input) per plugin.
SAMPLES: dict[str, Callable[[Plugin], list[Record]]] = {
    "rtt": _rtt, "media": _media, "throughput": _throughput, "iperf3": _iperf3,
    "icmp": _icmp, "speedtest": _speedtest, "http": _http, "snmp": _snmp, "ssh": _ssh,
    "pcap": _pcap, "qos": _qos,
}  # fmt: skip


@pytest.mark.root
@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_every_field_written_is_declared(kind: registry.Kind, name: str) -> None:
    assert name in SAMPLES, f"add a sample run of {kind} {name} to SAMPLES"
    p = registry.get(kind, name)
    recs = SAMPLES[name](p)
    assert any(r.ok for r in recs), f"{name}: the sample run has no ok record: {recs}"
    for r in recs:
        assert r.measurement in p.measurements, f"{name} wrote undeclared {r.measurement}"
        _declared(p, r)


class _Reads(dict):  # type: ignore[type-arg]
    """A record's fields that note every name read (``get``, ``[]``, ``in``)."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.read: set[str] = set()

    def get(self, k: Any, default: Any = None) -> Any:
        self.read.add(k)
        return super().get(k, default)

    def __getitem__(self, k: Any) -> Any:
        self.read.add(k)
        return super().__getitem__(k)

    def __contains__(self, k: object) -> bool:
        self.read.add(str(k))
        return super().__contains__(k)


@pytest.mark.root
@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_every_probe_declares_its_traffic_from_declared_fields(
    kind: registry.Kind, name: str
) -> None:
    """A probe says what a run put on the wire (``Plugin.traffic``, which the agent's monthly
    traffic counts) from fields it declares: on its real sample run the count is positive and
    reads no field outside the declaration, and it is 0 for records without those fields.
    Collectors declare none (their polls are not tests)."""
    p = registry.get(kind, name)
    if kind == "collector":
        assert p.traffic is None, f"collector {name} declares traffic: the agent would count it"
        return
    assert p.traffic is not None, f"probe {name}: declare traffic= (netready/plugin.py)"
    recs = []
    for r in SAMPLES[name](p):
        spy = Record(r.measurement, r.tags, r.fields, r.time_ms)
        object.__setattr__(spy, "fields", _Reads(r.fields))
        recs.append(spy)
    spec = p.spec.model_construct()  # the defaults, as the sample runs use them
    assert p.traffic(spec, recs) > 0, f"{name}: its sample run moved bytes"
    for r in recs:
        assert isinstance(r.fields, _Reads)
        declared = {m.name for m in p.fields_of(r.measurement)}
        assert r.fields.read <= declared, f"{name} traffic reads {r.fields.read - declared}"
    empty = [failure(p.measurement, {}, "timeout", "no answer")]
    assert p.traffic(spec, empty) == 0


# --------------------------------------------------------------------------- the docs


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render(p: Plugin) -> str:
    """The generated block of the plugin's ``README.md``: options and metrics."""
    params = {x.name: x for x in command(p).params}
    rows = [
        BEGIN,
        "",
        f"Command: `netready {GROUP[p.kind]} {p.name}` · measurement"
        f"{'s' if len(p.measurements) > 1 else ''} "
        + ", ".join(f"`{m}`" for m in p.measurements)
        + f" · method `{p.method}` · agent interval {p.interval_s:g} s"
        + (" · heavy (clinic hours, daily budget, byte cap)" if p.heavy else "")
        + (f" · scheduled where the site has `{p.needs}`" if p.needs else ""),
        "",
        "### Options",
        "",
        "| option | Spec field (inventory `params`) | default | meaning |",
        "|---|---|---|---|",
    ]
    for fname, info in p.spec.model_fields.items():
        x = params[fname]
        opt = x.human_readable_name if isinstance(x, click.Argument) else " / ".join(
            x.opts + x.secondary_opts
        )
        default = "required" if info.is_required() else f"`{info.get_default(call_default_factory=True)!r}`"
        rows.append(f"| `{opt}` | `{fname}` | {default} | {_md(info.description or '')} |")
    if p.needs is not None:
        rows.append("| `--site`, `--inventory`, `--state-dir` | | | the site whose "
                    f"`{p.needs}` is read, the inventory, the state directory |")  # fmt: skip
    rows.append("| `--format` | | `'table'` | table (the ok records), json or influx (every record; influx: line protocol for Telegraf) |")
    rows += ["", "### Metrics", "", "| measurement | field | unit | meaning |", "|---|---|---|---|"]
    for m in p.fields:
        rows.append(
            f"| `{m.measurement or p.measurement}` | `{m.name}` | {_md(m.unit)} | {_md(m.definition)} |"
        )
    rows += [
        "",
        "A failed measurement is a record of the same measurement with a `result` tag "
        "(`timeout`, `refused`, `unreachable`, `auth_failed`, `error`, `budget_exceeded`, "
        "`skipped`) and a one-line `reason` field, plus the fields measured before it failed.",
        "",
        END,
    ]
    return "\n".join(rows)


def _folder(p: Plugin) -> Path:
    """The plugin's folder: the package its entry point names."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group=registry.GROUPS[p.kind]) if e.name == p.name]
    path = Path(str(importlib.import_module(ep.module).__file__))
    assert path.name == "__init__.py", f"{p.kind} {p.name}: {ep.module} is a module, not a folder"
    return path.parent


def _page(p: Plugin) -> Path:
    return _folder(p) / "README.md"


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_a_plugin_is_one_folder(kind: registry.Kind, name: str) -> None:
    """``probes/<name>/`` or ``collectors/<name>/``: ``__init__.py`` declares the plugin
    (``PLUGIN = Plugin(...)``), ``README.md`` documents it."""
    p = registry.get(kind, name)
    folder = _folder(p)
    assert folder.parent == ROOT / {"probe": "probes", "collector": "collectors"}[kind], folder
    tree = ast.parse((folder / "__init__.py").read_text())
    assert any(
        isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PLUGIN" for t in n.targets)
        for n in tree.body
    ), f"{folder.relative_to(ROOT)}/__init__.py does not declare PLUGIN"
    assert (folder / "README.md").exists(), f"{folder.relative_to(ROOT)} has no README.md"


def _with_block(text: str, block: str) -> str:
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=_ids())
def test_page_has_the_metric_table_of_the_declaration(kind: registry.Kind, name: str) -> None:
    p = registry.get(kind, name)
    page = _page(p)
    assert page.exists(), f"{page.relative_to(ROOT)} is missing (python {__file__} --write)"
    text = page.read_text()
    assert text.startswith("# "), f"{page.name}: a title first"
    assert text == _with_block(text, render(p)), (
        f"{page.relative_to(ROOT)} does not match {kind} {name}'s declaration: "
        f"run python tests/test_plugin_contract.py --write"
    )
    for m in p.fields:  # and so every declared field is in the page, and nothing else is
        assert f"| `{m.name}` |" in text
    table = text.partition("### Metrics")[2].partition(END)[0]
    listed = {row.split("|")[2].strip(" `") for row in table.splitlines() if row.startswith("| `")}
    assert listed == {m.name for m in p.fields}


def test_plugins_md_links_every_plugins_readme() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    for kind, name in PLUGINS:
        link = os.path.relpath(_page(registry.get(kind, name)), ROOT / "docs")
        assert f"]({link})" in text, f"docs/plugins.md does not link {kind} {name}'s {link}"


# --------------------------------------------------------------------------- the core is generic

#: (module, string) pairs of the core that are a plugin's name but not about that plugin.
ALLOWED = {
    ("inventory.py", "http"): "the URL scheme of store and target URLs",
    ("inventory.py", "https"): "the URL scheme",
    ("optional.py", "ssh"): "the name of an install extra (pyproject's [ssh], paramiko)",
}
#: The demo is lab code on its way to lab/demo.py (11-LAB): it names the probes it runs.
NOT_CORE = {"demo.py"}


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings:
            yield n.lineno, n.value


def test_no_plugin_name_in_the_core() -> None:
    """The core (netready/*.py; netready/cli/ generates commands from the registry) never
    picks a plugin by name. A plugin name that is not also a measurement name must not appear
    as a string at all; one that is (``rtt``, ``media``, ``throughput``: measurements the
    rubric reads) must not be compared with a plugin's ``name`` or passed to
    ``registry.get``."""
    plugins = [registry.get(k, n) for k, n in PLUGINS]
    names = {p.name for p in plugins}
    measurements = {m for p in plugins for m in p.measurements}
    only_names = names - measurements
    problems = []
    for path in sorted((ROOT / "netready").glob("*.py")):
        if path.name in NOT_CORE:
            continue
        tree = ast.parse(path.read_text())
        for line, s in _strings(tree):
            if s in only_names and (path.name, s) not in ALLOWED:
                problems.append(f"netready/{path.name}:{line}: plugin name {s!r}")
        for n in ast.walk(tree):
            if isinstance(n, ast.Compare):
                sides = [n.left, *n.comparators]
                if any(isinstance(x, ast.Attribute) and x.attr == "name" for x in sides) and any(
                    isinstance(x, ast.Constant) and x.value in names for x in sides
                ):
                    problems.append(f"netready/{path.name}:{n.lineno}: compares a plugin's name")
            if (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr == "get"
                and any(isinstance(a, ast.Constant) and a.value in names for a in n.args[1:2])
            ):
                problems.append(f"netready/{path.name}:{n.lineno}: gets a plugin by name")
    assert not problems, "\n".join(problems)


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(f"usage: python {sys.argv[0]} --write   (rewrite the plugins' README tables)")
    for k, n in PLUGINS:
        p = registry.get(k, n)
        page = _page(p)
        old = page.read_text() if page.exists() else f"# {k.title()} `{n}`\n\n{p.summary}\n"
        new = _with_block(old, render(p))
        if new != old:
            page.write_text(new)
            print(f"wrote {page.relative_to(ROOT)}")
