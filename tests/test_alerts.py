"""Alert rules: each rule's InfluxQL query runs on a real InfluxDB 1.6 holding data that should
fire it and data that should not, and the rule's expressions decide which sites fire.

No Grafana can run on this machine, so the part Grafana's server does after the query — its
server-side expressions — is done here by ``evaluate()``: a small evaluator of the exact model
Grafana stores and runs (``pkg/expr``): ``reduce`` (``mathexp/reduce.go``: sum, mean, min, max,
count, last; mode ``dropNN`` drops null/NaN/Inf before reducing and turns a NaN result into no
value) and ``threshold`` (``threshold.go``: gt, lt, within_range, outside_range and their
``_included`` forms; 1 or 0, no value stays no value). A query that returns no series is
Grafana's NoData, which the rules map to OK. The rule, its query and its expressions are read
from the committed provisioning file, so the file Grafana would load is what is tested.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from netready.dashboards import alerts, build

from netready.influx import InfluxV1
from netready.inventory import ClinicHours, StoreConfig
from netready.records import Record

ALERTING = build.HERE / "provisioning" / "alerting"
MIN = 60_000
H = 60 * MIN
D = 24 * H

Labels = frozenset[tuple[str, str]]

# ---------------------------------------------------------------- Grafana's expression model


def reduce(values: list[float | None], reducer: str, mode: str = "") -> float | None:
    """``Series.Reduce`` with the ``dropNN`` mapper (mode ``""``: strict, no mapper)."""
    if mode == "dropNN":
        values = [v for v in values if v is not None and math.isfinite(v)]
    elif mode:
        raise AssertionError(f"reduce mode {mode!r} is not used by the rules")
    nan = math.nan
    if reducer == "count":
        out: float | None = float(len(values))
    elif reducer == "last":
        out = values[-1] if values else nan
    elif reducer in ("sum", "mean"):
        if any(v is None or math.isnan(v) for v in values):
            out = nan
        else:
            total = float(sum(v for v in values if v is not None))
            out = total if reducer == "sum" else (total / len(values) if values else nan)
    elif reducer in ("min", "max"):
        if not values or any(v is None or math.isnan(v) for v in values):
            out = nan
        else:
            out = (min if reducer == "min" else max)(v for v in values if v is not None)
    else:
        raise AssertionError(f"reduction {reducer} not implemented")  # Grafana's own error
    if mode == "dropNN" and out is not None and math.isnan(out):
        return None
    return out


PREDICATES = {
    "gt": lambda f, p: f > p[0],
    "lt": lambda f, p: f < p[0],
    "within_range": lambda f, p: p[0] < f < p[1],
    "outside_range": lambda f, p: f < p[0] or f > p[1],
    "within_range_included": lambda f, p: p[0] <= f <= p[1],
    "outside_range_included": lambda f, p: f <= p[0] or f >= p[1],
}
#: Threshold types Grafana 10.0 has (gte/lte/eq/ne came later).
GRAFANA_10_THRESHOLDS = {"gt", "lt", "within_range", "outside_range"}


def threshold(value: float | None, evaluator: dict[str, Any]) -> float | None:
    if value is None:
        return None
    return 1.0 if PREDICATES[evaluator["type"]](value, evaluator["params"]) else 0.0


def evaluate(rule: dict[str, Any], client: InfluxV1) -> dict[Labels, float | None] | str:
    """The condition's value per label set, or the rule's state for no data ("OK")."""
    results: dict[str, list[tuple[Labels, Any]]] = {}
    for node in rule["data"]:
        model, ref = node["model"], node["refId"]
        if node["datasourceUid"] != "__expr__":
            assert model["rawQuery"] is True and model["resultFormat"] == "time_series"
            results[ref] = [
                (frozenset(s.tags.items()), [row[i] for row in s.values])
                for s in client.query(model["query"])
                for i, col in enumerate(s.columns)
                if col != "time"
            ]
        elif model["type"] == "reduce":
            mode = model.get("settings", {}).get("mode", "")
            results[ref] = [
                (labels, reduce(vals, model["reducer"], mode))
                for labels, vals in results[model["expression"]]
            ]
        elif model["type"] == "threshold":
            (cond,) = model["conditions"]
            results[ref] = [
                (labels, threshold(v, cond["evaluator"]))
                for labels, v in results[model["expression"]]
            ]
        else:
            raise AssertionError(f"expression type {model['type']} not evaluated here")
    out = results[rule["condition"]]
    if not out:
        return str(rule["noDataState"])
    keys = [labels for labels, _ in out]
    assert len(keys) == len(set(keys)), "duplicate label sets: Grafana refuses the evaluation"
    return dict(out)


def firing(rule: dict[str, Any], client: InfluxV1, key: str = "site") -> set[str]:
    res = evaluate(rule, client)
    if isinstance(res, str):
        assert res == "OK"
        return set()
    return {dict(labels)[key] for labels, v in res.items() if v}


# ---------------------------------------------------------------- the committed rules


def rule_file(suffix: str = "1x") -> dict[str, Any]:
    return yaml.safe_load((ALERTING / f"netready-rules-{suffix}.yaml").read_text())


def rules(suffix: str = "1x") -> dict[str, dict[str, Any]]:
    (group,) = rule_file(suffix)["groups"]
    return {r["labels"]["netready_alert"]: r for r in group["rules"]}


@pytest.fixture
def client(influxdb: tuple[str, str]) -> Any:
    url, db = influxdb
    with InfluxV1(StoreConfig(kind="influxdb_v1", url=url, database=db)) as c:
        yield c


TAGS = {"icb": "QHM", "tech": "fttc"}


def test_evaluator_follows_grafanas_reduce_and_threshold() -> None:
    """The evaluator itself, on the cases Grafana's code spells out."""
    assert reduce([1.0, None, 3.0], "last", "dropNN") == 3.0
    assert reduce([1.0, 3.0, None], "last", "") is None  # strict: the last point, null
    assert reduce([], "last", "dropNN") is None  # NaN -> no value
    strict = [reduce([], "min"), reduce([1.0, math.nan], "sum")]  # strict: NaN passes through
    assert all(v is not None and math.isnan(v) for v in strict)
    assert reduce([1.0, math.nan, 2.0], "sum", "dropNN") == 3.0
    assert reduce([2.0, math.inf], "count", "dropNN") == 1.0
    assert threshold(None, {"type": "gt", "params": [0]}) is None
    assert threshold(1.0, {"type": "within_range", "params": [0.5, 1.5]}) == 1.0
    assert threshold(1.5, {"type": "within_range", "params": [0.5, 1.5]}) == 0.0
    assert threshold(1.5, {"type": "within_range_included", "params": [0.5, 1.5]}) == 1.0
    assert threshold(0.0, {"type": "lt", "params": [1]}) == 1.0


