"""``netready pcap analyse FILE``: RTP streams in a captured call (``collectors/pcap/``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from netready.cli.base import Group
from netready.cli.output import format_option, print_json, print_table
from netready.collectors import pcap


@click.group("pcap", cls=Group)
def pcap_command() -> None:
    """Analyse RTP streams in a captured call (pcap or pcapng, plain, gzip or zstd)."""


@pcap_command.command("analyse")
@click.argument("file", type=click.Path(dir_okay=False))
@format_option(help="table for people, json (a list of streams) for tools.")
@click.option(
    "--clock",
    multiple=True,
    metavar="PT=HZ",
    help="Clock rate of a payload type, e.g. --clock 96=90000 (repeatable); it overrides "
    "the capture's own SDP (a=rtpmap), then RFC 3551 for static types; other dynamic types "
    "are guessed.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="One-way network delay to assume for the MOS estimate (a capture at one "
    "point cannot measure it; 0 gives a best-case MOS).",
)
@click.option(
    "--min-packets",
    type=click.IntRange(min=2),
    default=2,
    show_default=True,
    help="Ignore streams with fewer RTP packets than this.",
)
@click.option(
    "--max-streams",
    type=click.IntRange(1, 10_000_000),
    default=pcap.MAX_STREAMS,
    show_default=True,
    help="Most streams tracked (about 4 kB each); packets of further streams are counted "
    "and reported, not analysed.",
)
def analyse_command(
    file: str, fmt: str, clock: tuple[str, ...], latency_ms: float, min_packets: int,
    max_streams: int,
) -> None:  # fmt: skip
    """Report loss, jitter (as Wireshark), burst loss, reorder and MOS per RTP stream."""
    rates = pcap.parse_clock(clock)
    size = Path(file).stat().st_size if Path(file).is_file() else 0
    bar: Any = None
    progress = None
    if size > 64 << 20 and sys.stderr.isatty():  # a bar only for a person and a long read
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task(f"reading {Path(file).name}", total=size)
        bar.start()

        def progress(n: int) -> None:
            bar.update(task, completed=n)

    try:
        results = pcap.analyse(file, rates, latency_ms, min_packets, progress, max_streams)
    finally:
        if bar is not None:
            bar.stop()
    if fmt == "json":
        print_json([r.to_json() for r in results])
        if results.note:
            click.echo(f"Warning: {results.note}", err=True)
        return
    if not results:
        click.echo("(no RTP streams found)")
    else:
        print_table(pcap.TABLE_COLUMNS, pcap.table_rows(results), right=range(3, len(pcap.TABLE_COLUMNS)))
        if any(r.clock_source == "guessed" for r in results):
            click.echo("* clock rate guessed for a dynamic payload type; set it with --clock PT=HZ")
        if any(r.clock_source in ("sdp", "event") for r in results):
            click.echo("s clock rate from the capture's SDP; e telephone events (no jitter)")
    if results.note:
        click.echo(f"! {results.note}")
