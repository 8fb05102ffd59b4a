"""Grafana dashboards as code: three dashboards, provisioning files, and the InfluxQL query type.

Built with ``grafana-foundation-sdk==0.0.21`` (pinned: an unpinned install picks an old
epoch-numbered build). The SDK has no InfluxQL query builder, so ``InfluxQL`` below is a small
custom ``Dataquery``: a raw InfluxQL target as Grafana's InfluxDB data source stores it
(``query``, ``rawQuery: true``, ``resultFormat``, ``alias``).

``build_all()`` returns every generated file (path relative to ``dashboards/`` -> text);
``write_all()`` writes them; ``stale_files()`` says which committed files differ from a fresh
build (``tests/test_dashboards.py`` fails on any). ``panel_queries()`` lists every panel query
with the columns and tags the panel expects, so the tests can run each one against InfluxDB.

Queries follow the schema in ``netready/records.py``; the thresholds drawn on the panels come
from the rubric table in ``reports/rubric.py`` (a rubric change makes the JSON stale).
"""

from __future__ import annotations

import json
import typing
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reports.rubric import DEFAULT_PROFILE, HEADROOM, RUBRIC

with warnings.catch_warnings():
    # the SDK warns at import that dashboard v2 is preferred; file provisioning and
    # /api/dashboards/db take the v1 JSON model built here
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import (
        barchart,
        geomap,
        piechart,
        stat,
        table,
        timeseries,
    )
    from grafana_foundation_sdk.builders import common as cb
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import runtime as cogruntime
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import geomap as gm
    from grafana_foundation_sdk.models import piechart as pm

HERE = Path(__file__).resolve().parent

#: The data source every panel uses: a ``$ds`` variable that defaults to this uid, which the
#: provisioning files and ``netready dashboards push`` create.
DATASOURCE_UID = "netready-influxdb"
DATASOURCE_NAME = "netready InfluxDB"
DATASOURCE_TYPE = "influxdb"
FOLDER_UID = "netready"
FOLDER_TITLE = "netready"
DATABASE = "netready"
#: Where the dashboard provider reads the JSON files on the Grafana host.
PROVIDER_PATH = "/var/lib/grafana/dashboards/netready"

UID_ESTATE = "netready-estate"
UID_SITE = "netready-site"
UID_AGENT = "netready-agent"

# ------------------------------------------------------------------ rubric (reports/rubric.py)
# The thresholds drawn on the panels come from the one rubric table; when it changes, the
# generated JSON is stale and the test says so.


def _bands(metric: str) -> dict[str, float]:
    t = RUBRIC[metric]
    out = {"minimum": float(t.minimum), "recommended": float(t.recommended)}
    if t.not_ready is not None:
        out["not_ready"] = float(t.not_ready)
    return out


UP_MBPS = _bands("up_per_call_mbps")
DOWN_MBPS = _bands("down_per_call_mbps")
RTT_MS = _bands("rtt_ms")
JITTER_MS = _bands("jitter_ms")
LOSS_PCT = _bands("loss_pct")
BURST_LOSS_PCT = _bands("burst_loss_pct")
MOS = _bands("mos")
UTIL_REVIEW_PCT = 100.0 * HEADROOM  # NHS Digital: review FTTC links above 75 % use
SNR_MARGIN_DB = {"poor": 3.0, "ok": 6.0}

COPPER_RE = "^(adsl|fttc|sogea)$"
FIBRE_RE = "^(fttp|ethernet)$"

# ------------------------------------------------------------------ the InfluxQL query type


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target for Grafana's InfluxDB data source (InfluxQL mode).

    ``expect_columns``/``expect_tags`` are not serialised: they say what the panel needs from
    the result (``panel_queries()`` hands them to the tests).
    """

    def __init__(
        self,
        query: str = "",
        ref_id: str = "A",
        result_format: typing.Literal["time_series", "table", "logs"] = "time_series",
        alias: str | None = None,
        datasource: cm.DataSourceRef | None = None,
        hide: bool | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide
        self.expect_columns: tuple[str, ...] = ()
        self.expect_tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.datasource is not None:
            out["datasource"] = self.datasource.to_json()
        if self.alias:
            out["alias"] = self.alias
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> InfluxQLQuery:
        ds = data.get("datasource")
        return cls(
            query=data.get("query", ""),
            ref_id=data.get("refId", "A"),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=cm.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


# Teach the SDK's JSON loader that influxdb targets are InfluxQLQuery (Dashboard.from_json).
cogruntime.Runtime().register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json)
)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder for ``InfluxQLQuery``: ``InfluxQL("SELECT ...").ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=" ".join(query.split()), datasource=DS)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> typing.Self:
        """Result format ``table``: one row per series, tags as columns."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> typing.Self:
        """Series alias; ``$tag_site`` etc. are replaced by Grafana."""
        self._internal.alias = alias
        return self

    def expect(self, *columns: str, tags: Sequence[str] = ()) -> typing.Self:
        """Columns (besides ``time``) and GROUP BY tags the panel relies on (for tests)."""
        self._internal.expect_columns = tuple(columns)
        self._internal.expect_tags = tuple(tags)
        return self


# ------------------------------------------------------------------ query fragments

DS = cm.DataSourceRef(type_val=DATASOURCE_TYPE, uid="${ds}")
T = "$timeFilter"
SITE = '"site" =~ /^$site$/'
ICB = '"icb" =~ /^$icb$/'
PROFILE = '"profile" =~ /^$profile$/'
#: A valid measurement: no ``result`` tag, or ``result=ok``.
OK = '"result" =~ /^(ok)?$/'
BY_TIME = "GROUP BY time($__interval)"

VERDICT_RE = {
    "ready": "(?i)^ready$",
    "marginal": "(?i)^marginal$",
    "not_ready": "(?i)^not[ _-]?ready$",
    "no_data": "(?i)^(no[ _-]?data|stale)$",
}


BY_SITE_TECH = '"site", "tech"'


def latest_verdicts(where: str, group_by: str = '"site"') -> str:
    """Subquery: the latest verdict per site (and per extra tags in ``group_by``)."""
    return (
        f'SELECT last("verdict") AS "verdict" FROM "readiness" '
        f"WHERE {T} AND {where} GROUP BY {group_by}"
    )


