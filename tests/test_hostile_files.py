"""Hostile inventories: every one is a one-line error naming the file (and line), exit 2.

Each file here was a traceback, a hang or gigabytes of memory before: a 9-level YAML alias
bomb (2.9 GB, 16 s, then SystemError), a 5,000-digit number (ValueError), deep nesting and
recursive aliases (RecursionError), ``/dev/zero`` (MemoryError), a FIFO (blocked for
ever), an unquoted ``end: 18:30`` (YAML's base-60 number: TypeError). Real files and the
real ``netready inventory check`` command; memory is measured with tracemalloc (not time).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from netready.cli import cli
from netready.errors import InventoryError
from netready.inventory import INVENTORY_MAX_BYTES, MAX_ALIAS_NODES, MAX_DEPTH, load, loads

SITE = (
    "  - {ods: Y81001, name: Riverside, type: gp_practice, icb: QHM,\n"
    "     link: {tech: adsl, down_mbps: 8, up_mbps: 1}}\n"
)
GOOD = "version: 1\nsites:\n" + SITE


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": each level is 9 aliases of the level below."""
    out = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        out.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(out) + f"\nsites: *a{levels - 1}\n"


CASES = [
    # (name, text, line, col, what)
    ("alias bomb", alias_bomb(), 6, 10, "YAML aliases expand to more than 100,000 extra nodes"),
    ("recursive alias", "a: &x [1, *x]\n" + GOOD, 1, 11, "YAML alias *x refers to itself"),
    ("undefined alias", "version: 1\nsites: *nope\n", 2, 8, "YAML alias *nope is not defined"),
    ("5,000-digit number", GOOD.replace("down_mbps: 8", "down_mbps: " + "9" * 5000), 4, 36,
     "sites[0].link.down_mbps: a number of 5,000 characters is not a value here"),
    ("flow nesting", "version: 1\nsites: " + "[" * 900 + "]" * 900 + "\n", 2, 7 + MAX_DEPTH,
     f"nested deeper than {MAX_DEPTH} levels"),
    ("block nesting", "version: 1\nsites:\n" + "".join(
        "  " * (i + 1) + f"- k{i}:\n" for i in range(200)) + "  " * 201 + "v\n", None, None,
     f"nested deeper than {MAX_DEPTH} levels"),
    ("python tag", "version: !!python/object/apply:os.system [id]\n" + GOOD[11:], 1, 10,
     "version: YAML tag !!python/object/apply:os.system is not allowed"),
    ("custom tag", GOOD.replace("name: Riverside", "name: !vault Riverside"), 3, 25,
     "sites[0].name: YAML tag !vault is not allowed"),
    ("escape sequence in a name", GOOD.replace("Riverside", '"River\\e[2Jside"'), 3, 25,
     "sites[0].name: has a control character (U+001B)"),
    ("bad date", GOOD.replace("icb: QHM", "icb: 2024-13-45"), 3, 60,
     "sites[0].icb: '2024-13-45' is not a valid timestamp"),
    ("bad explicit bool", GOOD.replace("name: Riverside", "name: !!bool maybe"), 3, 25,
     "sites[0].name: 'maybe' is not a valid bool"),
    ("unquoted time (base 60)", GOOD.replace("}}\n", "},\n     clinic_hours: {end: 18:30}}\n"),
     5, 26, 'sites[0].clinic_hours.end: write the time in quotes, e.g. "18:30"'),
    ("time with a UTC offset", GOOD.replace("}}\n", '},\n     clinic_hours: {end: "18:30+01:00"}}\n'),
     5, 26, "sites[0].clinic_hours.end: clinic hours are the site's local time"),
    ("not a number", GOOD.replace("down_mbps: 8", "down_mbps: .nan"), 4, 36,
     "sites[0].link.down_mbps: Input should be a finite number"),
    ("infinite", GOOD.replace("up_mbps: 1", "up_mbps: -.inf"), 4, 48,
     "sites[0].link.up_mbps: Input should be a finite number"),
    ("complex key", "? [a, b]\n: c\n" + GOOD, 1, 3, "malformed YAML: found unhashable key"),
    ("two documents", GOOD + "---\n" + GOOD, 5, 1, "malformed YAML: but found another document"),
]  # fmt: skip


def check(path: Path) -> tuple[int, list[str], str]:
    r = CliRunner().invoke(cli, ["inventory", "check", str(path)])
    return r.exit_code, [ln for ln in r.stderr.splitlines() if ln.strip()], r.output


