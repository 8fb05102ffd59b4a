"""The Grafana Foundation SDK, imported once for every module of ``dashboards/``.

Pinned ``grafana-foundation-sdk==0.0.21`` (an unpinned install picks an old epoch-numbered
build). The SDK warns at import that dashboard v2 is preferred; file provisioning and
``/api/dashboards/db`` take the v1 JSON model built here, so the warning is silenced here only.
"""

from __future__ import annotations

import warnings

from netready.optional import require

require("grafana_foundation_sdk", "building the Grafana dashboards")
with warnings.catch_warnings():
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

#: Any panel builder the dashboards place (rows are ``db.Row``).
PanelBuilder = cogbuilder.Builder[dm.Panel]

__all__ = [
    "JSONEncoder",
    "PanelBuilder",
    "barchart",
    "cb",
    "cm",
    "cogbuilder",
    "cogruntime",
    "cogvariants",
    "db",
    "dm",
    "geomap",
    "gm",
    "piechart",
    "pm",
    "stat",
    "table",
    "timeseries",
]
