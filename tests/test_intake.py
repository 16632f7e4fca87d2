"""Intake on real folders with real worker processes: the source is never lost.

Invariants checked throughout: a source file leaves its watch folder only once every report of it
is in the spool; a full spool leaves sources in place and the intake resumes by itself; a file
still being written is not taken until it has settled; ``kill -9`` mid-conversion loses nothing and
duplicates nothing (same ids after a restart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.cli import reprocess as cli_reprocess
from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.convert.api import deterministic_id
from stationflow.engine.intake import Intake, IntakeOptions, prune_archive
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection
from tests.conftest import FIXTURES, REPORTS, ROOT, spool_files

INPUTS = FIXTURES / "inputs"
MISBEHAVING = INPUTS / "converters" / "misbehaving.py"
STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")
FAST = IntakeOptions(poll_interval_s=0.05, full_retry_s=0.1, post_retry_s=0.1, memory_limit_bytes=512 * 1024**2)
SAMPLE = (REPORTS / "uut-wsjf-export.json").read_bytes()
SAMPLE_ID = "33a2d408-3fc8-480b-b554-6866c77fd91c"


def section(name: str, watch: Path, converter: str = "wsjf", **kw: Any) -> IntakeSection:
    watch.mkdir(parents=True, exist_ok=True)
    return IntakeSection(name=name, watch=str(watch), converter=converter, **{"settle_ms": 0, **kw})


def intake_for(spool: Spool, data: Path, *sections: IntakeSection, **kw: Any) -> Intake:
    return Intake(list(sections), spool, data, STATION, options=kw.pop("options", FAST), **kw)


async def scans(spool: Spool, data: Path, *sections: IntakeSection, passes: int = 1,
                **kw: Any) -> tuple[int, dict]:
    intake = intake_for(spool, data, *sections, **kw)
    try:
        done = 0
        for _ in range(passes):
            done += await intake.scan_once()
        return done, intake.status()
    finally:
        await intake.aclose()


def report(i: int) -> bytes:
    return make_report_bytes(i, seed=11, approx_bytes=1500)


def rid(raw: bytes) -> str:
    return json.loads(raw)["id"]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def today_archive(data: Path, intake: str) -> Path:
    return data / "archive" / date.today().isoformat() / intake


# ---------------------------------------------------------------------------------------- the path

async def test_files_become_reports_then_the_source_is_archived(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(SAMPLE)
    shutil.copy(INPUTS / "fct-sample.csv", drop / "b.csv")
    (drop / ".hidden.json").write_bytes(SAMPLE)  # hidden files are not taken
    with Spool(data) as spool:
        done, status = await scans(spool, data, section("ict", drop), section("fct", drop, "csv", after="delete"))
        assert done == 2
        assert SAMPLE_ID in spool.keys("pending") and len(spool.keys()) == 2
        assert spool.read(SAMPLE_ID) == SAMPLE  # the file's own bytes
        assert spool.info(SAMPLE_ID).source == str(drop / "a.json")
    archived = today_archive(data, "ict") / f"{hashlib.sha256(SAMPLE).hexdigest()}-a.json"
    assert archived.read_bytes() == SAMPLE
    assert files_in(drop) == [".hidden.json"]
    for name in ("ict", "fct"):
        assert files_in(data / "intake" / name / "copies") == [] and files_in(data / "intake" / name / "jobs") == []
    ict = status["intakes"]["ict"]
    assert ict["counts"]["done"] == 1 and ict["patterns"] == ["*.json"] and ict["reports_accepted"] == 1
    assert status["intakes"]["fct"]["patterns"] == ["*.csv"]  # the converter's patterns when none are set


async def test_move_never_overwrites_and_keeps_subfolders(tmp_path: Path) -> None:
    data, drop, done_dir = tmp_path / "data", tmp_path / "drop", tmp_path / "done"
    (drop / "line2").mkdir(parents=True)
    (done_dir / "line2").mkdir(parents=True)
    (drop / "line2" / "r.json").write_bytes(report(1))
    (done_dir / "line2" / "r.json").write_bytes(b"an older file of the same name")
    (drop / "top.json").write_bytes(report(2))
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("m", drop, after="move", move_to=str(done_dir), recursive=True))
        assert done == 2 and len(spool.keys()) == 2
    assert files_in(drop) == []
    assert files_in(done_dir) == ["line2/r.json", "line2/r~1.json", "top.json"]
    assert (done_dir / "line2" / "r.json").read_bytes() == b"an older file of the same name"
    assert (done_dir / "line2" / "r~1.json").read_bytes() == report(1)


async def test_move_to_another_file_system_copies_whole_then_removes(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename across file systems fails with EXDEV: the source is copied whole, then removed."""
    import errno as errno_module

    data, drop, done_dir = tmp_path / "data", tmp_path / "drop", tmp_path / "done"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(1))
    real_replace = os.replace

    def cross_device(src, dst, *args, **kwargs):
        if Path(src).parent == drop and Path(dst).parent == done_dir:
            raise OSError(errno_module.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", cross_device)
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("m", drop, after="move", move_to=str(done_dir)))
        assert done == 1 and rid(report(1)) in spool.keys()
    assert files_in(drop) == []
    assert files_in(done_dir) == ["a.json"]  # no temp file left beside it
    assert (done_dir / "a.json").read_bytes() == report(1)


