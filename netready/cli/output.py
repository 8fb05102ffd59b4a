"""Printing records for people (rich table) and for scripts (JSON). Data to stdout only."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO, Any

import click

from netready.records import Record

FORMATS = ("table", "json")
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def print_records(
    records: Sequence[Record], fmt: str = "table", out: IO[str] | None = None
) -> None:
    out = out or sys.stdout
    if fmt == "json":
        json.dump([r.to_dict() for r in records], out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    for r in records:
        title = r.measurement + "".join(
            f"  {k}={v}" for k, v in sorted(r.tags.items()) if k not in ("icb",)
        )
        t = Table(title=title, show_header=True, header_style="bold", title_justify="left")
        t.add_column("field")
        t.add_column("value", justify="right")
        for k, v in r.fields.items():
            t.add_row(k, _num(v))
        console.print(t)


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(obj, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")
