"""``netready dashboards``: build the Grafana JSON and provisioning files, push them to a Grafana.
The work is ``dashboards/build.py`` and ``dashboards/push.py``; this parses and prints."""

from __future__ import annotations

from pathlib import Path

import click

from netready.cli.base import Group
from netready.cli.options import inventory_option
from netready.cli.output import format_option, print_json
from netready.errors import ConfigError


@click.group("dashboards", cls=Group)
def dashboards() -> None:
    """Build and push the Grafana dashboards (estate overview, site detail, agent health).

    See docs/dashboards.md for provisioning them from files instead.
    """


@dashboards.command("build", short_help="Generate the dashboard JSON and provisioning files.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write generated/ and provisioning/ under this folder [default: the dashboards/ package].",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any committed file is stale.")
@click.option(
    "--database",
    default="netready",
    show_default=True,
    help="InfluxDB database (1.x) or DBRP-mapped database name (2.x/3.x) in the data sources.",
)
@click.option(
    "--folder",
    default="netready",
    show_default=True,
    help="Grafana folder title for the dashboards and alert rules.",
)
@format_option(help="table: paths on stdout, a summary on stderr; json: both on stdout.")
def build_command(out_dir: Path | None, check: bool, database: str, folder: str, fmt: str) -> None:
    """Generate the dashboard JSON (generated/*.json) and the provisioning YAML.

    Prints the path of every file written (or, with --check, every stale file) on stdout.
    """
    from netready.dashboards import build

    options = build.BuildOptions(database=database, folder=folder)
    root = out_dir or build.HERE
    total = len(build.build_all())
    if check:
        stale = build.stale_files(root, options)
        if fmt == "json":
            print_json({"root": str(root), "stale": [str(root / rel) for rel in stale],
                        "files": total})  # fmt: skip
        else:
            for rel in stale:
                click.echo(str(root / rel))
        if stale:
            raise click.ClickException(
                f"{len(stale)} generated file(s) are stale: run `netready dashboards build`"
            )
        if fmt != "json":
            click.echo(f"{total} generated files are up to date", err=True)
        return
    try:
        changed = build.write_all(root, options)
    except OSError as e:
        raise ConfigError(f"cannot write under {root}: {e.strerror}") from None
    if fmt == "json":
        print_json({"root": str(root), "written": [str(p) for p in changed],
                    "unchanged": total - len(changed)})  # fmt: skip
        return
    for p in changed:
        click.echo(str(p))
    click.echo(
        f"{len(changed)} file(s) written, {total - len(changed)} unchanged under {root}",
        err=True,
    )


@dashboards.command("push", short_help="Push the dashboards (and the data source) to a Grafana.")
@click.option(
    "--url",
    envvar="GRAFANA_URL",
    required=True,
    show_envvar=True,
    help="Grafana base URL, e.g. https://grafana.example.nhs.uk",
)
@click.option(
    "--token",
    envvar="GRAFANA_TOKEN",
    required=True,
    show_envvar=True,
    help="Grafana service-account token (Editor; Admin to create the data source). "
    "Prefer the environment variable: options show in `ps`.",
)
@click.option(
    "--folder",
    default="netready",
    show_default=True,
    help="Folder title to put the dashboards in ('' for General).",
)
@click.option(
    "--datasource-url",
    default=None,
    help="Create or update the InfluxDB data source (InfluxQL) with this URL.",
)
@click.option(
    "--database",
    default="netready",
    show_default=True,
    help="InfluxDB database (1.x) or DBRP-mapped database name (2.x/3.x).",
)
@click.option(
    "--influx-user",
    envvar="NETREADY_INFLUX_USER",
    show_envvar=True,
    default=None,
    help="InfluxDB 1.x user for the data source.",
)
@click.option(
    "--influx-password",
    envvar="NETREADY_INFLUX_PASSWORD",
    show_envvar=True,
    default=None,
    help="InfluxDB 1.x password for the data source.",
)
@click.option(
    "--influx-token",
    envvar="NETREADY_INFLUX_TOKEN",
    show_envvar=True,
    default=None,
    help="InfluxDB 2.x/3.x token: sent by Grafana as `Authorization: Token ...`.",
)
@inventory_option(
    default=None,
    help="Take the data source URL, database and credentials from this inventory's "
    "store section (explicit options win).",
)
@click.option("--insecure", is_flag=True, help="Do not verify Grafana's TLS certificate.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=10.0,
    show_default=True,
    help="Seconds per HTTP request.",
)
@format_option
def push_command(
    url: str,
    token: str,
    folder: str,
    datasource_url: str | None,
    database: str,
    influx_user: str | None,
    influx_password: str | None,
    influx_token: str | None,
    inventory_path: str | None,
    insecure: bool,
    timeout: float,
    fmt: str,
) -> None:
    """Upsert the dashboards by uid into a folder of a Grafana; create or update the data source.

    Safe to run again: unchanged dashboards are left alone, changed ones overwritten.
    """
    from netready.dashboards.push import datasource_for, push

    ds = datasource_for(
        inventory_path, datasource_url, database, influx_user, influx_password, influx_token
    )
    res = push(
        url, token, folder=folder or None, datasource=ds, timeout=timeout, verify_tls=not insecure
    )
    for w in res.warnings:
        click.echo(f"warning: {w}", err=True)
    if fmt == "json":
        print_json(res.to_dict())
        return
    click.echo(f"Grafana {res.grafana_version} at {res.url}")
    click.echo(f"folder      {res.folder_uid or '(General)'}: {res.folder}")
    click.echo(f"datasource  {res.datasource_uid}: {res.datasource}")
    for d in res.dashboards:
        click.echo(f"dashboard   {d['uid']}: {d['status']}  {d['url']}")