async def test_move_to_inside_the_watch_folder_is_not_watched(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(1))
    with Spool(data) as spool:
        sec = section("m", drop, after="move", move_to=str(drop / "done"), recursive=True)
        done, _ = await scans(spool, data, sec, passes=3)
        assert done == 1 and len(spool.keys()) == 1
    assert files_in(drop) == ["done/a.json"]


async def test_delete_and_keep_and_a_kept_file_that_changes(tmp_path: Path) -> None:
    data, d1, d2 = tmp_path / "data", tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "a.json").write_bytes(report(1))
    (d2 / "k.csv").write_bytes((INPUTS / "fct-sample.csv").read_bytes())
    sections = (section("del", d1, after="delete"), section("keep", d2, "csv", after="keep"))
    with Spool(data) as spool:
        done, _ = await scans(spool, data, *sections)
        assert done == 2 and len(spool.keys()) == 2
        assert files_in(d1) == [] and files_in(d2) == ["k.csv"]
        kept = json.loads((data / "intake" / "keep" / "kept.json").read_bytes())
        assert list(kept) == [str(d2 / "k.csv")]
        # A restart remembers it: not converted twice.
        done, _ = await scans(spool, data, *sections, passes=2)
        assert done == 0 and len(spool.keys()) == 2
        # The equipment rewrites it with a new result: that is new content, converted again.
        (d2 / "k.csv").write_text((INPUTS / "fct-sample.csv").read_text().replace("3.31", "3.29"))
        done, _ = await scans(spool, data, *sections)
        assert done == 1 and len(spool.keys()) == 3
        assert files_in(d2) == ["k.csv"]
        # A bad file with after: keep is left in place too; its copy and reason go to the error folder.
        (d2 / "bad.csv").write_text("sn,step\n")
        done, _ = await scans(spool, data, *sections, passes=2)
        assert done == 1 and files_in(d2) == ["bad.csv", "k.csv"]
        assert files_in(data / "rejected" / "keep") == ["bad.csv", "bad.csv.error.txt"]
        assert "left in place (after: keep)" in (data / "rejected" / "keep" / "bad.csv.error.txt").read_text()


# ---------------------------------------------------------------------------------------- bad input

