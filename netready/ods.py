"""``netready inventory import-ods``: bootstrap or refresh GP practice sites from the NHS ODS
practice file, ``epraccur.csv``.

The layout (NHS Digital / NHS England ODS "GP practices" CSV download, published as
``epraccur.zip`` and from ODS Data Search and Export as report ``epraccur``): no header row,
27 columns, quoted fields, dates ``YYYYMMDD``:

====  ==============================  ====  ==================================
  1   organisation code (ODS)          15   commissioner (sub-ICB location)
  2   name                             16   join provider/purchaser date
  3   national grouping (region)       17   left provider/purchaser date
  4   high level health geography      18   contact telephone number
      (the ICB code, e.g. QHM)         19-21 null
 5-9  address lines 1-5                22   amended record indicator
 10   postcode                         23   null
 11   open date                        24   provider/purchaser
 12   close date                       25   null
 13   status code (A active, C closed, 26   prescribing setting (4 = GP practice;
      D dormant, P proposed)                0 other, 1 walk-in centre, 2 out of
 14   organisation sub-type code            hours, 3 WIC + OOH, 5 prison, ...)
                                       27   null
====  ==============================  ====  ==================================

Active practices only: status ``A``, no close date on or before today, and a prescribing
setting of 4 where the file gives one. The merge keeps every local edit: a practice already
in the inventory gets only its ``name`` and ``icb`` refreshed from ODS (its link, router,
clinics, targets, coordinates and comments stay as they are); a new one is appended with what
ODS knows and a link to fill in (``tech: unknown`` and 1/1 Mbit/s placeholders, with a comment
saying so); a practice ODS lists as closed is reported, never removed. The file is edited
with ruamel.yaml (the ``estate`` extra), which keeps the YAML's comments, order and quoting,
and the result is validated as an inventory before it replaces the file (written to a
temporary file, then renamed): an import never leaves an invalid inventory behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netready.errors import ConfigError, InventoryError
from netready.inventory import ODS_RE, loads, read_regular_file
from netready.optional import require

#: Largest ODS file read (the whole epraccur is about 2 MB for ~12,000 rows).
ODS_MAX_BYTES = 64 * 1024 * 1024
#: Column numbers (1-based, as the layout documents them).
CODE, NAME, REGION, ICB = 1, 2, 3, 4
POSTCODE, OPEN, CLOSE, STATUS, COMMISSIONER, SETTING = 10, 11, 12, 13, 15, 26
COLUMNS = 27
GP_PRACTICE = "4"


@dataclass(frozen=True)
class Practice:
    ods: str
    name: str
    icb: str
    postcode: str
    commissioner: str
    open_date: dt.date | None


@dataclass
class Parsed:
    active: list[Practice] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)  # codes ODS lists as not active
    skipped: int = 0  # rows that are not GP practices (prescribing setting)


def _date(v: str, where: str) -> dt.date | None:
    if not v.strip():
        return None
    try:
        return dt.datetime.strptime(v.strip(), "%Y%m%d").date()
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a date YYYYMMDD") from None


def parse(text: str, filename: str, today: dt.date) -> Parsed:
    """The practices of an epraccur file; ``ConfigError`` ``file:line: column N (what): ...``
    for the first row that is not in the layout."""
    out = Parsed()
    seen: set[str] = set()
    for n, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        where = f"{filename}:{n}"
        if not row or row == [""]:
            continue
        if len(row) < STATUS:
            raise ConfigError(
                f"{where}: {len(row)} columns; the epraccur layout has {COLUMNS} (no header row)"
            )
        cell = [c.strip() for c in row] + [""] * max(0, COLUMNS - len(row))
        if any(ord(ch) < 32 or ord(ch) == 127 for c in cell for ch in c):
            raise ConfigError(f"{where}: a control character in a field")
        code = cell[CODE - 1]
        if not ODS_RE.match(code):
            hint = " (a header row? epraccur has none)" if n == 1 else ""
            raise ConfigError(f"{where}: column 1 (organisation code): {code[:20]!r}{hint}")
        if code in seen:
            raise ConfigError(f"{where}: organisation code {code} appears twice")
        seen.add(code)
        opened = _date(cell[OPEN - 1], f"{where}: column {OPEN} (open date)")
        closed = _date(cell[CLOSE - 1], f"{where}: column {CLOSE} (close date)")
        setting = cell[SETTING - 1]
        if setting and setting != GP_PRACTICE:
            out.skipped += 1
            continue
        if cell[STATUS - 1] != "A" or (closed is not None and closed <= today):
            out.closed.add(code)
            continue
        name = cell[NAME - 1]
        if not name:
            raise ConfigError(f"{where}: column {NAME} (name) is empty")
        icb = cell[ICB - 1]
        if not icb:
            raise ConfigError(f"{where}: column {ICB} (high level health geography) is empty")
        out.active.append(
            Practice(code, name, icb, cell[POSTCODE - 1], cell[COMMISSIONER - 1], opened)
        )
    return out


@dataclass
class Summary:
    added: list[str] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # name or icb changed
    unchanged: int = 0
    closed_in_inventory: list[str] = field(default_factory=list)
    skipped: int = 0
    written: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "refreshed": self.refreshed,
            "unchanged": self.unchanged,
            "closed_in_ods_still_in_inventory": self.closed_in_inventory,
            "not_gp_practices": self.skipped,
            "written": self.written,
        }


def _read_text(path: Path, limit: int, what: str) -> str:
    try:
        data = read_regular_file(path, limit)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}; not {what}") from None
    if b"\0" in data:
        raise ConfigError(f"{path}: holds binary data (a NUL byte), not {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")  # older ODS files are Windows-1252


def _new_site(p: Practice, cm: Any) -> Any:
    site = cm()
    site["ods"] = p.ods
    site["name"] = p.name
    site["type"] = "gp_practice"
    site["icb"] = p.icb
    link = cm()
    link["tech"] = "unknown"
    link["down_mbps"] = 1
    link["up_mbps"] = 1
    site["link"] = link
    when = f", opened {p.open_date:%Y-%m-%d}" if p.open_date else ""
    site.yaml_set_start_comment(
        f"from ODS epraccur: {p.postcode or 'no postcode'}, commissioner "
        f"{p.commissioner or '?'}{when}. Link: placeholders, fill in tech and contracted rates",
        indent=2,
    )
    return site


def import_ods(
    inventory_path: str | Path,
    ods_path: str | Path,
    *,
    today: dt.date | None = None,
    dry_run: bool = False,
) -> Summary:
    """Merge the active practices of ``ods_path`` into the inventory (created if missing)."""
    ryaml = require("ruamel.yaml", "netready inventory import-ods")
    today = today or dt.date.today()
    ods_file, inv_file = Path(ods_path), Path(inventory_path)
    parsed = parse(_read_text(ods_file, ODS_MAX_BYTES, "an epraccur CSV"), str(ods_file), today)
    y = ryaml.YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    cm = ryaml.comments.CommentedMap
    if inv_file.exists():
        text = _read_text(inv_file, 32 * 1024 * 1024, "an inventory")
        loads(text, str(inv_file))  # refuse to edit an invalid inventory: its errors first
        doc = y.load(text)
    else:
        doc = cm()
        doc["version"] = 1
        doc["sites"] = ryaml.comments.CommentedSeq()
    sites = doc.get("sites")
    if sites is None:
        sites = doc["sites"] = ryaml.comments.CommentedSeq()
    by_code = {s.get("ods"): s for s in sites if hasattr(s, "get")}
    out = Summary(skipped=parsed.skipped)
    for p in parsed.active:
        s = by_code.get(p.ods)
        if s is None:
            sites.append(_new_site(p, cm))
            out.added.append(p.ods)
        elif (s.get("name"), s.get("icb")) != (p.name, p.icb):
            s["name"], s["icb"] = p.name, p.icb
            out.refreshed.append(p.ods)
        else:
            out.unchanged += 1
    out.closed_in_inventory = sorted(c for c in parsed.closed if c in by_code)
    buf = io.StringIO()
    y.dump(doc, buf)
    try:
        loads(buf.getvalue(), str(inv_file))
    except InventoryError as e:  # a bug of ours: the file stays as it was
        raise ConfigError(f"the merged inventory would not be valid: {e.problems[0]}") from None
    if not dry_run and (out.added or out.refreshed or not inv_file.exists()):
        tmp = inv_file.with_name(inv_file.name + ".import.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, inv_file)
        out.written = True
    return out


__all__ = ["COLUMNS", "Parsed", "Practice", "Summary", "import_ods", "parse"]
