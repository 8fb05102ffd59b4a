"""``netready report`` and ``netready assess``: parse, assess (``reports.assess``), render or
write back.

Exit codes (both commands): 0 done (and every ``--site`` named is READY); 1 runtime failure
(store unreachable, query failed); 2 bad input (inventory, options); 3 a site named with
``--site`` is not READY (MARGINAL, NOT READY, STALE or NO DATA).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netready.cli.base import Command
from netready.cli.options import inventory_option, inventory_source, spool_option
from netready.cli.output import format_option, print_records
from netready.errors import ConfigError

if TYPE_CHECKING:
    from netready.reports.assess import Selection

EXIT_NOT_READY = 3

#: The report's formats: its own renderers (reports/render.py), not record printers.
REPORT_FORMATS = ("table", "json", "csv", "md", "html", "pdf")


def _selection(f: Any) -> Any:
    """The options ``report`` and ``assess`` share (where the data is, what to assess),
    handed to the command as one ``sel: reports.assess.Selection``."""
    from netready.reports.assess import ALL_PROFILES, Selection
    from netready.rubric import DEFAULT_PROFILE, PROFILES

    @functools.wraps(f)
    def command(inventory_path: str, spool_path: str | None, **kw: Any) -> Any:
        sel = Selection(
            inventory_path,
            spool_path,
            *(kw.pop(k) for k in ("sites", "icbs", "since", "profile", "now")),
        )
        return f(sel=sel, **kw)

    opts = [
        inventory_option(help="Site inventory (store, sites)."),
        spool_option(
            help="Embedded store to read (default: the inventory's agent.spool_path). "
            "Ignored when the inventory configures InfluxDB."
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
            type=click.Choice([*sorted(PROFILES), ALL_PROFILES]),
            default=DEFAULT_PROFILE,
            show_default=True,
            help="What the link is judged for (docs/reports.md). all: every site graded for "
            f"every profile in one reading of the store (the rest is {DEFAULT_PROFILE}'s).",
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
        command = o(command)
    return command


@click.command("report", cls=Command)
@_selection
@format_option(
    choices=REPORT_FORMATS,
    help="table (rich, terminal), json (schema 1, docs/reports.md), csv, md, html "
    "(one self-contained offline file with charts), pdf (the same for print, A4 landscape, "
    "by headless Chromium; needs --out).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the report here instead of stdout (the path is printed on stderr). "
    "Required for pdf.",
)
@click.option(
    "--history-weeks",
    default=8,
    show_default=True,
    type=click.IntRange(0, 104),
    help="Weeks of verdict history (from the readiness records `netready assess` writes) "
    "and what changed; 0: none.",
)
def report(sel: Selection, fmt: str, out: str | None, history_weeks: int) -> None:
    """Readiness report: which sites can run video clinics, how many at once, copper vs fibre,
    what to upgrade first.

    Reads InfluxDB when the inventory configures it, otherwise the embedded store (the spool).
    Exit codes: 0 ok; 1 store failure; 2 bad input; 3 a --site named is not READY.
    """
    from netready.reports import assess, render

    if fmt == "pdf" and out is None:
        raise ConfigError("--format pdf writes a file: give --out FILE.pdf")
    # the page formats show each site's history by day (reports/trends.py)
    estate = assess.build(
        dataclasses.replace(sel, trends=fmt in ("html", "pdf"), history_weeks=history_weeks)
    )
    # Say what was read (on stderr: stdout is the report), so a report run from a checkout
    # is not mistaken for the estate's.
    click.echo(f"reading {sel.inventory} ({inventory_source()}); store {estate.store}", err=True)
    if fmt == "table" and out is None:
        from rich.console import Console

        con = Console()
        if not con.is_terminal:
            con = Console(width=180)  # piped: do not squeeze the table into 80 columns
        render.render_table(estate, con)
    elif fmt == "pdf":
        from netready.reports.screenshot import print_pdf

        assert out is not None
        print_pdf(render.render_html(estate, for_print=True), Path(out))
        click.echo(f"wrote pdf report to {Path(out).resolve()}", err=True)
    else:
        text = render.render(estate, fmt)
        if out:
            try:
                Path(out).write_text(text, encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"--out {out}: cannot write: {e.strerror}") from None
            click.echo(f"wrote {fmt} report to {Path(out).resolve()}", err=True)
        else:
            click.echo(text, nl=False)
    sys.exit(EXIT_NOT_READY if assess.not_ready(estate, sel) else 0)


@click.command("assess", cls=Command)
@_selection
@format_option(help="What to print: a summary, or the records written as JSON.")
@click.option("--dry-run", is_flag=True, help="Compute and print; write nothing.")
def assess(sel: Selection, fmt: str, dry_run: bool) -> None:
    """Write 'readiness' records (verdict, capacity, figures per site) back to the store, so
    Grafana can show readiness over time. Run it from cron, e.g. nightly.

    Embedded store: into the spool's points table; InfluxDB: through its write API.
    Exit codes as for `netready report` (3: a --site named is not READY).
    """
    from netready.reports import assess as assessment

    estate, recs = assessment.assess(sel, dry_run=dry_run)
    if fmt == "json":
        print_records(recs, "json")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in estate.counts().items())
        verb = "would write" if dry_run else "wrote"
        which = "all profiles" if estate.by_profile else estate.profile
        click.echo(f"{verb} {len(recs)} readiness records ({which}) to {estate.store}: {counts}")
    sys.exit(EXIT_NOT_READY if assessment.not_ready(estate, sel) else 0)
