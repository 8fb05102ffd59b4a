"""The dashboards' template variables: data source, ICB, site, readiness profile, silence."""

from __future__ import annotations

from netready.dashboards.names import (
    DATASOURCE_NAME,
    DATASOURCE_REGEX,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
)
from netready.dashboards.policy import DEFAULT_PROFILE
from netready.dashboards.queries import DS, ICB
from netready.dashboards.sdk import db, dm


def _all() -> dm.VariableOption:
    """The "All" selection (``allValue`` ``.*``: every value, by regex)."""
    return dm.VariableOption(selected=True, text=["All"], value=["$__all"])


def _tag_values(
    name: str, label: str, description: str, query: str, refresh: dm.VariableRefresh
) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DS)
        .query(query)
        .definition(query)
        .refresh(refresh)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def ds_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("ds")
        .label("Data source")
        .description("netready's InfluxDB data source: 1.x (default) or 2.x/3.x")
        .type(DATASOURCE_TYPE)
        .regex(DATASOURCE_REGEX)
        .current(dm.VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def icb_variable() -> db.QueryVariable:
    q = 'SHOW TAG VALUES WITH KEY = "icb"'
    return (
        _tag_values(
            "icb",
            "ICB",
            "Integrated Care Board (icb tag)",
            q,
            dm.VariableRefresh.ON_DASHBOARD_LOAD,
        )
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_all())
    )


def site_variable(*, include_all: bool = True) -> db.QueryVariable:
    v = (
        _tag_values(
            "site",
            "Site (ODS)",
            "Site ODS code (site tag), filtered by the ICB selection",
            f'SHOW TAG VALUES WITH KEY = "site" WHERE {ICB}',
            dm.VariableRefresh.ON_TIME_RANGE_CHANGED,
        )
        .multi(True)
        .include_all(include_all)
    )
    return v.all_value(".*").current(_all()) if include_all else v


def profile_variable() -> db.QueryVariable:
    return (
        _tag_values(
            "profile",
            "Readiness profile",
            "Readiness profile (profile tag of the readiness measurement)",
            'SHOW TAG VALUES FROM "readiness" WITH KEY = "profile"',
            dm.VariableRefresh.ON_DASHBOARD_LOAD,
        )
        .multi(False)
        .include_all(False)
        .current(dm.VariableOption(selected=True, text=DEFAULT_PROFILE, value=DEFAULT_PROFILE))
    )


def silent_variable() -> db.CustomVariable:
    choices = ("15m", "1h", "6h", "24h")
    return (
        db.CustomVariable("silent")
        .label("Silent for")
        .description("A site is 'not heard from' when its agent wrote nothing for this long")
        .values(",".join(choices))
        .current(dm.VariableOption(selected=True, text="1h", value="1h"))
        .options([dm.VariableOption(selected=v == "1h", text=v, value=v) for v in choices])
    )
