"""Router collector over SNMP: interface traffic (IF-MIB) and DSL line figures (ADSL/VDSL2 MIBs).

Registered as collector ``snmp``. One poll reads sysUpTime, ifTable + ifXTable, the ADSL-LINE-MIB
(1.3.6.1.2.1.10.94) line/phys/channel tables and the VDSL2-LINE-MIB (1.3.6.1.2.1.10.251) line,
band and channel-status tables, then writes:

- ``if_traffic``: one record per interface and direction (``direction`` tag ``in``/``out``; on the
  WAN interface ``in`` is the download). Bit rates come from the counter delta since the
  previous poll, whose counters are kept in a JSON file under ``ctx.state_dir``
  (``snmp/<site>__<device>.json``). The first poll of a device only records a baseline.
- ``dsl_line``: one record per DSL line (see ``collectors/dsl.py``), ``method=snmp``.

Everything that interprets varbinds is a pure function over ``{oid: value}`` dicts
(``oid`` is dotted without a leading dot, ``value`` is ``int``, ``bytes`` or ``str``), so the
same code is tested on LibreNMS' recorded walks (``parse_snmprec``) and on live agents.
Only ``poll`` does I/O (pysnmp 7, asyncio).

A failed poll (timeout, wrong community or v3 credentials, a table that stops half-way) is a
failed ``if_traffic`` and ``dsl_line`` record with a one-line reason, never an exception or a
hang: every request has the inventory's timeout/retries and the whole poll a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from netready.collectors.dsl import (
    DSL_FIELDS,
    DSL_IFTYPES,
    IFTYPE_TECH,
    DslLine,
    dsl_record,
    tech_from_ifname,
    tech_mismatch,
)
from pydantic import BaseModel, ConfigDict, Field

from netready.errors import ConfigError
from netready.plugin import Context, Metric, Plugin
from netready.records import Record, failure, now_ms

Value = int | bytes | str
Varbinds = dict[str, Value]

# ------------------------------------------------------------------------------------ OIDs

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"

IF_ENTRY = "1.3.6.1.2.1.2.2.1"
IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"
#: ifTable columns we read: descr, type, speed, operStatus, in/out octets, discards, errors.
IF_COLUMNS = (2, 3, 5, 8, 10, 13, 14, 16, 19, 20)
#: ifXTable columns: name, HC in/out octets, highSpeed, alias.
IFX_COLUMNS = (1, 6, 10, 15, 18)

ADSL_LINE = "1.3.6.1.2.1.10.94.1.1.1.1"  # adslLineEntry
ADSL_ATUC_PHYS = "1.3.6.1.2.1.10.94.1.1.2.1"  # central office end (measures upstream)
ADSL_ATUR_PHYS = "1.3.6.1.2.1.10.94.1.1.3.1"  # remote end, the router (measures downstream)
ADSL_ATUC_CHAN = "1.3.6.1.2.1.10.94.1.1.4.1"  # ATU-C transmit = downstream
ADSL_ATUR_CHAN = "1.3.6.1.2.1.10.94.1.1.5.1"  # ATU-R transmit = upstream
XDSL2_LINE = "1.3.6.1.2.1.10.251.1.1.1.1"  # xdsl2LineEntry (20/21: attainable Ds/Us)
XDSL2_BAND = "1.3.6.1.2.1.10.251.1.1.2.1"  # xdsl2LineBandEntry (2 LnAtten, 3 SigAtten, 4 SNR)
XDSL2_CHAN = "1.3.6.1.2.1.10.251.1.2.2.1"  # xdsl2ChannelStatusEntry (2 rate, 4 delay)

#: Octet counter columns, walked first and back to back so one timestamp fits them all.
COUNTER_WALKS: tuple[tuple[str, str], ...] = (
    ("ifXTable.6", f"{IFX_ENTRY}.6"),
    ("ifXTable.10", f"{IFX_ENTRY}.10"),
    ("ifTable.10", f"{IF_ENTRY}.10"),
    ("ifTable.16", f"{IF_ENTRY}.16"),
)

#: What one poll walks, in order: (name for messages, subtree).
WALKS: tuple[tuple[str, str], ...] = (
    *COUNTER_WALKS,
    *((f"ifTable.{c}", f"{IF_ENTRY}.{c}") for c in IF_COLUMNS if c not in (10, 16)),
    *((f"ifXTable.{c}", f"{IFX_ENTRY}.{c}") for c in IFX_COLUMNS if c not in (6, 10)),
    ("adslLineTable", ADSL_LINE),
    ("adslAtucPhysTable", ADSL_ATUC_PHYS),
    ("adslAturPhysTable", ADSL_ATUR_PHYS),
    ("adslAtucChanTable", ADSL_ATUC_CHAN),
    ("adslAturChanTable", ADSL_ATUR_CHAN),
    ("xdsl2LineTable.20", f"{XDSL2_LINE}.20"),
    ("xdsl2LineTable.21", f"{XDSL2_LINE}.21"),
    ("xdsl2LineBandTable", XDSL2_BAND),
    ("xdsl2ChannelStatusTable.2", f"{XDSL2_CHAN}.2"),
    ("xdsl2ChannelStatusTable.4", f"{XDSL2_CHAN}.4"),
)

#: sysObjectID prefixes of vendors that put whole dB where ADSL-LINE-MIB says tenths.
WHOLE_DB_VENDORS: dict[str, str] = {"1.3.6.1.4.1.7367": "draytek"}

# ------------------------------------------------------------------------ snmprec reader


def parse_snmprec(text: str) -> Varbinds:
    """snmpsim ``.snmprec`` text (``OID|TYPE|VALUE`` lines) -> ``{oid: value}``.

    Types: 4 OctetString (text), 4x OctetString (hex), 6 OID, 64 IpAddress, 2/65/66/67/70
    numbers. Variation tags (``65:numeric``) and unknown types are skipped.
    """
    out: Varbinds = {}
    for line in text.splitlines():
        parts = line.split("|", 2)
        if len(parts) != 3:
            continue
        oid, typ, val = parts
        oid = oid.strip().lstrip(".")
        if typ == "4":
            out[oid] = val.encode("utf-8", "surrogateescape")
        elif typ == "4x":
            try:
                out[oid] = bytes.fromhex(val)
            except ValueError:
                continue
        elif typ in ("6", "64"):
            out[oid] = val
        elif typ in ("2", "65", "66", "67", "70"):
            try:
                out[oid] = int(val)
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------------- table helpers


def column(vb: Mapping[str, Value], col_oid: str) -> dict[tuple[int, ...], Value]:
    """All rows of one column: ``{index tuple: value}``."""
    prefix = col_oid + "."
    out: dict[tuple[int, ...], Value] = {}
    for oid, v in vb.items():
        if oid.startswith(prefix):
            try:
                out[tuple(int(x) for x in oid[len(prefix) :].split("."))] = v
            except ValueError:
                continue
    return out


def _int(v: Value | None) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _text(v: Value | None) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").replace("\x00", "").strip()
    if isinstance(v, str):
        return v.strip()
    return "" if v is None else str(v)


# ------------------------------------------------------------------------- interfaces


@dataclass
class Iface:
    index: int
    name: str
    descr: str = ""
    alias: str = ""
    iftype: int | None = None
    speed_mbps: float | None = None  # ifHighSpeed, else ifSpeed / 1e6; None if 0/absent
    oper_up: bool | None = None
    counter_bits: int | None = None  # 64 (ifHC*), 32 (ifIn/OutOctets) or None
    in_octets: int | None = None
    out_octets: int | None = None
    in_errors: int | None = None
    out_errors: int | None = None
    in_discards: int | None = None
    out_discards: int | None = None


def interfaces(vb: Mapping[str, Value]) -> dict[int, Iface]:
    """ifTable + ifXTable -> ``{ifIndex: Iface}``; 64-bit counters preferred over 32-bit."""
    cols = {c: column(vb, f"{IF_ENTRY}.{c}") for c in IF_COLUMNS}
    xcols = {c: column(vb, f"{IFX_ENTRY}.{c}") for c in IFX_COLUMNS}
    indexes = {i[0] for d in (*cols.values(), *xcols.values()) for i in d if len(i) == 1}
    out: dict[int, Iface] = {}
    for ix in sorted(indexes):
        k = (ix,)
        descr = _text(cols[2].get(k))
        name = _text(xcols[1].get(k)) or descr or f"ifIndex{ix}"
        hs = _int(xcols[15].get(k))
        sp = _int(cols[5].get(k))
        speed = float(hs) if hs else (sp / 1e6 if sp and sp < 4294967295 else None)
        oper = _int(cols[8].get(k))
        hc_in, hc_out = _int(xcols[6].get(k)), _int(xcols[10].get(k))
        in32, out32 = _int(cols[10].get(k)), _int(cols[16].get(k))
        if hc_in is not None and hc_out is not None:
            bits, i_o, o_o = 64, hc_in, hc_out
        elif in32 is not None and out32 is not None:
            bits, i_o, o_o = 32, in32, out32
        else:
            bits, i_o, o_o = None, None, None
        out[ix] = Iface(
            index=ix,
            name=name,
            descr=descr,
            alias=_text(xcols[18].get(k)),
            iftype=_int(cols[3].get(k)),
            speed_mbps=speed,
            oper_up=None if oper is None else oper == 1,
            counter_bits=bits,
            in_octets=i_o,
            out_octets=o_o,
            in_errors=_int(cols[14].get(k)),
            out_errors=_int(cols[20].get(k)),
            in_discards=_int(cols[13].get(k)),
            out_discards=_int(cols[19].get(k)),
        )
    return out


#: ifTypes never chosen as the WAN automatically: other, loopback, tunnel, voice, wlan,
#: bridge, propVirtual, l2vlan-less virtuals, ADSL/VDSL channel sub-layers.
NOT_WAN_IFTYPES: frozenset[int] = frozenset({1, 24, 53, 71, 100, 101, 103, 104, 124, 125, 131, 209})
_WAN_WORDS = re.compile(
    r"wan|internet|ftt[hcp]|fibre|fiber|uplink|\bisp\b|outside|liaison|dsl|efm", re.IGNORECASE
)
_WAN_NAMES = re.compile(r"^(ptm|atm|dsl|vdsl|adsl|efm|wan|dialer|ppp|pppoe)", re.IGNORECASE)


def choose_wan(ifaces: Mapping[int, Iface], pattern: str | None = None) -> tuple[Iface | None, str]:
    """The WAN interface and how it was chosen (``inventory`` or ``auto``).

    With ``pattern`` (the inventory's ``router.wan_interface``), the first interface whose
    ifName, ifAlias or ifDescr matches the regex (oper-up ones first). Without it, a score
    over oper-up interfaces that are not loopback/virtual/voice/wireless/bridge:
    +100 if the alias mentions wan/internet/fibre/FTTx/uplink/ISP/DSL/EFM (a human wrote it),
    +50 if the name or descr does, or if the name starts ptm/atm/dsl/efm/wan/dialer/ppp,
    +40 for a DSL ifType (94, 97, 169, 251...), +30 for ppp (23); ties go to the interface
    with more octets, then the lower ifIndex.
    """
    if pattern:
        rx = re.compile(pattern)
        hits = [
            i
            for i in ifaces.values()
            if rx.search(i.name) or rx.search(i.alias) or rx.search(i.descr)
        ]
        hits.sort(key=lambda i: (not i.oper_up, i.index))
        return (hits[0] if hits else None), "inventory"
    best: tuple[tuple[int, int, int], Iface] | None = None
    for i in ifaces.values():
        if i.oper_up is False or i.iftype in NOT_WAN_IFTYPES:
            continue
        score = 0
        if i.alias and _WAN_WORDS.search(i.alias):
            score += 100
        if _WAN_WORDS.search(i.name) or _WAN_WORDS.search(i.descr) or _WAN_NAMES.match(i.name):
            score += 50
        if i.iftype in DSL_IFTYPES:
            score += 40
        if i.iftype == 23:
            score += 30
        octets = (i.in_octets or 0) + (i.out_octets or 0)
        key = (score, octets, -i.index)
        if best is None or key > best[0]:
            best = (key, i)
    return (best[1] if best else None), "auto"


# ----------------------------------------------------------------------------- DSL lines

_UNAVAILABLE = 2147483646  # VDSL2 MIB: 2147483646 "not measurable", 2147483647 "not available"


def _ok(v: Value | None) -> int | None:
    """An integer reading, or None for the MIBs' special 'not available' values."""
    n = _int(v)
    if n is None or n >= _UNAVAILABLE:
        return None
    return n


def db_scale_for(vb: Mapping[str, Value], mode: str, vendor: str | None = None) -> float:
    """dB per unit of ADSL-LINE-MIB SNR/attenuation: 0.1 per the MIB, 1.0 for DrayTek.

    DrayTek (sysObjectID 1.3.6.1.4.1.7367) reports whole dB: its Vigor165 recording says
    SNR margin 5 on a line synced at 110 Mbit/s (0.5 dB would not hold sync) and
    attenuation 13/16 (plausible dB for a VDSL2 17a line). ``mode`` overrides.
    """
    if mode == "tenths":
        return 0.1
    if mode == "whole":
        return 1.0
    if vendor == "draytek":
        return 1.0
    oid = _text(vb.get(SYS_OBJECT_ID)).lstrip(".")
    for prefix in WHOLE_DB_VENDORS:
        if oid == prefix or oid.startswith(prefix + "."):
            return 1.0
    return 0.1


def _assign_channels(
    rows: Mapping[tuple[int, ...], Value], lines: list[int]
) -> dict[int, list[Value]]:
    """Channel rows (indexed by a channel ifIndex, or the line's own) -> line ifIndex.

    A channel whose ifIndex is not a line belongs to the nearest line with a lower ifIndex
    (Teldat: line 17, fast channel 18, interleaved channel 19); with one line, to that line.
    """
    out: dict[int, list[Value]] = {}
    for idx, v in rows.items():
        ix = idx[0]
        if ix in lines:
            owner = ix
        else:
            lower = [ln for ln in lines if ln < ix]
            owner = max(lower) if lower else (lines[0] if len(lines) == 1 else None)
        if owner is not None:
            out.setdefault(owner, []).append(v)
    return out


def dsl_lines(
    vb: Mapping[str, Value], ifaces: Mapping[int, Iface], db_scale: float = 0.1
) -> list[DslLine]:
    """ADSL-LINE-MIB + VDSL2-LINE-MIB -> one ``DslLine`` per line ifIndex.

    Directions: ADSL-LINE-MIB ATU-C phys values are measured by the exchange end, so its SNR
    margin and attenuation are *upstream* and the ATU-R ones *downstream*; ATU-C attainable
    rate and ATU-C channel rate are *downstream*. VDSL2 channel status unit xtuc(1) is
    downstream, xtur(2) upstream (the DrayTek recording: unit 1 = 110162000 = its ifSpeed).
    VDSL2 band 1 is the whole upstream, band 2 the whole downstream (0.1 dB). VDSL2 figures
    win over ADSL-MIB ones when both exist. A line that is not up gets its sync rates (0 when
    the device says so) but no SNR, attenuation, attainable rate or delay: those are
    meaningless untrained and absent means "no data".
    """
    atuc = {c: column(vb, f"{ADSL_ATUC_PHYS}.{c}") for c in (4, 5, 8)}
    atur = {c: column(vb, f"{ADSL_ATUR_PHYS}.{c}") for c in (4, 5, 8)}
    adsl_line = column(vb, f"{ADSL_LINE}.1")
    x_att_ds = column(vb, f"{XDSL2_LINE}.20")
    x_att_us = column(vb, f"{XDSL2_LINE}.21")
    band = {c: column(vb, f"{XDSL2_BAND}.{c}") for c in (2, 4)}
    x_rate = column(vb, f"{XDSL2_CHAN}.2")
    x_delay = column(vb, f"{XDSL2_CHAN}.4")

    adsl_idx = {i[0] for d in (*atuc.values(), *atur.values(), adsl_line) for i in d}
    vdsl_idx = {i[0] for d in (x_att_ds, x_att_us, *band.values()) for i in d}
    lines = sorted(adsl_idx | vdsl_idx)
    if not lines and x_rate:
        lines = sorted({i[0] for i in x_rate})
    # DSL interfaces the MIBs say nothing about (Zyxel ptm0, OneAccess Gshdsl0/x): a line
    # with only its state and kind. Sub-interfaces (a dot in the name) are layers, not lines.
    bare = [
        i
        for i in ifaces.values()
        if i.iftype in DSL_IFTYPES and i.index not in lines and "." not in i.name
    ]
    extra = [
        DslLine(
            ifname=i.name,
            detected_tech=IFTYPE_TECH[i.iftype or 0],
            detected_by="iftype",
            line_up=i.oper_up,
        )
        for i in sorted(bare, key=lambda i: i.index)
    ]
    if not lines:
        return extra

    # ADSL channels: rate (col 2) and interleave delay (col 1), indexed by channel ifIndex.
    c_rate = {
        c: column(vb, f"{tbl}.2") for c, tbl in (("dn", ADSL_ATUC_CHAN), ("up", ADSL_ATUR_CHAN))
    }
    c_delay = {
        c: column(vb, f"{tbl}.1") for c, tbl in (("dn", ADSL_ATUC_CHAN), ("up", ADSL_ATUR_CHAN))
    }
    # VDSL2 channel status is indexed (ifIndex, unit): split by unit first.
    x_rate_dn = {(i[0],): v for i, v in x_rate.items() if len(i) == 2 and i[1] == 1}
    x_rate_up = {(i[0],): v for i, v in x_rate.items() if len(i) == 2 and i[1] == 2}
    x_del_dn = {(i[0],): v for i, v in x_delay.items() if len(i) == 2 and i[1] == 1}
    x_del_up = {(i[0],): v for i, v in x_delay.items() if len(i) == 2 and i[1] == 2}

    def chan(rows: Mapping[tuple[int, ...], Value]) -> dict[int, list[Value]]:
        return _assign_channels(rows, lines)

    a_rate_dn, a_rate_up = chan(c_rate["dn"]), chan(c_rate["up"])
    a_del_dn, a_del_up = chan(c_delay["dn"]), chan(c_delay["up"])
    v_rate_dn, v_rate_up = chan(x_rate_dn), chan(x_rate_up)
    v_del_dn, v_del_up = chan(x_del_dn), chan(x_del_up)

    def rate(vdsl: list[Value], adsl: list[Value]) -> float | None:
        for vals in (vdsl, adsl):
            nums = [n for n in (_ok(v) for v in vals) if n is not None]
            if nums and max(nums) > 0:
                return max(nums) / 1000.0
        for vals in (vdsl, adsl):
            nums = [n for n in (_ok(v) for v in vals) if n is not None]
            if nums:
                return 0.0
        return None

    def delay(vdsl: list[Value], adsl: list[Value]) -> float | None:
        for vals in (vdsl, adsl):
            nums = [n for n in (_ok(v) for v in vals) if n is not None]
            if nums:
                return float(max(nums))
        return None

    def band_db(col: int, ix: int, whole: int, sub: tuple[int, ...]) -> float | None:
        v = _ok(band[col].get((ix, whole)))
        if v is not None:
            return v / 10.0
        subs = [n for n in (_ok(band[col].get((ix, b))) for b in sub) if n is not None]
        return (sum(subs) / len(subs)) / 10.0 if subs else None

    def adsl_db(tbl: dict[int, dict[tuple[int, ...], Value]], col: int, ix: int) -> float | None:
        v = _ok(tbl[col].get((ix,)))
        return None if v is None else v * db_scale

    def bps(v: Value | None) -> float | None:
        n = _ok(v)
        return None if n is None else n / 1000.0

    out: list[DslLine] = []
    for ix in lines:
        iface = ifaces.get(ix)
        name = iface.name if iface else f"ifIndex{ix}"
        ds_bands, us_bands = (4, 6, 8, 10), (3, 5, 7, 9, 11)
        line = DslLine(ifname=name)
        line.sync_down_kbps = rate(v_rate_dn.get(ix, []), a_rate_dn.get(ix, []))
        line.sync_up_kbps = rate(v_rate_up.get(ix, []), a_rate_up.get(ix, []))
        att_dn = bps(x_att_ds.get((ix,)))
        att_up = bps(x_att_us.get((ix,)))
        line.attainable_down_kbps = att_dn if att_dn else bps(atuc[8].get((ix,)))
        line.attainable_up_kbps = att_up if att_up else bps(atur[8].get((ix,)))
        snr_dn = band_db(4, ix, 2, ds_bands)
        snr_up = band_db(4, ix, 1, us_bands)
        line.snr_margin_down_db = snr_dn if snr_dn is not None else adsl_db(atur, 4, ix)
        line.snr_margin_up_db = snr_up if snr_up is not None else adsl_db(atuc, 4, ix)
        at_dn = band_db(2, ix, 2, ds_bands)
        at_up = band_db(2, ix, 1, us_bands)
        line.atten_down_db = at_dn if at_dn is not None else adsl_db(atur, 5, ix)
        line.atten_up_db = at_up if at_up is not None else adsl_db(atuc, 5, ix)
        line.interleave_delay_ms = delay(v_del_dn.get(ix, []), a_del_dn.get(ix, []))
        line.interleave_delay_up_ms = delay(v_del_up.get(ix, []), a_del_up.get(ix, []))

        if iface is not None and iface.oper_up is not None:
            line.line_up = iface.oper_up
        else:
            line.line_up = bool(line.sync_down_kbps)
        if not line.line_up:
            line.attainable_down_kbps = line.attainable_up_kbps = None
            line.snr_margin_down_db = line.snr_margin_up_db = None
            line.atten_down_db = line.atten_up_db = None
            line.interleave_delay_ms = line.interleave_delay_up_ms = None

        # What kind of line: ifType first, then which MIB answered, then the rate.
        tech = IFTYPE_TECH.get(iface.iftype) if iface and iface.iftype in DSL_IFTYPES else None
        if tech:
            line.detected_tech, line.detected_by = tech, "iftype"
        else:
            line.detected_tech = "vdsl2" if ix in vdsl_idx else "adsl"
            line.detected_by = "dsl_mib"
        if line.detected_tech == "adsl" and (line.sync_down_kbps or 0) > 25000:
            line.detected_tech = "vdsl2"  # ADSL2+ tops out at ~24 Mbit/s downstream
        out.append(line)
    return out + extra


def detect_tech(
    lines: list[DslLine], wan: Iface | None, ifaces: Mapping[int, Iface] | None = None
) -> tuple[str, str]:
    """Access technology of the site as the router sees it: (detected_tech, detected_by).

    A DSL line that is up wins. Otherwise the WAN interface's DSL ifType, then any oper-up
    interface with a DSL ifType (SHDSL pairs under an EFM/ATM WAN), then a DSL-like
    name (``ptm0.101`` on a TP-Link whose every ifType is 6), then an Ethernet ifType
    (a fibre or Ethernet hand-off). A DSL line that is down does not make a site copper
    (Teldat: the ADSL port is untrained and the WAN runs over Ethernet).
    """
    up = [ln for ln in lines if ln.line_up]
    if up:
        return up[0].detected_tech, up[0].detected_by
    if wan is not None and wan.iftype in DSL_IFTYPES:
        return IFTYPE_TECH[wan.iftype], "iftype"
    # A DSL interface that is up, even if traffic is counted on a layer above (efm0 over
    # four Gshdsl pairs, Atm0 over Gshdsl0/0).
    for i in sorted(ifaces.values(), key=lambda i: i.index) if ifaces else ():
        if i.oper_up and i.iftype in DSL_IFTYPES:
            return IFTYPE_TECH[i.iftype], "iftype"
    if wan is not None:
        if wan.iftype in DSL_IFTYPES:
            return IFTYPE_TECH[wan.iftype], "iftype"
        by_name = tech_from_ifname(wan.name) or tech_from_ifname(wan.descr)
        if by_name:
            return by_name, "ifname"
        if wan.iftype in (6, 62, 117):
            return "ethernet", "iftype"
    return "unknown", ""


# ------------------------------------------------------------------------- traffic maths


def counter_delta(prev: int, cur: int, bits: int, max_octets: float | None) -> int | None:
    """Octets between two readings of a counter of ``bits`` bits.

    A smaller reading is a wrap if ``cur + 2**bits - prev`` is plausible (at most
    ``max_octets``, i.e. the interface's speed over the interval with 50 % slack); otherwise
    it is a discontinuity (counter reset without an agent restart) and gives ``None``.
    A 32-bit counter that wrapped more than once in one interval cannot be detected: poll a
    32-bit-only device at least every 34 s per 1 Gbit/s of traffic.
    """
    if cur >= prev:
        return cur - prev
    wrapped = cur + (1 << bits) - prev
    if max_octets is not None and wrapped > max_octets:
        return None
    return wrapped


@dataclass
class Sample:
    """What one poll keeps for the next: time, agent uptime, counters per ifIndex."""

    time_ms: int
    uptime_cs: int | None
    counters: dict[int, dict[str, int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "time_ms": self.time_ms,
            "uptime_cs": self.uptime_cs,
            "counters": {str(k): v for k, v in self.counters.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            int(d["time_ms"]),
            None if d.get("uptime_cs") is None else int(d["uptime_cs"]),
            {int(k): {kk: int(vv) for kk, vv in v.items()} for k, v in d["counters"].items()},
        )


def sample_of(ifaces: Mapping[int, Iface], uptime_cs: int | None, time_ms: int) -> Sample:
    counters: dict[int, dict[str, int]] = {}
    for i in ifaces.values():
        if i.counter_bits is None or i.in_octets is None or i.out_octets is None:
            continue
        c = {"bits": i.counter_bits, "in": i.in_octets, "out": i.out_octets}
        for k in ("in_errors", "out_errors", "in_discards", "out_discards"):
            v = getattr(i, k)
            if v is not None:
                c[k] = v
        counters[i.index] = c
    return Sample(time_ms, uptime_cs, counters)


@dataclass
class Interval:
    """How two samples relate: seconds between them, or why no rate can be computed."""

    seconds: float | None
    source: str  # sysUpTime | wallclock
    note: str | None = None  # agent restart, stale state...


def interval_between(prev: Sample | None, cur: Sample, max_interval_s: float) -> Interval:
    """Seconds between polls: the agent's sysUpTime delta when it advanced, else wall clock.

    sysUpTime going back means the agent restarted (or its 497-day TimeTicks wrapped):
    counters restarted too, so no rate this time, only a new baseline.
    """
    if prev is None:
        return Interval(None, "", "first poll of this device: baseline only")
    if prev.uptime_cs is not None and cur.uptime_cs is not None:
        if cur.uptime_cs < prev.uptime_cs:
            return Interval(
                None,
                "sysUpTime",
                f"agent restarted (sysUpTime went back from {prev.uptime_cs / 100:.0f} s "
                f"to {cur.uptime_cs / 100:.0f} s): baseline only",
            )
        if cur.uptime_cs > prev.uptime_cs:
            secs = (cur.uptime_cs - prev.uptime_cs) / 100.0
            return _bounded(secs, "sysUpTime", max_interval_s)
    secs = (cur.time_ms - prev.time_ms) / 1000.0
    return _bounded(secs, "wallclock", max_interval_s)


def _bounded(secs: float, source: str, max_interval_s: float) -> Interval:
    if secs <= 0:
        return Interval(None, source, "no time passed since the previous poll: baseline only")
    if secs > max_interval_s:
        return Interval(
            None,
            source,
            f"previous poll is {secs:.0f} s old (> {max_interval_s:.0f} s): baseline only",
        )
    return Interval(secs, source)


def traffic_records(
    ifaces: Mapping[int, Iface],
    prev: Sample | None,
    cur: Sample,
    *,
    base_tags: Mapping[str, str],
    device: str,
    which: list[int],
    wan_index: int | None,
    contract_down_mbps: float | None = None,
    contract_up_mbps: float | None = None,
    sync_down_kbps: float | None = None,
    sync_up_kbps: float | None = None,
    detected_tech: str | None = None,
    max_interval_s: float = 3600.0,
) -> list[Record]:
    """``if_traffic`` records (one per interface in ``which`` and direction). Pure function.

    Fields: ``octets`` (the raw counter, int), ``counter_bits`` (64/32), ``speed_mbps``,
    ``oper_up``, ``is_wan``, ``iftype``, ``ifalias``; with a previous sample:
    ``interval_s``, ``rate_mbps``, ``util_pct`` (against ifHighSpeed), ``errors`` and
    ``discards`` (counts in the interval); on the WAN also ``util_contract_pct`` (against the
    inventory's contracted down/up rate) and ``util_sync_pct`` (against the DSL sync rate).
    """
    iv = interval_between(prev, cur, max_interval_s)
    out: list[Record] = []
    for ix in which:
        i = ifaces.get(ix)
        c = cur.counters.get(ix)
        if i is None or c is None:
            continue
        p = prev.counters.get(ix) if (prev is not None and iv.seconds) else None
        is_wan = ix == wan_index
        for direction, key, contract, sync in (
            ("in", "in", contract_down_mbps, sync_down_kbps),
            ("out", "out", contract_up_mbps, sync_up_kbps),
        ):
            fields: dict[str, Any] = {
                "octets": c[key],
                "counter_bits": c["bits"],
                "speed_mbps": i.speed_mbps,
                "oper_up": i.oper_up,
                "is_wan": is_wan,
                "iftype": i.iftype,
                "ifalias": i.alias or None,
            }
            note = iv.note
            if p is not None and p.get("bits") == c["bits"] and iv.seconds:
                secs = iv.seconds
                speed_bps = (i.speed_mbps or 0) * 1e6
                max_octets = (speed_bps if speed_bps > 0 else 100e9) * 1.5 * secs / 8
                d = counter_delta(p[key], c[key], c["bits"], max_octets)
                if d is None:
                    note = (
                        "counter went back without an agent restart (discontinuity): baseline only"
                    )
                else:
                    mbps = d * 8 / secs / 1e6
                    fields["interval_s"] = secs
                    fields["interval_source"] = iv.source
                    fields["rate_mbps"] = mbps
                    if i.speed_mbps:
                        fields["util_pct"] = 100.0 * mbps / i.speed_mbps
                    if is_wan and contract:
                        fields["util_contract_pct"] = 100.0 * mbps / contract
                    if is_wan and sync:
                        fields["util_sync_pct"] = 100.0 * mbps * 1000.0 / sync
                    for fk, ck in (("errors", f"{key}_errors"), ("discards", f"{key}_discards")):
                        if ck in c and ck in p:
                            dd = counter_delta(p[ck], c[ck], 32, None)
                            fields[fk] = dd
            elif p is not None:
                note = f"counter width changed ({p.get('bits')} -> {c['bits']} bit): baseline only"
            elif iv.seconds:
                note = "interface not in the previous poll: baseline only"
            if note and "rate_mbps" not in fields:
                fields["note"] = note
            tags = {
                **base_tags,
                "method": "snmp",
                "device": device,
                "ifname": i.name,
                "direction": direction,
                "result": "ok",
            }
            if is_wan and detected_tech:
                tags["detected_tech"] = detected_tech
                fields["tech_mismatch"] = tech_mismatch(base_tags.get("tech"), detected_tech)
            out.append(Record("if_traffic", tags, fields, cur.time_ms))
    return out


# --------------------------------------------------------------------------- collector


class Spec(BaseModel):
    """What to read. The router, its SNMP credentials and the WAN pattern come from the
    site's inventory entry; ``host``/``port`` override them (tests point at snmpsim)."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, description="router address (overrides the inventory)")
    port: int | None = Field(None, ge=1, le=65535, description="router SNMP port (overrides)")
    device: str | None = Field(None, description="device tag (default: the router host)")
    interfaces: Literal["wan", "all"] = Field(
        "wan", description="traffic for the WAN interface only, or for every interface"
    )
    dsl: bool = Field(True, description="read the DSL line MIBs (dsl_line records)")
    dsl_db_scale: Literal["auto", "tenths", "whole"] = Field(
        "auto", description="unit of the DSL dB values: tenths (the MIBs), whole, or auto"
    )
    deadline_s: float = Field(
        60.0, gt=0, le=600, description="seconds for the whole poll, all requests"
    )
    max_repetitions: int = Field(25, ge=1, le=200, description="GETBULK max-repetitions")
    max_interval_s: float = Field(
        3600.0, gt=0, description="seconds: older counter state starts a new baseline"
    )
    save_state: bool = Field(
        True, description="keep this poll's counters in --state-dir for the next rate"
    )


class SnmpFailure(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


_AUTH_ERRORS = {
    "UnknownUserName",
    "WrongDigest",
    "DecryptionError",
    "UnknownSecurityName",
    "UnsupportedSecurityLevel",
    "AuthenticationError",
    "AuthenticationFailure",
    "UnknownCommunityName",
    "NoAuthentication",
}


def _classify(
    ei: Any, where: str, timeout_s: float, tries: int, version: str = "2c"
) -> SnmpFailure:
    name = type(ei).__name__
    if name == "RequestTimedOut":
        # Agents drop a wrong v2c community, and a v3 request they cannot decrypt, silently.
        cred = "wrong community" if version == "2c" else "wrong v3 priv key"
        return SnmpFailure(
            "timeout",
            f"{where}: no SNMP response in {timeout_s:g} s x {tries} "
            f"(host down, port filtered, or {cred})",
        )
    if name in _AUTH_ERRORS:
        return SnmpFailure("auth_failed", f"{where}: SNMPv3 credentials rejected ({ei})")
    return SnmpFailure("error", f"{where}: {ei}")


def _value(v: Any) -> Value | None:
    """pysnmp value -> int | bytes | str; None for noSuch*/endOfMib."""
    cls = type(v).__name__
    if cls in ("NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null"):
        return None
    if cls in ("ObjectIdentifier", "ObjectName"):
        return str(v)
    if cls == "IpAddress":
        return ".".join(str(b) for b in v.asOctets())
    if hasattr(v, "asOctets"):
        return bytes(v.asOctets())
    try:
        return int(v)
    except (TypeError, ValueError):
        return str(v)


_MIB_VIEW: Any = None
_MIB_VIEW_LOCK = threading.Lock()


def _mib_view() -> Any:
    global _MIB_VIEW
    with _MIB_VIEW_LOCK:
        if _MIB_VIEW is None:
            from pysnmp.smi import builder, view

            _MIB_VIEW = view.MibViewController(builder.MibBuilder())
        return _MIB_VIEW


async def poll(
    host: str,
    port: int,
    cfg: Any,
    *,
    max_repetitions: int = 25,
    walks: tuple[tuple[str, str], ...] = WALKS,
) -> tuple[Varbinds, int]:
    """Read sysUpTime/sysObjectID/sysDescr and walk ``walks``; raise ``SnmpFailure``.

    Returns the varbinds and the time (ms) the octet counters were read: the middle of the
    back-to-back counter walks, so a slow poll does not skew the rate's interval.

    ``cfg`` is the inventory's ``SnmpConfig``; secrets are resolved here and never logged.
    One SnmpEngine per call (pysnmp wants one per event loop), closed at the end.
    """
    from pysnmp.hlapi.v3arch import asyncio as h  # slow import: only when polling

    if cfg.version == "2c":
        auth: Any = h.CommunityData(cfg.community.resolve(), mpModel=1)
    else:
        authp = {
            "sha": h.USM_AUTH_HMAC96_SHA,
            "sha256": h.USM_AUTH_HMAC192_SHA256,
            "sha512": h.USM_AUTH_HMAC384_SHA512,
            "md5": h.USM_AUTH_HMAC96_MD5,
        }[cfg.auth_protocol]
        privp = {
            "aes": h.USM_PRIV_CFB128_AES,
            "aes256": h.USM_PRIV_CFB256_AES,
            "des": h.USM_PRIV_CBC56_DES,
        }[cfg.priv_protocol]
        auth = h.UsmUserData(
            cfg.user,
            cfg.auth_key.resolve(),
            cfg.priv_key.resolve(),
            authProtocol=authp,
            privProtocol=privp,
        )
    engine = h.SnmpEngine()
    # pysnmp builds a MIB compiler (a Lark parser, ~0.5 s of CPU) per engine the first time an
    # OID is resolved, even a numeric one. The MIB view holds no sockets and no loop, so one
    # per process serves every engine.
    engine.cache["mibViewController"] = _mib_view()
    tries = cfg.retries + 1
    where = f"{host}:{port}"
    try:
        try:
            target = await h.UdpTransportTarget.create(
                (host, port), timeout=cfg.timeout_s, retries=cfg.retries
            )
        except Exception as e:  # name resolution
            raise SnmpFailure("unreachable", f"{where}: {e}") from None
        ei, es, _eix, vbs = await h.get_cmd(
            engine,
            auth,
            target,
            h.ContextData(),
            *(h.ObjectType(h.ObjectIdentity(o)) for o in (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME)),
            lookupMib=False,
        )
        if ei:
            raise _classify(ei, where, cfg.timeout_s, tries, cfg.version)
        if es:
            res = (
                "auth_failed"
                if str(es.prettyPrint()) in ("authorizationError", "noAccess")
                else "error"
            )
            raise SnmpFailure(res, f"{where}: agent answered {es.prettyPrint()}")
        out: Varbinds = {}
        for name, val in vbs:
            v = _value(val)
            if v is not None:
                out[str(name)] = v
        counter_labels = {label for label, _ in COUNTER_WALKS}
        t_first: int | None = None
        t_last: int | None = None
        for label, prefix in walks:
            n = 0
            if label in counter_labels and t_first is None:
                t_first = now_ms()
            async for ei, es, _eix, rows in h.bulk_walk_cmd(
                engine,
                auth,
                target,
                h.ContextData(),
                0,
                max_repetitions,
                h.ObjectType(h.ObjectIdentity(prefix)),
                lookupMib=False,
                lexicographicMode=False,
            ):
                if ei:
                    f = _classify(ei, where, cfg.timeout_s, tries, cfg.version)
                    raise SnmpFailure(
                        f.result,
                        f"{f.reason}; {label} walk stopped after {n} values (partial table)",
                    )
                if es:
                    # noSuchName & co on a table the agent does not have: treat as empty.
                    break
                for name, val in rows:
                    v = _value(val)
                    if v is not None and str(name).startswith(prefix + "."):
                        out[str(name)] = v
                        n += 1
            if label in counter_labels:
                t_last = now_ms()
        t = now_ms() if t_first is None or t_last is None else (t_first + t_last) // 2
        return out, t
    finally:
        engine.close_dispatcher()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def state_path(state_dir: Path, site: str, device: str) -> Path:
    return Path(state_dir) / "snmp" / f"{_safe(site)}__{_safe(device)}.json"


def load_state(path: Path) -> Sample | None:
    try:
        return Sample.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or corrupt: start a new baseline


def save_state(path: Path, sample: Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(sample.to_json()))
    os.replace(tmp, path)


def records_from_varbinds(
    vb: Mapping[str, Value],
    *,
    base_tags: Mapping[str, str],
    device: str,
    prev: Sample | None,
    time_ms: int,
    wan_pattern: str | None = None,
    interfaces_mode: str = "wan",
    dsl: bool = True,
    db_scale_mode: str = "auto",
    vendor: str | None = None,
    contract_down_mbps: float | None = None,
    contract_up_mbps: float | None = None,
    max_interval_s: float = 3600.0,
) -> tuple[list[Record], Sample]:
    """The whole interpretation of one poll, without I/O: records and the sample to keep."""
    ifaces = interfaces(vb)
    uptime = _int(vb.get(SYS_UPTIME))
    cur = sample_of(ifaces, uptime, time_ms)
    wan, how = choose_wan(ifaces, wan_pattern)
    lines = dsl_lines(vb, ifaces, db_scale_for(vb, db_scale_mode, vendor)) if dsl else []
    tech, _by = detect_tech(lines, wan, ifaces)
    records: list[Record] = []
    tags = {**base_tags}
    if wan_pattern and wan is None:
        names = ", ".join(i.name for i in list(ifaces.values())[:20])
        records.append(
            failure(
                "if_traffic",
                {**tags, "method": "snmp", "device": device},
                "error",
                f"{device}: wan_interface /{wan_pattern}/ matches no "
                f"ifName/ifAlias/ifDescr (have: {names})",
                time_ms,
            )
        )
    if not ifaces:
        records.append(
            failure(
                "if_traffic",
                {**tags, "method": "snmp", "device": device},
                "error",
                f"{device}: the agent returned no ifTable/ifXTable rows",
                time_ms,
            )
        )
    which = sorted(ifaces) if interfaces_mode == "all" else ([wan.index] if wan else [])
    if ifaces and wan is None and not wan_pattern:
        records.append(
            failure(
                "if_traffic",
                {**tags, "method": "snmp", "device": device},
                "error",
                f"{device}: no interface looks like the WAN (none oper-up outside loopback/"
                "virtual/voice/wireless types); set router.wan_interface in the inventory",
                time_ms,
            )
        )
    up_line = next((ln for ln in lines if ln.line_up), None)
    records += traffic_records(
        ifaces,
        prev,
        cur,
        base_tags=tags,
        device=device,
        which=which,
        wan_index=wan.index if wan else None,
        contract_down_mbps=contract_down_mbps,
        contract_up_mbps=contract_up_mbps,
        sync_down_kbps=up_line.sync_down_kbps if up_line else None,
        sync_up_kbps=up_line.sync_up_kbps if up_line else None,
        detected_tech=tech,
        max_interval_s=max_interval_s,
    )
    if wan is not None and which and not any(r.tags.get("ifname") == wan.name for r in records):
        records.append(
            failure(
                "if_traffic",
                {**tags, "method": "snmp", "device": device, "ifname": wan.name},
                "error",
                f"{device}: {wan.name} ({how}) has no octet counters",
                time_ms,
            )
        )
    for ln in lines:
        records.append(
            dsl_record(
                ln,
                tags,
                method="snmp",
                device=device,
                time_ms=time_ms,
                contract_down_mbps=contract_down_mbps,
                contract_up_mbps=contract_up_mbps,
            )
        )
    return records, cur


async def run(ctx: Context, spec: Spec) -> list[Record]:
    """Read the site router over SNMP: WAN traffic and utilisation, DSL line figures."""
    site = ctx.site
    if site is None or site.router is None or site.router.snmp is None:
        who = site.ods if site else "(no site)"
        raise ConfigError(f"site {who}: router.snmp is not configured in the inventory")
    router, cfg = site.router, site.router.snmp
    host = spec.host or router.host
    port = spec.port or cfg.port
    device = spec.device or router.host
    base = ctx.tags
    fail_tags = {**base, "method": "snmp", "device": device}
    t0 = now_ms()
    try:
        vb, counters_ms = await asyncio.wait_for(
            poll(host, port, cfg, max_repetitions=spec.max_repetitions), spec.deadline_s
        )
    except SnmpFailure as e:
        return [failure(m, fail_tags, e.result, e.reason, t0) for m in ("if_traffic", "dsl_line")]
    except TimeoutError:
        reason = f"{host}:{port}: poll did not finish within the {spec.deadline_s:g} s deadline"
        return [failure(m, fail_tags, "timeout", reason, t0) for m in ("if_traffic", "dsl_line")]
    except OSError as e:
        return [
            failure(m, fail_tags, "unreachable", f"{host}:{port}: {e}", t0)
            for m in ("if_traffic", "dsl_line")
        ]
    path = state_path(ctx.state_dir, site.ods, device)
    prev = load_state(path)
    records, cur = records_from_varbinds(
        vb,
        base_tags=base,
        device=device,
        prev=prev,
        time_ms=counters_ms,
        wan_pattern=router.wan_interface,
        interfaces_mode=spec.interfaces,
        dsl=spec.dsl,
        db_scale_mode=spec.dsl_db_scale,
        vendor=router.vendor,
        contract_down_mbps=site.link.down_mbps,
        contract_up_mbps=site.link.up_mbps,
        max_interval_s=spec.max_interval_s,
    )
    if spec.save_state:
        save_state(path, cur)
    return records


PLUGIN = Plugin(
    kind="collector",
    name="snmp",
    spec=Spec,
    run=run,
    measurement="if_traffic",
    method="snmp",
    summary="Poll the site router over SNMP (v2c or v3 authPriv, from the inventory): WAN "
    "traffic and utilisation (if_traffic), DSL line figures (dsl_line), copper-or-fibre "
    "detection. Rates need two polls: the first records a baseline in --state-dir.",
    needs="router.snmp",
    interval_s=60.0,
    fields=(
        Metric("octets", "bytes", "raw interface counter (for non_negative_derivative in Grafana)"),
        Metric("counter_bits", "bits", "counter width, 64 or 32"),
        Metric("speed_mbps", "Mbit/s", "ifHighSpeed (else ifSpeed / 1e6); absent if 0"),
        Metric("oper_up", "bool", "ifOperStatus == up"),
        Metric("is_wan", "bool", "the WAN interface"),
        Metric("iftype", "IANAifType", "the interface type"),
        Metric("ifalias", "text", "ifAlias, when set"),
        Metric("interval_s", "s", "seconds since the previous poll (absent on a baseline)"),
        Metric("interval_source", "text", "what timed the interval: sysUpTime or wallclock"),
        Metric("rate_mbps", "Mbit/s", "mean bit rate over the interval"),
        Metric("util_pct", "%", "rate / speed_mbps x 100"),
        Metric("util_contract_pct", "%", "WAN only: rate / contracted link.down_mbps (in) or "
               "up_mbps (out) x 100"),
        Metric("util_sync_pct", "%", "WAN only, when a DSL line is up: rate / DSL sync rate x 100"),
        Metric("errors", "packets", "ifIn/OutErrors in the interval"),
        Metric("discards", "packets", "ifIn/OutDiscards in the interval"),
        Metric("tech_mismatch", "bool", "WAN only: the detected technology contradicts the "
               "inventory's link.tech"),
        Metric("note", "text", "why there is no rate (first poll, agent restart, discontinuity, "
               "stale state)"),
        *DSL_FIELDS,
    ),
)  # fmt: skip
