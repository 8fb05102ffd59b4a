"""``netready store init`` and ``netready store backfill``: the central InfluxDB's retention
policies and downsampling (``netready/retention.py``)."""

from __future__ import annotations

import time
from typing import Any

import click

from netready.cli.base import Group
from netready.cli.options import inventory_option
from netready.cli.output import format_option, print_json


def _plan_options(f: Any) -> Any:
    opts = [
        click.option("--database", default=None, help="Database (default: the inventory's)."),
        click.option(
            "--raw-rp",
            default=None,
            help="Raw retention policy, made the default "
            "(default: the inventory's store.retention_policy, else raw).",
        ),
        click.option(
            "--raw-duration",
            default="30d",
            show_default=True,
            help="How long raw points are kept (InfluxQL units: h, d, w).",
        ),
        click.option(
            "--hourly-rp",
            default="hourly",
            show_default=True,
            help="Retention policy of the hourly downsampled series.",
        ),
        click.option(
            "--hourly-duration",
            default="730d",
            show_default=True,
            help="How long the hourly series are kept.",
        ),
        click.option(
            "--resample-for",
            default="6h",
            show_default=True,
            help="Each hourly run recomputes this much of the past (late points).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _plan(kw: dict[str, Any]) -> dict[str, str]:
    keys = ("raw_rp", "raw_duration", "hourly_rp", "hourly_duration", "resample_for")
    return {k: kw[k] for k in keys if kw.get(k) is not None}


@click.group(cls=Group)
def store() -> None:
    """Set up the central InfluxDB (1.x): retention and hourly downsampling."""


@store.command("init")
@inventory_option
@_plan_options
@format_option
def store_init(inventory_path: str, database: str | None, fmt: str, **kw: Any) -> None:
    """Create the database, the raw and hourly retention policies and the continuous queries
    that downsample rtt, throughput and media every hour. Idempotent: a second run changes
    nothing and says so. (InfluxDB 2.x/3.x: see docs/scaling.md for buckets and tasks.)"""
    from netready.retention import store_init as run

    changes = run(inventory_path, database, **_plan(kw))
    changed = [c for c in changes if c.action != "unchanged"]
    if fmt == "json":
        print_json({"changed": len(changed), "changes": [vars(c) for c in changes]})
        return
    for c in changes:
        click.echo(str(c))
    click.echo(
        "nothing changed: already set up" if not changed else f"{len(changed)} changed", err=True
    )


@store.command("backfill")
@inventory_option
@_plan_options
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Downsample this far back from now (14d, 36h, 2w).",
)
@format_option
def store_backfill(
    inventory_path: str, database: str | None, since: str, fmt: str, **kw: Any
) -> None:
    """Run the hourly downsampling over the past (after `store init` on a database that
    already holds points, or after an outage longer than --resample-for)."""
    from rich.console import Console
    from rich.progress import Progress

    from netready.errors import ConfigError
    from netready.reports.readiness import parse_since
    from netready.retention import store_backfill as run

    try:
        span = parse_since(since)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    now = int(time.time() * 1000)
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("downsampling", total=None)
        n = run(
            inventory_path,
            now - int(span.total_seconds() * 1000),
            now,
            database,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            **_plan(kw),
        )
    if fmt == "json":
        print_json({"hourly_points": n, "since": since})
        return
    click.echo(f"backfilled {n} hourly points over the last {since}", err=True)
