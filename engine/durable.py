"""The durability recipe in one place: write to a temp file, fsync, rename, fsync the directory.

A failed fsync is fatal for the operation (raised as StorageError, never retried). On Windows
``os.replace`` and ``os.unlink`` fail with PermissionError while an antivirus, indexer or backup
holds the file: they are retried with a short bounded backoff (:func:`retry_held`, about 2 s in
all), never replaced by copy-and-delete, and the last such event is kept for ``status``
(:func:`last_held`). On POSIX a PermissionError is a real permission problem and is not retried.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from .errors import StorageError

_WINDOWS = sys.platform == "win32"
#: Waits between attempts on a file another program holds (Windows): about 2 s in all.
HELD_RETRIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
_T = TypeVar("_T")
#: Files fsynced at once by fsync_all (the calling thread and up to this many less one helpers).
FSYNC_THREADS = 8
_helpers: queue.SimpleQueue[_FsyncBatch] = queue.SimpleQueue()
_helpers_started = 0
_helpers_lock = threading.Lock()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (creates, renames) durable. No-op on Windows."""
    if _WINDOWS:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise StorageError(f"cannot open directory {path} to sync it: {exc.strerror}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(f"fsync of directory {path} failed: {exc.strerror}",
                           hint="check the disk; the operation did not complete") from exc
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Create or truncate ``path`` with ``data``; fsync it when ``sync``. Removes a partial file on error."""
    fd = write_open(path, data)
    try:
        if sync:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(path)
        raise StorageError(f"writing {path} failed: {exc.strerror}",
                           hint="free disk space or check the disk; nothing was stored") from exc
    os.close(fd)


def write_open(path: str | os.PathLike[str], data: bytes) -> int:
    """Create ``path`` with ``data`` and return its descriptor, not yet fsynced: the caller fsyncs
    it (``fsync_all``) and closes it. Removes a partial file on error."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(path)
        raise StorageError(f"writing {path} failed: {exc.strerror}",
                           hint="free disk space or check the disk; nothing was stored") from exc
    return fd


def fsync_all(fds: Sequence[int]) -> list[StorageError | None]:
    """fsync several open files at once; one result per descriptor (None: durable). Returns only
    when every fsync has returned.

    Why at once: fsyncs that wait together are committed together (ext4's journal, like most,
    batches concurrent fsyncs into one commit), where one after another each pays the disk's full
    flush — 2–6 ms on a station's SSD, for every file of a batch.

    How, cheaply: the calling thread fsyncs too, and up to ``FSYNC_THREADS - 1`` helper threads
    are woken once per batch (not once per file) and take the next descriptor until none is left;
    the last fsync to return wakes the caller. A thread pool's future per file cost ~3 thread
    wake-ups per file in CPU, where the fsyncs themselves are what must be waited for.
    """
    if len(fds) <= 1:
        return [_fsync(fd) for fd in fds]
    batch = _FsyncBatch(fds)
    helpers = min(FSYNC_THREADS, len(fds)) - 1
    _start_helpers(helpers)
    for _ in range(helpers):
        _helpers.put(batch)
    try:
        batch.work()
    finally:
        # The caller must not close (or reuse) a descriptor a helper may still fsync: wait for all.
        batch.finished.acquire()
    return batch.results


_NOT_SYNCED = StorageError("fsync not done", hint="nothing was stored")


class _FsyncBatch:
    """One ``fsync_all`` call: the descriptors, their results, and who takes which (``next`` of an
    ``itertools.count`` is atomic under the GIL, so each descriptor is fsynced exactly once)."""

    __slots__ = ("fds", "results", "_taken", "_done", "finished")

    def __init__(self, fds: Sequence[int]) -> None:
        self.fds = fds
        # Not durable until its fsync said so (a result never left None by an interrupted fsync).
        self.results: list[StorageError | None] = [_NOT_SYNCED] * len(fds)
        self._taken = itertools.count()
        self._done = itertools.count(1)
        self.finished = threading.Lock()  # held until the last fsync has returned
        self.finished.acquire()

    def work(self) -> None:
        fds, results, count = self.fds, self.results, len(self.fds)
        while (index := next(self._taken)) < count:
            try:
                results[index] = _fsync(fds[index])
            finally:
                if next(self._done) == count:
                    self.finished.release()


