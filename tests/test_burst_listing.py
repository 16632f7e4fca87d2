"""A burst of files drains without the watch folder being listed at every pass (issue 18): each
listing stats every file still waiting, so listing per pass made a burst cost O(files²)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.intake import intake as intake_module
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")


@pytest.mark.parametrize("notifications", [True, False])
async def test_a_burst_is_listed_about_once_per_poll_interval(tmp_path: Path, notifications: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, drop, staging = tmp_path / "data", tmp_path / "drop", tmp_path / "staging"
    drop.mkdir()
    staging.mkdir()
    n = 400
    for i in range(n):
        (staging / f"r{i:04}.json").write_bytes(make_report_bytes(i, seed=5))
    listings: list[float] = []
    real = intake_module.list_candidates

    def counted(*args: object, **kwargs: object) -> object:
        listings.append(time.monotonic())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(intake_module, "list_candidates", counted)
    section = IntakeSection(name="b", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    poll = 0.5
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION,
                        options=IntakeOptions(poll_interval_s=poll, max_in_flight=16, notifications=notifications))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(60):
                while not intake.status()["workers"]["started"]:
                    await anyio.sleep(0.01)
            for path in staging.iterdir():
                path.rename(drop / path.name)
            started, before = time.monotonic(), len(listings)
            with anyio.fail_after(300):
                while len(spool.keys()) < n or any(drop.iterdir()):  # stored, sources removed
                    await anyio.sleep(0.01)
            took = time.monotonic() - started
            during = len(listings) - before
            tg.cancel_scope.cancel()
        await intake.aclose()
        stored = len(spool.keys())
    assert stored == n
    # One listing per poll interval while the burst drains, plus the ones that find new files
    # (the burst arriving) and the last ones; listing at every pass made hundreds (one per ~5 ms).
    assert during <= took / poll + 10, f"{during} listings in {took:.1f} s for {n} files: {[round(t - started, 3) for t in listings[before:]]}"


async def _notifying_and_started(intake: Intake, name: str) -> None:
    """Until the intake's notifications are on and its workers started, and its first listing done."""
    with anyio.fail_after(60):
        while intake.status()["intakes"][name]["notifications"] != "notify" or \
                not intake.status()["workers"]["started"]:
            await anyio.sleep(0.01)
    await anyio.sleep(0.2)  # the first listing (at start) is done


async def test_a_file_written_hidden_then_renamed_is_taken_without_waiting_for_a_poll(tmp_path: Path) -> None:
    """Events on hidden names and the folder's own "modified" wake nothing; the rename to a
    visible name does (inotify on Linux, watchdog elsewhere: both filter hidden names) (the poll interval here is 30 s: only a notification can explain a take)."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    section = IntakeSection(name="h", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(poll_interval_s=30.0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            await _notifying_and_started(intake, "h")
            hidden = drop / ".r1.json.part"
            hidden.write_bytes(make_report_bytes(1, seed=6))
            await anyio.sleep(0.5)
            assert spool.keys() == [] and hidden.exists()  # a hidden name is never taken
            hidden.rename(drop / "r1.json")
            with anyio.fail_after(10):  # far below the 30 s poll interval
                while len(spool.keys()) < 1 or (drop / "r1.json").exists():
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await intake.aclose()


async def test_files_notified_while_a_burst_drains_are_listed_when_the_seen_ones_run_out(tmp_path: Path) -> None:
    """A second wave arrives while the first one's files (seen at the last listing) are still being
    taken: the passes its notifications wake take more seen files without listing (a burst is not
    listed at every pass). Once the seen files are all in hand, the folder is listed at once —
    with a 30 s poll interval, a second wave left to the next poll stalled that long."""
    data, drop, staging = tmp_path / "data", tmp_path / "drop", tmp_path / "staging"
    drop.mkdir()
    staging.mkdir()
    for i in range(80):
        (staging / f"r{i:04}.json").write_bytes(make_report_bytes(i, seed=7))
    section = IntakeSection(name="w", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION,
                        options=IntakeOptions(poll_interval_s=30.0, max_in_flight=16))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            await _notifying_and_started(intake, "w")
            names = sorted(p.name for p in staging.iterdir())
            for name in names[:40]:
                (staging / name).rename(drop / name)
            with anyio.fail_after(20):
                while not spool.keys():  # the first wave is being taken, most of it still waiting
                    await anyio.sleep(0.001)
            for name in names[40:]:
                (staging / name).rename(drop / name)
            started = time.monotonic()
            with anyio.fail_after(25):  # below the 30 s poll interval: only a listing can find the second wave
                while len(spool.keys()) < 80 or any(drop.iterdir()):
                    await anyio.sleep(0.01)
            took = time.monotonic() - started
            tg.cancel_scope.cancel()
        await intake.aclose()
        assert len(spool.keys()) == 80
    assert took < 15, f"the second wave took {took:.1f} s"
