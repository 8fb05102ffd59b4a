"""Fleet configuration: per-site slices, their ed25519 signatures, the config server's answers,
and an agent following a real config server on loopback (change, outage, bad signature,
restart)."""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from influxd import free_port

from netready import fleet
from netready.errors import InventoryError
from netready.inventory import load, loads, slice_bytes, slice_doc

ROOT = Path(__file__).resolve().parent.parent


def keypair(tmp_path: Path, name: str = "cfg") -> tuple[Path, Path]:
    priv, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    fleet.write_keypair(priv, pub)
    return priv, pub


def seed_of(priv: Path) -> bytes:
    return fleet.signing_key(f"file:{priv}")


def estate() -> dict[str, Any]:
    """The example inventory plus a second router-equipped site with its own targets."""
    doc = yaml.safe_load((ROOT / "site_inventory.yaml").read_text())
    doc["sites"][2]["router"] = {
        "host": "198.51.100.77",
        "snmp": {"version": "2c", "community": "env:HARBOUR_ONLY_COMMUNITY"},
    }
    doc["sites"][2]["targets"] = [
        {"name": "harbour-only", "probe": "rtt", "address": "harbour-reflector.invalid:862"},
        {"name": "teams", "probe": "http", "address": "https://teams-harbour.invalid/"},
    ]
    return doc


# ----------------------------------------------------------------------------- slices


def test_a_slice_carries_only_its_own_site() -> None:
    doc = estate()
    inv = loads(yaml.safe_dump(doc))
    for site in inv.sites:
        text = slice_bytes(inv, site.ods).decode()
        for other in inv.sites:
            if other.ods == site.ods:
                continue
            leaks = [other.ods, other.name]
            if other.link.circuit_id:
                leaks.append(other.link.circuit_id)
            if other.router:
                leaks.append(other.router.host)
                snmp = other.router.snmp
                if snmp and snmp.community and snmp.community not in text_of_site(site):
                    leaks.append(snmp.community)
            leaks += [t.address for t in other.targets]
            leaks += [t.name for t in other.targets if t.name not in names_for(inv, site)]
            for leak in leaks:
                assert leak not in text, f"slice of {site.ods} carries {other.ods}'s {leak!r}"
        back = loads(text)
        assert back.sites == [site]
        assert back.targets_for(back.sites[0]) == inv.targets_for(site)
        assert (back.store, back.agent) == (inv.store, inv.agent)
        assert back.defaults.intervals_s == inv.defaults.intervals_s


def text_of_site(site: Any) -> str:
    return json.dumps(site.model_dump(mode="json"))


def names_for(inv: Any, site: Any) -> set[str]:
    return {t.name for t in inv.targets_for(site)}


def test_a_site_that_overrides_a_default_target_gets_its_own() -> None:
    inv = loads(yaml.safe_dump(estate()))
    d = slice_doc(inv, "Y81003")
    default_names = [t["name"] for t in d["defaults"]["targets"]]
    assert "teams" not in default_names  # Y81003 has its own "teams"
    assert [t["address"] for t in d["sites"][0]["targets"]] == [
        "harbour-reflector.invalid:862",
        "https://teams-harbour.invalid/",
    ]
    assert slice_bytes(inv, "Y81003") == slice_bytes(inv, "Y81003")  # stable: same ETag


# ----------------------------------------------------------------------------- signatures


def test_check_slice_accepts_only_a_signed_valid_slice_for_this_site(tmp_path: Path) -> None:
    priv, pub = keypair(tmp_path)
    _, other_pub = keypair(tmp_path, "other")
    seed, key = seed_of(priv), fleet.public_key(pub)
    inv = load(ROOT / "site_inventory.yaml")
    data = slice_bytes(inv, "Y81001")
    sig = fleet.sign(data, seed)
    assert fleet.check_slice(data, sig, key, "Y81001", "u").sites[0].ods == "Y81001"

    def refused(d: bytes, s: str | None, k: bytes = key, site: str = "Y81001") -> str:
        with pytest.raises(fleet.SliceError) as e:
            fleet.check_slice(d, s, k, site, "u")
        return str(e.value)

    assert "bad signature" in refused(data, sig, fleet.public_key(other_pub))
    assert "bad signature" in refused(data.replace(b"192.0.2.10", b"203.0.113.9"), sig)
    assert "unsigned" in refused(data, None)
    assert "not base64" in refused(data, "!!!")
    assert "not this agent's site Y81002" in refused(data, sig, site="Y81002")
    junk = b"sites: [\x00"
    assert "not a valid inventory" in refused(junk, fleet.sign(junk, seed))
    invalid = data.replace(b"tech: adsl", b"tech: dialup")
    assert "'dialup' is not one of" in refused(invalid, fleet.sign(invalid, seed))
    whole = (ROOT / "site_inventory.yaml").read_bytes()
    assert "not this agent's site" in refused(whole, fleet.sign(whole, seed))


