"""Intake's error paths on real folders and real worker processes: nothing is lost, the person is told.

Each test breaks one thing the intake depends on — the archive, the move_to folder, the error
folder, kept.json, the converter file, the watch folder itself, leftovers of a crash — the way it
breaks on a station (a file where a folder should be, a file that disappears, a converter not yet
deployed), and checks what a person sees (status, the error folder and its .error.txt, the
spool, the CLI's exit code), then repairs it and checks the intake finishes the job by itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.cli import reprocess as cli_reprocess
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import InvalidInput
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection
from tests.conftest import FIXTURES

INPUTS = FIXTURES / "inputs"
STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")
FAST = IntakeOptions(poll_interval_s=0.05, full_retry_s=0.1, post_retry_s=0.05, load_retry_s=0.05,
                     memory_limit_bytes=512 * 1024**2)


def report(i: int) -> bytes:
    return make_report_bytes(i, seed=23, approx_bytes=1500)


def rid(raw: bytes) -> str:
    return str(json.loads(raw)["id"])


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def section(name: str, watch: Path, converter: str = "wsjf", **kw: Any) -> IntakeSection:
    return IntakeSection(name=name, watch=str(watch), converter=converter, **{"settle_ms": 0, **kw})


async def scan_until(intake: Intake, done: Any, *, bound_s: float = 30.0) -> None:
    """Scan again and again until ``done()`` holds (the state that matters), within a generous bound."""
    with anyio.fail_after(bound_s):
        while not done():
            await intake.scan_once()
            await anyio.sleep(0.06)  # past post_retry_s / load_retry_s, so the next scan retries


def status_of(intake: Intake, name: str) -> dict[str, Any]:
    return dict(intake.status()["intakes"][name])


# ---------------------------------------------------------------------------------------- post-actions

async def test_an_archive_that_cannot_be_written_keeps_the_source_and_is_retried(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(1))
    data.mkdir()
    (data / "archive").write_text("a file where the archive folder belongs")
    with Spool(data) as spool:
        intake = Intake([section("arc", drop)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 0  # the report is durable, the post-action is not done
            assert rid(report(1)) in spool.keys()
            assert files_in(drop) == ["a.json"]  # the source stays until it is archived
            err = status_of(intake, "arc")["last_error"]
            assert err["file"] == str(drop / "a.json") and "archive failed" in err["reason"]
            (data / "archive").unlink()
            await scan_until(intake, lambda: not (drop / "a.json").exists())
        finally:
            await intake.aclose()
        assert len(spool.keys()) == 1
    [archived] = files_in(data / "archive")
    assert archived.endswith("-a.json") and (data / "archive" / archived).read_bytes() == report(1)


async def test_a_move_to_folder_that_is_a_file_keeps_the_source_until_it_is_fixed(tmp_path: Path) -> None:
    data, drop, done_dir = tmp_path / "data", tmp_path / "drop", tmp_path / "done"
    drop.mkdir()
    done_dir.write_text("not a folder")
    (drop / "m.json").write_bytes(report(2))
    with Spool(data) as spool:
        intake = Intake([section("mv", drop, after="move", move_to=str(done_dir))], spool, data, STATION, options=FAST)
        try:
            await intake.scan_once()
            assert rid(report(2)) in spool.keys() and files_in(drop) == ["m.json"]
            waiting = status_of(intake, "mv")["waiting"]
            assert waiting and "post-action move failed" in waiting[0]["note"]
            done_dir.unlink()
            await scan_until(intake, lambda: (done_dir / "m.json").exists())
        finally:
            await intake.aclose()
    assert files_in(drop) == [] and (done_dir / "m.json").read_bytes() == report(2)


async def test_kept_json_that_cannot_be_read_or_written_is_retried_and_the_source_stays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "k.json").write_bytes(report(3))
    kept_file = data / "intake" / "keep" / "kept.json"
    kept_file.mkdir(parents=True)  # a folder where the file belongs: unreadable and unwritable
    with Spool(data) as spool:
        intake = Intake([section("keep", drop, after="keep")], spool, data, STATION, options=FAST)
        try:
            with caplog.at_level(logging.WARNING, logger="stationflow.engine.intake"):
                await intake.scan_once()
            assert "kept.json is unreadable" in caplog.text
            assert rid(report(3)) in spool.keys() and files_in(drop) == ["k.json"]
            waiting = status_of(intake, "keep")["waiting"]
            assert waiting and "post-action keep failed" in waiting[0]["note"]
            kept_file.rmdir()
            await scan_until(intake, lambda: status_of(intake, "keep")["counts"]["done"] == 1)
            assert list(json.loads(kept_file.read_bytes())) == [str(drop / "k.json")]
            assert await intake.scan_once() == 0  # kept: not taken again
            (drop / "k.json").unlink()  # a person removes it: it is forgotten
            await scan_until(intake, lambda: json.loads(kept_file.read_bytes()) == {})
        finally:
            await intake.aclose()
        assert len(spool.keys()) == 1
    assert files_in(drop) == []


# ---------------------------------------------------------------------------------------- the error folder

async def test_an_error_folder_that_cannot_be_written_keeps_the_bad_file_until_it_can(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    with Spool(data) as spool:
        intake = Intake([section("rej", drop)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 0  # started: its folders exist
            shutil.rmtree(data / "rejected" / "rej")
            (data / "rejected" / "rej").write_text("a file where the error folder belongs")
            shutil.copy(INPUTS / "garbage.json", drop / "garbage.json")
            await intake.scan_once()
            assert files_in(drop) == ["garbage.json"] and not spool.keys()
            err = status_of(intake, "rej")["last_error"]
            assert "moving it to the error folder failed" in err["reason"]
            (data / "rejected" / "rej").unlink()
            await scan_until(intake, lambda: not (drop / "garbage.json").exists())
        finally:
            await intake.aclose()
    rejected = data / "rejected" / "rej"
    assert files_in(rejected) == ["garbage.json", "garbage.json.error.txt"]
    assert (rejected / "garbage.json").read_bytes() == (INPUTS / "garbage.json").read_bytes()
    assert "kind:      invalid" in (rejected / "garbage.json.error.txt").read_text()


async def test_a_rejected_file_with_after_keep_stays_and_a_note_is_written(tmp_path: Path) -> None:
    """Too large to be read: refused before any copy; with after: keep the source is not moved."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "big.json").write_bytes(report(4))
    with Spool(data) as spool:
        intake = Intake([section("big", drop, after="keep", max_file_bytes=100)], spool, data, STATION, options=FAST)
        try:
            await intake.scan_once()
            assert await intake.scan_once() == 0  # remembered as kept: not refused over and over
        finally:
            await intake.aclose()
        assert not spool.keys()
    assert files_in(drop) == ["big.json"] and (drop / "big.json").read_bytes() == report(4)
    note = (data / "rejected" / "big" / "big.json.error.txt").read_text()
    assert "kind:      too_large" in note and "the source was left in place (after: keep)" in note
    assert files_in(data / "rejected" / "big") == ["big.json.error.txt"]


