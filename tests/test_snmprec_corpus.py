"""The SNMP recording corpus (tests/data/snmprec) is well formed and its expectations hold.

Every ``.snmprec`` file must be readable by snmpsim's own record parser (which is what serves
it over the wire in the SNMP tests and the demo), have an entry in ``expected.yaml``, a row in
``SOURCES_collectors.md`` whose git blob id matches the bytes (copied unedited), and a row in
``EXPECTED.md`` that agrees with the YAML. Every piece of evidence an expectation cites
(ifType, ifStackTable row, default route, address, line-MIB value, ...) must really be in the
recording. These tests judge the data, not the detector: they make no detection assertions.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from netready.collectors.snmp import Value, parse_snmprec
from snmpsim.record.snmprec import SnmprecRecord

DATA = Path(__file__).parent / "data"
SNMPREC = DATA / "snmprec"
FILES = sorted(p.name for p in SNMPREC.glob("*.snmprec"))

TECHS = {"adsl", "vdsl", "gfast", "shdsl", "fttp", "ethernet", "cable", "cellular", "unknown"}
CONFIDENCE = {"high", "medium", "low"}
IF_TYPE = "1.3.6.1.2.1.2.2.1.3"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
IFX_NAME = "1.3.6.1.2.1.31.1.1.1.1"
COLUMNS = {
    "ifDescr": IF_DESCR,
    "ifName": IFX_NAME,
    "ifAlias": "1.3.6.1.2.1.31.1.1.1.18",
    "ifInOctets": "1.3.6.1.2.1.2.2.1.10",
    "ifOutOctets": "1.3.6.1.2.1.2.2.1.16",
    "ifHCInOctets": "1.3.6.1.2.1.31.1.1.1.6",
    "ifHCOutOctets": "1.3.6.1.2.1.31.1.1.1.10",
}
IF_STACK_STATUS = "1.3.6.1.2.1.31.1.2.1.3"
IP_AD_IFINDEX = "1.3.6.1.2.1.4.20.1.2"
IP_AD_MASK = "1.3.6.1.2.1.4.20.1.3"
#: Where each route table's ifIndex column holds the IPv4 default route (0.0.0.0/0).
DEFAULT_ROUTE_PREFIX = {
    "ipRouteTable": "1.3.6.1.2.1.4.21.1.2.0.0.0.0",
    "ipCidrRouteTable": "1.3.6.1.2.1.4.24.4.1.5.0.0.0.0.0.0.0.0.",
    "inetCidrRouteTable": "1.3.6.1.2.1.4.24.7.1.7.1.4.0.0.0.0.0.",
}


@cache
def expected() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((SNMPREC / "expected.yaml").read_text("utf-8"))
    entries = doc["recordings"]
    names = [e["file"] for e in entries]
    assert len(names) == len(set(names)), "a file has two entries in expected.yaml"
    return {e["file"]: e for e in entries}


@cache
def varbinds(name: str) -> dict[str, Value]:
    return parse_snmprec((SNMPREC / name).read_text("utf-8", "surrogateescape"))


def text(v: Value | None) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def has_subtree(vb: Mapping[str, Value], prefix: str) -> bool:
    return any(k == prefix or k.startswith(prefix + ".") for k in vb)


def if_exists(vb: Mapping[str, Value], ix: int) -> bool:
    return any(f"{col}.{ix}" in vb for col in (IF_TYPE, IF_DESCR, IFX_NAME))


def display_name(vb: Mapping[str, Value], ix: int, column: str) -> str:
    """ifName/ifDescr as expected.yaml writes it: trimmed, trailing dot padding (Calix) cut."""
    return text(vb.get(f"{COLUMNS[column]}.{ix}")).strip().rstrip(".")


def entry_ids() -> list[str]:
    return sorted(expected())


# ---------------------------------------------------------------------- the files themselves


@pytest.mark.parametrize("name", FILES)
def test_file_is_snmprec_that_snmpsim_reads(name: str) -> None:
    """OID|tag|value on every line, typed by snmpsim's own parser, in OID order (snmpsim
    binary-searches a file for GETNEXT); the few upstream flaws are exactly the documented
    ``defects``."""
    record = SnmprecRecord()
    found: list[tuple[int, str]] = []
    prev: tuple[int, ...] | None = None
    lines = (SNMPREC / name).read_bytes().splitlines()
    assert lines, f"{name} is empty"
    for no, line in enumerate(lines, 1):
        fields = line.split(b"|", 2)
        assert len(fields) == 3, f"{name}:{no}: not OID|tag|value: {line[:80]!r}"
        assert re.fullmatch(rb"\.?\d+(\.\d+)+", fields[0]), f"{name}:{no}: bad OID {fields[0]!r}"
        try:
            oid, _value = record.evaluate(line)
        except Exception:
            found.append((no, "unparsable"))
            continue
        cur = tuple(oid)
        if prev is not None and cur <= prev:
            found.append((no, "out-of-order"))
        prev = cur
    documented = [(d["line"], d["kind"]) for d in expected()[name].get("defects", [])]
    assert found == documented, f"{name}: snmpsim-level defects {found}, documented {documented}"
    for d in expected()[name].get("defects", []):
        assert lines[d["line"] - 1].decode("utf-8", "replace") == d["text"]


def test_every_file_has_an_expectation_and_every_expectation_a_file() -> None:
    assert set(FILES) == set(expected()), (
        f"without expectation: {sorted(set(FILES) - set(expected()))}; "
        f"expectation without file: {sorted(set(expected()) - set(FILES))}"
    )
    assert len(FILES) >= 45


def test_every_file_has_a_source_row_with_its_blob_id() -> None:
    """SOURCES_collectors.md lists each file with the git blob id it had upstream: the copy is
    byte-for-byte (a changed byte changes the id)."""
    rows: dict[str, str] = {}
    for line in (DATA / "SOURCES_collectors.md").read_text("utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].endswith(".snmprec"):
            blob = next((c for c in cells if re.fullmatch(r"[0-9a-f]{12}", c)), None)
            assert blob, f"SOURCES_collectors.md row for {cells[0]} has no blob id"
            rows[cells[0]] = blob
    assert set(rows) == set(FILES), f"no source row: {sorted(set(FILES) - set(rows))}"
    for name in FILES:
        data = (SNMPREC / name).read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert blob.startswith(rows[name]), f"{name}: blob {blob[:12]}, SOURCES says {rows[name]}"
    index = (DATA / "SOURCES.md").read_text("utf-8")
    assert "`snmprec/*.snmprec`" in index and "SOURCES_collectors.md" in index


# --------------------------------------------------------------------------- the expectations


@pytest.mark.parametrize("name", entry_ids())
def test_expectation_is_well_formed(name: str) -> None:
    e = expected()[name]
    assert e["tech"] in TECHS, f"{name}: tech {e['tech']!r}"
    assert set(e.get("tech_acceptable", [])) <= TECHS - {e["tech"]}
    assert e["confidence"] in CONFIDENCE
    assert e["in_sync"] in (True, False, None)
    assert e["device"]["vendor"] and e["device"]["model"] and e["device"]["model_from"]
    assert e["covers"] and all(isinstance(c, str) for c in e["covers"])
    assert e["evidence"], f"{name}: an answer with no evidence"
    wan = e["wan"]
    assert wan["reason"]
    accept = wan["accept"]
    assert all(isinstance(i, int) for i in accept) and len(accept) == len(set(accept))
    if wan["ifindex"] is not None:
        assert wan["ifindex"] in accept, f"{name}: the WAN itself is not accepted"
    if wan["port"] is not None:
        assert wan["port"] in accept, f"{name}: the WAN port is not accepted"
        assert wan["ifindex"] is not None


@pytest.mark.parametrize("name", entry_ids())
def test_wan_interfaces_exist_in_the_recording(name: str) -> None:
    e, vb = expected()[name], varbinds(name)
    wan = e["wan"]
    for ix in wan["accept"]:
        assert if_exists(vb, ix), f"{name}: accepted ifIndex {ix} is not in ifTable/ifXTable"
    if wan["ifindex"] is not None:
        assert display_name(vb, wan["ifindex"], wan["name_from"]) == wan["name"]
        if wan["name_from"] == "ifDescr":  # ifName is used whenever the device has one
            assert not display_name(vb, wan["ifindex"], "ifName")
    if wan["port"] is not None:
        port_name = display_name(vb, wan["port"], "ifName") or display_name(
            vb, wan["port"], "ifDescr"
        )
        assert port_name == wan["port_name"]


def check_evidence(name: str, vb: Mapping[str, Value], ev: dict[str, Any]) -> None:
    kind, where = ev["kind"], f"{name}: {ev}"
    assert ev.get("says"), f"{where}: evidence without a reading"
    if kind == "iftype":
        assert vb.get(f"{IF_TYPE}.{ev['ifindex']}") == ev["value"], where
    elif kind == "oper":
        assert vb.get(f"{IF_OPER}.{ev['ifindex']}") == ev["value"], where
    elif kind == "name":
        got = vb.get(f"{COLUMNS[ev['column']]}.{ev['ifindex']}")
        assert got is not None and text(got) == ev["value"], f"{where}: file has {got!r}"
    elif kind == "stack":
        assert f"{IF_STACK_STATUS}.{ev['higher']}.{ev['lower']}" in vb, where
        assert if_exists(vb, ev["higher"]) and if_exists(vb, ev["lower"]), where
    elif kind == "address":
        assert vb.get(f"{IP_AD_IFINDEX}.{ev['address']}") == ev["ifindex"], where
    elif kind == "default_route":
        oid = ev["oid"]
        prefix = DEFAULT_ROUTE_PREFIX[ev["table"]]
        assert oid == prefix or oid.startswith(prefix), f"{where}: not a default-route row"
        got = vb.get(oid)
        if ev.get("reported_ifindex") == 0:
            # The agent leaves the ifIndex 0 (RouterOS): the next hop's subnet names the port.
            assert got == 0, where
            via = ev["via_address"]
            assert vb.get(f"{IP_AD_IFINDEX}.{via}") == ev["ifindex"], where
            assert vb.get(f"{IP_AD_MASK}.{via}") == ev["via_mask"], where
            net = ipaddress.ip_network(f"{via}/{ev['via_mask']}", strict=False)
            assert ipaddress.ip_address(ev["next_hop"]) in net, where
        else:
            assert got == ev["ifindex"], f"{where}: route ifIndex is {got!r}"
        if "next_hop" in ev and ev["table"] == "ipRouteTable":
            assert vb.get("1.3.6.1.2.1.4.21.1.7.0.0.0.0") == ev["next_hop"], where
        elif "next_hop" in ev:
            assert oid.endswith("." + ev["next_hop"]), where
    elif kind == "oid":
        got = vb.get(ev["oid"])
        assert got is not None, f"{where}: OID not in the file"
        assert (got if isinstance(got, int) else text(got)) == ev["value"], f"{where}: {got!r}"
    elif kind == "absent":
        assert not has_subtree(vb, ev["prefix"]), where
    elif kind == "sysdescr":
        assert ev["value"] in text(vb.get("1.3.6.1.2.1.1.1.0")), where
    elif kind == "octets":
        got = [vb.get(f"{COLUMNS[c]}.{ev['ifindex']}") for c in ev["columns"]]
        assert got == ev["value"], f"{where}: file has {got}"
    else:
        pytest.fail(f"{where}: unknown evidence kind {kind!r}")


@pytest.mark.parametrize("name", entry_ids())
def test_cited_evidence_is_in_the_recording(name: str) -> None:
    vb = varbinds(name)
    for ev in expected()[name]["evidence"]:
        check_evidence(name, vb, ev)


@pytest.mark.parametrize("name", [n for n in entry_ids() if "line" in expected()[n]])
def test_line_figures_are_the_recorded_values_scaled(name: str) -> None:
    vb, line = varbinds(name), expected()[name]["line"]
    assert line["source"]
    for field, fig in line.items():
        if field == "source":
            continue
        assert vb.get(fig["oid"]) == fig["raw"], f"{name}: {field} raw value"
        assert fig["value"] == pytest.approx(fig["raw"] * fig["scale"]), f"{name}: {field}"
        assert fig["how"], f"{name}: {field} does not say how its unit was read"


def busiest(vb: Mapping[str, Value]) -> int | None:
    """The interface with the most in+out octets (64-bit, else 32-bit), loopbacks excluded."""
    totals: dict[int, int] = {}
    indexes = {
        int(k.rsplit(".", 1)[1]) for k in vb if k.startswith((IF_TYPE + ".", IFX_NAME + "."))
    }
    for ix in indexes:
        if vb.get(f"{IF_TYPE}.{ix}") == 24:
            continue
        for cin, cout in (("ifHCInOctets", "ifHCOutOctets"), ("ifInOctets", "ifOutOctets")):
            i, o = vb.get(f"{COLUMNS[cin]}.{ix}"), vb.get(f"{COLUMNS[cout]}.{ix}")
            if isinstance(i, int) and isinstance(o, int):
                totals[ix] = i + o
                break
    if not totals or max(totals.values()) == 0:
        return None
    return max(sorted(totals), key=lambda k: totals[k])


@pytest.mark.parametrize("name", entry_ids())
def test_traffic_trap_tag_matches_the_counters(name: str) -> None:
    """``traffic-trap`` marks exactly the recordings whose busiest interface is not a WAN."""
    e = expected()[name]
    top = busiest(varbinds(name))
    trap = top is not None and bool(e["wan"]["accept"]) and top not in e["wan"]["accept"]
    assert ("traffic-trap" in e["covers"]) == trap, f"{name}: busiest ifIndex {top}"


def test_expected_md_table_agrees_with_the_yaml() -> None:
    rows: dict[str, list[str]] = {}
    for line in (SNMPREC / "EXPECTED.md").read_text("utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 10 and f"{cells[0]}.snmprec" in expected():
            rows[f"{cells[0]}.snmprec"] = cells
    assert set(rows) == set(expected()), f"not in EXPECTED.md: {set(expected()) - set(rows)}"
    for name, cells in rows.items():
        e = expected()[name]
        wan = e["wan"]["ifindex"]
        assert cells[2].split()[0] == ("unknown" if wan is None else str(wan)), name
        assert cells[4] == str(e["wan"]["accept"]), name
        assert cells[5].split()[0] == e["tech"], name
        assert cells[6] == {True: "yes", False: "no", None: "?"}[e["in_sync"]], name
        assert cells[8] == e["confidence"], name


def test_the_corpus_covers_the_technologies_and_cases_asked_for() -> None:
    """At least one recording of each access class (ADSL2+ in sync has no public recording:
    EXPECTED.md says so), and of the awkward cases the detector must survive."""
    techs = {e["tech"] for e in expected().values()}
    assert TECHS - {"adsl"} <= techs
    covers = {c for e in expected().values() for c in e["covers"]}
    for case in (
        "pppoe-over-ethernet",
        "pppoe-over-dsl",
        "vlan",
        "dual-wan",
        "no-counters",
        "default-route",
        "traffic-trap",
        "ont",
    ):
        assert case in covers, case
