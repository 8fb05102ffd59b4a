"""Router CLI outputs -> ``DslLine``: pure functions, no I/O but reading the templates.

Where ntc-templates (the maintained TextFSM set, the ``ssh`` extra) has a template for a
command, it is used; ``collectors/ssh/templates/`` holds ours for what it has none of (the
Cisco VDSL controller and rawcli outputs) and for the one field its Huawei template matches
but does not capture (``Port PHY type``).

``parse_output(vendor, command, text)`` picks the parser from ``COMMANDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import textfsm
from netready.collectors.dsl import DslLine, tech_from_mode

from netready.errors import ParseError
from netready.optional import require

TEMPLATES = Path(__file__).with_name("templates")


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def textfsm_rows(template: str, text: str) -> list[dict[str, str]]:
    """Run ``collectors/ssh/templates/<template>.textfsm`` over ``text`` (CRLF tolerated)."""
    with open(TEMPLATES / f"{template}.textfsm", encoding="utf-8") as f:
        fsm = textfsm.TextFSM(f)
    return fsm.ParseTextToDicts(_clean(text))


def ntc_rows(platform: str, command: str, text: str) -> list[dict[str, Any]]:
    """ntc-templates' template for ``platform``/``command`` over ``text`` (keys lower-case,
    as ntc-templates returns them); ``ParseError`` when its template rejects the output."""
    parse = require("ntc_templates.parse", "the ssh collector")
    try:
        return parse.parse_output(platform=platform, command=command, data=_clean(text))
    except parse.ParsingException as e:
        raise ParseError(f"{platform}: {command!r} output not recognised: {e}") from None
    except textfsm.TextFSMError as e:
        raise ParseError(f"{platform}: {command!r} output not recognised: {e}") from None


def _num(s: str | None) -> float | None:
    if s is None:
        return None
    s = s.strip()
    if not s or s.upper() in ("NA", "N/A", "-"):
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _sum(*vals: str | None) -> float | None:
    nums = [n for n in (_num(v) for v in vals) if n is not None]
    return sum(nums) if nums else None


def _max(*vals: str | None) -> float | None:
    nums = [n for n in (_num(v) for v in vals) if n is not None]
    return max(nums) if nums else None


def parse_cisco_controller_vdsl(text: str) -> list[DslLine]:
    """``show controller vdsl N/N/N`` (IOS-XE) or ``show controllers vdsl 0`` (classic IOS,
    C867VAE/C887VA) -> one ``DslLine`` per controller.

    XTU-R column = downstream, XTU-C column = upstream. Sync rate = the sum of the
    channels that are not "NA" (Channel0 normally; Channel1 too on a dual-latency line).
    Interleave delay = the larger of the two channels. An attainable rate of 0 is "not
    reported"; others are kept as the modem said (the C1112 says 57590 attainable upstream
    while synced at 57746).
    The line is up when the modem status says Showtime.
    """
    out: list[DslLine] = []
    for r in textfsm_rows("cisco_show_controller_vdsl", text):
        showtime = "showtime" in r["MODEM_STATUS"].lower()
        mode = r["TRAINED_MODE"] or None
        line = DslLine(ifname=f"VDSL {r['CONTROLLER']}", mode=mode, line_up=showtime)
        tech = tech_from_mode(mode)
        line.detected_tech, line.detected_by = (tech, "cli") if tech else ("unknown", "")
        line.sync_down_kbps = _sum(r["SPEED_DS1"], r["SPEED_DS0"])
        line.sync_up_kbps = _sum(r["SPEED_US1"], r["SPEED_US0"])
        # 0 means "not reported" (the ADSL2+ output reads 0 while synced at 23.8 Mbit/s).
        line.attainable_down_kbps = _num(r["ATTAINABLE_DS"]) or None
        line.attainable_up_kbps = _num(r["ATTAINABLE_US"]) or None
        line.snr_margin_down_db = _num(r["SNR_DS"])
        line.snr_margin_up_db = _num(r["SNR_US"])
        line.atten_down_db = _num(r["LINE_ATTEN_DS"])
        line.atten_up_db = _num(r["LINE_ATTEN_US"])
        line.interleave_delay_ms = _max(r["INTERLEAVE_DS1"], r["INTERLEAVE_DS0"])
        line.interleave_delay_up_ms = _max(r["INTERLEAVE_US1"], r["INTERLEAVE_US0"])
        crc_dn, crc_up = _sum(r["CRC_DS1"], r["CRC_DS0"]), _sum(r["CRC_US1"], r["CRC_US0"])
        line.crc_errors_down = None if crc_dn is None else int(crc_dn)
        line.crc_errors_up = None if crc_up is None else int(crc_up)
        if not showtime:
            line.sync_down_kbps = line.sync_down_kbps or 0.0
            line.sync_up_kbps = line.sync_up_kbps or 0.0
            line.attainable_down_kbps = line.attainable_up_kbps = None
            line.snr_margin_down_db = line.snr_margin_up_db = None
            line.atten_down_db = line.atten_up_db = None
        out.append(line)
    return out


def parse_cisco_rawcli_summary(text: str) -> list[DslLine]:
    """``test vdsl rawcli "basic show summary 0"`` -> rates, mode, state (no SNR)."""
    out = []
    for r in textfsm_rows("cisco_iosxe_test_vdsl_rawcli_summary", text):
        up = r["STATUS"].lower() == "showtime"
        mode = f"{r['MODE']} {r['ANNEX']} {r['PROFILE']}"
        tech = tech_from_mode(r["MODE"])
        out.append(
            DslLine(
                ifname="VDSL 0",
                detected_tech=tech or "unknown",
                detected_by="cli" if tech else "",
                line_up=up,
                mode=mode,
                sync_down_kbps=_num(r["RATE_DS"]),
                sync_up_kbps=_num(r["RATE_US"]),
            )
        )
    return out


def parse_huawei_display_interface(text: str) -> list[DslLine]:
    """``display interface`` (VRP) -> one ``DslLine`` per port whose PHY type is a DSL.

    The interfaces, their state and protocol come from ntc-templates'
    ``huawei_vrp_display_interface``; the PHY type from ours (ntc's matches that line but
    does not keep it). VRP's generic interface output says only that the port is a DSL port
    and whether it is up: no rates or margins (those need ``display dsl interface``, for
    which no public recording was found to write a template against).
    """
    ifaces = {r["interface"]: r for r in ntc_rows("huawei_vrp", "display interface", text)}
    out = []
    for r in textfsm_rows("huawei_vrp_display_interface_phy", text):
        tech = tech_from_mode(r["PHY_TYPE"]) if r["PHY_TYPE"] else None
        if not tech:
            continue
        row = ifaces.get(r["INTERFACE"])
        if row is None:
            raise ParseError(f"huawei_vrp: 'display interface': {r['INTERFACE']} not parsed")
        state, proto = str(row["link_status"]).upper(), str(row["protocol_status"]).upper()
        out.append(
            DslLine(
                ifname=r["INTERFACE"],
                detected_tech=tech,
                detected_by="cli",
                line_up=state.startswith("UP") and proto.startswith("UP"),
                mode=r["PHY_TYPE"],
            )
        )
    return out


@dataclass(frozen=True)
class Command:
    template: str  # command text; {controller} is filled from the spec
    parse: Callable[[str], list[DslLine]]
    #: the router answering with no DSL port is a valid answer (not "output not recognised")
    may_be_empty: bool = False


#: vendor (inventory ``router.vendor``) -> the commands that give DSL line status.
COMMANDS: dict[str, tuple[Command, ...]] = {
    "cisco_iosxe": (Command("show controller vdsl {controller}", parse_cisco_controller_vdsl),),
    "cisco_ios": (Command("show controllers vdsl {controller}", parse_cisco_controller_vdsl),),
    "huawei_vrp": (
        Command("display interface", parse_huawei_display_interface, may_be_empty=True),
    ),
}

_ERROR_MARKERS = (
    "% invalid input",
    "% incomplete command",
    "% ambiguous command",
    "error: unrecognized command",
    "error: wrong parameter",
)


def parse_output(vendor: str, command: str, text: str) -> list[DslLine]:
    """Parse one command's output; ``ParseError`` if the router refused it or nothing parsed."""
    low = text.lower()
    for marker in _ERROR_MARKERS:
        if marker in low:
            first = next((ln.strip() for ln in text.splitlines() if marker in ln.lower()), marker)
            raise ParseError(f"{vendor}: {command!r} was refused by the router: {first}")
    cmds = {c.template.split(" {")[0]: c for c in COMMANDS.get(vendor, ())}
    cmd = next((c for k, c in cmds.items() if command.startswith(k)), None)
    if cmd is None:
        raise ParseError(f"{vendor}: no parser for {command!r}")
    lines = cmd.parse(text)
    if not lines and not cmd.may_be_empty:
        head = next((ln.strip() for ln in text.splitlines() if ln.strip()), "(empty output)")
        raise ParseError(f"{vendor}: {command!r} output not recognised: {head[:80]}")
    return lines
