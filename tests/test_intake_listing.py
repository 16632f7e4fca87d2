"""What a pass costs in a burst: listings that do not re-stat files already in hand or confirmed
settled, per-watch indexes of waiting and busy files, and the next pass timed from a bound."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import time
from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.intake.detect import UNKNOWN, detect, list_candidates, next_pass_in, walk, walk_relative
from stationflow.engine.intake.model import BATCH_BYTES, BATCH_FILES, TrackedFile, Watch, cut_batches
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")


def _id(raw: bytes) -> str:
    return str(json.loads(raw)["id"]).lower()


def consistent(intake: Intake) -> None:
    """Every tracked file is in exactly one index: waiting (initial state) or busy (any other)."""
    for watch in intake._watches:
        tracked = set(watch.files.values())
        assert set(watch.waiting) | set(watch.busy) == tracked
        assert not set(watch.waiting) & set(watch.busy)
        assert all(f.state == watch.lifecycle.initial for f in watch.waiting)
        assert all(f.state != watch.lifecycle.initial for f in watch.busy)


def test_relative_paths_are_built_by_the_walk_as_relpath_would(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "a" / "b").mkdir(parents=True)
    (drop / "c").mkdir()
    for rel in ("top.json", "a/one.json", "a/b/two.json", "c/three.json", ".hidden.json"):
        (drop / rel).write_bytes(b"x")
    os.symlink(drop / "a" / "b", drop / "c" / "link-to-b")  # followed only with follow_inside
    os.symlink(drop / "top.json", drop / "c" / "top-link.json")
    for follow in (False, True):
        pairs = list(walk_relative(drop, True, [], [], follow))
        assert [rel for _, rel in pairs] == [os.path.relpath(e.path, drop) for e, _ in pairs]
        assert [e.path for e, _ in pairs] == [e.path for e in walk(drop, True, [], [], follow)]
        assert sorted(rel for _, rel in pairs) == sorted(["top.json", "a/one.json", "a/b/two.json", "c/three.json"])


@pytest.mark.parametrize("patterns", [["*.json"], ["*.JSON", "r?.csv"], ["[ab]*.txt", "*"], []])
def test_compiled_patterns_match_as_fnmatch(tmp_path: Path, patterns: list[str]) -> None:
    watch = Watch(IntakeSection(name="p", watch=str(tmp_path), converter="wsjf"), tmp_path / "data",
                  load_lifecycle("conversion"))
    names = ["a.json", "a.JSON", "r1.csv", "r12.csv", "b.txt", "c.txt", "x", ".json", "a.json.tmp"]
    for _ in range(2):  # compiled once, then reused; recompiled when the patterns change
        watch.patterns = list(patterns)
        assert [watch.matches(n) for n in names] == [any(fnmatch.fnmatch(n, p) for p in patterns) for n in names]
        patterns = patterns + ["*.tmp"]


def test_a_listing_does_not_stat_known_files_and_detect_uses_what_it_knew(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    section = IntakeSection(name="k", watch=str(drop), converter="wsjf", settle_ms=0)
    watch = Watch(section, tmp_path / "data", load_lifecycle("conversion"))
    watch.patterns = ["*.json"]
    for name in ("a.json", "b.json", "c.json"):
        (drop / name).write_bytes(b"12345")
    listing, walked = list_candidates(watch, False)
    assert walked and all(size == 5 for _, origin, _, size, _ in listing if origin == "watch")
    now = time.monotonic()
    taken = detect(watch, listing, walked, now, False, 1, set())
    assert [f.path.name for f in taken] == ["a.json"]  # one room: the others are confirmed settled, waiting
    assert [f.due for f in watch.waiting] == [True, True]
    known = {str(f.path) for f in watch.busy} | {str(f.path) for f in watch.waiting if f.due}
    (drop / "d.json").write_bytes(b"123")
    listing, walked = list_candidates(watch, False, known)
    sizes = {Path(p).name: size for p, origin, _, size, _ in listing if origin == "watch"}
    assert sizes == {"a.json": UNKNOWN, "b.json": UNKNOWN, "c.json": UNKNOWN, "d.json": 3}
    taken = detect(watch, listing, walked, time.monotonic(), False, 2, set())
    assert len(taken) == 2  # in listing order; the known ones with the size they were listed with before
    assert {f.path.name: f.size for f in taken}.items() <= {"b.json": 5, "c.json": 5, "d.json": 3}.items()
    assert len(watch.waiting) == 1 and set(watch.busy) >= set(taken)


async def test_a_confirmed_file_that_changes_before_it_is_taken_is_taken_with_its_new_content(tmp_path: Path) -> None:
    """b.json is confirmed settled but waits for room (max_in_flight 1); then it is rewritten. The
    listing that takes it does not stat it again: the copy's check finds the change, and b.json
    waits to settle again; its first content never reaches the spool."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    first, second = make_report_bytes(1, seed=61), make_report_bytes(2, seed=61, approx_bytes=2000)
    (drop / "a.json").write_bytes(make_report_bytes(0, seed=61))
    (drop / "b.json").write_bytes(first)
    section = IntakeSection(name="c", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION,
                        options=IntakeOptions(max_in_flight=1, fsync=False, notifications=False))
        try:
            assert await intake.scan_once() == 1  # a.json; b.json confirmed settled, no room
            consistent(intake)
            [waiting] = intake._watches[0].waiting
            assert waiting.path.name == "b.json" and waiting.due
            (drop / "b.json").write_bytes(second)
            assert await intake.scan_once() == 0  # taken with what it was listed with: the copy finds it changed
            consistent(intake)
            [waiting] = intake._watches[0].waiting
            assert not waiting.due and waiting.size == len(second)
            assert await intake.scan_once() == 1
            consistent(intake)
            assert not intake._watches[0].files
        finally:
            await intake.aclose()
        keys = set(spool.keys())
    assert _id(second) in keys and _id(first) not in keys
    assert list(drop.iterdir()) == []


