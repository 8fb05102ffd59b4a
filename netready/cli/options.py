"""The options several commands share, each defined once (names and defaults as the docs,
the systemd units and the tests use them). ``--format`` is ``output.format_option``.

Each is a decorator as it is (``@inventory_option``) or, where a command needs another default
or help text, called first (``@inventory_option(default=None, help="...")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

Deco = Callable[[F], F]


def _either(f: Any, option: Deco[Any]) -> Any:
    return option if f is None else option(f)


def inventory_option(
    f: F | None = None,
    /,
    *,
    default: str | None = "site_inventory.yaml",
    help: str = "The estate's site inventory.",
) -> Any:
    """``--inventory FILE`` (parameter ``inventory_path``)."""
    return _either(
        f,
        click.option(
            "--inventory",
            "-i",
            "inventory_path",
            default=default,
            show_default=default is not None,
            type=click.Path(dir_okay=False),
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
            "--spool", "spool_path", default=None, type=click.Path(dir_okay=False), help=help
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
