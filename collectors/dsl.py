"""DSL line figures and copper-or-fibre detection, shared by the SNMP and SSH collectors.

Both collectors build a ``DslLine`` (plain numbers, already in kbit/s, dB and ms, with the
direction resolved) and turn it into the same ``dsl_line`` record with ``dsl_record``, so a
report does not care whether a figure came from SNMP or from the router CLI (the ``method``
tag says which).

Detected technology vocabulary (``detected_tech`` tag; how the SNMP collector reads each one
from a router is in ``collectors/snmp/tech.py``):

- ``adsl``     ADSL/ADSL2/ADSL2+ (ifType 94, ADSL-LINE-MIB only, or G.992.x trained mode)
- ``vdsl2``    VDSL/VDSL2 (ifType 97 or 251, VDSL2-LINE-MIB, G.993.x trained mode, a PTM
               interface name)
- ``gfast``    G.fast (G.9701 trained mode)
- ``shdsl``    G.SHDSL / EFM over copper pairs (ifType 169, HDSL2-SHDSL-LINE-MIB)
- ``fttp``     the router itself terminates the fibre (PON ifType, ONT, optical port)
- ``ethernet`` an Ethernet hand-off: a leased line, or an ONT or modem in front (the router
               alone cannot tell which)
- ``cable``    DOCSIS
- ``cellular`` 4G/5G radio
- ``unknown``  nothing conclusive

Declared (the inventory's ``link.tech``) against detected (``tech_check``):

- ``match``: ``adsl`` for ``adsl``; ``vdsl2``/``gfast`` for ``fttc``/``sogea``; ``fttp`` for
  ``fttp``; ``ethernet``/``fttp`` for ``ethernet`` (a leased line).
- ``unverifiable``: an ``ethernet`` hand-off where a fibre or copper access is declared: an ONT
  or a modem in front of the router would look exactly like that, so the router can neither
  confirm nor contradict the inventory.
- ``mismatch``: anything else, e.g. declared FTTP and the router trains VDSL2; ``shdsl`` is
  copper and matches none of them (EFM is often sold as "Ethernet": exactly the case the
  estate needs to hear about); ``cable`` and ``cellular`` match no declared tech.

``tech_mismatch`` is ``True`` for a mismatch, ``False`` for a match and absent otherwise
(unverifiable, or either side ``unknown``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from netready.plugin import Metric
from netready.records import Record

#: IANAifType values that say what the physical access line is.
IFTYPE_TECH: dict[int, str] = {
    94: "adsl",  # adsl
    95: "adsl",  # radsl
    96: "adsl",  # sdsl (symmetric, pre-G.SHDSL) - copper, closest bucket
    97: "vdsl2",  # vdsl
    251: "vdsl2",  # vdsl2
    169: "shdsl",  # shdsl
    230: "adsl",  # adsl2
    238: "adsl",  # adsl2plus
    6: "ethernet",  # ethernetCsmacd
    62: "ethernet",  # fastEther
    117: "ethernet",  # gigabitEthernet
}

#: IANAifType values of DSL channels/lines (copper for sure).
DSL_IFTYPES: frozenset[int] = frozenset({94, 95, 96, 97, 169, 230, 238, 251})

#: What each declared inventory tech expects the router to show.
EXPECTED: dict[str, frozenset[str]] = {
    "adsl": frozenset({"adsl"}),
    "fttc": frozenset({"vdsl2", "gfast"}),
    "sogea": frozenset({"vdsl2", "gfast"}),
    "fttp": frozenset({"fttp"}),
    "ethernet": frozenset({"ethernet", "fttp"}),
}
#: Declared techs an Ethernet hand-off cannot contradict (an ONT or modem may be in front).
UNVERIFIABLE_BY_ETHERNET: frozenset[str] = frozenset({"adsl", "fttc", "sogea", "fttp"})

COPPER: frozenset[str] = frozenset({"adsl", "vdsl2", "gfast", "shdsl"})
TECH_CHECKS = ("match", "mismatch", "unverifiable")


def tech_check(declared: str | None, detected: str | None) -> str | None:
    """``match``, ``mismatch`` or ``unverifiable``; ``None`` when either is unknown."""
    if not declared or not detected or declared == "unknown" or detected == "unknown":
        return None
    expected = EXPECTED.get(declared)
    if expected is None:
        return None
    if detected in expected:
        return "match"
    if detected == "ethernet" and declared in UNVERIFIABLE_BY_ETHERNET:
        return "unverifiable"
    return "mismatch"


def tech_mismatch(declared: str | None, detected: str | None) -> bool | None:
    """True when the router contradicts the inventory, False when it agrees; ``None`` when
    it cannot say (unverifiable, or either is unknown)."""
    check = tech_check(declared, detected)
    return None if check not in ("match", "mismatch") else check == "mismatch"


def tech_from_mode(mode: str | None) -> str | None:
    """Detected tech from a trained-mode string (``G.993.2 (VDSL2) Profile 17a``, ``VDSL2``)."""
    if not mode:
        return None
    m = mode.upper()
    if "9701" in m or "G.FAST" in m or "GFAST" in m:
        return "gfast"
    if "993" in m or "VDSL" in m:
        return "vdsl2"
    if "992" in m or "ADSL" in m or "T1.413" in m:
        return "adsl"
    if "991" in m or "SHDSL" in m:
        return "shdsl"
    return None


_DSL_NAME = re.compile(r"^(?P<kind>ptm|atm|vdsl|adsl|dsl|gshdsl|shdsl)", re.IGNORECASE)


def tech_from_ifname(name: str) -> str | None:
    """Weakest evidence: the interface name (``ptm0.101`` -> vdsl2, ``atm0`` -> adsl)."""
    m = _DSL_NAME.match(name.strip())
    if not m:
        return None
    kind = m.group("kind").lower()
    if kind in ("ptm", "vdsl"):
        return "vdsl2"
    if kind in ("atm", "adsl"):
        return "adsl"
    if kind in ("gshdsl", "shdsl"):
        return "shdsl"
    return None


@dataclass
class DslLine:
    """One DSL line, direction-resolved. ``None`` means "not reported", never 0."""

    ifname: str
    detected_tech: str = "unknown"
    detected_by: str = ""  # dsl_mib | iftype | vendor_mib | cli | ifname
    line_up: bool | None = None
    mode: str | None = None  # trained mode / standard as the device names it
    sync_down_kbps: float | None = None
    sync_up_kbps: float | None = None
    attainable_down_kbps: float | None = None
    attainable_up_kbps: float | None = None
    snr_margin_down_db: float | None = None
    snr_margin_up_db: float | None = None
    atten_down_db: float | None = None
    atten_up_db: float | None = None
    interleave_delay_ms: float | None = None  # downstream
    interleave_delay_up_ms: float | None = None
    crc_errors_down: int | None = None
    crc_errors_up: int | None = None

    def fields(self) -> dict[str, float | int | str | bool | None]:
        return {
            "line_up": self.line_up,
            "mode": self.mode,
            "detected_by": self.detected_by or None,
            "sync_down_kbps": _f(self.sync_down_kbps),
            "sync_up_kbps": _f(self.sync_up_kbps),
            "attainable_down_kbps": _f(self.attainable_down_kbps),
            "attainable_up_kbps": _f(self.attainable_up_kbps),
            "snr_margin_down_db": _f(self.snr_margin_down_db),
            "snr_margin_up_db": _f(self.snr_margin_up_db),
            "atten_down_db": _f(self.atten_down_db),
            "atten_up_db": _f(self.atten_up_db),
            "interleave_delay_ms": _f(self.interleave_delay_ms),
            "interleave_delay_up_ms": _f(self.interleave_delay_up_ms),
            "crc_errors_down": self.crc_errors_down,
            "crc_errors_up": self.crc_errors_up,
        }


def _f(v: float | None) -> float | None:
    return None if v is None else float(v)


def dsl_record(
    line: DslLine,
    base_tags: Mapping[str, str],
    *,
    method: str,
    device: str,
    time_ms: int | None = None,
    contract_down_mbps: float | None = None,
    contract_up_mbps: float | None = None,
) -> Record:
    """The ``dsl_line`` record for one line (``method`` is ``snmp`` or ``ssh``).

    ``tech_mismatch`` compares ``detected_tech`` with the ``tech`` tag (the inventory's
    declared tech). With the contracted rates, ``contract_down_pct_of_sync`` says how much
    of the sync rate the contract asks for (above ~90 % the contract cannot be met).
    """
    fields = line.fields()
    if line.line_up is not False:  # an untrained spare port says nothing about the link
        fields["tech_mismatch"] = tech_mismatch(base_tags.get("tech"), line.detected_tech)
    if contract_down_mbps and line.sync_down_kbps:
        fields["contract_down_pct_of_sync"] = (
            100.0 * contract_down_mbps * 1000.0 / line.sync_down_kbps
        )
    if contract_up_mbps and line.sync_up_kbps:
        fields["contract_up_pct_of_sync"] = 100.0 * contract_up_mbps * 1000.0 / line.sync_up_kbps
    tags = {
        **base_tags,
        "method": method,
        "device": device,
        "ifname": line.ifname,
        "detected_tech": line.detected_tech,
        "result": "ok",
    }
    kw = {} if time_ms is None else {"time_ms": time_ms}
    present = {k: v for k, v in fields.items() if v is not None}
    return Record("dsl_line", tags, present, **kw)


#: The ``dsl_line`` fields, as both collectors declare them (``netready.plugin.Metric``).
DSL_FIELDS: tuple[Metric, ...] = tuple(
    Metric(name, unit, definition, "dsl_line")
    for name, unit, definition in (
        ("line_up", "bool", "showtime / ifOperStatus up"),
        ("mode", "text", "trained mode as the device names it, e.g. G.993.2 (VDSL2) Profile 17a"),
        ("detected_by", "text", "what told the technology: iftype, dsl_mib, vendor_mib, cli "
         "or ifname"),
        ("sync_down_kbps", "kbit/s", "actual net data rate downstream"),
        ("sync_up_kbps", "kbit/s", "actual net data rate upstream"),
        ("attainable_down_kbps", "kbit/s", "maximum attainable rate downstream"),
        ("attainable_up_kbps", "kbit/s", "maximum attainable rate upstream"),
        ("snr_margin_down_db", "dB", "SNR margin downstream"),
        ("snr_margin_up_db", "dB", "SNR margin upstream"),
        ("atten_down_db", "dB", "line attenuation downstream"),
        ("atten_up_db", "dB", "line attenuation upstream"),
        ("interleave_delay_ms", "ms", "interleaving delay downstream (0 = fast path)"),
        ("interleave_delay_up_ms", "ms", "interleaving delay upstream"),
        ("crc_errors_down", "errors", "CRC errors downstream since training (SSH/Cisco)"),
        ("crc_errors_up", "errors", "CRC errors upstream since training (SSH/Cisco)"),
        ("tech_mismatch", "bool", "the detected technology contradicts the inventory's "
         "link.tech (absent when either is unknown, or the line is down)"),
        ("contract_down_pct_of_sync", "%", "contracted download / sync rate x 100 (above ~90 "
         "the contract cannot be met)"),
        ("contract_up_pct_of_sync", "%", "contracted upload / sync rate x 100"),
    )
)  # fmt: skip
