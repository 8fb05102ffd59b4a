"""Core sub-commands: inventory check, spool stats, ship."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from netready.cli import fail
from netready.cli.output import format_option, print_json
from netready.errors import NetreadyError

if TYPE_CHECKING:
    from netready.spool import Spool

inventory_option = click.option(
    "--inventory",
    "-i",
    "inventory_path",
    default="site_inventory.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The estate's site inventory.",
)


@click.group()
def inventory() -> None:
    """Check a site inventory file."""


@inventory.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@format_option
def inventory_check(file: str, fmt: str) -> None:
    """Validate FILE; print one line per problem (file:line:col: field: what) and exit 2."""
    from netready.inventory import load

    try:
        inv = load(file, check_targets=True)
    except NetreadyError as e:
        raise fail(e) from None
    if fmt == "json":
        print_json(
            {
                "file": file,
                "ok": True,
                "sites": len(inv.sites),
                "store": inv.store.kind,
                "tech": {
                    t: sum(1 for s in inv.sites if s.link.tech == t)
                    for t in sorted({s.link.tech for s in inv.sites})
                },
            }
        )
    else:
        techs = ", ".join(
            f"{t} {sum(1 for s in inv.sites if s.link.tech == t)}"
            for t in sorted({s.link.tech for s in inv.sites})
        )
        click.echo(f"{file}: ok: {len(inv.sites)} sites ({techs}); store {inv.store.kind}")


@click.group()
def spool() -> None:
    """Inspect the local spool."""


def _open_spool(inventory_path: str, spool_path: str | None, **how: bool) -> Spool:
    from netready.agent import open_spool
    from netready.inventory import load

    return open_spool(load(inventory_path), spool_path, **how)


@spool.command("stats")
@inventory_option
@click.option("--spool", "spool_path", default=None, help="Spool file (default: agent.spool_path).")
@format_option
def spool_stats(inventory_path: str, spool_path: str | None, fmt: str) -> None:
    """Pending, shipped, dead-lettered and dropped records.

    Read-only: works while the agent runs (it takes no lock and writes nothing).
    """
    try:
        with _open_spool(inventory_path, spool_path, readonly=True) as sp:
            st = sp.stats()
            dead = sp.dead_letters()[-5:]
    except NetreadyError as e:
        raise fail(e) from None
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


@click.command("ship")
@inventory_option
@click.option("--spool", "spool_path", default=None, help="Spool file (default: agent.spool_path).")
@click.option("--timeout", default=60.0, show_default=True, help="Give up after this many seconds.")
@click.option("--batch-size", default=None, type=click.IntRange(1, 100_000))
def ship(
    inventory_path: str, spool_path: str | None, timeout: float, batch_size: int | None
) -> None:
    """Ship spooled records to the central store now (exit 1 if some remain).

    Refuses (exit 1) while an agent or another `netready ship` holds the spool: one writer
    per spool, so no record is sent twice by two shippers.
    """
    from netready.influx import writer_for
    from netready.inventory import load
    from netready.shipper import Shipper

    try:
        inv = load(inventory_path)
        with _open_spool(inventory_path, spool_path, exclusive=True) as sp:
            if inv.store.kind == "embedded":
                click.echo("store is embedded: nothing to ship", err=True)
                return
            with writer_for(inv.store) as w:
                res = Shipper(sp, w, batch_size or inv.agent.batch_size).drain(
                    deadline=time.monotonic() + timeout
                )
            left = sp.stats().pending
    except NetreadyError as e:
        raise fail(e) from None
    click.echo(
        f"shipped {res.shipped}, dead-lettered {res.dead_lettered}, pending {left}"
        f" ({res.seconds:.1f} s)",
        err=True,
    )
    if left:
        raise click.ClickException(res.error or f"{left} records still pending")
