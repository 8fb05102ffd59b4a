"""The ``netready`` command, and the only package that imports click.

A command parses its options, calls one library function and prints; a ``NetreadyError`` from
the library becomes one line on stderr and the error's exit code (``base.Command``). Data goes
to stdout, diagnostics to stderr. One module per command family:

- ``core``: ``inventory check|slice|import-ods``, ``spool stats``, ``ship``
- ``config``: ``config keygen``, ``config serve`` (the fleet's configuration server)
- ``report``: ``report``, ``assess``;  ``lab``: ``lab ...``;  ``dashboards``: ``dashboards ...``
- ``store``: ``store init``, ``store backfill``;  ``servers``: ``reflector``, ``responder``;  ``serve``: ``serve``;  ``pcap``: ``pcap analyse``
- ``agent``: ``netready-agent`` (a script of its own)
- ``base`` (command classes, the lazy group), ``options`` (shared options), ``output`` (printers)

Commands are imported lazily, so a slow import (scapy, matplotlib) costs only the command that
needs it.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from netready import __version__
from netready.cli.base import LazyGroup, fail
from netready.cli.options import HELP_OPTIONS
from netready.errors import NetreadyError

#: command name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "inventory": "netready.cli.core:inventory",
    "spool": "netready.cli.core:spool",
    "ship": "netready.cli.core:ship",
    "probe": "netready.cli.plugins:probe",
    "reflector": "netready.cli.servers:reflector_command",
    "report": "netready.cli.report:report",
    "assess": "netready.cli.report:assess",
    "lab": "netready.cli.lab:lab",
    "collect": "netready.cli.plugins:collect",
    "pcap": "netready.cli.pcap:pcap_command",
    "responder": "netready.cli.servers:responder_command",
    "serve": "netready.cli.serve:serve_command",
    "dashboards": "netready.cli.dashboards:dashboards",
    "store": "netready.cli.store:store",
    "config": "netready.cli.config:config",
}

HELP = {
    "inventory": "Check, slice or import a site inventory file.",
    "spool": "Inspect the local spool (pending, shipped, dead-lettered, dropped).",
    "ship": "Ship spooled records to the central store now.",
    "probe": "Run one probe by hand (`netready probe --help` lists them).",
    "reflector": "Run the UDP reflector / media responder that probes measure against.",
    "report": "Readiness report: which sites can run video clinics.",
    "assess": "Write readiness verdicts back to the store for Grafana.",
    "lab": "Emulated copper and fibre sites in network namespaces.",
    "collect": "Run one collector by hand: a site router, a capture file.",
    "pcap": "Analyse RTP streams in a captured call.",
    "serve": "Run the self-hosted speed-test endpoint.",
    "responder": "Run the media responder (far end of the video-call probe).",
    "dashboards": "Build and push the Grafana dashboards.",
    "store": "Set up the central InfluxDB: retention policies and hourly downsampling.",
    "config": "Fleet configuration: publish signed per-site slices of the inventory.",
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    help_lines=HELP,
    context_settings=HELP_OPTIONS,
)
@click.version_option(__version__, prog_name="netready")
def cli() -> None:
    """netready: can this NHS site's network carry video consultations?

    Exit codes: 0 ok; 1 runtime failure (store, probe); 2 bad input (inventory, options);
    3 report: a named site is not ready (see `netready report --help`).
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point: never shows a traceback for a ``NetreadyError``."""
    try:
        return cli.main(args=argv, prog_name="netready", standalone_mode=True)
    except NetreadyError as e:  # pragma: no cover - commands translate already
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)


__all__ = ["COMMANDS", "HELP", "cli", "fail", "main"]
