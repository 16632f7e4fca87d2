"""Chaos suite options: ``--long`` (or ``STATIONFLOW_CHAOS_LONG=1``) for soak runs.

The quick form is what CI runs. ``pytest tests/chaos --long -s`` multiplies the reports, kills,
restart cycles and outage lengths by 10 and prints each scenario's figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stationflow.engine.devtools.emulator import Emulator
from tests.chaos.harness import Station


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> int:
    """1 for the quick form, 10 for the soak form."""
    try:
        long_run = bool(request.config.getoption("--long"))
    except ValueError:  # the option was not registered (this conftest was not an initial one)
        long_run = False
    return 10 if long_run or os.environ.get("STATIONFLOW_CHAOS_LONG") == "1" else 1


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    server = Emulator(port=0, seed=7)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stations() -> Iterator[list[Station]]:
    """Register every Station here: none outlives its test, whatever happened."""
    made: list[Station] = []
    yield made
    for station in made:
        station.close()
