"""Estate overview: which sites are ready, where they are, copper vs fibre, who went quiet."""

from __future__ import annotations

from netready.dashboards.names import UID_ESTATE
from netready.dashboards.panels import (
    Item,
    Row,
    bar_panel,
    coloured,
    dashboard,
    grade_cells,
    jitter_steps,
    links_to_site,
    loss_steps,
    mos_steps,
    named,
    prop,
    qos_cells,
    rtt_steps,
    site_map,
    stat_panel,
    table_panel,
    time_ago,
    transform,
    verdict_cells,
)
from netready.dashboards.queries import (
    BY_SITE_TECH,
    COPPER_RE,
    FIBRE_RE,
    ICB,
    PROFILE,
    InfluxQL,
    agg,
    count_verdicts,
    latest,
    site_figures,
    verdicts,
)
from netready.dashboards.sdk import dm
from netready.dashboards.variables import (
    ds_variable,
    icb_variable,
    profile_variable,
    silent_variable,
)

WHERE = f"{ICB} AND {PROFILE}"

VERDICTS = [
    ("ready", "Ready", "green"),
    ("marginal", "Marginal", "orange"),
    ("not_ready", "Not ready", "red"),
    ("no_data", "No data / stale", "text"),
]


def estate_overview() -> dm.Dashboard:
    return dashboard(
        UID_ESTATE,
        "netready: estate overview",
        "Which NHS sites can run video consultations: latest readiness verdict per site "
        "(readiness measurement, written by `netready assess`), where they are, copper vs "
        "fibre, and sites whose agent has gone quiet.",
        ["estate"],
        [ds_variable(), icb_variable(), profile_variable(), silent_variable()],
        [*readiness(), *copper_vs_fibre()],
    )


def readiness() -> list[Item]:
    return [
        Row("Readiness"),
        *[
            stat_panel(
                f"Sites {title.lower()}",
                f"Sites whose latest readiness verdict in the time range is {title.upper()}.",
                [InfluxQL(count_verdicts(WHERE, "sites", key)).expect("sites")],
                color=color,
            )
            for key, title, color in VERDICTS
        ],
        table_panel(
            "Sites: verdict and reasons",
            "Latest readiness point per site: verdict, measured concurrent-call capacity, the "
            "reasons (measured value vs threshold), and the plain grade for the profile's use "
            "(Great / Good / Poor / Unusable: the worst band of its gates) with the one reason "
            "behind it, and whether QoS protects the call under load (the newest QoS check: "
            "Protected / Not protected / Not tested / No check) with its figures. Click a site "
            "for its detail.",
            [
                InfluxQL(verdicts(WHERE, '"site", "icb", "tech"')).expect(
                    "verdict",
                    "capacity",
                    "reasons",
                    "grade",
                    "grade_reason",
                    "qos",
                    "qos_reason",
                    tags=["site", "icb", "tech"],
                )
            ],
            filterable=True,
            sort_by="verdict",
            overrides={
                "verdict": verdict_cells(),
                "site": links_to_site(),
                "Time": named("Assessed"),
                "capacity": named("Capacity (calls)"),
                "reasons": [prop("custom.width", 600)],
                "grade": [*grade_cells(), *named("Grade")],
                "grade_reason": named("Why this grade"),
                "qos": [*qos_cells(), *named("QoS under load")],
                "qos_reason": named("QoS: why"),
            },
        ),
        site_map(
            "Where the sites are",
            "Each site at its inventory latitude/longitude (lat, lon fields of the readiness "
            "points), coloured by its latest verdict.",
            InfluxQL(
                latest(
                    "readiness", "verdict", "lat", "lon", "capacity", where=WHERE, by=BY_SITE_TECH
                )
            ).expect("verdict", "lat", "lon", tags=["site"]),
            w=12,
            h=14,
        ),
        not_heard_from(),
    ]


