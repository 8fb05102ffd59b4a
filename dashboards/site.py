"""Site detail: throughput against the per-call requirement, path quality against the rubric,
MOS, call capacity, router and DSL line, failed measurements — for one or more sites."""

from __future__ import annotations

from netready.dashboards.names import UID_SITE
from netready.dashboards.panels import (
    Item,
    Row,
    dashboard,
    grade_cells,
    grade_stat,
    jitter_steps,
    loss_steps,
    mos_steps,
    named,
    qos_cells,
    rate_steps,
    rtt_steps,
    table_panel,
    thresholds,
    ts,
    verdict_cells,
)
from netready.dashboards.policy import (
    DOWN_MBPS,
    HEADROOM,
    JITTER_MS,
    LOSS_PCT,
    MOS,
    RTT_MS,
    SNR_MARGIN_DB,
    UP_MBPS,
    UTIL_REVIEW_PCT,
)
from netready.dashboards.queries import (
    OK,
    PROFILE,
    SITE,
    InfluxQL,
    T,
    agg,
    latest,
    over_time,
    site_series,
    verdicts,
)
from netready.dashboards.sdk import cm, dm
from netready.dashboards.variables import ds_variable, icb_variable, profile_variable, site_variable

BY_DIRECTION = '"site", "direction"'
BY_INTERFACE = '"site", "ifname", "direction"'
WAN = f'{SITE} AND {OK} AND "is_wan" = true'


def site_detail() -> dm.Dashboard:
    return dashboard(
        UID_SITE,
        "netready: site detail",
        "One or more sites (pick by ICB, then ODS code): throughput against the per-call "
        "requirement, path quality against the rubric, MOS, call capacity, router and DSL line.",
        ["site"],
        [ds_variable(), icb_variable(), site_variable(include_all=False), profile_variable()],
        [
            *verdict(),
            *throughput(),
            *path_quality(),
            *media_quality(),
            *capacity(),
            *router(),
            *failures(),
        ],
    )


def verdict() -> list[Item]:
    where = f"{SITE} AND {PROFILE}"
    return [
        Row("Readiness"),
        grade_stat(
            "Grade for this use",
            "The plain grade of each selected site for the profile's use, from its latest "
            "readiness point: Great / Good / Poor / Unusable, the worst band of the profile's "
            "gates (after Cloudflare's AIM scores); the reason is in the table beside it.",
            [
                InfluxQL(latest("readiness", "grade", where=where, by='"site"'))
                .alias("$tag_site")
                .expect("grade", tags=["site"])
            ],
        ),
        table_panel(
            "Latest verdict",
            "Latest readiness point of each selected site, with its reasons, the one behind "
            "its grade, and whether QoS protects the call under load (the newest QoS check) "
            "with its figures.",
            [
                InfluxQL(verdicts(where, '"site", "tech"')).expect(
                    "verdict",
                    "capacity",
                    "reasons",
                    "grade",
                    "grade_reason",
                    "qos",
                    "qos_reason",
                    tags=["site", "tech"],
                )
            ],
            w=18,
            h=5,
            overrides={
                "verdict": verdict_cells(),
                "Time": named("Assessed"),
                "grade": [*grade_cells(), *named("Grade")],
                "grade_reason": named("Why this grade"),
                "qos": [*qos_cells(), *named("QoS under load")],
                "qos_reason": named("QoS: why"),
            },
        ),
        table_panel(
            "Grade per use",
            "The latest grade of each selected site for every use (the profile tag of its "
            "readiness points, whatever the profile picked above; `netready assess --profile "
            "all` writes all four): the word, the one reason behind it, and the verdict.",
            [
                InfluxQL(
                    latest(
                        "readiness",
                        "grade",
                        "grade_reason",
                        "verdict",
                        where=SITE,
                        by='"site", "profile"',
                    )
                ).expect("grade", "grade_reason", "verdict", tags=["site", "profile"])
            ],
            h=6,
            overrides={
                "profile": named("Use"),
                "Time": named("Assessed"),
                "grade": [*grade_cells(), *named("Grade")],
                "grade_reason": named("Why this grade"),
                "verdict": verdict_cells(),
            },
        ),
    ]