def test_site_silent_for_over_two_hours(client: InfluxV1) -> None:
    """Fires for a site whose agent stopped 3 h or 10 days ago; not for one that reports, one
    quiet for 90 minutes, or one last heard of more than 30 days ago (out of the rule's reach,
    as of the dashboard's "not heard from" table)."""
    now = int(time.time() * 1000)
    stopped = {"REPORTS": 0, "QUIET90": 90 * MIN, "SILENT3H": 3 * H, "SILENT10D": 10 * D}
    recs = []
    for site, gap in stopped.items():
        for k in range(0, 12 * 24 * 2):  # every 5 min for two days before it stopped
            t = now - gap - k * 5 * MIN - 1000
            recs.append(Record("agent", {**TAGS, "site": site}, {"spool_pending": k % 7}, t))
    recs.append(Record("agent", {**TAGS, "site": "GONE"}, {"spool_pending": 1}, now - 40 * D))
    client.write(recs)
    assert firing(rules()["site-silent"], client) == {"SILENT3H", "SILENT10D"}


def _readiness(site: str, verdict: str, t: int) -> Record:
    from netready.reports.assess import VERDICT_CODE

    return Record(  # as reports/assess.py readiness_records() writes them
        "readiness",
        {**TAGS, "site": site, "profile": "gp_video", "detected_tech": "vdsl2"},
        {"verdict": verdict, "verdict_code": VERDICT_CODE[verdict], "ready": verdict == "READY"},
        t,
    )


