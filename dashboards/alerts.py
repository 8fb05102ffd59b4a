"""Grafana alert rules as code, provisioned from files like the dashboards.

Grafana's file provisioning format for alerting (``apiVersion: 1``; ``groups`` of ``rules``,
each rule a list of ``data`` nodes: an InfluxQL query, then server-side expressions: ``reduce``
to one number per series, ``threshold`` to 1/0; ``condition`` names the node that fires).

The rules, one declarative list (``RULES``):

- a site silent for more than 2 hours (no ``agent`` point in the last five 30-minute buckets);
- a readiness verdict that became NOT READY, or MARGINAL (``readiness.verdict_code``, written
  by ``netready assess``);
- the spool evicting records (``agent.spool_dropped`` rising within the hour);
- loss over the rubric's not-ready limit (1 %) in each of the last three ``rtt`` runs;
- a technology mismatch on the router's WAN interface (``if_traffic``) or DSL line
  (``dsl_line``): ``tech_mismatch = true`` within the hour. ``tech_mismatch`` is true only
  when ``tech_check`` is ``mismatch`` (declared FTTP and the router trains VDSL2; cable or
  cellular where fibre or copper is declared); an Ethernet handoff where fibre or DSL is
  declared is ``unverifiable`` (an ONT or modem in front looks the same), has no
  ``tech_mismatch`` and does not fire: the readiness report lists those apart.

Rules are evaluated around the clock; the ones marked ``clinic_hours`` carry the label
``netready_clinic_hours=true``, which the notification policy template mutes outside the
inventory's default clinic hours (``outside-clinic-hours`` mute timing). Contact points (email,
Microsoft Teams webhook) and that policy are templates: their addresses and the webhook URL are
``$NETREADY_...`` environment variables that Grafana expands when it provisions them.

Each rule file exists per data source (1.x, 2.x/3.x), as the data source files do: copy ONE.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from netready.dashboards.names import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    DATASOURCE_V2_UID,
    UID_AGENT,
    UID_ESTATE,
    UID_SITE,
    BuildOptions,
)
from netready.dashboards.policy import LOSS_PCT
from netready.dashboards.provisioning import to_yaml
from netready.dashboards.queries import OK

from netready.budget import SITE_TZ
from netready.inventory import ClinicHours

#: ``readiness.verdict_code`` as ``netready assess`` writes it (reports/assess.py VERDICT_CODE).
VERDICT_CODE = {"READY": 0, "MARGINAL": 1, "NOT READY": 2, "STALE": 3, "NO DATA": 4}
SILENT_AFTER_MIN = 120
#: Runs in a row above the loss limit before the loss rule fires.
LOSS_RUNS = 3
MUTE_OUTSIDE_CLINIC = "outside-clinic-hours"
CONTACT_POINT = "netready estates team"
GROUP_INTERVAL = "5m"
EXPR = "__expr__"


@dataclass(frozen=True)
class Rule:
    """One alert rule: an InfluxQL query (A), reduced per series (B), compared (C)."""

    key: str
    title: str
    summary: str
    query: str
    lookback_s: int
    evaluator: tuple[str, list[float]]
    reducer: str = "last"
    severity: str = "warning"
    clinic_hours: bool = False
    panel: tuple[str, str] | None = None  # (dashboard uid, panel title) the rule links to
    labels: dict[str, str] = field(default_factory=dict)


def _silent() -> Rule:
    # Points in the last 2 h, plus 0 for every site heard of in 30 days (so a silent site still
    # has a series): two subqueries unioned in one FROM. The 30-day part is a LAST per series,
    # not a count per 30-minute bucket: the rule runs every 5 minutes, and at 7,000 sites the
    # bucketed form (30 days of zero-filled buckets and a moving average) cost minutes a run;
    # on 100 sites x 30 days of agent points 4.0-4.8 s against 0.13-0.5 s (docs/scaling.md).
    recent = (
        f'SELECT count("spool_pending") AS "n" FROM "agent" WHERE time > now() - '
        f'{SILENT_AFTER_MIN}m GROUP BY "site", "icb"'
    )
    known = (
        'SELECT last("spool_pending") * 0 AS "n" FROM "agent" WHERE time > now() - 30d '
        'GROUP BY "site", "icb"'
    )
    return Rule(
        "site-silent",
        "netready: site silent for over 2 hours",
        "Site {{ $labels.site }} ({{ $labels.icb }}): its agent has written nothing for more "
        "than 2 hours.",
        f'SELECT sum("n") AS "points" FROM ({recent}), ({known}) GROUP BY "site", "icb"',
        30 * 86400,
        ("lt", [1]),
        clinic_hours=True,
        panel=(UID_ESTATE, "Sites not heard from"),
    )


def _verdict(verdict: str, severity: str) -> Rule:
    code = VERDICT_CODE[verdict]
    return Rule(
        f"verdict-{verdict.lower().replace(' ', '-')}",
        f"netready: site became {verdict}",
        f"Site {{{{ $labels.site }}}} ({{{{ $labels.icb }}}}) is {verdict} for profile "
        "{{ $labels.profile }} in its latest readiness assessment.",
        'SELECT last("verdict_code") AS "verdict_code" FROM "readiness" '
        'WHERE time > now() - 8d GROUP BY "site", "icb", "profile"',
        8 * 86400,
        ("within_range", [code - 0.5, code + 0.5]),
        severity=severity,
        panel=(UID_ESTATE, "Sites: verdict and reasons"),
    )


def _spool() -> Rule:
    diffs = (
        'SELECT non_negative_difference("spool_dropped") AS "d" FROM "agent" '
        'WHERE time > now() - 1h GROUP BY "site", "icb"'
    )
    return Rule(
        "spool-evicting",
        "netready: agent spool evicting records",
        "Site {{ $labels.site }} ({{ $labels.icb }}): the agent's spool evicted "
        "{{ $values.B.Value }} records in the last hour (quota full: they will never ship).",
        f'SELECT sum("d") AS "dropped" FROM ({diffs}) GROUP BY "site", "icb"',
        3600,
        ("gt", [0]),
        panel=(UID_AGENT, "Records dropped (spool quota)"),
    )


def _loss() -> Rule:
    limit = LOSS_PCT["not_ready"]
    last_runs = (
        f'SELECT "loss_pct" FROM "rtt" WHERE time > now() - 6h AND {OK} '
        f'GROUP BY "site", "icb", "target" ORDER BY time DESC LIMIT {LOSS_RUNS}'
    )
    return Rule(
        "loss-3-runs",
        f"netready: loss over {limit:g} % in {LOSS_RUNS} runs in a row",
        f"Site {{{{ $labels.site }}}} ({{{{ $labels.icb }}}}): packet loss to "
        f"{{{{ $labels.target }}}} over {limit:g} % in each of the last {LOSS_RUNS} rtt runs.",
        f'SELECT count("loss_pct") AS "runs" FROM ({last_runs}) WHERE "loss_pct" > {limit:g} '
        'GROUP BY "site", "icb", "target" ORDER BY time DESC',
        6 * 3600,
        ("gt", [LOSS_RUNS - 0.5]),
        clinic_hours=True,
        panel=(UID_SITE, "Loss and burst loss"),
    )


def _mismatch(measurement: str, where: str) -> Rule:
    return Rule(
        f"tech-mismatch-{measurement.replace('_', '-')}",
        f"netready: access technology mismatch ({where})",
        "Site {{ $labels.site }} ({{ $labels.icb }}): the router's " + where + " looks like "
        "{{ $labels.detected_tech }}, not the access technology the inventory declares "
        "(tech_evidence on the record says why; an unverifiable Ethernet handoff never fires).",
        f'SELECT count("tech_mismatch") AS "mismatches" FROM "{measurement}" '
        'WHERE time > now() - 1h AND "tech_mismatch" = true '
        'GROUP BY "site", "icb", "detected_tech"',  # tech is a field: records.FIELD_TAGS
        3600,
        ("gt", [0]),
    )


RULES: tuple[Rule, ...] = (
    _silent(),
    _verdict("NOT READY", "critical"),
    _verdict("MARGINAL", "warning"),
    _spool(),
    _loss(),
    _mismatch("if_traffic", "WAN interface"),
    _mismatch("dsl_line", "DSL line"),
)

# ------------------------------------------------------------------ the provisioning model


def _expr(ref: str, model: dict[str, object]) -> dict[str, object]:
    return {
        "refId": ref,
        "datasourceUid": EXPR,
        "model": {"refId": ref, "datasource": {"type": EXPR, "uid": EXPR}, **model},
    }


def rule_data(rule: Rule, datasource_uid: str) -> list[dict[str, object]]:
    """The rule's nodes: A the InfluxQL query, B ``reduce`` (NaN/null dropped), C ``threshold``."""
    query: dict[str, object] = {
        "refId": "A",
        "relativeTimeRange": {"from": rule.lookback_s, "to": 0},
        "datasourceUid": datasource_uid,
        "model": {
            "refId": "A",
            "datasource": {"type": DATASOURCE_TYPE, "uid": datasource_uid},
            "query": rule.query,
            "rawQuery": True,
            "resultFormat": "time_series",
            "intervalMs": 1000,
            "maxDataPoints": 43200,
        },
    }
    kind, params = rule.evaluator
    reduce: dict[str, object] = {"type": "reduce", "expression": "A", "reducer": rule.reducer}
    threshold: dict[str, object] = {
        "type": "threshold",
        "expression": "B",
        "conditions": [{"evaluator": {"type": kind, "params": params}}],
    }
    return [query, _expr("B", {**reduce, "settings": {"mode": "dropNN"}}), _expr("C", threshold)]


