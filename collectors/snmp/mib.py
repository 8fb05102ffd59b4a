"""What the SNMP collector reads, as plain data: OIDs, the ``.snmprec`` reader, table helpers
and the interface table (IF-MIB ifTable + ifXTable).

Sans-IO: everything here is a pure function over ``{oid: value}`` dicts (``oid`` dotted without
a leading dot, ``value`` ``int``, ``bytes`` or ``str``), so the same code runs on recorded
walks (``parse_snmprec``) and on what ``poll`` reads from a live agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

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
XDSL2_LINE = "1.3.6.1.2.1.10.251.1.1.1.1"  # xdsl2LineEntry (20/21: attainable Ds/Us)
XDSL2_BAND = "1.3.6.1.2.1.10.251.1.1.2.1"  # xdsl2LineBandEntry (2 LnAtten, 3 SigAtten, 4 SNR)
XDSL2_CHAN = "1.3.6.1.2.1.10.251.1.2.2.1"  # xdsl2ChannelStatusEntry (2 rate, 4 delay)
#: HDSL2-SHDSL-LINE-MIB (RFC 4319): span status (2 max attainable, 3 actual line rate, bit/s)
#: and the endpoint current table (1 attenuation, 2 SNR margin, dB), indexed
#: ifIndex.unit.side.wirePair (unit 1 xtuC, 2 xtuR; side 1 network, 2 customer).
SHDSL_SPAN_STATUS = "1.3.6.1.2.1.10.48.1.2.1"
SHDSL_ENDPOINT_CURR = "1.3.6.1.2.1.10.48.1.5.1"

IF_STACK_STATUS = "1.3.6.1.2.1.31.1.2.1.3"  # ifStackStatus.higher.lower
IP_AD_IFINDEX = "1.3.6.1.2.1.4.20.1.2"  # ipAdEntIfIndex.<address>
IP_AD_MASK = "1.3.6.1.2.1.4.20.1.3"  # ipAdEntNetMask.<address>
#: The IPv4 default route's row in each route table (walking these prefixes reads that row only).
IP_ROUTE_DEFAULT_IFINDEX = "1.3.6.1.2.1.4.21.1.2.0.0.0.0"  # ipRouteIfIndex.0.0.0.0
IP_ROUTE_DEFAULT_NEXT_HOP = "1.3.6.1.2.1.4.21.1.7.0.0.0.0"  # ipRouteNextHop.0.0.0.0
#: ipCidrRouteIfIndex.<dest 0.0.0.0>.<mask 0.0.0.0>.<tos>.<next hop>
IP_CIDR_DEFAULT_IFINDEX = "1.3.6.1.2.1.4.24.4.1.5.0.0.0.0.0.0.0.0"
#: inetCidrRouteIfIndex.<ipv4(1)>.<len 4>.<0.0.0.0>.<pfxlen 0>.<policy...>.<type>.<len>.<hop>
INET_CIDR_DEFAULT_IFINDEX = "1.3.6.1.2.1.4.24.7.1.7.1.4.0.0.0.0.0"
#: DOCS-IF-MIB: docsIfCmStatusValue (12 operational), SNR (TenthdB), powers (TenthdBmV).
DOCSIS = "1.3.6.1.2.1.10.127"
DOCS_CM_STATUS_VALUE = "1.3.6.1.2.1.10.127.1.2.2.1.1"
#: Vendor tables the detection reads (only where the corpus has them):
#: Teltonika mobile table (15 state, 16 network type, 22/23 bytes, 24 IP address),
#: Teldat cellular APN (ifIndex-indexed), OneAccess radio technology, Zyxel xDSL mode string.
TELTONIKA_MOBILE = "1.3.6.1.4.1.48690.2.2.1"
TELDAT_CELL_APN = "1.3.6.1.4.1.2007.4.1.2.2.2.18.3.4.1.3"
ONEACCESS_RADIO_TECH = "1.3.6.1.4.1.13191.10.3.9.2.1.46.0"
ZYXEL_XDSL_MODE = "1.3.6.1.4.1.890.1.2.1.6.6.0"

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


def as_int(v: Value | None) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def as_text(v: Value | None) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").replace("\x00", "").strip()
    if isinstance(v, str):
        return v.strip()
    return "" if v is None else str(v)


# ------------------------------------------------------------------------- interfaces


def _unpad(name: str) -> str:
    """Cut the dot padding some agents append to names (Calix: ``wan-0.......``)."""
    return re.sub(r"\.{3,}$", "", name)


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
        descr = _unpad(as_text(cols[2].get(k)))
        name = _unpad(as_text(xcols[1].get(k))) or descr or f"ifIndex{ix}"
        hs = as_int(xcols[15].get(k))
        sp = as_int(cols[5].get(k))
        speed = float(hs) if hs else (sp / 1e6 if sp and sp < 4294967295 else None)
        oper = as_int(cols[8].get(k))
        hc_in, hc_out = as_int(xcols[6].get(k)), as_int(xcols[10].get(k))
        in32, out32 = as_int(cols[10].get(k)), as_int(cols[16].get(k))
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
            alias=as_text(xcols[18].get(k)),
            iftype=as_int(cols[3].get(k)),
            speed_mbps=speed,
            oper_up=None if oper is None else oper == 1,
            counter_bits=bits,
            in_octets=i_o,
            out_octets=o_o,
            in_errors=as_int(cols[14].get(k)),
            out_errors=as_int(cols[20].get(k)),
            in_discards=as_int(cols[13].get(k)),
            out_discards=as_int(cols[19].get(k)),
        )
    return out
