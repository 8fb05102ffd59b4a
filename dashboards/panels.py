"""Panel constructors, overrides and thresholds: the vocabulary the three dashboards are lists of.

A constructor takes what differs between panels (title, description, queries, size, a few
options) and sets what every netready panel shares (data source, legend, tooltip, colours).
Queries get ref ids A, B, ... in order. Panel ids are not set here: ``dashboard()`` numbers rows
and panels in the order they are listed. Thresholds come from ``dashboards/policy.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from netready.dashboards.compat import SCHEMA_VERSION
from netready.dashboards.names import UID_SITE
from netready.dashboards.policy import GRADE_COLOURS, JITTER_MS, LOSS_PCT, MOS, RTT_MS
from netready.dashboards.queries import DS, InfluxQL
from netready.dashboards.sdk import (
    PanelBuilder,
    barchart,
    cb,
    cm,
    db,
    dm,
    geomap,
    gm,
    piechart,
    pm,
    stat,
    table,
    timeseries,
)

from netready.rubric import NO_QOS_CHECK, QOS_WORDS

#: Any panel builder with title, description, data source, size and targets.
P = TypeVar(
    "P", timeseries.Panel, stat.Panel, table.Panel, barchart.Panel, geomap.Panel, piechart.Panel
)

#: ``{field name: properties}``: Grafana's "fields with name" overrides, applied in order.
Overrides = dict[str, list[dm.DynamicConfigValue]]

# ------------------------------------------------------------------ thresholds (the rubric)


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``(None, base colour), (value, colour), ...``."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def lower_is_better(b: dict[str, float]) -> db.ThresholdsConfig:
    """Rubric bands of a lower-is-better metric: green, yellow from ``recommended``, orange from
    ``minimum`` (no orange band when it equals ``not_ready``), red from ``not_ready``."""
    orange = [(b["minimum"], "orange")] if b["minimum"] != b["not_ready"] else []
    return thresholds(
        (None, "green"), (b["recommended"], "yellow"), *orange, (b["not_ready"], "red")
    )


def rtt_steps() -> db.ThresholdsConfig:
    return lower_is_better(RTT_MS)


def jitter_steps() -> db.ThresholdsConfig:
    return lower_is_better(JITTER_MS)


def loss_steps() -> db.ThresholdsConfig:
    return lower_is_better(LOSS_PCT)


def mos_steps() -> db.ThresholdsConfig:
    return thresholds((None, "red"), (MOS["not_ready"], "yellow"), (MOS["recommended"], "green"))


def rate_steps(req: dict[str, float]) -> db.ThresholdsConfig:
    """A per-call rate: red below not ready, orange, yellow from minimum, green at recommended."""
    return thresholds(
        (None, "red"),
        (req["not_ready"], "orange"),
        (req["minimum"], "yellow"),
        (req["recommended"], "green"),
    )


# ------------------------------------------------------------------ overrides


def prop(id_val: str, value: Any) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_val, value=value)


VERDICT_MAPPINGS: list[dm.ValueMapping] = [
    dm.RegexMap(
        options=dm.DashboardRegexMapOptions(
            pattern=pattern, result=dm.ValueMappingResult(text=text, color=color, index=i)
        )
    )
    for i, (pattern, text, color) in enumerate(
        [
            ("/^ready$/i", "READY", "green"),
            ("/^marginal$/i", "MARGINAL", "orange"),
            ("/^not[ _-]?ready$/i", "NOT READY", "red"),
            ("/^no[ _-]?data$/i", "NO DATA", "text"),
            ("/^stale$/i", "STALE", "purple"),
        ]
    )
]


GRADE_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            g: dm.ValueMappingResult(text=g, color=c, index=i)
            for i, (g, c) in enumerate(GRADE_COLOURS.items())
        }
    )
]


#: Does QoS protect the call? (the readiness point's ``qos``: rubric.QOS_WORDS) on a colour;
#: "Not tested" and "No check" keep the text colour.
QOS_MAPPINGS: list[dm.ValueMapping] = [
    dm.ValueMap(
        options={
            w: dm.ValueMappingResult(text=w, color=c, index=i)
            for i, (w, c) in enumerate(
                ((QOS_WORDS[True], "green"), (QOS_WORDS[False], "red"),
                 (QOS_WORDS[None], "text"), (NO_QOS_CHECK, "text"))
            )
        }
    )
]  # fmt: skip


def qos_cells() -> list[dm.DynamicConfigValue]:
    """A QoS column: Protected / Not protected / Not tested / No check, on its colour."""
    return [
        prop("mappings", QOS_MAPPINGS),
        prop("custom.cellOptions", {"type": "color-background"}),
    ]


def site_link(title: str = "Site detail") -> dict[str, object]:
    """A data link from a ``site`` cell to the Site detail dashboard for that site."""
    return {"title": title, "url": f"/d/{UID_SITE}?var-site=${{__value.raw}}&${{__url_time_range}}"}


def verdict_cells() -> list[dm.DynamicConfigValue]:
    """A verdict column: READY/MARGINAL/... text on the verdict's colour."""
    return [
        prop("mappings", VERDICT_MAPPINGS),
        prop("custom.cellOptions", {"type": "color-background"}),
    ]


