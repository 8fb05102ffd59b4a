"""The names Grafana knows netready's objects by: data sources, folder, provider, dashboards.

Two data sources, one per InfluxDB API, each with its own uid and name, so that provisioning
both files (or pushing one and provisioning the other) gives two data sources rather than one
silently overwriting the other. The dashboards' ``$ds`` variable lists the InfluxDB data sources
whose name starts ``netready InfluxDB`` and defaults to the 1.x one; Grafana selects the first
listed one when the default is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netready.errors import ConfigError

DATASOURCE_TYPE = "influxdb"
#: InfluxDB 1.x, InfluxQL with user/password (the dashboards' default).
DATASOURCE_UID = "netready-influxdb"
DATASOURCE_NAME = "netready InfluxDB"
#: InfluxDB 2.x / 3.x through their v1-compatible InfluxQL API, with a token.
DATASOURCE_V2_UID = "netready-influxdb-2x-3x"
DATASOURCE_V2_NAME = "netready InfluxDB 2.x/3.x"
#: The ``$ds`` variable's filter: both data sources above, no other InfluxDB.
DATASOURCE_REGEX = "/^netready InfluxDB/"

FOLDER_UID = "netready"
FOLDER_TITLE = "netready"
DATABASE = "netready"
#: Where the dashboard provider reads the JSON files on the Grafana host.
PROVIDER_PATH = "/var/lib/grafana/dashboards/netready"

UID_ESTATE = "netready-estate"
UID_SITE = "netready-site"
UID_AGENT = "netready-agent"


def folder_uid_for(title: str) -> str:
    """A stable uid for a folder title (``netready`` keeps the provisioning uid)."""
    if title == FOLDER_TITLE:
        return FOLDER_UID
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
    return slug or FOLDER_UID


@dataclass(frozen=True)
class BuildOptions:
    """What ``netready dashboards build --database NAME --folder TITLE`` changes.

    The defaults are what the committed files are built with (``build --check``).
    """

    database: str = DATABASE
    folder: str = FOLDER_TITLE

    def __post_init__(self) -> None:
        if not self.database.strip() or any(c in self.database for c in "\"'\n"):
            raise ConfigError(f"--database: not a database name: {self.database!r}")
        if not self.folder.strip() or "\n" in self.folder:
            raise ConfigError(f"--folder: not a folder title: {self.folder!r}")

    @property
    def folder_uid(self) -> str:
        return folder_uid_for(self.folder)