# ---------------------------------------------------------------------------------------- converters

async def test_a_converter_file_not_yet_deployed_defers_files_until_it_appears(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    shutil.copy(INPUTS / "ohm-meter.log", drop / "m.log")
    converter = tmp_path / "conv" / "ohm_meter.py"
    spec = f"{converter}:OhmMeterConverter"
    with Spool(data) as spool:
        intake = Intake([section("ohm", drop, spec, patterns=["*.log"])], spool, data, STATION, options=FAST)
        try:
            await scan_until(intake, lambda: status_of(intake, "ohm")["problem"] is not None)
            assert "converter cannot be loaded" in status_of(intake, "ohm")["problem"]
            assert files_in(drop) == ["m.log"] and not spool.keys()
            assert files_in(data / "rejected") == []  # the file is not to blame
            converter.parent.mkdir()
            shutil.copy(INPUTS / "converters" / "ohm_meter.py", converter)
            await scan_until(intake, lambda: len(spool.keys()) == 1)
            assert status_of(intake, "ohm")["problem"] is None
        finally:
            await intake.aclose()
    assert files_in(drop) == []


# ---------------------------------------------------------------------------------------- the watch folder

async def test_a_watch_path_that_is_a_file_is_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, drop, good = tmp_path / "data", tmp_path / "drop", tmp_path / "good"
    drop.write_text("someone created a file named like the watch folder")
    good.mkdir()
    (good / "g.json").write_bytes(report(5))
    with Spool(data) as spool:
        intake = Intake([section("odd", drop), section("ok", good)], spool, data, STATION, options=FAST)
        try:
            with caplog.at_level(logging.WARNING, logger="stationflow.engine.intake"):
                assert await intake.scan_once() == 1  # the other intake works on
            assert f"cannot list {drop}" in caplog.text
            assert "does not exist" in status_of(intake, "odd")["problem"]
        finally:
            await intake.aclose()
        assert list(spool.keys()) == [rid(report(5))]


async def test_notifications_fall_back_to_polling_for_a_missing_folder(tmp_path: Path) -> None:
    data, later, here = tmp_path / "data", tmp_path / "later", tmp_path / "here"
    here.mkdir()
    with Spool(data) as spool:
        intake = Intake([section("later", later), section("here", here)], spool, data, STATION,
                        options=IntakeOptions(poll_interval_s=0.05))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(30):
                while status_of(intake, "here")["notifications"] != "notify":
                    await anyio.sleep(0.01)
            assert status_of(intake, "later")["notifications"] == "polling"  # not there at start: polled
            later.mkdir()
            (later / "l.json").write_bytes(report(6))  # polling still takes it
            with anyio.fail_after(30):
                while rid(report(6)) not in spool.keys():
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        await intake.aclose()
        quiet = Intake([section("here", here)], spool, data, STATION,
                       options=IntakeOptions(poll_interval_s=0.05, notifications=False))
        async with anyio.create_task_group() as tg:
            tg.start_soon(quiet.run)
            (here / "h.json").write_bytes(report(7))
            with anyio.fail_after(30):
                while rid(report(7)) not in spool.keys():
                    await anyio.sleep(0.02)
            assert status_of(quiet, "here")["notifications"] == "polling"
            tg.cancel_scope.cancel()
        await quiet.aclose()


# ---------------------------------------------------------------------------------------- crash leftovers

async def test_leftovers_of_a_crash_are_cleared_and_the_sources_taken_again(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "r.json").write_bytes(report(8))
    work = data / "intake" / "rec"
    for sub in ("tmp", "jobs", "copies/batch1/inner-dir"):
        (work / sub).mkdir(parents=True)
    (work / "tmp" / "partial.part").write_bytes(b"half a copy")
    (work / "jobs" / "torn.json").write_bytes(b'{"state": "cop')  # cut by a power loss
    (work / "jobs" / "unknown.json").write_text(json.dumps({"state": "no-such-state"}))
    (work / "jobs" / "README").write_text("not a record")
    (work / "copies" / "stray").write_bytes(b"a copy no record owns")
    (work / "copies" / "batch1" / "orphan.json").write_bytes(b"{}")
    with Spool(data) as spool:
        intake = Intake([section("rec", drop)], spool, data, STATION, options=FAST)
        try:
            with caplog.at_level(logging.WARNING, logger="stationflow.engine.intake"):
                assert await intake.scan_once() == 1
            assert "torn.json is unreadable" in caplog.text and "unknown.json is unreadable" in caplog.text
        finally:
            await intake.aclose()
        assert list(spool.keys()) == [rid(report(8))]
    assert files_in(work / "tmp") == [] and files_in(work / "copies") == []
    assert files_in(work / "jobs") == ["README"]  # only what is not a record is left alone
    assert files_in(drop) == []


async def test_a_job_recorded_as_copied_resumes_from_its_copy_after_a_crash(tmp_path: Path) -> None:
    """A record whose identity field is malformed still resumes (identity unknown: checked by content)."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    raw = report(9)
    source = drop / "c.json"
    source.write_bytes(raw)
    work = data / "intake" / "res"
    (work / "copies" / "b1").mkdir(parents=True)
    (work / "jobs").mkdir()
    (work / "copies" / "b1" / "c.json").write_bytes(raw)
    st = os.stat(source)
    record = {"job": "j1", "state": "copied", "source": str(source), "rel": "c.json", "origin": "watch",
              "size": st.st_size, "mtime_ns": st.st_mtime_ns, "copy": "b1/c.json", "identity": "?",
              "sha256": __import__("hashlib").sha256(raw).hexdigest()}
    (work / "jobs" / "j1.json").write_text(json.dumps(record))
    with Spool(data) as spool:
        intake = Intake([section("res", drop, after="delete")], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 1
        finally:
            await intake.aclose()
        assert list(spool.keys()) == [rid(raw)] and spool.read(rid(raw)) == raw
    assert files_in(drop) == [] and files_in(work / "jobs") == [] and files_in(work / "copies") == []


# ---------------------------------------------------------------------------------------- reprocess

def _config(tmp_path: Path, intakes: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text("station: {name: STATION-01, location: Line 1, purpose: Production}\n"
                    "server: {url: 'http://127.0.0.1:9'}\n"
                    "data_dir: ./data\n" + intakes)
    return path


async def _reprocess(config: Path, *argv: str) -> int:
    """The command as from a shell; it runs its own event loop, so in a worker thread."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    cli_reprocess.register(parser.add_subparsers())
    args = parser.parse_args(["-c", str(config), "reprocess", *argv])
    return int(await anyio.to_thread.run_sync(args.func, args))


async def test_reprocess_selects_by_day_and_says_what_became_of_each_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "other").mkdir()
    config = _config(tmp_path, "intake:\n"
                               "  - {name: fct, watch: ./drop, converter: csv, settle_ms: 0}\n"
                               "  - {name: other, watch: ./other, converter: csv, settle_ms: 0}\n")
    data = tmp_path / "data"
    rejected = data / "rejected" / "fct"
    rejected.mkdir(parents=True)
    (rejected / "bad.csv").write_text("sn,pn,rev,process_code,step,value\nSN5,PN,A,ten,s,1\n")  # still bad
    (rejected / "old.csv").write_text("sn,pn,rev,process_code,step,value\nSN6,PN,A,10,s,1\n")
    old = (date.today() - timedelta(days=40)).toordinal()
    stamp = (old - date(1970, 1, 1).toordinal()) * 86400 + 43200
    os.utime(rejected / "old.csv", (stamp, stamp))  # rejected long ago, and its note is gone
    yesterday = date.today() - timedelta(days=1)
    for day in ("notes", "2001-01-01", yesterday.isoformat()):
        (data / "archive" / day / "fct").mkdir(parents=True)
    good = INPUTS / "fct-sample.csv"
    sha = __import__("hashlib").sha256(good.read_bytes()).hexdigest()
    shutil.copy(good, data / "archive" / yesterday.isoformat() / "fct" / f"{sha}-good.csv")
    shutil.copy(good, data / "archive" / "2001-01-01" / "fct" / f"{sha}-ancient.csv")

    with pytest.raises(InvalidInput, match="say which files"):
        await _reprocess(config)
    assert await _reprocess(config, "--since", "yesterday", "--until", "today", "--rejected") == 4
    out = capsys.readouterr().out
    assert "fct: good.csv: 1 report(s), 1 new, 0 already in the spool" in out
    assert "fct: bad.csv: rejected again: " in out and "bad.csv.error.txt" in out
    assert "old.csv" not in out and "ancient" not in out  # outside the days asked for
    assert (rejected / "old.csv").exists() and (rejected / "bad.csv.error.txt").exists()

    assert await _reprocess(config, "--since", "2030-01-01", "--intake", "other") == 0
    assert "nothing to reprocess" in capsys.readouterr().err
    assert await _reprocess(config, "--rejected", "--intake", "fct") == 4  # old.csv now, without its note
    out = capsys.readouterr().out
    assert "fct: old.csv: 1 report(s), 1 new" in out
    assert not (rejected / "old.csv").exists()
    with Spool(data) as spool:
        assert len(spool.keys()) == 2

    empty = _config(tmp_path, "intake: []\n")
    with pytest.raises(InvalidInput, match="the config has no intake"):
        await _reprocess(empty, "--rejected")


