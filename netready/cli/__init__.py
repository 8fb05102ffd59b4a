"""The ``netready`` command. Commands parse, call one function, and turn ``NetreadyError``
into a one-line message and an exit code. Data goes to stdout, diagnostics to stderr.

Sub-commands live beside the code they drive and are imported lazily, so a slow import
(scapy, matplotlib) costs only the command that needs it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from netready import __version__
from netready.errors import NetreadyError

#: command name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "inventory": "netready.cli.core:inventory",
    "spool": "netready.cli.core:spool",
    "ship": "netready.cli.core:ship",
    "probe": "netready.cli.plugins:probe",
    "reflector": "netready.probes.reflector:reflector_command",
    "report": "netready.reports.cli:report",
    "assess": "netready.reports.cli:assess",
    "lab": "netready.lab.cli:lab",
    "collect": "netready.cli.plugins:collect",
    "pcap": "netready.collectors.pcap:pcap_command",
    "responder": "netready.probes.media_responder:responder_command",
    "serve": "netready.probes.serve:serve_command",
    "dashboards": "netready.dashboards.cli:dashboards",
}

HELP = {
    "inventory": "Check a site inventory file.",
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
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        mod, _, attr = target.partition(":")
        try:
            cmd = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            # Let `netready --help` work even if one part is broken or its extra is missing;
            # running the command says why in one line, whatever options it was given.
            msg = str(e) if isinstance(e, NetreadyError) else f"{cmd_name} is unavailable: {e}"

            @click.command(
                cmd_name,
                help=HELP.get(cmd_name, ""),
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            def _missing() -> None:
                raise click.ClickException(msg)

            return _missing
        return cmd  # type: ignore[no-any-return,unused-ignore]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def fail(e: NetreadyError) -> click.ClickException:
    """Turn a NetreadyError into a ClickException with the error's exit code."""
    exc = click.ClickException(str(e))
    exc.exit_code = e.exit_code  # type: ignore[misc]
    return exc


