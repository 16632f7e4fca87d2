"""What intake works with: its options, one watched folder, one tracked source file, outcomes.

A tracked file is the model the conversion lifecycle (``machines/conversion.yaml``) moves; a watch
is one configured intake with its folders (from :class:`..layout.DataDir`), the files it tracks
and its counters. The steps that act on them live in their own modules (detect, copying,
post_actions, rejects, recovery); :mod:`.intake` coordinates them.
"""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..clock import now_iso
from ..durable import retry_held
from ..convert.worker import DEFAULT_MEMORY_GROWTH, DEFAULT_MEMORY_LIMIT
from ..layout import DataDir
from ..lifecycle import Lifecycle
from ..lifecycle.roles import ConversionRoles
from ...schemas.config import IntakeSection

ERROR_SUFFIX = ".error.txt"
WINDOWS = sys.platform == "win32"
CHUNK = 1024 * 1024
#: New files taken together: one copy hop, one exchange with a worker, one spool directory fsync.
#: Every batch also pays journal commits (its fsyncs, the folders' fsyncs, the service's accept),
#: thread hand-offs and a job record — ~8 ms of CPU in all processes together, measured (README,
#: "The whole pipeline", 2026-12-01, later work): a 2,000-file burst of 50 KB reports went 9–25 %
#: faster with 64 than with 32 (five alternated pairs), and 0–28 % faster with 128 than with 64
#: (seven pairs, median +7 %). The byte bound below keeps large files from holding much memory.
BATCH_FILES = 128
#: ... and at most this many bytes of sources (a lone larger file goes alone): a batch's reports are
#: in memory at once in a worker, the intake process and the service.
BATCH_BYTES = 16 * 1024 * 1024
_MATCHED_NAMES = 100_000  # names whose match is remembered (then forgotten all at once)


def disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is the disk or quota being full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    try:
        retry_held("delete", path, lambda: os.unlink(path))
    except FileNotFoundError:
        pass


@dataclass
class IntakeOptions:
    """Settings of the intake that are not (yet) in the station config."""

    poll_interval_s: float = 0.5
    #: Archived sources older than this many days are deleted (whole date folders).
    archive_keep_days: float = 30.0
    #: Address-space limit of each converter worker process (POSIX).
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT
    #: A converter worker is replaced once its resident memory grew this much past its size after
    #: its first file (a leaking converter); otherwise it lives as long as the service.
    worker_memory_growth_bytes: int = DEFAULT_MEMORY_GROWTH
    #: How often an intake paused by a full spool tries again.
    full_retry_s: float = 2.0
    #: How often a failed post-action (a locked source, an unreachable move_to) is tried again.
    post_retry_s: float = 10.0
    #: How often a converter that cannot be loaded is tried again.
    load_retry_s: float = 60.0
    max_reports_per_file: int = 100_000
    #: Files handed to the workers at once per scan (the rest wait, still untouched, for the next scan).
    max_in_flight: int = 2 * BATCH_FILES  # two batches: one per converter worker
    fsync: bool = True
    #: OS change notifications (notify.py) wake intake at once; polling every poll_interval_s stays.
    notifications: bool = True


@dataclass
class FileOutcome:
    """What became of one file (kept for ``reprocess``/``submit`` output and tests)."""

    intake: str
    source: str
    state: str
    reports: list[str] = field(default_factory=list)
    already_present: int = 0
    reason: str | None = None
    error_file: str | None = None


