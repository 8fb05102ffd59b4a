"""The click classes every ``netready`` command uses: one exit rule, one lazy group.

- ``Command`` and ``Group`` turn a ``NetreadyError`` raised anywhere below them into one line
  on stderr (``Error: ...``) and the error's exit code (``ConfigError`` 2, others 1), so a
  command body just parses its options and calls one library function: no try/except per
  command, and the same rule whether the command runs under ``netready`` or on its own (tests
  invoke commands directly with ``CliRunner``).
- ``LazyGroup`` maps names to ``"module:attribute"`` strings and imports a command only when it
  runs, so ``netready --help`` does not pay for scapy or matplotlib; a command whose import
  fails still lists and says why when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
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
    """A group whose commands are ``name -> "module:attribute"``, imported on first use.

    ``help_lines`` (name -> one line) lets ``--help`` list the commands without importing
    them; without it the listing imports each command for its short help.
    """

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, str],
        help_lines: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.help_lines = help_lines

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self.lazy.get(cmd_name)
        if target is None:
            return None
        mod, _, attr = target.partition(":")
        try:
            cmd = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            # `--help` still works when one part is broken or its extra is not installed;
            # running the command says why in one line (``MissingExtra`` names the extra),
            # whatever options it was given.
            msg = str(e) if isinstance(e, NetreadyError) else f"{cmd_name} is unavailable: {e}"
            helptext = (self.help_lines or {}).get(cmd_name, "")

            @click.command(
                cmd_name,
                help=helptext,
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            def _missing() -> None:
                raise click.ClickException(msg)

            return _missing
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{target} is not a click command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.help_lines is None:
            super().format_commands(ctx, formatter)
            return
        rows = [(name, self.help_lines.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
