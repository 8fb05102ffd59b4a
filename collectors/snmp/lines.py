"""DSL line figures from the line MIBs: ADSL-LINE-MIB, VDSL2-LINE-MIB, HDSL2-SHDSL-LINE-MIB.

Sans-IO: varbinds and the interface table in, one ``DslLine`` per line out (see
``collectors/dsl.py`` for the record). Directions are resolved here:

- ADSL-LINE-MIB ATU-C phys values are measured by the exchange end, so its SNR margin and
  attenuation are *upstream* and the ATU-R ones *downstream*; ATU-C attainable rate and ATU-C
  channel rate are *downstream*.
- VDSL2-LINE-MIB channel status unit xtuc(1) is downstream, xtur(2) upstream (the DrayTek
  recording: unit 1 = 110162000 = its ifSpeed). Band 1 is the whole upstream, band 2 the whole
  downstream (0.1 dB). VDSL2 figures win over ADSL-MIB ones when both exist.
- HDSL2-SHDSL-LINE-MIB is symmetric: the span's actual line rate is the sync rate both ways.
  An endpoint's SNR margin and attenuation are what *that* unit receives: unit xtuR(2) (the
  customer end) measures downstream, xtuC(1) (the exchange end) upstream. Per the MIB they are
  whole dB.

A line that is not up gets its sync rates (0 when the device says so) but no SNR, attenuation,
attainable rate or delay: those are meaningless untrained and absent means "no data".
"""

from __future__ import annotations

from collections.abc import Mapping

from netready.collectors.dsl import DSL_IFTYPES, IFTYPE_TECH, DslLine, tech_from_mode
from netready.collectors.snmp.mib import (
    ADSL_ATUC_CHAN,
    ADSL_ATUC_PHYS,
    ADSL_ATUR_CHAN,
    ADSL_ATUR_PHYS,
    SHDSL_ENDPOINT_CURR,
    SHDSL_SPAN_STATUS,
    SYS_OBJECT_ID,
    XDSL2_BAND,
    XDSL2_CHAN,
    XDSL2_LINE,
    ZYXEL_XDSL_MODE,
    Iface,
    Value,
    as_int,
    as_text,
    column,
)

_UNAVAILABLE = 2147483646  # VDSL2 MIB: 2147483646 "not measurable", 2147483647 "not available"

#: sysObjectID prefixes of vendors that put whole dB where ADSL-LINE-MIB says tenths.
WHOLE_DB_VENDORS: dict[str, str] = {"1.3.6.1.4.1.7367": "draytek"}

Rows = Mapping[tuple[int, ...], Value]


def _ok(v: Value | None) -> int | None:
    """An integer reading, or None for the MIBs' special 'not available' values."""
    n = as_int(v)
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
    oid = as_text(vb.get(SYS_OBJECT_ID)).lstrip(".")
    for prefix in WHOLE_DB_VENDORS:
        if oid == prefix or oid.startswith(prefix + "."):
            return 1.0
    return 0.1


def _assign_channels(rows: Rows, lines: list[int]) -> dict[int, list[Value]]:
    """Channel rows (indexed by a channel ifIndex, or the line's own) -> line ifIndex.

    A channel whose ifIndex is not a line belongs to the nearest line with a lower ifIndex
    (Teldat: line 17, fast channel 18, interleaved channel 19); with one line, to that line.
    """
    out: dict[int, list[Value]] = {}
    for idx, v in rows.items():
        ix = idx[0]
        owner: int | None
        if ix in lines:
            owner = ix
        else:
            lower = [ln for ln in lines if ln < ix]
            owner = max(lower) if lower else (lines[0] if len(lines) == 1 else None)
        if owner is not None:
            out.setdefault(owner, []).append(v)
    return out


def _rate(vdsl: list[Value], adsl: list[Value]) -> float | None:
    """kbit/s: the largest non-zero channel rate (VDSL2 MIB first), 0 if every one is 0."""
    for vals in (vdsl, adsl):
        nums = [n for n in (_ok(v) for v in vals) if n is not None]
        if nums and max(nums) > 0:
            return max(nums) / 1000.0
    for vals in (vdsl, adsl):
        if any(_ok(v) is not None for v in vals):
            return 0.0
    return None


def _delay(vdsl: list[Value], adsl: list[Value]) -> float | None:
    for vals in (vdsl, adsl):
        nums = [n for n in (_ok(v) for v in vals) if n is not None]
        if nums:
            return float(max(nums))
    return None


def _kbps(v: Value | None) -> float | None:
    n = _ok(v)
    return None if n is None else n / 1000.0


