"""``netready probe NAME`` and ``netready collect NAME``, generated for every registered plugin.

Nothing here knows a plugin by name: each command is built from the plugin's declaration
(``netready.plugin.Plugin``) when it is asked for. Options come from the ``Spec`` fields:

- the option is ``--field-name`` (``duration_s`` -> ``--duration-s``), or what the field's
  ``json_schema_extra={"cli": ...}`` says: ``"--duration"``, a list of names (aliases),
  ``"--verify-tls/--insecure"`` (a boolean's on/off pair) or a bare ``"FILE"`` (a positional
  argument); ``{"cli_flag": {"--udp": "udp"}}`` adds a flag that sets the field to a value;
- the help is the field's ``description``; the default is the field's (shown in ``--help``);
- ``bool`` is a flag (``--x/--no-x`` when it defaults to true), ``Literal`` a choice, a
  ``dict`` a repeatable ``KEY=VALUE`` option, a secret takes ``env:NAME|file:PATH``.

Plus ``--format`` for every command and, for a plugin that ``needs`` site configuration
(a router's SNMP or SSH), ``--site``, ``--inventory`` and ``--state-dir``.

One runner for all of them: validate (``Plugin.make_spec``) -> admit (``budget.admit``; a
run by hand is forced, so only the per-test byte cap can refuse) -> run -> print -> exit.
One exit rule: 0 every record ok; 1 a record failed (one ``Error: reason`` line each on
stderr) or a runtime error; 2 bad input (options, spec, inventory). One printer per format:
``json`` is every record (``netready.cli.output.print_records``), ``table`` the ok records
(failures are the stderr lines), ``influx`` every record as line protocol (nanosecond
timestamps: Telegraf's ``inputs.exec`` with ``data_format = "influx"``, docs/telegraf.md).
"""

from __future__ import annotations

import asyncio
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic.fields import FieldInfo

from netready import budget, registry
from netready.cli import fail
from netready.cli.base import LazyGroup
from netready.cli.options import inventory_option, state_dir_option
from netready.cli.output import RECORD_FORMATS, format_option, print_records
from netready.errors import NetreadyError
from netready.inventory import SecretRef
from netready.plugin import Context, Kind, Plugin
from netready.records import Record

#: Command group of each kind of plugin.
GROUP: dict[Kind, str] = {"probe": "probe", "collector": "collect"}

EXIT_CODES = """\b
Exit codes:
  0  every record ok
  1  a record failed (its reason on stderr) or a runtime error
  2  bad input: options, inventory, site"""

_site_option = click.option(
    "--site", "-s", "site_ods", required=True, metavar="ODS", help="ODS code of the site."
)
_state_dir_option = state_dir_option(
    help="Where collectors keep state between runs (SNMP counters), and budgets."
)


# --------------------------------------------------------------------------- options


def _unwrap(ann: Any) -> Any:
    """``X | None`` -> X; ``Annotated[X, ...]`` -> X."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _key_values(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if not value:
            return None
        out: dict[str, str] = {}
        for v in value:
            key, sep, val = str(v).partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{v!r}: expected KEY=VALUE", param_hint=name)
            out[key] = val
        return out

    return convert


def field_params(spec: type[Any]) -> tuple[list[click.Parameter], dict[str, tuple[str, Any]]]:
    """The click parameters of a Spec's fields, and the extra flags (dest -> (field, value))."""
    params: list[click.Parameter] = []
    flags: dict[str, tuple[str, Any]] = {}
    for name, info in spec.model_fields.items():
        extra = _extra(info)
        cli = extra.get("cli")
        decls = list(cli) if isinstance(cli, (list, tuple)) else [cli] if cli else []
        dashed = "--" + name.replace("_", "-")
        ann = _unwrap(info.annotation)
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        help_ = info.description or ""
        if decls and not decls[0].startswith("-"):  # a positional argument
            params.append(click.Argument([name], metavar=decls[0], required=required))
            continue
        kw: dict[str, Any] = {"help": help_, "required": required}
        if ann is bool:
            pair = decls[0] if decls and "/" in decls[0] else None
            if pair is None and default is True:
                pair = f"{decls[0] if decls else dashed}/--no-{(decls[0] if decls else dashed)[2:]}"
            if pair is not None:
                opt = click.Option([pair, name], default=default, show_default=True, **kw)
            else:
                opt = click.Option([*(decls or [dashed]), name], is_flag=True, default=None, **kw)
        elif typing.get_origin(ann) is dict:
            opt = click.Option(
                [*(decls or [dashed]), name],
                multiple=True,
                metavar=extra.get("metavar", "KEY=VALUE"),
                callback=_key_values(decls[0] if decls else dashed),
                **kw,
            )
        else:
            if typing.get_origin(ann) is typing.Literal:
                kw["type"] = click.Choice([str(a) for a in typing.get_args(ann)])
            elif isinstance(ann, type) and issubclass(ann, SecretRef):
                kw["type"], kw["metavar"] = click.STRING, "env:NAME|file:PATH"
            elif ann in (int, float, str):
                kw["type"] = {int: click.INT, float: click.FLOAT, str: click.STRING}[ann]
            opt = click.Option(
                [*(decls or [dashed]), name],
                default=default,
                show_default=default is not None,
                **kw,
            )
        params.append(opt)
        for k, (flag, value) in enumerate(extra.get("cli_flag", {}).items()):
            dest = f"_flag_{name}_{k}"
            flags[dest] = (name, value)
            params.append(
                click.Option(
                    [flag, dest], is_flag=True, default=False, help=f"Same as {dashed} {value}."
                )
            )
    return params, flags


