"""The detector over the whole SNMP corpus (tests/data/snmprec): every recording's expected WAN
and technology (expected.yaml) holds, with its reason and evidence, and the line figures are
the recorded values scaled. This is the regression net; the shares are in bench/detect.py.

Each recording is parsed into varbinds exactly as the collector reads an agent
(``parse_snmprec``; the over-the-wire equality with snmpsim is tests/test_snmp.py's), then run
through ``collectors.snmp.detect`` and ``records_from_varbinds``: the code the agent runs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from netready.collectors import snmp
from netready.collectors.dsl import tech_check, tech_mismatch
from netready.collectors.snmp.detect import Result

from netready.records import Record

SNMPREC = Path(__file__).parent / "data" / "snmprec"
#: The collector spells the VDSL class ``vdsl2`` (stored history, the SSH collector).
SPELLING = {"vdsl2": "vdsl"}


@cache
def corpus() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((SNMPREC / "expected.yaml").read_text("utf-8"))
    return {e["file"].removesuffix(".snmprec"): e for e in doc["recordings"]}


@cache
def varbinds(name: str) -> dict[str, snmp.Value]:
    return snmp.parse_snmprec((SNMPREC / f"{name}.snmprec").read_text("utf-8", "surrogateescape"))


def run(name: str) -> Result:
    return snmp.detect(varbinds(name))


@pytest.mark.parametrize("name", sorted(corpus()))
def test_wan_choice_is_one_the_evidence_accepts(name: str) -> None:
    e, res = corpus()[name], run(name)
    accept = e["wan"]["accept"]
    chosen = res.wan.iface.index if res.wan.iface else None
    if accept:
        assert chosen in accept, f"{name}: chose {chosen} ({res.wan.reason}); accepts {accept}"
        assert res.wan.reason and res.wan.how == "auto"
        assert res.wan.port is not None and res.wan.port.index == res.wan.path[-1]
    else:
        assert chosen is None, f"{name}: chose {chosen} ({res.wan.reason}), expected none"


@pytest.mark.parametrize("name", sorted(corpus()))
def test_technology_is_the_expected_one(name: str) -> None:
    e, d = corpus()[name], run(name).tech
    got = SPELLING.get(d.tech, d.tech)
    assert got == e["tech"] or got in e.get("tech_acceptable", []), (
        f"{name}: detected {d.tech} ({d.evidence}), expected {e['tech']}"
    )
    assert d.confidence in ("high", "medium", "low")
    assert d.evidence, f"{name}: a detection without evidence"
    if e["tech"] in ("cable", "cellular"):
        assert d.tech != "ethernet"  # the false reassurance the issue is about


def _lines(name: str) -> dict[str, Any]:
    return {ln.ifname: ln for ln in run(name).lines}


def test_vdsl2_line_figures_per_direction() -> None:
    [ln] = run("draytek_vdsl").lines
    line = corpus()["draytek_vdsl"]["line"]
    got = {
        "down_kbps": ln.sync_down_kbps,
        "up_kbps": ln.sync_up_kbps,
        "snr_margin_down_db": ln.snr_margin_down_db,
        "snr_margin_up_db": ln.snr_margin_up_db,
        "atten_down_db": ln.atten_down_db,
        "atten_up_db": ln.atten_up_db,
    }
    assert got == {k: line[k]["value"] for k in got}
    assert ln.detected_tech == "vdsl2" and ln.line_up is True


def test_shdsl_span_rate_without_an_iftable() -> None:
    """Paradyne: HDSL2-SHDSL-LINE-MIB span status only (bit/s, symmetric)."""
    [ln] = run("paradyne_1752").lines
    line = corpus()["paradyne_1752"]["line"]
    assert ln.detected_tech == "shdsl" and ln.line_up is True
    assert ln.sync_down_kbps == line["down_kbps"]["value"] == ln.sync_up_kbps
    assert ln.attainable_down_kbps == line["attainable_kbps"]["value"]


def test_shdsl_endpoint_margin_and_attenuation() -> None:
    """Westermo: the endpoint row 4097.1.1.1 is unit xtuC(1), what the exchange-side unit
    receives, i.e. upstream; the down port's rows (unit 0, outside the MIB) give nothing."""
    lines = _lines("westermo_ddw-225")
    line = corpus()["westermo_ddw-225"]["line"]
    up, down = lines["1/2"], lines["1/1"]
    assert up.line_up is True and up.detected_tech == "shdsl"
    assert up.snr_margin_up_db == line["snr_margin_db"]["value"]
    assert up.atten_up_db == line["atten_db"]["value"]
    assert up.snr_margin_down_db is None  # no xtuR row: not measured, not 0
    assert down.line_up is False and down.snr_margin_up_db is None