class _Xdsl:
    """The ADSL-LINE-MIB and VDSL2-LINE-MIB columns of one poll, by line ifIndex."""

    def __init__(self, vb: Mapping[str, Value], db_scale: float):
        self.db_scale = db_scale
        self.atuc = {c: column(vb, f"{ADSL_ATUC_PHYS}.{c}") for c in (4, 5, 8)}
        self.atur = {c: column(vb, f"{ADSL_ATUR_PHYS}.{c}") for c in (4, 5, 8)}
        self.att_ds = column(vb, f"{XDSL2_LINE}.20")
        self.att_us = column(vb, f"{XDSL2_LINE}.21")
        self.band = {c: column(vb, f"{XDSL2_BAND}.{c}") for c in (2, 4)}
        x_rate = column(vb, f"{XDSL2_CHAN}.2")
        x_delay = column(vb, f"{XDSL2_CHAN}.4")
        # A line is an ifIndex with physical or channel figures. An adslLineTable row alone
        # (a line-coding setting: Zyxel puts one on an Ethernet ifIndex) is not a line.
        adsl_idx = {i[0] for d in (*self.atuc.values(), *self.atur.values()) for i in d}
        self.vdsl_idx = {i[0] for d in (self.att_ds, self.att_us, *self.band.values()) for i in d}
        lines = sorted(adsl_idx | self.vdsl_idx)
        if not lines and x_rate:
            lines = sorted({i[0] for i in x_rate})
        self.lines = lines

        def by_unit(rows: Rows, unit: int) -> dict[int, list[Value]]:
            one: dict[tuple[int, ...], Value] = {
                (i[0],): v for i, v in rows.items() if len(i) == 2 and i[1] == unit
            }
            return _assign_channels(one, lines)

        def chan(tbl: str, col: int) -> dict[int, list[Value]]:
            return _assign_channels(column(vb, f"{tbl}.{col}"), lines)

        self.rate = {
            "dn": (by_unit(x_rate, 1), chan(ADSL_ATUC_CHAN, 2)),
            "up": (by_unit(x_rate, 2), chan(ADSL_ATUR_CHAN, 2)),
        }
        self.delay = {
            "dn": (by_unit(x_delay, 1), chan(ADSL_ATUC_CHAN, 1)),
            "up": (by_unit(x_delay, 2), chan(ADSL_ATUR_CHAN, 1)),
        }

    def _band_db(self, col: int, ix: int, whole: int, sub: tuple[int, ...]) -> float | None:
        v = _ok(self.band[col].get((ix, whole)))
        if v is not None:
            return v / 10.0
        subs = [n for n in (_ok(self.band[col].get((ix, b))) for b in sub) if n is not None]
        return (sum(subs) / len(subs)) / 10.0 if subs else None

    def _adsl_db(
        self, tbl: dict[int, dict[tuple[int, ...], Value]], col: int, ix: int
    ) -> float | None:
        v = _ok(tbl[col].get((ix,)))
        return None if v is None else v * self.db_scale

    def line(self, ix: int, iface: Iface | None) -> DslLine:
        ds_bands, us_bands = (4, 6, 8, 10), (3, 5, 7, 9, 11)
        ln = DslLine(ifname=iface.name if iface else f"ifIndex{ix}")
        for d, attr in (("dn", "sync_down_kbps"), ("up", "sync_up_kbps")):
            v, a = self.rate[d]
            setattr(ln, attr, _rate(v.get(ix, []), a.get(ix, [])))
        v, a = self.delay["dn"]
        ln.interleave_delay_ms = _delay(v.get(ix, []), a.get(ix, []))
        v, a = self.delay["up"]
        ln.interleave_delay_up_ms = _delay(v.get(ix, []), a.get(ix, []))
        ln.attainable_down_kbps = _kbps(self.att_ds.get((ix,))) or _kbps(self.atuc[8].get((ix,)))
        ln.attainable_up_kbps = _kbps(self.att_us.get((ix,))) or _kbps(self.atur[8].get((ix,)))
        for attr, col, whole, bands, phys in (
            ("snr_margin_down_db", 4, 2, ds_bands, self.atur),
            ("snr_margin_up_db", 4, 1, us_bands, self.atuc),
            ("atten_down_db", 2, 2, ds_bands, self.atur),
            ("atten_up_db", 2, 1, us_bands, self.atuc),
        ):
            vd = self._band_db(col, ix, whole, bands)
            setattr(
                ln, attr, vd if vd is not None else self._adsl_db(phys, 4 if col == 4 else 5, ix)
            )
        if iface is not None and iface.oper_up is not None:
            ln.line_up = iface.oper_up
        else:
            ln.line_up = bool(ln.sync_down_kbps)
        # What kind of line: ifType first, then which MIB answered, then the rate.
        tech = IFTYPE_TECH.get(iface.iftype) if iface and iface.iftype in DSL_IFTYPES else None
        if tech:
            ln.detected_tech, ln.detected_by = tech, "iftype"
        else:
            ln.detected_tech = "vdsl2" if ix in self.vdsl_idx else "adsl"
            ln.detected_by = "dsl_mib"
        if ln.detected_tech == "adsl" and (ln.sync_down_kbps or 0) > 25000:
            ln.detected_tech = "vdsl2"  # ADSL2+ tops out at ~24 Mbit/s downstream
        return ln


