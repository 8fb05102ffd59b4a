"""What the access link is, as far as the router can know it, with its evidence.

Sans-IO: the topology, the WAN choice and the DSL lines in, a ``Detection`` out. Classes
(``detected_tech``; the vocabulary of ``collectors/dsl.py``):

- ``adsl``, ``vdsl2``, ``gfast``, ``shdsl``: a copper line (DSL ifType, a line MIB, a PTM/ATM
  interface, a vendor mode string);
- ``fttp``: the device itself terminates the fibre (a PON ifType, an ONT by its sysDescr, the
  1000BASE-X port of a fibre CPE);
- ``ethernet``: an Ethernet handoff. A leased line, or an ONT or modem in front: the router
  alone cannot tell these apart, so a declared FTTP is *unverifiable*, not a match;
- ``cable``: DOCSIS (ifTypes 127/128/129/205, or a sysDescr saying DOCSIS);
- ``cellular``: a radio (ifType 243/244, the names wwan/lte/cellular/qmimux/4G/5G, a USB modem
  netdev, a vendor mobile table);
- ``unknown``: the evidence stops before the physical layer (a VLAN whose parent is not in the
  recording, PPP over an unseen lower layer).

The order: what the WAN's own layers say (cable and cellular first, so they are never reported
as ethernet), then a DSL line in showtime anywhere on the device, then DOCSIS anywhere, then
the WAN port's kind. No octet counter is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from netready.collectors.dsl import DSL_IFTYPES, IFTYPE_TECH, DslLine, tech_from_ifname
from netready.collectors.snmp.mib import ONEACCESS_RADIO_TECH, Iface, Value, as_text
from netready.collectors.snmp.wan import (
    CELLULAR_IFTYPES,
    DOCSIS_IFTYPES,
    PON_IFTYPES,
    PPP,
    WAN_WORDS,
    Topology,
    WanChoice,
    _optical_port,
    is_cellular_name,
    tokens,
)

#: ifTypes of an Ethernet port (ethernetCsmacd, iso88023Csmacd, fastEther, fastEtherFX,
#: gigabitEthernet).
ETHERNET_IFTYPES: frozenset[int] = frozenset({6, 7, 62, 69, 117})

CONFIDENCE_ORDER = {"low": 0, "medium": 1, "high": 2}


@dataclass
class Detection:
    tech: str
    by: str  # iftype | dsl_mib | vendor_mib | ifname | alias | sysdescr | ""
    evidence: str
    confidence: str  # high | medium | low

    def capped(self, confidence: str) -> Detection:
        """At most ``confidence`` (the WAN choice's): a technology is only as sure as the
        interface it was read from."""
        if CONFIDENCE_ORDER[self.confidence] > CONFIDENCE_ORDER[confidence]:
            return Detection(self.tech, self.by, self.evidence, confidence)
        return self


def _line_confidence(ln: DslLine) -> str:
    return {"iftype": "high", "dsl_mib": "medium"}.get(ln.detected_by, "low")


def _line_evidence(ln: DslLine) -> str:
    rate = f" at {ln.sync_down_kbps:g}/{ln.sync_up_kbps:g} kbit/s" if ln.sync_down_kbps else ""
    mode = f", mode {ln.mode}" if ln.mode else ""
    return f"{ln.detected_by} {ln.ifname} in showtime{rate}{mode}"


def _cellular_note(vb: Mapping[str, Value]) -> str:
    radio = as_text(vb.get(ONEACCESS_RADIO_TECH))
    return f"; radio {radio}" if radio else ""


def _from_layers(
    vb: Mapping[str, Value], topo: Topology, wan: WanChoice, lines: list[DslLine]
) -> Detection | None:
    """What the WAN and the layers under it say themselves."""
    layers = [topo.ifaces[ix] for ix in wan.path if ix in topo.ifaces]
    for i in layers:
        if i.iftype in DOCSIS_IFTYPES:
            return Detection("cable", "iftype", f"{i.name} ifType {i.iftype} (DOCSIS)", "high")
    for i in reversed(layers):  # the line is at the bottom (ptm0.3 over ptm0)
        if i.iftype in DSL_IFTYPES:
            ln = next((x for x in lines if x.ifname == i.name), None)
            if ln is not None and ln.line_up is not False:
                return Detection(ln.detected_tech, ln.detected_by, _line_evidence(ln),
                                 _line_confidence(ln))  # fmt: skip
            if i.oper_up:
                tech = IFTYPE_TECH[i.iftype or 0]
                return Detection(tech, "iftype", f"{i.name} ifType {i.iftype} up", "high")
        if i.iftype in PON_IFTYPES:
            return Detection("fttp", "iftype", f"{i.name} ifType {i.iftype} (PON)", "high")
        if i.iftype in CELLULAR_IFTYPES:
            return Detection("cellular", "iftype", f"{i.name} ifType {i.iftype} (wwanPP)", "high")
    for i in layers:
        for what, text in (("ifname", i.name), ("alias", i.alias), ("ifname", i.descr)):
            if text and is_cellular_name(text):
                conf = "high" if i.index in topo.mobile else "medium"
                note = f"; {topo.mobile[i.index]}" if i.index in topo.mobile else ""
                return Detection("cellular", what, f"{i.name} {what} {text!r}{note}"
                                 f"{_cellular_note(vb)}", conf)  # fmt: skip
        if i.index in topo.mobile:
            return Detection("cellular", "vendor_mib", f"{i.name}: {topo.mobile[i.index]}", "high")
    return None


def _showtime(lines: list[DslLine]) -> Detection | None:
    up = [ln for ln in lines if ln.line_up]
    if not up:
        return None
    ln = up[0]
    return Detection(ln.detected_tech, ln.detected_by, _line_evidence(ln), _line_confidence(ln))


def _docsis_anywhere(topo: Topology) -> Detection | None:
    for i in sorted(topo.ifaces.values(), key=lambda i: i.index):
        if i.iftype in DOCSIS_IFTYPES and i.oper_up:
            return Detection("cable", "iftype", f"{i.name} ifType {i.iftype} (DOCSIS)", "high")
    if re.search(r"docsis", topo.sys_descr, re.I):
        return Detection("cable", "sysdescr", "sysDescr says DOCSIS", "low")
    return None


def _ppp_lower(topo: Topology, wan: Iface) -> Detection | None:
    """PPP whose lower layer the device does not show: what the rest of the device says."""
    for i in sorted(topo.ifaces.values(), key=lambda i: i.index):
        tech = tech_from_ifname(i.name)
        if i.oper_up and tech:
            return Detection(tech, "ifname", f"{wan.name} is PPP; {i.name} (DSL by name) is up",
                             "medium")  # fmt: skip
    if "pppoe" in tokens(wan.name) | tokens(wan.alias):
        return Detection("ethernet", "ifname", f"{wan.name}: PPPoE runs over Ethernet", "medium")
    return None


def _from_port(topo: Topology, wan: WanChoice) -> Detection | None:
    """The kind of the physical port at the bottom of the WAN's layers."""
    port = wan.port
    if port is None or wan.iface is None:
        return None
    if re.search(r"\bONT\b", topo.sys_descr) and tokens(port.name) & WAN_WORDS:
        return Detection("fttp", "sysdescr", f"the device is an ONT (sysDescr); {port.name} "
                         "is its network side", "high")  # fmt: skip
    if _optical_port(topo, port):
        return Detection("fttp", "sysdescr", f"{port.name} is the 1000BASE-X port the sysDescr "
                         "lists after the 1000BASE-T ones", "medium")  # fmt: skip
    tech = tech_from_ifname(port.name)
    if tech:
        return Detection(tech, "ifname", f"{port.name}: a DSL interface by name", "medium")
    if re.fullmatch(r"usb\d+", port.name):
        return Detection("cellular", "ifname", f"{port.name}: a USB modem network device",
                         "medium")  # fmt: skip
    if port.iftype == PPP:
        return _ppp_lower(topo, port)
    if port.iftype in ETHERNET_IFTYPES:
        layers = " over ".join(topo.ifaces[ix].name for ix in wan.path)
        return Detection("ethernet", "iftype", f"{layers}: ifType {port.iftype} (an Ethernet "
                         "handoff)", "high")  # fmt: skip
    return None


def detect_tech(
    vb: Mapping[str, Value], topo: Topology, wan: WanChoice, lines: list[DslLine]
) -> Detection:
    """The access technology, its evidence and a confidence (see the module's docstring)."""
    if wan.iface is not None:
        d = _from_layers(vb, topo, wan, lines)
        if d is not None:
            return d.capped("high" if d.by != "ifname" else wan.confidence)
    d = _showtime(lines) or _docsis_anywhere(topo)
    if d is not None:
        return d
    if wan.iface is not None:
        d = _from_port(topo, wan)
        if d is not None:
            return d.capped(wan.confidence)
        layers = " over ".join(topo.ifaces[ix].name for ix in wan.path)
        return Detection("unknown", "", f"{layers}: the layer under it is not in what the "
                         "device reports", "low")  # fmt: skip
    if re.search(r"\bSHDSL\b", topo.sys_descr):
        return Detection("shdsl", "sysdescr", "sysDescr says SHDSL", "low")
    return Detection("unknown", "", "no WAN interface and no line MIB", "low")
