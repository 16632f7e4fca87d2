"""The spool on a real disk: transitions, limits, recovery, corruption, crash injection."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from stationflow.engine import durable
from stationflow.engine.spool import store as spool_module
from stationflow.engine.errors import (
    AlreadyRunning,
    DuplicateReport,
    IllegalTransition,
    InvalidReport,
    ReportNotFound,
    SpoolFull,
    StorageError,
)
from stationflow.engine.devtools.samples import make_report, make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.conftest import REPORTS, assert_whole_once, spool_files


def _report(i: int, **kw) -> bytes:
    return make_report_bytes(i, seed=7, **kw)


def test_accept_writes_whole_report_into_pending(data_dir: Path) -> None:
    raw = _report(1)
    with Spool(data_dir) as spool:
        result = spool.accept(raw, source="/drop/a.json")
        assert result.state == "pending" and not result.already_present
        assert spool.counts()["pending"] == 1
        assert spool.info(result.key).source == "/drop/a.json"
    assert assert_whole_once(data_dir, {result.key: raw}) == {result.key: "pending"}
    assert not list((data_dir / "spool" / "tmp").iterdir())


@pytest.mark.parametrize("name", ["uut-wsjf-export.json", "new_report_example.json", "uur_example.json"])
def test_real_reports_are_stored_byte_for_byte(data_dir: Path, name: str) -> None:
    raw = (REPORTS / name).read_bytes()
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
        claim = spool.claim_next()
        assert claim is not None and claim.data == raw
        spool.fire(claim.key, "accepted")
    assert assert_whole_once(data_dir, {key: raw}) == {key: "sent"}


def test_happy_cycle_and_counts(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        keys = [spool.accept(_report(i)).key for i in range(5)]
        claimed = []
        while (claim := spool.claim_next()) is not None:
            assert spool.state_of(claim.key) == "sending"
            claimed.append(claim.key)
            spool.fire(claim.key, "accepted")
        assert claimed == keys  # oldest first
        assert spool.counts() == {**{s: 0 for s in spool.lifecycle.states}, "sent": 5}
        history = spool.info(keys[0]).history
        assert [h["to"] for h in history] == ["pending", "sent"]
        assert not (data_dir / "spool" / "meta" / f"{keys[0]}.json").exists()  # the quiet path writes no sidecar


def test_transient_error_waits_then_becomes_due(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(_report(1)).key
        claim = spool.claim_next()
        spool.fire(claim.key, "transient_error", error="503 from server", next_attempt_s=0.2, count_attempt=True)
        assert spool.state_of(key) == "retry_wait"
        info = spool.info(key)
        assert info.attempts == 1 and info.last_error == "503 from server" and info.next_attempt
        assert spool.release_due() == 0
        assert 0 < spool.next_due_in() <= 0.2
        time.sleep(0.25)
        assert spool.release_due() == 1
        assert spool.state_of(key) == "pending"
        assert spool.claim_next().attempts == 1


def test_rejected_report_keeps_the_servers_message_and_can_be_retried(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(_report(1)).key
        spool.claim_next()
        spool.fire(key, "rejected", error="400: pn is required", count_attempt=True)
        assert spool.state_of(key) == "failed"
        assert spool.claim_next() is None
        spool.fire(key, "retry", note="operator")
        assert spool.state_of(key) == "pending"
        assert [h["trigger"] for h in spool.info(key).history] == ["rejected", "retry"]
        assert spool.info(key).last_error == "400: pn is required"


def test_illegal_trigger_is_refused_and_nothing_moves(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(_report(1)).key
        with pytest.raises(IllegalTransition, match="retry"):
            spool.fire(key, "retry")
        with pytest.raises(ReportNotFound):
            spool.fire("00000000-0000-4000-8000-000000000000", "retry")
        assert spool.state_of(key) == "pending"


def test_same_report_twice_is_a_no_op_and_a_different_one_is_refused(data_dir: Path) -> None:
    raw = _report(1)
    other = json.loads(raw)
    other["sn"] = "SOMETHING-ELSE"
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
        again = spool.accept(raw)
        assert again.already_present and again.key == key
        with pytest.raises(DuplicateReport, match=key):
            spool.accept(json.dumps(other).encode())
        assert spool.counts()["pending"] == 1
    assert_whole_once(data_dir, {key: raw})


@pytest.mark.parametrize("bad", [b"", b"{", b"\x00\xff garbage", b"[]", json.dumps({"id": "x"}).encode()])
def test_invalid_report_is_refused_without_touching_the_spool(data_dir: Path, bad: bytes) -> None:
    raw = _report(1)
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
        with pytest.raises(InvalidReport):
            spool.accept(bad)
        assert spool.counts()["pending"] == 1
    assert_whole_once(data_dir, {key: raw})
    assert not list((data_dir / "spool" / "tmp").iterdir())


def test_limits_refuse_new_reports_and_keep_old_ones(data_dir: Path) -> None:
    with Spool(data_dir, max_reports=2) as spool:
        keys = {spool.accept(_report(i)).key: _report(i) for i in range(2)}
        with pytest.raises(SpoolFull, match="max_reports"):
            spool.accept(_report(3))
        # a sent report no longer counts against the limit
        spool.fire(spool.claim_next().key, "accepted")
        spool.accept(_report(3))
    with Spool(data_dir, max_bytes=len(_report(9)) * 2 + 10) as spool:
        with pytest.raises(SpoolFull, match="max_bytes"):
            spool.accept(_report(9))
    with Spool(data_dir, min_free_bytes=10**18) as spool:
        with pytest.raises(SpoolFull, match="disk"):
            spool.accept(_report(10))
    files = spool_files(data_dir)
    assert set(keys) <= set(files) and len(files) == 3


def test_recovery_puts_sending_back_and_quarantines_leftovers(data_dir: Path) -> None:
    spool = Spool(data_dir)
    raws = {spool.accept(_report(i)).key: _report(i) for i in range(3)}
    claimed = spool.claim_next()
    spool._filelock.release()  # the process "dies" here: no close, no sync
    root = data_dir / "spool"
    (root / "tmp" / "half-written.json.tmp").write_bytes(b'{"id": "trunc')
    (root / "pending" / "not-a-report.txt").write_bytes(b"hello")
    with Spool(data_dir) as again:
        assert again.state_of(claimed.key) == "pending"
        assert again.counts()["pending"] == 3
        assert again.counts()["quarantined"] == 2
        reasons = [again.info(k).last_error for k in again.keys("quarantined")]
        assert any("interrupted write" in r for r in reasons)
        assert any("unexpected file name" in r for r in reasons)
        assert len(again.recovery_notes) == 2
        # nothing deleted: the junk is still there, whole
        contents = {again.read(k) for k in again.keys("quarantined")}
        assert contents == {b'{"id": "trunc', b"hello"}
    assert_whole_once(data_dir, raws)


def test_damaged_report_is_quarantined_when_claimed_and_the_rest_flows(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        bad_key = spool.accept(_report(1)).key
        good_key = spool.accept(_report(2)).key
        path = Path(spool.info(bad_key).path)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))
    with Spool(data_dir) as spool:
        claimed = [c.key for c in iter(spool.claim_next, None)]
        assert claimed == [good_key]
        assert spool.state_of(bad_key) == "quarantined"
        assert "checksum" in spool.info(bad_key).last_error
        assert spool.read(bad_key) == bytes(data)  # kept as found, for a person to look at


def test_second_writer_is_refused_but_a_reader_works(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        spool.accept(_report(1))
        with pytest.raises(AlreadyRunning):
            Spool(data_dir)
        reader = Spool(data_dir, readonly=True)
        assert reader.counts()["pending"] == 1
        with pytest.raises(StorageError):
            reader.accept(_report(2))
    Spool(data_dir).close()  # released on close


def test_readonly_spool_moves_nothing(data_dir: Path) -> None:
    spool = Spool(data_dir)
    spool.accept(_report(1))
    spool.claim_next()
    spool._filelock.release()
    reader = Spool(data_dir, readonly=True)
    assert reader.counts()["sending"] == 1  # shown as found; only a writer recovers it
    assert list((data_dir / "spool" / "sending").iterdir())


def test_prune_sent_respects_age_and_refuses_after_a_clock_jump(data_dir: Path) -> None:
    with Spool(data_dir, keep_sent_days=0) as spool:
        for i in range(3):
            spool.accept(_report(i))
            spool.fire(spool.claim_next().key, "accepted")
        spool.accept(_report(10))  # pending: never pruned
        spool._clock_ref = (spool._clock_ref[0] - 86400 * 365, spool._clock_ref[1])  # wall clock "jumped" a year
        assert spool.prune_sent() == 0
        spool._clock_ref = (time.time(), time.monotonic())
        assert spool.prune_sent() == 3
        assert spool.counts()["sent"] == 0 and spool.counts()["pending"] == 1
    with Spool(data_dir, keep_sent_days=1) as spool:
        spool.fire(spool.claim_next().key, "accepted")
        assert spool.prune_sent() == 0  # too young
    assert len(spool_files(data_dir)) == 1


def test_failed_write_leaves_nothing_behind(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(_report(1)).key

        def broken_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(StorageError, match="No space left"):
            spool.accept(_report(2))
        monkeypatch.undo()
        assert spool.counts()["pending"] == 1
        assert not list((data_dir / "spool" / "tmp").iterdir())
        spool.accept(_report(2))  # and it works again once the disk is fine
    assert set(spool_files(data_dir)) == {key, make_report(2, seed=7)["id"]}


@pytest.mark.slow  # a large spool written and recovered
def test_recovery_of_a_large_spool_streams(data_dir: Path) -> None:
    """A spool with thousands of reports reopens with correct counts (speed is in bench/)."""
    raw = _report(1)
    doc = json.loads(raw)
    with Spool(data_dir, fsync=False) as spool:
        for i in range(2000):
            doc["id"] = f"{i:08x}-0000-4000-8000-000000000000"
            spool.accept(json.dumps(doc).encode())
    started = time.perf_counter()
    with Spool(data_dir) as spool:
        assert spool.counts()["pending"] == 2000
        assert spool.claim_next().key == "00000000-0000-4000-8000-000000000000"
    assert time.perf_counter() - started < 2.0


def test_spool_module_only_moves_files_through_the_lifecycle() -> None:
    """Structural check: every rename between state directories in spool.py is in the one transition function."""
    source = Path(spool_module.__file__).read_text()
    body_of_fire = source.split("def _fire_locked_io", 1)[1].split("\n    def ", 1)[0]
    assert "self.lifecycle.next_state(source, trigger)" in body_of_fire
    assert source.count("durable.replace(") == 1  # the one rename, in the transition function
    assert "durable.replace(path, self._path(dest, key, entry))" in body_of_fire
    assert durable.replace  # the only rename helper


def test_an_interrupted_write_does_not_block_the_same_report_later(data_dir: Path) -> None:
    """A crash mid-accept leaves a partial temp file; the same report submitted again is accepted."""
    raw = _report(1)
    key = make_report(1, seed=7)["id"]
    Spool(data_dir).close()
    (data_dir / "spool" / "tmp" / f"{key}.00000000.json.tmp").write_bytes(raw[:100])
    with Spool(data_dir) as spool:
        assert spool.counts()["quarantined"] == 1
        result = spool.accept(raw)
        assert result.key == key and not result.already_present
        assert spool.state_of(key) == "pending"


def test_a_report_busy_in_another_move_keeps_its_place_in_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim that meets a report in the middle of another move must not drop it from the queue."""
    import threading

    with Spool(data_dir) as spool:
        first = spool.accept(_report(1)).key
        second = spool.accept(_report(2)).key
        inside, release = threading.Event(), threading.Event()
        real_replace = durable.replace

        def slow_failing_replace(src, dst):
            if "quarantined" in str(dst):
                inside.set()
                release.wait(10)
                raise StorageError("disk went away")  # the move fails: the report stays pending
            return real_replace(src, dst)

        monkeypatch.setattr(durable, "replace", slow_failing_replace)
        errors: list[BaseException] = []
        mover = threading.Thread(target=lambda: _catch(errors, spool.fire, first, "quarantine", error="x"))
        mover.start()
        assert inside.wait(10)
        assert spool.claim_next().key == second  # the busy one is skipped, not dropped
        release.set()
        mover.join(10)
        assert isinstance(errors[0], StorageError)
        assert spool.state_of(first) == "pending"
        assert spool.claim_next().key == first  # and it is still in line


