"""SNMP collector: pure parsing on LibreNMS' recorded walks, then the same code over the wire
against snmpsim (serving those recordings, with numeric variation and recording pairs for the
rate maths) and a real Debian snmpd (v2c, v3 authPriv SHA/AES, wrong credentials).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from netready.collectors import snmp

from netready import inventory, registry
from netready.cli.plugins import collect
from netready.records import Record

DATA = Path(__file__).parent / "data" / "snmprec"
VENV_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"


def vb_of(name: str) -> dict[str, snmp.Value]:
    return snmp.parse_snmprec((DATA / f"{name}.snmprec").read_text("utf-8", "surrogateescape"))


def raw_line(name: str, oid: str) -> str:
    """The value column of one line of a recording, read without our parser."""
    for line in (DATA / f"{name}.snmprec").read_text("utf-8", "surrogateescape").splitlines():
        if line.split("|")[0] == oid:
            return line.split("|", 2)[2]
    raise KeyError(oid)


# ------------------------------------------------------------------ pure, on recordings


def test_draytek_dsl_line_matches_what_the_device_reported() -> None:
    vb = vb_of("draytek_vdsl")
    ifaces = snmp.interfaces(vb)
    lines = snmp.dsl_lines(vb, ifaces, snmp.db_scale_for(vb, "auto"))
    assert len(lines) == 1
    ln = lines[0]
    assert ln.ifname == "VDSL 08-0B-00-0F-00-07"
    assert ln.detected_tech == "vdsl2" and ln.line_up is True
    # VDSL2-LINE-MIB channel status: unit 1 (xtuc) downstream, unit 2 upstream, bit/s.
    assert (
        ln.sync_down_kbps
        == int(raw_line("draytek_vdsl", "1.3.6.1.2.1.10.251.1.2.2.1.2.4.1")) / 1000
    )
    assert ln.sync_down_kbps == 110162.0 and ln.sync_up_kbps == 33029.0
    # The downstream sync rate is the interface's ifSpeed: the direction mapping is right.
    assert ln.sync_down_kbps * 1000 == int(raw_line("draytek_vdsl", "1.3.6.1.2.1.2.2.1.5.4"))
    # ADSL-LINE-MIB ATU-C attainable = downstream, ATU-R = upstream; >= the sync rate.
    assert ln.attainable_down_kbps == pytest.approx(113648.992)
    assert ln.attainable_up_kbps == pytest.approx(34066.0)
    assert ln.attainable_down_kbps >= ln.sync_down_kbps and ln.attainable_up_kbps >= ln.sync_up_kbps
    # DrayTek reports whole dB (SNR 5, atten 13/16): ATU-R values are downstream.
    assert (ln.snr_margin_down_db, ln.snr_margin_up_db) == (5.0, 5.0)
    assert (ln.atten_down_db, ln.atten_up_db) == (16.0, 13.0)
    assert ln.interleave_delay_ms == 13.0 and ln.interleave_delay_up_ms == 0.0
    # Read by the MIB's letter (tenths), the SNR would be 0.5 dB: the override still works.
    tenths = snmp.dsl_lines(vb, ifaces, snmp.db_scale_for(vb, "tenths"))[0]
    assert tenths.snr_margin_down_db == pytest.approx(0.5)


def test_teldat_untrained_adsl_line_reports_zero_sync_and_no_margins() -> None:
    vb = vb_of("teldat_teldatvdsl2")
    ifaces = snmp.interfaces(vb)
    lines = snmp.dsl_lines(vb, ifaces, snmp.db_scale_for(vb, "auto"))
    assert [ln.ifname for ln in lines] == ["atm0/0"]
    ln = lines[0]
    assert ifaces[17].iftype == 94 and ifaces[17].oper_up is False
    assert ln.detected_tech == "adsl" and ln.line_up is False
    # Channels live on ifIndex 18 (fast) and 19 (interleaved), both at 0 bit/s.
    assert raw_line("teldat_teldatvdsl2", "1.3.6.1.2.1.10.94.1.1.4.1.2.18") == "0"
    assert (ln.sync_down_kbps, ln.sync_up_kbps) == (0.0, 0.0)
    # Untrained: margins, attenuation, attainable and delay are absent, not 0 or 4294967295.
    assert ln.snr_margin_down_db is None and ln.atten_down_db is None
    assert ln.attainable_down_kbps is None and ln.interleave_delay_ms is None
    rec = snmp.dsl_lines(vb, ifaces)[0]
    from netready.collectors.dsl import dsl_record

    r = dsl_record(rec, {"site": "A81001", "tech": "fttc"}, method="snmp", device="r")
    assert "tech_mismatch" not in r.fields  # a spare untrained port says nothing
    assert r.fields["line_up"] is False


@pytest.mark.parametrize(
    ("name", "wan", "tech"),
    [
        ("draytek_vdsl", "VDSL 08-0B-00-0F-00-07", "vdsl2"),
        ("tplink_td-w9970", "ppp1", "vdsl2"),  # public address on PPP; ptm0.101 is up: VDSL
        ("vrp_ar169sfp", "GigabitEthernet0/0/4", "ethernet"),  # alias "*** FTTH Link ***"
        ("oneaccess_oneaccess-showtime", "efm0", "shdsl"),  # EFM over four Gshdsl pairs
        ("iosxe_isr4321", "Gi0/0/0", "ethernet"),  # alias "WAN:..."
        ("teldat_teldatvdsl2", "ethernet0/0.10", "ethernet"),  # DSL down; ppp10 rides L2TP
    ],
)
def test_wan_and_detected_tech_on_real_walks(name: str, wan: str, tech: str) -> None:
    res = snmp.detect(vb_of(name))
    assert res.wan.iface is not None and res.wan.iface.name == wan and res.wan.how == "auto"
    assert res.wan.reason and res.tech.evidence
    assert res.tech.tech == tech


def test_inventory_wan_pattern_overrides_the_heuristic() -> None:
    vb = vb_of("vrp_ar169sfp")
    res = snmp.detect(vb, wan_pattern=r"^Dialer")
    assert res.wan.iface is not None and res.wan.iface.name == "Dialer1"
    assert res.wan.how == "inventory" and "/^Dialer/" in res.wan.reason
    dialer = snmp.detect(vb, wan_pattern=r"PPPoE test").wan.iface  # the alias matches too
    assert dialer is not None and dialer.name == "Dialer1"
    assert snmp.detect(vb, wan_pattern=r"^nope$").wan.iface is None


def test_counter_widths_from_the_tables() -> None:
    assert snmp.interfaces(vb_of("vrp_ar169sfp"))[7].counter_bits == 64
    assert snmp.interfaces(vb_of("tplink_td-w9970"))[18].counter_bits == 32  # no ifXTable
    iface = snmp.interfaces(vb_of("iosxe_isr4321"))[1]
    assert iface.counter_bits == 64 and iface.speed_mbps == 1000.0
    assert iface.in_octets == int(raw_line("iosxe_isr4321", "1.3.6.1.2.1.31.1.1.1.6.1"))


def test_counter_delta_wrap_and_discontinuity() -> None:
    assert snmp.counter_delta(100, 350, 32, None) == 250
    assert snmp.counter_delta(2**32 - 10, 5, 32, None) == 15
    assert snmp.counter_delta(2**64 - 1000, 74_999_000, 64, 1e9) == 75_000_000
    # A 64-bit counter that "wrapped" by 1.8e19 octets in a minute is a reset, not a wrap.
    assert snmp.counter_delta(5_000_000, 1_000, 64, 1e10) is None


def _two_polls(
    name: str, edit: dict[str, int], dt_ms: int, uptime_cs: int | None, tech: str = "fttc"
) -> tuple[list[Record], list[Record]]:
    vb = vb_of(name)
    tags = {"site": "A81001", "icb": "QHM", "tech": tech}
    kw = {"base_tags": tags, "device": "r1", "contract_down_mbps": 80.0, "contract_up_mbps": 20.0}
    first, s1 = snmp.records_from_varbinds(vb, prev=None, time_ms=1_000_000, **kw)
    vb2 = {**vb, **edit}
    if uptime_cs is not None:
        vb2[snmp.SYS_UPTIME] = uptime_cs
    second, _ = snmp.records_from_varbinds(vb2, prev=s1, time_ms=1_000_000 + dt_ms, **kw)
    return first, second


def _by_dir(recs: list[Record]) -> dict[str, Record]:
    return {r.tags["direction"]: r for r in recs if r.measurement == "if_traffic"}


def test_rates_utilisation_and_contract_from_64bit_counters() -> None:
    vb = vb_of("iosxe_isr4321")  # no sysUpTime in this walk: the wall clock times it
    hc_in, hc_out = "1.3.6.1.2.1.31.1.1.1.6.1", "1.3.6.1.2.1.31.1.1.1.10.1"
    first, second = _two_polls(
        "iosxe_isr4321",
        {hc_in: vb[hc_in] + 75_000_000, hc_out: vb[hc_out] + 15_000_000},
        60_000,
        None,
    )
    assert all("rate_mbps" not in r.fields for r in first)
    assert "baseline" in _by_dir(first)["in"].fields["note"]
    d = _by_dir(second)
    assert d["in"].fields["rate_mbps"] == pytest.approx(10.0)
    assert d["in"].fields["interval_source"] == "wallclock"
    assert d["in"].fields["util_pct"] == pytest.approx(1.0)  # of 1000 Mbit/s ifHighSpeed
    assert d["in"].fields["util_contract_pct"] == pytest.approx(12.5)  # of 80 down
    assert d["out"].fields["rate_mbps"] == pytest.approx(2.0)
    assert d["out"].fields["util_contract_pct"] == pytest.approx(10.0)  # of 20 up
    assert d["in"].tags["ifname"] == "Gi0/0/0" and d["in"].fields["is_wan"] is True
    # Declared FTTC, an Ethernet handoff: a VDSL modem in front would look the same.
    assert d["in"].tags["detected_tech"] == "ethernet"
    assert d["in"].fields["tech_check"] == "unverifiable" and "tech_mismatch" not in d["in"].fields
    assert d["in"].fields["wan_reason"].startswith("auto: alias 'WAN:")


def test_32bit_wrap_timed_by_sysuptime_and_agent_restart() -> None:
    vb = vb_of("tplink_td-w9970")
    c_in = "1.3.6.1.2.1.2.2.1.10.20"  # ppp1, the WAN (its public address says so)
    up = vb[snmp.SYS_UPTIME]
    # In 60 s of agent time the 32-bit counter wrapped once: 75 MB -> 10 Mbit/s. The wall
    # clock says 90 s (a late poll): sysUpTime is the better clock and wins.
    base = dict(vb)
    base[c_in] = 2**32 - 7_000_000
    s0 = snmp.sample_of(snmp.interfaces(base), up, 0)
    vb2 = {**base, c_in: 68_000_000, snmp.SYS_UPTIME: up + 6000}
    recs, s1 = snmp.records_from_varbinds(
        vb2, base_tags={"site": "A81001", "tech": "fttc"}, device="r1", prev=s0, time_ms=90_000
    )
    d = _by_dir(recs)
    assert d["in"].tags["ifname"] == "ppp1" and d["in"].tags["detected_tech"] == "vdsl2"
    assert d["in"].fields["rate_mbps"] == pytest.approx(10.0)
    assert d["in"].fields["interval_s"] == pytest.approx(60.0)
    assert d["in"].fields["interval_source"] == "sysUpTime"
    assert d["in"].fields["counter_bits"] == 32
    # The DSL line is up on this device? No DSL MIB: no sync figure to compare with.
    assert "util_sync_pct" not in d["in"].fields
    # Agent restart: sysUpTime went back. No rate, a baseline and a note saying why.
    vb3 = {**vb2, c_in: 1000, snmp.SYS_UPTIME: 500}
    recs3, _ = snmp.records_from_varbinds(
        vb3, base_tags={"site": "A81001"}, device="r1", prev=s1, time_ms=150_000
    )
    d3 = _by_dir(recs3)
    assert "rate_mbps" not in d3["in"].fields and "restarted" in d3["in"].fields["note"]


def test_util_against_dsl_sync_rate() -> None:
    vb = vb_of("draytek_vdsl")
    # Pick the LAN port as "WAN" only to get counters that move; the sync rate comes from
    # the VDSL line (110162 kbit/s down).
    c_in = "1.3.6.1.2.1.2.2.1.10.1"
    s0 = snmp.sample_of(snmp.interfaces(vb), 24800, 0)
    vb2 = {**vb, c_in: vb[c_in] + 41_310_750, snmp.SYS_UPTIME: 24800 + 3000}
    recs, _ = snmp.records_from_varbinds(
        vb2,
        base_tags={"site": "A81001", "tech": "fttc"},
        device="r1",
        prev=s0,
        time_ms=30_000,
        wan_pattern="^LAN$",
    )
    d = _by_dir(recs)
    assert d["in"].fields["rate_mbps"] == pytest.approx(11.0162)
    assert d["in"].fields["util_sync_pct"] == pytest.approx(10.0)


def test_parse_snmprec_types() -> None:
    vb = snmp.parse_snmprec(
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.7367\n1.3.6.1.2.1.1.5.0|4|modem01\n"
        "1.3.6.1.2.1.10.94.1.1.2.1.6.4|4x|53484f5754494d45\n1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615\n"
        "garbage line\n1.3.6.1.2.1.2.2.1.10.1|65:numeric|rate=1\n"
    )
    assert vb == {
        "1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.7367",
        "1.3.6.1.2.1.1.5.0": b"modem01",
        "1.3.6.1.2.1.10.94.1.1.2.1.6.4": b"SHOWTIME",
        "1.3.6.1.2.1.31.1.1.1.6.1": 2**64 - 1,
    }


# ---------------------------------------------------------------------- over the wire


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _edit(text: str, values: dict[str, str]) -> str:
    """Replace whole lines (same OID, so the file stays in OID order for snmpsim)."""
    out = []
    for line in text.splitlines():
        oid = line.split("|", 1)[0]
        out.append(f"{oid}|{values.pop(oid)}" if oid in values else line)
    assert not values, f"OIDs not in the recording: {values}"
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def snmpsim() -> Iterator[int]:
    """snmpsim serving the recordings (community = file name) plus variants made here."""
    tmp = Path(tempfile.mkdtemp(prefix="nr-snmpsim-"))
    data = tmp / "data"
    data.mkdir()
    for f in DATA.glob("*.snmprec"):
        shutil.copy(f, data / f.name)
    dray = (DATA / "draytek_vdsl.snmprec").read_text("utf-8", "surrogateescape")
    # Growing counters on the LAN port: 1.25 MB/s in (10 Mbit/s), 0.25 MB/s out (2 Mbit/s).
    (data / "draytek_grow.snmprec").write_text(
        _edit(
            dray,
            {
                "1.3.6.1.2.1.2.2.1.10.1": "65:numeric|rate=1250000,initial=1000",
                "1.3.6.1.2.1.2.2.1.16.1": "65:numeric|rate=250000,initial=1000",
            },
        ),
        "utf-8",
        "surrogateescape",
    )
    vrp = (DATA / "vrp_ar169sfp.snmprec").read_text("utf-8", "surrogateescape")
    up = 892464591
    # A pair 60 s apart (agent time) across a Counter64 wrap, and an agent that restarted.
    (data / "vrp_a.snmprec").write_text(
        _edit(
            vrp,
            {
                "1.3.6.1.2.1.31.1.1.1.6.7": f"70|{2**64 - 1000}",
                "1.3.6.1.2.1.31.1.1.1.10.7": "70|5000000000",
            },
        ),
        "utf-8",
        "surrogateescape",
    )
    (data / "vrp_b.snmprec").write_text(
        _edit(
            vrp,
            {
                "1.3.6.1.2.1.1.3.0": f"67|{up + 6000}",
                "1.3.6.1.2.1.31.1.1.1.6.7": "70|74999000",
                "1.3.6.1.2.1.31.1.1.1.10.7": "70|5015000000",
            },
        ),
        "utf-8",
        "surrogateescape",
    )
    (data / "vrp_restart.snmprec").write_text(
        _edit(vrp, {"1.3.6.1.2.1.1.3.0": "67|1200"}), "utf-8", "surrogateescape"
    )
    # A device that stops answering in the middle of ifXTable (ifName of ifIndex 9).
    (data / "vrp_partial.snmprec").write_text(
        _edit(vrp, {"1.3.6.1.2.1.31.1.1.1.1.9": "4:delay|value=Cellular0/0/0,wait=1500"}),
        "utf-8",
        "surrogateescape",
    )
    port = _free_udp_port()
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    log = open(tmp / "snmpsim.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "snmpsim-command-responder"),
            f"--data-dir={data}",
            f"--cache-dir={tmp / 'cache'}",
            f"--agent-udpv4-endpoint=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = subprocess.run(
                [
                    "snmpget",
                    "-v2c",
                    "-c",
                    "draytek_vdsl",
                    "-t",
                    "0.3",
                    "-r",
                    "0",
                    f"127.0.0.1:{port}",
                    "1.3.6.1.2.1.1.3.0",
                ],
                capture_output=True,
            )
            if r.returncode == 0:
                break
            assert proc.poll() is None, (tmp / "snmpsim.log").read_text()[-2000:]
            time.sleep(0.3)
        else:
            pytest.fail("snmpsim did not start: " + (tmp / "snmpsim.log").read_text()[-2000:])
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


INVENTORY = """\
version: 1
sites:
  - ods: A81001
    name: Test practice
    type: gp_practice
    icb: QHM
    link: {{tech: {tech}, down_mbps: 80, up_mbps: 20}}
    router:
      host: 127.0.0.1
      vendor: {vendor}
{wan}      snmp: {snmp}
"""


def _site(
    tmp_path: Path,
    snmp_cfg: str,
    tech: str = "fttc",
    vendor: str = "generic",
    wan: str | None = None,
) -> tuple[Path, inventory.Site]:
    p = tmp_path / "inv.yaml"
    wan_line = f"      wan_interface: '{wan}'\n" if wan else ""
    p.write_text(INVENTORY.format(tech=tech, vendor=vendor, wan=wan_line, snmp=snmp_cfg))
    inv = inventory.load(p)
    return p, inv.sites[0]


def _collect(site: inventory.Site, state: Path, **spec: object) -> list[Record]:
    plugin = registry.get("collector", "snmp")
    ctx = registry.Context(site=site, state_dir=state)
    return asyncio.run(plugin.run(ctx, plugin.make_spec(dict(spec))))


def _v2c(port: int, timeout: float = 1.0) -> str:
    return f'{{version: "2c", community: "env:NR_T_COMM", port: {port}, timeout_s: {timeout}, retries: 0}}'


def test_snmpsim_draytek_over_the_wire_equals_parsing_the_file(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "draytek_vdsl")
    _, site = _site(tmp_path, _v2c(snmpsim), tech="adsl", vendor="draytek")
    recs = _collect(site, tmp_path / "state")
    dsl = [r for r in recs if r.measurement == "dsl_line"]
    assert len(dsl) == 1 and dsl[0].ok and dsl[0].tags["method"] == "snmp"
    offline = snmp.dsl_lines(vb_of("draytek_vdsl"), snmp.interfaces(vb_of("draytek_vdsl")), 1.0)[0]
    for k, v in offline.fields().items():
        if v is not None and k != "tech_mismatch":
            assert dsl[0].fields[k] == v, k
    assert dsl[0].tags["detected_tech"] == "vdsl2"
    assert dsl[0].fields["tech_mismatch"] is True  # declared ADSL, trains VDSL2
    assert dsl[0].fields["sync_down_kbps"] == 110162.0
    state = snmp.state_path(tmp_path / "state", "A81001", "127.0.0.1")
    assert json.loads(state.read_text())["uptime_cs"] == 24800


def test_snmpsim_growing_counters_give_the_configured_rate(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "draytek_grow")
    _, site = _site(tmp_path, _v2c(snmpsim), wan="^LAN$")
    first = _collect(site, tmp_path / "s")
    assert {r.tags["ifname"] for r in first if r.measurement == "if_traffic"} == {"LAN"}
    time.sleep(1.5)
    d = _by_dir(_collect(site, tmp_path / "s"))
    # sysUpTime is frozen in the recording, so the wall clock times the interval.
    assert d["in"].fields["interval_source"] == "wallclock"
    assert d["in"].fields["rate_mbps"] == pytest.approx(10.0, rel=0.2)
    assert d["out"].fields["rate_mbps"] == pytest.approx(2.0, rel=0.2)
    assert d["in"].fields["util_contract_pct"] == pytest.approx(12.5, rel=0.2)
    assert d["in"].fields["counter_bits"] == 32


def test_snmpsim_counter64_wrap_then_agent_restart(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, site = _site(tmp_path, _v2c(snmpsim), tech="fttp")
    state = tmp_path / "s"
    monkeypatch.setenv("NR_T_COMM", "vrp_a")
    _collect(site, state)
    monkeypatch.setenv("NR_T_COMM", "vrp_b")
    d = _by_dir(_collect(site, state))
    assert d["in"].tags["ifname"] == "GigabitEthernet0/0/4"
    assert d["in"].fields["interval_source"] == "sysUpTime" and d["in"].fields["interval_s"] == 60.0
    assert d["in"].fields["rate_mbps"] == pytest.approx(10.0)  # 75 MB across the 2^64 wrap
    assert d["out"].fields["rate_mbps"] == pytest.approx(2.0)
    assert d["in"].fields["util_pct"] == pytest.approx(1.0)
    # Declared FTTP, alias "*** FTTH Link ***" on an Ethernet port: an ONT in front looks the
    # same, so the router can neither confirm nor contradict it.
    assert d["in"].tags["detected_tech"] == "ethernet" and "tech_mismatch" not in d["in"].fields
    assert d["in"].fields["tech_check"] == "unverifiable"
    assert (
        "FTTH Link" in d["in"].fields["wan_reason"]
        and "ifType 6" in d["in"].fields["tech_evidence"]
    )
    monkeypatch.setenv("NR_T_COMM", "vrp_restart")
    d = _by_dir(_collect(site, state))
    assert "rate_mbps" not in d["in"].fields and "restarted" in d["in"].fields["note"]


def test_snmpsim_wrong_community_fails_fast(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "no-such-community")
    _, site = _site(tmp_path, _v2c(snmpsim, timeout=0.5))
    t = time.monotonic()
    recs = _collect(site, tmp_path / "s")
    assert time.monotonic() - t < 5
    assert {r.measurement for r in recs} == {"if_traffic", "dsl_line"}
    assert all(r.result == "timeout" for r in recs)
    assert "wrong community" in recs[0].fields["reason"]
    assert "no-such-community" not in json.dumps([r.to_dict() for r in recs])  # never logged


def test_snmpsim_device_stopping_mid_table_is_a_failed_record(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "vrp_partial")
    _, site = _site(tmp_path, _v2c(snmpsim, timeout=0.5))
    t = time.monotonic()
    recs = _collect(site, tmp_path / "s", max_repetitions=3)
    assert time.monotonic() - t < 10
    assert all(r.result == "timeout" for r in recs)
    reason = recs[0].fields["reason"]
    assert "ifXTable.1 walk stopped after" in reason and "partial table" in reason
    assert not snmp.state_path(tmp_path / "s", "A81001", "127.0.0.1").exists()


def test_cli_collect_snmp_json_is_clean(
    snmpsim: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "teldat_teldatvdsl2")
    inv, _ = _site(tmp_path, _v2c(snmpsim))
    r = CliRunner().invoke(
        collect,
        [
            "snmp",
            "--site",
            "A81001",
            "-i",
            str(inv),
            "--format",
            "json",
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = [Record.from_dict(d) for d in json.loads(r.stdout)]
    dsl = [x for x in recs if x.measurement == "dsl_line"]
    assert dsl[0].tags["ifname"] == "atm0/0" and dsl[0].fields["line_up"] is False
    # The only physical port up is ethernet0/0; ppp10 counts what l2tp10 counts (a tunnel).
    assert {x.tags["ifname"] for x in recs if x.measurement == "if_traffic"} == {"ethernet0/0.10"}
    # Bad input: one line, exit 2, no traceback.
    r = CliRunner().invoke(collect, ["snmp", "--site", "Z99999", "-i", str(inv)])
    assert r.exit_code == 2 and "no site with ODS code Z99999" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(collect, ["snmp", "--site", "A81001", "-i", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "file not found" in r.output


# ----------------------------------------------------------------------- real snmpd

SNMPD_CONF = """\
agentAddress udp:127.0.0.1:{port}
rocommunity nr-community-ok 127.0.0.1
createUser nrv3user SHA "nr-auth-passphrase" AES "nr-priv-passphrase"
rouser nrv3user priv
sysLocation netready test
"""


@pytest.fixture(scope="module")
def snmpd() -> Iterator[int]:
    """Debian's net-snmp snmpd on a loopback port with a throwaway config and state dir."""
    tmp = Path(tempfile.mkdtemp(prefix="nr-snmpd-"))
    port = _free_udp_port()
    conf = tmp / "snmpd.conf"
    conf.write_text(SNMPD_CONF.format(port=port))
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "persist"), "MIBS": ""}
    proc = subprocess.Popen(
        [
            "/usr/sbin/snmpd",
            "-f",
            "-C",
            "-c",
            str(conf),
            "-Lf",
            str(tmp / "snmpd.log"),
            "-p",
            str(tmp / "snmpd.pid"),
            "-M",
            "/usr/share/snmp/mibs",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = subprocess.run(
                [
                    "snmpget",
                    "-v2c",
                    "-c",
                    "nr-community-ok",
                    "-t",
                    "0.3",
                    "-r",
                    "0",
                    f"127.0.0.1:{port}",
                    "1.3.6.1.2.1.1.3.0",
                ],
                capture_output=True,
            )
            if r.returncode == 0:
                break
            assert proc.poll() is None, (tmp / "snmpd.log").read_text()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("snmpd did not start")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _v3(port: int, auth: str = "NR_T_AUTH") -> str:
    return (
        f'{{version: "3", user: nrv3user, auth_protocol: sha, auth_key: "env:{auth}", '
        f'priv_protocol: aes, priv_key: "env:NR_T_PRIV", port: {port}, timeout_s: 1, retries: 0}}'
    )


def _lo_records(recs: list[Record]) -> dict[str, Record]:
    return {
        r.tags["direction"]: r
        for r in recs
        if r.measurement == "if_traffic" and r.tags.get("ifname") == "lo"
    }


def test_snmpd_v2c_reads_real_64bit_counters(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_COMM", "nr-community-ok")
    _, site = _site(tmp_path, _v2c(snmpd), wan="^lo$")
    recs = _collect(site, tmp_path / "s")
    lo = _lo_records(recs)
    assert lo["in"].ok and lo["in"].fields["counter_bits"] == 64
    assert lo["in"].fields["iftype"] == 24 and lo["in"].fields["oper_up"] is True
    # The agent's counter is the kernel's: it only grows and is a real number of octets.
    with open("/proc/net/dev") as f:
        kernel = next(int(ln.split(":")[1].split()[0]) for ln in f if ln.strip().startswith("lo:"))
    assert 0 < lo["in"].fields["octets"] <= kernel
    assert not [r for r in recs if r.measurement == "dsl_line"]  # no DSL MIB on a Linux box


def test_snmpd_v3_authpriv_sha_aes(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_AUTH", "nr-auth-passphrase")
    monkeypatch.setenv("NR_T_PRIV", "nr-priv-passphrase")
    _, site = _site(tmp_path, _v3(snmpd), wan="^lo$")
    state = tmp_path / "s"
    _collect(site, state)
    time.sleep(1.2)
    lo = _lo_records(_collect(site, state, interfaces="all"))
    assert lo["in"].ok and lo["in"].fields["counter_bits"] == 64
    assert lo["in"].fields["rate_mbps"] >= 0 and lo["in"].fields["interval_s"] > 0.5


def test_snmpd_v3_wrong_auth_key_is_auth_failed_quickly(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_BAD", "not-the-passphrase")
    monkeypatch.setenv("NR_T_PRIV", "nr-priv-passphrase")
    _, site = _site(tmp_path, _v3(snmpd, auth="NR_T_BAD"))
    t = time.monotonic()
    recs = _collect(site, tmp_path / "s")
    assert time.monotonic() - t < 5
    assert {r.result for r in recs} == {"auth_failed"}, recs[0].fields
    assert "not-the-passphrase" not in json.dumps([r.to_dict() for r in recs])


def test_snmpd_v3_wrong_priv_key_or_user_fail_with_a_reason(
    snmpd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NR_T_AUTH", "nr-auth-passphrase")
    monkeypatch.setenv("NR_T_PRIV", "not-the-priv-passphrase")
    _, site = _site(tmp_path, _v3(snmpd), wan="^lo$")
    t = time.monotonic()
    recs = _collect(site, tmp_path / "s")
    assert time.monotonic() - t < 5
    # net-snmp drops what it cannot decrypt without a report: a timeout that names the cause.
    assert {r.result for r in recs} == {"timeout"}
    assert "wrong v3 priv key" in recs[0].fields["reason"]
    monkeypatch.setenv("NR_T_PRIV", "nr-priv-passphrase")
    _, site = _site(tmp_path, _v3(snmpd).replace("nrv3user", "nobody"))
    recs = _collect(site, tmp_path / "s")
    assert {r.result for r in recs} == {"auth_failed"} and "Unknown USM user" in recs[0].fields[
        "reason"
    ]


def test_all_interfaces_and_no_wan_found() -> None:
    vb = vb_of("tplink_td-w9970")
    recs, _ = snmp.records_from_varbinds(
        vb, base_tags={"site": "A81001"}, device="r1", prev=None, time_ms=0, interfaces_mode="all"
    )
    traffic = [r for r in recs if r.measurement == "if_traffic"]
    assert len(traffic) == 2 * len(snmp.interfaces(vb))  # in and out for each of 6 ports
    assert {r.tags["ifname"] for r in traffic if r.fields["is_wan"]} == {"ppp1"}
    # Every interface down: the public address on ppp1 is still evidence, and the reason says
    # both sides of it.
    down = {k: (2 if k.startswith(f"{snmp.IF_ENTRY}.8.") else v) for k, v in vb.items()}
    recs, _ = snmp.records_from_varbinds(
        down, base_tags={"site": "A81001"}, device="r1", prev=None, time_ms=0
    )
    reason = next(r for r in recs if r.measurement == "if_traffic").fields["wan_reason"]
    assert "public address 217.14.179.20" in reason and "ifOperStatus down" in reason
    # An access point (its only address on the LAN bridge, its WAN VLAN down): no guess, a
    # failed record that says what to configure.
    recs, _ = snmp.records_from_varbinds(
        vb_of("asus_asuswrt-merlin-ap"), base_tags={"site": "A81001"}, device="r1", prev=None,
        time_ms=0,
    )  # fmt: skip
    [r] = [r for r in recs if r.measurement == "if_traffic"]
    assert r.result == "error" and "router.wan_interface" in r.fields["reason"]
