"""The report's charts: matplotlib (the ``charts`` extra) drawing inline SVG, each with the
text alternative and the data table that say the same thing in words and numbers.

A ``Chart`` is what the HTML page shows as one figure: the SVG (its ids prefixed, so several
charts in one page never share an id), a one-paragraph text alternative (the figure's caption
and the SVG's accessible name) and a data table (header, rows) of every value drawn. Verdicts
are told apart by marker shape as well as by colour; series by line style and marker.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netready.reports.readiness import MARGINAL, NO_DATA, NOT_READY, READY, STALE, Estate
from netready.reports.trends import SiteTrend

from netready import rubric, stats

#: NHS identity colours, darker where a light one would not stand out on white
COLOURS = {
    READY: "#007f3b",
    MARGINAL: "#ed8b00",
    NOT_READY: "#d5281b",
    STALE: "#425563",
    NO_DATA: "#768692",
}
MARKERS = {READY: "o", MARGINAL: "s", NOT_READY: "^", STALE: "D", NO_DATA: "x"}
BLUE, DARK_BLUE, PURPLE, GREY = "#005eb8", "#003087", "#330072", "#425563"


@dataclass
class Chart:
    title: str
    svg: str
    alt: str
    head: list[str]
    rows: list[list[str]]


def _plain_log(ax: Any, axis: str = "y") -> None:
    """A log axis labelled 0.5, 2, 10, 300 rather than 5×10⁻¹."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v:g}")
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_formatter(fmt)
    a.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))


def _n(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _plt() -> Any:
    from netready.optional import require

    matplotlib = require("matplotlib", "the HTML report's charts")
    matplotlib.use("svg")
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: small, searchable, read by the browser
            "svg.hashsalt": "netready",  # the same figure gives the same SVG
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.edgecolor": GREY,
            "axes.labelcolor": "#212b32",
            "xtick.color": "#212b32",
            "ytick.color": "#212b32",
        }
    )
    import matplotlib.pyplot as plt

    return plt


_ID = re.compile(r'\bid="([^"]+)"')


