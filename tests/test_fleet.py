"""Fleet configuration: per-site slices, their ed25519 signatures, the config server's answers,
and an agent following a real config server on loopback (change, outage, bad signature,
restart)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

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
