"""InfluxQL for the dashboards: the raw-query ``Dataquery`` type and the query vocabulary.

The SDK has no InfluxQL query builder, so ``InfluxQLQuery`` is a small custom ``Dataquery``: a
raw InfluxQL target as Grafana's InfluxDB data source stores it (``query``, ``rawQuery: true``,
``resultFormat``, ``alias``). ``InfluxQL("SELECT ...").table().expect(...)`` builds one.

The fragments and helpers below write every query the panels run; they follow the schema in
``netready/records.py`` (measurements, tags, fields).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

from netready.dashboards.names import DATASOURCE_TYPE
from netready.dashboards.sdk import cm, cogbuilder, cogruntime, cogvariants


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target for Grafana's InfluxDB data source (InfluxQL mode).

    ``expect_columns``/``expect_tags`` are not serialised: they say what the panel needs from
    the result (``build.panel_queries()`` hands them to the tests).
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

#: The data source of every panel and target: the dashboards' ``$ds`` variable.
DS = cm.DataSourceRef(type_val=DATASOURCE_TYPE, uid="${ds}")


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


# ------------------------------------------------------------------ fragments

T = "$timeFilter"
SITE = '"site" =~ /^$site$/'
ICB = '"icb" =~ /^$icb$/'
PROFILE = '"profile" =~ /^$profile$/'
#: A valid measurement: no ``result`` tag, or ``result=ok``.
OK = '"result" =~ /^(ok)?$/'
BY_TIME = "GROUP BY time($__interval)"
BY_SITE_TECH = '"site", "tech"'

COPPER_RE = "^(adsl|fttc|sogea)$"
FIBRE_RE = "^(fttp|ethernet)$"

#: How each verdict is matched in the ``verdict`` string field (case, ``_`` or space).
VERDICT_RE = {
    "ready": "(?i)^ready$",
    "marginal": "(?i)^marginal$",
    "not_ready": "(?i)^not[ _-]?ready$",
    "no_data": "(?i)^(no[ _-]?data|stale)$",
}


def agg(fn: str, field: str, alias: str | None = None) -> str:
    """``fn("field") AS "alias"`` (the alias defaults to the field)."""
    return f'{fn}("{field}") AS "{alias or field}"'


# ------------------------------------------------------------------ queries


def latest(
    measurement: str,
    field: str,
    *others: str,
    where: str,
    by: str = '"site"',
    alias: str | None = None,
    since: str = T,
) -> str:
    """Each group's latest point: ``last(field)`` and the other fields of that same point."""
    cols = ", ".join([agg("last", field, alias), *(f'"{o}"' for o in others)])
    return f'SELECT {cols} FROM "{measurement}" WHERE {since} AND {where} GROUP BY {by}'


def of_latest(fn: str, field: str, alias: str, where: str, measurement: str = "agent") -> str:
    """``fn`` over sites of each site's latest ``field`` (e.g. the sum of the latest counters)."""
    inner = latest(measurement, field, where=where)
    return f"SELECT {agg(fn, field, alias)} FROM ({inner})"


def latest_verdicts(where: str, group_by: str = '"site"') -> str:
    """Subquery: the latest verdict per site (and per extra tags in ``group_by``)."""
    return latest("readiness", "verdict", where=where, by=group_by)


def count_verdicts(
    where: str, alias: str, verdict: str | None = None, group_by: str = '"site"', by: str = ""
) -> str:
    """How many sites' latest verdict is ``verdict`` (a ``VERDICT_RE`` key; None: any)."""
    q = f"SELECT {agg('count', 'verdict', alias)} FROM ({latest_verdicts(where, group_by)})"
    if verdict is not None:
        q += f' WHERE "verdict" =~ /{VERDICT_RE[verdict]}/'
    return f"{q} GROUP BY {by}" if by else q


def verdicts(where: str, by: str) -> str:
    """Each group's latest readiness point: verdict, capacity, the reasons, the plain grade
    with its reason, and whether QoS protects the call with its reason."""
    return latest("readiness", *VERDICT_FIELDS, where=where, by=by)


#: The fields of ``verdicts`` (after ``verdict``), in their order.
VERDICT_FIELDS = ("verdict", "capacity", "reasons", "grade", "grade_reason", "qos", "qos_reason")


def site_figures(where: str, *figures: str) -> str:
    """Subquery: each site's latest readiness point — verdict and the ``figures`` it was
    judged on that the panel shows (one selector, so every figure comes from that same point;
    only those: each one more is another cursor per site, 7,000 sites deep —
    bench/dashboards.py)."""
    return latest("readiness", "verdict", *figures, where=where, by=BY_SITE_TECH)


def over_time(measurement: str, columns: Sequence[str], where: str, by: str = "") -> str:
    """``SELECT columns FROM m WHERE $timeFilter AND where GROUP BY time($__interval)[, by]``."""
    group = f"{BY_TIME}, {by}" if by else BY_TIME
    return (
        f'SELECT {", ".join(columns)} FROM "{measurement}" WHERE {T} AND {where} {group} fill(none)'
    )


def site_series(
    measurement: str, fields: dict[str, str], extra: str = "", by: str = '"site"'
) -> str:
    """Valid points of the selected sites over time: ``{field: aggregate}``, each as itself."""
    where = f"{SITE} AND {OK}" + (f" AND {extra}" if extra else "")
    return over_time(measurement, [agg(fn, f) for f, fn in fields.items()], where, by)
