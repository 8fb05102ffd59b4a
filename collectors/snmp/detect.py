"""One device's detection, sans-IO: varbinds in, WAN choice + technology + DSL lines out.

The collector (``collectors/snmp/__init__.py``), ``bench/detect.py`` and
``tests/test_detect.py`` all call ``detect``: the corpus is scored with exactly the code
that runs against a live router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netready.collectors.dsl import DslLine
from netready.collectors.snmp.lines import db_scale_for, dsl_lines
from netready.collectors.snmp.mib import Iface, Value, interfaces
from netready.collectors.snmp.tech import Detection, detect_tech
from netready.collectors.snmp.wan import Topology, WanChoice, choose_wan, topology


@dataclass
class Result:
    ifaces: dict[int, Iface]
    topo: Topology
    wan: WanChoice
    lines: list[DslLine]
    tech: Detection


def detect(
    vb: Mapping[str, Value],
    *,
    wan_pattern: str | None = None,
    dsl: bool = True,
    db_scale_mode: str = "auto",
    vendor: str | None = None,
    ifaces: Mapping[int, Iface] | None = None,
) -> Result:
    ifs = dict(ifaces) if ifaces is not None else interfaces(vb)
    topo = topology(vb, ifs)
    wan = choose_wan(topo, wan_pattern)
    lines = dsl_lines(vb, ifs, db_scale_for(vb, db_scale_mode, vendor)) if dsl else []
    return Result(ifs, topo, wan, lines, detect_tech(vb, topo, wan, lines))