async def test_bad_inputs_go_to_the_error_folder_with_the_reason(tmp_path: Path) -> None:
    data, dj, dx, dc = tmp_path / "data", tmp_path / "json", tmp_path / "xml", tmp_path / "csv"
    for d in (dj, dx, dc):
        d.mkdir()
    for name in ("truncated.json", "garbage.json", "empty.json", "utf16.json"):
        shutil.copy(INPUTS / name, dj / name)
    (dj / "huge.json").write_bytes(b"[" + b" " * 70_000 + b"]")  # over max_file_bytes
    (dj / "good.json").write_bytes(SAMPLE)
    shutil.copy(INPUTS / "invalid.xml", dx / "invalid.xml")
    shutil.copy(INPUTS / "latin1.csv", dc / "latin1.csv")
    sections = (section("j", dj, max_file_bytes=60_000), section("x", dx, "wsxf"), section("c", dc, "csv"))
    with Spool(data) as spool:
        done, status = await scans(spool, data, *sections)
        assert done == 8
        assert spool.keys() == [SAMPLE_ID]  # nothing else reached the spool
    expected = {"j": {"truncated.json": "not valid JSON", "garbage.json": "UTF-16 or binary|not a WSJF",
                      "empty.json": "the file is empty", "utf16.json": "not UTF-8",
                      "huge.json": "more than max_file_bytes"},
                "x": {"invalid.xml": "not well-formed XML"}, "c": {"latin1.csv": "arguments.encoding"}}
    for intake, cases in expected.items():
        folder = data / "rejected" / intake
        assert files_in(folder) == sorted([*cases, *(f"{n}.error.txt" for n in cases)])
        for name, reason in cases.items():
            original = INPUTS / name if (INPUTS / name).exists() else None
            if original:
                assert (folder / name).read_bytes() == original.read_bytes()  # moved whole, never changed
            text = (folder / f"{name}.error.txt").read_text()
            for label in ("file:", "converter:", "time:", "reason:", "reprocess --rejected"):
                assert label in text
            assert any(r in text for r in reason.split("|")), text
        assert status["intakes"][intake]["counts"]["rejected"] == len(cases)
        assert status["intakes"][intake]["last_error"]["error_file"].startswith(str(folder))
    assert files_in(dj) == files_in(dx) == files_in(dc) == []


async def test_misbehaving_converters_cost_one_file_each_and_the_intake_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    names = ["Boom", "Hang", "Crash", "Chatty"] + ([] if sys.platform == "win32" else ["Hog"])
    sections = []
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.txt").write_text(f"SN-{name}")
        sections.append(section(name.lower(), folder, f"{MISBEHAVING}:{name}", timeout_s=1.0 if name == "Hang" else 20))
    started = time.monotonic()
    with Spool(data) as spool:
        done, status = await scans(spool, data, *sections, workers=3)
        assert done == len(names)
        assert len(spool.keys()) == 1  # Chatty's report; its prints did not break anything
    assert time.monotonic() - started < 15
    boom = (data / "rejected" / "boom" / "a.txt.error.txt").read_text()
    assert "kind:      error" in boom and "ValueError: cannot parse a.txt" in boom
    assert "traceback (last lines):" in boom and "in _parse" in boom
    assert "kind:      timeout" in (data / "rejected" / "hang" / "a.txt.error.txt").read_text()
    assert "exited with code 13" in (data / "rejected" / "crash" / "a.txt.error.txt").read_text()
    if "Hog" in names:
        hog = (data / "rejected" / "hog" / "a.txt.error.txt").read_text()
        assert "memory" in hog or "killed by signal" in hog
    assert (data / "rejected" / "hang" / "a.txt").read_text() == "SN-Hang"
    assert status["intakes"]["hang"]["last_error"]["reason"].startswith("the converter took longer than 1 s")