def test_gfast_from_the_vendor_mode_string() -> None:
    ptm = _lines("zyxelac_xmg3927")["ptm0"]
    assert ptm.detected_tech == "gfast" and ptm.mode == "G.fastAnnexA"
    assert ptm.detected_by == "vendor_mib"
    assert run("zyxelac_xmg3927").tech.confidence == "low"  # one undocumented string


def test_a_line_coding_row_alone_is_not_a_dsl_line() -> None:
    """Zyxel puts one adslLineCoding value on an Ethernet ifIndex: no line, no adsl."""
    assert run("zyxel_anyos-aajz16").lines == []


def _wan_records(name: str, declared: str) -> list[Record]:
    recs, _ = snmp.records_from_varbinds(
        varbinds(name), base_tags={"site": "A81001", "tech": declared}, device="r",
        prev=None, time_ms=1_000,
    )  # fmt: skip
    return [r for r in recs if r.measurement == "if_traffic" and r.fields.get("is_wan")]


@pytest.mark.parametrize("name", ["westermo_ddw-225", "openwrt_21.02-armv7l"])
def test_detection_without_octet_counters(name: str) -> None:
    [r] = _wan_records(name, "fttp")
    assert r.ok and "octets" not in r.fields and "no octet counters" in r.fields["note"]
    assert r.tags["detected_tech"] == SPELLING.get(corpus()[name]["tech"], corpus()[name]["tech"])
    assert r.fields["wan_reason"] and r.fields["tech_evidence"]


@pytest.mark.parametrize(
    ("name", "declared", "check"),
    [
        ("vrp_ar169sfp", "fttp", "unverifiable"),  # "FTTH Link" alias on an Ethernet port
        ("teldat_tv-base-vdsl2-adsl", "fttp", "unverifiable"),  # GPON service via an ONT
        ("draytek_vdsl", "fttp", "mismatch"),  # declared fibre, trains VDSL2
        ("draytek_vdsl", "fttc", "match"),
        ("calix_716ge", "fttp", "match"),  # the ONT itself
        ("thomson_tcm420", "ethernet", "mismatch"),  # coax, never an Ethernet handoff
        ("teltonika_rut950", "fttp", "mismatch"),  # radio
        ("oneaccess_oneaccess-showtime", "ethernet", "mismatch"),  # EFM sold as Ethernet
        ("iosxe_isr4321", "ethernet", "match"),  # leased line
    ],
)
def test_declared_against_detected(name: str, declared: str, check: str) -> None:
    recs = _wan_records(name, declared)
    assert recs and {r.fields["tech_check"] for r in recs} == {check}
    mismatch = {r.fields.get("tech_mismatch") for r in recs}
    assert mismatch == {None if check == "unverifiable" else check == "mismatch"}


def test_tech_check_vocabulary() -> None:
    assert tech_check("fttp", "ethernet") == "unverifiable"
    assert tech_check("fttc", "ethernet") == "unverifiable"  # a VDSL modem in front
    assert tech_check("ethernet", "ethernet") == "match"
    assert tech_check("ethernet", "fttp") == "match"
    assert tech_check("fttp", "cable") == "mismatch"
    assert tech_check("fttc", "cellular") == "mismatch"
    assert tech_check("fttp", "unknown") is None and tech_check("unknown", "vdsl2") is None
    assert tech_mismatch("fttp", "ethernet") is None and tech_mismatch("fttp", "vdsl2") is True