def grade_cells() -> list[dm.DynamicConfigValue]:
    """A grade column: the grade's word (Great / Good / Poor / Unusable) on its colour."""
    return [
        prop("mappings", GRADE_MAPPINGS),
        prop("custom.cellOptions", {"type": "color-background"}),
    ]


def links_to_site() -> list[dm.DynamicConfigValue]:
    return [prop("links", [site_link()])]


def named(display_name: str) -> list[dm.DynamicConfigValue]:
    return [prop("displayName", display_name)]


def time_ago(display_name: str | None = None) -> list[dm.DynamicConfigValue]:
    """An epoch-ms column shown as "3 hours ago" (optionally renamed)."""
    return [*(named(display_name) if display_name else []), prop("unit", "dateTimeFromNow")]


def coloured(unit: str, steps: db.ThresholdsConfig) -> list[dm.DynamicConfigValue]:
    """A number column in ``unit``, its text coloured by ``steps``."""
    return [
        prop("unit", unit),
        prop("thresholds", steps.build()),
        prop("custom.cellOptions", {"type": "color-text"}),
    ]


def transform(id_val: str, **options: Any) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_val, options=options)


# ------------------------------------------------------------------ panels


def _common(p: P, title: str, description: str, queries: Sequence[InfluxQL], w: int, h: int) -> P:
    p = p.title(title).description(description).datasource(DS).grid_pos(dm.GridPos(w=w, h=h))
    for i, q in enumerate(queries):
        p = p.with_target(q.ref_id(chr(ord("A") + i)))
    return p


def _with_overrides(p: P, overrides: Overrides | None) -> P:
    for name, props in (overrides or {}).items():
        p = p.override_by_name(name, props)
    return p


def ts(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[InfluxQL],
    *,
    w: int = 12,
    h: int = 8,
    steps: db.ThresholdsConfig | None = None,
    minimum: float | None = 0,
    maximum: float | None = None,
    bars: bool = False,
    points: cm.VisibilityMode = cm.VisibilityMode.AUTO,
) -> timeseries.Panel:
    """A time series; ``steps`` are drawn as dashed threshold lines."""
    p = (
        _common(timeseries.Panel(), title, description, queries, w, h)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(points)
        .span_nulls(False)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "min", "mean", "max"])
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if bars:
        p = p.draw_style(cm.GraphDrawStyle.BARS)
    if minimum is not None:
        p = p.min(minimum)
    if maximum is not None:
        p = p.max(maximum)
    if steps is not None:
        p = p.thresholds(steps).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    return p


def stat_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    w: int = 6,
    h: int = 4,
    color: str = "green",
    steps: db.ThresholdsConfig | None = None,
    with_names: bool = False,
) -> stat.Panel:
    """A big number on a coloured background (``color``, or ``steps`` by value); 0 when empty."""
    p = (
        _common(stat.Panel(), title, description, queries, w, h)
        .unit("none")
        .no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(steps or thresholds((None, color)))
    )
    return p.text_mode(cm.BigValueTextMode.VALUE_AND_NAME) if with_names else p


def grade_stat(
    title: str, description: str, queries: Sequence[InfluxQL], *, w: int = 6, h: int = 5
) -> stat.Panel:
    """The latest value of the one string field of each series (the ``grade``) as its word on
    its colour (GRADE_MAPPINGS), named by the series' alias. A stat shows only numbers unless
    ``reduceOptions.fields`` names the fields, by display name (a regex: every field but
    the time); "No data" when there is none."""
    return (
        _common(stat.Panel(), title, description, queries, w, h)
        .no_value("No data")
        .mappings(GRADE_MAPPINGS)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(
            cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/^(?!Time$)/")
        )
        .thresholds(thresholds((None, "text")))
    )


def table_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    w: int = 24,
    h: int = 10,
    overrides: Overrides | None = None,
    transformations: Sequence[dm.DataTransformerConfig] = (),
    sort_by: str | None = None,
    descending: bool | None = None,
    filterable: bool = False,
) -> table.Panel:
    """A table (queries in table format); ``sort_by`` a display name."""
    p = _common(table.Panel(), title, description, [q.table() for q in queries], w, h)
    if transformations:
        p = p.transformations(list(transformations))
    if filterable:
        p = p.filterable(True)
    if sort_by is not None:
        by = cb.TableSortByFieldState().display_name(sort_by)
        p = p.sort_by([by if descending is None else by.desc(descending)])
    return _with_overrides(p, overrides)


