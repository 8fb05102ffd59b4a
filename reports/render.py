"""Renderers: one ``Estate`` -> rich table, JSON (schema 1), CSV, Markdown or one offline HTML file.

The JSON document is the reference form; the others show the same facts. Schema (``schema: 1``)
is documented in docs/reports.md.

Names and other text come from the inventory and from the store (a router's reported line
type), so every renderer treats them as data, never as markup: control characters become
U+FFFD everywhere but JSON (which escapes them); the table escapes rich markup (``[/]``);
CSV cells that a spreadsheet would run as a formula are prefixed with ``'`` (OWASP's CSV
injection rule: = + - @ tab CR, numbers excepted); Markdown escapes HTML and its own
punctuation (| * _ ` [ ] ~ \\); HTML escapes everything it did not build itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from netready.reports.readiness import (
    MARGINAL,
    NO_DATA,
    NOT_READY,
    READY,
    STALE,
    TZ,
    Estate,
    SiteResult,
)

from netready import rubric

SCHEMA = 1
FORMATS = ("table", "json", "csv", "md", "html")
COLOURS = {
    READY: "#007f3b",
    MARGINAL: "#ffb81c",
    NOT_READY: "#d5281b",
    STALE: "#768692",
    NO_DATA: "#aeb7bd",
}  # NHS identity palette
RICH = {
    READY: "bold green",
    MARGINAL: "bold yellow",
    NOT_READY: "bold red",
    STALE: "magenta",
    NO_DATA: "dim",
}


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def plain(s: object) -> str:
    """Text with every control character (ESC sequences, CR, BEL, line breaks) as U+FFFD."""
    return _CONTROL.sub("\ufffd", str(s))


def rich_text(s: object) -> str:
    """Text for rich's console markup: shown as written, never interpreted (``[/]``)."""
    from rich.markup import escape

    return escape(plain(s))


