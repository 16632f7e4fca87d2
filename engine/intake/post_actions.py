"""After every report of a file is durable in the spool: archive, move, delete or keep the source.

Every step is idempotent, so a crash in the middle is finished at the next start; a step that
fails leaves the file for a later retry (its reports are safe in the spool already). Also here:
the archive's retention (``prune_archive``) and the name of an archived source.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import anyio

from .. import durable
from ..durable import retry_held as held  # Windows: a file held by another program is retried
from ..errors import IllegalTransition, StorageError
from ..layout import DataDir
from ..names import short_name
from ..spool.store import Accepted, Spool
from .model import CHUNK, TrackedFile, Watch, unlink_quietly

log = logging.getLogger(__name__)

#: Characters of a source's name kept in its archive name (see archive_path).
ARCHIVE_NAME_CHARS = 60
SHA_PREFIX = re.compile(r"^[0-9a-f]{64}-")


def after_action(file: TrackedFile) -> str:
    if file.origin == "reprocess/archive":
        return "delete"  # the archived original stays in the archive
    if file.origin == "reprocess/rejected":
        return "archive"
    return file.watch.section.after


def source_unchanged(file: TrackedFile) -> bool | None:
    """True: the source is as it was copied; False: it changed since; None: it is gone. A source
    already claimed for removal by an earlier try (see :func:`claim_source`) counts as the source."""
    claimed = private_name(file) if file.job and file.claimed is not False else None
    try:
        st = os.stat(claimed if claimed is not None and (file.claimed or claimed.exists()) else file.path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns) == (file.size, file.mtime_ns) and (
        file.identity == (0, 0) or (st.st_dev, st.st_ino) == file.identity)


def post_all(files: list[TrackedFile], *, fsync: bool) -> list[Exception | None]:
    """Post-actions of several files (in a thread); one failure per file, or None.

    Two phases, so that one fsync per folder serves the whole batch without weakening the
    argument: first every archive copy is renamed in and each archive folder fsynced; only then
    are sources removed or moved, and their folders fsynced (a move's target folder must sync;
    the source folder's sync is best effort — a resurrected source is converted again to the
    same ids). Every step is idempotent, so a crash in the middle is finished later."""
    failures: list[Exception | None] = [None] * len(files)
    plans: list[tuple[str, bool | None]] = []
    archived: dict[Path, list[int]] = {}
    moved: set[int] = set()
    copies: dict[int, Path] = {}  # where each job's copy is now (renamed into the archive, or in place)
    for i, file in enumerate(files):
        after = after_action(file)
        try:
            unchanged = source_unchanged(file)
            if unchanged is False:
                log.warning("intake %s: %s changed after it was copied; its new content is taken as a new file",
                            file.watch.name, file.path)
            if after == "archive" and file.copy is not None:
                target = archive_path(file)
                if target.parent not in archived:  # one mkdir per archive folder and batch
                    target.parent.mkdir(parents=True, exist_ok=True)
                if _archive(file.copy, target) or target.exists():
                    # (not renamed now: renamed in by a try whose folder fsync failed, that sync is still owed)
                    moved.add(i)
                    copies[i] = target
                    archived.setdefault(target.parent, []).append(i)
        except Exception as exc:
            failures[i] = exc
            unchanged = None
        plans.append((after, unchanged))
    sync_folders({folder: (False, indices) for folder, indices in archived.items()}, failures, fsync=fsync)
    synced: dict[Path, tuple[bool, list[int]]] = {}
    for i, file in enumerate(files):
        if failures[i] is not None:
            continue
        after, unchanged = plans[i]
        try:
            folders: list[tuple[Path, bool]] = []
            reference = copies.get(i, file.copy)
            if unchanged and after in ("archive", "delete"):
                folders = remove_source(file, reference)
            elif unchanged and after == "move":
                folders = move_source(file, Path(file.watch.section.move_to or ""), fsync=fsync, reference=reference)
            drop_copy(file, moved=i in moved)
        except Exception as exc:
            failures[i] = exc
            continue
        for folder, best_effort in folders:
            was_best, indices = synced.get(folder, (True, []))
            synced[folder] = (was_best and best_effort, indices + [i])
    sync_folders(synced, failures, fsync=fsync)
    drop_records([f for i, f in enumerate(files) if failures[i] is None and plans[i][0] != "keep"])
    return failures


def accept_then_post(spool: Spool, converted: list[tuple[TrackedFile, list[bytes], list[str]]], *, fsync: bool
                     ) -> tuple[list[Accepted | Exception], list[TrackedFile], list[Exception | None] | Exception | None]:
    """Blocking (one thread hop): accept the reports of converted files (report bytes and the ids
    the worker validated, per file) in one ``Spool.accept_many``, then run the post-actions of the
    files whose every report it returned accepted — durable — and of no other. Returns
    accept_many's results, those files, and post_all's failures for them (or what post_all
    raised: the caller raises it once the files are spooled, as if post_all ran in a hop of its own;
    or None: the lifecycle does not lead straight to the post-action, see :func:`post_follows`)."""
    items: list[tuple[bytes, str | None]] = [(raw, str(file.path)) for file, reports, _ in converted for raw in reports]
    keys = [k for _, reports, ids in converted for k in (ids or [""] * len(reports))]
    results = spool.accept_many(items, validated_keys=keys) if items else []
    safe: list[TrackedFile] = []
    at = 0
    for file, reports, _ in converted:
        if all(isinstance(r, Accepted) for r in results[at:at + len(reports)]):
            safe.append(file)
        at += len(reports)
    if not all(post_follows(file) for file in safe):
        return results, safe, None  # the caller fires the lifecycle's steps first, then post-actions
    try:
        return results, safe, post_all(safe, fsync=fsync) if safe else []
    except Exception as exc:  # noqa: BLE001 - raised by the caller, after accept_many's results are used
        return results, safe, exc


def post_follows(file: TrackedFile) -> bool:
    """Whether the conversion lifecycle in force leads from the file's state (converting) by
    ``converted`` and then ``finish``: the post-action is that ``finish``. Checked, not assumed, so
    the post-action runs in the accept's hop only where the machine would run it right after; a
    site machine that leads elsewhere gets the steps one by one (the validator's rule: the source
    is touched only after ``converted``). Read-only: the file's state moves on the event loop."""
    lifecycle = file.watch.lifecycle
    try:
        lifecycle.next_state(lifecycle.next_state(file.state, "converted"), "finish")
    except IllegalTransition:
        return False
    return True