def throughput() -> list[Item]:
    goodput = [
        ts(
            f"{label} goodput",
            f"Speed-test goodput, {label.lower()} (throughput measurement, valid runs).",
            "Mbits",
            [
                InfluxQL(
                    site_series("throughput", {"goodput_mbps": "mean"}, f"\"direction\" = '{d}'")
                )
                .alias("$tag_site")
                .expect("goodput_mbps", tags=["site"])
            ],
            bars=True,
        )
        for d, label in [("up", "Upload"), ("down", "Download")]
    ]
    per_call = [
        per_planned_call(d, req, label)
        for d, req, label in [("up", UP_MBPS, "Upload"), ("down", DOWN_MBPS, "Download")]
    ]
    loaded = ts(
        "Latency under load (bufferbloat)",
        "RTT measured during the speed test: idle vs loaded, per direction.",
        "ms",
        [
            InfluxQL(
                site_series(
                    "throughput", {"rtt_idle_ms": "mean", "rtt_loaded_ms": "mean"}, by=BY_DIRECTION
                )
            )
            .alias("$tag_site $tag_direction $col")
            .expect("rtt_idle_ms", "rtt_loaded_ms", tags=["site", "direction"])
        ],
        w=24,
        steps=rtt_steps(),
    )
    return [Row("Throughput against the per-call requirement"), *goodput, *per_call, loaded]


def per_planned_call(direction: str, req: dict[str, float], label: str) -> Item:
    """0.75 × the sustained (p10) goodput ÷ planned clinics, computed by InfluxDB."""
    col = f"{direction}_per_call_mbps"
    return ts(
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
        steps=rate_steps(req),
        points=cm.VisibilityMode.ALWAYS,
    )


def path_quality() -> list[Item]:
    loss = {"loss_pct": "mean", "burst_loss_200ms_pct": "max", "reorder_pct": "mean"}
    return [
        Row("Path quality against the rubric"),
        ts(
            "Round-trip time",
            "rtt probe: median and 95th percentile RTT per run. Dashed lines: "
            f"{RTT_MS['recommended']:g} ms recommended, {RTT_MS['minimum']:g} ms minimum, "
            f"{RTT_MS['not_ready']:g} ms not ready (ITU-T G.114; Teams targets).",
            "ms",
            [
                InfluxQL(site_series("rtt", {"rtt_p50_ms": "mean", "rtt_p95_ms": "max"}))
                .alias("$tag_site $col")
                .expect("rtt_p50_ms", "rtt_p95_ms", tags=["site"])
            ],
            w=8,
            steps=rtt_steps(),
        ),
        ts(
            "Jitter (RFC 3550) and IPDV p95",
            "rtt probe: RFC 3550 interarrival jitter and IPDV 95th percentile (RFC 3393). "
            f"Dashed lines: {JITTER_MS['recommended']:g} ms recommended, "
            f"{JITTER_MS['minimum']:g} ms minimum, {JITTER_MS['not_ready']:g} ms not ready.",
            "ms",
            [
                InfluxQL(site_series("rtt", {"jitter_rfc3550_ms": "mean", "ipdv_p95_ms": "max"}))
                .alias("$tag_site $col")
                .expect("jitter_rfc3550_ms", "ipdv_p95_ms", tags=["site"])
            ],
            w=8,
            steps=jitter_steps(),
        ),
        ts(
            "Loss and burst loss",
            "rtt probe: loss % per run and the worst 200 ms burst-loss window. Dashed lines: "
            f"loss {LOSS_PCT['recommended']:g} % recommended, {LOSS_PCT['minimum']:g} % minimum.",
            "percent",
            [
                InfluxQL(site_series("rtt", loss))
                .alias("$tag_site $col")
                .expect(*loss, tags=["site"])
            ],
            w=8,
            steps=loss_steps(),
        ),
    ]


def media_quality() -> list[Item]:
    quality = {"loss_pct": "mean", "jitter_rfc3550_ms": "mean"}
    return [
        ts(
            "Voice MOS (G.107) per direction",
            "media probe: ITU-T G.107 MOS of the emulated call's audio as its receiver plays it "
            "(voice_mos_g107), per direction. "
            f"Dashed lines: {MOS['not_ready']} not ready, {MOS['recommended']} recommended "
            "(ITU-T G.107).",
            "none",
            [
                InfluxQL(site_series("media", {"voice_mos_g107": "mean"}, by=BY_DIRECTION))
                .alias("$tag_site $tag_direction")
                .expect("voice_mos_g107", tags=["site", "direction"])
            ],
            steps=mos_steps(),
            minimum=1,
            maximum=5,
        ),
        ts(
            "Media loss and jitter per direction",
            "media probe: loss % and RFC 3550 jitter of the emulated call, per direction.",
            "none",
            [
                InfluxQL(site_series("media", quality, by=BY_DIRECTION))
                .alias("$tag_site $tag_direction $col")
                .expect(*quality, tags=["site", "direction"])
            ],
        ),
    ]