def not_heard_from() -> Item:
    """Sites in A (an agent point in 30 days) without a row in B (one in ``$silent``)."""
    since_30d, since_silent = "time > now() - 30d", "time > now() - $silent"
    is_null = {"fieldName": "heard_recently", "config": {"id": "isNull", "options": {}}}
    has_site = {"fieldName": "site", "config": {"id": "isNotNull", "options": {}}}
    return table_panel(
        "Sites not heard from",
        "Sites whose agent wrote an `agent` point in the last 30 days but none in the last "
        "$silent (A: last point per site over 30 days; B: over $silent; shown: A without B).",
        [
            InfluxQL(
                latest("agent", "spool_pending", where=ICB, by='"site", "icb"', since=since_30d)
            ).expect("spool_pending", tags=["site", "icb"]),
            InfluxQL(
                latest(
                    "agent", "spool_pending", where=ICB, alias="heard_recently", since=since_silent
                )
            ).expect("heard_recently", tags=["site"]),
        ],
        w=12,
        h=14,
        transformations=[
            transform("joinByField", byField="site", mode="outer"),
            transform("filterByValue", type="include", match="all", filters=[is_null, has_site]),
            transform(
                "organize",
                excludeByName={"heard_recently": True, "Time 2": True, "Time B": True},
                renameByName={
                    "Time 1": "Last heard from",
                    "Time A": "Last heard from",
                    "Time": "Last heard from",
                    "spool_pending": "Spool depth then",
                },
            ),
        ],
        overrides={"Last heard from": time_ago(), "site": links_to_site()},
    )


def copper_vs_fibre() -> list[Item]:
    return [
        Row("Copper vs fibre"),
        *[
            stat_panel(
                f"{cohort} sites: ready of assessed",
                f"{cohort} sites ({rx.strip('^$')}): how many are READY (A) of all assessed (B).",
                [
                    InfluxQL(
                        count_verdicts(f'{WHERE} AND "tech" =~ /{rx}/', "ready", "ready")
                    ).expect("ready"),
                    InfluxQL(count_verdicts(f'{WHERE} AND "tech" =~ /{rx}/', "assessed")).expect(
                        "assessed"
                    ),
                ],
                color="blue",
                with_names=True,
            )
            for cohort, rx in [("Copper", COPPER_RE), ("Fibre", FIBRE_RE)]
        ],
        bar_panel(
            "Readiness by access technology",
            "Sites assessed and sites READY, per declared access technology (tech tag).",
            [
                InfluxQL(count_verdicts(WHERE, "assessed", None, BY_SITE_TECH, '"tech"')).expect(
                    "assessed", tags=["tech"]
                ),
                InfluxQL(count_verdicts(WHERE, "ready", "ready", BY_SITE_TECH, '"tech"')).expect(
                    "ready", tags=["tech"]
                ),
            ],
            x_field="tech",
            unit="none",
            transformations=[transform("joinByField", byField="tech", mode="outer")],
            show_values=True,
        ),
        goodput_by_tech(),
        quality_by_tech(),
    ]


def goodput_by_tech() -> Item:
    cols = [
        agg(fn, f"{d}_p10_mbps", f"{d}_{who}_site_mbps")
        for d in ("up", "down")
        for fn, who in (("median", "median"), ("min", "slowest"))
    ]
    return bar_panel(
        "Measured goodput by access technology",
        "Per declared technology, the sustained (p10) goodput of the median site and of the "
        "slowest site, upload and download, from each site's latest readiness assessment "
        "(the figures `netready report` compares).",
        [
            InfluxQL(
                f'SELECT {", ".join(cols)} FROM '
                f'({site_figures(WHERE, "up_p10_mbps", "down_p10_mbps")}) GROUP BY "tech"'
            ).expect(
                "up_median_site_mbps",
                "up_slowest_site_mbps",
                "down_median_site_mbps",
                "down_slowest_site_mbps",
                tags=["tech"],
            )
        ],
        x_field="tech",
        unit="Mbits",
    )


def quality_by_tech() -> Item:
    figures = ("rtt_ms", "jitter_ms", "loss_pct", "mos")
    cols = [*(agg("median", f) for f in figures), agg("count", "verdict", "sites")]
    return table_panel(
        "Path quality by access technology",
        "Per declared technology, the median site's RTT, RFC 3550 jitter and loss (each the "
        "p95 of its 15 s windows in clinic hours) and MOS, from each site's latest readiness "
        "assessment; coloured by the rubric.",
        [
            InfluxQL(
                f'SELECT {", ".join(cols)} FROM ({site_figures(WHERE, *figures)}) GROUP BY "tech"'
            ).expect(*figures, "sites", tags=["tech"])
        ],
        h=7,
        transformations=[transform("organize", excludeByName={"Time": True})],
        overrides={
            "rtt_ms": coloured("ms", rtt_steps()),
            "jitter_ms": coloured("ms", jitter_steps()),
            "loss_pct": coloured("percent", loss_steps()),
            "mos": coloured("none", mos_steps()),
        },
    )