@dataclass(eq=False)
class TrackedFile:
    """One source file being taken: the model the conversion lifecycle moves."""

    watch: Watch
    path: Path
    rel: str
    origin: str  # "watch" or "reprocess/<archive|rejected>"
    state: str
    size: int
    mtime_ns: int
    stable_since: float
    job: str | None = None
    #: The batch whose job record (``jobs/<batch>.json``) lists this file; None once released.
    batch: str | None = None
    #: Whether the source was renamed to its private name (post_actions.claim_source): False for a
    #: file copied in this run (its job id is new, nobody else uses that name), None when unknown
    #: (resumed after a restart: the disk says).
    claimed: bool | None = None
    sha256: str | None = None
    copy: Path | None = None
    reports: list[str] = field(default_factory=list)
    already: int = 0
    note: str | None = None
    next_try: float = 0.0
    pending_reject: dict[str, Any] | None = None  # a rejection whose move to the error folder failed
    #: (device, inode) of the very file that was copied: a file renamed over the same name later is
    #: another file, and must never be removed in its place. (0, 0) when not known (old records).
    identity: tuple[int, int] = (0, 0)
    #: Waiting to settle, and confirmed unchanged for settle_ms (or closed by its writer) by a listing
    #: that stat-ed it: the next listings need not stat it again (copy_data checks the size and
    #: mtime it was listed with before taking it). Cleared whenever it changes or moves on.
    due: bool = False
    #: When (monotonic) the size and mtime above were looked at: at most the start of the listing
    #: that stat-ed it, or of the copy that found it changed. A writer's close noted later is newer.
    seen_at: float = 0.0

    def fire(self, trigger: str) -> str:
        was = self.state
        self.state = self.watch.lifecycle.next_state(self.state, trigger)
        self.due = False
        if self.state != was:
            self.watch.moved(self)
        return self.state

    def restart_settle(self, now: float) -> None:
        """Its settle time starts again at ``now`` (new, changed, or found held by another program)."""
        self.stable_since, self.due = now, False
        self.watch.due_by(self, now)

    def record(self, state: str | None = None, *, updated: str | None = None) -> dict[str, Any]:
        """The file's entry in its batch's job record (``updated``: the batch's time, read once)."""
        copy = self.copy
        return {"job": self.job, "intake": self.watch.name, "source": str(self.path), "rel": self.rel,
                "origin": self.origin, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256,
                "identity": list(self.identity),
                "copy": f"{copy.parent.name}/{copy.name}" if copy else None, "state": state or self.state,
                "reports": self.reports, "updated": updated or now_iso()}