def _rule(
    rule: Rule, datasource_uid: str, suffix: str, panels: dict[tuple[str, str], int]
) -> dict[str, object]:
    out: dict[str, object] = {
        "uid": f"netready-{rule.key}{suffix}"[:40],
        "title": rule.title + (f" [{suffix.strip('-')}]" if suffix else ""),
        "condition": "C",
        "data": rule_data(rule, datasource_uid),
        "noDataState": "OK",  # no rows: nothing wrong was recorded (silence has its own rule)
        "execErrState": "Error",
        "for": "0s",
        "annotations": {"summary": rule.summary},
        "labels": {
            "netready_alert": rule.key,
            "severity": rule.severity,
            **({"netready_clinic_hours": "true"} if rule.clinic_hours else {}),
            **rule.labels,
        },
        "isPaused": False,
    }
    if rule.panel and rule.panel in panels:
        out["dashboardUid"], out["panelId"] = rule.panel[0], panels[rule.panel]
    return out


def rule_groups(
    options: BuildOptions, datasource_uid: str, panels: dict[tuple[str, str], int]
) -> dict[str, object]:
    """The rule file for one data source (``panels``: (dashboard uid, title) -> panel id)."""
    suffix = "" if datasource_uid == DATASOURCE_UID else "-2x-3x"
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "netready" + (" (InfluxDB 2.x/3.x)" if suffix else ""),
                "folder": options.folder,
                "interval": GROUP_INTERVAL,
                "rules": [_rule(r, datasource_uid, suffix, panels) for r in RULES],
            }
        ],
    }


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def mute_outside_clinic_hours(hours: ClinicHours | None = None) -> dict[str, object]:
    """The mute timing: every time outside the clinic hours (default: the inventory's)."""
    ch = hours or ClinicHours()
    on = [d for d in _WEEKDAYS if d[:3] in ch.days]
    off = [d for d in _WEEKDAYS if d[:3] not in ch.days]
    end = "24:00" if ch.end == dt.time(23, 59, 59) else f"{ch.end:%H:%M}"
    intervals: list[dict[str, object]] = []
    if on:
        times = [{"start_time": "00:00", "end_time": f"{ch.start:%H:%M}"}]
        if end != "24:00":
            times.append({"start_time": end, "end_time": "24:00"})
        intervals.append({"times": times, "weekdays": on, "location": str(SITE_TZ)})
    if off:
        intervals.append({"weekdays": off, "location": str(SITE_TZ)})
    return {
        "apiVersion": 1,
        "muteTimes": [{"orgId": 1, "name": MUTE_OUTSIDE_CLINIC, "time_intervals": intervals}],
    }


