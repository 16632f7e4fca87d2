"""Copying a settled source into the data dir before anything converts it.

The source is only read. Its bytes go straight to ``copies/<batch>/<name>``; the copies of a
batch are fsynced together (``durable.fsync_all``), checked against the source's size and mtime
(a file that changed while it was copied is taken again later, its copy removed), and one job
record for the whole batch (``jobs/<batch>.json``, listing each file) is written so that a
restart resumes from the copies. A copy is a copy once that record names it: one that no record
names (a crash while copying) is removed at the next start (recovery.py), its source untouched —
so no temporary name and no rename per file are needed. One record per batch, not per file: a file created, renamed and
deleted per report was a measurable share of the pipeline's CPU. The record goes when the last
file of the batch is finished (``Watch.release_record``). See :mod:`.intake` for the durability
argument.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import durable
from ..clock import now_iso
from ..errors import StorageError
from .model import CHUNK, TrackedFile, unlink_quietly

log = logging.getLogger(__name__)


@dataclass
class Copy:
    """A copy being made: where it is written, its open descriptor (-1 once closed), job id, the
    source's stat before copying, bytes copied and digest."""

    path: Path
    fd: int
    job: str
    before: os.stat_result
    size: int = 0
    sha256: str = ""

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        try:
            self.close()
        except OSError:
            pass
        unlink_quietly(self.path)
        if self.path.parent.name == self.job:  # a folder of its own (a name repeated in its batch)
            try:
                os.rmdir(self.path.parent)
            except OSError:
                pass


class Vanished(Exception):
    pass


class Changed(Exception):
    pass


class TooLarge(Exception):
    pass


class CopyTimeout(Exception):
    pass


def copy_all(files: list[TrackedFile], deadline: float, *, fsync: bool) -> list[Exception | None]:
    """Copy each file (the copies fsynced together) and write the batch's job record (state
    copied); one failure per file, or None."""
    failures: list[Exception | None] = [None] * len(files)
    batch, names = uuid.uuid4().hex[:16], set[str]()
    placed: list[TrackedFile] = []
    written: list[tuple[int, Copy]] = []
    try:
        for i, file in enumerate(files):
            try:
                written.append((i, copy_data(file, deadline, batch, names)))
            except Exception as exc:
                failures[i] = exc
        fds = [c.fd for _, c in written]
        synced = durable.fsync_all(fds) if fsync else [None] * len(fds)
    except BaseException:
        for _, copy in written:
            copy.discard()
        raise
    for (i, copy), failure in zip(written, synced):
        file = files[i]
        try:
            copy.close()
            if failure is not None:
                raise failure
            place_copy(file, copy)
        except Exception as exc:
            copy.discard()
            failures[i] = Vanished() if isinstance(exc, FileNotFoundError) else exc
            continue
        placed.append(file)
    if not placed and written:
        try:
            os.rmdir(files[0].watch.copies / batch)  # made by a copy that then failed: empty
        except OSError:
            pass  # never made, or holds a folder of its own of a copy being removed
    if placed:
        watch = placed[0].watch
        for file in placed:
            file.batch = batch
        watch.hold_record(batch, len(placed))
        try:
            write_record(placed, batch)
        except StorageError as exc:  # the record only helps a restart; the sources are still untouched
            log.warning("intake %s: job record of %d file(s) not written: %s", watch.name, len(placed), exc)
    return failures


def copy_data(file: TrackedFile, deadline: float, batch: str, names: set[str]) -> Copy:
    """Copy the source's bytes into ``copies/<batch>/<name>`` (not yet fsynced; the caller fsyncs
    the batch together); the source is only read. The copies of one batch share a folder (no
    folder created and removed per file); a name already used in the batch (a recursive watch)
    gets a folder of its own. Raises Vanished, Changed, TooLarge, ..."""
    watch = file.watch
    max_bytes = int(watch.section.max_file_bytes)
    # Not over max_bytes here: intake rejected a larger file before the copy, and the size is the
    # one it saw. A file that grows while it is copied is caught below.
    # Opened first, then checked (no stat of the path before: what is read is what is checked).
    # Never through a link (one swapped in since the listing is not followed) and never blocking
    # (a FIFO swapped in would hang the thread): what is opened is checked against what was listed.
    looked = time.monotonic()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        src = os.open(file.path, flags)
    except FileNotFoundError:
        raise Vanished() from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise Changed() from None
        raise
    copy: Copy | None = None
    try:
        before = os.fstat(src)  # what is read, even if the name changes hands meanwhile
        if not stat.S_ISREG(before.st_mode):
            raise Changed()
        if (before.st_size, before.st_mtime_ns) != (file.size, file.mtime_ns):
            file.size, file.mtime_ns, file.seen_at = before.st_size, before.st_mtime_ns, looked
            raise Changed()
        job = uuid.uuid4().hex[:16]
        name = file.path.name  # the converter sees the file under its own name
        copy = Copy(watch.copies / (job if name in names else batch) / name, -1, job, before)
        names.add(name)
        digest = hashlib.sha256()
        copy.fd = _create(copy.path)
        # Until a short read (the end, for a regular file): one read for most files, none more to
        # be told the end. A short read that was not the end is caught by place_copy's check of
        # the size copied against the file's size afterwards.
        want = min(CHUNK, max(before.st_size, 0) + 1)
        while chunk := os.read(src, want):
            copy.size += len(chunk)
            if copy.size > max_bytes:
                raise TooLarge()
            if time.monotonic() > deadline:
                raise CopyTimeout()
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(copy.fd, view):]
            if len(chunk) < want:
                break
    except FileNotFoundError:
        if copy is not None:
            copy.discard()
        raise Vanished() from None
    except BaseException:
        if copy is not None:
            copy.discard()
        raise
    finally:
        os.close(src)
    copy.sha256 = digest.hexdigest()
    return copy


def _create(path: Path) -> int:
    """A new file for a copy (never over another), its folder made when missing (the batch's
    first copy). A folder that cannot be made is a storage problem, never the source vanishing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(exist_ok=True)
        return os.open(path, flags, 0o644)
    except FileNotFoundError as exc:
        raise StorageError(f"cannot create the copy {path}: {exc.strerror}") from exc


def place_copy(file: TrackedFile, copy: Copy) -> None:
    """Check the source did not change while it was copied: then the (fsynced) copy is the job's."""
    after = os.stat(file.path)
    before = copy.before
    if (after.st_size, after.st_mtime_ns, after.st_dev, after.st_ino) != (
            before.st_size, before.st_mtime_ns, before.st_dev, before.st_ino) or copy.size != after.st_size:
        file.size, file.mtime_ns, file.seen_at = after.st_size, after.st_mtime_ns, time.monotonic()
        raise Changed()
    # No directory fsync: see intake.py's durability argument.
    file.job, file.sha256, file.copy = copy.job, copy.sha256, copy.path
    file.claimed = False  # a new job id: no private name of it exists (post_actions.claim_source)
    file.identity = (before.st_dev, before.st_ino)


def write_record(files: list[TrackedFile], batch: str) -> None:
    """One job record for the copied files of a batch. Atomic, not fsynced: it survives a crash of
    the process, and losing it to a power cut only means the sources (still in place) are
    converted again, with the same report ids."""
    watch = files[0].watch
    copied, updated = watch.roles.copied, now_iso()
    record = {"batch": batch, "files": [file.record(copied, updated=updated) for file in files]}
    data = json.dumps(record, separators=(",", ":")).encode()  # compact: json's C encoder (indent is pure Python)
    durable.atomic_write(watch.jobs / f"{batch}.json", data, tmp_dir=watch.tmp, sync=False)