class Watch:
    """One configured intake: its folders, the files it tracks, what it has done."""

    def __init__(self, section: IntakeSection, data_dir: Path, lifecycle: Lifecycle) -> None:
        self.section = section
        self.name = section.name
        self.lifecycle = lifecycle
        self.roles = ConversionRoles.of(lifecycle.definition)  # no state is named in the intake
        self.root = Path(section.watch)
        self.work = DataDir(data_dir).intake_work(section.name)
        self.copies = self.work / "copies"
        self.jobs = self.work / "jobs"
        self.tmp = self.work / "tmp"
        self.reprocess = DataDir(data_dir).reprocess_root(section.name)
        self.kept_file = self.work / "kept.json"
        self.rejected_dir = DataDir(data_dir).rejected(section.name)
        self.archive_root = DataDir(data_dir).archive
        self.patterns: list[str] = list(section.patterns)
        self.patterns_set = "patterns" in section.model_fields_set
        self._compiled_for: list[str] | None = None
        self._pattern = re.compile("(?!)")
        self._matched: dict[str, bool] = {}  # name -> matches (for the patterns compiled)
        self.converter_name: str = section.converter
        self.problem: str | None = None  # the intake cannot work at all (converter not loadable)
        self.folder_problem: str | None = None  # the watch folder is missing or unreadable
        self.loaded = False
        self.next_load = 0.0
        #: Every tracked file by its path; add and remove through track() and forget(), which keep
        #: the two indexes below (so that a pass costs what is waiting or busy, not every file).
        self.files: dict[str, TrackedFile] = {}
        #: Tracked files in the initial (detected) state, oldest first; and those in any other state.
        self.waiting: dict[TrackedFile, None] = {}
        self.busy: dict[TrackedFile, None] = {}
        #: No waiting file becomes due to settle before this (monotonic) time but ones already due:
        #: a lower bound, lowered as files start settling and found again when it has passed.
        self.next_due = -math.inf
        self.kept: dict[str, list[int]] = {}
        self.kept_dirty = False
        self.kept_lock = anyio.Lock()
        self.done = 0
        self.gone = 0
        self.rejected = 0
        self.reports = 0
        self.last_error: dict[str, Any] | None = None
        self.excluded: list[Path] = []
        self.listed_at = -math.inf  # monotonic time of the last listing of the watch folder
        self.links_ignored: list[str] = []  # symbolic links seen at the last listing (never taken)
        #: Files not yet finished per job record (batch): the record and the batch's copy folder go
        #: when the last one finishes. Finished from the event loop and from file threads: locked.
        self.batches: dict[str, int] = {}
        self._batches_lock = threading.Lock()

    def hold_record(self, batch: str, files: int) -> None:
        """``files`` tracked files are listed in ``jobs/<batch>.json``."""
        with self._batches_lock:
            self.batches[batch] = self.batches.get(batch, 0) + files

    def release_record(self, file: TrackedFile) -> None:
        """``file`` is finished (done or rejected): once no file of its batch is left, its job
        record and the batch's copy folder go. Idempotent per file."""
        batch, file.batch = file.batch, None
        if batch is None:
            return
        with self._batches_lock:
            left = self.batches.get(batch, 1) - 1
            if left > 0:
                self.batches[batch] = left
                return
            self.batches.pop(batch, None)
        unlink_quietly(self.jobs / f"{batch}.json")
        try:
            os.rmdir(self.copies / batch)
        except OSError:
            pass  # never made (every copy of the batch had a name of its own), or not empty

    def track(self, file: TrackedFile) -> None:
        key = str(file.path)
        old = self.files.get(key)
        if old is not None and old is not file:
            self.forget(old)
        self.files[key] = file
        self.moved(file)
        if file.state == self.lifecycle.initial:
            self.due_by(file, file.stable_since)

    def forget(self, file: TrackedFile) -> None:
        """``file`` is no longer tracked (finished, rejected, gone); a no-op if another file took its path."""
        key = str(file.path)
        if self.files.get(key) is file:
            del self.files[key]
        self.waiting.pop(file, None)
        self.busy.pop(file, None)

    def moved(self, file: TrackedFile) -> None:
        """``file`` changed state: keep it in the right index (if it is tracked)."""
        if self.files.get(str(file.path)) is not file:
            return
        if file.state == self.lifecycle.initial:
            self.busy.pop(file, None)
            self.waiting[file] = None
        else:
            self.waiting.pop(file, None)
            self.busy[file] = None

    def due_by(self, file: TrackedFile, stable_since: float) -> None:
        if file.origin == "watch":
            self.next_due = min(self.next_due, stable_since + self.section.settle_ms / 1000.0)

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches one of the patterns (as fnmatch; compiled once per patterns).
        Remembered per name: a burst's folder is listed again and again with the same names."""
        if self.patterns != self._compiled_for:
            self._compiled_for = list(self.patterns)
            self._pattern = re.compile("|".join(f"(?:{fnmatch.translate(os.path.normcase(p))})"
                                                for p in self.patterns) or "(?!)")
            self._matched = {}
        hit = self._matched.get(name)
        if hit is None:
            hit = self._pattern.match(os.path.normcase(name) if WINDOWS else name) is not None
            if len(self._matched) >= _MATCHED_NAMES:
                self._matched.clear()
            self._matched[name] = hit
        return hit

    def counts(self) -> dict[str, int]:
        counts = Counter(f.state for f in self.busy)
        counts[self.lifecycle.initial] += len(self.waiting)
        out = {state: counts.get(state, 0) for state in self.lifecycle.states}
        roles = self.roles
        for state, value in ((roles.done, self.done), (roles.rejected, self.rejected), (roles.gone, self.gone)):
            if state in out:
                out[state] += value
        return out


def cut_batches(files: list[TrackedFile], size: int) -> Iterator[list[TrackedFile]]:
    """``files`` in batches of ``size`` files, each also holding at most ``BATCH_BYTES`` of sources
    (a larger file alone): a batch's reports are in memory at once in three processes."""
    batch: list[TrackedFile] = []
    held = 0
    for file in files:
        if batch and (len(batch) == size or held + file.size > BATCH_BYTES):
            yield batch
            batch, held = [], 0
        batch.append(file)
        held += file.size
    if batch:
        yield batch