_NUMBER = re.compile(r"[+-]?(\d[\d,]*\.?\d*|\.\d+)([eE][+-]?\d+)?%?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(v: object) -> object:
    """One CSV cell, safe to open in Excel, LibreOffice or Google Sheets.

    Numbers stay numbers (``-3.5`` too); text that a spreadsheet would evaluate as a
    formula (starts with = + - @ tab or CR: OWASP's CSV injection rule) gets a leading
    ``'``, which spreadsheets take as "this is text"; control characters become U+FFFD.
    """
    if v is None:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    s = str(v)
    if s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        s = "'" + s
    return plain(s)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(s: object) -> str:
    """Text for a Markdown table cell or heading: HTML escaped, Markdown punctuation
    backslash-escaped (CommonMark allows it before any ASCII punctuation), one line."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(plain(s), quote=False))


def n(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, TZ).strftime("%Y-%m-%d %H:%M %Z")


def _tech(r: SiteResult) -> str:
    det = r.detected_tech or "?"
    flag = " ≠" if r.tech_mismatch else " ?" if r.tech_check == "unverifiable" else ""
    return f"{r.declared_tech} / {det}{flag}"


def _cap(r: SiteResult) -> str:
    if r.capacity_calls is None:
        return f"? / {r.planned_clinics}"
    return f"{r.capacity_calls} / {r.planned_clinics}"


def _main_reasons(r: SiteResult, limit: int = 3) -> list[str]:
    order = {"not_ready": 0, "marginal": 1, "no_data": 2, "info": 3}
    bad = [x for x in r.reasons if x.band in order]
    bad.sort(key=lambda x: order[x.band])
    if r.verdict == STALE:
        bad = [x for x in r.reasons if x.metric == "newest"] + [
            x for x in bad if x.metric != "newest"
        ]
    return [x.text for x in bad[:limit]]


ESTATE_COLUMNS: list[tuple[str, Callable[[SiteResult], str]]] = [
    ("site", lambda r: r.ods),
    ("name", lambda r: r.name),
    ("ICB", lambda r: r.icb),
    ("tech decl/det", _tech),
    ("down p10 Mbps", lambda r: n(r.down_p10_mbps)),
    ("up p10 Mbps", lambda r: n(r.up_p10_mbps, 2)),
    ("RTT ms", lambda r: n(r.rtt_ms)),
    ("jitter ms", lambda r: n(r.jitter_ms)),
    ("loss %", lambda r: n(r.loss_pct, 2)),
    ("MOS", lambda r: n(r.mos, 2)),
    ("calls / planned", _cap),
    ("verdict", lambda r: r.verdict),
    ("confidence", lambda r: r.confidence.level),
]


# ------------------------------------------------------------------------------ JSON


def to_json_doc(e: Estate) -> dict[str, Any]:
    p = rubric.PROFILES[e.profile]
    return {
        "schema": SCHEMA,
        "generated_for": dt.datetime.fromtimestamp(e.now_ms / 1000, dt.UTC).isoformat(),
        "window": {
            "since_s": e.since_s,
            "start_ms": e.now_ms - int(e.since_s * 1000),
            "end_ms": e.now_ms,
            "hours": p.hours,
        },
        "profile": {"name": p.name, "title": p.title, "description": p.description},
        "store": e.store,
        "counts": e.counts(),
        "sites": [r.to_dict() for r in e.sites],
        "cohorts": e.cohorts,
        "by_icb": e.by_icb,
        "upgrade_priority": e.priority,
        "pstn_risk": e.pstn_risk,
        "tech_mismatch": e.mismatches,
        "tech_unverifiable": e.unverifiable,
        "rubric": [r for r in rubric.rubric_rows() if r["profile"] == p.name],
        "constants": {
            "headroom": rubric.HEADROOM,
            "sustained_pct": rubric.SUSTAINED_PCT,
            "quality_pct": rubric.QUALITY_PCT,
            "stale_after_s": rubric.STALE_AFTER.total_seconds(),
            "pstn_switch_off": rubric.PSTN_SWITCH_OFF.isoformat(),
        },
    }


def render_json(e: Estate) -> str:
    return json.dumps(to_json_doc(e), indent=2, ensure_ascii=False, default=str) + "\n"


# ------------------------------------------------------------------------------- CSV

CSV_FIELDS = [
    "ods",
    "name",
    "icb",
    "type",
    "declared_tech",
    "detected_tech",
    "tech_mismatch",
    "tech_check",
    "wlr",
    "registered_patients",
    "contracted_down_mbps",
    "contracted_up_mbps",
    "down_p10_mbps",
    "up_p10_mbps",
    "rtt_ms",
    "jitter_ms",
    "loss_pct",
    "burst_loss_pct",
    "reorder_pct",
    "mos",
    "media_mos",
    "capacity_calls",
    "planned_clinics",
    "capacity_source",
    "ct_minutes",
    "availability_pct",
    "verdict",
    "assessed",
    "profile",
]


def render_csv(e: Estate) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CSV_FIELDS, "confidence", "windows", "sessions_with_data", "excluded", "reasons"])
    for r in e.sites:
        d = r.to_dict()
        c = r.confidence
        row = [d[f] for f in CSV_FIELDS] + [
            c.level,
            c.windows,
            c.sessions_with_data,
            ";".join(f"{k}={v}" for k, v in sorted(c.excluded.items())),
            " | ".join(x.text for x in r.reasons),
        ]
        w.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


# ------------------------------------------------------------------------------ Markdown


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(md_text(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _cohort_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for c in rows:
        out.append(
            [
                f"{c['group']}" + (f" ({c['class']})" if c["by"] == "icb" else ""),
                str(c["sites"]),
                str(c["ready"]),
                f"{100 * c['share_ready']:.0f}%",
                n(c["down_p10_mbps"]["median"]),
                n(c["down_p10_mbps"]["p10"]),
                n(c["up_p10_mbps"]["median"], 2),
                n(c["up_p10_mbps"]["p10"], 2),
                n(c["rtt_ms"]["median"]),
                n(c["jitter_ms"]["median"]),
                n(c["mos"]["median"], 2),
            ]
        )
    return out


COHORT_HEAD = [
    "group",
    "sites",
    "ready",
    "share ready",
    "down p10 median",
    "down p10 p10",
    "up p10 median",
    "up p10 p10",
    "RTT median",
    "jitter median",
    "MOS median",
]


def _sections(e: Estate) -> list[tuple[str, list[str], list[list[str]]]]:
    by = {k: [c for c in e.cohorts if c["by"] == k] for k in ("declared_tech", "detected_tech")}
    return [
        ("Copper vs fibre — declared tech", COHORT_HEAD, _cohort_rows(by["declared_tech"])),
        (
            "Copper vs fibre — tech the router reports",
            COHORT_HEAD,
            _cohort_rows(by["detected_tech"]),
        ),
        ("By ICB", COHORT_HEAD, _cohort_rows(e.by_icb)),
        (
            "Upgrade priority (copper sites not ready)",
            [
                "rank",
                "site",
                "name",
                "tech",
                "verdict",
                "planned",
                "calls",
                "shortfall",
                "score",
                "patients",
                "why",
            ],
            [
                [
                    str(p["rank"]),
                    str(p["ods"]),
                    str(p["name"]),
                    str(p["declared_tech"]),
                    str(p["verdict"]),
                    str(p["planned_clinics"]),
                    "?" if p["capacity_calls"] is None else str(p["capacity_calls"]),
                    f"{100 * p['shortfall']:.0f}%",
                    f"{p['score']:.2f}",
                    "—" if p["registered_patients"] is None else f"{p['registered_patients']:,}",
                    str(p["why"]),
                ]
                for p in e.priority
            ],
        ),
        (
            f"PSTN switch-off {rubric.PSTN_SWITCH_OFF:%d %B %Y}: ADSL / WLR sites at risk",
            ["site", "name", "ICB", "why", "days left", "patients", "verdict"],
            [
                [
                    str(p["ods"]),
                    str(p["name"]),
                    str(p["icb"]),
                    str(p["why"]),
                    str(p["days_to_switch_off"]),
                    "—" if p["registered_patients"] is None else f"{p['registered_patients']:,}",
                    str(p["verdict"]),
                ]
                for p in e.pstn_risk
            ],
        ),
        (
            "Declared tech disagrees with the router",
            ["site", "name", "declared", "router reports"],
            [
                [str(m["ods"]), str(m["name"]), str(m["declared_tech"]), str(m["detected_tech"])]
                for m in e.mismatches
            ],
        ),
        (
            "Router sees an Ethernet handoff: declared tech unverifiable (an ONT or modem in "
            "front looks the same)",
            ["site", "name", "declared", "router reports"],
            [
                [str(m["ods"]), str(m["name"]), str(m["declared_tech"]), str(m["detected_tech"])]
                for m in e.unverifiable
            ],
        ),
    ]


def _title(e: Estate) -> str:
    p = rubric.PROFILES[e.profile]
    days = e.since_s / 86400
    return (
        f"netready readiness — {p.title} — {days:g} days to {when(e.now_ms)}"
        f" ({'clinic hours' if p.hours == 'clinic' else 'all hours'})"
    )


def render_md(e: Estate) -> str:
    c = e.counts()
    parts = [
        f"# {md_text(_title(e))}",
        "",
        "Verdicts: "
        + ", ".join(f"{k} {v}" for k, v in c.items())
        + f". Store: {md_text(e.store)}.",
        "",
        "## Estate",
        "",
        _md_table(
            [h for h, _ in ESTATE_COLUMNS] + ["reasons"],
            [[f(r) for _, f in ESTATE_COLUMNS] + ["; ".join(_main_reasons(r))] for r in e.sites],
        ),
    ]
    for title, head, rows in _sections(e):
        parts += ["", f"## {md_text(title)}", "", _md_table(head, rows) if rows else "_none_"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ rich table


def render_table(e: Estate, console: Any) -> None:
    """Compact estate table, then the reasons for every site that is not READY, then the
    cohort, priority, PSTN and mismatch tables."""
    from rich.table import Table

    c = e.counts()
    t = Table(title=_title(e), title_justify="left", pad_edge=False)
    short = {"name": 22, "tech decl/det": 14}
    for h, _ in ESTATE_COLUMNS:
        t.add_column(
            h,
            no_wrap=True,
            overflow="ellipsis",
            max_width=short.get(h),
            justify="right" if any(u in h for u in ("Mbps", "ms", "%", "MOS", "/ ")) else "left",
        )
    for r in e.sites:
        cells = [rich_text(f(r)) for _, f in ESTATE_COLUMNS]
        cells[-2] = f"[{RICH[r.verdict]}]{r.verdict}[/]"
        t.add_row(*cells)
    console.print(t)
    console.print(
        "Verdicts: "
        + ", ".join(f"[{RICH[k]}]{k}[/] {v}" for k, v in c.items())
        + f"   store: {rich_text(e.store)}"
    )
    why = [r for r in e.sites if r.verdict != READY]
    if why:
        console.print("\n[bold]Why not READY[/]")
        for r in why:
            console.print(f"[{RICH[r.verdict]}]{r.ods} {r.verdict}[/] {rich_text(r.name)}")
            for x in _main_reasons(r, 4):
                console.print(f"    - {rich_text(x)}", highlight=False)
    for title, head, rows in _sections(e):
        if not rows:
            continue
        st = Table(title=rich_text(title), title_justify="left")
        for h in head:
            st.add_column(h, overflow="fold")
        for row in rows:
            st.add_row(*(rich_text(x) for x in row))
        console.print(st)


def render_text(e: Estate, width: int = 200) -> str:
    from rich.console import Console

    buf = io.StringIO()
    render_table(e, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


# ------------------------------------------------------------------------------ HTML

CSS = """
body{font-family:Arial,Helvetica,sans-serif;margin:24px;color:#212b32;background:#f0f4f5}
h1{font-size:22px;color:#005eb8}h2{font-size:18px;margin-top:28px;color:#003087}
table{border-collapse:collapse;background:#fff;font-size:12px;margin:8px 0}
th,td{border:1px solid #d8dde0;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#005eb8;color:#fff}td.num{text-align:right}
.v{font-weight:bold;color:#fff;padding:1px 5px;border-radius:3px;white-space:nowrap}
.summary span{margin-right:14px}.chart{background:#fff;padding:8px;margin:8px 0;display:inline-block}
small{color:#425563}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    s = buf.getvalue()
    return s[s.index("<svg") :]


def charts(e: Estate) -> list[tuple[str, str]]:
    """(title, inline SVG) pairs; matplotlib with the non-interactive SVG backend."""
    from netready.optional import require

    matplotlib = require("matplotlib", "the HTML report's charts")

    matplotlib.use("svg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small and searchable
    import matplotlib.pyplot as plt

    p = rubric.PROFILES[e.profile]
    out = []
    # 1. measured up/down per planned call against the per-call requirement.
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for verdict, colour in COLOURS.items():
        xs, ys = [], []
        for r in e.sites:
            if r.verdict == verdict and r.up_p10_mbps and r.down_p10_mbps:
                k = max(1, r.planned_clinics)
                xs.append(rubric.HEADROOM * r.up_p10_mbps / k)
                ys.append(rubric.HEADROOM * r.down_p10_mbps / k)
        if xs:
            ax.scatter(
                xs, ys, s=18, c=colour, label=f"{verdict} ({len(xs)})", alpha=0.8, edgecolors="none"
            )
    for t, axis in ((p.up, "x"), (p.down, "y")):
        for v, style, lab in ((t.minimum, "--", "minimum"), (t.recommended, "-", "recommended")):
            line = ax.axvline if axis == "x" else ax.axhline
            line(v, color="#425563", linestyle=style, linewidth=0.8)
            if axis == "x":
                ax.annotate(
                    f"{lab} {v:g}",
                    (v, 1),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    rotation=90,
                    va="top",
                    ha="right",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("upload per planned call, Mbit/s (0.75 × p10 ÷ planned clinics)")
    ax.set_ylabel("download per planned call, Mbit/s")
    ax.set_title("Measured bandwidth per planned call vs the per-call requirement")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no throughput measured yet", transform=ax.transAxes, ha="center")
    out.append(("Bandwidth per planned call", _svg(fig)))
    plt.close(fig)
    # 2. copper vs fibre distributions.
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    groups = ["copper", "fibre", "unknown"]
    for ax, (f, label) in zip(
        axes,
        (
            ("up_p10_mbps", "upload p10, Mbit/s"),
            ("rtt_ms", "RTT p95 of windows, ms"),
            ("jitter_ms", "jitter p95, ms"),
        ),
        strict=True,
    ):
        data = [
            [getattr(r, f) for r in e.sites if r.tech_class == g and getattr(r, f) is not None]
            for g in groups
        ]
        present = [(g, d) for g, d in zip(groups, data, strict=True) if d]
        if present:
            ax.boxplot(
                [d for _, d in present], tick_labels=[f"{g}\n(n={len(d)})" for g, d in present]
            )
            if f == "up_p10_mbps":
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        ax.set_title(label, fontsize=9)
    fig.suptitle("Copper vs fibre (declared tech): distribution of site figures")
    out.append(("Copper vs fibre", _svg(fig)))
    plt.close(fig)
    return out


def _html_table(
    head: Sequence[str], rows: Sequence[Sequence[str]], raw_cols: AbstractSet[int] = frozenset()
) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cells.append(f"<td>{c if i in raw_cols else html.escape(plain(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _badge(v: str) -> str:
    fg = "#212b32" if v == MARGINAL else "#fff"
    return f'<span class="v" style="background:{COLOURS[v]};color:{fg}">{html.escape(v)}</span>'


def render_html(e: Estate) -> str:
    c = e.counts()
    title = _title(e)
    head = [h for h, _ in ESTATE_COLUMNS] + ["reasons"]
    vi = [h for h, _ in ESTATE_COLUMNS].index("verdict")
    rows = []
    for r in e.sites:
        cells = [html.escape(plain(f(r))) for _, f in ESTATE_COLUMNS]
        cells[vi] = _badge(r.verdict)
        cells.append("<br>".join(html.escape(plain(x)) for x in _main_reasons(r)))
        rows.append(cells)
    estate = _html_table(head, rows, raw_cols=set(range(len(head))))
    estate = estate.replace("<tr><td>", '<tr class="site"><td>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p class="summary">'
        + "".join(f"<span>{_badge(k)} {v}</span>" for k, v in c.items())
        + f"</p><p><small>Store: {html.escape(plain(e.store))}. Thresholds and sources: see the "
        "rubric at the end. Figures: RTT, jitter, loss are p95 of 15 s windows per clinic day, "
        "median over days; throughput is the p10 (sustained) goodput.</small></p>",
        "<h2>Estate</h2>",
        estate,
    ]
    for t, svg in charts(e):
        parts += [f"<h2>{html.escape(t)}</h2>", f'<div class="chart">{svg}</div>']
    for t, h, rs in _sections(e):
        parts += [f"<h2>{html.escape(t)}</h2>", _html_table(h, rs) if rs else "<p>None.</p>"]
    rub = [r for r in rubric.rubric_rows() if r["profile"] == e.profile]
    parts += [
        "<h2>Rubric</h2>",
        _html_table(
            ["metric", "not ready", "minimum", "recommended", "unit", "how measured", "source"],
            [
                [
                    str(r["label"]),
                    "—" if r["not_ready"] is None else f"{r['not_ready']:g}",
                    f"{r['minimum']:g}",
                    f"{r['recommended']:g}",
                    str(r["unit"]),
                    str(r["how"]),
                    str(r["source"]),
                ]
                for r in rub
            ],
        ),
    ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(e: Estate, fmt: str) -> str:
    if fmt == "json":
        return render_json(e)
    if fmt == "csv":
        return render_csv(e)
    if fmt == "md":
        return render_md(e)
    if fmt == "html":
        return render_html(e)
    return render_text(e)