def svg(fig: Any, prefix: str) -> str:
    """The figure as an inline ``<svg>`` element whose ids (and the references to them) carry
    ``prefix``; no XML declaration, no metadata block."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    s = buf.getvalue()
    s = s[s.index("<svg") :]
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    for old in set(_ID.findall(s)):
        new = f"{prefix}-{old}"
        s = s.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})")
        s = s.replace(f'href="#{old}"', f'href="#{new}"')
    return s


# ----------------------------------------------------------------------------- the estate


def bandwidth_per_call(e: Estate, prefix: str) -> Chart:
    """Each site's sustained rate per planned call against the profile's per-call rates."""
    plt = _plt()
    p = rubric.PROFILES[e.profile]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rows: list[list[str]] = []
    meets = below_min = 0
    for verdict, colour in COLOURS.items():
        xs, ys = [], []
        for r in e.sites:
            if r.verdict == verdict and r.up_p10_mbps and r.down_p10_mbps:
                k = max(1, r.planned_clinics)
                x = rubric.HEADROOM * r.up_p10_mbps / k
                y = rubric.HEADROOM * r.down_p10_mbps / k
                xs.append(x)
                ys.append(y)
                rows.append([r.ods, verdict, str(r.planned_clinics), _n(x, 2), _n(y, 2)])
                if x >= p.up.recommended and y >= p.down.recommended:
                    meets += 1
                if x < p.up.minimum or y < p.down.minimum:
                    below_min += 1
        if xs:
            ax.scatter(
                xs, ys, s=26, c=colour, marker=MARKERS[verdict], label=f"{verdict} ({len(xs)})"
            )
    for t, axis in ((p.up, "x"), (p.down, "y")):
        for v, style, lab in ((t.minimum, "--", "minimum"), (t.recommended, "-", "recommended")):
            line = ax.axvline if axis == "x" else ax.axhline
            line(v, color=GREY, linestyle=style, linewidth=0.8)
            if axis == "x":
                ax.annotate(
                    f"{lab} {v:g}",
                    (v, 1),
                    xycoords=("data", "axes fraction"),
                    fontsize=8,
                    rotation=90,
                    va="top",
                    ha="right",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax, "x")
    _plain_log(ax, "y")
    ax.set_xlabel("upload per planned call, Mbit/s (0.75 × p10 ÷ planned clinics)")
    ax.set_ylabel("download per planned call, Mbit/s")
    if rows:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no throughput measured yet", transform=ax.transAxes, ha="center")
    out = svg(fig, prefix)
    plt.close(fig)
    if rows:
        alt = (
            f"Scatter plot of {len(rows)} sites with throughput measured, on logarithmic axes: "
            f"upload against download per planned call. {meets} meet the recommended per-call "
            f"rate ({p.up.recommended:g} Mbit/s up, {p.down.recommended:g} Mbit/s down) in both "
            f"directions; {below_min} are below the minimum ({p.up.minimum:g} up, "
            f"{p.down.minimum:g} down) in at least one. The table below lists every site drawn."
        )
    else:
        alt = "No site has throughput measured in the window, so there is nothing to plot."
    return Chart(
        "Bandwidth per planned call",
        out,
        alt,
        ["site", "verdict", "planned clinics", "up per call, Mbit/s", "down per call, Mbit/s"],
        rows,
    )


COPPER_FIBRE = (
    ("up_p10_mbps", "upload p10, Mbit/s", 2),
    ("rtt_ms", "RTT p95 of windows, ms", 1),
    ("jitter_ms", "jitter p95, ms", 1),
)


def copper_vs_fibre(e: Estate, prefix: str) -> Chart:
    """Box plots per declared technology class of the upload, RTT and jitter figures."""
    plt = _plt()
    groups = ["copper", "fibre", "unknown"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    rows: list[list[str]] = []
    medians: dict[str, dict[str, float]] = {}
    for ax, (f, label, digits) in zip(axes, COPPER_FIBRE, strict=True):
        present = []
        for g in groups:
            d = [getattr(r, f) for r in e.sites if r.tech_class == g and getattr(r, f) is not None]
            if d:
                present.append((g, d))
                med = stats.percentile(d, 50)
                assert med is not None  # d is not empty
                medians.setdefault(g, {})[f] = med
                rows.append(
                    [g, label, str(len(d)), _n(min(d), digits), _n(med, digits), _n(max(d), digits)]
                )
        if present:
            ax.boxplot(
                [d for _, d in present],
                tick_labels=[f"{g}\n(n={len(d)})" for g, d in present],
                medianprops={"color": BLUE, "linewidth": 2},
            )
            if f == "up_p10_mbps":
                ax.set_yscale("log")
                _plain_log(ax)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        ax.set_title(label, fontsize=9)
    out = svg(fig, prefix)
    plt.close(fig)
    said = [
        f"{g}: median upload {_n(m.get('up_p10_mbps'), 2)} Mbit/s, RTT {_n(m.get('rtt_ms'))} ms, "
        f"jitter {_n(m.get('jitter_ms'))} ms"
        for g, m in medians.items()
    ]
    alt = (
        "Three box plots comparing sites by declared technology (copper, fibre, unknown): "
        "sustained upload, RTT and jitter. " + ("; ".join(said) + "." if said else "No data yet.")
    )
    return Chart(
        "Copper vs fibre",
        out,
        alt,
        ["technology", "figure", "sites", "lowest", "median", "highest"],
        rows,
    )


# ----------------------------------------------------------------------------- one site


def _span(vals: Sequence[float], digits: int, unit: str) -> str:
    lo, hi = min(vals), max(vals)
    return (
        f"{lo:,.{digits}f} {unit}" if lo == hi else f"{lo:,.{digits}f} to {hi:,.{digits}f} {unit}"
    )


def site_history(t: SiteTrend, concurrent: bool, prefix: str) -> Chart | None:
    """Small multiples of one site's days: sustained throughput (down, up), loaded latency
    (with idle), capacity against the planned clinics. None when no day has anything."""
    if not t.any:
        return None
    plt = _plt()
    days = t.days
    x = list(range(len(days)))
    labels = [d.label for d in days]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.6), sharex=True)
    a1, a2, a3 = axes

    def series(attr: str) -> tuple[list[int], list[float]]:
        pts = [(i, getattr(d, attr)) for i, d in zip(x, days, strict=True)]
        pts = [(i, v) for i, v in pts if v is not None]
        return [i for i, _ in pts], [float(v) for _, v in pts]

    def lines(ax: Any, title: str, specs: Sequence[tuple[str, str, str, str, str]]) -> bool:
        """One line per (attribute, label, colour, style, marker) that has a value; True if
        any was drawn (then with its legend)."""
        for attr, lab, colour, style, mk in specs:
            xs, ys = series(attr)
            if xs:
                ax.plot(xs, ys, style, color=colour, marker=mk, markersize=3.5, label=lab)
        ax.set_title(title, fontsize=9)
        drawn = bool(ax.get_legend_handles_labels()[0])
        if drawn:
            ax.legend(fontsize=7, loc="best")
        return drawn

    tp = (
        ("down_p10_mbps", "download", BLUE, "-", "o"),
        ("up_p10_mbps", "upload", PURPLE, "--", "s"),
    )
    if lines(a1, "sustained throughput (p10), Mbit/s", tp):
        a1.set_yscale("log")
        _plain_log(a1)
    lat = (("loaded_ms", "loaded", "#d5281b", "-", "^"), ("idle_ms", "idle", GREY, ":", "o"))
    if lines(a2, "latency during speed tests, ms", lat):
        a2.set_ylim(bottom=0)
    xs, ys = series("capacity_calls")
    if xs:
        a3.bar(xs, ys, color=BLUE, width=0.7, label="calls it carries")
    if concurrent:
        a3.axhline(t.planned_clinics, color="#d5281b", linestyle="--", linewidth=1.2,
                   label=f"planned ({t.planned_clinics})")  # fmt: skip
        a3.legend(fontsize=7, loc="best")
    a3.set_title("concurrent calls vs planned", fontsize=9)
    a3.set_ylim(bottom=0)
    step = max(1, len(days) // 5)
    for ax in axes:
        ax.set_xticks(x[::step], [lb[4:] for lb in labels[::step]], fontsize=8)
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color=GREY)
    out = svg(fig, prefix)
    plt.close(fig)
    return Chart(
        "History by day",
        out,
        _site_alt(t, concurrent),
        [
            "day",
            "download p10, Mbit/s",
            "upload p10, Mbit/s",
            "loaded latency, ms",
            "idle latency, ms",
            "concurrent calls",
            "planned",
        ],
        [
            [
                d.label,
                _n(d.down_p10_mbps),
                _n(d.up_p10_mbps, 2),
                _n(d.loaded_ms),
                _n(d.idle_ms),
                "—" if d.capacity_calls is None else f"{d.capacity_calls} ({d.capacity_source})",
                str(t.planned_clinics),
            ]
            for d in days
        ],
    )


def _site_alt(t: SiteTrend, concurrent: bool) -> str:
    days = t.days
    said = [
        f"Three small charts of the site's {len(days)} days, {days[0].label} to {days[-1].label}."
    ]
    down = [d.down_p10_mbps for d in days if d.down_p10_mbps is not None]
    up = [d.up_p10_mbps for d in days if d.up_p10_mbps is not None]
    if down or up:
        parts = []
        if down:
            parts.append(f"download {_span(down, 1, 'Mbit/s')}")
        if up:
            parts.append(f"upload {_span(up, 2, 'Mbit/s')}")
        said.append("Sustained throughput by day: " + ", ".join(parts) + ".")
    else:
        said.append("No throughput measured.")
    loaded = [d.loaded_ms for d in days if d.loaded_ms is not None]
    idle = [d.idle_ms for d in days if d.idle_ms is not None]
    if loaded:
        said.append(
            f"Latency during speed tests: median {_n(stats.percentile(loaded, 50))} ms loaded"
            + (f" against {_n(stats.percentile(idle, 50))} ms idle." if idle else ".")
        )
    cap = [d.capacity_calls for d in days if d.capacity_calls is not None]
    if concurrent and cap:
        short = sum(1 for c in cap if c < t.planned_clinics)
        said.append(
            f"Concurrent calls the link carries: {_span([float(c) for c in cap], 0, 'calls')} "
            f"against {t.planned_clinics} planned; short of planned on {short} of {len(cap)} days."
        )
    elif concurrent:
        said.append("No capacity measured or computed.")
    return " ".join(said)