def test_verdict_became_not_ready_or_marginal(client: InfluxV1) -> None:
    """The latest verdict decides: NOT READY and MARGINAL fire their rules, a site that
    recovered to READY and NO DATA / STALE sites do not."""
    from netready.reports.assess import VERDICT_CODE

    assert alerts.VERDICT_CODE == VERDICT_CODE
    now = int(time.time() * 1000)
    history = {
        "WORSE": ("READY", "NOT READY"),
        "SLIPPED": ("READY", "MARGINAL"),
        "RECOVERED": ("NOT READY", "READY"),
        "NODATA": ("MARGINAL", "NO DATA"),
        "STALE": ("NOT READY", "STALE"),
    }
    client.write(
        [_readiness(s, v, now - age) for s, vs in history.items() for v, age in zip(vs, (2 * D, H))]
    )
    assert firing(rules()["verdict-not-ready"], client) == {"WORSE"}
    assert firing(rules()["verdict-marginal"], client) == {"SLIPPED"}


def test_spool_evicting_records(client: InfluxV1) -> None:
    """spool_dropped rising in the last hour fires, also after an agent restart reset it; flat,
    risen only before the hour, or only reset does not."""
    now = int(time.time() * 1000)
    counters = {
        "RISING": lambda age: 5 if age < 20 * MIN else 0,
        "FLAT": lambda age: 7,
        "EARLIER": lambda age: 9 if age < 2 * H else 0,
        "RESTARTED": lambda age: 0 if age < 30 * MIN else 40,
        "RESTARTED_DROPS": lambda age: 3 if age < 10 * MIN else (0 if age < 30 * MIN else 40),
    }
    recs = [
        Record(
            "agent",
            {**TAGS, "site": site, "host": f"nr-{site.lower()}"},
            {"spool_pending": 3, "spool_dropped": f(age), "dead_lettered": 0},
            now - age,
        )
        for site, f in counters.items()
        for age in range(1000, 3 * H, 5 * MIN)
    ]
    client.write(recs)
    assert firing(rules()["spool-evicting"], client) == {"RISING", "RESTARTED_DROPS"}


def test_loss_over_one_percent_in_three_runs_in_a_row(client: InfluxV1) -> None:
    """The last three valid rtt runs all above 1 % fires (a failed run in between is no
    measurement); one good run among them, only two runs, or exactly 1 % does not."""
    now = int(time.time() * 1000)
    runs = {  # newest first
        "BAD3": [1.5, 2.0, 3.0, 0.0],
        "ONEGOOD": [2.0, 0.4, 2.0, 2.0],
        "TWORUNS": [5.0, 5.0],
        "ATLIMIT": [1.0, 1.0, 1.0],
        "FAILED": [2.0, None, 2.0, 2.5],
    }
    recs = []
    for site, losses in runs.items():
        for k, loss in enumerate(losses):
            tags = {**TAGS, "site": site, "target": "core-reflector", "method": "twamp_light"}
            t = now - k * 10 * MIN - 1000
            if loss is None:  # a failed run: result tag and a reason, no loss figure
                recs.append(Record("rtt", {**tags, "result": "timeout"}, {"reason": "no reply"}, t))
            else:
                recs.append(Record("rtt", tags, {"loss_pct": loss, "sent": 750}, t))
    client.write(recs)
    assert firing(rules()["loss-3-runs"], client) == {"BAD3", "FAILED"}


