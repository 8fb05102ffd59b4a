"""Renderers: one ``Estate`` -> rich table, JSON (schema 1), CSV, Markdown or one offline HTML
file in the NHS.UK frontend's styles (``render_html``; ``for_print`` is the page the PDF prints,
reports/screenshot.py ``print_pdf``).

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
from dataclasses import dataclass, field
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
    qos_word,
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


def _grade(r: SiteResult) -> str:
    """The profile's plain grade (rubric.GRADES) and the one measured reason behind it."""
    return f"{r.grade or '—'}: {r.grade_reason}" if r.grade_reason else r.grade or "—"


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
    ("grade", _grade),
]

#: ``--profile all``: each profile's column heading (short; the profile's title is in the
#: grade-per-use table's caption and the JSON ``profiles``)
GRADE_HEADS = {
    "gp_video": "1:1 GP video",
    "virtual_outpatient": "3-party clinic",
    "imaging_transfer": "imaging",
    "virtual_ward": "virtual ward",
}


def grade_head(profile: str) -> str:
    return GRADE_HEADS.get(profile, profile)


def _grade_word(g: dict[str, str | None] | None) -> str:
    return (g or {}).get("grade") or "—"


def grade_rows(e: Estate) -> list[tuple[SiteResult, list[tuple[str, str]]]]:
    """``--profile all``: per site, per profile (in ``by_profile`` order) the grade in words
    and the one measured reason behind it (("No grade", "no data") without data)."""
    grades = e.grades()
    rows = []
    for r in e.sites:
        cells = []
        for p in e.by_profile or {}:
            g = grades.get(r.ods, {}).get(p) or {}
            cells.append((g.get("grade") or "No grade", g.get("reason") or "no data"))
        rows.append((r, cells))
    return rows


def grade_head_row(e: Estate) -> list[str]:
    return ["site", "name", *(grade_head(p) for p in e.by_profile or {})]


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
        "sites": _json_sites(e),
        "cohorts": e.cohorts,
        "by_icb": e.by_icb,
        "upgrade_priority": e.priority,
        "pstn_risk": e.pstn_risk,
        "tech_mismatch": e.mismatches,
        "tech_unverifiable": e.unverifiable,
        **({"history": e.history.to_dict()} if e.history is not None else {}),
        **({"profiles": _json_profiles(e.by_profile)} if e.by_profile is not None else {}),
        "rubric": [
            r for r in rubric.rubric_rows() if e.by_profile is not None or r["profile"] == p.name
        ],
        "constants": {
            "headroom": rubric.HEADROOM,
            "sustained_pct": rubric.SUSTAINED_PCT,
            "quality_pct": rubric.QUALITY_PCT,
            "stale_after_s": rubric.STALE_AFTER.total_seconds(),
            "pstn_switch_off": rubric.PSTN_SWITCH_OFF.isoformat(),
        },
    }


def _json_sites(e: Estate) -> list[dict[str, Any]]:
    """Each site's result; with ``--profile all`` also its ``grades``: profile ->
    {grade, reason, verdict}."""
    if e.by_profile is None:
        return [r.to_dict() for r in e.sites]
    grades = e.grades()
    return [{**r.to_dict(), "grades": grades.get(r.ods, {})} for r in e.sites]


def _json_profiles(by_profile: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"name": p.name, "title": p.title, "description": p.description, "hours": p.hours}
        for p in (rubric.PROFILES[k] for k in by_profile)
    ]


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
    profiles = list(e.by_profile or {})
    grades = e.grades()
    w.writerow(
        [
            *CSV_FIELDS,
            "confidence",
            "windows",
            "sessions_with_data",
            "excluded",
            "reasons",
            *(f"grade_{p}" for p in profiles),
        ]
    )
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
        row += [(grades.get(r.ods, {}).get(p) or {}).get("grade") or "" for p in profiles]
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
    from netready.reports import history

    return _estate_sections(e) + history.sections(e.history)


def _estate_sections(e: Estate) -> list[tuple[str, list[str], list[list[str]]]]:
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
            "Does QoS protect the call? (the newest QoS check: EF audio vs best effort under "
            "bulk load)",
            ["site", "name", "QoS under load", "why"],
            [[r.ods, r.name, qos_word(r), r.qos_reason] for r in e.sites if r.qos_reason],
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
    uses = f"every use graded; figures for {p.title}" if e.by_profile is not None else p.title
    return (
        f"netready readiness — {uses} — {days:g} days to {when(e.now_ms)}"
        f" ({'clinic hours' if p.hours == 'clinic' else 'all hours'})"
    )