def bar_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    x_field: str,
    unit: str,
    w: int = 12,
    h: int = 8,
    transformations: Sequence[dm.DataTransformerConfig] = (),
    show_values: bool = False,
) -> barchart.Panel:
    """Bars per ``x_field`` (queries in table format)."""
    p = _common(barchart.Panel(), title, description, [q.table() for q in queries], w, h)
    if transformations:
        p = p.transformations(list(transformations))
    p = p.x_field(x_field)
    if show_values:
        p = p.show_value(cm.VisibilityMode.AUTO)
    return p.unit(unit)


def count_pie(
    title: str, description: str, query: InfluxQL, *, value: str, counted: str, w: int, h: int
) -> piechart.Panel:
    """A donut of how many ``counted`` rows have each ``value`` (Grafana's groupBy)."""
    group = {value: {"operation": "groupby", "aggregations": []}}
    count = {counted: {"operation": "aggregate", "aggregations": ["count"]}}
    return (
        _common(piechart.Panel(), title, description, [query.table()], w, h)
        .transformations([transform("merge"), transform("groupBy", fields={**group, **count})])
        .reduce_options(cb.ReduceDataOptions().values(True).calcs(["lastNotNull"]))
        .pie_type(pm.PieChartType.DONUT)
        .legend(
            piechart.PieChartLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .values([pm.PieChartLegendValues.VALUE])
        )
    )


#: Country outlines shipped inside every Grafana (``public/maps/countries.geojson``): a basemap
#: that loads from the Grafana server itself, so the map works with no internet access.
COUNTRIES_GEOJSON = "public/maps/countries.geojson"


def offline_basemap() -> cb.MapLayerOptions:
    """The map's base layer: the country outlines Grafana serves itself, land in grey."""
    style = {
        "color": {"fixed": "#9e9e9e"},
        "opacity": 0.25,
        "lineWidth": 1,
    }
    return (
        cb.MapLayerOptions()
        .type("geojson")
        .name("Countries (offline)")
        .config({"src": COUNTRIES_GEOJSON, "rules": [], "style": style})
    )


def site_map(title: str, description: str, query: InfluxQL, *, w: int, h: int) -> geomap.Panel:
    """Sites as markers at their ``lat``/``lon`` fields, coloured and labelled by verdict/site."""
    markers = {
        "showLegend": True,
        "style": {
            "color": {"field": "verdict", "fixed": "blue"},
            "size": {"fixed": 8},
            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
            "opacity": 0.8,
            "text": {"field": "site", "mode": "field"},
            "textConfig": {"fontSize": 10, "offsetY": -12},
        },
    }
    coords = (
        cb.FrameGeometrySource()
        .mode(cm.FrameGeometrySourceMode.COORDS)
        .latitude("lat")
        .longitude("lon")
    )
    return (
        _common(geomap.Panel(), title, description, [query.table()], w, h)
        # the SDK types lat/lon/zoom as int; Grafana's MapViewConfig takes numbers
        .view(geomap.MapViewConfig().id("coords").lat(53.5).lon(-1.8).zoom(5.5))  # type: ignore[arg-type]
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .basemap(offline_basemap())
        .layers(
            [
                cb.MapLayerOptions()
                .type("markers")
                .name("Sites")
                .location(coords)
                .tooltip(True)
                .config(markers)
            ]
        )
        .mappings(VERDICT_MAPPINGS)
    )


# ------------------------------------------------------------------ rows and dashboards


class Row:
    """A collapsible row title; the panels listed after it belong to it."""

    def __init__(self, title: str) -> None:
        self.title = title


Item = Row | PanelBuilder


def dashboard(
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    variables: Sequence[Any],
    items: Sequence[Item],
    *,
    since: str = "now-24h",
) -> dm.Dashboard:
    """The dashboard: shared settings, ``variables``, then ``items`` numbered 1, 2, ... in order."""
    d = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["netready", *tags])
        .timezone("browser")
        .time(since, "now")
        .refresh("5m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .editable()
        .link(
            db.DashboardLink("netready")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["netready"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for v in variables:
        d = d.with_variable(v)
    for n, item in enumerate(items, start=1):
        if isinstance(item, Row):
            d = d.with_row(db.Row(item.title).id(n))
        else:
            d = d.with_panel(item.id(n))  # type: ignore[attr-defined]
    model = d.build()
    model.schema_version = SCHEMA_VERSION  # the SDK writes its own newest; see compat.py
    return model