def _catch(errors: list[BaseException], fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
        errors.append(exc)


def test_a_sidecar_that_cannot_be_written_does_not_strand_the_report(data_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the disk-full chaos scenario: the report was on disk but stuck 'busy' in the index."""
    with Spool(data_dir) as spool:
        def full_disk(*args, **kwargs):
            raise StorageError("writing the sidecar failed: No space left on device")

        monkeypatch.setattr(spool, "_write_meta", full_disk)
        key = spool.accept(_report(1), source="/drop/a.json").key
        monkeypatch.undo()
        claim = spool.claim_next()
        assert claim is not None and claim.key == key


def test_accept_many_stores_each_item_and_syncs_the_directory_once(data_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [_report(i) for i in range(4)]
    with Spool(data_dir) as spool:
        first = spool.accept(raws[0])
        changed = json.loads(raws[1])
        changed["location"] = "elsewhere"
        spool.accept(json.dumps(changed).encode())  # a different report under raws[1]'s id
        while (claim := spool.claim_next()) is not None:  # nothing claimable before the call
            spool.fire(claim.key, "accepted")
        synced: list[str] = []
        claimable_during_sync: list[object] = []
        real = durable.fsync_dir

        def spy(path: str | os.PathLike[str]) -> None:
            synced.append(Path(path).name)
            claimable_during_sync.append(spool.claim_next())
            real(path)

        monkeypatch.setattr(durable, "fsync_dir", spy)
        results = spool.accept_many([(raws[0], "/a"), (raws[1], "/b"), (b"{not json", "/c"),
                                     (raws[2], "/d"), (raws[3], None)])
        monkeypatch.setattr(durable, "fsync_dir", real)
        assert results[0].already_present and results[0].key == first.key
        assert isinstance(results[1], DuplicateReport) and isinstance(results[2], InvalidReport)
        assert [r.state for r in (results[3], results[4])] == ["pending", "pending"]
        assert synced == ["pending"]  # one directory fsync for the two new reports
        assert claimable_during_sync == [None]  # claimable only once their directory entry is durable
        assert spool.info(results[3].key).source == "/d"
        assert spool.counts()["pending"] == 2 and spool.claim_next() is not None
    assert not list((data_dir / "spool" / "tmp").iterdir())


def test_accept_many_stops_at_a_full_spool_and_keeps_what_fitted(data_dir: Path) -> None:
    raws = [_report(i) for i in range(5)]
    with Spool(data_dir, max_reports=2) as spool:
        results = spool.accept_many([(raw, None) for raw in raws])
        assert [type(r).__name__ for r in results] == ["Accepted", "Accepted", "SpoolFull", "SpoolFull", "SpoolFull"]
    keys = {json.loads(r)["id"].lower(): r for r in raws[:2]}
    assert assert_whole_once(data_dir, keys) == {key: "pending" for key in keys}


def test_accept_many_reports_a_failed_directory_fsync_for_every_new_report(data_dir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [_report(i) for i in range(3)]

    def broken(path: str | os.PathLike[str]) -> None:
        raise StorageError(f"fsync of directory {path} failed: I/O error")

    with Spool(data_dir) as spool:
        monkeypatch.setattr(durable, "fsync_dir", broken)
        results = spool.accept_many([(raw, "/src") for raw in raws])
        monkeypatch.undo()
        assert all(isinstance(r, StorageError) for r in results)
        # The files are whole in pending: the same bytes again are a no-op, not a duplicate.
        again = spool.accept_many([(raw, "/src") for raw in raws])
        assert all(r.already_present for r in again)
        assert spool.counts()["pending"] == 3


def test_accept_writes_no_sidecar_the_source_is_journalled_and_attempts_still_count(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        first, second = spool.accept(_report(1), source="/drop/a.json"), spool.accept(_report(2), source="/drop/b.json")
        assert not list((data_dir / "spool" / "meta").glob("*.json"))  # one journal line each, no file per report
        claim = spool.claim_next()
        assert claim is not None and claim.key == first.key and claim.attempts == 0
        spool.fire(claim.key, "accepted")  # sent at the first attempt: still no sidecar
        assert not (data_dir / "spool" / "meta" / f"{first.key}.json").exists()
        assert spool.info(first.key).source == "/drop/a.json"
        claim = spool.claim_next()
        assert claim is not None and claim.key == second.key
        spool.fire(claim.key, "transient_error", error="503", next_attempt_s=0.0, count_attempt=True)
        spool.release_due()
        again = spool.claim_next()
        assert again is not None and again.key == second.key and again.attempts == 1
        assert spool.info(second.key).source == "/drop/b.json"


def test_the_spool_records_its_format_and_refuses_a_newer_one(tmp_path: Path) -> None:
    """An older stationflow must not run on a spool a newer one wrote: refused, nothing changed."""
    from stationflow.engine.errors import IncompatibleSpool
    from stationflow.engine.spool.format import SPOOL_FORMAT

    with Spool(tmp_path) as spool:
        key = spool.accept(make_report_bytes(0)).key
    marker = tmp_path / "spool" / "format"
    assert marker.read_text().strip() == str(SPOOL_FORMAT)
    marker.write_text(f"{SPOOL_FORMAT + 1}\n")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "spool").rglob("*"))
    with pytest.raises(IncompatibleSpool, match="newer stationflow") as caught:
        Spool(tmp_path)
    assert caught.value.exit_code == 9
    with pytest.raises(IncompatibleSpool):
        Spool(tmp_path, readonly=True)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "spool").rglob("*")) == before
    marker.write_text(f"{SPOOL_FORMAT}\n")
    with Spool(tmp_path) as spool:
        assert spool.state_of(key) == "pending"
