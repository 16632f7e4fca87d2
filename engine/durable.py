"""The durability recipe in one place: write to a temp file, fsync, rename, fsync the directory.

A failed fsync is fatal for the operation (raised as StorageError, never retried). On Windows
``os.replace`` may fail while an antivirus or indexer holds the file: it is retried with a short
backoff, and never replaced by copy-and-delete.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import StorageError

_WINDOWS = sys.platform == "win32"
_REPLACE_RETRIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Files fsynced at once by fsync_all.
FSYNC_THREADS = 8
_fsync_pool: ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()


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
    """fsync several open files at once; one result per descriptor (None: durable).

    Why at once: fsyncs that wait together are committed together (ext4's journal, like most,
    batches concurrent fsyncs into one commit), where one after another each pays the disk's full
    flush — 2–6 ms on a station's SSD, for every file of a batch.
    """
    if len(fds) <= 1:
        return [_fsync(fd) for fd in fds]
    global _fsync_pool
    with _fsync_pool_lock:
        if _fsync_pool is None:
            _fsync_pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="stationflow-fsync")
        pool = _fsync_pool
    return list(pool.map(_fsync, fds))


def _fsync(fd: int) -> StorageError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return StorageError(f"fsync failed: {exc.strerror}", hint="check the disk; nothing was stored")
    return None


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace`` with the Windows sharing-violation retry. Atomic on one filesystem."""
    for delay in (*_REPLACE_RETRIES, None):
        try:
            os.replace(src, dst)
            return
        except PermissionError as exc:
            if not _WINDOWS or delay is None:
                raise StorageError(f"cannot move {src} to {dst}: {exc.strerror}") from exc
            time.sleep(delay)
        except OSError as exc:
            raise StorageError(f"cannot move {src} to {dst}: {exc.strerror}") from exc


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
