"""Lay out the installed package shape for mypy: ``.mypy-tree/netready/`` holds links to
``netready/*`` and, under the names the wheel gives them, to every other folder of
``[tool.setuptools.package-dir]`` (``netready/probes`` -> ``probes/``, ...).

mypy cannot follow setuptools' package-dir mapping nor an editable install's import hook, so
without this it either checks ``netready/`` alone (what ``make lint`` did until now: 30 of 129
modules) or checks the other folders file by file with every ``netready.probes...`` import
unresolved. ``make lint`` runs this, then ``mypy`` (``mypy_path = .mypy-tree`` in pyproject).
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".mypy-tree"


def main() -> None:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    if TREE.exists():
        shutil.rmtree(TREE)
    for pkg, src in sorted(dirs.items()):
        dest = TREE.joinpath(*pkg.split("."))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if pkg == "netready":  # the core's own folder: link its entries, the rest go inside it
            dest.mkdir()
            for f in (ROOT / src).iterdir():
                if f.name != "__pycache__":
                    (dest / f.name).symlink_to(os.path.relpath(f, dest))
        else:
            dest.symlink_to(os.path.relpath(ROOT / src, dest.parent))


if __name__ == "__main__":
    main()