def log_finished(files: list[TrackedFile]) -> None:
    """One info line per batch of finished files (of one intake), naming each with its report
    count: a line per file cost a log record, a hand-over to the service and a write there, per
    report."""
    if not files:
        return
    file = files[0]
    if len(files) == 1:
        log.info("intake %s: %s → %d report(s) in the spool (%s)", file.watch.name, file.path.name,
                 len(file.reports), after_action(file))
        return
    actions = sorted({after_action(f) for f in files})
    log.info("intake %s: %d files → %d report(s) in the spool (%s): %s", file.watch.name, len(files),
             sum(len(f.reports) for f in files), ", ".join(actions),
             ", ".join(f"{f.path.name} ({len(f.reports)})" for f in files))


def _archive(copy: Path, target: Path) -> bool:
    """Rename the copy into the archive; False when the copy is not there (no stat first)."""
    try:
        held("rename", copy, lambda: os.replace(copy, target))
    except FileNotFoundError as exc:
        if copy.exists():  # the archive folder is what is missing
            raise StorageError(f"cannot move {copy} to {target}: {exc.strerror}") from exc
        return False
    except OSError as exc:
        raise StorageError(f"cannot move {copy} to {target}: {exc.strerror}") from exc
    return True


def sync_folders(folders: dict[Path, tuple[bool, list[int]]], failures: list[Exception | None], *, fsync: bool) -> None:
    """fsync each folder once; a failure is the failure of every file that needed it."""
    for folder, (best_effort, indices) in folders.items():
        try:
            sync(folder, fsync=fsync, best_effort=best_effort)
        except Exception as exc:
            for i in indices:
                failures[i] = failures[i] or exc


def drop_records(files: list[TrackedFile]) -> None:
    """The files are finished: each leaves its batch's job record (which goes with the last one)."""
    for file in files:
        file.watch.release_record(file)


