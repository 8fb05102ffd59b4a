"""``netready report`` and ``netready assess``: parse, call the model, render or write back.

Exit codes (both commands): 0 done (and every ``--site`` named is READY); 1 runtime failure
(store unreachable, query failed); 2 bad input (inventory, options); 3 a site named with
``--site`` is not READY (MARGINAL, NOT READY, STALE or NO DATA).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from netready.cli import fail, output
from netready.errors import ConfigError, NetreadyError
from netready.records import Record

EXIT_NOT_READY = 3
VERDICT_CODE = {"READY": 0, "MARGINAL": 1, "NOT READY": 2, "STALE": 3, "NO DATA": 4}


def parse_now(text: str | None) -> int:
    """``--now``: ISO 8601 (naive = UTC) or epoch milliseconds; default the current time."""
    if not text:
        return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {text!r}: use ISO 8601 (2026-11-20T17:00Z) or epoch ms") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _options(f: Any) -> Any:
    from netready.rubric import DEFAULT_PROFILE, PROFILES

    opts = [
        click.option(
            "--inventory",
            "inventory",
            default="site_inventory.yaml",
            show_default=True,
            type=click.Path(dir_okay=False),
            help="Site inventory (store, sites).",
        ),
        click.option(
            "--spool",
            type=click.Path(dir_okay=False),
            default=None,
            help="Embedded store to read (default: the inventory's agent.spool_path). "
            "Ignored when the inventory configures InfluxDB.",
        ),
        click.option(
            "--site",
            "sites",
            multiple=True,
            metavar="ODS",
            help="Only this site (repeatable). Exit 3 if one is not READY.",
        ),
        click.option(
            "--icb", "icbs", multiple=True, metavar="CODE", help="Only this ICB (repeatable)."
        ),
        click.option(
            "--since",
            default="14d",
            show_default=True,
            help="Window back from --now: 14d, 36h, 2w.",
        ),
        click.option(
            "--profile",
            type=click.Choice(sorted(PROFILES)),
            default=DEFAULT_PROFILE,
            show_default=True,
            help="What the link is judged for (docs/reports.md).",
        ),
        click.option(
            "--now",
            "now",
            default=None,
            metavar="TIME",
            help="End of the window (ISO 8601 or epoch ms); default now. For tests.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build(
    inventory: str,
    spool: str | None,
    sites: tuple[str, ...],
    icbs: tuple[str, ...],
    since: str,
    profile: str,
    now: str | None,
) -> Any:
    """Load the inventory, open the store, assess the selected sites. Returns the Estate."""
    from netready.reports import readiness
    from netready.reports.query import open_store

    from netready import inventory as inv_mod

    try:
        window = readiness.Window(parse_now(now), readiness.parse_since(since))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    inv = inv_mod.load(inventory)
    selected = readiness.select_sites(inv, sites, icbs)
    if not selected:
        raise ConfigError(f"no sites in {inventory} match --icb {' '.join(icbs)}")
    spool_path = spool or inv.agent.spool_path
    store, name = open_store(inv.store, spool_path)
    try:
        return readiness.assess_estate(store, selected, profile, window, name)
    finally:
        store.close()


def _exit_for(estate: Any, sites: tuple[str, ...]) -> int:
    if sites and any(r.verdict != "READY" for r in estate.sites):
        return EXIT_NOT_READY
    return 0


@click.command("report")
@_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "md", "html"]),
    default="table",
    show_default=True,
    help="table (rich, terminal), json (schema 1, docs/reports.md), csv, md, html "
    "(one self-contained offline file with charts).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the report here instead of stdout (html: the path is printed on stderr).",
)
def report(
    inventory: str,
    spool: str | None,
    sites: tuple[str, ...],
    icbs: tuple[str, ...],
    since: str,
    profile: str,
    now: str | None,
    fmt: str,
    out: str | None,
) -> None:
    """Readiness report: which sites can run video clinics, how many at once, copper vs fibre,
    what to upgrade first.

    Reads InfluxDB when the inventory configures it, otherwise the embedded store (the spool).
    Exit codes: 0 ok; 1 store failure; 2 bad input; 3 a --site named is not READY.
    """
    from netready.reports import render

    try:
        estate = build(inventory, spool, sites, icbs, since, profile, now)
    except NetreadyError as e:
        raise fail(e) from None
    if fmt == "table" and out is None:
        from rich.console import Console

        con = Console()
        if not con.is_terminal:
            con = Console(width=180)  # piped: do not squeeze the table into 80 columns
        render.render_table(estate, con)
    else:
        text = render.render(estate, fmt)
        if out:
            try:
                Path(out).write_text(text, encoding="utf-8")
            except OSError as e:
                raise fail(ConfigError(f"--out {out}: cannot write: {e.strerror}")) from None
            click.echo(f"wrote {fmt} report to {Path(out).resolve()}", err=True)
        else:
            click.echo(text, nl=False)
    sys.exit(_exit_for(estate, sites))


def readiness_records(estate: Any) -> list[Record]:
    """One ``readiness`` record per site, stamped at the end of the window."""
    recs = []
    for r in estate.sites:
        c = r.confidence
        bad = [x.text for x in r.reasons if x.band in ("not_ready", "marginal", "no_data")]
        recs.append(
            Record(
                "readiness",
                {
                    "site": r.ods,
                    "icb": r.icb,
                    "tech": r.declared_tech,
                    "profile": r.profile,
                    "detected_tech": r.detected_tech,
                },
                {
                    "verdict": r.verdict,
                    "verdict_code": VERDICT_CODE[r.verdict],
                    "assessed": r.assessed,
                    "ready": r.verdict == "READY",
                    "capacity_calls": r.capacity_calls,
                    "capacity": r.capacity_calls,  # the dashboards' name
                    "lat": r.lat,
                    "lon": r.lon,
                    "planned_clinics": r.planned_clinics,
                    "down_p10_mbps": r.down_p10_mbps,
                    "up_p10_mbps": r.up_p10_mbps,
                    "rtt_ms": r.rtt_ms,
                    "jitter_ms": r.jitter_ms,
                    "loss_pct": r.loss_pct,
                    "mos": r.mos,
                    "ct_minutes": r.ct_minutes,
                    "availability_pct": r.availability_pct,
                    "confidence": c.level,
                    "windows": c.windows,
                    "excluded": sum(c.excluded.values()),
                    "reasons": " | ".join(bad)[:1000] or "all gates met",
                    "window_s": float(estate.since_s),
                },
                estate.now_ms,
            )
        )
    return recs


@click.command("assess")
@_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="What to print: a summary, or the records written as JSON.",
)
@click.option("--dry-run", is_flag=True, help="Compute and print; write nothing.")
def assess(
    inventory: str,
    spool: str | None,
    sites: tuple[str, ...],
    icbs: tuple[str, ...],
    since: str,
    profile: str,
    now: str | None,
    fmt: str,
    dry_run: bool,
) -> None:
    """Write 'readiness' records (verdict, capacity, figures per site) back to the store, so
    Grafana can show readiness over time. Run it from cron, e.g. nightly.

    Embedded store: into the spool's points table; InfluxDB: through its write API.
    Exit codes as for `netready report` (3: a --site named is not READY).
    """

    from netready import inventory as inv_mod

    try:
        estate = build(inventory, spool, sites, icbs, since, profile, now)
        recs = readiness_records(estate)
        if not dry_run:
            inv = inv_mod.load(inventory)
            write_records(inv, spool or inv.agent.spool_path, recs)
    except NetreadyError as e:
        raise fail(e) from None
    if fmt == "json":
        output.print_records(recs, "json")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in estate.counts().items())
        verb = "would write" if dry_run else "wrote"
        click.echo(
            f"{verb} {len(recs)} readiness records ({estate.profile}) to {estate.store}: {counts}"
        )
    sys.exit(_exit_for(estate, sites))


def write_records(inv: Any, spool_path: str, recs: list[Record]) -> None:
    """Embedded: into the spool (points table); InfluxDB: the configured writer."""
    if inv.store.kind == "embedded":
        from netready.spool import Spool

        a = inv.agent
        with Spool(
            spool_path,
            ship=False,
            embedded=True,
            max_bytes=int(a.spool_max_mb * 2**20),
            max_age_s=a.spool_max_age_days * 86400,
        ) as sp:
            sp.enqueue(recs)
        return
    from netready.influx import writer_for

    w = writer_for(inv.store)
    try:
        w.write(recs)
    finally:
        w.close()
