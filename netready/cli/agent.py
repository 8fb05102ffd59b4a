"""``netready-agent`` (and the repository's ``agent.py``): the site agent's command line.
The agent itself is ``netready.agent``; this parses options and calls ``agent.run``."""

from __future__ import annotations

import sys

import click

from netready import __version__
from netready.cli.base import Command
from netready.cli.options import (
    HELP_OPTIONS,
    inventory_option,
    log_options,
    spool_option,
    state_dir_option,
)

EXIT_CODES = """\b
Exit codes:
  0  ok (and after SIGTERM/SIGINT)
  1  runtime failure: with --once, a task raised, a record could not be
     committed, the spool was corrupt (quarantined) or shipping did not
     finish; another agent or `netready ship` holds the spool; records still
     held in memory at exit; --config-url: no usable slice from the server
     and no last good copy
  2  bad input: inventory, --site, options (systemd does not restart: see
     RestartPreventExitStatus in deploy/netready-agent.service)"""


@click.command("netready-agent", cls=Command, epilog=EXIT_CODES, context_settings=HELP_OPTIONS)
@inventory_option
@click.option(
    "--site",
    "site_ods",
    default=None,
    metavar="ODS",
    help="ODS code of this site (required if the inventory has more than one site).",
)
@click.option("--once", is_flag=True, help="Run every task once, ship, and exit.")
@spool_option
@state_dir_option
@click.option("--only", default=None, help="Comma-separated probe/collector/target names to run.")
@click.option("--force", is_flag=True, help="Run heavy tests even in clinic hours or over budget.")
@click.option(
    "--ship-timeout",
    default=60.0,
    show_default=True,
    help="--once: give up shipping after this many seconds (records stay spooled).",
)
@click.option(
    "--config-url",
    default=None,
    metavar="URL",
    help="Follow this config server (`netready config serve`) instead of --inventory: "
    "fetch this site's signed slice from URL/sites/ODS, keep the last good copy in "
    "--state-dir, apply changes without a restart (docs/fleet.md). Needs --site and "
    "--config-key.",
)
@click.option(
    "--config-key",
    default=None,
    type=click.Path(dir_okay=False),
    help="The config server's ed25519 public key (a file of one base64 line, "
    "`netready config keygen`): a slice not signed by it is refused.",
)
@click.option(
    "--config-ca",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="PEM CA bundle that signed the config server's certificate (default: the system's).",
)
@click.option(
    "--textfile",
    default=None,
    metavar="PATH",
    help="Also write the agent record's fields as gauges to this node_exporter textfile "
    "(a .prom file in its --collector.textfile.directory; atomic rename; the prometheus extra).",
)
@log_options(default_format="json")
@click.version_option(__version__, prog_name="netready-agent")
def agent_command(
    inventory_path: str,
    site_ods: str | None,
    once: bool,
    spool_path: str | None,
    state_dir: str,
    only: str | None,
    force: bool,
    ship_timeout: float,
    config_url: str | None,
    config_key: str | None,
    config_ca: str | None,
    textfile: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """The netready site agent: measure this site's link, spool, ship to the central store.

    One agent per spool: the spool stays locked while it runs. Failures are logged at
    WARNING or above with their reason; under systemd each line carries its journald
    priority, so `journalctl -u netready-agent -p warning` lists them.
    """
    from netready import agent, logs

    logs.setup(log_format, log_level)
    problems = agent.run(
        inventory_path,
        site_ods,
        once=once,
        spool_path=spool_path,
        state_dir=state_dir,
        only=only,
        force=force,
        ship_timeout_s=ship_timeout,
        config_url=config_url,
        config_key=config_key,
        config_ca=config_ca,
        textfile=textfile,
    )
    if problems:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """The ``netready-agent`` console script."""
    agent_command.main(args=argv, prog_name="netready-agent")


if __name__ == "__main__":
    main()