def archive_path(file: TrackedFile) -> Path:
    day = date.today().isoformat()
    name = SHA_PREFIX.sub("", file.path.name)
    # <sha256>- is 65 bytes; a long name is shortened (with a hash) so the whole stays under 255 bytes.
    return file.watch.archive_root / day / file.watch.name / f"{file.sha256}-{short_name(name, ARCHIVE_NAME_CHARS)}"


def private_name(file: TrackedFile) -> Path:
    """Where the source is renamed before it is removed or moved: beside it, hidden from detection
    (a leading dot), named by the job so that a restart finds it again."""
    return file.path.with_name(f".stationflow-{file.job}.taking")


def claim_source(file: TrackedFile, reference: Path | None = None) -> Path | None:
    """Take the source away from its name before removing or moving it, and check it is the very
    file that was copied; the private path, or None when there is nothing of ours to remove.

    Checking by path and then unlinking by path would race a writer that renames a new file over
    the same name in between: the new file would be removed unread. A rename is atomic: after it,
    the name is free for the writer, and what we hold is checked by device, inode, size and mtime.
    A newcomer caught this way is put back under its name (or, if that is taken again, beside it),
    so it is taken as a new file. ``reference``: where the job's copy is now (its bytes are
    compared, see _same_bytes), else the SHA-256 of the copy decides.
    """
    private = private_name(file)
    # Not claimed by an earlier try that crashed or failed after the rename (known in this run;
    # after a restart the disk says).
    if not file.claimed and (file.claimed is False or not private.exists()):
        try:
            held("rename", file.path, lambda: os.rename(file.path, private))
        except FileNotFoundError:
            return None
    file.claimed = True
    st = os.stat(private)
    same = (st.st_size, st.st_mtime_ns) == (file.size, file.mtime_ns) and (
        file.identity == (0, 0) or (st.st_dev, st.st_ino) == file.identity)
    # Size, mtime and inode can all repeat: a writer's next file may get the inode just freed by
    # its rename over the old one, the same size, and an mtime within the same clock tick. The
    # content is what was converted: it decides (the file is small and was just read; cheap).
    if same and file.sha256 is not None:
        compared = _same_bytes(private, reference, file.size) if reference is not None else None
        same = compared if compared is not None else _sha256_of(private) == file.sha256
    if same:
        return private
    _put_back(private, file.path)
    file.claimed = False
    log.warning("intake %s: %s was replaced after it was copied; the new file is taken as a new file",
                file.watch.name, file.path)
    return None


def release_claim(file: TrackedFile) -> None:
    """Undo :func:`claim_source` (a restart that takes the file from the start): the claimed file
    goes back under its name, or beside it if that name is taken again."""
    private = private_name(file) if file.job and file.claimed is not False else None
    if private is not None and private.exists():
        _put_back(private, file.path)
    file.claimed = False


