"""Shared fixtures: paths to the sample files and small helpers for spool tests."""

from __future__ import annotations

import os
import re
import zlib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
REPORTS = FIXTURES / "reports"
SHARED = ROOT.parent / "shared"

_NAME = re.compile(r"^(?P<key>[^.]+)\.(?P<crc>[0-9a-f]{8})\.json$")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="chaos suite (tests/chaos): soak form, 10x the reports, kills and outage lengths")


#: Test modules that start real service processes, the emulator and workers, or run long loops:
#: marked ``slow`` (``-m "not slow"`` leaves them out of a quick local run).
_SLOW_MODULES = {"test_service", "test_odd_names", "test_full_disk_start", "test_intake_races", "test_watch_links",
                 "test_control_submit", "test_demo", "test_bench", "test_spool_crash", "test_emulator", "test_intake",
                 "test_uploader", "test_supervisor", "test_bundle", "test_windows_sim", "test_intake_notify",
                 "test_health"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by place: tests/chaos → ``chaos`` (and ``slow``), test_tk_* → ``tk``, _SLOW_MODULES → ``slow``."""
    for item in items:
        path = Path(str(item.fspath))
        if "chaos" in path.parts:
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.slow)
        if path.stem.startswith("test_tk_"):
            item.add_marker(pytest.mark.tk)
        if path.stem in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def spool_files(data_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """Read the spool straight off the disk (not through the index): key -> [(state, path)]."""
    found: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    root = data_dir / "spool"
    for state_dir in root.iterdir():
        if not state_dir.is_dir() or state_dir.name in ("tmp", "meta"):
            continue
        for entry in os.scandir(state_dir):
            m = _NAME.match(entry.name)
            assert m, f"unexpected file {entry.path}"
            found[m["key"]].append((state_dir.name, Path(entry.path)))
    return found


def assert_whole_once(data_dir: Path, accepted: dict[str, bytes]) -> dict[str, str]:
    """The one rule: every accepted report is in exactly one state, byte for byte. Returns key -> state."""
    files = spool_files(data_dir)
    states = {}
    for key, raw in accepted.items():
        places = files.get(key, [])
        assert len(places) == 1, f"report {key} found in {len(places)} places: {places}"
        state, path = places[0]
        data = path.read_bytes()
        assert data == raw, f"report {key} in {state} is not whole"
        assert f"{zlib.crc32(data) & 0xFFFFFFFF:08x}" in path.name
        states[key] = state
    return states
