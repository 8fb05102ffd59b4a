"""The click classes every ``netready`` command uses: one exit rule, one lazy group.

- ``Command`` and ``Group`` turn a ``NetreadyError`` raised anywhere below them into one line
  on stderr (``Error: ...``) and the error's exit code (``ConfigError`` 2, others 1), so a
  command body just parses its options and calls one library function: no try/except per
  command, and the same rule whether the command runs under ``netready`` or on its own (tests
  invoke commands directly with ``CliRunner``).
- ``LazyGroup`` loads a command only when it runs (by default from a ``"module:attribute"``
  string), so ``netready --help`` does not pay for scapy or matplotlib; a command that cannot
  load still lists and says why in one line when called. The one lazy group: the plugin
  groups subclass it (``names`` and ``load`` from the registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

import click

from netready.errors import NetreadyError


def fail(e: NetreadyError) -> click.ClickException:
    """A ``ClickException`` with the error's one-line message and exit code."""
    exc = click.ClickException(str(e))
    exc.exit_code = e.exit_code  # type: ignore[misc]
    return exc


class Command(click.Command):
    """A click command whose ``NetreadyError`` becomes one line and the error's exit code,
    raised while parsing (an option's callback) or while running."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except NetreadyError as e:
            raise fail(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NetreadyError as e:
            raise fail(e) from None


class Group(Command, click.Group):
    """A click group: the same translation (``Command`` first in the MRO); its sub-commands
    and sub-groups are ``Command`` and ``Group`` unless they say otherwise."""

    command_class = Command
    group_class = type  # sub-groups: this class


class LazyGroup(Group):
    """A group whose commands are loaded on first use: by default ``lazy`` maps each name to
    ``"module:attribute"``; a subclass may list (``names``) and build (``load``) its commands
    otherwise (the plugin groups build theirs from the registry).

    ``help_lines`` (name -> one line) lets ``--help`` list the commands without loading them;
    without it the listing loads each command for its short help. A command that cannot be
    loaded (a broken import, a missing extra: ``MissingExtra`` names it) still lists, and
    running it says why in one line, whatever options it was given.
    """

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, str] | None = None,
        help_lines: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy if lazy is not None else {}
        self.help_lines = help_lines

    def names(self) -> Iterable[str]:
        """The names of the commands loaded on demand."""
        return self.lazy

    def load(self, name: str) -> click.Command:
        """The command ``name`` (one of ``names()``): here, ``lazy[name]`` imported."""
        mod, _, attr = self.lazy[name].partition(":")
        cmd = getattr(importlib.import_module(mod), attr)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{self.lazy[name]} is not a click command")
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.names()) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.names():
            return None
        try:
            return self.load(cmd_name)
        except (ImportError, AttributeError, NetreadyError) as e:
            what = cmd_name if ctx.parent is None else f"{ctx.info_name} {cmd_name}"
            msg = str(e) if isinstance(e, NetreadyError) else f"{what} is unavailable: {e}"
            helptext = (self.help_lines or {}).get(cmd_name) or msg

            @click.command(
                cmd_name,
                help=helptext,
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            def _missing() -> None:
                raise click.ClickException(msg)

            return _missing

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.help_lines is None:
            super().format_commands(ctx, formatter)
            return
        rows = [(name, self.help_lines.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
