"""Watch folders with symbolic links in them, for the tests that a link never leads the service
out of its watch folder (tests/test_watch_links*.py).

Import it like the other shared test pieces: ``from tests.helpers_links import ...``.
"""

from __future__ import annotations

from pathlib import Path

from stationflow.engine.devtools.samples import make_report_bytes

VICTIM = "someone-elses.json"


def watch_and_outside(root: Path, *subfolders: str) -> tuple[Path, Path, Path]:
    """``root/drop`` (the watch folder, with ``subfolders``) and ``root/outside`` beside it holding a
    valid report of someone else's: (drop, outside, that file). A link that leads the service out of
    its folder would take, move or delete it."""
    drop, outside = root / "drop", root / "outside"
    drop.mkdir()
    for name in subfolders:
        (drop / name).mkdir(parents=True)
    outside.mkdir()
    victim = outside / VICTIM
    victim.write_bytes(make_report_bytes(7, seed=9))
    return drop, outside, victim


def assert_outside_untouched(outside: Path) -> None:
    """The folder outside holds its one file, as it was made: nothing taken, moved, deleted or added."""
    victim = outside / VICTIM
    assert victim.exists() and victim.read_bytes() == make_report_bytes(7, seed=9)
    assert sorted(p.name for p in outside.iterdir()) == [VICTIM]