def site_figures(where: str) -> str:
    """Subquery: each site's latest readiness point — verdict and the figures it was judged on
    (one selector, so every figure comes from that same point)."""
    return (
        'SELECT last("verdict") AS "verdict", "rtt_ms", "jitter_ms", "loss_pct", "mos", '
        '"up_p10_mbps", "down_p10_mbps" FROM "readiness" '
        f'WHERE {T} AND {where} GROUP BY "site", "tech"'
    )


# ------------------------------------------------------------------ panel helpers

_ids = iter(range(1, 10_000))


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _pos(w: int, h: int) -> dm.GridPos:
    return dm.GridPos(w=w, h=h)


def ts(
    title: str,
    description: str,
    unit: str,
    queries: list[InfluxQL],
    *,
    w: int = 12,
    h: int = 8,
    thresholds: db.ThresholdsConfig | None = None,
    style: cm.GraphThresholdsStyleMode = cm.GraphThresholdsStyleMode.DASHED,
    minimum: float | None = 0,
    maximum: float | None = None,
    bars: bool = False,
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .id(next(_ids))
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .grid_pos(_pos(w, h))
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.AUTO)
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
    if thresholds is not None:
        p = p.thresholds(thresholds).thresholds_style(cb.GraphThresholdsStyleConfig().mode(style))
    for i, q in enumerate(queries):
        p = p.with_target(q.ref_id(chr(ord("A") + i)))
    return p


def stat_panel(
    title: str,
    description: str,
    queries: list[InfluxQL],
    *,
    w: int = 6,
    h: int = 4,
    color: str = "green",
    unit: str = "none",
    thresholds: db.ThresholdsConfig | None = None,
    calc: str = "lastNotNull",
) -> stat.Panel:
    p = (
        stat.Panel()
        .id(next(_ids))
        .title(title)
        .description(description)
        .datasource(DS)
        .grid_pos(_pos(w, h))
        .unit(unit)
        .no_value("0")
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False))
        .thresholds(thresholds or _thresholds((None, color)))
    )
    for i, q in enumerate(queries):
        p = p.with_target(q.ref_id(chr(ord("A") + i)))
    return p


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


# ------------------------------------------------------------------ variables