def test_tech_mismatch_on_a_real_router(client: InfluxV1) -> None:
    """A real DrayTek VDSL router's SNMP walk, interpreted by collectors/snmp.py as the agent
    does: declared FTTP, it is a mismatch (WAN interface and DSL line); declared FTTC, not."""
    from netready.collectors import snmp

    path = build.HERE.parent / "tests" / "data" / "snmprec" / "draytek_vdsl.snmprec"
    vb = snmp.parse_snmprec(path.read_text("utf-8", "surrogateescape"))
    now = int(time.time() * 1000)
    recs: list[Record] = []
    for site, tech in (("UPGRADED", "fttp"), ("ASDECLARED", "fttc")):
        prev = None
        for k in (10, 5, 0):
            up = vb[snmp.SYS_UPTIME] + (10 - k) * 30_000
            out, prev = snmp.records_from_varbinds(
                {**vb, snmp.SYS_UPTIME: up},
                base_tags={"site": site, "icb": "QHM", "tech": tech},
                device="router",
                prev=prev,
                time_ms=now - k * MIN,
            )
            recs += out
    assert {r.measurement for r in recs} >= {"if_traffic", "dsl_line"}
    assert any(r.fields.get("tech_mismatch") is True for r in recs)
    client.write(recs)
    r = rules()
    assert firing(r["tech-mismatch-if-traffic"], client) == {"UPGRADED"}
    assert firing(r["tech-mismatch-dsl-line"], client) == {"UPGRADED"}
    res = evaluate(r["tech-mismatch-dsl-line"], client)
    assert not isinstance(res, str)
    ((labels, _),) = [(k, v) for k, v in res.items() if v]
    assert dict(labels)["detected_tech"] == "vdsl2"  # what the summary names


def test_every_rule_is_quiet_on_an_empty_store(client: InfluxV1) -> None:
    """No rows is Grafana's NoData, which every rule maps to OK; every query is valid InfluxQL."""
    for key, rule in rules().items():
        assert rule["noDataState"] == "OK" and rule["execErrState"] == "Error", key
        assert evaluate(rule, client) == "OK", key


# ---------------------------------------------------------------- the files


def test_rule_files_match_grafanas_provisioning_format() -> None:
    """apiVersion 1, one group in the build's folder; each rule A (the data source's InfluxQL),
    B reduce of A, C threshold of B (a Grafana 10.0 threshold type), condition C; the two files
    differ only in the data source and the uid/title suffix."""
    one, two = rules("1x"), rules("2x-3x")
    assert set(one) == set(two) == {r.key for r in alerts.RULES}
    f = rule_file()
    assert f["apiVersion"] == 1
    (group,) = f["groups"]
    assert group["folder"] == build.FOLDER_TITLE and group["interval"] == alerts.GROUP_INTERVAL
    for key, rule in one.items():
        a, b, c = rule["data"]
        assert (a["refId"], b["refId"], c["refId"], rule["condition"]) == ("A", "B", "C", "C")
        assert a["datasourceUid"] == a["model"]["datasource"]["uid"] == build.DATASOURCE_UID
        assert a["relativeTimeRange"]["from"] > a["relativeTimeRange"]["to"] == 0
        assert b["model"]["type"] == "reduce" and b["model"]["expression"] == "A"
        assert c["model"]["type"] == "threshold" and c["model"]["expression"] == "B"
        assert c["model"]["conditions"][0]["evaluator"]["type"] in GRAFANA_10_THRESHOLDS
        other = two[key]
        assert other["data"][0]["datasourceUid"] == build.DATASOURCE_V2_UID
        assert other["uid"] != rule["uid"] and other["title"] != rule["title"]
        assert other["data"][0]["model"]["query"] == a["model"]["query"]
    uids = [r["uid"] for r in [*one.values(), *two.values()]]
    assert len(uids) == len(set(uids)) and all(len(u) <= 40 for u in uids)


