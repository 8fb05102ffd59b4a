"""The names Grafana knows netready's objects by: data source, folder, provider, dashboard uids.

The dashboards' ``$ds`` variable defaults to ``DATASOURCE_UID``, which the provisioning files
and ``netready dashboards push`` create.
"""

from __future__ import annotations

#: The data source every panel uses (through the ``$ds`` variable).
DATASOURCE_UID = "netready-influxdb"
DATASOURCE_NAME = "netready InfluxDB"
DATASOURCE_TYPE = "influxdb"
FOLDER_UID = "netready"
FOLDER_TITLE = "netready"
DATABASE = "netready"
#: Where the dashboard provider reads the JSON files on the Grafana host.
PROVIDER_PATH = "/var/lib/grafana/dashboards/netready"

UID_ESTATE = "netready-estate"
UID_SITE = "netready-site"
UID_AGENT = "netready-agent"
