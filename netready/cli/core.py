"""``netready inventory check``, ``netready spool stats`` and ``netready ship``. (``probe`` and
``collect`` are generated from the plugin declarations: ``netready/cli/plugins.py``.)"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click

from netready.cli.base import Command, Group
from netready.cli.options import inventory_option, secret_option, spool_option
from netready.cli.output import format_option, print_json


@click.group(cls=Group)
def inventory() -> None:
    """Check a site inventory file, slice it per site, import sites from ODS."""


@inventory.command("check")
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@format_option(
    help="table: one line per problem on stderr; json: the result, problems included, on stdout."
)
def inventory_check(file: str | None, fmt: str) -> None:
    """Validate FILE; print one line per problem (file:line:col: field: what) and exit 2.

    FILE defaults as --inventory does elsewhere ($NETREADY_INVENTORY, else
    /etc/netready/site_inventory.yaml, else ./site_inventory.yaml). With --format json the
    problems are JSON on stdout ({"ok": false, "problems": [{"file", "line", "col", "field",
    "message", "text"}]}), still exit 2.
    """
    from netready import registry
    from netready.cli.options import default_inventory
    from netready.errors import InventoryError
    from netready.inventory import load

    file = file or default_inventory()[0]
    try:
        inv = load(file, spec_for=registry.spec_for)
    except InventoryError as e:
        if fmt != "json":
            raise
        print_json({"file": file, "ok": False, "problems": [problem(p) for p in e.problems]})
        sys.exit(e.exit_code)
    tech = {
        t: sum(1 for s in inv.sites if s.link.tech == t)
        for t in sorted({s.link.tech for s in inv.sites})
    }
    if fmt == "json":
        print_json(
            {
                "file": file,
                "ok": True,
                "sites": len(inv.sites),
                "store": inv.store.kind,
                "tech": tech,
                "problems": [],
            }
        )
    else:
        techs = ", ".join(f"{t} {n}" for t, n in tech.items())
        click.echo(f"{file}: ok: {len(inv.sites)} sites ({techs}); store {inv.store.kind}")


#: ``file:line:col: field: what`` (docs: "one line per problem"); field and position may be absent
_PROBLEM = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?:(?P<field>[\w.\[\]-]+): )?(?P<message>.*)$"
)


def problem(text: str) -> dict[str, Any]:
    """One inventory problem as JSON: its parts where the line has them, and the line."""
    m = _PROBLEM.match(text)
    if m is None:
        file, sep, rest = text.partition(": ")
        return {"file": file if sep else None, "line": None, "col": None, "field": None,
                "message": rest if sep else text, "text": text}  # fmt: skip
    return {
        "file": m["file"],
        "line": int(m["line"]),
        "col": int(m["col"]),
        "field": m["field"],
        "message": m["message"],
        "text": text,
    }


@inventory.command("slice")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--site", "sites", multiple=True, help="ODS code of a site to slice (repeatable).")
@click.option(
    "--all",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Write every site's slice (or those of --site) as DIR/ODS.yaml with its signature "
    "beside it (DIR/ODS.yaml.sig).",
)
@secret_option(
    "--signing-key",
    help="The ed25519 private key (`netready config keygen`) as file:PATH or env:NAME; "
    "needed with --all.",
)
@format_option(help="table: the slice (or a summary line); json: {site, slice} or {files}.")
def inventory_slice(
    file: str, sites: tuple[str, ...], out_dir: str | None, signing_key: str | None, fmt: str
) -> None:
    """Each site's slice of FILE: only that site, its targets and secret references, and
    the store, agent settings and defaults it uses (the same bytes `netready config serve`
    publishes), for estates that distribute files with their own tools (Ansible, Intune).

    With --site X alone the slice goes to stdout (unsigned: a preview).
    """
    from netready.errors import ConfigError

    if out_dir is None:
        if len(sites) != 1:
            raise ConfigError("give one --site ODS (to stdout) or --all DIR")
        from netready.inventory import load, slice_bytes

        text = slice_bytes(load(file), sites[0]).decode()
        if fmt == "json":
            print_json({"site": sites[0], "slice": text})
        else:
            click.echo(text, nl=False)
        return
    if signing_key is None:
        raise ConfigError("--all DIR needs --signing-key (each file is signed)")
    from netready import fleet

    written = fleet.export(file, signing_key, out_dir, list(sites) or None)
    if fmt == "json":
        print_json({"files": [str(p) for p in written]})
        return
    click.echo(f"wrote {len(written) // 2} slices with signatures to {out_dir}", err=True)


@inventory.command("import-ods")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@inventory_option(help="The inventory to merge into (created if it does not exist).")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.option(
    "--today", default=None, metavar="YYYY-MM-DD", help="Judge close dates as of this day."
)
@format_option
def inventory_import_ods(
    csv_file: str, inventory_path: str, dry_run: bool, today: str | None, fmt: str
) -> None:
    """Add or refresh GP practices from the NHS ODS practice file (epraccur.csv: no header
    row). Active practices only; a practice already in the inventory keeps its link, router,
    clinics and comments (only name and ICB are refreshed); closed ones are listed, never
    removed (docs/fleet.md)."""
    import datetime as dt

    from netready import ods
    from netready.errors import ConfigError

    try:
        day = dt.date.fromisoformat(today) if today else None
    except ValueError:
        raise ConfigError(f"--today {today!r}: use YYYY-MM-DD") from None
    s = ods.import_ods(inventory_path, csv_file, today=day, dry_run=dry_run)
    if fmt == "json":
        print_json(s.to_dict())
        return
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{inventory_path}: {verb} {len(s.added)}, refreshed {len(s.refreshed)}, "
        f"unchanged {s.unchanged}; {s.skipped} rows not GP practices"
    )
    if s.closed_in_inventory:
        click.echo(
            f"closed in ODS but still in the inventory: {', '.join(s.closed_in_inventory)}",
            err=True,
        )


@click.group(cls=Group)
def spool() -> None:
    """Inspect the local spool."""


@spool.command("stats")
@inventory_option
@spool_option
@format_option
def spool_stats(inventory_path: str, spool_path: str | None, fmt: str) -> None:
    """Pending, shipped, dead-lettered and dropped records.

    Read-only: works while the agent runs (it takes no lock and writes nothing).
    """
    from netready import agent

    st, dead = agent.spool_stats(inventory_path, spool_path)
    if fmt == "json":
        print_json(st.to_dict())
        return
    ago = (
        f"{(time.time() * 1000 - st.last_ship_ms) / 1000:.0f} s ago" if st.last_ship_ms else "never"
    )
    click.echo(
        f"spool {st.path}\n  pending        {st.pending} ({st.pending_bytes} bytes)\n"
        f"  shipped        {st.shipped}\n  dead-lettered  {st.dead_lettered}\n"
        f"  dropped        {st.dropped} (evicted by quota)\n"
        f"  quarantined    {st.quarantined} (corrupt spools moved aside)\n"
        f"  embedded store {st.points} points\n  last ship      {ago}"
    )
    if st.last_error:
        click.echo(f"  last error     {st.last_error}")
    for line, err in dead:
        click.echo(f"  dead: {line[:80]}  <- {err}")


@click.command("ship", cls=Command)
@inventory_option
@spool_option
@click.option("--timeout", default=60.0, show_default=True, help="Give up after this many seconds.")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1, 100_000),
    help="Records per write (default: the inventory's agent.batch_size).",
)
@format_option(help="table: one summary line on stderr; json: the counts on stdout.")
def ship(
    inventory_path: str, spool_path: str | None, timeout: float, batch_size: int | None, fmt: str
) -> None:
    """Ship spooled records to the central store now (exit 1 if some remain).

    Refuses (exit 1) while an agent or another `netready ship` holds the spool: one writer
    per spool, so no record is sent twice by two shippers.
    """
    from netready import agent

    rep = agent.ship_now(inventory_path, spool_path, timeout, batch_size)
    if rep is None:
        if fmt == "json":
            print_json({"store": "embedded", "shipped": 0, "dead_lettered": 0, "pending": 0})
        else:
            click.echo("store is embedded: nothing to ship", err=True)
        return
    res = rep.drain
    if fmt == "json":
        print_json(
            {
                "store": "remote",
                "shipped": res.shipped,
                "dead_lettered": res.dead_lettered,
                "pending": rep.pending,
                "seconds": round(res.seconds, 3),
                "error": res.error,
            }
        )
    else:
        click.echo(
            f"shipped {res.shipped}, dead-lettered {res.dead_lettered}, pending {rep.pending}"
            f" ({res.seconds:.1f} s)",
            err=True,
        )
    if rep.pending:
        raise click.ClickException(res.error or f"{rep.pending} records still pending")
