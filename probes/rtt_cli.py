"""``netready probe rtt``: the rtt probe by hand."""

from __future__ import annotations

import click

from netready.cli.core import run_plugin
from netready.cli.output import format_option


@click.command("rtt")
@click.option(
    "--target",
    required=True,
    help="Reflector HOST:PORT or [IPv6]:PORT (TWAMP-light, default port 862).",
)
@click.option(
    "--duration",
    "duration_s",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds of sending.",
)
@click.option("--rate", "rate_pps", type=float, default=50.0, show_default=True, help="Packets/s.")
@click.option("--size", type=int, default=None, help="UDP payload bytes (>= 41).")
@click.option("--dscp", type=int, default=None, help="DSCP to mark packets with (e.g. 46 for EF).")
@format_option
def rtt_command(
    target: str, duration_s: float, rate_pps: float, size: int | None, dscp: int | None, fmt: str
) -> None:
    """Isochronous UDP round trips: RTT, RFC 3550 jitter, IPDV, loss, reorder (exit 1 on failure)."""
    run_plugin(
        "probe",
        "rtt",
        {
            "target": target,
            "duration_s": duration_s,
            "rate_pps": rate_pps,
            "size": size,
            "dscp": dscp,
        },
        fmt,
    )