def test_the_report_lists_unverifiable_handoffs_apart_from_mismatches() -> None:
    """What the router detected reaches the readiness model: declared FTTP and an Ethernet
    handoff (the Huawei "FTTH Link") is unverifiable, declared FTTP and VDSL2 (the DrayTek) a
    mismatch; each in its own list, JSON key and report section."""
    from netready.reports import readiness as R
    from netready.reports import render

    from netready.inventory import loads
    from netready.rubric import PROFILES

    inv = loads("""
version: 1
sites:
  - {ods: A10001, name: Handoff, type: gp_practice, icb: QHM, link: {tech: fttp, down_mbps: 80, up_mbps: 20}}
  - {ods: A10002, name: Copper, type: gp_practice, icb: QHM, link: {tech: fttp, down_mbps: 80, up_mbps: 20}}
  - {ods: A10003, name: Agrees, type: gp_practice, icb: QHM, link: {tech: fttc, down_mbps: 80, up_mbps: 20}}
""")  # fmt: skip
    detected = {
        "A10001": _wan_records("vrp_ar169sfp", "fttp")[0].tags["detected_tech"],
        "A10002": _wan_records("draytek_vdsl", "fttp")[0].tags["detected_tech"],
        "A10003": _wan_records("draytek_vdsl", "fttc")[0].tags["detected_tech"],
    }
    now = 1_790_000_000_000
    results = [
        R.evaluate(s, R.Evidence(detected_tech=detected[s.ods]), PROFILES["gp_video"], now)
        for s in inv.sites
    ]
    assert [r.tech_check for r in results] == ["unverifiable", "mismatch", "match"]
    assert [r.tech_mismatch for r in results] == [False, True, False]
    e = R.Estate(
        profile="gp_video", now_ms=now, since_s=86400.0, store="", sites=results, cohorts=[],
        by_icb=[], priority=[], pstn_risk=[],
        mismatches=R.tech_list(results, inv.sites, "mismatch"),
        unverifiable=R.tech_list(results, inv.sites, "unverifiable"),
    )  # fmt: skip
    doc = render.to_json_doc(e)
    assert [m["ods"] for m in doc["tech_mismatch"]] == ["A10002"]
    assert [m["ods"] for m in doc["tech_unverifiable"]] == ["A10001"]
    md = render.render_md(e)
    unverif = md[md.index("## Router sees an Ethernet handoff") :]
    assert "A10001" in unverif.split("\n## ")[0] and "A10002" not in unverif.split("\n## ")[0]
    mism = md[md.index("## Declared tech disagrees") :].split("\n## ")[0]
    assert "A10002" in mism and "A10001" not in mism
    html = render.render_html(e)
    assert "Router sees an Ethernet handoff" in html


def test_the_mismatch_alert_fires_for_mismatches_not_for_unverifiable_handoffs(
    influxdb: tuple[str, str],
) -> None:
    """The committed Grafana rules, evaluated against a real InfluxDB 1.x holding what the
    collector makes of real routers, all declared FTTP: the DrayTek (VDSL2) and the Thomson
    (DOCSIS) fire; the Huawei with its "FTTH Link" Ethernet port (unverifiable) does not."""
    import time

    from test_alerts import firing, rules

    from netready.influx import InfluxV1
    from netready.inventory import StoreConfig

    now = int(time.time() * 1000)
    recs: list[Record] = []
    for site, name in (("VDSL", "draytek_vdsl"), ("COAX", "thomson_tcm420"),
                       ("HANDOFF", "vrp_ar169sfp")):  # fmt: skip
        prev = None
        for k in (10, 5, 0):
            vb = dict(varbinds(name))
            if snmp.SYS_UPTIME in vb:
                vb[snmp.SYS_UPTIME] = int(vb[snmp.SYS_UPTIME]) + (10 - k) * 30_000
            out, prev = snmp.records_from_varbinds(
                vb, base_tags={"site": site, "icb": "QHM", "tech": "fttp"}, device="r",
                prev=prev, time_ms=now - k * 60_000,
            )  # fmt: skip
            recs += out
    checks = {(r.tags["site"], r.fields.get("tech_check")) for r in recs if r.fields.get("is_wan")}
    assert checks == {("VDSL", "mismatch"), ("COAX", "mismatch"), ("HANDOFF", "unverifiable")}
    url, db = influxdb
    with InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db)) as client:
        client.write(recs)
        assert firing(rules()["tech-mismatch-if-traffic"], client) == {"VDSL", "COAX"}
        assert firing(rules()["tech-mismatch-dsl-line"], client) == {"VDSL"}