async def test_a_report_whose_id_is_taken_by_another_report_rejects_its_file_and_names_what_stayed(
        tmp_path: Path) -> None:
    """Report #2 of a file collides with a different report already in the spool (same id): the
    file goes to the error folder, its note names report #1, which was accepted and stays."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    first, second = json.loads(report(10)), json.loads(report(11))
    (drop / "two.json").write_text(json.dumps([first, second]))
    impostor = dict(second, sn="SOMEONE-ELSE")
    with Spool(data) as spool:
        spool.accept(json.dumps(impostor).encode())
        intake = Intake([section("dup", drop)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 1
        finally:
            await intake.aclose()
        assert sorted(spool.keys()) == sorted([first["id"], second["id"]])
        assert json.loads(spool.read(second["id"]))["sn"] == "SOMEONE-ELSE"  # untouched
    note = (data / "rejected" / "dup" / "two.json.error.txt").read_text()
    assert "the spool refused report #2" in note and "1 other report(s) of this file were accepted" in note
    assert f"accepted before the refusal (they stay in the spool): {first['id']}" in note
    assert files_in(drop) == []


async def test_a_too_large_file_on_another_file_system_is_copied_whole_into_the_error_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch folder on another disk than the data dir: rename fails with EXDEV (simulated, as
    mounting a second file system needs root), so the file is copied whole, then removed."""
    import errno

    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "huge.json").write_bytes(report(12))
    real_replace = os.replace

    def cross_device(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(src).parent == drop and "rejected" in Path(dst).parts:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", cross_device)
    with Spool(data) as spool:
        intake = Intake([section("xd", drop, max_file_bytes=100)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 1
        finally:
            await intake.aclose()
        assert not spool.keys()
    assert files_in(drop) == []
    assert (data / "rejected" / "xd" / "huge.json").read_bytes() == report(12)
    assert "kind:      too_large" in (data / "rejected" / "xd" / "huge.json.error.txt").read_text()


# ---------------------------------------------------------------------------------------- running

async def test_a_burst_larger_than_the_in_flight_budget_flows_without_waiting_for_polls(tmp_path: Path) -> None:
    """20 files, 2 in flight at a time, a poll every 60 s: the files already seen are taken as room
    frees up (no new listing); and old archive days are pruned while it runs."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    old_day = data / "archive" / "2001-01-01" / "burst"
    old_day.mkdir(parents=True)
    (old_day / "ancient.json").write_bytes(b"{}")
    raws = {f"b{i:02}.json": report(100 + i) for i in range(20)}
    for name, raw in raws.items():
        (drop / name).write_bytes(raw)
    options = IntakeOptions(poll_interval_s=60.0, max_in_flight=2, notifications=False, archive_keep_days=30,
                            memory_limit_bytes=512 * 1024**2)
    with Spool(data) as spool:
        intake = Intake([section("burst", drop, after="delete")], spool, data, STATION, options=options)
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(50):  # far below the 60 s a second listing would take
                while len(spool.keys()) < len(raws) or files_in(drop):  # accepted, and the sources deleted
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        await intake.aclose()
        assert sorted(spool.keys()) == sorted(rid(r) for r in raws.values())
    assert files_in(drop) == []
    assert not (data / "archive" / "2001-01-01").exists()


async def test_a_source_removed_by_a_person_while_its_move_waits_is_not_an_error(tmp_path: Path) -> None:
    data, drop, done_dir = tmp_path / "data", tmp_path / "drop", tmp_path / "done"
    drop.mkdir()
    done_dir.write_text("not a folder yet")
    (drop / "p.json").write_bytes(report(13))
    with Spool(data) as spool:
        intake = Intake([section("pm", drop, after="move", move_to=str(done_dir))], spool, data, STATION, options=FAST)
        try:
            await intake.scan_once()
            assert rid(report(13)) in spool.keys()
            (drop / "p.json").unlink()  # its reports are in the spool: the person may
            done_dir.unlink()
            await scan_until(intake, lambda: status_of(intake, "pm")["counts"]["done"] == 1)
            assert status_of(intake, "pm")["waiting"] == []
        finally:
            await intake.aclose()
        assert list(spool.keys()) == [rid(report(13))]
    assert files_in(done_dir) == []


async def test_windows_a_file_held_open_by_the_equipment_waits_until_it_is_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows refuses write access to a file another program holds (a sharing violation): that is
    how intake tells the equipment is still writing. Simulated here: WINDOWS on, and os.open with
    write access refused for the held file."""
    from stationflow.engine.intake import detect

    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    held = drop / "held.json"
    held.write_bytes(report(14))
    holding = True
    real_open = os.open

    def sharing_violation(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if holding and Path(path) == held and flags & os.O_RDWR:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(detect, "WINDOWS", True)
    monkeypatch.setattr(os, "open", sharing_violation)
    with Spool(data) as spool:
        intake = Intake([section("win", drop)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 0
            [waiting] = status_of(intake, "win")["waiting"]
            assert waiting["note"] == "open in another program; waiting until it is closed"
            assert not spool.keys() and files_in(drop) == ["held.json"]
            assert detect.locked(drop) is False  # not a file that can be held: not treated as held
            holding = False
            await scan_until(intake, lambda: rid(report(14)) in spool.keys())
        finally:
            await intake.aclose()
    assert detect.locked(tmp_path / "missing") is False


def test_the_change_notifier_survives_a_stopped_loop_and_caps_its_memory(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine.intake import notify

    def loop_gone() -> None:
        raise RuntimeError("Event loop is closed")

    notifier = notify.ChangeNotifier(loop_gone)
    notifier.changed()  # a late event while intake stops: nothing to wake, no error
    monkeypatch.setattr(notify, "_MAX_CLOSED", 2)
    paths = [tmp_path / f"f{i}" for i in range(3)]
    for p in paths:
        p.write_bytes(b"x")
        notifier.note_closed(str(p))
    st = [os.stat(p) for p in paths]
    assert [notifier.closed_as(str(p), s.st_size, s.st_mtime_ns) for p, s in zip(paths, st)] == [False, True, True]


# ---------------------------------------------------------------------------------------- reprocess and submit

async def test_reprocess_copies_when_links_are_refused_and_says_what_waits_for_room(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive on a file system without hard links (simulated: os.link refused) is copied whole
    into the reprocess folder; a spool with no room leaves the file waiting there, exit code 4."""
    (tmp_path / "drop").mkdir()
    config = _config(tmp_path, "spool: {max_reports: 1, min_free_disk: 0}\n"
                               "intake:\n  - {name: fct, watch: ./drop, converter: csv, settle_ms: 0}\n")
    data = tmp_path / "data"
    day = data / "archive" / date.today().isoformat() / "fct"
    day.mkdir(parents=True)
    good = INPUTS / "fct-sample.csv"
    sha = __import__("hashlib").sha256(good.read_bytes()).hexdigest()
    shutil.copy(good, day / f"{sha}-good.csv")
    with Spool(data) as spool:
        spool.accept(report(15))  # the one report the spool has room for

    def no_links(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert await _reprocess(config, "--since", "today") == 4
    captured = capsys.readouterr()
    staged = data / "intake" / "fct" / "reprocess" / "archive" / "good.csv"
    assert f"fct: good.csv: waiting in {staged}" in captured.out
    assert "remaining files wait in" in captured.err and "spool.max_reports = 1" in captured.err
    assert staged.read_bytes() == good.read_bytes()
    assert (day / f"{sha}-good.csv").read_bytes() == good.read_bytes()  # the archived file is untouched


async def test_submit_reports_a_refused_report_per_file(tmp_path: Path) -> None:
    from stationflow.engine.intake.submit import submit_files

    data = tmp_path / "data"
    raw = json.loads(report(16))
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(raw))
    with Spool(data) as spool:
        spool.accept(json.dumps(dict(raw, sn="OTHER")).encode())
        [result] = await submit_files([mine], spool, STATION, converter="wsjf", intake="submit", workers=1)
        assert result.error and raw["id"] in result.error and not result.accepted
        assert json.loads(spool.read(raw["id"]))["sn"] == "OTHER"
    assert mine.read_text() == json.dumps(raw)


# ---------------------------------------------------------------------------------------- site converters

_SITE_CONVERTER = '''
import os, sys

class Conv:
    name = "site"
    patterns = ("*.txt",)

    def convert(self, source, context):
        text = source.read_text().strip()
        if text == "crash":
            os._exit(13)
        if text == "deep":
            sys.setrecursionlimit(200)
            return self.convert(source, context)
        return [{"type": "T", "pn": "PN", "sn": text, "rev": "A", "processCode": 10, "result": "P",
                 "start": "2026-11-02T08:00:00+01:00",
                 "root": {"id": 1, "group": "M", "stepType": "SequenceCall", "name": "Main", "status": "P",
                          "steps": []}}]
'''


async def test_a_converter_redeployed_broken_mid_run_defers_files_until_it_is_fixed(tmp_path: Path) -> None:
    """The converter loaded at start; a person then saves a broken version. A crash restarts the
    worker, which cannot load it: files wait (not rejected, not lost) until the file is fixed."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    conv = tmp_path / "site_conv.py"
    conv.write_text(_SITE_CONVERTER)
    with Spool(data) as spool:
        intake = Intake([section("site", drop, f"{conv}:Conv", after="delete")], spool, data, STATION,
                        workers=1, options=FAST)
        try:
            (drop / "a.txt").write_text("SN-A")
            await scan_until(intake, lambda: len(spool.keys()) == 1)
            conv.write_text("raise ValueError('half-saved by the editor')\n")
            (drop / "crash.txt").write_text("crash")  # kills the worker; its successor cannot load the file
            await scan_until(intake, lambda: status_of(intake, "site")["problem"] is not None)
            assert "half-saved by the editor" in status_of(intake, "site")["problem"]
            (drop / "b.txt").write_text("SN-B")
            for _ in range(3):
                await intake.scan_once()
            assert files_in(drop) == ["b.txt", "crash.txt"] and len(spool.keys()) == 1  # waiting, not rejected
            assert not (data / "rejected" / "site" / "b.txt").exists()
            conv.write_text(_SITE_CONVERTER + "\n# fixed\n")
            await scan_until(intake, lambda: len(spool.keys()) == 2 and not (drop / "crash.txt").exists())
            crash_note = (data / "rejected" / "site" / "crash.txt.error.txt").read_text()
            assert "kind:      crash" in crash_note
            (drop / "deep.txt").write_text("deep")  # a converter bug: endless recursion
            await scan_until(intake, lambda: (data / "rejected" / "site" / "deep.txt.error.txt").exists())
            assert "recursed too deeply" in (data / "rejected" / "site" / "deep.txt.error.txt").read_text()
            assert status_of(intake, "site")["problem"] is None
        finally:
            await intake.aclose()
    assert files_in(drop) == []


async def test_a_module_converter_that_raises_on_import_is_named_with_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "stationflow_test_badmod.py").write_text("raise KeyError('LINE_ID not set')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mods"))  # the workers inherit it
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "x.txt").write_text("SN-X")
    with Spool(data) as spool:
        intake = Intake([section("mod", drop, "stationflow_test_badmod:Conv", patterns=["*.txt"])], spool, data,
                        STATION, workers=1, options=FAST)
        try:
            await intake.scan_once()
            problem = status_of(intake, "mod")["problem"]
            assert problem and "cannot be loaded: KeyError: 'LINE_ID not set'" in problem
            assert files_in(drop) == ["x.txt"] and not spool.keys()
        finally:
            await intake.aclose()
    with pytest.raises(RuntimeError, match="the worker pool is closed"):
        await intake.pool.describe("wsjf")


async def test_the_intakes_own_folders_broken_under_it_cost_a_retry_never_a_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """jobs/ replaced by a file: no job record (a restart's help) can be written or removed; the
    report is accepted and the source archived, and the file shows an unexpected error until the
    folder is back. copies/ replaced by a file: the source stays untouched until it is back."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    work = data / "intake" / "own"

    def done() -> int:
        return int(status_of(intake, "own")["counts"]["done"])

    with Spool(data) as spool:
        intake = Intake([section("own", drop)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 0  # started: its folders exist
            shutil.rmtree(work / "jobs")
            (work / "jobs").write_text("in the way")
            (drop / "j.json").write_bytes(report(17))
            with caplog.at_level(logging.WARNING, logger="stationflow.engine.intake"):
                await scan_until(intake, lambda: status_of(intake, "own")["last_error"] is not None)
            assert "job record of" in caplog.text and "not written" in caplog.text
            assert rid(report(17)) in spool.keys()
            assert status_of(intake, "own")["last_error"]["reason"].startswith("unexpected error: NotADirectoryError")
            assert done() == 0
            (work / "jobs").unlink()
            (work / "jobs").mkdir()
            await scan_until(intake, lambda: done() == 1)
            assert files_in(drop) == [] and len(files_in(data / "archive")) == 1

            shutil.rmtree(work / "copies")
            (work / "copies").write_text("in the way")
            (drop / "c.json").write_bytes(report(18))
            await scan_until(intake, lambda: status_of(intake, "own")["waiting"] != [])
            assert status_of(intake, "own")["waiting"][0]["note"].startswith("unexpected error, retrying")
            assert files_in(drop) == ["c.json"] and rid(report(18)) not in spool.keys()
            (work / "copies").unlink()
            (work / "copies").mkdir()
            await scan_until(intake, lambda: done() == 2)
        finally:
            await intake.aclose()
        assert rid(report(18)) in spool.keys()
    assert files_in(drop) == [] and len(files_in(data / "archive")) == 2
    assert files_in(work / "copies") == [] and files_in(work / "tmp") == [] and files_in(work / "jobs") == []


async def test_a_copy_slower_than_the_copying_timeout_is_abandoned_and_the_source_kept(tmp_path: Path) -> None:
    """A site lifecycle whose copying state allows 1 µs: the copy of a 3 MB file is abandoned
    (its partial copy removed), the source stays whole, and status says it took too long."""
    from stationflow.engine.lifecycle import load_lifecycle

    shipped = (Path(__file__).resolve().parents[1] / "machines" / "conversion.yaml").read_text()
    assert "    timeout: 5m\n    on_timeout: timeout\n" in shipped
    site = tmp_path / "lifecycles" / "conversion.yaml"
    site.parent.mkdir()
    site.write_text(shipped.replace("    timeout: 5m\n    on_timeout: timeout\n",
                                    "    timeout: 0.000001\n    on_timeout: timeout\n", 1))
    lifecycle = load_lifecycle(site)
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    big = os.urandom(3 * 1024 * 1024)
    (drop / "slow.json").write_bytes(big)
    with Spool(data) as spool:
        intake = Intake([section("slow", drop)], spool, data, STATION, options=FAST, lifecycle=lifecycle)
        try:
            await intake.scan_once()
            err = status_of(intake, "slow")["last_error"]
            assert "copying the file took too long" in err["reason"] and err["file"] == str(drop / "slow.json")
        finally:
            await intake.aclose()
        assert not spool.keys()
    assert (drop / "slow.json").read_bytes() == big
    work = data / "intake" / "slow"
    assert files_in(work / "tmp") == [] and files_in(work / "copies") == [] and files_in(data / "rejected") == []


async def test_a_reprocess_only_pass_leaves_the_watch_folders_files_to_the_service(tmp_path: Path) -> None:
    """``stationflow reprocess`` takes only staged files: a file waiting in the watch folder (seen,
    settle time passed) is not taken by such a pass; the next ordinary pass takes it."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "w.json").write_bytes(report(19))
    with Spool(data) as spool:
        intake = Intake([section("ro", drop, settle_ms=100)], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 0  # seen, not yet settled
            await anyio.sleep(0.15)  # the settle time passes (this is the behaviour, not a wait for a result)
            assert await intake.scan_once(only_reprocess=True) == 0
            assert files_in(drop) == ["w.json"] and not spool.keys()
            await scan_until(intake, lambda: rid(report(19)) in spool.keys())
        finally:
            await intake.aclose()


def _failing_dir_sync(monkeypatch: pytest.MonkeyPatch, where: Path) -> dict[str, bool]:
    """Directory fsyncs under ``where`` fail with EIO while ``state["fail"]`` (a failing disk or a
    share that refuses them cannot be produced on demand: os.open of the directory is refused)."""
    import errno

    state = {"fail": True}
    real_open = os.open

    def open_dir(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if state["fail"] and flags & getattr(os, "O_DIRECTORY", 0) and Path(path).is_relative_to(where):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_dir)
    return state


async def test_an_archive_folder_that_cannot_be_synced_keeps_the_source_until_it_can(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archived copy is renamed in, but its folder's fsync fails: the source must stay (the
    archive entry may not survive a power cut). Retries must sync that folder again, not take the
    rename as done — they used to, and deleted the source at the first retry."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    state = _failing_dir_sync(monkeypatch, data / "archive")
    with Spool(data) as spool:
        intake = Intake([section("as", drop)], spool, data, STATION, options=FAST)
        try:
            (drop / "a.json").write_bytes(report(21))
            for _ in range(4):  # the first try and three retries, all while the disk fails
                await intake.scan_once()
                await anyio.sleep(0.06)
            assert rid(report(21)) in spool.keys()
            assert files_in(drop) == ["a.json"], "the source went while its archive entry was not durable"
            [waiting] = status_of(intake, "as")["waiting"]
            assert "post-action archive failed: cannot open directory" in waiting["note"]
            state["fail"] = False
            await scan_until(intake, lambda: status_of(intake, "as")["counts"]["done"] == 1)
        finally:
            await intake.aclose()
    assert files_in(drop) == [] and len(files_in(data / "archive")) == 1


async def test_a_watch_folder_that_refuses_directory_fsync_still_has_its_files_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Network shares refuse a directory fsync; after the source is removed that sync is best
    effort (a resurrected source would only be converted again to the same ids)."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    _failing_dir_sync(monkeypatch, drop)
    (drop / "d.json").write_bytes(report(22))
    with Spool(data) as spool:
        intake = Intake([section("share", drop, after="delete")], spool, data, STATION, options=FAST)
        try:
            assert await intake.scan_once() == 1
            assert status_of(intake, "share")["last_error"] is None
        finally:
            await intake.aclose()
        assert list(spool.keys()) == [rid(report(22))]
    assert files_in(drop) == []