def test_the_next_pass_is_timed_by_a_bound_found_again_only_once_it_passed(tmp_path: Path) -> None:
    section = IntakeSection(name="t", watch=str(tmp_path), converter="wsjf", settle_ms=4000)
    watch = Watch(section, tmp_path / "data", load_lifecycle("conversion"))
    assert next_pass_in([watch], 10.0, notified=False) == 10.0
    assert next_pass_in([watch], 10.0, notified=True) == 10.0  # nothing waits
    assert watch.next_due == math.inf
    now = time.monotonic()
    file = TrackedFile(watch, tmp_path / "f.json", "f.json", "watch", watch.lifecycle.initial, 1, 1, now)
    watch.track(file)  # lowers the bound
    assert watch.next_due == pytest.approx(now + 4.0)
    assert 3.0 < next_pass_in([watch], 10.0, notified=True) <= 4.01
    file.restart_settle(now - 3.9)  # as if it changed earlier: the bound only goes down
    assert 0 < next_pass_in([watch], 10.0, notified=True) <= 0.11
    file.restart_settle(now - 10.0)  # already due (waits for room): not what times the next pass
    watch.next_due = -math.inf  # passed: found again, over the waiting files
    assert next_pass_in([watch], 1.0, notified=True) == 1.0
    assert watch.next_due == math.inf
    file.fire("settle")
    assert file in watch.busy and file not in watch.waiting
    watch.forget(file)
    assert not watch.files and not watch.busy


def test_a_batch_holds_at_most_batch_bytes_of_sources_and_a_larger_file_goes_alone(tmp_path: Path) -> None:
    """Large sources: a batch's reports are in memory at once in three processes, so a batch stops
    at BATCH_BYTES; a file larger than that is a batch of its own; nothing is dropped or reordered."""
    watch = Watch(IntakeSection(name="b", watch=str(tmp_path), converter="wsjf"), tmp_path / "data",
                  load_lifecycle("conversion"))
    quarter = BATCH_BYTES // 4

    def files(*sizes: int) -> list[TrackedFile]:
        return [TrackedFile(watch, tmp_path / f"{i}.json", f"{i}.json", "watch", watch.roles.settled, size, 1, 0.0)
                for i, size in enumerate(sizes)]

    mixed = files(quarter, quarter, quarter, quarter, 1, BATCH_BYTES + 1, quarter, 2, 3)
    cut = list(cut_batches(mixed, BATCH_FILES))
    assert [[f.size for f in b] for b in cut] == [[quarter] * 4, [1], [BATCH_BYTES + 1], [quarter, 2, 3]]
    assert [f for b in cut for f in b] == mixed
    assert all(sum(f.size for f in b) <= BATCH_BYTES or len(b) == 1 for b in cut)
    small = files(*[1000] * (2 * BATCH_FILES + 3))
    assert [len(b) for b in cut_batches(small, BATCH_FILES)] == [BATCH_FILES, BATCH_FILES, 3]
    assert list(cut_batches([], BATCH_FILES)) == []


async def test_room_left_by_one_batch_goes_as_one_full_batch_while_another_works(tmp_path: Path) -> None:
    """Idle intake: a full batch of new files is split over both workers. One worker busy: they go
    as one batch (two halves would wait for the same worker, each paying its hops, record and fsyncs)."""
    section = IntakeSection(name="b", watch=str(tmp_path), converter="wsjf", settle_ms=0)
    full = BATCH_FILES
    with Spool(tmp_path / "data") as spool:
        intake = Intake([section], spool, tmp_path / "data", STATION, workers=2,
                        options=IntakeOptions(notifications=False))
        watch = intake._watches[0]
        files = [TrackedFile(watch, tmp_path / f"{i}.json", f"{i}.json", "watch", watch.roles.settled, 1, 1, 0.0)
                 for i in range(full)]
        try:
            assert [len(b) for b in intake._batches(files)] == [full // 2, full // 2]
            await intake._limiter.acquire()  # one batch at work
            assert [len(b) for b in intake._batches(files)] == [full]
            assert [len(b) for b in intake._batches(files + files[:8])] == [full, 8]
            intake._limiter.release()
            assert [len(b) for b in intake._batches(files[:6])] == [6]  # a quarter batch at least
            assert intake.options.max_in_flight == 2 * full  # a full batch for each of the two workers
        finally:
            await intake.aclose()
