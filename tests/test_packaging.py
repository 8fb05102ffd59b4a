"""The wheel holds every package of the repository.

``pyproject.toml`` lists the packages by hand (``[tool.setuptools] packages``), because the
``package-dir`` mapping (``netready.probes`` is ``probes/``) is something setuptools' package
finder cannot do. In a checkout the editable install finds a package missing from that list
anyway (the folder is on the mapped path), so every test passes, and the wheel silently ships
without it: a new plugin folder would be missing from every real install. This test walks
the mapped folders and compares.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
SKIP = {"__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def folders() -> dict[str, Path]:
    """Installed package name -> folder, for every folder below a ``package-dir`` root that
    holds Python files (a folder of Python files without ``__init__.py`` is reported too: it
    would be a namespace package, which the list cannot name)."""
    out: dict[str, Path] = {}
    for pkg, rel in CONF["package-dir"].items():
        root = ROOT / rel
        for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            parts = d.relative_to(root).parts
            if SKIP & set(parts) or any(p.startswith(".") for p in parts):
                continue
            if (d / "__init__.py").exists() or any(d.glob("*.py")):
                name = ".".join((pkg, *parts))
                # a sub-folder that is itself mapped (netready.cli under netready/) counts once
                out.setdefault(name, d)
    return out


def test_every_package_folder_is_in_the_packages_list() -> None:
    listed = set(CONF["packages"])
    found = folders()
    missing = sorted(n for n in found if n not in listed)
    assert not missing, (
        "package folders missing from pyproject.toml's [tool.setuptools] packages (the wheel "
        "would leave them out): " + ", ".join(f"{n} ({found[n].relative_to(ROOT)})" for n in missing)
    )
    stale = sorted(listed - set(found))
    assert not stale, f"pyproject.toml lists packages with no folder: {stale}"


def test_every_package_folder_has_an_init() -> None:
    bare = [str(d.relative_to(ROOT)) for d in folders().values() if not (d / "__init__.py").exists()]
    assert not bare, f"folders of Python files without __init__.py: {bare}"


def test_the_walk_finds_nested_packages() -> None:
    """The guard itself: the walk reaches a plugin folder's own sub-package (the ssh
    collector's TextFSM templates) and the folders mapped into the package."""
    found = folders()
    assert found["netready.collectors.ssh.templates"] == ROOT / "collectors" / "ssh" / "templates"
    assert found["netready.probes.rtt"] == ROOT / "probes" / "rtt"
    assert found["netready.cli"] == ROOT / "netready" / "cli"


def test_every_top_level_package_is_mapped() -> None:
    """A new top-level folder (``servers/`` was one) must be in ``package-dir`` too: the walk
    above starts from the mapped folders only, so an unmapped one would drop out unseen.
    bench/ and tests/ are not installed (they have no ``__init__.py``)."""
    mapped = {ROOT / rel for rel in CONF["package-dir"].values()}
    top = {d for d in ROOT.iterdir() if d.is_dir() and (d / "__init__.py").exists()}
    assert ROOT / "servers" in top
    unmapped = sorted(str(d.relative_to(ROOT)) for d in top - mapped)
    assert not unmapped, f"top-level packages not in pyproject's package-dir: {unmapped}"