@pytest.mark.parametrize(("name", "text", "line", "col", "what"), CASES, ids=[c[0] for c in CASES])
def test_hostile_yaml_is_one_line_with_position(
    tmp_path: Path, name: str, text: str, line: int | None, col: int | None, what: str
) -> None:
    f = tmp_path / "inv.yaml"
    f.write_text(text)
    code, lines, out = check(f)
    assert code == 2, out
    assert "Traceback" not in out
    assert len(lines) == 1, lines
    m = re.match(rf"Error: {re.escape(str(f))}:(\d+):(\d+): (.+)$", lines[0])
    assert m, lines[0]
    if line is not None:
        assert (int(m[1]), int(m[2])) == (line, col), lines[0]
    assert what in m[3], lines[0]
    # memory: the library call alone, after the imports above (the bomb is 387M nodes)
    tracemalloc.start()
    try:
        with pytest.raises(InventoryError):
            loads(text, "x.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{name}: {peak / 1e6:.1f} MB"


def test_alias_limit_leaves_ordinary_sharing_alone() -> None:
    """Anchors and aliases are a real convenience (one link block for 300 practices): far
    under the limit, they load; the limit is on expansion, not on the use of aliases."""
    sites = "".join(
        f"  - {{ods: Y8{i:04d}, name: S{i}, type: gp_practice, icb: QHM, link: *fttc}}\n"
        for i in range(1, 300)
    )
    first = "  - {ods: Y80000, name: S0, type: gp_practice, icb: QHM,\n"
    first += "     link: &fttc {tech: fttc, down_mbps: 80, up_mbps: 20}}\n"
    inv = loads("version: 1\nsites:\n" + first + sites, "x.yaml")
    assert len(inv.sites) == 300 and {s.link.down_mbps for s in inv.sites} == {80}
    assert MAX_ALIAS_NODES > 300 * 4


def test_files_that_are_not_inventories(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:  # sparse: refused by its size, never read
        f.truncate(INVENTORY_MAX_BYTES + 1)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(GOOD.encode().replace(b"sites:", b"sit\x00es:"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(GOOD.encode().replace(b"Riverside", b"Riversid\xe9"))
    png = tmp_path / "logo.yaml"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "dir.yaml").mkdir()
    cases = [
        ("/dev/zero", "/dev/zero: is not a regular file (a character device); not an inventory"),
        (str(fifo), f"{fifo}: is not a regular file (a FIFO); not an inventory"),
        (str(huge), f"{huge}: is larger than 32 MiB (33,554,433 bytes); not an inventory"),
        (str(nul), f"{nul}: holds binary data (a NUL byte at offset 14), not YAML text"),
        (
            str(latin1),
            f"{latin1}: is not UTF-8 text (bad byte at offset {GOOD.index('Riverside') + 8})",
        ),
        (str(png), f"{png}: holds binary data (a NUL byte at offset 8), not YAML text"),
    ]
    for path, message in cases:
        got: list[tuple[int, list[str], str]] = []

        def go(p: str = path, out: list[tuple[int, list[str], str]] = got) -> None:
            out.append(check(Path(p)))

        t = threading.Thread(target=go, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), f"{path}: blocked"
        code, lines, out = got[0]
        assert code == 2 and lines == [f"Error: {message}"], (path, out)
    # (the CLI's argument check refuses a directory first; the library says the same)
    with pytest.raises(InventoryError, match=r"dir\.yaml: is a directory; not an inventory$"):
        load(tmp_path / "dir.yaml")


def test_the_agent_and_the_console_script_say_the_same(tmp_path: Path) -> None:
    """The installed entry points, not just CliRunner: exit 2, one line, no traceback."""
    f = tmp_path / "bomb.yaml"
    f.write_text(alias_bomb())
    for cmd in (["netready", "inventory", "check", str(f)],
                ["netready-agent", "--inventory", str(f), "--once"],
                ["netready", "report", "--inventory", str(f)]):  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PATH": os.path.dirname(sys.executable) + ":"
                                + os.environ["PATH"]})  # fmt: skip
        assert p.returncode == 2, (cmd, p.stderr)
        errs = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
        assert len(errs) == 1 and f"{f}:6:10:" in errs[0] and "alias bomb" in errs[0], p.stderr
        assert "Traceback" not in p.stderr


def test_inventory_error_for_every_case_not_a_python_exception() -> None:
    """``loads`` (the library entry point) raises InventoryError for all of the above."""
    for _name, text, *_ in CASES:
        with pytest.raises(InventoryError):
            loads(text, "x.yaml")