def test_keys_are_refused_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(fleet.ConfigError, match="5 bytes; an ed25519 key is 32"):
        fleet.public_key(bad)
    with pytest.raises(fleet.ConfigError, match="file not found"):
        fleet.public_key(tmp_path / "missing.pub")
    with pytest.raises(fleet.ConfigError, match="inline"):
        fleet.signing_key("c2VjcmV0")
    priv, _ = keypair(tmp_path)
    with pytest.raises(fleet.ConfigError, match="exists; not overwritten"):
        fleet.write_keypair(priv, tmp_path / "new.pub")
    assert priv.stat().st_mode & 0o077 == 0
    assert fleet.slice_url("https://cfg.example:8443/", "Y81001") == (
        "https://cfg.example:8443/sites/Y81001"
    )
    for bad in ("ftp://cfg.example/", "cfg.example", "https://u:p@cfg.example/", "https://c/?x=1"):
        with pytest.raises(fleet.ConfigError, match="--config-url"):
            fleet.slice_url(bad, "Y81001")


# ----------------------------------------------------------------------------- publishing


def test_publisher_answers_with_etag_and_reloads_a_changed_inventory(tmp_path: Path) -> None:
    priv, pub = keypair(tmp_path)
    key = fleet.public_key(pub)
    path = tmp_path / "inv.yaml"
    doc = estate()
    path.write_text(yaml.safe_dump(doc))
    p = fleet.Publisher(path, seed_of(priv), recheck_s=0)
    a = p.answer("GET", "/sites/Y81001", None)
    assert a.status == 200
    fleet.check_slice(a.body, a.headers[fleet.SIG_HEADER], key, "Y81001", "t")
    assert p.answer("GET", "/sites/Y81001", a.headers["ETag"]).status == 304
    assert p.answer("GET", "/sites/Y81001", f'"x", {a.headers["ETag"]}').status == 304
    assert p.answer("HEAD", "/sites/Y81001", None).body == b""
    assert p.answer("GET", "/sites/Z99999", None).status == 404
    assert p.answer("GET", "/", None).status == 404
    assert p.answer("POST", "/sites/Y81001", None).status == 405

    doc["sites"][0]["planned_clinics"] = 5
    path.write_text(yaml.safe_dump(doc))
    p.refresh()
    b = p.answer("GET", "/sites/Y81001", a.headers["ETag"])
    assert b.status == 200 and b.headers["ETag"] != a.headers["ETag"]
    assert b"planned_clinics: 5" in b.body
    # another site's slice did not change: same ETag
    assert (
        p.answer("GET", "/sites/Y81002", None).headers["ETag"]
        == fleet.Published.build(loads(yaml.safe_dump(estate())), seed_of(priv))
        .slices["Y81002"]
        .etag
    )

    path.write_text("sites: [")  # broken: the slices in force stay
    p.refresh()
    assert p.answer("GET", "/sites/Y81001", None).body == b.body


def test_export_writes_each_slice_with_its_signature(tmp_path: Path) -> None:
    priv, pub = keypair(tmp_path)
    key = fleet.public_key(pub)
    written = fleet.export(ROOT / "site_inventory.yaml", f"file:{priv}", tmp_path / "out")
    inv = load(ROOT / "site_inventory.yaml")
    assert sorted(p.name for p in written) == sorted(
        n for s in inv.sites for n in (f"{s.ods}.yaml", f"{s.ods}.yaml.sig")
    )
    for s in inv.sites:
        data = (tmp_path / "out" / f"{s.ods}.yaml").read_bytes()
        sig = (tmp_path / "out" / f"{s.ods}.yaml.sig").read_text()
        assert fleet.check_slice(data, sig, key, s.ods, "f").sites[0] == s
    with pytest.raises(InventoryError, match="no site with ODS code Z99999"):
        fleet.export(ROOT / "site_inventory.yaml", f"file:{priv}", tmp_path / "o2", ["Z99999"])
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------------------------- end to end


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: target name -> the loopback address it measures
ADDRESS = {"core": "127.0.0.1", "core2": "127.0.0.2", "core3": "127.0.0.3"}