def _same_bytes(path: Path, reference: Path, size: int) -> bool | None:
    """Whether ``path`` holds the very bytes of ``reference`` (the job's fsynced copy: what was
    converted), both read whole — as good a proof as their SHA-256, for a read and a compare
    instead of ~50 µs of hashing a 50 KB file. None when the reference is not there (gone with an
    earlier try, or larger than one read): the SHA-256 decides."""
    if size > CHUNK:
        return None
    try:
        ref = os.open(reference, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        expected = os.read(ref, size + 1)  # a regular file up to CHUNK reads whole
    finally:
        os.close(ref)
    if len(expected) != size:
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return os.read(fd, size + 1) == expected
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # unbuffered: no fstat, isatty, seek
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _put_back(private: Path, name: Path) -> None:
    """Give a claimed file that is not ours its name back, never over a file that took the name since."""
    try:
        os.link(private, name)  # fails if the name is taken again: never overwrite
    except FileExistsError:
        os.rename(private, free_name(name))
        return
    except OSError:  # no hard links here (some network shares): a rename, checked first
        if name.exists():
            os.rename(private, free_name(name))
        else:
            os.rename(private, name)
        return
    os.unlink(private)


def remove_source(file: TrackedFile, reference: Path | None = None) -> list[tuple[Path, bool]]:
    """Remove the source (only the very file that was copied); the folders to fsync afterwards,
    with whether that is best effort. ``reference``: see claim_source."""
    private = claim_source(file, reference)
    if private is None:
        return []
    held("delete", private, lambda: os.unlink(private))
    return [(file.path.parent, True)]


def move_source(file: TrackedFile, folder: Path, *, fsync: bool, reference: Path | None = None
                ) -> list[tuple[Path, bool]]:
    """Move the source (only the very file that was copied) into ``folder``, never over a file;
    the folders to fsync afterwards. ``reference``: see claim_source."""
    target = free_name(folder / file.rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    private = claim_source(file, reference)
    if private is None:
        return []
    try:
        held("rename", private, lambda: os.replace(private, target))  # never over a file: free_name picked a new name
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            _put_back(private, file.path)  # as it was; the move is tried again later
            file.claimed = False
            raise
        # Another file system: write a whole, fsynced copy first, then remove the source.
        copy_whole(file.copy if file.copy and file.copy.exists() else private, target, fsync=fsync)
        shutil.copymode(private, target)  # the person's file keeps its permissions, not the copy's
        held("delete", private, lambda: os.unlink(private))
        return [(file.path.parent, True)]
    return [(target.parent, False), (file.path.parent, True)]


def copy_whole(source: Path, target: Path, *, fsync: bool) -> None:
    """Across file systems: ``target`` appears whole and fsynced, or not at all (no partial temp left)."""
    tmp = target.with_name(f".stationflow-{uuid.uuid4().hex[:16]}.tmp")  # short: the name may be long
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            dst.flush()
            if fsync:
                os.fsync(dst.fileno())
        durable.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync(target.parent, fsync=fsync)


def sync(folder: Path, *, fsync: bool, best_effort: bool = False) -> None:
    if not fsync:
        return
    try:
        durable.fsync_dir(folder)
    except StorageError:
        if not best_effort:
            raise


async def write_kept(watch: Watch, *, fsync: bool) -> None:
    async with watch.kept_lock:  # one writer at a time; each writes the newest state
        if not watch.kept_dirty:
            return
        data = json.dumps(watch.kept).encode()
        watch.kept_dirty = False
        try:
            await anyio.to_thread.run_sync(lambda: durable.atomic_write(
                watch.kept_file, data, tmp_dir=watch.tmp, sync=fsync))
        except BaseException:
            watch.kept_dirty = True
            raise


def prune_archive(data_dir: Path, keep_days: float, *, clock_ref: tuple[float, float] | None = None,
                  today: date | None = None) -> int:
    """Delete archive day folders older than ``keep_days``; refuse when the wall clock jumped ahead."""
    if clock_ref is not None:
        wall0, mono0 = clock_ref
        drift = (time.time() - wall0) - (time.monotonic() - mono0)
        if drift > 3600:
            log.warning("not pruning the archive: the wall clock jumped %.0f s ahead", drift)
            return 0
    root = DataDir.of(data_dir).archive
    if not root.is_dir():
        return 0
    cutoff = (today or date.today()) - timedelta(days=keep_days)
    removed = 0
    for entry in os.scandir(root):
        try:
            day = date.fromisoformat(entry.name)
        except ValueError:
            continue
        if entry.is_dir() and day < cutoff:
            shutil.rmtree(entry.path)
            removed += 1
    return removed


def free_name(target: Path, *, also: str = "") -> Path:
    """``target``, or ``name~1.ext``, ``name~2.ext``…: never overwrite a file someone may need."""
    candidate = target
    n = 0
    while candidate.exists() or (also and candidate.with_name(candidate.name + also).exists()):
        n += 1
        candidate = target.with_name(f"{target.stem}~{n}{target.suffix}")
    return candidate


def drop_copy(file: TrackedFile, *, moved: bool = False) -> None:
    """Remove a job's copy (unless it was just moved away into the archive or the error folder).
    A copy in a folder of its own (a name repeated in its batch, see copying.copy_data) takes the
    folder along; the batch's shared folder goes with the batch's job record
    (``Watch.release_record``) instead of a failing rmdir per file."""
    copy = file.copy
    if copy is None:
        return
    if not moved:
        unlink_quietly(copy)
    if file.job and copy.parent.name == file.job:
        try:
            os.rmdir(copy.parent)
        except OSError:
            pass


def archived_name(path: Path) -> str:
    """The original file name of an archived source (without its ``<sha256>-`` prefix)."""
    return SHA_PREFIX.sub("", path.name)