# --------------------------------------------------------------------------- the runner


async def measure(plugin: Plugin, ctx: Context, spec: Any) -> list[Record]:
    """Admit (heavy plugins: ``budget.admit``), then run; a refusal is the one record."""
    refused = budget.admit(ctx, plugin, spec)
    if refused is not None:
        return [budget.refusal(ctx, plugin, refused)]
    return await plugin.run(ctx, spec)


def run(
    plugin: Plugin,
    params: dict[str, Any],
    fmt: str,
    *,
    site_ods: str | None = None,
    inventory_path: str | None = None,
    state_dir: str | None = None,
) -> list[Record]:
    """Validate -> run -> print -> exit (see the module docstring for the rules)."""
    try:
        site = inv = None
        if plugin.needs is not None:
            from netready.inventory import load

            inv = load(inventory_path or "site_inventory.yaml")
            site = inv.site(site_ods or "")
        spec = plugin.make_spec(params, where=f"{GROUP[plugin.kind]} {plugin.name}")
        ctx = Context(
            site=site,
            inventory=inv,
            state_dir=Path(state_dir or ".netready-state"),
            force=True,  # a person asked for this run: clinic hours and daily budget do not apply
            progress=fmt == "table" and sys.stderr.isatty(),
        )
        records = asyncio.run(measure(plugin, ctx, spec))
        # inside: a record line protocol cannot carry (LineProtocolError) is one line, exit 2
        print_records(records if fmt != "table" else [r for r in records if r.ok], fmt)
    except NetreadyError as e:
        raise fail(e) from None
    failed = [r for r in records if not r.ok]
    for r in failed:
        click.echo(f"Error: {r.fields.get('reason', r.result)}", err=True)
    if failed:
        sys.exit(1)
    return records


def command(plugin: Plugin) -> click.Command:
    """The click command of one plugin, from its declaration."""
    params, flags = field_params(plugin.spec)

    def callback(**kw: Any) -> None:
        fmt = kw.pop("fmt")
        where = {k: kw.pop(k, None) for k in ("site_ods", "inventory_path", "state_dir")}
        for dest, (name, value) in flags.items():
            if kw.pop(dest):
                kw[name] = value
        values = {k: v for k, v in kw.items() if v is not None}
        run(plugin, values, fmt, **where)

    cmd = click.Command(
        plugin.name,
        callback=callback,
        params=params,
        help=plugin.summary,
        short_help=plugin.summary.split(". ")[0].split(": ")[0],
        epilog=EXIT_CODES,
    )
    common: list[Callable[[Any], Any]] = [
        format_option(
            choices=RECORD_FORMATS,
            help="table for people, json for scripts, influx (line protocol) for Telegraf.",
        )
    ]
    if plugin.needs is not None:
        common += [_site_option, inventory_option, _state_dir_option]
    for deco in common:
        deco(cmd)
    return cmd


class PluginGroup(LazyGroup):
    """The commands of one kind of plugin: listed from the registry without importing the
    plugins; a plugin is imported (and its command built) only when it is asked for. A plugin
    that cannot load (its extra missing: ``MissingExtra`` names it) says why in one line, as
    every lazy command does (``base.LazyGroup``)."""

    def __init__(self, kind: Kind, **kw: Any) -> None:
        super().__init__(**kw)
        self.kind = kind

    def names(self) -> list[str]:
        return registry.names(self.kind)

    def load(self, name: str) -> click.Command:
        return command(registry.get(self.kind, name))


probe = PluginGroup(
    "probe",
    name="probe",
    help="Run one probe by hand and print its records (heavy tests: byte cap only).",
)
collect = PluginGroup(
    "collector",
    name="collect",
    help="Run one collector by hand and print its records (a site router, a capture file).",
)
