"""Races with the equipment that writes the files: nothing it writes may be removed unread."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")


def _version(k: int) -> bytes:
    return make_report_bytes(k, seed=23, approx_bytes=600)


def _id(raw: bytes) -> str:
    return str(json.loads(raw)["id"]).lower()


@pytest.mark.parametrize("after", ["delete", "archive", "move"])
async def test_a_file_rewritten_under_the_same_name_is_never_removed_unread(tmp_path: Path, after: str) -> None:
    """A writer renames 1,500 new versions over ``result.json`` while intake takes, converts and
    removes it. A version the writer replaced itself is the writer's business; a version that left
    the folder by any other way must be in the spool (before the fix, intake checked the source by
    path, then removed it by path: a version renamed over it in between was deleted unread)."""
    data, drop, moved = tmp_path / "data", tmp_path / "drop", tmp_path / "moved"
    drop.mkdir()
    name = drop / "result.json"
    versions = 1500
    freed: list[int] = []  # versions that were gone (taken by intake) when the next one was written
    rng = random.Random(5)

    def writer() -> None:
        for k in range(versions):
            tmp = drop / f".result.json.{k}.tmp"
            tmp.write_bytes(_version(k))
            if k % 25 == 0:  # now and then, let intake take the current version first (whatever its pace)
                deadline = time.monotonic() + 5
                while name.exists() and time.monotonic() < deadline:
                    time.sleep(0.001)
            # Version k-1 is freed only if the name is free when k is put in place, atomically: a
            # check, then a rename, would count a version that intake had only claimed for a moment
            # (a newcomer it put back) and that this very rename then replaced.
            try:
                os.link(tmp, name)  # never over a file
            except FileExistsError:
                os.replace(tmp, name)  # the writer replaces the current version itself
            else:
                os.unlink(tmp)
                if k:
                    freed.append(k - 1)
            time.sleep(rng.choice((0.0, 0.001, 0.004, 0.008, 0.012)))

    section = IntakeSection(name="race", watch=str(drop), converter="wsjf", settle_ms=0, after=after,
                            **({"move_to": str(moved)} if after == "move" else {}))
    with Spool(data, max_reports=10_000) as spool:
        intake = Intake([section], spool, data, STATION,
                        options=IntakeOptions(poll_interval_s=0.002, post_retry_s=0.01, fsync=False))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            await anyio.to_thread.run_sync(writer)
            with anyio.fail_after(60):  # the last version is taken too, and any newcomer put back beside it
                while any(drop.iterdir()) or intake.status()["in_flight"]:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await intake.aclose()
        in_spool = set(spool.keys())
    lost = [k for k in [*freed, versions - 1] if _id(_version(k)) not in in_spool]
    assert lost == [], f"{len(lost)} version(s) removed unread, e.g. {lost[:5]}"
    print(f"{after}: {len(freed)} of {versions} versions taken before the next was written")
    assert len(freed) >= 50, "the writer and intake did not interleave enough to test anything"
    leftovers = [p.name for p in drop.iterdir()]
    assert leftovers == [], f"left in the watch folder: {leftovers}"


async def test_a_crash_between_claim_and_removal_is_finished_at_restart(tmp_path: Path) -> None:
    """A crash after the source was renamed to its private name (and its copy archived) but before
    it was removed: at restart the claimed file is put back and taken again — not left hidden."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    raw = _version(1)
    job = "0123456789abcdef"
    claimed = drop / f".stationflow-{job}.taking"
    claimed.write_bytes(raw)
    st = claimed.stat()
    jobs = data / "intake" / "c" / "jobs"
    jobs.mkdir(parents=True)
    record = {"job": job, "intake": "c", "source": str(drop / "result.json"), "rel": "result.json",
              "origin": "watch", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": "0" * 64,
              "identity": [st.st_dev, st.st_ino], "copy": "batch0000000000/result.json", "state": "copied",
              "reports": []}
    (jobs / f"{job}.json").write_text(json.dumps(record))
    section = IntakeSection(name="c", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(fsync=False))
        try:
            finished = 0
            with anyio.fail_after(30):
                while finished < 1:
                    finished += await intake.scan_once()
        finally:
            await intake.aclose()
        assert _id(raw) in spool.keys()
    assert list(drop.iterdir()) == []
    assert list(jobs.iterdir()) == []


@pytest.mark.parametrize("after", ["archive", "reject"])
async def test_names_near_the_file_system_limit_are_archived_and_rejected(tmp_path: Path, after: str) -> None:
    """Names of ~190 bytes made the archive name exceed 255 bytes (retried forever, the source
    never removed); names of ~245 bytes could not be rejected (.error.txt too long). Derived names
    are shortened with a hash: the file is archived or rejected, the source goes."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    name = ("é" * 120) + ".json"  # 245 bytes in UTF-8
    (drop / name).write_bytes(_version(3) if after == "archive" else b"{not json")
    section = IntakeSection(name="n", watch=str(drop), converter="wsjf", settle_ms=0, after="archive")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(fsync=False))
        try:
            with anyio.fail_after(30):
                while not await intake.scan_once():
                    pass
        finally:
            await intake.aclose()
        in_spool = set(spool.keys())
    assert list(drop.iterdir()) == []
    if after == "archive":
        assert _id(_version(3)) in in_spool
        [archived] = list((data / "archive").rglob("*.json"))
        assert len(archived.name.encode()) <= 255 and archived.name.endswith(".json")
    else:
        rejected = sorted(p.name for p in (data / "rejected" / "n").iterdir())
        assert len(rejected) == 2 and rejected[1] == rejected[0] + ".error.txt"
        assert all(len(n.encode()) <= 255 for n in rejected)


async def test_a_source_held_by_another_program_is_retried_not_failed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows: equipment (or an antivirus) holding the source makes a rename fail with
    PermissionError for a moment. The post-action waits and retries (durable.retry_held), and
    status can say which file was held; nothing is lost, nothing crashes."""
    from stationflow.engine import durable

    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    (drop / "held.json").write_bytes(_version(9))
    monkeypatch.setattr(durable, "_WINDOWS", True)
    monkeypatch.setattr(durable, "HELD_RETRIES", (0.01, 0.01, 0.01))
    real_rename = os.rename
    refusals = []

    def held_rename(src: object, dst: object) -> None:
        if str(src).endswith("held.json") and len(refusals) < 2:
            refusals.append(src)
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", held_rename)
    section = IntakeSection(name="h", watch=str(drop), converter="wsjf", settle_ms=0, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(fsync=False))
        try:
            assert await intake.scan_once() == 1
        finally:
            await intake.aclose()
        assert _id(_version(9)) in spool.keys()
    assert len(refusals) == 2 and list(drop.iterdir()) == []
    held = durable.last_held()
    assert held is not None and held.path.endswith("held.json") and held.attempts == 3
