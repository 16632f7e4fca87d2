"""``durable.fsync_all``: every descriptor fsynced exactly once, its own result, all at once, and
only returning once every fsync has returned (the caller closes the descriptors next).

Real files on disk; only the fsync is observed (or failed with EIO) by replacing ``os.fsync``.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stationflow.engine import durable
from stationflow.engine.errors import StorageError


def _open(tmp_path: Path, count: int, prefix: str = "f") -> list[int]:
    return [durable.write_open(tmp_path / f"{prefix}{i}", b"x" * 100) for i in range(count)]


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def test_each_descriptor_is_fsynced_once_and_answered_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def counting(fd: int) -> None:
        with lock:
            seen[fd] += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    for count in (0, 1, 2, 7, 8, 9, 40):
        fds = _open(tmp_path, count, prefix=f"n{count}-")
        seen.clear()
        assert durable.fsync_all(fds) == [None] * count
        assert seen == Counter({fd: 1 for fd in fds})
        _close(fds)


def test_a_failed_fsync_is_that_descriptors_error_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync
    fds = _open(tmp_path, 20)
    bad = {fds[3], fds[11], fds[19]}

    def failing(fd: int) -> None:
        if fd in bad:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", failing)
    results = durable.fsync_all(fds)
    for fd, result in zip(fds, results):
        if fd in bad:
            assert isinstance(result, StorageError) and "Input/output error" in str(result)
        else:
            assert result is None
    _close(fds)


def test_the_fsyncs_of_a_batch_wait_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FSYNC_THREADS fsyncs are under way at the same moment (what lets the journal commit them
    together): a barrier of that many parties is passed only if they are."""
    real = os.fsync
    barrier = threading.Barrier(durable.FSYNC_THREADS, timeout=60)

    def together(fd: int) -> None:
        barrier.wait()
        real(fd)

    monkeypatch.setattr(os, "fsync", together)
    fds = _open(tmp_path, durable.FSYNC_THREADS * 3)
    assert durable.fsync_all(fds) == [None] * len(fds)
    _close(fds)


def test_it_returns_only_after_the_slowest_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync
    fds = _open(tmp_path, 12)
    slow = fds[0]  # taken first, by the caller or a helper: either way the call must wait for it
    done: list[int] = []

    def slowly(fd: int) -> None:
        if fd == slow:
            time.sleep(0.3)
        real(fd)
        done.append(fd)

    monkeypatch.setattr(os, "fsync", slowly)
    assert durable.fsync_all(fds) == [None] * len(fds)
    assert sorted(done) == sorted(fds)
    _close(fds)


def test_callers_in_many_threads_at_once_each_get_their_own_results(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync
    failing_fds: set[int] = set()

    def maybe_failing(fd: int) -> None:
        if fd in failing_fds:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", maybe_failing)
    batches = [_open(tmp_path, 2 + i % 11, prefix=f"t{i}-") for i in range(24)]
    failing_fds.update(batch[-1] for batch in batches[::3])
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(durable.fsync_all, batches))
    for batch, results in zip(batches, answers):
        assert len(results) == len(batch)
        for fd, result in zip(batch, results):
            assert (result is not None) == (fd in failing_fds)
        _close(batch)
