"""One job record per batch, and no failing file-system call per file.

Intake used to write, rename and delete a job record for every file, and to try (and fail) a
mkdir, an rmdir and an unlink per file. Now a batch has one record listing its files; the record
and the batch's copy folder go when its last file is finished; a restart resumes every file of a
record whose copy is still there, and finished ones (copy gone) are not taken again.
"""

from __future__ import annotations

import errno
import re
from collections import Counter
import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.intake.model import TrackedFile, Watch
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from tests.test_intake import FAST, MISBEHAVING, files_in, intake_for, report, rid, scans, section, today_archive


async def test_a_batch_has_one_job_record_and_a_restart_finishes_every_file_of_it(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    for i in range(5):
        (drop / f"f{i}.txt").write_text(f"SN-{i}")
    sec = section("s", drop, f"{MISBEHAVING}:Slow", arguments={"delay": 2.0, "count": 2})
    jobs = data / "intake" / "s" / "jobs"
    with Spool(data) as spool:
        intake = intake_for(spool, data, sec)
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(60):  # copied, the first conversion under way (2 s): now stop
                while not (jobs.is_dir() and any(jobs.iterdir())):
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await intake.aclose()
        [record] = jobs.iterdir()  # one record for the batch, not one per file
        listed = json.loads(record.read_bytes())
        assert listed["batch"] == record.stem
        assert sorted(Path(f["source"]).name for f in listed["files"]) == [f"f{i}.txt" for i in range(5)]
        assert {f["state"] for f in listed["files"]} == {"copied"}
        assert {f["copy"].split("/")[0] for f in listed["files"]} == {record.stem}  # one shared copy folder
        assert spool.keys() == [] and len(files_in(drop)) == 5  # nothing was taken from the sources yet
        fast = section("s", drop, f"{MISBEHAVING}:Slow", arguments={"delay": 0.01, "count": 2})
        done, _ = await scans(spool, data, fast)
        assert done == 5 and len(spool.keys()) == 10
    assert files_in(drop) == []
    assert len(files_in(today_archive(data, "s"))) == 5
    for leftover in ("copies", "jobs", "tmp"):
        assert list((data / "intake" / "s" / leftover).iterdir()) == [], leftover


def _record(drop: Path, name: str, batch: str, job: str) -> dict[str, Any]:
    st = (drop / name).stat() if (drop / name).exists() else None
    return {"job": job, "intake": "b", "source": str(drop / name), "rel": name, "origin": "watch",
            "size": st.st_size if st else 10, "mtime_ns": st.st_mtime_ns if st else 1, "sha256": None,
            "identity": [st.st_dev, st.st_ino] if st else [0, 0], "copy": f"{batch}/{name}", "state": "copied",
            "reports": []}


async def test_a_restart_resumes_the_unfinished_files_of_a_batch_and_skips_the_finished(tmp_path: Path) -> None:
    """A crash after some files of a batch were finished: those (copy gone) are not taken again,
    the others are converted from their copies; the record goes with the last of them."""
    import hashlib

    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    batch = "feedfacefeedface"
    copies = data / "intake" / "b" / "copies" / batch
    copies.mkdir(parents=True)
    raws = {f"r{i}.json": report(i) for i in range(3)}
    for name in ("r1.json", "r2.json"):  # r0.json was finished: archived, its copy gone, source removed
        (drop / name).write_bytes(raws[name])
        (copies / name).write_bytes(raws[name])
    entries = [_record(drop, name, batch, f"{i:016x}") for i, name in enumerate(raws)]
    for entry in entries[1:]:
        entry["sha256"] = hashlib.sha256(raws[entry["rel"]]).hexdigest()
    jobs = data / "intake" / "b" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"{batch}.json").write_text(json.dumps({"batch": batch, "files": entries}))
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("b", drop, after="delete"))
        assert done == 2
        assert sorted(spool.keys()) == sorted(rid(raws[n]).lower() for n in ("r1.json", "r2.json"))
    assert files_in(drop) == [] and list(jobs.iterdir()) == [] and not copies.exists()