GRADES_TITLE = "Grade per use"


def _grades_intro(e: Estate) -> str:
    titles = "; ".join(f"{grade_head(k)}: {rubric.PROFILES[k].title}" for k in e.by_profile or {})
    return (
        "Each use's plain grade (Great / Good / Poor / Unusable: the worst band of its gates) "
        f"and the one measured reason behind it. {titles}."
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
    if e.by_profile is not None:
        parts += [
            "",
            f"## {GRADES_TITLE}",
            "",
            md_text(_grades_intro(e)),
            "",
            _md_table(
                grade_head_row(e),
                [[r.ods, r.name, *(f"{w}: {why}" for w, why in c)] for r, c in grade_rows(e)],
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
    vi, gi = ([h for h, _ in ESTATE_COLUMNS].index(k) for k in ("verdict", "grade"))
    for r in e.sites:
        cells = [rich_text(f(r)) for _, f in ESTATE_COLUMNS]
        cells[vi] = f"[{RICH[r.verdict]}]{r.verdict}[/]"
        cells[gi] = rich_text(r.grade or "—")  # its reason: under "Why not READY"
        t.add_row(*cells)
    if e.by_profile is not None:
        console.print(t)
        t = Table(title=GRADES_TITLE, title_justify="left", pad_edge=False)
        for h in grade_head_row(e):
            t.add_column(h, no_wrap=True, overflow="ellipsis", max_width=short.get(h))
        for r, got in grade_rows(e):
            t.add_row(rich_text(r.ods), rich_text(r.name), *(rich_text(w) for w, _ in got))
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
            console.print(
                f"[{RICH[r.verdict]}]{r.ods} {r.verdict}[/] {rich_text(r.name)}"
                f" — grade {rich_text(r.grade or '—')}",  # its reason: the first line below
                highlight=False,
            )
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
#
# One self-contained offline page in the NHS.UK frontend's styles (reports/assets, inlined),
# WCAG 2.2 AA (axe-core in the tests): landmarks, a skip link, a contents list, tables with
# captions and header scopes, every chart a figure whose caption is its text alternative,
# with a data table beside it. The page is a list of sections (HTML_SECTIONS); a section is a
# function of the page returning (id, title, HTML) or None to leave itself out.

#: verdict -> NHS.UK tag colour (nhsuk-tag--...)
TAG = {READY: "green", MARGINAL: "yellow", NOT_READY: "red", STALE: "grey", NO_DATA: "white"}

CSS = """
html{font-family:arial,sans-serif}
.nr-wrap{overflow-x:auto;margin-bottom:24px}.nr-wrap:focus{outline:3px solid #ffeb3b;
box-shadow:0 0 0 7px #212b32}.nr-wrap .nhsuk-table{margin-bottom:0}
.nr-dense .nhsuk-table__header,.nr-dense .nhsuk-table__cell{font-size:14px;line-height:1.3;
padding:6px 12px 6px 0;vertical-align:top}.nr-num{text-align:right;white-space:nowrap}
.nr-figure{margin:0 0 24px}.nr-figure svg{max-width:100%;height:auto;display:block}
.nr-figure figcaption{max-width:48em}.nr-site{border-top:1px solid #d8dde0;padding-top:16px}
.nr-summary .nhsuk-tag{margin-right:8px}.nr-summary li{display:inline-block;margin-right:24px}
@page{size:A4 landscape;margin:12mm}
@media print{html{font-family:sans-serif}body,.nhsuk-main-wrapper{background:#fff}
a[href^="#"]::after{content:none !important}.nr-dense .nhsuk-table__cell{font-size:12px}.nhsuk-skip-link,.nhsuk-contents-list{display:none}.nr-wrap{overflow:visible}
.nhsuk-header,.nhsuk-footer{print-color-adjust:exact;-webkit-print-color-adjust:exact}
.nhsuk-tag{print-color-adjust:exact;-webkit-print-color-adjust:exact}
.nr-wrap .nhsuk-table{page-break-inside:auto;break-inside:auto}
.nr-figure,tr{break-inside:avoid}h2,h3{break-after:avoid}thead{display:table-header-group}
.nr-site{break-before:auto}}
"""


def nhsuk_css() -> str:
    """The vendored NHS.UK frontend styles (reports/assets/nhsuk-frontend.min.css)."""
    from importlib.resources import files

    return (files("netready.reports") / "assets" / "nhsuk-frontend.min.css").read_text("utf-8")


def esc(s: object) -> str:
    return html.escape(plain(s))


@dataclass
class Page:
    """What every HTML section sees: the estate and how the page is used (``for_print``:
    the PDF, every ``<details>`` open)."""

    e: Estate
    for_print: bool = False
    _ids: dict[str, int] = field(default_factory=dict)

    def id(self, stem: str) -> str:
        """A unique element id beginning with ``stem``."""
        k = self._ids.get(stem, 0) + 1
        self._ids[stem] = k
        return stem if k == 1 else f"{stem}-{k}"

    def details(self, summary: str, body: str) -> str:
        return (
            f'<details class="nhsuk-details"{" open" if self.for_print else ""}>'
            f'<summary class="nhsuk-details__summary"><span class="nhsuk-details__summary-text">'
            f'{esc(summary)}</span></summary><div class="nhsuk-details__text">{body}</div></details>'
        )


def badge(v: str) -> str:
    return f'<strong class="nhsuk-tag nhsuk-tag--{TAG[v]}">{html.escape(v)}</strong>'


_NUMERIC = re.compile(r"^[—?+-]?[\d,.]*\d[\d,.]*( / \S+)?%?$|^—$")


def html_table(
    page: Page,
    caption: str,
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    raw_cols: AbstractSet[int] = frozenset(),
    row_class: str = "",
) -> str:
    """An NHS.UK table in a keyboard-scrollable region, the caption naming it; the first cell
    of each row is its row header. Cells are escaped unless their column is in ``raw_cols``."""
    th = "".join(f'<th class="nhsuk-table__header" scope="col">{html.escape(x)}</th>' for x in head)
    body = []
    rc = f"nhsuk-table__row {row_class}".strip()
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = c if i in raw_cols else esc(c)
            num = " nr-num" if i not in raw_cols and _NUMERIC.match(str(c)) else ""
            if i == 0:
                cells.append(f'<th class="nhsuk-table__header{num}" scope="row">{text}</th>')
            else:
                cells.append(f'<td class="nhsuk-table__cell{num}">{text}</td>')
        body.append(f'<tr class="{rc}">' + "".join(cells) + "</tr>")
    cid = page.id("table")
    return (
        f'<div class="nr-wrap nr-dense" role="region" aria-label="{esc(caption)} (table)" '
        'tabindex="0">'
        f'<table class="nhsuk-table"><caption class="nhsuk-table__caption '
        f'nhsuk-table__caption--s" id="{cid}">{esc(caption)}</caption>'
        f'<thead class="nhsuk-table__head"><tr class="nhsuk-table__row">{th}</tr></thead>'
        f'<tbody class="nhsuk-table__body">{"".join(body)}</tbody></table></div>'
    )


def html_figure(page: Page, chart: Any, heading: str = "h3") -> str:
    """A chart (reports/charts.Chart): heading, the SVG named by its caption (the text
    alternative), and its data table in a details element."""
    cap = page.id("fig")
    svg = chart.svg.replace(
        "<svg ", f'<svg role="img" aria-labelledby="{cap}" focusable="false" ', 1
    )
    table = (
        html_table(page, f"{chart.title}: the data", chart.head, chart.rows)
        if chart.rows
        else "<p>No data.</p>"
    )
    return (
        f'<figure class="nr-figure"><{heading} class="nhsuk-heading-s">{esc(chart.title)}'
        f"</{heading}>{svg}"
        f'<figcaption class="nhsuk-body-s" id="{cap}">{esc(chart.alt)}</figcaption></figure>'
        + page.details(f"{chart.title}: the data as a table", table)
    )


Section = tuple[str, str, str] | None


def section_summary(page: Page) -> Section:
    e = page.e
    items = "".join(f"<li>{badge(k)}{v}</li>" for k, v in e.counts().items())
    p = rubric.PROFILES[e.profile]
    return (
        "summary",
        "Summary",
        f'<ul class="nhsuk-list nr-summary">{items}</ul>'
        f'<div class="nhsuk-inset-text"><span class="nhsuk-u-visually-hidden">Information: '
        f"</span><p>{len(e.sites)} sites judged for {esc(p.title)}. RTT, jitter and loss are "
        "the 95th percentile of 15 s windows per clinic day, median over days; throughput is "
        "the 10th percentile (sustained) goodput. Thresholds and their sources: "
        f'<a href="#rubric">the rubric</a>. Store: {esc(e.store)}.</p></div>',
    )


def section_estate(page: Page) -> Section:
    e = page.e
    head = [h for h, _ in ESTATE_COLUMNS] + ["reasons"]
    vi, gi = ([h for h, _ in ESTATE_COLUMNS].index(k) for k in ("verdict", "grade"))
    rows = []
    for r in e.sites:
        cells = [esc(f(r)) for _, f in ESTATE_COLUMNS]
        cells[vi] = badge(r.verdict)
        cells[gi] = html_grade(r)
        cells.append("<br>".join(esc(x) for x in _main_reasons(r)))
        rows.append(cells)
    table = html_table(
        page, "Every site: figures and verdict", head, rows, set(range(len(head))), "site"
    )
    return "estate", "Estate", table


def section_grades(page: Page) -> Section:
    """``--profile all``: the grade-per-use table, the grade in words (bold), then its reason."""
    e = page.e
    if e.by_profile is None:
        return None
    rows = [
        [esc(r.ods), esc(r.name), *(f"<strong>{esc(w)}</strong>: {esc(why)}" for w, why in c)]
        for r, c in grade_rows(e)
    ]
    head = grade_head_row(e)
    table = html_table(
        page, "Every site: the grade for each use", head, rows, set(range(len(head))), "site"
    )
    return "grades", GRADES_TITLE, f'<p class="nhsuk-body-s">{esc(_grades_intro(e))}</p>{table}'


def section_charts(page: Page) -> Section:
    from netready.reports import charts

    e = page.e
    figs = [charts.bandwidth_per_call(e, "c1"), charts.copper_vs_fibre(e, "c2")]
    return "charts", "Charts", "".join(html_figure(page, c) for c in figs)


def html_grade(r: SiteResult) -> str:
    """The plain grade in words (never by colour alone), then the one reason behind it."""
    if r.grade is None:
        return f"No grade: {esc(r.grade_reason)}"
    return f"<strong>{esc(r.grade)}</strong>: {esc(r.grade_reason)}"


def _site_facts(r: SiteResult) -> str:
    c = r.confidence
    facts = [
        (f"Grade for {esc(rubric.PROFILES[r.profile].title)}", html_grade(r)),
        ("Verdict", badge(r.verdict) + (f" (evidence says {esc(r.assessed)})"
                                        if r.assessed != r.verdict else "")),
        ("Concurrent calls / planned", esc(_cap(r)) + f" <span class=\"nhsuk-body-s\">"
                                       f"({esc(r.capacity_source)})</span>"),
        ("Technology declared / router", esc(_tech(r))),
        ("Sustained down / up", f"{esc(n(r.down_p10_mbps))} / {esc(n(r.up_p10_mbps, 2))} Mbit/s"),
        ("RTT / jitter / loss", f"{esc(n(r.rtt_ms))} ms / {esc(n(r.jitter_ms))} ms / "
                                f"{esc(n(r.loss_pct, 2))} %"),
        ("Confidence", f"{esc(c.level)}: {c.windows} windows, {c.sessions_with_data} sessions"),
        ("Does QoS protect the call?", f"<strong>{esc(qos_word(r))}</strong>"
                                       + (f": {esc(r.qos_reason)}" if r.qos_reason else "")),
    ]  # fmt: skip
    return (
        '<dl class="nhsuk-summary-list">'
        + "".join(
            f'<div class="nhsuk-summary-list__row"><dt class="nhsuk-summary-list__key">{k}</dt>'
            f'<dd class="nhsuk-summary-list__value">{v}</dd></div>'
            for k, v in facts
        )
        + "</dl>"
    )


def section_sites(page: Page) -> Section:
    """Each site: its facts, why it is not READY, its history by day as small multiples."""
    from netready.reports import charts, trends

    e = page.e
    chosen = trends.section_sites(e.sites)
    by = {r.ods: r for r in e.sites}
    concurrent = rubric.PROFILES[e.profile].concurrent
    out = []
    if len(chosen) < len(e.sites):
        out.append(
            f"<p>{len(chosen)} of {len(e.sites)} sites, those that need attention first; "
            "narrow the report with <code>--site</code> or <code>--icb</code> to see others.</p>"
        )
    for i, ods in enumerate(chosen):
        r = by[ods]
        hid = page.id(f"site-{re.sub(r'[^A-Za-z0-9]', '', ods) or 'x'}")
        body = [
            f'<section class="nr-site" aria-labelledby="{hid}">'
            f'<h3 class="nhsuk-heading-m" id="{hid}">{esc(ods)} {esc(r.name)}</h3>',
            _site_facts(r),
        ]
        why = _main_reasons(r, 6) if r.verdict != READY else []
        if why:
            body.append(
                '<h4 class="nhsuk-heading-xs">Why not READY</h4><ul class="nhsuk-list '
                'nhsuk-list--bullet">' + "".join(f"<li>{esc(x)}</li>" for x in why) + "</ul>"
            )
        t = (e.trends or {}).get(ods)
        chart = charts.site_history(t, concurrent, f"s{i}") if t is not None else None
        if chart is not None:
            chart.title = f"{ods}: history by day"
            body.append(html_figure(page, chart, "h4"))
        elif e.trends is not None:
            body.append("<p>No throughput or capacity measured by day in the window.</p>")
        body.append("</section>")
        out.append("".join(body))
    return "sites", "Sites", "".join(out)


def section_tables(page: Page) -> list[Section]:
    """The model's tables (cohorts, priority, PSTN, mismatches and what other parts add to
    ``_sections``), one section each."""
    out: list[Section] = []
    for t, head, rows in _sections(page.e):
        sid = page.id(re.sub(r"[^a-z0-9]+", "-", t.lower()).strip("-")[:40] or "table")
        out.append((sid, t, html_table(page, t, head, rows) if rows else "<p>None.</p>"))
    return out


def section_rubric(page: Page) -> Section:
    every = page.e.by_profile is not None
    rub = [r for r in rubric.rubric_rows() if every or r["profile"] == page.e.profile]
    rows = [
        [
            *([grade_head(str(r["profile"]))] if every else []),
            str(r["label"]),
            "—" if r["not_ready"] is None else f"{r['not_ready']:g}",
            f"{r['minimum']:g}",
            f"{r['recommended']:g}",
            str(r["unit"]),
            str(r["how"]),
            str(r["source"]),
        ]
        for r in rub
    ]
    head = ["metric", "not ready", "minimum", "recommended", "unit", "how measured", "source"]
    if every:
        head = ["use", *head]
    return "rubric", "Rubric", html_table(page, "Thresholds and their sources", head, rows)


#: The page, top to bottom. Add a section here: a function of the Page returning
#: (id, title, HTML) — or a list of them — or None; build its tables with html_table and
#: its charts with html_figure, and the layout, contents list and print styles follow.
HTML_SECTIONS: list[Callable[[Page], Section | list[Section]]] = [
    section_summary,
    section_estate,
    section_grades,
    section_charts,
    section_sites,
    section_tables,
    section_rubric,
]


def render_html(e: Estate, for_print: bool = False) -> str:
    page = Page(e, for_print)
    title = _title(e)
    got: list[tuple[str, str, str]] = []
    for fn in HTML_SECTIONS:
        res = fn(page)
        for s in res if isinstance(res, list) else [res]:
            if s is not None:
                got.append(s)
    contents = "".join(
        f'<li class="nhsuk-contents-list__item"><a class="nhsuk-contents-list__link" '
        f'href="#{sid}">{esc(t)}</a></li>'
        for sid, t, _ in got
    )
    body = "".join(
        f'<section aria-labelledby="{sid}-h"><h2 class="nhsuk-heading-l" id="{sid}-h">'
        f'<span id="{sid}"></span>{esc(t)}</h2>{h}</section>'
        for sid, t, h in got
    )
    return (
        '<!DOCTYPE html>\n<html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{nhsuk_css()}{CSS}</style></head>\n"
        '<body><a class="nhsuk-skip-link" href="#maincontent">Skip to main content</a>'
        '<header class="nhsuk-header" role="banner"><div class="nhsuk-header__container '
        'nhsuk-width-container-fluid"><div class="nhsuk-header__service">'
        '<span class="nhsuk-header__service-name">netready: network readiness for video '
        "consultations</span></div></div></header>\n"
        '<div class="nhsuk-width-container-fluid"><main class="nhsuk-main-wrapper" '
        f'id="maincontent" role="main"><h1 class="nhsuk-heading-xl">{esc(title)}</h1>'
        '<nav class="nhsuk-contents-list" role="navigation" aria-label="Sections of this '
        'report"><h2 class="nhsuk-u-visually-hidden">Contents</h2><ol class="nhsuk-contents-'
        f'list__list">{contents}</ol></nav>\n{body}</main></div>\n'
        '<footer class="nhsuk-footer" role="contentinfo"><div class="nhsuk-width-container-'
        f'fluid"><div class="nhsuk-footer__meta"><p class="nhsuk-body-s">netready, for '
        f"{esc(when(e.now_ms))}. Styles: the NHS.UK frontend (MIT).</p></div></div></footer>"
        "</body></html>\n"
    )


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