async def test_a_bad_file_in_a_batch_costs_that_file_only(tmp_path: Path) -> None:
    """Files of one folder go through a worker together; a file that hangs or kills the worker is
    rejected with its own reason, and every good file of the batch is still converted once."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    bad = {"hang.txt": "HANG", "crash.txt": "CRASH", "boom.txt": "BOOM"}
    good = {f"g{i:02d}.txt": f"SN-{i}" for i in range(14)}
    for name, text in {**good, **bad}.items():
        (drop / name).write_text(text)
    sec = section("m", drop, f"{MISBEHAVING}:Moody", timeout_s=1.0)
    started = time.monotonic()
    with Spool(data) as spool:
        done, status = await scans(spool, data, sec, passes=6)
        assert done == len(good) + len(bad)
        expected = {deterministic_id(hashlib.sha256(t.encode()).hexdigest(), "moody", 0) for t in good.values()}
        assert set(spool.keys()) == expected
    assert time.monotonic() - started < 20
    assert files_in(drop) == []
    assert sorted(files_in(data / "rejected" / "m")) == sorted([*bad, *(f"{n}.error.txt" for n in bad)])
    reasons = {n: (data / "rejected" / "m" / f"{n}.error.txt").read_text() for n in bad}
    assert "kind:      timeout" in reasons["hang.txt"]
    assert "kind:      crash" in reasons["crash.txt"] and "exited with code 13" in reasons["crash.txt"]
    assert "kind:      error" in reasons["boom.txt"]
    assert len(files_in(today_archive(data, "m"))) == len(good)
    for leftover in ("copies", "jobs", "tmp"):
        assert files_in(data / "intake" / "m" / leftover) == []


async def test_a_converter_that_cannot_be_loaded_leaves_the_files_and_says_so(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(1))
    with Spool(data) as spool:
        done, status = await scans(spool, data, section("x", drop, str(tmp_path / "missing.py") + ":Conv"))
        assert done == 0 and spool.keys() == []
    assert "converter cannot be loaded" in status["intakes"]["x"]["problem"]
    assert "does not exist" in status["intakes"]["x"]["problem"]
    assert files_in(drop) == ["a.json"] and files_in(data / "rejected") == []


# ---------------------------------------------------------------------------------------- spool full

async def test_a_full_spool_pauses_intake_leaves_sources_and_resumes_by_itself(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    raws = {f"r{i}.json": report(i) for i in range(2)}
    for name, raw in raws.items():
        (drop / name).write_bytes(raw)

    def invariant(spool: Spool) -> None:
        for name, raw in raws.items():
            assert (drop / name).exists() or rid(raw) in spool.keys(), f"{name} left before its report was spooled"

    def make_room(spool: Spool) -> None:
        claim = spool.claim_next()
        spool.fire(claim.key, "accepted")  # sent: no longer counts against max_reports

    with Spool(data, max_reports=1) as spool:
        spool.accept(report(99))  # the spool is full before intake starts
        intake = intake_for(spool, data, section("j", drop))
        try:
            assert await intake.scan_once() == 0
            status = intake.status()
            assert status["paused"] and "spool full" in status["paused_reason"]
            assert status["intakes"]["j"]["counts"]["copied"] >= 1
            assert files_in(drop) == sorted(raws)  # both sources untouched
            invariant(spool)
            assert await intake.scan_once() == 0  # still full: still waiting, still in place
            make_room(spool)
            finished = 0
            with anyio.fail_after(10):
                while finished < 2:
                    await anyio.sleep(0.12)
                    finished += await intake.scan_once()
                    invariant(spool)
                    if intake.status()["paused"]:
                        make_room(spool)
            assert not intake.status()["paused"]
        finally:
            await intake.aclose()
        assert {rid(r) for r in raws.values()} <= set(spool.keys())
    assert files_in(drop) == []


async def test_a_full_disk_while_copying_pauses_with_the_reason_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC during the copy is not a bug: no traceback per file, a paused reason in status."""
    import errno as errno_module

    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    raws = {f"r{i}.json": report(i) for i in range(3)}
    for name, raw in raws.items():
        (drop / name).write_bytes(raw)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno_module.ENOSPC, "No space left on device")

    with Spool(data) as spool:
        intake = intake_for(spool, data, section("j", drop))
        try:
            monkeypatch.setattr(os, "fsync", full_disk)
            assert await intake.scan_once() == 0
            status = intake.status()
            assert status["paused"] and "disk holding the data dir is full" in status["paused_reason"]
            assert files_in(drop) == sorted(raws) and not spool.keys()
            assert not [r for r in caplog.records
                        if r.levelname == "ERROR" and r.name == "stationflow.engine.intake.intake"]
            monkeypatch.setattr(os, "fsync", real_fsync)  # space is back
            finished = 0
            with anyio.fail_after(10):
                while finished < 3:
                    await anyio.sleep(0.12)
                    finished += await intake.scan_once()
            assert not intake.status()["paused"]
        finally:
            monkeypatch.setattr(os, "fsync", real_fsync)
            await intake.aclose()
        assert {rid(r) for r in raws.values()} <= set(spool.keys())
    assert files_in(drop) == []