def _start_helpers(wanted: int) -> None:
    global _helpers_started
    if _helpers_started >= wanted:
        return
    with _helpers_lock:
        while _helpers_started < wanted:
            _helpers_started += 1
            threading.Thread(target=_helper, name=f"stationflow-fsync_{_helpers_started}", daemon=True).start()


def _helper() -> None:
    while True:
        batch = _helpers.get()
        try:
            batch.work()
        except BaseException:  # noqa: BLE001 - _fsync returns errors; never lose the helper thread
            pass


def _fsync(fd: int) -> StorageError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return StorageError(f"fsync failed: {exc.strerror}", hint="check the disk; nothing was stored")
    return None


@dataclass(frozen=True)
class Held:
    """A file operation that found the file held by another program (Windows), for ``status``."""

    operation: str
    path: str
    attempts: int
    succeeded: bool
    at: datetime

    def __str__(self) -> str:
        outcome = "went through" if self.succeeded else "gave up"
        return (f"{self.operation} of {self.path} found the file held by another program (antivirus, "
                f"indexer, backup?); {outcome} after {self.attempts} attempt(s) at {self.at:%Y-%m-%d %H:%M:%S} UTC")


_last_held: Held | None = None


def last_held() -> Held | None:
    """The most recent operation that had to wait for a held file, or None."""
    return _last_held


def retry_held(operation: str, path: str | os.PathLike[str], action: Callable[[], _T], *,
               windows: bool | None = None) -> _T:
    """``action()``; on Windows a PermissionError (the file is held open by another program) is
    retried after each of :data:`HELD_RETRIES`, then raised. Other errors are raised at once."""
    global _last_held
    retry = _WINDOWS if windows is None else windows
    attempts = 0
    for delay in (*HELD_RETRIES, None):
        attempts += 1
        try:
            result = action()
        except PermissionError:
            if not retry or delay is None:
                if attempts > 1:
                    _last_held = Held(operation, os.fspath(path), attempts, False, datetime.now(timezone.utc))
                raise
            time.sleep(delay)
            continue
        if attempts > 1:
            _last_held = Held(operation, os.fspath(path), attempts, True, datetime.now(timezone.utc))
        return result
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace`` with the Windows held-file retry. Atomic on one filesystem."""
    try:
        retry_held("rename", src, lambda: os.replace(src, dst))
    except OSError as exc:
        raise StorageError(f"cannot move {src} to {dst}: {exc.strerror}",
                           hint=_HELD_HINT if isinstance(exc, PermissionError) else None) from exc


def unlink(path: str | os.PathLike[str], *, missing_ok: bool = True) -> bool:
    """Remove ``path`` with the Windows held-file retry; False when it was not there."""
    try:
        retry_held("delete", path, lambda: os.unlink(path))
    except FileNotFoundError:
        if missing_ok:
            return False
        raise StorageError(f"cannot remove {path}: it does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror}",
                           hint=_HELD_HINT if isinstance(exc, PermissionError) else None) from exc
    return True


_HELD_HINT = ("another program may hold the file (on Windows: an antivirus or indexer — exclude the data dir), "
              "or the service's account lacks permission")


def atomic_write(path: str | os.PathLike[str], data: bytes, *, tmp_dir: str | os.PathLike[str] | None = None,
                 sync: bool = True) -> None:
    """Write ``data`` so that ``path`` is either the old content or the whole new content.

    With ``sync`` the file and its directory are fsynced: the new content survives power loss.
    Without it the write still survives a crash of this process (kill -9), which is enough for
    information that can be rebuilt or lost without losing a report.
    """
    target = Path(path)
    tmp = Path(tmp_dir or target.parent) / f".{target.name}.{os.getpid()}.tmp"
    write_file(tmp, data, sync=sync)
    try:
        replace(tmp, target)
    except StorageError:
        _unlink_quietly(tmp)
        raise
    if sync:
        fsync_dir(target.parent)


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    """Remove a temp file we created ourselves; a failure here only leaves a temp file behind."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # the caller is already raising the real error
        print(f"stationflow: could not remove temp file {path}: {exc}", file=sys.stderr)
