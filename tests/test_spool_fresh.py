"""Claims of reports this process has just accepted post the accepted bytes, not a read-back of
the file; everything else (older ones past the bound, a restart, a second claim) reads the file and
checks its crc, so a damaged file is still quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool import store as spool_module
from stationflow.engine.spool.store import Spool


def _report(i: int) -> bytes:
    return make_report_bytes(i, seed=11)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every report file the spool reads back for a claim."""
    seen: list[str] = []
    real = spool_module._read_file

    def counting(path: str, size: int) -> bytes:
        seen.append(path)
        return real(path, size)

    monkeypatch.setattr(spool_module, "_read_file", counting)
    return seen


def test_a_fresh_claim_posts_the_accepted_bytes_without_reading_the_file(data_dir: Path, reads: list[str]) -> None:
    raws = [_report(i) for i in range(5)]
    with Spool(data_dir) as spool:
        keys = [a.key for a in spool.accept_many([(raw, None) for raw in raws])]
        claims = [spool.claim_next() for _ in raws]
        assert [c.key for c in claims if c] == keys
        assert [c.data for c in claims if c] == raws
        assert reads == []
        assert spool._fresh == {} and spool._fresh_bytes == 0  # nothing kept once claimed
        for key in keys:
            spool.fire(key, "accepted")
    with Spool(data_dir) as spool:  # the files are what was accepted
        assert [spool.read(k) for k in keys] == raws


def test_past_the_bound_the_oldest_are_read_back_and_checked(data_dir: Path, reads: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [_report(i) for i in range(6)]
    monkeypatch.setattr(Spool, "FRESH_BYTES", sum(len(r) for r in raws[3:]))  # room for the newest three
    with Spool(data_dir) as spool:
        keys = [spool.accept(raw).key for raw in raws]
        assert list(spool._fresh) == keys[3:]
        assert spool._fresh_bytes == sum(len(r) for r in raws[3:]) <= Spool.FRESH_BYTES
        data = [c.data for c in iter(spool.claim_next, None)]
        assert data == raws
        assert [Path(p).name.split(".")[0] for p in reads] == keys[:3]


def test_a_report_claimed_again_reads_its_file_and_a_damaged_one_is_quarantined(data_dir: Path,
                                                                               reads: list[str]) -> None:
    raw = _report(1)
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
        claim = spool.claim_next()
        assert claim is not None and claim.data == raw and reads == []
        spool.fire(key, "transient_error", next_attempt_s=0.0)  # the post failed: it waits, then goes back
        spool.release_due()
        path = Path(spool.info(key).path)
        damaged = bytearray(path.read_bytes())
        damaged[100] ^= 0x01
        path.write_bytes(bytes(damaged))
        assert spool.claim_next() is None  # read back, crc checked: not posted
        assert len(reads) == 1
        assert spool.state_of(key) == "quarantined"
        assert "checksum" in (spool.info(key).last_error or "")


def test_a_restart_forgets_them_and_claims_read_the_files(data_dir: Path, reads: list[str]) -> None:
    raw = _report(2)
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
    with Spool(data_dir) as spool:
        claim = spool.claim_next()
        assert claim is not None and claim.key == key and claim.data == raw
        assert len(reads) == 1


def test_a_report_deleted_before_its_claim_leaves_nothing_behind(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        key = spool.accept(_report(3)).key
        assert key in spool._fresh
        spool._drop_entry(key)
        assert key not in spool._fresh and spool._fresh_bytes == 0


def test_with_a_long_queue_nothing_is_kept(data_dir: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing claiming (a server down, uploads paused): past FRESH_QUEUE ready reports the accepted
    bytes are not kept, so a long outage holds no memory for claims that will not come soon."""
    monkeypatch.setattr(Spool, "FRESH_QUEUE", 3)
    raws = [_report(i) for i in range(5)]
    with Spool(data_dir) as spool:
        keys = [spool.accept(raw).key for raw in raws]
        assert list(spool._fresh) == keys[:3]
        assert [c.data for c in iter(spool.claim_next, None)] == raws
        assert [Path(p).name.split(".")[0] for p in reads] == keys[3:]