def contact_point(kind: str) -> dict[str, object]:
    """The estates team's contact point, email or Microsoft Teams; no secret in the file."""
    if kind == "email":
        receiver = {
            "uid": "netready-email",
            "type": "email",
            "settings": {"addresses": "$NETREADY_ALERT_EMAILS", "singleEmail": True},
        }
    else:
        receiver = {
            "uid": "netready-teams",
            "type": "teams",
            "settings": {"url": "$NETREADY_TEAMS_WEBHOOK_URL"},
        }
    return {
        "apiVersion": 1,
        "contactPoints": [{"orgId": 1, "name": CONTACT_POINT, "receivers": [receiver]}],
    }


def notification_policy() -> dict[str, object]:
    """Policy template: netready's alerts (label ``netready_alert``) to the estates team, the
    clinic-hour ones muted outside clinic hours; everything else to Grafana's default contact
    point. Provisioning a policy REPLACES the organisation's whole policy tree."""
    clinic = {
        "object_matchers": [["netready_clinic_hours", "=", "true"]],
        "mute_time_intervals": [MUTE_OUTSIDE_CLINIC],
    }
    netready = {
        "receiver": CONTACT_POINT,
        "object_matchers": [["netready_alert", "=~", ".+"]],
        "group_by": ["grafana_folder", "alertname", "site"],
        "repeat_interval": "12h",
        "routes": [clinic],
    }
    return {
        "apiVersion": 1,
        "policies": [{"orgId": 1, "receiver": "grafana-default-email", "routes": [netready]}],
    }


