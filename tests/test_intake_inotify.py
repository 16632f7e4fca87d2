"""inotify read on intake's event loop (Linux): what wakes intake, and what intake's own work does not."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake import Intake, IntakeOptions, inotify
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def settle_events() -> None:
    """Let the loop run its reader callback for whatever the kernel queued."""
    for _ in range(5):
        await anyio.sleep(0.02)


async def test_a_new_or_closed_file_wakes_and_intakes_own_work_does_not(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "old.json").write_bytes(b"{}")
    wakes = Wakes()
    assert inotify.available()
    notifier = inotify.InotifyNotifier(wakes)
    notifier.start([(drop, False, [])])
    try:
        assert notifier.watching == {str(drop): "notify"}
        await settle_events()
        assert wakes.count == 0
        # Intake's own work: reading a file, renaming it to a hidden (claimed) name, removing it.
        with open(drop / "old.json", "rb") as fh:
            fh.read()
        os.rename(drop / "old.json", drop / ".stationflow-0123.taking")
        os.unlink(drop / ".stationflow-0123.taking")
        (drop / ".hidden.tmp").write_bytes(b"x")  # never a candidate either
        await settle_events()
        assert wakes.count == 0
        # A writer's file: created and closed after writing (its size and mtime recorded then).
        (drop / "new.json").write_bytes(b"{1}")
        await settle_events()
        assert wakes.count >= 1
        st = os.stat(drop / "new.json")
        assert notifier.closed_as(str(drop / "new.json"), st.st_size, st.st_mtime_ns)
        assert not notifier.closed_as(str(drop / "new.json"), st.st_size + 1, st.st_mtime_ns)
        # Moved in whole from elsewhere (no close in the folder): wakes too.
        before = wakes.count
        (tmp_path / "staged.json").write_bytes(b"{2}")
        os.rename(tmp_path / "staged.json", drop / "moved.json")
        await settle_events()
        assert wakes.count > before
    finally:
        notifier.stop()
    notifier.stop()  # twice: nothing left to do


async def test_recursive_watches_follow_new_folders_but_not_excluded_or_hidden_ones(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "a").mkdir(parents=True)
    (drop / "data").mkdir()
    wakes = Wakes()
    notifier = inotify.InotifyNotifier(wakes)
    notifier.start([(drop, True, [drop / "data"])])
    try:
        (drop / "data" / "copy.json").write_bytes(b"x")  # the excluded data dir: not watched
        (drop / ".hid").mkdir()
        await settle_events()
        assert wakes.count == 0
        (drop / ".hid" / "x.json").write_bytes(b"x")  # inside a hidden folder: not watched
        await settle_events()
        assert wakes.count == 0
        (drop / "a" / "f.json").write_bytes(b"x")  # a folder there at start
        await settle_events()
        assert wakes.count >= 1
        (drop / "b" / "c").mkdir(parents=True)  # made later, nested: both watched from now on
        await settle_events()
        nested = drop / "b" / "c" / "g.json"
        nested.write_bytes(b"xy")
        await settle_events()
        st = os.stat(nested)
        assert notifier.closed_as(str(nested), st.st_size, st.st_mtime_ns)
    finally:
        notifier.stop()


async def test_a_watch_folder_that_goes_away_is_said_to_be_polled(tmp_path: Path) -> None:
    drop, missing = tmp_path / "drop", tmp_path / "missing"
    drop.mkdir()
    notifier = inotify.InotifyNotifier(Wakes())
    notifier.start([(drop, False, []), (missing, False, [])])
    try:
        assert notifier.watching[str(drop)] == "notify"
        assert notifier.watching[str(missing)].startswith("polling (")
        drop.rmdir()
        await settle_events()
        assert notifier.watching[str(drop)] == "polling (the folder was removed or moved)"
    finally:
        notifier.stop()


async def test_a_watch_folder_renamed_is_said_to_be_polled_and_a_renamed_sub_folder_stays_watched(
        tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    wakes = Wakes()
    notifier = inotify.InotifyNotifier(wakes)
    notifier.start([(drop, True, [])])
    try:
        (drop / "sub").rename(drop / "renamed")
        await settle_events()
        assert notifier.watching[str(drop)] == "notify"
        (drop / "renamed" / "f.json").write_bytes(b"xyz")
        await settle_events()
        st = os.stat(drop / "renamed" / "f.json")
        assert notifier.closed_as(str(drop / "renamed" / "f.json"), st.st_size, st.st_mtime_ns)
        drop.rename(tmp_path / "elsewhere")
        await settle_events()
        assert notifier.watching[str(drop)] == "polling (the folder was removed or moved)"
        before = wakes.count
        (tmp_path / "elsewhere" / "g.json").write_bytes(b"x")  # not ours any more
        await settle_events()
        assert wakes.count == before
    finally:
        notifier.stop()


def test_not_available_outside_an_event_loop() -> None:
    assert inotify.available() is False  # no running asyncio loop: watchdog's thread serves instead


@pytest.mark.parametrize("backend", ["inotify", "watchdog"])
async def test_a_file_in_a_folder_made_after_start_is_taken_without_waiting_for_a_poll(
        tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recursive watch, poll interval 10 s: a file closed in a sub-folder made after start is taken
    at once, through either backend."""
    if backend == "watchdog":
        monkeypatch.setattr(inotify, "available", lambda: False)
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    section = IntakeSection(name="r", watch=str(drop), converter="wsjf", settle_ms=5000, after="delete",
                            recursive=True)
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(poll_interval_s=10.0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(30):
                while intake.status()["intakes"]["r"]["notifications"] != "notify" or not intake.status()["workers"]["started"]:
                    await anyio.sleep(0.01)
            assert isinstance(intake._notifier, inotify.InotifyNotifier) == (backend == "inotify")
            (drop / "line1" / "cell2").mkdir(parents=True)
            await anyio.sleep(0.5)  # the new folders' watches are set (watchdog: in its thread)
            started = time.monotonic()
            (drop / "line1" / "cell2" / "r.json").write_bytes(make_report_bytes(7, seed=41))
            with anyio.fail_after(4.5):  # below settle_ms (5 s) and the poll interval (10 s)
                while len(spool.keys()) < 1 or (drop / "line1" / "cell2" / "r.json").exists():
                    await anyio.sleep(0.01)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()
        await intake.aclose()
    assert took < 4.5


@pytest.mark.parametrize("same_mtime", [False, True])
async def test_a_file_seen_half_written_is_taken_when_its_writer_closes_it_not_at_the_next_listing(
        tmp_path: Path, same_mtime: bool) -> None:
    """The listing woken by the file's creation sees it half written; its writer then closes it.
    It is taken as it was at that close, at once — not after settle_ms (5 s) or the next listing
    (poll interval 10 s). A file still open is not taken meanwhile. Also when the rest was written
    within the same mtime tick (forced here): the close is newer because it was noted later."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    section = IntakeSection(name="h", watch=str(drop), converter="wsjf", settle_ms=5000, after="delete")
    raw = make_report_bytes(3, seed=43)
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(poll_interval_s=10.0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(30):
                while intake.status()["intakes"]["h"]["notifications"] != "notify" or not intake.status()["workers"]["started"]:
                    await anyio.sleep(0.01)
            with open(drop / "r.json", "wb") as out:
                out.write(raw[:100])
                out.flush()
                with anyio.fail_after(5):  # seen, half written
                    while not intake._watches[0].files:
                        await anyio.sleep(0.005)
                await anyio.sleep(0.3)  # passes meanwhile (woken by the writes) take nothing
                assert spool.keys() == []
                out.write(raw[100:])
                if same_mtime:
                    out.flush()
                    seen = intake._watches[0].files[str(drop / "r.json")].mtime_ns
                    os.utime(out.fileno(), ns=(seen, seen))
            closed = time.monotonic()
            with anyio.fail_after(4):
                while (drop / "r.json").exists():
                    await anyio.sleep(0.005)
            took = time.monotonic() - closed
            tg.cancel_scope.cancel()
        await intake.aclose()
        assert len(spool.keys()) == 1 and spool.read(spool.keys()[0])
    assert took < 4.0
