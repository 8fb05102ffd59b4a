"""Grafana dashboards as code: the API that builds, writes and checks every generated file.

The dashboards are short declarative lists (``estate.py``, ``site.py``, ``agent.py``) of the
panel vocabulary in ``panels.py`` over the InfluxQL in ``queries.py``; ``provisioning.py``
writes the data source and provider files. Thresholds come from the rubric through
``policy.py``; names Grafana knows netready's objects by are in ``names.py``.

``build_all()`` returns every generated file (path relative to ``dashboards/`` -> text);
``write_all()`` writes them; ``stale_files()`` says which committed files differ from a fresh
build (``tests/test_dashboards.py`` fails on any). ``panel_queries()`` lists every panel query
with the columns and tags the panel expects, so the tests can run each one against InfluxDB.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from netready.dashboards.agent import agent_health
from netready.dashboards.alerts import alerting_files
from netready.dashboards.estate import estate_overview
from netready.dashboards.names import (
    DATABASE,
    DATASOURCE_NAME,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    DATASOURCE_V2_NAME,
    DATASOURCE_V2_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    PROVIDER_PATH,
    UID_AGENT,
    UID_ESTATE,
    UID_SITE,
    BuildOptions,
)
from netready.dashboards.provisioning import datasource_v1, datasource_v2, provisioning_files
from netready.dashboards.queries import OK, InfluxQLQuery
from netready.dashboards.sdk import JSONEncoder, dm
from netready.dashboards.site import site_detail

__all__ = [
    "DASHBOARDS",
    "DATABASE",
    "DATASOURCE_NAME",
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "DATASOURCE_V2_NAME",
    "DATASOURCE_V2_UID",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "HERE",
    "OK",
    "PROVIDER_PATH",
    "UID_AGENT",
    "UID_ESTATE",
    "UID_SITE",
    "BuildOptions",
    "InfluxQLQuery",
    "PanelQuery",
    "build_all",
    "build_dashboards",
    "datasource_v1",
    "datasource_v2",
    "panel_queries",
    "stale_files",
    "to_json",
    "variable_queries",
    "write_all",
]

HERE = Path(__file__).resolve().parent

DASHBOARDS: dict[str, typing.Callable[[], dm.Dashboard]] = {
    "estate-overview.json": estate_overview,
    "site-detail.json": site_detail,
    "agent-health.json": agent_health,
}


def build_dashboards() -> dict[str, dm.Dashboard]:
    """Fresh dashboard models (file name -> Dashboard); panel ids count from 1 in each."""
    return {name: fn() for name, fn in DASHBOARDS.items()}


def to_json(dash: dm.Dashboard) -> str:
    return json.dumps(dash, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_all(options: BuildOptions | None = None) -> dict[str, str]:
    """Every generated file: path relative to ``dashboards/`` -> content."""
    options = options or BuildOptions()
    dashboards = build_dashboards()
    out = {f"generated/{name}": to_json(d) for name, d in dashboards.items()}
    panels = {
        (d.uid or "", p.title or ""): p.id_val or 0 for d in dashboards.values() for p in _panels(d)
    }
    return {**out, **provisioning_files(options), **alerting_files(options, panels)}


def write_all(root: Path = HERE, options: BuildOptions | None = None) -> list[Path]:
    """Write every generated file under ``root``; return the paths whose content changed."""
    changed = []
    for rel, text in build_all(options).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            changed.append(p)
    return changed


def stale_files(root: Path = HERE, options: BuildOptions | None = None) -> list[str]:
    """Generated files that are missing or differ from a fresh in-memory build."""
    stale = []
    for rel, text in build_all(options).items():
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


def _variables(d: dm.Dashboard) -> list[dm.VariableModel]:
    return (d.templating.list_val or []) if d.templating else []


def panel_queries(dashboards: dict[str, dm.Dashboard] | None = None) -> list[PanelQuery]:
    """Every InfluxQL target of every panel, with what the panel expects back."""
    out = []
    for name, d in (dashboards or build_dashboards()).items():
        names = tuple(v.name for v in _variables(d))
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
        for v in _variables(d):
            if v.type_val == "query" and isinstance(v.query, str):
                out.append((name, v.name, v.query))
    return out


if __name__ == "__main__":  # pragma: no cover
    for path in write_all():
        print(path)
