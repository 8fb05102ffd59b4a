"""Shared fixtures: a real InfluxDB, fresh databases, the example inventory."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from influxd import Influxd  # noqa: E402

# Subprocess tests run the installed console scripts (netready, netready-agent) of this venv.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    """One real influxd (Debian influxdb 1.6) per test session, on a free loopback port."""
    srv = Influxd().start()
    yield srv
    srv.close()


@pytest.fixture
def influxdb(influxd: Influxd) -> Iterator[tuple[str, str]]:
    """(url, database): a fresh, empty database in the session's influxd."""
    name = f"t{next(_db_counter)}"
    influxd.create_db(name)
    yield influxd.url, name
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def example_inventory() -> Path:
    return ROOT / "site_inventory.yaml"
