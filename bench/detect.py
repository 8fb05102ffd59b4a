#!/usr/bin/env python3
"""Copper/fibre detection benchmark: the whole SNMP corpus against its expected answers.

Every recording in tests/data/snmprec is parsed into varbinds the way the collector reads an
agent (``parse_snmprec``: the same ``{oid: value}`` a poll returns; tests/test_snmp.py checks
the two are equal over the wire with snmpsim) and run through ``collectors.snmp.detect``, the
code the agent runs. Printed side by side, in one run:

- the confusion matrix of detected technology (rows: expected.yaml's ``tech``; a detection in
  ``tech_acceptable`` counts on the diagonal);
- the share of right WAN choices (the chosen ifIndex in ``wan.accept``, or nothing chosen where
  ``accept`` is empty), and the baseline of the detector at 2c7e5be (EXPECTED.md);
- every miss with the detector's reason and evidence.

Goal (issue 12): at least 95 % on both.

    python bench/detect.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netready.collectors.snmp import detect, parse_snmprec  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "snmprec"
CLASSES = ["adsl", "vdsl", "gfast", "shdsl", "fttp", "ethernet", "cable", "cellular", "unknown"]
SPELLING = {"vdsl2": "vdsl"}
#: The detector before this rewrite, over the same corpus (EXPECTED.md "Baseline").
BASELINE = {"tech": (24, 54), "wan": (39, 54)}


def score() -> list[dict[str, object]]:
    doc = yaml.safe_load((CORPUS / "expected.yaml").read_text("utf-8"))
    rows = []
    for e in doc["recordings"]:
        vb = parse_snmprec((CORPUS / e["file"]).read_text("utf-8", "surrogateescape"))
        res = detect(vb)
        got = SPELLING.get(res.tech.tech, res.tech.tech)
        ok_tech = got == e["tech"] or got in e.get("tech_acceptable", [])
        chosen = res.wan.iface.index if res.wan.iface else None
        accept = e["wan"]["accept"]
        ok_wan = chosen in accept if chosen is not None else not accept
        rows.append(
            {
                "file": e["file"].removesuffix(".snmprec"),
                "expected": e["tech"],
                "detected": got,
                "counted_as": e["tech"] if ok_tech else got,
                "tech_ok": ok_tech,
                "confidence": res.tech.confidence,
                "evidence": res.tech.evidence,
                "wan": chosen,
                "wan_name": res.wan.iface.name if res.wan.iface else None,
                "accept": accept,
                "wan_ok": ok_wan,
                "wan_reason": f"{res.wan.how}: {res.wan.reason}",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="the per-recording rows as JSON")
    args = ap.parse_args()
    rows = score()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    out = Console(width=150)  # the matrix is wider than a pipe's default 80 columns
    n = len(rows)
    matrix = Table(title=f"Detected technology over {n} real recordings (rows: expected)")
    matrix.add_column("expected \\ detected")
    for c in CLASSES:
        matrix.add_column(c, justify="right")
    for exp in CLASSES:
        mine = [r for r in rows if r["expected"] == exp]
        if not mine:
            continue
        cells = [str(sum(r["counted_as"] == c for r in mine) or "") for c in CLASSES]
        matrix.add_row(f"{exp} ({len(mine)})", *cells)
    out.print(matrix)
    tech_ok = sum(bool(r["tech_ok"]) for r in rows)
    wan_ok = sum(bool(r["wan_ok"]) for r in rows)
    summary = Table(title="Share right (goal: at least 95 % on both)")
    for col in ("", "netready (this tree)", "detector at 2c7e5be (baseline)"):
        summary.add_column(col, justify="right")
    for key, ok in (("technology", tech_ok), ("WAN choice", wan_ok)):
        b_ok, b_n = BASELINE["tech" if key == "technology" else "wan"]
        summary.add_row(key, f"{ok}/{n} ({100 * ok / n:.0f} %)",
                        f"{b_ok}/{b_n} ({100 * b_ok / b_n:.0f} %)")  # fmt: skip
    out.print(summary)
    conf = Table(title="Confidence of the right technology answers")
    for col in ("high", "medium", "low"):
        conf.add_column(col, justify="right")
    conf.add_row(*(str(sum(1 for r in rows if r["tech_ok"] and r["confidence"] == c))
                   for c in ("high", "medium", "low")))  # fmt: skip
    out.print(conf)
    misses = [r for r in rows if not (r["tech_ok"] and r["wan_ok"])]
    if misses:
        t = Table(title="Misses")
        for col in ("file", "tech (expected)", "WAN (accept)", "why"):
            t.add_column(col)
        for r in misses:
            t.add_row(str(r["file"]), f"{r['detected']} ({r['expected']})",
                      f"{r['wan']} ({r['accept']})", f"{r['wan_reason']} | {r['evidence']}")  # fmt: skip
        out.print(t)
    else:
        out.print("Misses: none.")


if __name__ == "__main__":
    main()