def _untrained(ln: DslLine) -> DslLine:
    if not ln.line_up:
        ln.attainable_down_kbps = ln.attainable_up_kbps = None
        ln.snr_margin_down_db = ln.snr_margin_up_db = None
        ln.atten_down_db = ln.atten_up_db = None
        ln.interleave_delay_ms = ln.interleave_delay_up_ms = None
    return ln


def shdsl_lines(vb: Mapping[str, Value], ifaces: Mapping[int, Iface]) -> list[DslLine]:
    """HDSL2-SHDSL-LINE-MIB span status and endpoint rows -> one line per span ifIndex."""
    rate = column(vb, f"{SHDSL_SPAN_STATUS}.3")
    attain = column(vb, f"{SHDSL_SPAN_STATUS}.2")
    atn = column(vb, f"{SHDSL_ENDPOINT_CURR}.1")
    snr = column(vb, f"{SHDSL_ENDPOINT_CURR}.2")
    spans = sorted({i[0] for d in (rate, attain, atn, snr) for i in d})
    out: list[DslLine] = []
    for ix in spans:
        iface = ifaces.get(ix)
        ln = DslLine(ifname=iface.name if iface else f"ifIndex{ix}", detected_tech="shdsl")
        ln.detected_by = "iftype" if iface and iface.iftype == 169 else "dsl_mib"
        ln.sync_down_kbps = ln.sync_up_kbps = _kbps(rate.get((ix,)))
        ln.attainable_down_kbps = ln.attainable_up_kbps = _kbps(attain.get((ix,)))

        def worst(rows: Rows, unit: int, lowest: bool, ix: int = ix) -> float | None:
            vals = [_ok(v) for i, v in rows.items() if len(i) == 4 and i[:2] == (ix, unit)]
            nums = [float(n) for n in vals if n is not None]
            return (min(nums) if lowest else max(nums)) if nums else None

        # Unit xtuR(2) receives downstream, xtuC(1) upstream; the worst pair counts.
        ln.snr_margin_down_db, ln.snr_margin_up_db = worst(snr, 2, True), worst(snr, 1, True)
        ln.atten_down_db, ln.atten_up_db = worst(atn, 2, False), worst(atn, 1, False)
        if iface is not None and iface.oper_up is not None:
            ln.line_up = iface.oper_up
        else:
            ln.line_up = bool(ln.sync_down_kbps) or ln.snr_margin_up_db is not None
        out.append(_untrained(ln))
    return out


def vendor_mode(vb: Mapping[str, Value]) -> str | None:
    """A trained-mode string a vendor MIB states (Zyxel prestigeXDSL: ``G.fastAnnexA``)."""
    mode = as_text(vb.get(ZYXEL_XDSL_MODE))
    return mode if tech_from_mode(mode) else None


def dsl_lines(
    vb: Mapping[str, Value], ifaces: Mapping[int, Iface], db_scale: float = 0.1
) -> list[DslLine]:
    """The line MIBs -> one ``DslLine`` per line ifIndex (ADSL/VDSL2, then SHDSL spans),
    then one bare line (state and kind only) per DSL interface the MIBs say nothing about
    (Zyxel ptm0, OneAccess Gshdsl0/x). Sub-interfaces (a dot in the name) are layers."""
    x = _Xdsl(vb, db_scale)
    out = [_untrained(x.line(ix, ifaces.get(ix))) for ix in x.lines]
    shdsl = [ln for ln in shdsl_lines(vb, ifaces) if ln.ifname not in {o.ifname for o in out}]
    out += shdsl
    named = {ln.ifname for ln in out}
    mode = vendor_mode(vb)
    for i in sorted(ifaces.values(), key=lambda i: i.index):
        if i.iftype in DSL_IFTYPES and i.index not in x.lines and i.name not in named:
            if "." in i.name:
                continue
            ln = DslLine(
                ifname=i.name,
                detected_tech=IFTYPE_TECH[i.iftype or 0],
                detected_by="iftype",
                line_up=i.oper_up,
            )
            if mode and i.oper_up and i.iftype in (97, 251):
                # The vendor's own mode string (G.fast runs on the same PTM interface).
                ln.mode, ln.detected_tech, ln.detected_by = (
                    mode,
                    tech_from_mode(mode) or ln.detected_tech,
                    "vendor_mib",
                )
            out.append(ln)
    return out
