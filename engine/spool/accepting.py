"""Accepting reports: validate, check room, write to ``tmp/``, fsync, rename into the initial state.

The durability argument of ``accept``/``accept_many`` is in the store's module docstring; this is
its implementation, kept apart so the store holds only the moves between states.

Per report it does only what durability needs (write, fsync, rename; one directory fsync per call)
and the index: the disk's free space is read once per call (``Room``), paths are plain strings, and
the fsyncs of a call go through ``durable.fsync_all`` (a few thread wake-ups per call, not per file).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import durable
from ..errors import DuplicateReport, InvalidReport, SpoolFull, StorageError
from ...schemas.wsjf import ReportValidationError, parse_header
from .entries import KEY, Accepted, Entry as _Entry, crc_of as _crc

if TYPE_CHECKING:
    from .store import Spool

__all__ = ["accept_many"]

log = logging.getLogger(__name__)


def accept_many(spool: Spool, items: list[tuple[bytes, str | None]],
                validated_keys: Sequence[str | None] | None = None) -> list[Accepted | Exception]:
    """Accept several reports under one directory fsync; one result per item, in order.

    Each report is written to ``tmp/``, fsynced and renamed into the initial state; then the
    initial state's directory is fsynced once for all of them, and only then are they
    claimable and does this return. Durability argument: an item reported as Accepted was
    fsynced and its directory entry was fsynced afterwards, exactly as with one report at a
    time; a caller acts on a result (removes a source) only after the call returns. If the
    directory fsync fails, every report new in this call is reported as that StorageError
    (its source must stay), even though its file is in place: accepting the same bytes again
    later is a no-op.

    A refusal of one item (invalid, different report under the same id) is that item's
    result and the others go on; a full spool or a storage error stops the call, and every
    item not yet stored gets that error.
    """
    spool._writable()
    results: list[Accepted | Exception | None] = [None] * len(items)
    staged: list[tuple[int, str, _Entry, str, int]] = []  # (index, key, entry, tmp file, open fd)
    stop: Exception | None = None
    room = Room(spool)
    try:
        for index, (raw, _source) in enumerate(items):
            if stop is not None:
                results[index] = stop
                continue
            try:
                prepared = stage(spool, raw, validated_keys[index] if validated_keys is not None else None, room)
            except (InvalidReport, DuplicateReport) as exc:
                results[index] = exc
                continue
            except (SpoolFull, StorageError) as exc:
                stop = results[index] = exc
                continue
            if isinstance(prepared, Accepted):
                results[index] = prepared
            else:
                staged.append((index, *prepared))
        # Every staged file is fsynced at once: the disk commits them together.
        synced = durable.fsync_all([fd for *_, fd in staged]) if spool._fsync else [None] * len(staged)
    except BaseException:
        unstage(spool, staged)
        raise
    written: list[tuple[int, str]] = []  # (index, key) of reports new in this call
    left = list(zip(staged, synced))
    into = os.fspath(spool._dir(spool._initial))
    try:
        while left:
            (index, key, entry, tmp, fd), failure = left.pop(0)
            try:
                os.close(fd)
            except OSError as exc:
                failure = failure or StorageError(f"writing {tmp} failed: {exc.strerror}")
            if failure is None:
                try:
                    durable.replace(tmp, os.path.join(into, entry.filename(key)))
                except StorageError as exc:
                    failure = exc
            if failure is not None:
                durable._unlink_quietly(tmp)
                with spool._lock:
                    spool._drop_entry(key)
                results[index] = failure
                continue
            # In the initial state on disk: the index says so whatever happens next.
            with spool._lock:
                entry.busy = False
            results[index] = Accepted(key, spool._initial)
            written.append((index, key))
    except BaseException:
        unstage(spool, [item for item, _ in left])
        raise
    finally:
        if written:
            keys = [key for _, key in written]
            try:
                spool._sync_dir(spool._initial)
            except StorageError as exc:
                for index, _key in written:
                    results[index] = exc
                written = []
            finally:
                try:
                    write_sources(spool, written, items)
                finally:
                    # The files are in the initial state on disk whatever the fsync said, so
                    # they are claimable (at worst one is sent while its source stays and is
                    # converted again to the same id later: a duplicate by id, never a loss).
                    if spool._initial in spool._ready:  # else a person or a wait moves them on
                        with spool._lock:
                            spool._queue.extend(keys)
                            if len(spool._queue) <= spool.FRESH_QUEUE:
                                for index, key in written:
                                    spool._keep_fresh(key, items[index][0])
                        spool._notify()
    return [r if r is not None else StorageError("report not stored (internal error)") for r in results]


def write_sources(spool: Spool, written: list[tuple[int, str]], items: list[tuple[bytes, str | None]]) -> None:
    """Where the new reports came from: one append to the sources journal, no sidecar per report
    (informational: a failure is logged; the reports themselves are durable)."""
    pairs = [(key, source) for index, key in written if (source := items[index][1]) is not None]
    try:
        spool._meta.append_sources(pairs)
    except OSError as exc:
        log.warning("%d report(s) accepted without their source recorded: %s", len(pairs), exc)


def stage(spool: Spool, raw: bytes, validated_key: str | None = None,
          room: Room | None = None) -> Accepted | tuple[str, _Entry, str, int]:
    """Validate (unless the caller already did and gives the key), check room, and write the report
    in tmp/ (not yet fsynced): its key, index entry (busy), tmp file and open descriptor; or
    Accepted if these bytes are already here."""
    room = room or Room(spool)
    if validated_key and KEY.fullmatch(validated_key):
        key = validated_key
    else:
        try:
            key = parse_header(raw).key
        except ReportValidationError as exc:
            raise InvalidReport(f"report refused: {exc}", detail="; ".join(exc.problems)) from exc
    crc = _crc(raw)
    with spool._lock:
        existing = spool._entries.get(key)
        if existing is not None:
            return accept_existing(spool, key, existing, raw, crc)
        check_room(spool, len(raw), room)
        entry = _Entry(spool._initial, crc, len(raw), busy=True)
        spool._add_entry(key, entry)
    tmp = os.path.join(room.tmp_dir, f"{key}.{crc}.json.tmp")
    try:
        fd = durable.write_open(tmp, raw)
    except BaseException:
        with spool._lock:
            spool._drop_entry(key)
        raise
    room.staged += len(raw)
    return key, entry, tmp, fd


def unstage(spool: Spool, staged: list[tuple[int, str, _Entry, str, int]]) -> None:
    """Undo staged writes after an error: nothing of them was accepted."""
    for _index, key, _entry, tmp, fd in staged:
        try:
            os.close(fd)
        except OSError:
            pass
        durable._unlink_quietly(tmp)
        with spool._lock:
            if key in spool._entries:
                spool._drop_entry(key)


def accept_existing(spool: Spool, key: str, existing: _Entry, raw: bytes, crc: str) -> Accepted:
    """The same id again: identical bytes are a no-op (a re-conversion after a crash); else refuse."""
    if existing.crc == crc and existing.size == len(raw):
        try:
            same = (spool._dir(existing.state) / existing.filename(key)).read_bytes() == raw
        except FileNotFoundError:
            same = True  # it is being moved right now; the crc and size already match
        if same:
            return Accepted(key, existing.state, already_present=True)
    raise DuplicateReport(
        f"a different report with id {key} is already in the spool (state {existing.state})",
        hint="a new report needs a new id; the server replaces reports by id",
    )


class Room:
    """What one ``accept_many`` call knows of the disk: its free space, read once (``statvfs``) at
    the call's first new report, less what the call has written since; and where tmp/ is."""

    __slots__ = ("tmp_dir", "free", "staged")

    def __init__(self, spool: Spool) -> None:
        self.tmp_dir = os.path.join(spool.root, "tmp")
        self.free: int | None = None
        self.staged = 0  # bytes this call wrote to tmp/ so far

    def free_bytes(self, spool: Spool) -> int:
        if self.free is None:
            self.free = shutil.disk_usage(spool.root).free
        return self.free - self.staged


def check_room(spool: Spool, size: int, room: Room | None = None) -> None:
    """SpoolFull unless a report of ``size`` bytes fits the spool's limits and leaves the disk's
    margin (the caller holds the spool's lock)."""
    active = sum(c for s, c in spool._counts.items() if s not in spool._final)
    if active >= spool.max_reports:
        raise SpoolFull(f"spool full: {active} reports waiting (spool.max_reports = {spool.max_reports})",
                        hint="restore the connection to the server or raise spool.max_reports")
    used = sum(b for s, b in spool._bytes.items() if s not in spool._final)
    if used + size > spool.max_bytes:
        raise SpoolFull(f"spool full: {used + size} bytes would exceed spool.max_bytes = {spool.max_bytes}",
                        hint="restore the connection to the server or raise spool.max_bytes")
    if spool.min_free_bytes:
        free = (room or Room(spool)).free_bytes(spool)
        if free - size < spool.min_free_bytes:
            raise SpoolFull(f"disk almost full: {free} bytes free, spool.min_free_disk = {spool.min_free_bytes}",
                            hint=f"free space on the disk holding {spool.root}")