def test_rules_survive_grafanas_env_interpolation_and_name_their_labels() -> None:
    """Grafana expands $NAME in a rule file's labels and data (not annotations): neither holds
    one. Every {{ $labels.X }} a summary uses is a tag the query groups by, and each dashboard
    link points at the panel of that title."""
    import json

    panels = {}
    for name in build.DASHBOARDS:
        data = json.loads((build.HERE / "generated" / name).read_text())
        rows = [q for p in data["panels"] for q in p.get("panels", [])]
        for panel in [*data["panels"], *rows]:
            panels[(data["uid"], panel["id"])] = panel["title"]
    wanted = {r.key: r.panel for r in alerts.RULES}
    for key, rule in rules().items():
        text = yaml.safe_dump({"data": rule["data"], "labels": rule["labels"]})
        assert not re.search(r"\$\{?\w", text), key
        group_by = rule["data"][0]["model"]["query"].rsplit("GROUP BY", 1)[1]
        for label in re.findall(r"\$labels\.(\w+)", rule["annotations"]["summary"]):
            assert f'"{label}"' in group_by, (key, label)
        if wanted[key]:
            uid, title = wanted[key]
            assert panels[(rule["dashboardUid"], rule["panelId"])] == title, key
            assert rule["dashboardUid"] == uid


def test_clinic_hours_mute_timing_and_policy() -> None:
    """The mute timing is everything outside the inventory's default clinic hours, in the
    sites' time zone; the clinic-hour rules carry the label the policy template mutes."""
    from netready.budget import SITE_TZ

    f = yaml.safe_load((ALERTING / "netready-mute-timings.yaml").read_text())
    (mute,) = f["muteTimes"]
    assert mute["name"] == alerts.MUTE_OUTSIDE_CLINIC
    ch = ClinicHours()
    weekdays, weekend = mute["time_intervals"]
    assert [d[:3] for d in weekdays["weekdays"]] == ch.days
    assert weekdays["times"] == [
        {"start_time": "00:00", "end_time": f"{ch.start:%H:%M}"},
        {"start_time": f"{ch.end:%H:%M}", "end_time": "24:00"},
    ]
    assert weekend["weekdays"] == ["saturday", "sunday"] and "times" not in weekend
    assert weekdays["location"] == weekend["location"] == str(SITE_TZ)
    muted = {k for k, r in rules().items() if r["labels"].get("netready_clinic_hours") == "true"}
    assert muted == {"site-silent", "loss-3-runs"}
    policy = yaml.safe_load((ALERTING / "templates/notification-policy.yaml").read_text())
    (root,) = policy["policies"]
    (route,) = root["routes"]
    assert route["receiver"] == alerts.CONTACT_POINT
    (clinic,) = route["routes"]
    assert clinic["object_matchers"] == [["netready_clinic_hours", "=", "true"]]
    assert clinic["mute_time_intervals"] == [alerts.MUTE_OUTSIDE_CLINIC]


def test_contact_point_templates_hold_no_secret() -> None:
    """Email and Teams: every setting that addresses someone is an environment variable."""
    for kind, key in (("email", "addresses"), ("teams", "url")):
        f = yaml.safe_load((ALERTING / f"templates/contact-point-{kind}.yaml").read_text())
        (cp,) = f["contactPoints"]
        (receiver,) = cp["receivers"]
        assert cp["name"] == alerts.CONTACT_POINT and receiver["type"] == kind
        assert re.fullmatch(r"\$NETREADY_[A-Z_]+", receiver["settings"][key])
        doc = (build.HERE.parent / "docs" / "dashboards.md").read_text()
        assert receiver["settings"][key] in doc


def test_build_folder_option_moves_the_rules(tmp_path: Path) -> None:
    from netready.cli import cli

    r = CliRunner().invoke(
        cli, ["dashboards", "build", "--out", str(tmp_path), "--folder", "NHS Estates"]
    )
    assert r.exit_code == 0, r.stderr
    for suffix in ("1x", "2x-3x"):
        f = yaml.safe_load(
            (tmp_path / f"provisioning/alerting/netready-rules-{suffix}.yaml").read_text()
        )
        assert f["groups"][0]["folder"] == "NHS Estates"


def test_docs_name_every_rule() -> None:
    doc = (build.HERE.parent / "docs" / "dashboards.md").read_text()
    for rule in alerts.RULES:
        assert f"`{rule.key}`" in doc, rule.key