def capacity() -> list[Item]:
    return [
        Row("Capacity"),
        ts(
            "Concurrent video calls",
            "A: calls the media probe measured the link could carry (capacity_calls, the "
            "smaller direction). B: capacity in the readiness verdict.",
            "none",
            [
                InfluxQL(site_series("media", {"capacity_calls": "min"}))
                .alias("$tag_site measured")
                .expect("capacity_calls", tags=["site"]),
                InfluxQL(
                    over_time(
                        "readiness", [agg("last", "capacity")], f"{SITE} AND {PROFILE}", '"site"'
                    )
                )
                .alias("$tag_site verdict")
                .expect("capacity", tags=["site"]),
            ],
            w=24,
            bars=True,
        ),
    ]


def router() -> list[Item]:
    util = [agg("max", f) for f in ("util_contract_pct", "util_sync_pct", "util_pct")]
    rate = [agg("mean", "rate_mbps", "mean"), agg("max", "rate_mbps", "peak")]
    return [
        Row("Router and line"),
        ts(
            "Router WAN utilisation",
            "SNMP counters of the WAN interface, per direction (in = download): utilisation "
            "against the contracted rate (util_contract_pct), the DSL sync rate (util_sync_pct) "
            "and the interface speed (util_pct). Dashed line: "
            f"{UTIL_REVIEW_PCT:g} % (NHS Digital advises reviewing FTTC links above 75 % use).",
            "percent",
            [
                InfluxQL(over_time("if_traffic", util, WAN, BY_INTERFACE))
                .alias("$tag_site $tag_ifname $tag_direction $col")
                .expect("util_contract_pct", "util_pct", tags=["site", "ifname", "direction"])
            ],
            steps=thresholds((None, "green"), (UTIL_REVIEW_PCT, "red")),
        ),
        ts(
            "Router WAN traffic",
            "SNMP counters of the WAN interface: bit rate per direction (in = download), "
            "mean and peak per interval.",
            "Mbits",
            [
                InfluxQL(over_time("if_traffic", rate, WAN, BY_INTERFACE))
                .alias("$tag_site $tag_ifname $tag_direction $col")
                .expect("mean", "peak", tags=["site", "ifname", "direction"])
            ],
        ),
        *dsl_line(),
    ]


def dsl_line() -> list[Item]:
    rates = ("sync_down_kbps", "sync_up_kbps", "attainable_down_kbps", "attainable_up_kbps")
    snr = ("snr_margin_down_db", "snr_margin_up_db")
    return [
        ts(
            "DSL sync and attainable rate",
            "DSL line (dsl_line, copper sites): sync rate and attainable rate, down and up.",
            "Kbits",
            [
                InfluxQL(site_series("dsl_line", dict.fromkeys(rates, "mean")))
                .alias("$tag_site $col")
                .expect("sync_down_kbps", "sync_up_kbps", tags=["site"])
            ],
        ),
        ts(
            "DSL SNR margin",
            f"DSL line: SNR margin down/up. Below {SNR_MARGIN_DB['ok']:g} dB a line tends to "
            f"retrain or error; below {SNR_MARGIN_DB['poor']:g} dB it is unstable.",
            "dB",
            [
                InfluxQL(site_series("dsl_line", dict.fromkeys(snr, "mean")))
                .alias("$tag_site $col")
                .expect(*snr, tags=["site"])
            ],
            steps=thresholds(
                (None, "red"), (SNR_MARGIN_DB["poor"], "orange"), (SNR_MARGIN_DB["ok"], "green")
            ),
            minimum=None,
        ),
    ]


def failures() -> list[Item]:
    return [
        Row("Failed measurements"),
        table_panel(
            "Failed measurements by cause",
            "Measurements that did not produce a valid result (result tag other than ok: "
            "timeout, refused, link_busy, ...), counted per site, measurement and cause.",
            [
                InfluxQL(
                    f"SELECT {agg('count', 'reason', 'failures')}, "
                    f"{agg('last', 'reason', 'last_reason')} "
                    'FROM "rtt", "media", "throughput", "if_traffic", "dsl_line" '
                    f'WHERE {T} AND {SITE} AND "result" =~ /./ AND "result" != \'ok\' '
                    'GROUP BY "site", "result"'
                ).expect("failures", "last_reason", tags=["site", "result"])
            ],
            h=6,
        ),
    ]