def alerting_files(options: BuildOptions, panels: dict[tuple[str, str], int]) -> dict[str, str]:
    """The alerting provisioning files: path relative to ``dashboards/`` -> content."""
    d = "provisioning/alerting/"
    copy = "# Copy to /etc/grafana/provisioning/alerting/ (see docs/dashboards.md, Alerting).\n"
    out = {}
    for suffix, uid, what in (
        ("1x", DATASOURCE_UID, "InfluxDB 1.x"),
        ("2x-3x", DATASOURCE_V2_UID, "InfluxDB 2.x/3.x"),
    ):
        out[f"{d}netready-rules-{suffix}.yaml"] = to_yaml(
            f"# netready alert rules on data source {uid!r} ({what}): copy ONE rules file,\n"
            "# the one for your data source, with netready-mute-timings.yaml.\n" + copy,
            rule_groups(options, uid, panels),
        )
    out[f"{d}netready-mute-timings.yaml"] = to_yaml(
        "# Mute timing for the clinic-hour rules: outside the inventory's default clinic "
        "hours.\n" + copy,
        mute_outside_clinic_hours(),
    )
    for kind, env in (("email", "NETREADY_ALERT_EMAILS"), ("teams", "NETREADY_TEAMS_WEBHOOK_URL")):
        out[f"{d}templates/contact-point-{kind}.yaml"] = to_yaml(
            f"# Template: the estates team's contact point ({kind}). Grafana expands ${env}\n"
            "# from its environment: no address or webhook secret in this file. Copy ONE.\n",
            contact_point(kind),
        )
    out[f"{d}templates/notification-policy.yaml"] = to_yaml(
        "# Template: routes netready's alerts to the contact point, muting the clinic-hour ones\n"
        "# outside clinic hours. Provisioning it REPLACES the organisation's notification\n"
        "# policy tree: merge it into yours instead if you have one.\n",
        notification_policy(),
    )
    return out
