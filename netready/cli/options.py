"""The options several commands share, each defined once (names and defaults as the docs,
the systemd units and the tests use them). ``--format`` is ``output.format_option``.

Each is a decorator as it is (``@inventory_option``) or, where a command needs another default
or help text, called first (``@inventory_option(default=None, help="...")``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from netready.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

Deco = Callable[[F], F]

#: Every entry point takes ``-h`` as well as ``--help`` (its sub-commands inherit it).
HELP_OPTIONS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def _either(f: Any, option: Deco[Any]) -> Any:
    return option if f is None else option(f)


#: Where the inventory is when no ``--inventory`` is given, in this order: the environment
#: variable, the system file a practice box installs, the repository's example (./).
INVENTORY_ENV = "NETREADY_INVENTORY"
SYSTEM_INVENTORY = "/etc/netready/site_inventory.yaml"
LOCAL_INVENTORY = "site_inventory.yaml"
DEFAULT_INVENTORY = "default"  # ``inventory_option(default=...)``: the search above
#: ``ctx.meta`` key: how the inventory was chosen (``inventory_source``)
_SOURCE = "netready.inventory_source"


def default_inventory() -> tuple[str, str]:
    """(path, how it was chosen) when no ``--inventory`` is given: ``$NETREADY_INVENTORY``,
    else ``/etc/netready/site_inventory.yaml`` if it exists, else ``./site_inventory.yaml``."""
    env = os.environ.get(INVENTORY_ENV)
    if env:
        return env, f"${INVENTORY_ENV}"
    if Path(SYSTEM_INVENTORY).is_file():
        return SYSTEM_INVENTORY, "the system inventory (no --inventory, no $NETREADY_INVENTORY)"
    return LOCAL_INVENTORY, (
        f"./{LOCAL_INVENTORY} in {Path.cwd()} (no --inventory, no ${INVENTORY_ENV}, "
        f"no {SYSTEM_INVENTORY})"
    )


def inventory_source(ctx: click.Context | None = None) -> str:
    """How the command's inventory was chosen ("--inventory", "$NETREADY_INVENTORY", ...),
    for a command that says what it is reading."""
    ctx = ctx or click.get_current_context()
    return str(ctx.meta.get(_SOURCE, "--inventory"))


def inventory_option(
    f: F | None = None,
    /,
    *,
    default: str | None = DEFAULT_INVENTORY,
    help: str = "The estate's site inventory.",
) -> Any:
    """``--inventory FILE`` (parameter ``inventory_path``). By default, when not given,
    ``default_inventory()``'s search; ``default=None`` for a command where it is optional."""

    def pick(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None and default == DEFAULT_INVENTORY:
            value, ctx.meta[_SOURCE] = default_inventory()
            if value == LOCAL_INVENTORY and not Path(value).exists():
                raise ConfigError(
                    f"no inventory: give --inventory FILE, set ${INVENTORY_ENV} or install "
                    f"{SYSTEM_INVENTORY} (there is no ./{LOCAL_INVENTORY} in {Path.cwd()})"
                )
        return value

    searched = default == DEFAULT_INVENTORY
    return _either(
        f,
        click.option(
            "--inventory",
            "-i",
            "inventory_path",
            default=None if searched else default,
            show_default=(
                f"${INVENTORY_ENV}, else {SYSTEM_INVENTORY}, else ./{LOCAL_INVENTORY}"
                if searched
                else default is not None
            ),
            metavar="FILE",
            type=click.Path(dir_okay=False),
            callback=pick,
            help=help,
        ),
    )


def spool_option(
    f: F | None = None, /, *, help: str = "Spool file (default: the inventory's agent.spool_path)."
) -> Any:
    """``--spool FILE`` (parameter ``spool_path``); default: the inventory's."""
    return _either(
        f,
        click.option(
            "--spool",
            "spool_path",
            default=None,
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help=help,
        ),
    )


def state_dir_option(
    f: F | None = None, /, *, help: str = "Counter state, budgets, known hosts."
) -> Any:
    """``--state-dir DIR`` (parameter ``state_dir``), default ``.netready-state``."""
    return _either(
        f,
        click.option(
            "--state-dir",
            "state_dir",
            default=".netready-state",
            show_default=True,
            metavar="DIR",
            type=click.Path(file_okay=False),
            help=help,
        ),
    )


def listen_option(*, default: str, help: str, port_required: bool = False) -> Deco[Any]:
    """``--listen HOST:PORT`` (parameter ``listen``, kept as text for the server), checked
    here: a bad address is a usage error (exit 2) before anything starts. ``[v6]:PORT`` for
    IPv6; without ``port_required`` a bare host takes the default's port."""
    from netready.inventory import split_hostport

    default_port = None if port_required else split_hostport(default)[1]

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            split_hostport(value, default_port)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
        return value

    return click.option(
        "--listen",
        "listen",
        default=default,
        show_default=True,
        metavar="HOST:PORT",
        callback=check,
        help=help,
    )


def allow_option(f: F | None = None, /, *, default: Sequence[str] | None = None) -> Any:
    """``--allow CIDR`` (repeatable, parameter ``allow``) for the central servers: the
    sources they answer; loopback only unless told (``guard.DEFAULT_ALLOW``). Each CIDR is
    checked here (a ``ConfigError``, exit 2, before anything starts)."""
    from netready.servers.guard import DEFAULT_ALLOW, parse_networks

    def check(
        ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
    ) -> tuple[str, ...]:
        parse_networks(value)
        return value

    return _either(
        f,
        click.option(
            "--allow",
            "allow",
            multiple=True,
            default=list(default or DEFAULT_ALLOW),
            show_default=True,
            callback=check,
            help="Source CIDR (IPv4 or IPv6) allowed to use this server (repeatable); "
            "other sources get no answer at all.",
        ),
    )


def log_options(f: F | None = None, /, *, default_format: str = "json") -> Any:
    """``--log-format json|text`` and ``--log-level`` (parameters ``log_format``,
    ``log_level``) for a long-running process; the command calls ``logs.setup`` with them."""
    from netready.logs import LEVELS

    def deco(g: Any) -> Any:
        g = click.option(
            "--log-format",
            type=click.Choice(["json", "text"]),
            default=default_format,
            show_default=True,
            help="JSON lines or text on stderr (with journald priorities under systemd).",
        )(g)
        return click.option(
            "--log-level",
            type=click.Choice(list(LEVELS), case_sensitive=False),
            default="info",
            show_default=True,
            help="Least severe level logged; debug adds tracebacks.",
        )(g)

    return _either(f, deco)


def secret_option(
    name: str = "--secret",
    /,
    *,
    help: str,
    header: bool = False,
    required: bool = False,
) -> Deco[Any]:
    """An option that takes a secret: a reference (``env:NAME`` or ``file:PATH``) checked
    here, never the secret itself (it would sit in shell history and ``ps``). The value is an
    unresolved ``SecretRef`` (``HeaderSecretRef`` with ``header``: it goes into an HTTP
    header); the command resolves it when it needs it."""
    from netready.errors import ConfigError
    from netready.inventory import HeaderSecretRef, SecretRef

    kind = HeaderSecretRef if header else SecretRef

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return kind.check(value)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None

    return click.option(
        name,
        default=None,
        required=required,
        metavar="env:NAME|file:PATH",
        callback=check,
        help=help,
    )


def tls_options(*, plain_help: str) -> Callable[[F], F]:
    """``--tls-cert``, ``--tls-key`` and ``--allow-plain-http`` (parameters ``tls_cert``,
    ``tls_key``, ``allow_plain_http``) for the HTTP servers; ``plain_help`` says what plain
    HTTP exposes on that server."""

    def deco(f: F) -> F:
        f = click.option("--allow-plain-http", is_flag=True, help=plain_help)(f)
        f = click.option(
            "--tls-key",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="PEM private key for --tls-cert.",
        )(f)
        return click.option(
            "--tls-cert",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="PEM certificate: serve HTTPS (needed on a non-loopback address).",
        )(f)

    return deco
