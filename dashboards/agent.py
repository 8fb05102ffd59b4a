"""Agent health: the site agents themselves (agent measurement, written by netready/agent.py)."""

from __future__ import annotations

from netready.dashboards.names import UID_AGENT
from netready.dashboards.panels import (
    Item,
    count_pie,
    dashboard,
    links_to_site,
    stat_panel,
    table_panel,
    thresholds,
    time_ago,
    ts,
)
from netready.dashboards.queries import ICB, SITE, InfluxQL, agg, latest, of_latest, over_time
from netready.dashboards.sdk import dm
from netready.dashboards.variables import ds_variable, icb_variable, site_variable

WHERE = f"{ICB} AND {SITE}"


def agent_health() -> dm.Dashboard:
    return dashboard(
        UID_AGENT,
        "netready: agent health",
        "The site agents themselves (agent measurement): when each was last heard from, "
        "spool depth, dropped and dead-lettered records, ship latency, memory, versions.",
        ["agent"],
        [ds_variable(), icb_variable(), site_variable(include_all=True)],
        [*totals(), last_heard_from(), versions(), *trends()],
        since="now-6h",  # agents report every ship cycle: many points per site
    )


def totals() -> list[Item]:
    """Stats over each site's latest agent point."""
    return [
        stat_panel(
            "Agents reporting",
            "Sites whose agent wrote at least one agent point in the time range.",
            [InfluxQL(of_latest("count", "spool_pending", "agents", WHERE)).expect("agents")],
            color="blue",
        ),
        stat_panel(
            "Records dropped (spool quota)",
            "Sum over sites of the latest spool_dropped counter: records evicted by the "
            "spool's size/age quota, never shipped.",
            [InfluxQL(of_latest("sum", "spool_dropped", "dropped", WHERE)).expect("dropped")],
            steps=thresholds((None, "green"), (1, "red")),
        ),
        stat_panel(
            "Records dead-lettered",
            "Sum over sites of the latest dead_lettered counter: points the store rejected "
            "as malformed.",
            [
                InfluxQL(of_latest("sum", "dead_lettered", "dead_lettered", WHERE)).expect(
                    "dead_lettered"
                )
            ],
            steps=thresholds((None, "green"), (1, "orange")),
        ),
        stat_panel(
            "Spool backlog",
            "Sum over sites of the latest spool depth (records waiting to ship).",
            [InfluxQL(of_latest("sum", "spool_pending", "pending", WHERE)).expect("pending")],
            steps=thresholds((None, "green"), (10_000, "orange")),
        ),
    ]


def last_heard_from() -> Item:
    fields = ("spool_dropped", "dead_lettered", "last_ship_ms", "ship_latency_s", "rss_mb")
    return table_panel(
        "Agents: last heard from",
        "Latest agent point per site (oldest first): when it was written, spool depth, "
        "dropped and dead-lettered counts, when it last shipped, how long that took, "
        "memory, version and host.",
        [
            InfluxQL(
                latest(
                    "agent",
                    "spool_pending",
                    *fields,
                    "version",
                    "host",
                    where=WHERE,
                    by='"site", "icb"',
                )
            ).expect(
                "spool_pending",
                "last_ship_ms",
                "spool_dropped",
                "dead_lettered",
                "ship_latency_s",
                "rss_mb",
                "version",
                tags=["site", "icb"],
            )
        ],
        w=16,
        sort_by="Last heard from",
        descending=False,
        overrides={
            "Time": time_ago("Last heard from"),
            "last_ship_ms": time_ago("Last shipped"),
            "site": links_to_site(),
        },
    )


def versions() -> Item:
    return count_pie(
        "Agent versions",
        "How many sites run each agent version (latest version field per site).",
        InfluxQL(latest("agent", "version", where=WHERE)).expect("version", tags=["site"]),
        value="version",
        counted="site",
        w=8,
        h=10,
    )


def trends() -> list[Item]:
    """Totals and worst across the selected sites per interval (not one line per site)."""

    def spread(*cols: str) -> InfluxQL:
        return InfluxQL(over_time("agent", cols, WHERE)).alias("$col")

    return [
        ts(
            "Spool depth",
            "Records waiting to ship (spool_pending): the deepest spool among the selected "
            "sites and the mean, per interval. A growing line means agents cannot reach the "
            "store; the table above says which.",
            "none",
            [
                spread(
                    agg("max", "spool_pending", "deepest"), agg("mean", "spool_pending", "mean")
                ).expect("deepest", "mean")
            ],
        ),
        ts(
            "Dropped and dead-lettered records",
            "The largest cumulative counts among the selected sites: spool_dropped (evicted "
            "by the spool quota, never shipped) and dead_lettered (rejected by the store as "
            "malformed). Totals are in the stats above, per site in the table.",
            "none",
            [
                spread(agg("max", "spool_dropped"), agg("max", "dead_lettered")).expect(
                    "spool_dropped", "dead_lettered"
                )
            ],
        ),
        ts(
            "Ship latency",
            "Seconds an agent's drain of its spool to the store took (ship_latency_s), "
            "mean and worst across the selected sites per interval.",
            "s",
            [
                spread(
                    agg("mean", "ship_latency_s", "mean"), agg("max", "ship_latency_s", "max")
                ).expect("mean", "max")
            ],
        ),
        ts(
            "Agent memory",
            "Resident memory of the agent process (rss_mb), mean and largest across the "
            "selected sites.",
            "decmbytes",
            [
                spread(agg("mean", "rss_mb", "mean"), agg("max", "rss_mb", "max")).expect(
                    "mean", "max"
                )
            ],
        ),
    ]