async def test_an_unreadable_batch_record_goes_and_its_sources_are_taken_again(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_bytes(report(7))
    jobs = data / "intake" / "u" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "0000000000000001.json").write_text(json.dumps({"batch": "0000000000000001", "files": [{"job": 1}]}))
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("u", drop))
        assert done == 1 and spool.keys() == [rid(report(7)).lower()]
    assert list(jobs.iterdir()) == []


def test_a_record_stays_until_the_last_file_of_its_batch_is_released(tmp_path: Path) -> None:
    sec = section("w", tmp_path / "drop")
    watch = Watch(sec, tmp_path / "data", load_lifecycle("conversion"))
    watch.jobs.mkdir(parents=True)
    (watch.copies / "b1").mkdir(parents=True)
    (watch.jobs / "b1.json").write_text("{}")
    files = [TrackedFile(watch, tmp_path / f"{i}", f"{i}", "watch", "copied", 1, 1, 0.0, job=f"j{i}", batch="b1")
             for i in range(2)]
    watch.hold_record("b1", 2)
    watch.release_record(files[0])
    watch.release_record(files[0])  # once per file: a second release changes nothing
    assert (watch.jobs / "b1.json").exists() and (watch.copies / "b1").is_dir()
    watch.release_record(files[1])
    assert not (watch.jobs / "b1.json").exists() and not (watch.copies / "b1").exists()
    assert watch.batches == {}


@pytest.mark.parametrize("after", ["archive", "delete"])
async def test_no_failing_mkdir_rmdir_unlink_or_stat_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             after: str) -> None:
    """64 files through intake: the calls on intake's own folders that fail (EEXIST, ENOENT,
    ENOTEMPTY) stay a handful per batch, not one or more per file as before."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    for i in range(64):
        (drop / f"r{i:02d}.json").write_bytes(report(100 + i))
    failed: list[str] = []
    watched = (str(data / "intake"), str(data / "archive"), str(drop))

    def counting(name: str, real: Any) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return real(path, *args, **kwargs)
            except OSError as exc:
                if str(path).startswith(watched) and exc.errno in (errno.EEXIST, errno.ENOENT, errno.ENOTEMPTY):
                    failed.append(f"{name} {re.sub('[0-9a-f]{16}', 'X', os.path.relpath(path, tmp_path))}")
                raise
        return call

    for name in ("mkdir", "rmdir", "unlink", "stat"):
        monkeypatch.setattr(os, name, counting(name, getattr(os, name)))
    with Spool(data) as spool:
        done, _ = await scans(spool, data, section("n", drop, after=after), options=FAST)
        assert done == 64 and len(spool.keys()) == 64
    assert files_in(drop) == []
    summary = Counter(re.sub(r"r\d\d", "rNN", f) for f in failed)
    # Before: two stats of a private name, a mkdir, an rmdir and an unlink failing per file.
    # Now: folders made at start and once per batch, nothing that names a file.
    assert not [f for f in summary if "rNN" in f or ".taking" in f or "/X/" in f], summary
    assert len(failed) <= 12, summary


async def test_a_move_that_failed_once_is_retried_from_the_source_put_back(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The source is claimed (renamed to its private name), the move fails and puts it back: the
    retry claims it again (it must not trust the earlier claim) and the move completes."""
    data, drop, moved = tmp_path / "data", tmp_path / "drop", tmp_path / "moved"
    drop.mkdir()
    moved.mkdir()
    (drop / "a.json").write_bytes(report(42))
    real_replace = os.replace
    refused: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        if str(dst).startswith(str(moved)) and not refused:
            refused.append(str(dst))
            raise PermissionError(errno.EACCES, "refused once by the test", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with Spool(data) as spool:
        intake = intake_for(spool, data, section("m", drop, after="move", move_to=str(moved)))
        try:
            finished = 0
            with anyio.fail_after(30):
                while finished < 1:
                    finished += await intake.scan_once()
                    await anyio.sleep(0.05)
        finally:
            await intake.aclose()
        assert spool.keys() == [rid(report(42)).lower()]
    assert refused and files_in(drop) == [] and files_in(moved) == ["a.json"]