@pytest.fixture
def reflector() -> Iterator[int]:
    """A reflector on each of three loopback addresses, one port: each target below is
    another address, as the rtt record names its target by address."""
    port = udp_port()
    procs = []
    for a in ADDRESS.values():
        p = subprocess.Popen(
            [sys.executable, "-m", "netready.cli", "reflector", "--listen", f"{a}:{port}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        p.stderr.readline()  # type: ignore[union-attr]  # bound and listening
        procs.append(p)
    yield port
    for p in procs:
        p.terminate()
        p.wait(10)


def follow_inventory(tmp_path: Path, reflector: int, targets: list[str]) -> dict[str, Any]:
    return {
        "version": 1,
        "store": {"kind": "embedded"},
        "agent": {
            "spool_path": str(tmp_path / "spool.db"),
            "ship_interval_s": 1,
            "splay_s": 0,
            "self_report_s": 1,
            "config_poll_s": 1,
        },
        "sites": [
            {
                **site_doc("Y81001"),
                "targets": [
                    {
                        "name": t,
                        "probe": "rtt",
                        "address": f"{ADDRESS[t]}:{reflector}",
                        "interval_s": 2,
                        "params": {"duration_s": 1, "rate_pps": 20, "window_s": 1},
                    }
                    for t in targets
                ],
            },
            {**site_doc("Y81002"), "router": {"host": "198.51.100.99"}},
        ],
    }


def site_doc(ods: str) -> dict[str, Any]:
    return {
        "ods": ods,
        "name": f"Practice {ods}",
        "type": "gp_practice",
        "icb": "QHM",
        "link": {"tech": "fttc", "down_mbps": 40, "up_mbps": 10},
        "clinic_hours": {"days": ["mon", "sun"], "start": "00:00", "end": "00:01"},
    }


class ConfigServer:
    """``netready config serve`` as a process."""

    def __init__(self, inv: Path, key: Path, port: int, *extra: str):
        self.p = subprocess.Popen(
            [sys.executable, "-m", "netready.cli", "config", "serve", "--inventory", str(inv),
             "--signing-key", f"file:{key}", "--listen", f"127.0.0.1:{port}", *extra],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = self.p.stderr.readline()  # type: ignore[union-attr]
        assert "publishing 2 slices" in line, line

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(10)


def query(spool: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read the agent's embedded store while it runs (read-only; a spool the agent is still
    creating reads as empty: the caller polls again)."""
    if not spool.exists():
        return []
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def rtt_targets(spool: Path, after_ms: int = 0) -> set[str]:
    """The targets (by name) with valid rtt records after ``after_ms``."""
    rows = query(
        spool,
        "SELECT DISTINCT json_extract(tags, '$.target') FROM points WHERE measurement = 'rtt'"
        " AND time_ms > ? AND coalesce(json_extract(tags, '$.result'), 'ok') = 'ok'",
        after_ms,
    )
    name = {a: n for n, a in ADDRESS.items()}
    return {name[r[0].rsplit(":", 1)[0]] for r in rows}


def agent_fields(spool: Path) -> dict[str, Any]:
    """The newest ``agent`` record's fields."""
    rows = query(
        spool,
        "SELECT fields FROM points WHERE measurement = 'agent' ORDER BY time_ms DESC LIMIT 1",
    )
    return json.loads(rows[0][0]) if rows else {}


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something true; bounded (a slow machine only waits
    longer, the assertion is the same)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def start_agent(tmp_path: Path, port: int, pub: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["netready-agent", "--config-url", f"http://127.0.0.1:{port}", "--config-key", str(pub),
         "--site", "Y81001", "--state-dir", str(tmp_path / "state"), "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )  # fmt: skip


def test_agent_follows_the_config_server_through_change_outage_bad_signature_and_restart(
    tmp_path: Path, reflector: int
) -> None:
    priv, pub = keypair(tmp_path)
    rogue, _ = keypair(tmp_path, "rogue")
    inv = tmp_path / "estate.yaml"
    inv.write_text(yaml.safe_dump(follow_inventory(tmp_path, reflector, ["core"])))
    spool, log = tmp_path / "spool.db", tmp_path / "agent.log"
    port = free_port()
    server = ConfigServer(inv, priv, port)
    agent = start_agent(tmp_path, port, pub, log)
    try:
        wait_for("records of the first slice", lambda: "core" in rtt_targets(spool))
        slice_file = tmp_path / "state" / "config" / "slice.yaml"
        assert b"198.51.100.99" not in slice_file.read_bytes()  # not the other site's router

        # change: a new target appears in the records, without a restart
        inv.write_text(yaml.safe_dump(follow_inventory(tmp_path, reflector, ["core", "core2"])))
        wait_for("the new target's records", lambda: "core2" in rtt_targets(spool))
        assert agent.poll() is None
        assert wait_for("config_applied", lambda: agent_fields(spool).get("config_applied"))

        # outage: the agent keeps measuring from its last good copy
        server.stop()
        wait_for("an unreachable count", lambda: agent_fields(spool).get("config_unreachable"))
        t_down = int(time.time() * 1000)
        wait_for("records during the outage", lambda: rtt_targets(spool, t_down) >= {"core2"})

        # bad signature: a server signing with another key; its slice is refused
        inv.write_text(yaml.safe_dump(follow_inventory(tmp_path, reflector, ["core3"])))
        server = ConfigServer(inv, rogue, port)
        wait_for("config_errors", lambda: agent_fields(spool).get("config_errors"))
        t_bad = int(time.time() * 1000)
        wait_for("records after the refusal", lambda: rtt_targets(spool, t_bad) >= {"core2"})
        assert "core3" not in rtt_targets(spool)
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        errors = [x for x in lines if x.get("level") == "error"]
        assert any("bad signature" in x.get("msg", "") for x in errors), errors
        server.stop()
        agent.terminate()
        assert agent.wait(30) == 0

        # restart while the server is down: it starts from the last good copy
        t_restart = int(time.time() * 1000)
        agent = start_agent(tmp_path, port, pub, log)
        wait_for("records after the restart", lambda: rtt_targets(spool, t_restart) >= {"core2"})
        assert "core3" not in rtt_targets(spool)
        assert "starting from the last good copy" in log.read_text()
    finally:
        agent.terminate()
        agent.wait(30)
        server.stop()


def test_config_server_refuses_what_it_must(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside --allow: closed unanswered; --token: 401 without it; plain HTTP off loopback:
    refused at start (exit 2, one line); another site's slice is not this site's."""
    import httpx

    priv, pub = keypair(tmp_path)
    inv = tmp_path / "estate.yaml"
    inv.write_text(yaml.safe_dump(follow_inventory(tmp_path, 9, ["core"])))
    port = free_port()
    srv = ConfigServer(inv, priv, port, "--allow", "10.0.0.0/8")
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/sites/Y81001", timeout=5)
    finally:
        srv.stop()
    monkeypatch.setenv("H13_CONFIG_TOKEN", "a-shared-token-1234")
    srv = ConfigServer(inv, priv, port, "--token", "env:H13_CONFIG_TOKEN")
    try:
        url = f"http://127.0.0.1:{port}/sites/Y81001"
        assert httpx.get(url, timeout=5).status_code == 401
        r = httpx.get(url, headers={"Authorization": "Bearer a-shared-token-1234"}, timeout=5)
        assert r.status_code == 200
        inv_ok = fleet.check_slice(
            r.content, r.headers[fleet.SIG_HEADER], fleet.public_key(pub), "Y81001", url
        )
        assert b"198.51.100.99" not in r.content and inv_ok.sites[0].ods == "Y81001"
        again = httpx.get(
            url,
            headers={
                "Authorization": "Bearer a-shared-token-1234",
                "If-None-Match": r.headers["ETag"],
            },
            timeout=5,
        )
        assert again.status_code == 304 and again.content == b""
    finally:
        srv.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "netready.cli", "config", "serve", "--inventory", str(inv),
         "--signing-key", f"file:{priv}", "--listen", "0.0.0.0:8443"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "plain HTTP on a non-loopback address" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
