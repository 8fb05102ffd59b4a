"""Which Grafana the generated files are for: the oldest release and its dashboard schema.

Grafana stores a ``schemaVersion`` in every dashboard JSON and, on load, runs each migration
newer than it (``public/app/features/dashboard/state/DashboardMigrator.ts``; since Grafana 12
also on the server, ``apps/dashboard/pkg/migration/schemaversion/vNN.go``). The dashboards are
generated for the schema of the oldest supported Grafana, ``MIN_GRAFANA``; the tests check that
every later migration leaves them unchanged, so newer Grafanas load exactly what was generated.

``SCHEMA_HISTORY`` is the published version history from the oldest supported schema to the one
the SDK writes: what each migration does, where it was introduced, and the first Grafana
release that ran it when that was verified (``None``: not pinned down, only its order is known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Oldest Grafana the generated dashboards, provisioning files and ``push`` support.
MIN_GRAFANA = (10, 0)


@dataclass(frozen=True)
class Schema:
    version: int
    first_release: tuple[int, int] | None
    migrates: str
    source: str


SCHEMA_HISTORY: tuple[Schema, ...] = (
    Schema(
        38,
        (9, 4),
        "table panels: custom.displayMode -> custom.cellOptions {type, mode}",
        "grafana/grafana#59363 (the v38 migration, per #99778, which ports it to the backend); "
        "CHANGELOG section 9.4.0-beta1 (2023-01-30) lists #59363",
    ),
    Schema(
        39,
        (10, 3),
        "timeSeriesTable transformation: options.refIdToStat {A: stat} -> {A: {stat}}",
        "grafana/grafana#76801, merged 2023-10 (ported as #99631); #77841: 'changes that were "
        "merged in 10.3'",
    ),
    Schema(
        40,
        None,
        "dashboard.refresh: any non-string value -> '' (no auto-refresh)",
        "apps/dashboard/pkg/migration/schemaversion/v40.go",
    ),
    Schema(
        41,
        None,
        "timepicker.time_options removed",
        "grafana/grafana#100135, merged 2025-02 (backend: #100554)",
    ),
    Schema(
        42,
        None,
        "field overrides custom.hideFrom {viz: true} -> also tooltip: true",
        "grafana/grafana#110517, 2025-09 (backend v42.go)",
    ),
)

#: The schema every generated dashboard carries: the newest one ``MIN_GRAFANA`` knows.
SCHEMA_VERSION = max(
    s.version for s in SCHEMA_HISTORY if s.first_release and s.first_release <= MIN_GRAFANA
)


def parse_version(v: str) -> tuple[int, int] | None:
    """``"11.3.1"`` / ``"v10.0.0-pre"`` -> ``(11, 3)``; None when it is not a version."""
    m = re.match(r"^v?(\d+)\.(\d+)", v.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None
