"""Inventory validation: every bad input gives file:line:col, the field path, exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from netready.cli import cli
from netready.errors import InventoryError, SecretError
from netready.inventory import load, loads

GOOD = """\
version: 1
sites:
  - ods: Y81001
    name: Riverside Surgery
    type: gp_practice
    icb: QHM
    link: {tech: adsl, down_mbps: 8, up_mbps: 0.8}
    router:
      host: 192.0.2.10
      snmp: {version: "2c", community: env:SNMP_COMMUNITY}
  - ods: Y81002
    name: Moorside
    type: gp_practice
    icb: QHM
    link: {tech: fttc, down_mbps: 40, up_mbps: 10}
"""


def run_check(tmp_path: Path, text: str) -> tuple[int, str, str]:
    f = tmp_path / "inv.yaml"
    f.write_text(text)
    r = CliRunner().invoke(cli, ["inventory", "check", str(f)])
    return r.exit_code, r.stdout, r.stderr


def test_example_inventory_is_valid(example_inventory: Path) -> None:
    inv = load(example_inventory)
    techs = {s.link.tech for s in inv.sites}
    assert {"adsl", "fttc", "fttp", "ethernet"} <= techs
    assert 6 <= len(inv.sites) <= 12
    assert any(s.type == "hospital" and s.link.tech == "ethernet" for s in inv.sites)


def test_good_inventory_cli_ok(tmp_path: Path) -> None:
    code, out, err = run_check(tmp_path, GOOD)
    assert code == 0, err
    assert "2 sites" in out


@pytest.mark.parametrize(
    ("needle", "replacement", "line", "col", "path", "message"),
    [
        # a typo'd key
        (
            "    icb: QHM\n    link: {tech: adsl",
            "    icb: QHM\n    lnik: 1\n    link: {tech: adsl",
            7,
            5,
            "sites[0].lnik",
            "unknown key",
        ),
        # bad ODS code format
        ("ods: Y81002", "ods: y81-002", 11, 10, "sites[1].ods", "not an ODS code"),
        # unknown access technology
        ("tech: fttc", "tech: dialup", 15, 18, "sites[1].link.tech", "'dialup' is not one of"),
        # negative speed
        ("down_mbps: 40", "down_mbps: -40", 15, 35, "sites[1].link.down_mbps", "greater than 0"),
        # absurd speed (100 Tbit/s)
        (
            "up_mbps: 10",
            "up_mbps: 100000000",
            15,
            48,
            "sites[1].link.up_mbps",
            "less than or equal",
        ),
        # a secret given inline
        (
            "community: env:SNMP_COMMUNITY",
            "community: public",
            10,
            40,
            "sites[0].router.snmp.community",
            "secret given inline",
        ),
        # duplicate ODS code
        ("ods: Y81002", "ods: Y81001", 11, 10, "sites[1].ods", "duplicate ODS code Y81001"),
    ],
)
def test_bad_inventory(
    tmp_path: Path, needle: str, replacement: str, line: int, col: int, path: str, message: str
) -> None:
    assert needle in GOOD
    code, _out, err = run_check(tmp_path, GOOD.replace(needle, replacement, 1))
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    m = re.match(r"Error: (.+?):(\d+):(\d+): (\S+): (.+)$", lines[0])
    assert m, lines[0]
    assert m.group(1).endswith("inv.yaml")
    assert (int(m.group(2)), int(m.group(3))) == (line, col), lines[0]
    assert m.group(4) == path
    assert message in m.group(5)


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    bad = GOOD.replace("tech: fttc", "tech: dialup").replace("ods: Y81001", "ods: nope")
    code, _, err = run_check(tmp_path, bad)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert ":3:10: sites[0].ods" in lines[0] or ":3:10: sites[0].ods" in lines[1]


def test_malformed_yaml(tmp_path: Path) -> None:
    code, _, err = run_check(tmp_path, GOOD.replace("icb: QHM\n    link", "icb: [QHM\n    link", 1))
    assert code == 2
    assert re.search(r"inv\.yaml:\d+:\d+: malformed YAML", err), err
    assert "Traceback" not in err


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    code, _, err = run_check(
        tmp_path, GOOD.replace("    icb: QHM\n", "    icb: QHM\n    icb: QWE\n", 1)
    )
    assert code == 2
    assert "inv.yaml:7:5: sites[0].icb: duplicate key" in err


def test_missing_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["inventory", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"Error: {tmp_path / 'nope.yaml'}: file not found"


def test_not_a_mapping(tmp_path: Path) -> None:
    code, _, err = run_check(tmp_path, "- just\n- a list\n")
    assert code == 2 and "inv.yaml:1:1" in err


def test_secret_resolved_at_use_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = loads(GOOD)
    ref = inv.sites[0].router.snmp.community  # type: ignore[union-attr]
    assert str(ref) == "env:SNMP_COMMUNITY"
    with pytest.raises(SecretError, match="SNMP_COMMUNITY is not set"):
        ref.resolve()
    monkeypatch.setenv("SNMP_COMMUNITY", "s3cr3t-value")
    assert ref.resolve() == "s3cr3t-value"
    # the model's dump and repr show the reference, not the value
    dumped = inv.model_dump_json()
    assert "s3cr3t-value" not in dumped and "env:SNMP_COMMUNITY" in dumped
    secret_file = tmp_path / "community"
    secret_file.write_text("from-a-file\n")
    inv2 = loads(GOOD.replace("env:SNMP_COMMUNITY", f"file:{secret_file}"))
    assert inv2.sites[0].router.snmp.community.resolve() == "from-a-file"  # type: ignore[union-attr]


def test_error_is_inventory_error_not_traceback() -> None:
    with pytest.raises(InventoryError) as ei:
        loads("sites: []\n", "x.yaml")
    assert ei.value.problems and ei.value.problems[0].startswith("x.yaml:1:")


def test_cli_entry_point_exit_code(tmp_path: Path) -> None:
    """The installed console script, not just CliRunner: exit code 2 and no traceback."""
    f = tmp_path / "inv.yaml"
    f.write_text(GOOD.replace("tech: fttc", "tech: dialup"))
    p = subprocess.run(
        [sys.executable, "-m", "netready.cli", "inventory", "check", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "sites[1].link.tech" in p.stderr
