"""What commands print: one option for the format, one printer per format. Data to stdout only.

- ``format_option``: ``--format table|json`` (a report adds csv, md, html: the report's own
  renderers, in reports/render.py). ``@format_option`` or ``@format_option(choices=..., help=...)``.
- ``print_json``: any JSON-able value, indented, UTF-8 as is.
- ``print_table``: rows under column heads, a rich table (the only table printer: record
  tables, pcap streams and lab profiles all go through it). Cells are shown as written, never
  read as rich markup (an IPv6 ``[::1]:5004`` or a router's text stays as it is).
- ``print_records``: records as JSON (a list of ``Record.to_dict()``), as InfluxDB line
  protocol (``influx``: one line per record, nanosecond timestamps, through
  ``netready.influx.encode``, what Telegraf's ``inputs.exec`` reads; see docs/telegraf.md) or
  one field/value table per record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

import click

from netready.records import Record

FORMATS = ("table", "json")
#: The formats of a command that prints records (every probe and collector command).
RECORD_FORMATS = (*FORMATS, "influx")

F = TypeVar("F", bound=Callable[..., Any])

#: Width of a table written to a pipe or file (a terminal's own width is used otherwise).
PIPE_WIDTH = 250


def format_option(
    f: F | None = None,
    /,
    *,
    choices: Sequence[str] = FORMATS,
    help: str = "table for people, json for scripts.",
) -> Any:
    """``--format`` (parameter ``fmt``), default ``table``: ``@format_option`` as it is, or
    ``@format_option(choices=(...), help="...")`` for a command with more formats."""
    option = click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default="table",
        show_default=True,
        help=help,
    )
    return option if f is None else option(f)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(obj, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Sequence[int] = (),
    out: IO[str] | None = None,
) -> None:
    """One rich table: ``columns`` heads, ``rows`` of cells (str() of each; floats and bools
    as ``_num`` shows them), columns whose index is in ``right`` right-justified."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    console = Console(file=out, width=None if tty else PIPE_WIDTH)
    t = Table(
        title=Text(title) if title else None,
        show_header=True,
        header_style="bold",
        title_justify="left",
    )
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i in right else "left")
    for row in rows:
        t.add_row(*(Text(_num(v)) for v in row))
    console.print(t)


def print_records(
    records: Sequence[Record], fmt: str = "table", out: IO[str] | None = None
) -> None:
    if fmt == "json":
        print_json([r.to_dict() for r in records], out)
        return
    if fmt == "influx":
        from netready.influx import encode_many

        lines = encode_many(records, precision="ns")
        (out or sys.stdout).write("".join(line + "\n" for line in lines))
        return
    for r in records:
        title = r.measurement + "".join(
            f"  {k}={v}" for k, v in sorted(r.tags.items()) if k not in ("icb",)
        )
        print_table(("field", "value"), list(r.fields.items()), title=title, right=(1,), out=out)