def ds_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("ds")
        .label("Data source")
        .type(DATASOURCE_TYPE)
        .current(dm.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def icb_variable() -> db.QueryVariable:
    return (
        db.QueryVariable("icb")
        .label("ICB")
        .description("Integrated Care Board (icb tag)")
        .datasource(DS)
        .query('SHOW TAG VALUES WITH KEY = "icb"')
        .definition('SHOW TAG VALUES WITH KEY = "icb"')
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def site_variable(*, include_all: bool = True) -> db.QueryVariable:
    q = 'SHOW TAG VALUES WITH KEY = "site" WHERE "icb" =~ /^$icb$/'
    v = (
        db.QueryVariable("site")
        .label("Site (ODS)")
        .description("Site ODS code (site tag), filtered by the ICB selection")
        .datasource(DS)
        .query(q)
        .definition(q)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(include_all)
    )
    if include_all:
        v = v.all_value(".*").current(
            dm.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return v


def profile_variable() -> db.QueryVariable:
    q = 'SHOW TAG VALUES FROM "readiness" WITH KEY = "profile"'
    return (
        db.QueryVariable("profile")
        .label("Readiness profile")
        .description("Readiness profile (profile tag of the readiness measurement)")
        .datasource(DS)
        .query(q)
        .definition(q)
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(False)
        .include_all(False)
        .current(dm.VariableOption(selected=True, text=DEFAULT_PROFILE, value=DEFAULT_PROFILE))
    )


def silent_variable() -> db.CustomVariable:
    return (
        db.CustomVariable("silent")
        .label("Silent for")
        .description("A site is 'not heard from' when its agent wrote nothing for this long")
        .values("15m,1h,6h,24h")
        .current(dm.VariableOption(selected=True, text="1h", value="1h"))
        .options(
            [
                dm.VariableOption(selected=v == "1h", text=v, value=v)
                for v in ("15m", "1h", "6h", "24h")
            ]
        )
    )


def _dashboard(uid: str, title: str, description: str, tags: list[str]) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["netready", *tags])
        .timezone("browser")
        .time("now-24h", "now")
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


def _row(title: str) -> db.Row:
    return db.Row(title).id(next(_ids))


# ------------------------------------------------------------------ estate overview


def estate_overview() -> dm.Dashboard:
    where = f"{ICB} AND {PROFILE}"
    d = (
        _dashboard(
            UID_ESTATE,
            "netready: estate overview",
            "Which NHS sites can run video consultations: latest readiness verdict per site "
            "(readiness measurement, written by `netready assess`), where they are, copper vs "
            "fibre, and sites whose agent has gone quiet.",
            ["estate"],
        )
        .with_variable(ds_variable())
        .with_variable(icb_variable())
        .with_variable(profile_variable())
        .with_variable(silent_variable())
        .with_row(_row("Readiness"))
    )
    for key, title, color in [
        ("ready", "Ready", "green"),
        ("marginal", "Marginal", "orange"),
        ("not_ready", "Not ready", "red"),
        ("no_data", "No data / stale", "text"),
    ]:
        q = (
            f'SELECT count("verdict") AS "sites" FROM ({latest_verdicts(where)}) '
            f'WHERE "verdict" =~ /{VERDICT_RE[key]}/'
        )
        d = d.with_panel(
            stat_panel(
                f"Sites {title.lower()}",
                f"Sites whose latest readiness verdict in the time range is {title.upper()}.",
                [InfluxQL(q).expect("sites")],
                color=color,
            )
        )
    d = d.with_panel(
        table.Panel()
        .id(next(_ids))
        .title("Sites: verdict and reasons")
        .description(
            "Latest readiness point per site: verdict, measured concurrent-call capacity, and "
            "the reasons (measured value vs threshold). Click a site for its detail."
        )
        .datasource(DS)
        .grid_pos(_pos(24, 10))
        .with_target(
            InfluxQL(
                f'SELECT last("verdict") AS "verdict", "capacity", "reasons" FROM "readiness" '
                f'WHERE {T} AND {where} GROUP BY "site", "icb", "tech"'
            )
            .table()
            .expect("verdict", "capacity", "reasons", tags=["site", "icb", "tech"])
        )
        .filterable(True)
        .sort_by([cb.TableSortByFieldState().display_name("verdict")])
        .override_by_name(
            "verdict",
            [
                dm.DynamicConfigValue(id_val="mappings", value=VERDICT_MAPPINGS),
                dm.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .override_by_name(
            "site",
            [dm.DynamicConfigValue(id_val="links", value=[_link_json("Site detail")])],
        )
        .override_by_name("Time", [dm.DynamicConfigValue(id_val="displayName", value="Assessed")])
        .override_by_name(
            "capacity", [dm.DynamicConfigValue(id_val="displayName", value="Capacity (calls)")]
        )
        .override_by_name("reasons", [dm.DynamicConfigValue(id_val="custom.width", value=600)])
    )
    d = d.with_panel(
        geomap.Panel()
        .id(next(_ids))
        .title("Where the sites are")
        .description(
            "Each site at its inventory latitude/longitude (lat, lon fields of the readiness "
            "points), coloured by its latest verdict."
        )
        .datasource(DS)
        .grid_pos(_pos(12, 14))
        .with_target(
            InfluxQL(
                f'SELECT last("verdict") AS "verdict", "lat", "lon", "capacity" '
                f'FROM "readiness" WHERE {T} AND {where} GROUP BY "site", "tech"'
            )
            .table()
            .expect("verdict", "lat", "lon", tags=["site"])
        )
        .view(geomap.MapViewConfig().id("coords").lat(53.5).lon(-1.8).zoom(5.5))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers(
            [
                cb.MapLayerOptions()
                .type("markers")
                .name("Sites")
                .location(
                    cb.FrameGeometrySource()
                    .mode(cm.FrameGeometrySourceMode.COORDS)
                    .latitude("lat")
                    .longitude("lon")
                )
                .tooltip(True)
                .config(
                    {
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
                )
            ]
        )
        .mappings(VERDICT_MAPPINGS)
    )
    d = d.with_panel(
        table.Panel()
        .id(next(_ids))
        .title("Sites not heard from")
        .description(
            "Sites whose agent wrote an `agent` point in the last 30 days but none in the last "
            "$silent (A: last point per site over 30 days; B: over $silent; shown: A without B)."
        )
        .datasource(DS)
        .grid_pos(_pos(12, 14))
        .with_target(
            InfluxQL(
                'SELECT last("spool_pending") AS "spool_pending" FROM "agent" '
                f'WHERE time > now() - 30d AND {ICB} GROUP BY "site", "icb"'
            )
            .ref_id("A")
            .table()
            .expect("spool_pending", tags=["site", "icb"])
        )
        .with_target(
            InfluxQL(
                'SELECT last("spool_pending") AS "heard_recently" FROM "agent" '
                f'WHERE time > now() - $silent AND {ICB} GROUP BY "site"'
            )
            .ref_id("B")
            .table()
            .expect("heard_recently", tags=["site"])
        )
        .transformations(
            [
                dm.DataTransformerConfig(
                    id_val="joinByField", options={"byField": "site", "mode": "outer"}
                ),
                dm.DataTransformerConfig(
                    id_val="filterByValue",
                    options={
                        "type": "include",
                        "match": "all",
                        "filters": [
                            {
                                "fieldName": "heard_recently",
                                "config": {"id": "isNull", "options": {}},
                            },
                            {"fieldName": "site", "config": {"id": "isNotNull", "options": {}}},
                        ],
                    },
                ),
                dm.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"heard_recently": True, "Time 2": True, "Time B": True},
                        "renameByName": {
                            "Time 1": "Last heard from",
                            "Time A": "Last heard from",
                            "Time": "Last heard from",
                            "spool_pending": "Spool depth then",
                        },
                    },
                ),
            ]
        )
        .override_by_name(
            "Last heard from", [dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow")]
        )
        .override_by_name(
            "site", [dm.DynamicConfigValue(id_val="links", value=[_link_json("Site detail")])]
        )
    )
    d = d.with_row(_row("Copper vs fibre"))
    for cohort, rx in [("Copper", COPPER_RE), ("Fibre", FIBRE_RE)]:
        cw = f'{where} AND "tech" =~ /{rx}/'
        d = d.with_panel(
            stat_panel(
                f"{cohort} sites: ready of assessed",
                f"{cohort} sites ({rx.strip('^$')}): how many are READY (A) of all assessed (B).",
                [
                    InfluxQL(
                        f'SELECT count("verdict") AS "ready" FROM ({latest_verdicts(cw)}) '
                        f'WHERE "verdict" =~ /{VERDICT_RE["ready"]}/'
                    ).expect("ready"),
                    InfluxQL(
                        f'SELECT count("verdict") AS "assessed" FROM ({latest_verdicts(cw)})'
                    ).expect("assessed"),
                ],
                w=6,
                color="blue",
            ).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        )
    d = d.with_panel(
        barchart.Panel()
        .id(next(_ids))
        .title("Readiness by access technology")
        .description("Sites assessed and sites READY, per declared access technology (tech tag).")
        .datasource(DS)
        .grid_pos(_pos(12, 8))
        .with_target(
            InfluxQL(
                f'SELECT count("verdict") AS "assessed" FROM '
                f"({latest_verdicts(where, BY_SITE_TECH)}) "
                f'GROUP BY "tech"'
            )
            .ref_id("A")
            .table()
            .expect("assessed", tags=["tech"])
        )
        .with_target(
            InfluxQL(
                f'SELECT count("verdict") AS "ready" FROM '
                f"({latest_verdicts(where, BY_SITE_TECH)}) "
                f'WHERE "verdict" =~ /{VERDICT_RE["ready"]}/ GROUP BY "tech"'
            )
            .ref_id("B")
            .table()
            .expect("ready", tags=["tech"])
        )
        .transformations(
            [
                dm.DataTransformerConfig(
                    id_val="joinByField", options={"byField": "tech", "mode": "outer"}
                )
            ]
        )
        .x_field("tech")
        .show_value(cm.VisibilityMode.AUTO)
        .unit("none")
    )
    figures = site_figures(where)
    d = d.with_panel(
        barchart.Panel()
        .id(next(_ids))
        .title("Measured goodput by access technology")
        .description(
            "Per declared technology, the sustained (p10) goodput of the median site and of the "
            "slowest site, upload and download, from each site's latest readiness assessment "
            "(the figures `netready report` compares)."
        )
        .datasource(DS)
        .grid_pos(_pos(12, 8))
        .with_target(
            InfluxQL(
                'SELECT median("up_p10_mbps") AS "up_median_site_mbps", '
                'min("up_p10_mbps") AS "up_slowest_site_mbps", '
                'median("down_p10_mbps") AS "down_median_site_mbps", '
                'min("down_p10_mbps") AS "down_slowest_site_mbps" '
                f'FROM ({figures}) GROUP BY "tech"'
            )
            .table()
            .expect(
                "up_median_site_mbps",
                "up_slowest_site_mbps",
                "down_median_site_mbps",
                "down_slowest_site_mbps",
                tags=["tech"],
            )
        )
        .x_field("tech")
        .unit("Mbits")
    )
    d = d.with_panel(
        table.Panel()
        .id(next(_ids))
        .title("Path quality by access technology")
        .description(
            "Per declared technology, the median site's RTT, RFC 3550 jitter and loss (each the "
            "p95 of its 15 s windows in clinic hours) and MOS, from each site's latest readiness "
            "assessment; coloured by the rubric."
        )
        .datasource(DS)
        .grid_pos(_pos(24, 7))
        .with_target(
            InfluxQL(
                'SELECT median("rtt_ms") AS "rtt_ms", median("jitter_ms") AS "jitter_ms", '
                'median("loss_pct") AS "loss_pct", median("mos") AS "mos", '
                f'count("verdict") AS "sites" FROM ({figures}) GROUP BY "tech"'
            )
            .table()
            .expect("rtt_ms", "jitter_ms", "loss_pct", "mos", "sites", tags=["tech"])
        )
        .transformations(
            [
                dm.DataTransformerConfig(
                    id_val="organize", options={"excludeByName": {"Time": True}}
                ),
            ]
        )
        .override_by_name("rtt_ms", _cell_thresholds("ms", _rtt_steps()))
        .override_by_name("jitter_ms", _cell_thresholds("ms", _jitter_steps()))
        .override_by_name("loss_pct", _cell_thresholds("percent", _loss_steps()))
        .override_by_name("mos", _cell_thresholds("none", _mos_steps()))
    )
    return d.build()


def _link_json(title: str) -> dict[str, object]:
    return {
        "title": title,
        "url": f"/d/{UID_SITE}?var-site=${{__value.raw}}&${{__url_time_range}}",
    }


def _rtt_steps() -> db.ThresholdsConfig:
    return _thresholds(
        (None, "green"),
        (RTT_MS["recommended"], "yellow"),
        (RTT_MS["minimum"], "orange"),
        (RTT_MS["not_ready"], "red"),
    )


def _jitter_steps() -> db.ThresholdsConfig:
    return _thresholds(
        (None, "green"),
        (JITTER_MS["recommended"], "yellow"),
        (JITTER_MS["minimum"], "orange"),
        (JITTER_MS["not_ready"], "red"),
    )


def _loss_steps() -> db.ThresholdsConfig:
    return _thresholds(
        (None, "green"), (LOSS_PCT["recommended"], "yellow"), (LOSS_PCT["not_ready"], "red")
    )


def _mos_steps() -> db.ThresholdsConfig:
    return _thresholds((None, "red"), (MOS["not_ready"], "yellow"), (MOS["recommended"], "green"))


def _rate_steps(req: dict[str, float]) -> db.ThresholdsConfig:
    return _thresholds(
        (None, "red"),
        (req["not_ready"], "orange"),
        (req["minimum"], "yellow"),
        (req["recommended"], "green"),
    )


def _cell_thresholds(unit: str, steps: db.ThresholdsConfig) -> list[dm.DynamicConfigValue]:
    return [
        dm.DynamicConfigValue(id_val="unit", value=unit),
        dm.DynamicConfigValue(id_val="thresholds", value=steps.build()),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ]


# ------------------------------------------------------------------ site detail


def _series(measurement: str, fields: dict[str, str], extra: str = "", by: str = '"site"') -> str:
    """``SELECT agg(field) AS alias, ... FROM m WHERE $timeFilter AND site AND ok ... GROUP BY time``."""
    sel = ", ".join(f'{agg}("{f}") AS "{f}"' for f, agg in fields.items())
    cond = f"{T} AND {SITE} AND {OK}" + (f" AND {extra}" if extra else "")
    return f'SELECT {sel} FROM "{measurement}" WHERE {cond} {BY_TIME}, {by} fill(none)'


def site_detail() -> dm.Dashboard:
    d = (
        _dashboard(
            UID_SITE,
            "netready: site detail",
            "One or more sites (pick by ICB, then ODS code): throughput against the per-call "
            "requirement, path quality against the rubric, MOS, call capacity, router and DSL line.",
            ["site"],
        )
        .with_variable(ds_variable())
        .with_variable(icb_variable())
        .with_variable(site_variable(include_all=False))
        .with_variable(profile_variable())
        .with_row(_row("Readiness"))
        .with_panel(
            table.Panel()
            .id(next(_ids))
            .title("Latest verdict")
            .description("Latest readiness point of each selected site, with its reasons.")
            .datasource(DS)
            .grid_pos(_pos(24, 5))
            .with_target(
                InfluxQL(
                    'SELECT last("verdict") AS "verdict", "capacity", "reasons" FROM "readiness" '
                    f'WHERE {T} AND {SITE} AND {PROFILE} GROUP BY "site", "tech"'
                )
                .table()
                .expect("verdict", "capacity", "reasons", tags=["site", "tech"])
            )
            .override_by_name(
                "verdict",
                [
                    dm.DynamicConfigValue(id_val="mappings", value=VERDICT_MAPPINGS),
                    dm.DynamicConfigValue(
                        id_val="custom.cellOptions", value={"type": "color-background"}
                    ),
                ],
            )
            .override_by_name(
                "Time", [dm.DynamicConfigValue(id_val="displayName", value="Assessed")]
            )
        )
        .with_row(_row("Throughput against the per-call requirement"))
    )
    for direction, label in [("up", "Upload"), ("down", "Download")]:
        d = d.with_panel(
            ts(
                f"{label} goodput",
                f"Speed-test goodput, {label.lower()} (throughput measurement, valid runs).",
                "Mbits",
                [
                    InfluxQL(
                        _series(
                            "throughput", {"goodput_mbps": "mean"}, f"\"direction\" = '{direction}'"
                        )
                    )
                    .alias("$tag_site")
                    .expect("goodput_mbps", tags=["site"])
                ],
                bars=True,
            )
        )
    for direction, req, label in [("up", UP_MBPS, "Upload"), ("down", DOWN_MBPS, "Download")]:
        col = f"{direction}_per_call_mbps"
        d = d.with_panel(
            ts(
                f"{label} per planned call vs requirement",
                f"What each planned concurrent clinic gets: {HEADROOM:g} × the sustained (p10) "
                f"{label.lower()} goodput ÷ planned clinics, from each readiness assessment. "
                f"Dashed lines: the per-call requirement — {req['not_ready']:g} Mbit/s not "
                f"ready, {req['minimum']:g} minimum, {req['recommended']:g} recommended (720p).",
                "Mbits",
                [
                    InfluxQL(
                        f'SELECT {HEADROOM:g} * "{direction}_p10_mbps" / "planned_clinics" '
                        f'AS "{col}" FROM "readiness" WHERE {T} AND {SITE} AND {PROFILE} '
                        'GROUP BY "site"'
                    )
                    .alias("$tag_site")
                    .expect(col, tags=["site"])
                ],
                thresholds=_rate_steps(req),
            ).show_points(cm.VisibilityMode.ALWAYS)
        )
    d = d.with_panel(
        ts(
            "Latency under load (bufferbloat)",
            "RTT measured during the speed test: idle vs loaded, per direction.",
            "ms",
            [
                InfluxQL(
                    _series(
                        "throughput",
                        {"rtt_idle_ms": "mean", "rtt_loaded_ms": "mean"},
                        by='"site", "direction"',
                    )
                )
                .alias("$tag_site $tag_direction $col")
                .expect("rtt_idle_ms", "rtt_loaded_ms", tags=["site", "direction"])
            ],
            w=24,
            thresholds=_rtt_steps(),
        )
    )
    d = d.with_row(_row("Path quality against the rubric"))
    d = d.with_panel(
        ts(
            "Round-trip time",
            "rtt probe: median and 95th percentile RTT per run. Dashed lines: "
            f"{RTT_MS['recommended']:g} ms recommended, {RTT_MS['minimum']:g} ms minimum, "
            f"{RTT_MS['not_ready']:g} ms not ready (ITU-T G.114; Teams targets).",
            "ms",
            [
                InfluxQL(_series("rtt", {"rtt_p50_ms": "mean", "rtt_p95_ms": "max"}))
                .alias("$tag_site $col")
                .expect("rtt_p50_ms", "rtt_p95_ms", tags=["site"])
            ],
            w=8,
            thresholds=_rtt_steps(),
        )
    )
    d = d.with_panel(
        ts(
            "Jitter (RFC 3550) and IPDV p95",
            "rtt probe: RFC 3550 interarrival jitter and IPDV 95th percentile (RFC 3393). "
            f"Dashed lines: {JITTER_MS['recommended']:g} ms recommended, "
            f"{JITTER_MS['minimum']:g} ms minimum, {JITTER_MS['not_ready']:g} ms not ready.",
            "ms",
            [
                InfluxQL(_series("rtt", {"jitter_rfc3550_ms": "mean", "ipdv_p95_ms": "max"}))
                .alias("$tag_site $col")
                .expect("jitter_rfc3550_ms", "ipdv_p95_ms", tags=["site"])
            ],
            w=8,
            thresholds=_jitter_steps(),
        )
    )
    d = d.with_panel(
        ts(
            "Loss and burst loss",
            "rtt probe: loss % per run and the worst 200 ms burst-loss window. Dashed lines: "
            f"loss {LOSS_PCT['recommended']:g} % recommended, {LOSS_PCT['minimum']:g} % minimum.",
            "percent",
            [
                InfluxQL(
                    _series(
                        "rtt",
                        {"loss_pct": "mean", "burst_loss_200ms_pct": "max", "reorder_pct": "mean"},
                    )
                )
                .alias("$tag_site $col")
                .expect("loss_pct", "burst_loss_200ms_pct", "reorder_pct", tags=["site"])
            ],
            w=8,
            thresholds=_loss_steps(),
        )
    )
    d = d.with_panel(
        ts(
            "MOS (E-model) per direction",
            "media probe: estimated MOS of the emulated video consultation, per direction. "
            f"Dashed lines: {MOS['not_ready']} not ready, {MOS['recommended']} recommended (ITU-T G.107).",
            "none",
            [
                InfluxQL(_series("media", {"mos": "mean"}, by='"site", "direction"'))
                .alias("$tag_site $tag_direction")
                .expect("mos", tags=["site", "direction"])
            ],
            thresholds=_mos_steps(),
            minimum=1,
            maximum=5,
        )
    )
    d = d.with_panel(
        ts(
            "Media loss and jitter per direction",
            "media probe: loss % and RFC 3550 jitter of the emulated call, per direction.",
            "none",
            [
                InfluxQL(
                    _series(
                        "media",
                        {"loss_pct": "mean", "jitter_rfc3550_ms": "mean"},
                        by='"site", "direction"',
                    )
                )
                .alias("$tag_site $tag_direction $col")
                .expect("loss_pct", "jitter_rfc3550_ms", tags=["site", "direction"])
            ],
        )
    )
    d = d.with_row(_row("Capacity"))
    d = d.with_panel(
        ts(
            "Concurrent video calls",
            "A: calls the media probe measured the link could carry (capacity_calls, the smaller "
            "direction). B: capacity in the readiness verdict.",
            "none",
            [
                InfluxQL(
                    f'SELECT min("capacity_calls") AS "capacity_calls" FROM "media" '
                    f'WHERE {T} AND {SITE} AND {OK} {BY_TIME}, "site" fill(none)'
                )
                .alias("$tag_site measured")
                .expect("capacity_calls", tags=["site"]),
                InfluxQL(
                    f'SELECT last("capacity") AS "capacity" FROM "readiness" '
                    f'WHERE {T} AND {SITE} AND {PROFILE} {BY_TIME}, "site" fill(none)'
                )
                .alias("$tag_site verdict")
                .expect("capacity", tags=["site"]),
            ],
            w=24,
            bars=True,
        )
    )
    d = d.with_row(_row("Router and line"))
    d = d.with_panel(
        ts(
            "Router WAN utilisation",
            "SNMP counters of the WAN interface, per direction (in = download): utilisation "
            "against the contracted rate (util_contract_pct), the DSL sync rate (util_sync_pct) "
            "and the interface speed (util_pct). Dashed line: "
            f"{UTIL_REVIEW_PCT:g} % (NHS Digital advises reviewing FTTC links above 75 % use).",
            "percent",
            [
                InfluxQL(
                    'SELECT max("util_contract_pct") AS "util_contract_pct", '
                    'max("util_sync_pct") AS "util_sync_pct", max("util_pct") AS "util_pct" '
                    f'FROM "if_traffic" WHERE {T} AND {SITE} AND {OK} AND "is_wan" = true '
                    f'{BY_TIME}, "site", "ifname", "direction" fill(none)'
                )
                .alias("$tag_site $tag_ifname $tag_direction $col")
                .expect("util_contract_pct", "util_pct", tags=["site", "ifname", "direction"])
            ],
            w=12,
            thresholds=_thresholds((None, "green"), (UTIL_REVIEW_PCT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Router WAN traffic",
            "SNMP counters of the WAN interface: bit rate per direction (in = download), "
            "mean and peak per interval.",
            "Mbits",
            [
                InfluxQL(
                    'SELECT mean("rate_mbps") AS "mean", max("rate_mbps") AS "peak" '
                    f'FROM "if_traffic" WHERE {T} AND {SITE} AND {OK} AND "is_wan" = true '
                    f'{BY_TIME}, "site", "ifname", "direction" fill(none)'
                )
                .alias("$tag_site $tag_ifname $tag_direction $col")
                .expect("mean", "peak", tags=["site", "ifname", "direction"])
            ],
            w=12,
        )
    )
    d = d.with_panel(
        ts(
            "DSL sync and attainable rate",
            "DSL line (dsl_line, copper sites): sync rate and attainable rate, down and up.",
            "Kbits",
            [
                InfluxQL(
                    _series(
                        "dsl_line",
                        {
                            "sync_down_kbps": "mean",
                            "sync_up_kbps": "mean",
                            "attainable_down_kbps": "mean",
                            "attainable_up_kbps": "mean",
                        },
                    )
                )
                .alias("$tag_site $col")
                .expect("sync_down_kbps", "sync_up_kbps", tags=["site"])
            ],
            w=12,
        )
    )
    d = d.with_panel(
        ts(
            "DSL SNR margin",
            f"DSL line: SNR margin down/up. Below {SNR_MARGIN_DB['ok']:g} dB a line tends to "
            f"retrain or error; below {SNR_MARGIN_DB['poor']:g} dB it is unstable.",
            "dB",
            [
                InfluxQL(
                    _series("dsl_line", {"snr_margin_down_db": "mean", "snr_margin_up_db": "mean"})
                )
                .alias("$tag_site $col")
                .expect("snr_margin_down_db", "snr_margin_up_db", tags=["site"])
            ],
            w=12,
            thresholds=_thresholds(
                (None, "red"), (SNR_MARGIN_DB["poor"], "orange"), (SNR_MARGIN_DB["ok"], "green")
            ),
            minimum=None,
        )
    )
    d = d.with_row(_row("Failed measurements"))
    d = d.with_panel(
        table.Panel()
        .id(next(_ids))
        .title("Failed measurements by cause")
        .description(
            "Measurements that did not produce a valid result (result tag other than ok: "
            "timeout, refused, link_busy, ...), counted per site, measurement and cause."
        )
        .datasource(DS)
        .grid_pos(_pos(24, 6))
        .with_target(
            InfluxQL(
                'SELECT count("reason") AS "failures", last("reason") AS "last_reason" '
                'FROM "rtt", "media", "throughput", "if_traffic", "dsl_line" '
                f'WHERE {T} AND {SITE} AND "result" =~ /./ AND "result" != \'ok\' '
                'GROUP BY "site", "result"'
            )
            .table()
            .expect("failures", "last_reason", tags=["site", "result"])
        )
    )
    return d.build()


# ------------------------------------------------------------------ agent health


def agent_health() -> dm.Dashboard:
    where = f"{ICB} AND {SITE}"
    d = (
        _dashboard(
            UID_AGENT,
            "netready: agent health",
            "The site agents themselves (agent measurement): when each was last heard from, "
            "spool depth, dropped and dead-lettered records, ship latency, memory, versions.",
            ["agent"],
        )
        .time("now-6h", "now")  # agents report every ship cycle: many points per site
        .with_variable(ds_variable())
        .with_variable(icb_variable())
        .with_variable(site_variable(include_all=True))
        .with_panel(
            stat_panel(
                "Agents reporting",
                "Sites whose agent wrote at least one agent point in the time range.",
                [
                    InfluxQL(
                        'SELECT count("spool_pending") AS "agents" FROM '
                        '(SELECT last("spool_pending") AS "spool_pending" FROM "agent" '
                        f'WHERE {T} AND {where} GROUP BY "site")'
                    ).expect("agents")
                ],
                color="blue",
            )
        )
        .with_panel(
            stat_panel(
                "Records dropped (spool quota)",
                "Sum over sites of the latest spool_dropped counter: records evicted by the "
                "spool's size/age quota, never shipped.",
                [
                    InfluxQL(
                        'SELECT sum("spool_dropped") AS "dropped" FROM '
                        '(SELECT last("spool_dropped") AS "spool_dropped" FROM "agent" '
                        f'WHERE {T} AND {where} GROUP BY "site")'
                    ).expect("dropped")
                ],
                thresholds=_thresholds((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Records dead-lettered",
                "Sum over sites of the latest dead_lettered counter: points the store rejected "
                "as malformed.",
                [
                    InfluxQL(
                        'SELECT sum("dead_lettered") AS "dead_lettered" FROM '
                        '(SELECT last("dead_lettered") AS "dead_lettered" FROM "agent" '
                        f'WHERE {T} AND {where} GROUP BY "site")'
                    ).expect("dead_lettered")
                ],
                thresholds=_thresholds((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            stat_panel(
                "Spool backlog",
                "Sum over sites of the latest spool depth (records waiting to ship).",
                [
                    InfluxQL(
                        'SELECT sum("spool_pending") AS "pending" FROM '
                        '(SELECT last("spool_pending") AS "spool_pending" FROM "agent" '
                        f'WHERE {T} AND {where} GROUP BY "site")'
                    ).expect("pending")
                ],
                thresholds=_thresholds((None, "green"), (10_000, "orange")),
            )
        )
        .with_panel(
            table.Panel()
            .id(next(_ids))
            .title("Agents: last heard from")
            .description(
                "Latest agent point per site (oldest first): when it was written, spool depth, "
                "dropped and dead-lettered counts, when it last shipped, how long that took, "
                "memory, version and host."
            )
            .datasource(DS)
            .grid_pos(_pos(16, 10))
            .with_target(
                InfluxQL(
                    'SELECT last("spool_pending") AS "spool_pending", "spool_dropped", '
                    '"dead_lettered", "last_ship_ms", "ship_latency_s", "rss_mb", "version", '
                    f'"host" FROM "agent" WHERE {T} AND {where} GROUP BY "site", "icb"'
                )
                .table()
                .expect(
                    "spool_pending",
                    "last_ship_ms",
                    "spool_dropped",
                    "dead_lettered",
                    "ship_latency_s",
                    "rss_mb",
                    "version",
                    tags=["site", "icb"],
                )
            )
            .sort_by([cb.TableSortByFieldState().display_name("Last heard from").desc(False)])
            .override_by_name(
                "Time",
                [
                    dm.DynamicConfigValue(id_val="displayName", value="Last heard from"),
                    dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow"),
                ],
            )
            .override_by_name(
                "last_ship_ms",
                [
                    dm.DynamicConfigValue(id_val="displayName", value="Last shipped"),
                    dm.DynamicConfigValue(id_val="unit", value="dateTimeFromNow"),
                ],
            )
            .override_by_name(
                "site", [dm.DynamicConfigValue(id_val="links", value=[_link_json("Site detail")])]
            )
        )
        .with_panel(
            piechart.Panel()
            .id(next(_ids))
            .title("Agent versions")
            .description("How many sites run each agent version (latest version field per site).")
            .datasource(DS)
            .grid_pos(_pos(8, 10))
            .with_target(
                InfluxQL(
                    'SELECT last("version") AS "version" FROM "agent" '
                    f'WHERE {T} AND {where} GROUP BY "site"'
                )
                .table()
                .expect("version", tags=["site"])
            )
            .transformations(
                [
                    dm.DataTransformerConfig(id_val="merge", options={}),
                    dm.DataTransformerConfig(
                        id_val="groupBy",
                        options={
                            "fields": {
                                "version": {"operation": "groupby", "aggregations": []},
                                "site": {"operation": "aggregate", "aggregations": ["count"]},
                            }
                        },
                    ),
                ]
            )
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
        .with_panel(
            ts(
                "Spool depth",
                "Records waiting to ship (spool_pending): the deepest spool among the selected "
                "sites and the mean, per interval. A growing line means agents cannot reach the "
                "store; the table above says which.",
                "none",
                [
                    InfluxQL(
                        'SELECT max("spool_pending") AS "deepest", mean("spool_pending") AS "mean" '
                        f'FROM "agent" WHERE {T} AND {where} {BY_TIME} fill(none)'
                    )
                    .alias("$col")
                    .expect("deepest", "mean")
                ],
            )
        )
        .with_panel(
            ts(
                "Dropped and dead-lettered records",
                "The largest cumulative counts among the selected sites: spool_dropped (evicted "
                "by the spool quota, never shipped) and dead_lettered (rejected by the store as "
                "malformed). Totals are in the stats above, per site in the table.",
                "none",
                [
                    InfluxQL(
                        'SELECT max("spool_dropped") AS "spool_dropped", '
                        'max("dead_lettered") AS "dead_lettered" '
                        f'FROM "agent" WHERE {T} AND {where} {BY_TIME} fill(none)'
                    )
                    .alias("$col")
                    .expect("spool_dropped", "dead_lettered")
                ],
            )
        )
        .with_panel(
            ts(
                "Ship latency",
                "Seconds an agent's drain of its spool to the store took (ship_latency_s), "
                "mean and worst across the selected sites per interval.",
                "s",
                [
                    InfluxQL(
                        'SELECT mean("ship_latency_s") AS "mean", max("ship_latency_s") AS "max" '
                        f'FROM "agent" WHERE {T} AND {where} {BY_TIME} fill(none)'
                    )
                    .alias("$col")
                    .expect("mean", "max")
                ],
            )
        )
        .with_panel(
            ts(
                "Agent memory",
                "Resident memory of the agent process (rss_mb), mean and largest across the "
                "selected sites.",
                "decmbytes",
                [
                    InfluxQL(
                        'SELECT mean("rss_mb") AS "mean", max("rss_mb") AS "max" FROM "agent" '
                        f"WHERE {T} AND {where} {BY_TIME} fill(none)"
                    )
                    .alias("$col")
                    .expect("mean", "max")
                ],
            )
        )
    )
    return d.build()


# ------------------------------------------------------------------ provisioning


def datasource_v1() -> dict[str, object]:
    """Grafana data source for InfluxDB 1.x, InfluxQL, user/password."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": "${NETREADY_INFLUX_URL}",
        "user": "${NETREADY_INFLUX_USER}",
        "database": DATABASE,
        "isDefault": False,
        "editable": False,
        "jsonData": {"version": "InfluxQL", "dbName": DATABASE, "httpMode": "POST"},
        "secureJsonData": {"password": "${NETREADY_INFLUX_PASSWORD}"},
    }


def datasource_v2() -> dict[str, object]:
    """Grafana data source for InfluxDB 2.x / 3.x through InfluxQL (DBRP mapping) with a token."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": "${NETREADY_INFLUX_URL}",
        "database": DATABASE,
        "isDefault": False,
        "editable": False,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": DATABASE,
            "httpMode": "POST",
            "httpHeaderName1": "Authorization",
        },
        "secureJsonData": {"httpHeaderValue1": "Token ${NETREADY_INFLUX_TOKEN}"},
    }


def dashboard_provider() -> dict[str, object]:
    return {
        "name": "netready",
        "orgId": 1,
        "folder": FOLDER_TITLE,
        "folderUid": FOLDER_UID,
        "type": "file",
        "disableDeletion": False,
        "allowUiUpdates": False,
        "updateIntervalSeconds": 60,
        "options": {"path": PROVIDER_PATH, "foldersFromFilesStructure": False},
    }


_YAML_HEAD = "# Generated by `netready dashboards build` (dashboards/build.py). Do not edit.\n"


def _yaml(header: str, body: dict[str, object]) -> str:
    return _YAML_HEAD + header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


# ------------------------------------------------------------------ build

DASHBOARDS: dict[str, typing.Callable[[], dm.Dashboard]] = {
    "estate-overview.json": estate_overview,
    "site-detail.json": site_detail,
    "agent-health.json": agent_health,
}


def build_dashboards() -> dict[str, dm.Dashboard]:
    """Fresh dashboard models (file name -> Dashboard). Panel ids restart at 1 per build."""
    global _ids
    out = {}
    for name, fn in DASHBOARDS.items():
        _ids = iter(range(1, 10_000))
        out[name] = fn()
    return out


def to_json(dash: dm.Dashboard) -> str:
    return json.dumps(dash, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    """Every generated file: path relative to ``dashboards/`` -> content."""
    out = {f"generated/{name}": to_json(d) for name, d in build_dashboards().items()}
    out["provisioning/datasources/netready-influxdb-1x.yaml"] = _yaml(
        "# InfluxDB 1.x (InfluxQL, user/password). Copy ONE datasource file to\n"
        "# /etc/grafana/provisioning/datasources/ and set the environment variables\n"
        "# NETREADY_INFLUX_URL, NETREADY_INFLUX_USER, NETREADY_INFLUX_PASSWORD for grafana-server.\n",
        {"apiVersion": 1, "datasources": [datasource_v1()]},
    )
    out["provisioning/datasources/netready-influxdb-2x-3x.yaml"] = _yaml(
        "# InfluxDB 2.x / 3.x through InfluxQL (v1 compatibility API; the database name must be\n"
        "# mapped to a bucket with a DBRP mapping), token header `Authorization: Token ...`.\n"
        "# Copy ONE datasource file to /etc/grafana/provisioning/datasources/ and set\n"
        "# NETREADY_INFLUX_URL and NETREADY_INFLUX_TOKEN for grafana-server.\n",
        {"apiVersion": 1, "datasources": [datasource_v2()]},
    )
    out["provisioning/dashboards/netready.yaml"] = _yaml(
        f"# Copy to /etc/grafana/provisioning/dashboards/ and the generated/*.json files to\n"
        f"# {PROVIDER_PATH}/ on the Grafana host.\n",
        {"apiVersion": 1, "providers": [dashboard_provider()]},
    )
    return out


def write_all(root: Path = HERE) -> list[Path]:
    """Write every generated file under ``root``; return the paths whose content changed."""
    changed = []
    for rel, text in build_all().items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            changed.append(p)
    return changed


def stale_files(root: Path = HERE) -> list[str]:
    """Generated files that are missing or differ from a fresh in-memory build."""
    stale = []
    for rel, text in build_all().items():
        p = root / rel
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


# ------------------------------------------------------------------ queries, for tests


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    query: str
    result_format: str
    columns: tuple[str, ...]
    tags: tuple[str, ...]
    alias: str | None = None
    variables: tuple[str, ...] = field(default=())


def _panels(d: dm.Dashboard) -> Iterator[dm.Panel]:
    for p in d.panels or []:
        if isinstance(p, dm.RowPanel):
            yield from p.panels or []
        else:
            yield p


def panel_queries(dashboards: dict[str, dm.Dashboard] | None = None) -> list[PanelQuery]:
    """Every InfluxQL target of every panel, with what the panel expects back."""
    out = []
    for name, d in (dashboards or build_dashboards()).items():
        names = tuple(v.name for v in (d.templating.list_val if d.templating else []))
        for p in _panels(d):
            for t in p.targets or []:
                if not isinstance(t, InfluxQLQuery):
                    raise TypeError(f"{name}: panel {p.title!r} has a non-InfluxQL target")
                out.append(
                    PanelQuery(
                        name,
                        p.title or "",
                        t.ref_id,
                        t.query,
                        t.result_format,
                        t.expect_columns,
                        t.expect_tags,
                        t.alias,
                        names,
                    )
                )
    return out


def variable_queries(
    dashboards: dict[str, dm.Dashboard] | None = None,
) -> list[tuple[str, str, str]]:
    """(dashboard file, variable name, InfluxQL) for every query variable."""
    out = []
    for name, d in (dashboards or build_dashboards()).items():
        for v in d.templating.list_val if d.templating else []:
            if v.type_val == "query" and isinstance(v.query, str):
                out.append((name, v.name, v.query))
    return out


if __name__ == "__main__":  # pragma: no cover
    for path in write_all():
        print(path)