# ---------------------------------------------------------------------------------------- settling

async def test_a_file_still_being_written_is_taken_once_whole_after_it_settles(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    target = drop / "slow.csv"
    rows = 20

    with Spool(data) as spool:
        intake = intake_for(spool, data, section("c", drop, "csv", settle_ms=400, after="delete"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with open(target, "w", encoding="utf-8") as out:
                out.write("sn,pn,rev,process_code,start,step,value,unit,low,high,status\n")
                for i in range(rows):
                    out.write(f"SN9,PN,A,10,2026-11-02T08:00:00+01:00,step {i},{i},V,,,\n")
                    out.flush()
                    await anyio.sleep(0.1)
                    assert spool.keys() == [], "taken while still being written"
                    assert target.exists()
            with anyio.fail_after(10):
                while target.exists():
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        await intake.aclose()
        [key] = spool.keys()
        steps = json.loads(spool.read(key))["root"]["steps"]
        assert [s["name"] for s in steps] == [f"step {i}" for i in range(rows)]


async def test_a_file_removed_before_it_settles_is_forgotten(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(1))

    with Spool(data) as spool:
        intake = intake_for(spool, data, section("j", drop, settle_ms=200))
        try:
            assert await intake.scan_once() == 0
            assert intake.status()["intakes"]["j"]["counts"]["detected"] == 1
            os.unlink(drop / "a.json")
            await anyio.sleep(0.25)
            assert await intake.scan_once() == 0
            status = intake.status()
        finally:
            await intake.aclose()
        assert spool.keys() == []
    counts = status["intakes"]["j"]["counts"]
    assert counts["gone"] == 1 and counts["detected"] == 0 and counts["rejected"] == 0


# ---------------------------------------------------------------------------------------- control

async def test_pause_resume_and_drain(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "first.txt").write_text("SN-1")
    sec = section("s", drop, f"{MISBEHAVING}:Slow", arguments={"delay": 0.8, "count": 2})

    with Spool(data) as spool:
        intake = intake_for(spool, data, sec, workers=1)
        intake.pause("maintenance")
        assert await intake.scan_once() == 0 and files_in(drop) == ["first.txt"]
        assert intake.status()["paused_reason"] == "maintenance"
        intake.resume()
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(10):
                while intake.status()["in_flight"] == 0:
                    await anyio.sleep(0.02)
            (drop / "second.txt").write_text("SN-2")
            await intake.drain()  # returns once 'first' is finished; 'second' is not taken
            assert files_in(drop) == ["second.txt"]
            await anyio.sleep(0.3)
            assert files_in(drop) == ["second.txt"]
            tg.cancel_scope.cancel()
        await intake.aclose()
        assert len(spool.keys()) == 2  # the two reports of 'first'


async def test_cancelling_mid_conversion_keeps_the_source_and_a_restart_finishes(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.txt").write_text("SN-1")
    sec = section("s", drop, f"{MISBEHAVING}:Slow", arguments={"delay": 1.5, "count": 3})

    jobs = data / "intake" / "s" / "jobs"
    with Spool(data) as spool:
        intake = intake_for(spool, data, sec)
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(30):  # copied, its conversion under way (1.5 s): now cancel
                while not (jobs.is_dir() and any(jobs.iterdir())):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await intake.aclose()
        assert spool.keys() == [] and files_in(drop) == ["a.txt"]
        [job] = (data / "intake" / "s" / "jobs").iterdir()
        [record] = json.loads(job.read_bytes())["files"]  # one job record per batch, listing its files
        assert record["state"] == "copied"
        done, _ = await scans(spool, data, sec)
        assert done == 1
        sha = hashlib.sha256(b"SN-1").hexdigest()
        assert sorted(spool.keys()) == sorted(deterministic_id(sha, "slow", i) for i in range(3))
    assert files_in(drop) == [] and files_in(data / "intake" / "s" / "jobs") == []


# ---------------------------------------------------------------------------------------- kill -9

# Run in a subprocess (its own event loop) so that it can be killed with SIGKILL.
_CRASH_SCRIPT = """
import sys
from pathlib import Path
import anyio
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

data, watch, converter = sys.argv[1:4]

async def main():
    spool = Spool(data)
    section = IntakeSection(name="k", watch=watch, converter=converter, settle_ms=0,
                            arguments={"delay": 0.25, "count": 3})
    intake = Intake([section], spool, Path(data), StationSection(name="S", location="L", purpose="P"),
                    options=IntakeOptions(poll_interval_s=0.05))
    await intake.run()

anyio.run(main)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_9_during_conversion_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    script = tmp_path / "run_intake.py"
    script.write_text(_CRASH_SCRIPT)
    contents = {f"f{i:02d}.txt": f"SN-{i}" for i in range(10)}
    for name, text in contents.items():
        (drop / name).write_text(text)
    expected = {deterministic_id(hashlib.sha256(t.encode()).hexdigest(), "slow", i)
                for t in contents.values() for i in range(3)}
    command = [sys.executable, str(script), str(data), str(drop), f"{MISBEHAVING}:Slow"]

    jobs = data / "intake" / "k" / "jobs"
    interrupted = 0
    for extra in (0.0, 0.15, 0.3):
        proc = subprocess.Popen(command, cwd=ROOT)
        deadline = time.monotonic() + 15
        while not (jobs.is_dir() and any(jobs.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.01)  # until a file is copied and being converted
        time.sleep(extra)  # then into its conversion or its accepts
        interrupted += bool(any(jobs.iterdir()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert interrupted >= 2 and any(drop.iterdir())  # the kills hit work in progress
    proc = subprocess.Popen(command, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while any(drop.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert files_in(drop) == []
    found = spool_files(data)
    assert set(found) == expected  # every report, no other
    assert all(len(places) == 1 for places in found.values())  # each exactly once
    archived = files_in(data / "archive")
    assert len(archived) == len(contents)  # every source kept, none lost
    assert files_in(data / "rejected") == []
    for leftover in ("copies", "jobs", "tmp"):
        assert files_in(data / "intake" / "k" / leftover) == []


# ---------------------------------------------------------------------------------------- reprocess and submit

def _config(tmp_path: Path) -> Path:
    (tmp_path / "drop").mkdir(exist_ok=True)
    path = tmp_path / "station.yaml"
    path.write_text(
        "station: {name: STATION-01, location: Line 1, purpose: Production}\n"
        "server: {url: 'http://127.0.0.1:9'}\n"
        "data_dir: ./data\n"
        "intake:\n"
        "  - {name: fct, watch: ./drop, converter: csv, settle_ms: 0}\n")
    return path


async def _reprocess(config: Path, *argv: str) -> int:
    """Run the command as from a shell. It starts its own event loop (``anyio.run``), which cannot
    run inside the test's: so it runs in a worker thread."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    cli_reprocess.register(parser.add_subparsers())
    args = parser.parse_args(["-c", str(config), "reprocess", *argv])
    return await anyio.to_thread.run_sync(args.func, args)


async def test_reprocess_archived_and_fixed_rejected_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    data, drop = tmp_path / "data", tmp_path / "drop"
    shutil.copy(INPUTS / "fct-sample.csv", drop / "good.csv")
    (drop / "bad.csv").write_text("sn,pn,rev,process_code,step,value\nSN5,PN,A,ten,s,1\n")
    section_ = IntakeSection(name="fct", watch=str(drop), converter="csv", settle_ms=0)
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section_)
        assert done == 2
        [key] = spool.keys()
    sha = hashlib.sha256((INPUTS / "fct-sample.csv").read_bytes()).hexdigest()
    assert key == deterministic_id(sha, "csv", 0)
    archived = today_archive(data, "fct") / f"{sha}-good.csv"
    assert archived.exists() and (data / "rejected" / "fct" / "bad.csv").exists()

    assert await _reprocess(config, "--since", "today", "--dry-run") == 0
    assert "good.csv" in capsys.readouterr().out
    assert await _reprocess(config, "--since", "today", "--intake", "fct") == 0
    out = capsys.readouterr().out
    assert "fct: good.csv: 1 report(s), 0 new, 1 already in the spool" in out  # the same id again
    assert archived.exists() and files_in(data / "intake" / "fct" / "reprocess") == []

    # A person fixes the rejected file where it is, then takes it again.
    (data / "rejected" / "fct" / "bad.csv").write_text("sn,pn,rev,process_code,step,value\nSN5,PN,A,10,s,1\n")
    assert await _reprocess(config, "--rejected") == 0
    assert "bad.csv: 1 report(s), 1 new" in capsys.readouterr().out
    assert files_in(data / "rejected" / "fct") == []
    assert len(files_in(today_archive(data, "fct"))) == 2
    with Spool(data) as spool:
        assert len(spool.keys()) == 2

    with pytest.raises(Exception, match="not a date"):
        await _reprocess(config, "--since", "30/01/2026")
    with pytest.raises(Exception, match="no intake named nope"):
        await _reprocess(config, "--since", "today", "--intake", "nope")


async def test_reprocess_with_the_service_running_only_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    data, drop = tmp_path / "data", tmp_path / "drop"
    shutil.copy(INPUTS / "fct-sample.csv", drop / "good.csv")
    section_ = IntakeSection(name="fct", watch=str(drop), converter="csv", settle_ms=0)
    with Spool(data) as spool:  # holds the lock, as the running service does
        await scans(spool, data, section_)
        assert await _reprocess(config, "--since", "today") == 0
        assert "staged 1 file(s)" in capsys.readouterr().out
        assert files_in(data / "intake" / "fct" / "reprocess") == ["archive/good.csv"]
        done, _ = await scans(spool, data, section_)  # the service's next pass takes it
        assert done == 1 and len(spool.keys()) == 1
    assert files_in(data / "intake" / "fct" / "reprocess") == []
    assert len(files_in(data / "archive")) == 1


def test_submit_uses_the_converters_and_intake_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert cli_main(["-c", str(config), "submit", str(REPORTS / "uut-wsxf-export.xml"), "--converter", "wsxf"]) == 0
    assert f"accepted: {SAMPLE_ID}" in capsys.readouterr().out
    assert cli_main(["-c", str(config), "submit", str(REPORTS / "uut-wsjf-export.json")]) == 0
    assert "already in the spool (pending)" in capsys.readouterr().out  # the same report as WSJF
    code = cli_main(["-c", str(config), "submit", str(INPUTS / "fct-sample.csv"), str(INPUTS / "latin1.csv"),
                     "--converter", "fct"])
    captured = capsys.readouterr()
    assert code == 4 and "accepted:" in captured.out
    assert "latin1.csv: not valid utf-8-sig text" in captured.err
    assert cli_main(["-c", str(config), "submit", str(INPUTS / "fct-sample.csv"), "--converter", "nope"]) == 4
    assert (INPUTS / "latin1.csv").exists()  # submit never touches the files
    with Spool(tmp_path / "data") as spool:
        assert len(spool.keys()) == 2


def test_archive_retention_prunes_whole_old_days_only(tmp_path: Path) -> None:
    for day in ("2026-01-01", "2026-01-20", "2026-01-30", "not-a-day"):
        (tmp_path / "archive" / day / "x").mkdir(parents=True)
        (tmp_path / "archive" / day / "x" / "f").write_text("x")
    assert prune_archive(tmp_path, 12, today=date(2026, 1, 31)) == 1
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == ["2026-01-20", "2026-01-30", "not-a-day"]
    # A wall clock that jumped a year ahead of the monotonic clock prunes nothing.
    jumped = (time.time() - 365 * 86400, time.monotonic())
    assert prune_archive(tmp_path, 0, clock_ref=jumped) == 0
