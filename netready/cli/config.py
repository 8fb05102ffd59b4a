"""``netready config``: the fleet's configuration server and its signing key.

- ``config keygen``: a new ed25519 key pair (the private key stays with the server; the
  public key is installed with every agent, ``netready-agent --config-key``);
- ``config serve``: publish each site's signed slice of the inventory at ``/sites/ODS``
  (``servers/config.py``; the ``server`` extra, aiohttp). HTTPS with ``--tls-cert``
  and ``--tls-key``; plain HTTP only on loopback or with ``--allow-plain-http`` (the slices
  carry router addresses and circuit ids: without TLS anyone on the path reads them; the
  signature still stops them being changed).

The logic is ``netready/fleet.py`` (docs/fleet.md); this parses options and calls it.
"""

from __future__ import annotations

import click

from netready.cli.base import Command, Group
from netready.cli.options import (
    allow_option,
    inventory_option,
    listen_option,
    log_options,
    secret_option,
    tls_options,
)
from netready.cli.output import format_option, print_json


@click.group(cls=Group)
def config() -> None:
    """Fleet configuration: publish signed per-site slices of the inventory."""


@config.command("keygen", cls=Command)
@click.option(
    "--private-key",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the private key (mode 0600; never overwritten).",
)
@click.option(
    "--public-key",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the public key (install it with every agent: --config-key).",
)
@format_option
def keygen(private_key: str, public_key: str, fmt: str) -> None:
    """Write a new ed25519 key pair for signing configuration slices."""
    from netready import fleet

    pub = fleet.write_keypair(private_key, public_key)
    if fmt == "json":
        print_json({"private_key": private_key, "public_key": public_key, "public": pub})
    else:
        click.echo(f"wrote {private_key} (keep it on the config server) and {public_key}: {pub}")


@config.command("serve", cls=Command)
@inventory_option(help="The estate inventory to publish (reloaded when the file changes).")
@secret_option(
    "--signing-key",
    required=True,
    help="The ed25519 private key (`config keygen`), as a reference: file:PATH or env:NAME.",
)
@listen_option(
    default="0.0.0.0:8443",
    port_required=True,
    help="Address to listen on ([v6]:PORT for IPv6). Plain HTTP only on loopback unless "
    "--allow-plain-http.",
)
@allow_option
@secret_option(
    "--token",
    required=False,
    header=True,
    help="Bearer token agents must send (a reference, never inline); default: none.",
)
@tls_options(
    plain_help="Serve plain HTTP on a non-loopback address: the slices (router addresses, "
    "circuit ids) are then readable on the path, though still signed.",
)
@log_options(default_format="text")
def serve(
    inventory_path: str,
    signing_key: str,
    listen: str,
    allow: tuple[str, ...],
    token: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    allow_plain_http: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Publish each site's signed slice of the inventory at /sites/ODS.

    Each answer carries its ETag (304 to an agent whose If-None-Match matches) and the
    ed25519 signature of its exact bytes (X-Netready-Signature). A changed inventory is
    published within seconds; one that no longer loads keeps the slices in force (ERROR).
    """
    from netready import logs
    from netready.cli.servers import run_until_signalled
    from netready.servers import config as server

    end = server.endpoint(
        inventory_path,
        signing_key,
        listen,
        allow=allow,
        token=token,
        tls_cert=tls_cert,
        tls_key=tls_key,
        allow_plain_http=allow_plain_http,
    )
    logs.setup(log_format, log_level)
    run_until_signalled(end.run)
