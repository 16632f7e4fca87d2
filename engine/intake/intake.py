"""Intake: from the files test equipment writes to reports durable in the spool, without losing one.

Each configured intake watches one folder by polling (``os.scandir``; no watcher dependency). A
file's life follows the ``conversion`` lifecycle (``machines/conversion.yaml``)::

    detected → settled → copying → copied → converting → spooled → done
                                                 ↘ rejected        (and: changed, vanished → gone, defer)

1. **Settle.** A file is taken once its size and mtime have not changed for ``settle_ms``
   (and, on Windows, once it can be opened for writing, i.e. the equipment has closed it).
2. **Copy.** The file is copied into ``<data_dir>/intake/<name>/copies/<job>/<file name>`` and
   fsynced, and a job record is written, *before* the converter runs. The converter reads the copy.
3. **Convert** in a worker process (``convert/worker.py``), with the intake's timeout and a
   memory limit. Every report is stamped, given an id if it has none and validated before the
   first is accepted. A file larger than ``max_file_bytes`` is rejected without being read.
4. **Accept** every report into the spool (each durable when ``accept_many`` returns).

New files are taken in batches (up to ``BATCH_FILES`` of one intake): copied in one thread hop
with their fsyncs issued together, converted in one exchange with a worker (each file still has
its own timeout and its own outcome; a file that hangs or crashes the worker costs that file, and
the files after it in the batch are converted on their own in the next pass), accepted under one
spool directory fsync, and finished with one fsync per folder touched. Batching is what lets a
burst of files (a whole shift's results after a network outage) flow at disk speed instead of
paying every fsync and thread hop once per file.
5. Only then the **post-action** touches the source: ``archive`` (the copy is kept as
   ``<data_dir>/archive/<YYYY-MM-DD>/<intake>/<sha256>-<name>``, pruned after
   ``archive_keep_days``), ``move`` (to ``move_to``, never overwriting), ``delete``, or ``keep``
   (left in place and remembered in ``kept.json``, so it is not converted twice; a changed file is
   converted again).

A file that cannot be converted goes to ``<data_dir>/rejected/<intake>/`` with
``<name>.error.txt`` beside it (converter, time, reason, the first lines of the traceback);
nothing is deleted, and ``stationflow reprocess --rejected`` takes it again once fixed.

Crash safety: the source is untouched until step 5, so a crash before it leaves the source for
the next start (and a job record in ``copied`` state is converted again from its copy, giving
the same report ids: the spool answers "already present"). Every step of a post-action is
idempotent, so a crash during one is finished at the next start. When the spool refuses work
(full, or a storage error) the intake pauses with the reason in ``status``, leaves the sources
where they are, and tries again by itself.

Durability argument (which fsyncs are needed, and why the others are not):

* What keeps a result safe until step 5 is the *source*, which is only read. The copy's data is
  fsynced before conversion; its directory entries and the job records are not: they survive a
  crash of the process (``kill -9``), and after a power cut a lost copy or record only means the
  source is converted again — the same report ids, "already present" in the spool.
* Each report is durable when ``Spool.accept_many`` returns (files and directory fsynced; one
  directory fsync covers the batch, and nothing acts on a report's source before it returns).
* Post-actions of a batch run in two phases: every archive copy is renamed in and each archive
  folder fsynced, and only then are sources removed or moved — one fsync per folder, never a
  source removed before what replaces it is durable.
* Before a source is removed, what replaces it is durable: ``archive`` renames the (fsynced) copy
  into the archive and fsyncs that folder; ``move`` renames and fsyncs the target folder (across
  file systems: a whole fsynced copy first); ``keep`` writes ``kept.json`` fsynced; a rejected file
  is renamed into the error folder and that folder fsynced, with its ``.error.txt``.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio

from .. import durable
from ..layout import REPROCESS_ORIGINS, DataDir
from ..convert.worker import DEFAULT_MEMORY_LIMIT, ConversionFailed, Converted, WorkerPool
from ..convert.api import ConvertContext
from ..errors import DuplicateReport, InvalidInput, SpoolFull, StorageError
from ..lifecycle import Lifecycle, load_lifecycle
from ..spool.store import Accepted, Spool
from ...schemas.config import IntakeSection, StationSection

log = logging.getLogger(__name__)

__all__ = ["Intake", "IntakeOptions", "FileOutcome"]

ERROR_SUFFIX = ".error.txt"
#: Sub-folders of ``<data_dir>/intake/<name>/reprocess/``: where the file came from decides its post-action.

_WINDOWS = sys.platform == "win32"
_CHUNK = 1024 * 1024
#: New files taken together: one copy hop, one exchange with a worker, one spool directory fsync.
BATCH_FILES = 32
_SHA_PREFIX = re.compile(r"^[0-9a-f]{64}-")


def _disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is the disk or quota being full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class IntakeOptions:
    """Settings of the intake that are not (yet) in the station config."""

    poll_interval_s: float = 0.5
    #: Archived sources older than this many days are deleted (whole date folders).
    archive_keep_days: float = 30.0
    #: Address-space limit of each converter worker process (POSIX).
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT
    #: How often an intake paused by a full spool tries again.
    full_retry_s: float = 2.0
    #: How often a failed post-action (a locked source, an unreachable move_to) is tried again.
    post_retry_s: float = 10.0
    #: How often a converter that cannot be loaded is tried again.
    load_retry_s: float = 60.0
    max_reports_per_file: int = 100_000
    #: Files handed to the workers at once per scan (the rest wait, still untouched, for the next scan).
    max_in_flight: int = 64
    fsync: bool = True


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


@dataclass
class _Copy:
    """A copy being made: its temp file, open descriptor (-1 once closed), job id, the source's
    stat before copying, bytes copied and digest."""

    tmp: Path
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
        _unlink(self.tmp)


class _Vanished(Exception):
    pass


class _Changed(Exception):
    pass


class _TooLarge(Exception):
    pass


class _CopyTimeout(Exception):
    pass


def _now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass(eq=False)
class _File:
    """One source file being taken: the model the conversion lifecycle moves."""

    watch: _Watch
    path: Path
    rel: str
    origin: str  # "watch" or "reprocess/<archive|rejected>"
    state: str
    size: int
    mtime_ns: int
    stable_since: float
    job: str | None = None
    sha256: str | None = None
    copy: Path | None = None
    reports: list[str] = field(default_factory=list)
    already: int = 0
    note: str | None = None
    next_try: float = 0.0
    pending_reject: dict[str, Any] | None = None  # a rejection whose move to the error folder failed

    def fire(self, trigger: str) -> str:
        self.state = self.watch.lifecycle.next_state(self.state, trigger)
        return self.state

    def record(self, state: str | None = None) -> dict[str, Any]:
        return {"job": self.job, "intake": self.watch.name, "source": str(self.path), "rel": self.rel,
                "origin": self.origin, "size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256,
                "copy": f"{self.copy.parent.name}/{self.copy.name}" if self.copy else None, "state": state or self.state, "reports": self.reports,
                "updated": _now_iso()}


class _Watch:
    """One configured intake: its folders, the files it tracks, what it has done."""

    def __init__(self, section: IntakeSection, data_dir: Path, lifecycle: Lifecycle) -> None:
        self.section = section
        self.name = section.name
        self.lifecycle = lifecycle
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
        self.converter_name: str = section.converter
        self.problem: str | None = None  # the intake cannot work at all (converter not loadable)
        self.folder_problem: str | None = None  # the watch folder is missing or unreadable
        self.loaded = False
        self.next_load = 0.0
        self.files: dict[str, _File] = {}
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

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)

    def counts(self) -> dict[str, int]:
        counts = Counter(f.state for f in self.files.values())
        out = {state: counts.get(state, 0) for state in self.lifecycle.states}
        for state, value in (("done", self.done), ("rejected", self.rejected), ("gone", self.gone)):
            if state in out:
                out[state] += value
        return out


class Intake:
    """Every configured intake of a station. Async: run it in the service's task group.

    ``run`` polls forever; ``scan_once`` does one pass (detect, settle, take what is settled) and
    returns how many files were finished (done or rejected). Cancelling either never loses a
    source file: a file is moved or removed only after all its reports are durable in the spool.
    """

    def __init__(self, sections: list[IntakeSection], spool: Spool, data_dir: Path, station: StationSection, *,
                 workers: int = 2, options: IntakeOptions | None = None, lifecycle: Lifecycle | None = None) -> None:
        self.spool = spool
        self.data_dir = Path(data_dir)
        self.station = station
        self.options = options or IntakeOptions()
        self.lifecycle = lifecycle or load_lifecycle("conversion")
        self.workers = max(1, workers)
        self.pool = WorkerPool(self.workers, memory_limit=self.options.memory_limit_bytes)
        self._watches = [_Watch(s, self.data_dir, self.lifecycle) for s in sections]
        self._limiter = anyio.CapacityLimiter(self.workers)
        self._manual_pause: str | None = None
        self._full_pause: str | None = None
        self._full_retry_at = 0.0
        self._draining = False
        self._in_flight: set[_File] = set()
        self._idle = anyio.Event()
        self._idle.set()
        self._room = anyio.Event()  # set when a busy intake has room for more files again
        self._saturated = False  # the last pass left settled files behind (in-flight budget used up)
        self._started = False
        self._clock_ref = (time.time(), time.monotonic())
        self._last_prune = 0.0
        self.outcomes: deque[FileOutcome] = deque(maxlen=1000)
        for watch in self._watches:
            watch.excluded = [self.data_dir]
            if watch.section.move_to:
                watch.excluded.append(Path(watch.section.move_to))

    # ------------------------------------------------------------------ control

    def pause(self, reason: str) -> None:
        """Stop taking new files (in-flight ones finish); sources stay where they are."""
        self._manual_pause = reason or "paused"
        log.info("intake paused: %s", self._manual_pause)

    def resume(self) -> None:
        """Take files again; also retries at once work that waits for room in the spool."""
        self._manual_pause = None
        self._full_pause = None
        self._full_retry_at = 0.0
        log.info("intake resumed")

    @property
    def paused_reason(self) -> str | None:
        return self._manual_pause or self._full_pause

    async def drain(self) -> None:
        """Stop taking new files and wait until the files in flight are finished."""
        self._draining = True
        await self._idle.wait()

    async def aclose(self) -> None:
        await self.pool.aclose()

    def status(self) -> dict[str, Any]:
        """JSON-able: paused reason, counts per conversion state, last error, per intake."""
        return {
            "paused": self.paused_reason is not None,
            "paused_reason": self.paused_reason,
            "draining": self._draining,
            "in_flight": len(self._in_flight),
            "workers": {"size": self.workers, "started": self.pool.started},
            "intakes": {
                w.name: {
                    "watch": str(w.root),
                    "converter": w.converter_name,
                    "patterns": w.patterns,
                    "after": w.section.after,
                    "counts": w.counts(),
                    "reports_accepted": w.reports,
                    "problem": w.problem or w.folder_problem,
                    "last_error": w.last_error,
                    "waiting": [{"file": str(f.path), "state": f.state, "note": f.note}
                                for f in list(w.files.values()) if f.note][:10],
                    "error_folder": str(w.rejected_dir),
                }
                for w in self._watches
            },
        }

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Poll the watch folders until cancelled."""
        await self._start()
        try:
            async with anyio.create_task_group() as tg:
                early = False
                while True:
                    for batch in self._batches(await self._collect(early=early)):
                        for file in batch:
                            self._register(file)
                        tg.start_soon(self._guarded, batch)
                    await self._maybe_prune()
                    # Poll again after the interval, or as soon as half the in-flight budget is free
                    # when the last pass left settled files behind (a burst of files keeps flowing).
                    with anyio.move_on_after(self.options.poll_interval_s):
                        await self._room.wait()
                    early, self._room = self._room.is_set(), anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await self._save_kept()

    async def scan_once(self, *, only_reprocess: bool = False) -> int:
        """One pass: detect, check settling, take every settled file; return files finished."""
        await self._start()
        files = await self._collect(only_reprocess=only_reprocess)
        finished = 0

        async def some(batch: list[_File]) -> None:
            nonlocal finished
            done = await self._guarded(batch)  # not `finished += await …`: that reads finished before awaiting
            finished += done

        async with anyio.create_task_group() as tg:
            for batch in self._batches(files):
                for file in batch:
                    self._register(file)
                tg.start_soon(some, batch)
        await self._save_kept()
        return finished

    def _batches(self, ready: list[_File]) -> list[list[_File]]:
        """New (settled) files of one intake go in batches, spread over the workers; a file that
        resumes from another state (copied, spooled, rejected) goes alone."""
        new: dict[_Watch, list[_File]] = {}
        batches: list[list[_File]] = []
        for file in ready:
            if file.state == "settled":
                new.setdefault(file.watch, []).append(file)
            else:
                batches.append([file])
        for files in new.values():
            # A burst goes in full batches; fewer files are split over the workers, a quarter batch
            # at least (below that, one exchange with a worker costs less than two).
            size = max(1, min(BATCH_FILES, max(math.ceil(len(files) / self.workers), BATCH_FILES // 4)))
            batches.extend(files[i:i + size] for i in range(0, len(files), size))
        return batches

    def _register(self, file: _File) -> None:
        self._in_flight.add(file)
        if self._idle.is_set():
            self._idle = anyio.Event()

    async def _guarded(self, files: list[_File]) -> int:
        """Take a batch; return how many files were finished (done or rejected). Never raises but
        cancellation: an unexpected error leaves each file in a durable state for a later pass."""
        try:
            async with self._limiter:
                if files[0].state == "settled":
                    return await self._take_new(files)
                return int(await self._take(files[0]))
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a bug or an unexpected OS error: the files stay for a later pass
            self._unexpected(files, exc)
            return 0
        finally:
            for file in files:
                self._in_flight.discard(file)
            if not self._in_flight:
                self._idle.set()
            if self._saturated and len(self._in_flight) <= self.options.max_in_flight // 2:
                self._room.set()

    def _unexpected(self, files: list[_File], exc: Exception) -> None:
        """Put files that met an unexpected error back where their work can resume (copy kept,
        source untouched) and retry them later; a full disk pauses the intake instead of logging."""
        if _disk_full(exc):
            # Not a bug: pause like a full spool (status says why), leave the sources in place,
            # try again every full_retry_s — and do not log a traceback per file.
            reason = f"the disk holding the data dir is full: {exc}"
            if self._full_pause is None:
                log.warning("intake: %s — sources stay where they are; retrying every %g s", reason,
                            self.options.full_retry_s)
            self._full_pause = reason
            self._full_retry_at = time.monotonic() + self.options.full_retry_s
        else:
            log.error("intake %s: unexpected error on %s", files[0].watch.name,
                      ", ".join(str(f.path) for f in files[:5]) + (" …" if len(files) > 5 else ""),
                      exc_info=exc)
        for file in files:
            if file.watch.files.get(str(file.path)) is not file:
                continue  # already finished (done, rejected or gone) before the error
            self._note_error(file.watch, file.path, f"unexpected error: {type(exc).__name__}: {exc}")
            back = {"settled": "changed", "copying": "changed", "converting": "defer"}.get(file.state)
            if back:
                file.fire(back)
            file.next_try = time.monotonic() + self.options.post_retry_s
            file.note = f"unexpected error, retrying: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ start-up

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        for watch in self._watches:
            await anyio.to_thread.run_sync(self._recover, watch)
        await self._load_converters()
        await self._maybe_prune()

    async def _load_converters(self) -> None:
        now = time.monotonic()
        for watch in self._watches:
            if watch.loaded or now < watch.next_load:
                continue
            try:
                described = await self.pool.describe(watch.section.converter)
            except (ConversionFailed, OSError) as exc:
                watch.problem = f"converter cannot be loaded: {exc}"
                watch.next_load = now + self.options.load_retry_s
                log.error("intake %s: %s (files stay in %s)", watch.name, watch.problem, watch.root)
                continue
            watch.loaded = True
            watch.problem = None
            watch.converter_name = described["name"]
            if not watch.patterns_set:
                watch.patterns = described["patterns"]

    def _recover(self, watch: _Watch) -> None:
        """Pick up what a previous run left: job records, orphan copies, partial copies."""
        for folder in (watch.copies, watch.jobs, watch.tmp, watch.rejected_dir,
                       *(watch.reprocess / o for o in REPROCESS_ORIGINS)):
            folder.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(watch.tmp):
            _unlink(entry.path)  # partial copies: their sources are untouched
        try:
            watch.kept = {k: list(v) for k, v in json.loads(watch.kept_file.read_bytes()).items()}
        except FileNotFoundError:
            watch.kept = {}
        except (ValueError, OSError, AttributeError) as exc:
            log.warning("intake %s: %s is unreadable (%s); kept files may be converted again",
                        watch.name, watch.kept_file, exc)
            watch.kept = {}
        owned: set[str] = set()
        for entry in os.scandir(watch.jobs):
            if not entry.name.endswith(".json"):
                continue
            try:
                record = json.loads(Path(entry.path).read_bytes())
                state = record["state"]
                self.lifecycle.state(state)
            except (ValueError, OSError, KeyError) as exc:
                log.warning("intake %s: job record %s is unreadable (%s); its source is taken again",
                            watch.name, entry.path, exc)
                _unlink(entry.path)
                continue
            copy = watch.copies / record["copy"] if record.get("copy") else None
            if state != "spooled":
                state = "copied"  # records are written in copied or spooled; anything else resumes from the copy
            file = _File(watch, Path(record["source"]), record.get("rel") or Path(record["source"]).name,
                         record.get("origin", "watch"), state, int(record["size"]), int(record["mtime_ns"]),
                         time.monotonic(), job=record["job"], sha256=record.get("sha256"), copy=copy,
                         reports=list(record.get("reports") or []))
            if copy is not None and not copy.exists() and state != "spooled":
                # The copy is gone but nothing touched the source yet: take it from the start.
                _unlink(entry.path)
                continue
            if copy is not None:
                owned.add(f"{copy.parent.name}/{copy.name}")
            watch.files[str(file.path)] = file
            log.info("intake %s: resuming %s from state %s", watch.name, file.path, state)
        for entry in os.scandir(watch.copies):
            # A copy no job record refers to was never recorded: its source is untouched.
            if not entry.is_dir(follow_symlinks=False):
                _unlink(entry.path)
                continue
            for inner in os.scandir(entry.path):
                if f"{entry.name}/{inner.name}" in owned:
                    continue
                if inner.is_dir(follow_symlinks=False):
                    shutil.rmtree(inner.path, ignore_errors=True)
                else:
                    _unlink(inner.path)
            try:
                os.rmdir(entry.path)
            except OSError:
                pass  # still holds copies of jobs being resumed
        watch.rejected = sum(1 for e in os.scandir(watch.rejected_dir)
                             if e.is_file() and not e.name.endswith(ERROR_SUFFIX))

    # ------------------------------------------------------------------ detecting and settling

    async def _collect(self, *, only_reprocess: bool = False, early: bool = False) -> list[_File]:
        """What is ready to be worked on now: settled new files, resumed jobs, retries."""
        if not self._started:
            await self._start()
        await self._load_converters()
        now = time.monotonic()
        ready: list[_File] = []
        if self._draining or self._manual_pause:
            return ready
        budget = self.options.max_in_flight - len(self._in_flight)
        full = self._full_pause is not None
        retry_full = full and now >= self._full_retry_at
        if retry_full and not any(f.state == "copied" and f not in self._in_flight
                                  for w in self._watches for f in w.files.values()):
            # Nothing waits for room any more (it was rejected, or finished): try new files again;
            # the next refusal pauses again.
            self._full_pause = None
            full = retry_full = False
        for watch in self._watches:
            if watch.problem:
                continue
            # Work already under way from an earlier pass or run: copies waiting for the spool,
            # post-actions or rejections that failed, jobs resumed at start-up.
            for file in list(watch.files.values()):
                if file in self._in_flight or budget <= 0 or now < file.next_try:
                    continue
                if file.state in ("spooled", "rejected") or (file.state == "copied" and (not full or retry_full)):
                    ready.append(file)
                    budget -= 1
                    if full and file.state == "copied":
                        self._full_retry_at = now + self.options.full_retry_s
                        retry_full = False
            if full:
                continue
            if early and not only_reprocess and time.monotonic() - watch.listed_at < self.options.poll_interval_s:
                # An early pass (room freed up in a burst): the folder was listed moments ago, so
                # take more of the files already seen instead of listing thousands again. New files
                # are seen at the next listing; each file's size and mtime are checked again when
                # it is copied.
                settled = self._settle_seen(watch, time.monotonic(), budget)
            else:
                # Listing the folders is blocking I/O (a thread); the bookkeeping stays on this loop.
                listing, walked_root = await anyio.to_thread.run_sync(self._list, watch, only_reprocess)
                if not only_reprocess:
                    watch.listed_at = time.monotonic()
                settled = self._detect(watch, listing, walked_root, time.monotonic(), only_reprocess, budget)
            ready.extend(settled)
            budget -= len(settled)
        self._saturated = budget <= 0
        return ready

    def _settle_seen(self, watch: _Watch, now: float, budget: int) -> list[_File]:
        """At most ``budget`` files seen at the last listing that are due to settle (``settle`` fired)."""
        settled: list[_File] = []
        settle_watch = watch.section.settle_ms / 1000.0
        for file in watch.files.values():
            if len(settled) >= budget:
                break
            if file.state != self.lifecycle.initial or file in self._in_flight or now < file.next_try:
                continue
            if now - file.stable_since < (settle_watch if file.origin == "watch" else 0.0):
                continue
            if _WINDOWS and _locked(file.path):
                continue
            file.note = None
            file.fire("settle")
            settled.append(file)
        return settled

    def _walk(self, root: Path, recursive: bool, excluded: list[Path]) -> Iterable[os.DirEntry[str]]:
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot list %s: %s", folder, exc)
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        if recursive and not any(_same_or_inside(Path(entry.path), x) for x in excluded):
                            stack.append(Path(entry.path))
                        continue
                    if entry.is_file():
                        yield entry
                except OSError:
                    continue

    def _list(self, watch: _Watch, only_reprocess: bool) -> tuple[list[tuple[str, str, str, int, int]], bool]:
        """(path, origin, relative path, size, mtime_ns) of every candidate file; and whether the
        watch folder itself could be listed. Runs in a thread: it reads the disk, changes nothing."""
        sources: list[tuple[Path, str, bool]] = [(watch.reprocess / o, f"reprocess/{o}", False)
                                                 for o in REPROCESS_ORIGINS]
        walked_root = False
        if not only_reprocess:
            walked_root = watch.root.is_dir()
            sources.insert(0, (watch.root, "watch", watch.section.recursive))
        found = []
        for root, origin, recursive in sources:
            for entry in self._walk(root, recursive, watch.excluded if origin == "watch" else []):
                if origin == "watch" and not watch.matches(entry.name):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                found.append((entry.path, origin, os.path.relpath(entry.path, root), st.st_size, st.st_mtime_ns))
        return found, walked_root

    def _detect(self, watch: _Watch, listing: list[tuple[str, str, str, int, int]], walked_root: bool,
                now: float, only_reprocess: bool, budget: int) -> list[_File]:
        """Track the listed files; return at most ``budget`` that stayed unchanged for settle_ms
        (``settle`` fired). The others stay detected, and settle at once in a later pass."""
        if not only_reprocess:
            watch.folder_problem = None if walked_root else f"the watch folder {watch.root} does not exist (yet)"
        settle_watch = watch.section.settle_ms / 1000.0
        seen: set[str] = set()
        settled: list[_File] = []
        for key, origin, rel, size, mtime_ns in listing:
            settle = settle_watch if origin == "watch" else 0.0
            seen.add(key)
            file = watch.files.get(key)
            if file is None:
                kept = watch.kept.get(key)
                if kept is not None:
                    if kept == [size, mtime_ns]:
                        continue
                    del watch.kept[key]  # changed since it was kept: new content, taken again
                    watch.kept_dirty = True
                file = _File(watch, Path(key), rel, origin, self.lifecycle.initial, size, mtime_ns, now)
                watch.files[key] = file
                if settle > 0:
                    continue
            if file.state != self.lifecycle.initial or now < file.next_try:
                continue  # owned by a job in progress, or waiting after an error
            if (size, mtime_ns) != (file.size, file.mtime_ns):
                file.size, file.mtime_ns, file.stable_since = size, mtime_ns, now
                continue
            if now - file.stable_since < settle or len(settled) >= budget:
                continue
            if _WINDOWS and _locked(file.path):
                file.note = "open in another program; waiting until it is closed"
                file.stable_since = now
                continue
            file.note = None
            file.fire("settle")
            settled.append(file)
        for key, file in list(watch.files.items()):
            if file.state != self.lifecycle.initial or key in seen or file in self._in_flight:
                continue
            if file.origin == "watch" and only_reprocess:
                continue  # its folder was not listed in this pass
            # Before it settled, someone took it away (or renamed it): nothing of it was ours.
            file.fire("vanished")
            watch.gone += 1
            del watch.files[key]
        if walked_root and watch.kept:
            for key in [k for k in watch.kept if k not in seen]:
                del watch.kept[key]  # a kept file that is no longer there needs no memory
                watch.kept_dirty = True
        return settled

    # ------------------------------------------------------------------ new files, in batches

    async def _take_new(self, files: list[_File]) -> int:
        """Settled files of one intake: copied in one thread hop, converted in one exchange with a
        worker, accepted under one spool directory fsync, post-actions with shared folder fsyncs.
        Each file keeps its own outcome; a file that fails a step leaves the batch alone."""
        watch = files[0].watch
        finished = 0
        todo: list[_File] = []
        for file in files:
            if file.size > watch.section.max_file_bytes:
                file.fire("reject")
                await self._reject(file, "too_large", f"the file is {file.size} bytes, more than max_file_bytes "
                                   f"({int(watch.section.max_file_bytes)}) — raise max_file_bytes for this intake "
                                   "if such files are expected")
                finished += 1
                continue
            file.fire("copy")
            todo.append(file)
        if not todo:
            return finished
        deadline = time.monotonic() + (self.lifecycle.state("copying").timeout or 300.0)
        failures = await anyio.to_thread.run_sync(self._copy_all, todo, deadline)
        copied: list[_File] = []
        for file, exc in zip(todo, failures):
            if exc is None:
                file.fire("copied")
                copied.append(file)
            else:
                finished += await self._copy_failed(file, exc)
        if copied:
            finished += await self._convert(copied)
        return finished

    def _copy_all(self, files: list[_File], deadline: float) -> list[Exception | None]:
        """Copy each file (the copies fsynced together) and write its job record (state copied);
        one failure per file, or None."""
        failures: list[Exception | None] = [None] * len(files)
        batch, names = uuid.uuid4().hex[:16], set[str]()
        written: list[tuple[int, _Copy]] = []
        try:
            for i, file in enumerate(files):
                try:
                    written.append((i, self._copy_data(file, deadline)))
                except Exception as exc:
                    failures[i] = exc
            fds = [c.fd for _, c in written]
            synced = durable.fsync_all(fds) if self.options.fsync else [None] * len(fds)
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
                self._place_copy(file, copy, batch, names)
            except Exception as exc:
                copy.discard()
                failures[i] = _Vanished() if isinstance(exc, FileNotFoundError) else exc
                continue
            try:
                self._write_record(file, state="copied")
            except StorageError as exc:  # the record only helps a restart; the source is still untouched
                log.warning("intake %s: job record of %s not written: %s", file.watch.name, file.path, exc)
        return failures

    async def _copy_failed(self, file: _File, exc: Exception) -> int:
        """What a failed copy means for the file (it is in ``copying``); 1 if it is finished."""
        watch = file.watch
        if isinstance(exc, _Vanished):
            file.fire("vanished")
            watch.gone += 1
            watch.files.pop(str(file.path), None)
            self._note_error(watch, file.path, "the file disappeared before it was copied whole; nothing "
                             "of it was taken", quiet=True)
        elif isinstance(exc, (_Changed, PermissionError)):
            file.fire("changed")
            file.stable_since = time.monotonic()
            file.note = ("open in another program; waiting" if isinstance(exc, PermissionError)
                         else "still changing; waiting")
        elif isinstance(exc, _CopyTimeout):
            file.fire("timeout")
            file.stable_since = time.monotonic()
            self._note_error(watch, file.path, "copying the file took too long (the copying state's timeout); "
                             "it is tried again")
        elif isinstance(exc, _TooLarge):
            file.fire("reject")
            await self._reject(file, "too_large", f"the file grew past max_file_bytes "
                               f"({int(watch.section.max_file_bytes)}) while it was copied")
            return 1
        else:
            self._unexpected([file], exc)
        return 0

    # ------------------------------------------------------------------ one file resuming

    async def _take(self, file: _File) -> bool:
        """A file resuming from a durable state: spooled (post-action), rejected (move to the error
        folder failed before), copied (convert again from the copy)."""
        if file.state == "spooled":
            return await self._finish([file]) == 1
        if file.state == "rejected" and file.pending_reject is not None:
            await self._reject(file, **file.pending_reject)
            return file.pending_reject is None
        if file.state == "copied":
            return await self._convert([file]) == 1
        raise RuntimeError(f"intake: {file.path} cannot be resumed from state {file.state!r}")

    def _copy_data(self, file: _File, deadline: float) -> _Copy:
        """Copy the source's bytes into ``tmp/<job>.part`` (not yet fsynced; the caller fsyncs the
        batch together); the source is only read. Raises _Vanished, _Changed, _TooLarge, ..."""
        watch = file.watch
        max_bytes = int(watch.section.max_file_bytes)
        try:
            before = os.stat(file.path)
        except FileNotFoundError:
            raise _Vanished() from None
        if (before.st_size, before.st_mtime_ns) != (file.size, file.mtime_ns):
            file.size, file.mtime_ns = before.st_size, before.st_mtime_ns
            raise _Changed()
        if before.st_size > max_bytes:
            raise _TooLarge()
        job = uuid.uuid4().hex[:16]
        copy = _Copy(watch.tmp / f"{job}.part", -1, job, before)
        digest = hashlib.sha256()
        try:
            with open(file.path, "rb") as src:
                copy.fd = os.open(copy.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
                while chunk := src.read(min(_CHUNK, max(before.st_size, 0) + 1)):
                    copy.size += len(chunk)
                    if copy.size > max_bytes:
                        raise _TooLarge()
                    if time.monotonic() > deadline:
                        raise _CopyTimeout()
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(copy.fd, view):]
        except FileNotFoundError:
            copy.discard()
            raise _Vanished() from None
        except BaseException:
            copy.discard()
            raise
        copy.sha256 = digest.hexdigest()
        return copy

    def _place_copy(self, file: _File, copy: _Copy, batch: str, names: set[str]) -> None:
        """Check the source did not change while it was copied, and move the (fsynced) copy to
        ``copies/<batch>/<name>``. The copies of one batch share a folder (no folder created and
        removed per file); a name already used in the batch (a recursive watch) gets its own."""
        after = os.stat(file.path)
        before = copy.before
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or copy.size != after.st_size:
            file.size, file.mtime_ns = after.st_size, after.st_mtime_ns
            raise _Changed()
        name = file.path.name  # the converter sees the file under its own name
        target = file.watch.copies / (copy.job if name in names else batch) / name
        target.parent.mkdir(exist_ok=True)
        names.add(name)
        durable.replace(copy.tmp, target)  # no directory fsync: see "Durability argument" above
        file.job, file.sha256, file.copy = copy.job, copy.sha256, target

    def _write_record(self, file: _File, state: str | None = None) -> None:
        """Atomic, not fsynced: it survives a crash of the process, and losing it to a power cut only
        means the source (still in place) is converted again, with the same report ids."""
        watch = file.watch
        durable.atomic_write(watch.jobs / f"{file.job}.json", json.dumps(file.record(state), indent=1).encode(),
                             tmp_dir=watch.tmp, sync=False)

    def _context(self, file: _File) -> ConvertContext:
        name = file.path.name
        return ConvertContext(station_name=self.station.name, location=self.station.location,
                              purpose=self.station.purpose, intake=file.watch.name,
                              arguments=dict(file.watch.section.arguments), source_name=name,
                              source_mtime=file.mtime_ns / 1e9)

    async def _convert(self, files: list[_File]) -> int:
        """Convert copied files of one intake in one exchange with a worker, then spool them."""
        watch = files[0].watch
        for file in files:
            assert file.copy is not None and file.sha256 is not None
            file.fire("convert")
        ceiling = self.lifecycle.state("converting").timeout or watch.section.timeout_s
        timeout = min(watch.section.timeout_s, ceiling)
        results = await self.pool.convert_many(
            watch.section.converter, [(f.copy, self._context(f), f.sha256) for f in files],  # type: ignore[misc]
            timeout=timeout, max_reports=self.options.max_reports_per_file)
        finished = 0
        converted: list[tuple[_File, Converted]] = []
        for index, file in enumerate(files):
            if index >= len(results):
                # Not attempted: the worker hung, crashed or ran out of memory on an earlier file of
                # the batch. Back to its copy; the next pass converts it on its own.
                file.fire("defer")
                continue
            result = results[index]
            if isinstance(result, ConversionFailed):
                finished += await self._conversion_failed(file, result)
            else:
                converted.append((file, result))
        if converted:
            finished += await self._spool(converted)
        return finished

    async def _conversion_failed(self, file: _File, exc: ConversionFailed) -> int:
        watch = file.watch
        if exc.kind == "load":  # the converter itself is gone or broken, not this file: wait for it
            file.fire("defer")
            watch.loaded, watch.problem = False, f"converter cannot be loaded: {exc.message}"
            watch.next_load = time.monotonic() + self.options.load_retry_s
            file.note = "waiting for the converter to load"
            return 0
        file.fire("timeout" if exc.kind == "timeout" else "reject")
        await self._reject(file, exc.kind, exc.message, detail=exc.detail, traceback_text=exc.traceback,
                           converter=exc.converter or watch.converter_name)
        return 1

    async def _spool(self, converted: list[tuple[_File, Converted]]) -> int:
        """Accept every report of the converted files in one call (one directory fsync)."""
        items = [(raw, str(file.path)) for file, result in converted for raw in result.reports]
        results = await anyio.to_thread.run_sync(self.spool.accept_many, items) if items else []
        finished = 0
        spooled: list[_File] = []
        at = 0
        for file, result in converted:
            mine = results[at:at + len(result.reports)]
            at += len(result.reports)
            accepted = [r for r in mine if isinstance(r, Accepted)]
            file.reports = [r.key for r in accepted]
            file.already = sum(int(r.already_present) for r in accepted)
            refusal = next((r for r in mine if not isinstance(r, Accepted)), None)
            if refusal is None:
                spooled.append(file)
            elif isinstance(refusal, (SpoolFull, StorageError)):
                await self._defer(file, refusal)
            else:
                file.fire("reject")
                number = mine.index(refusal) + 1
                kept = f" ({len(accepted)} other report(s) of this file were accepted and stay)" if accepted else ""
                await self._reject(file, "refused", f"the spool refused report #{number}: {refusal}{kept}",
                                   detail=getattr(refusal, "detail", None), converter=result.converter)
                finished += 1
        if spooled and self._full_pause is not None:
            log.info("intake: the spool accepts reports again; resuming")
            self._full_pause = None
        for file in spooled:
            file.watch.reports += len(file.reports) - file.already
            # No "spooled" job record: after a crash from here on, the record still says copied and
            # the copy is converted again — the same ids, "already present" — then finished.
            file.fire("converted")
        if spooled:
            finished += await self._finish(spooled)
        return finished

    async def _defer(self, file: _File, exc: Exception) -> None:
        """The spool refused (full, or a storage error): the copy waits, the source stays in place."""
        watch = file.watch
        file.fire("defer")
        self._full_pause = f"the spool refuses new reports: {exc}"
        self._full_retry_at = time.monotonic() + self.options.full_retry_s
        file.note = "waiting for room in the spool"
        try:
            await anyio.to_thread.run_sync(self._write_record, file)
        except StorageError as record_exc:  # the record on disk still says copied
            log.warning("intake %s: job record of %s not updated: %s", watch.name, file.path, record_exc)
        log.warning("intake %s: %s — %s stays in place; retrying every %g s", watch.name,
                    self._full_pause, file.path, self.options.full_retry_s)

    # ------------------------------------------------------------------ after: archive, move, delete, keep

    async def _finish(self, files: list[_File]) -> int:
        """Apply the post-actions of spooled files (one thread hop); return how many are done."""
        failures = await anyio.to_thread.run_sync(self._post_all, files)
        kept: list[_File] = []
        for file, exc in zip(files, failures):
            if exc is not None:
                watch = file.watch
                file.next_try = time.monotonic() + self.options.post_retry_s
                file.note = f"post-action {self._after(file)} failed: {exc}; retrying"
                self._note_error(watch, file.path, f"its reports are in the spool, but {self._after(file)} failed: "
                                 f"{exc} — retried every {self.options.post_retry_s:g} s")
            elif self._after(file) == "keep":
                kept.append(file)
        if kept:
            # Remembered durably in kept.json before the job records go (a restart would otherwise
            # convert the files again; the same ids, but work for nothing).
            for file in kept:
                file.watch.kept[str(file.path)] = [file.size, file.mtime_ns]
                file.watch.kept_dirty = True
            try:
                for watch in {file.watch for file in kept}:
                    await self._write_kept(watch)
            except (OSError, StorageError) as exc:
                for file in kept:
                    failures[files.index(file)] = exc
                    file.next_try = time.monotonic() + self.options.post_retry_s
                    file.note = f"post-action keep failed: {exc}; retrying"
            else:
                await anyio.to_thread.run_sync(self._drop_records, kept)
        done = 0
        for file, exc in zip(files, failures):
            if exc is not None:
                continue
            watch = file.watch
            file.fire("finish")
            watch.files.pop(str(file.path), None)
            watch.done += 1
            done += 1
            self.outcomes.append(FileOutcome(watch.name, str(file.path), file.state, list(file.reports), file.already))
            log.info("intake %s: %s → %d report(s) in the spool (%s)", watch.name, file.path.name, len(file.reports),
                     self._after(file))
        return done

    def _after(self, file: _File) -> str:
        if file.origin == "reprocess/archive":
            return "delete"  # the archived original stays in the archive
        if file.origin == "reprocess/rejected":
            return "archive"
        return file.watch.section.after

    def _source_unchanged(self, file: _File) -> bool | None:
        """True: the source is as it was copied; False: it changed since; None: it is gone."""
        try:
            st = os.stat(file.path)
        except FileNotFoundError:
            return None
        return (st.st_size, st.st_mtime_ns) == (file.size, file.mtime_ns)

    def _post_all(self, files: list[_File]) -> list[Exception | None]:
        """Post-actions of several files (in a thread); one failure per file, or None.

        Two phases, so that one fsync per folder serves the whole batch without weakening the
        argument: first every archive copy is renamed in and each archive folder fsynced; only then
        are sources removed or moved, and their folders fsynced (a move's target folder must sync;
        the source folder's sync is best effort — a resurrected source is converted again to the
        same ids). Every step is idempotent, so a crash in the middle is finished later."""
        failures: list[Exception | None] = [None] * len(files)
        plans: list[tuple[str, bool | None]] = []
        archived: dict[Path, list[int]] = {}
        for i, file in enumerate(files):
            after = self._after(file)
            try:
                unchanged = self._source_unchanged(file)
                if unchanged is False:
                    log.warning("intake %s: %s changed after it was copied; its new content is taken as a new file",
                                file.watch.name, file.path)
                if after == "archive" and file.copy is not None and file.copy.exists():
                    target = self._archive_path(file)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    durable.replace(file.copy, target)
                    archived.setdefault(target.parent, []).append(i)
            except Exception as exc:
                failures[i] = exc
                unchanged = None
            plans.append((after, unchanged))
        self._sync_folders({folder: (False, indices) for folder, indices in archived.items()}, failures)
        synced: dict[Path, tuple[bool, list[int]]] = {}
        for i, file in enumerate(files):
            if failures[i] is not None:
                continue
            after, unchanged = plans[i]
            try:
                folders: list[tuple[Path, bool]] = []
                if unchanged and after in ("archive", "delete"):
                    folders = self._remove_source(file)
                elif unchanged and after == "move":
                    folders = self._move_source(file, Path(file.watch.section.move_to or ""))
                _drop_copy(file.copy)
            except Exception as exc:
                failures[i] = exc
                continue
            for folder, best_effort in folders:
                was_best, indices = synced.get(folder, (True, []))
                synced[folder] = (was_best and best_effort, indices + [i])
        self._sync_folders(synced, failures)
        self._drop_records([f for i, f in enumerate(files) if failures[i] is None and plans[i][0] != "keep"])
        return failures

    def _sync_folders(self, folders: dict[Path, tuple[bool, list[int]]], failures: list[Exception | None]) -> None:
        """fsync each folder once; a failure is the failure of every file that needed it."""
        for folder, (best_effort, indices) in folders.items():
            try:
                self._sync(folder, best_effort=best_effort)
            except Exception as exc:
                for i in indices:
                    failures[i] = failures[i] or exc

    def _drop_records(self, files: list[_File]) -> None:
        for file in files:
            if file.job:
                _unlink(file.watch.jobs / f"{file.job}.json")

    def _archive_path(self, file: _File) -> Path:
        day = date.today().isoformat()
        name = _SHA_PREFIX.sub("", file.path.name)
        return file.watch.archive_root / day / file.watch.name / f"{file.sha256}-{name}"

    def _remove_source(self, file: _File) -> list[tuple[Path, bool]]:
        """Remove the source; the folders to fsync afterwards, with whether that is best effort."""
        try:
            os.unlink(file.path)
        except FileNotFoundError:
            return []
        return [(file.path.parent, True)]

    def _move_source(self, file: _File, folder: Path) -> list[tuple[Path, bool]]:
        """Move the source into ``folder`` (never over a file); the folders to fsync afterwards."""
        target = _free_name(folder / file.rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(file.path, target)  # never over an existing file: _free_name picked a new name
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Another file system: write a whole, fsynced copy first, then remove the source.
            self._copy_whole(file.copy if file.copy and file.copy.exists() else file.path, target)
            return self._remove_source(file)
        return [(target.parent, False), (file.path.parent, True)]

    async def _remember_kept(self, file: _File) -> None:
        """Note a source left in place (after: keep) durably, so a restart does not take it again."""
        file.watch.kept[str(file.path)] = [file.size, file.mtime_ns]
        file.watch.kept_dirty = True
        await self._write_kept(file.watch)

    async def _write_kept(self, watch: _Watch) -> None:
        async with watch.kept_lock:  # one writer at a time; each writes the newest state
            if not watch.kept_dirty:
                return
            data = json.dumps(watch.kept).encode()
            watch.kept_dirty = False
            try:
                await anyio.to_thread.run_sync(lambda: durable.atomic_write(
                    watch.kept_file, data, tmp_dir=watch.tmp, sync=self.options.fsync))
            except BaseException:
                watch.kept_dirty = True
                raise

    async def _save_kept(self) -> None:
        for watch in self._watches:
            if watch.kept_dirty:
                try:
                    await self._write_kept(watch)
                except StorageError as exc:
                    log.warning("intake %s: cannot save %s: %s", watch.name, watch.kept_file, exc)

    # ------------------------------------------------------------------ rejected

    async def _reject(self, file: _File, kind: str, reason: str, *, detail: str | None = None,
                      traceback_text: str | None = None, converter: str | None = None) -> None:
        watch = file.watch
        try:
            error_file = await anyio.to_thread.run_sync(self._move_to_rejected, file, kind, reason, detail,
                                                        traceback_text, converter)
            if self._after(file) == "keep" and await anyio.to_thread.run_sync(self._source_unchanged, file):
                await self._remember_kept(file)  # left in place as asked; not taken again unless it changes
        except Exception as exc:
            # Nothing was lost: the file is where it was. The move is tried again later.
            file.pending_reject = {"kind": kind, "reason": reason, "detail": detail,
                                   "traceback_text": traceback_text, "converter": converter}
            file.next_try = time.monotonic() + self.options.post_retry_s
            file.note = f"rejected, but moving it to the error folder failed: {exc}; retrying"
            self._note_error(watch, file.path, f"{reason}; moving it to the error folder failed: {exc}")
            return
        file.pending_reject = None
        watch.files.pop(str(file.path), None)
        if file.job:
            _unlink(watch.jobs / f"{file.job}.json")
        watch.rejected += 1
        self._note_error(watch, file.path, reason, error_file=error_file)
        self.outcomes.append(FileOutcome(watch.name, str(file.path), file.state, list(file.reports), file.already,
                                         reason=reason, error_file=error_file))
        log.warning("intake %s: %s rejected: %s (see %s)", watch.name, file.path, reason, error_file)

    def _move_to_rejected(self, file: _File, kind: str, reason: str, detail: str | None,
                          traceback_text: str | None, converter: str | None) -> str:
        watch = file.watch
        watch.rejected_dir.mkdir(parents=True, exist_ok=True)
        keep_source = self._after(file) == "keep"
        target = _free_name(watch.rejected_dir / file.path.name, also=ERROR_SUFFIX)
        lines = [
            f"file:      {file.path}",
            f"intake:    {watch.name}",
            f"converter: {converter or watch.section.converter}",
            f"time:      {_now_iso()}",
            f"kind:      {kind}",
            f"reason:    {reason}",
        ]
        if detail:
            lines.append(f"detail:    {detail}")
        if file.sha256:
            lines.append(f"sha256:    {file.sha256}")
        if file.reports:
            lines.append(f"accepted before the refusal (they stay in the spool): {', '.join(file.reports)}")
        if keep_source:
            lines.append("the source was left in place (after: keep); this is a copy")
        if traceback_text:
            lines += ["", "traceback (last lines):", traceback_text]
        lines += ["", "Fix the cause, then: stationflow reprocess --rejected --intake " + watch.name,
                  f"(or move {target.name} back into {watch.root})"]
        error_path = target.with_name(target.name + ERROR_SUFFIX)
        if file.copy is not None and file.copy.exists():
            durable.replace(file.copy, target)
            _drop_copy(file.copy)
        elif not keep_source:
            self._move_into(file.path, target)
        else:
            target = None  # type: ignore[assignment]
        durable.atomic_write(error_path, ("\n".join(lines) + "\n").encode("utf-8"), tmp_dir=watch.tmp,
                             sync=self.options.fsync)
        self._sync(watch.rejected_dir)
        if not keep_source and self._source_unchanged(file):
            for folder, best_effort in self._remove_source(file):
                self._sync(folder, best_effort=best_effort)
        return str(error_path)

    def _move_into(self, source: Path, target: Path) -> None:
        """Move a file into the data folder: a rename, or a whole fsynced copy and then removal."""
        try:
            os.replace(source, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        self._copy_whole(source, target)
        os.unlink(source)

    def _copy_whole(self, source: Path, target: Path) -> None:
        """Across file systems: ``target`` appears whole and fsynced, or not at all (no partial temp left)."""
        tmp = target.with_name(f".{target.name}.stationflow.tmp")
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
                dst.flush()
                if self.options.fsync:
                    os.fsync(dst.fileno())
            durable.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sync(target.parent)

    # ------------------------------------------------------------------ archive retention

    async def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < 3600 and self._last_prune:
            return
        self._last_prune = now
        try:
            removed = await anyio.to_thread.run_sync(
                lambda: prune_archive(self.data_dir, self.options.archive_keep_days, clock_ref=self._clock_ref))
        except OSError as exc:
            log.warning("archive pruning failed: %s", exc)
            return
        if removed:
            log.info("archive: removed %d day folder(s) older than %g days", removed, self.options.archive_keep_days)

    # ------------------------------------------------------------------ plumbing

    def _note_error(self, watch: _Watch, path: Path, reason: str, *, error_file: str | None = None,
                    quiet: bool = False) -> None:
        watch.last_error = {"at": _now_iso(), "file": str(path), "reason": reason, "error_file": error_file}
        if not quiet:
            log.debug("intake %s: %s: %s", watch.name, path, reason)

    def _sync(self, folder: Path, *, best_effort: bool = False) -> None:
        if not self.options.fsync:
            return
        try:
            durable.fsync_dir(folder)
        except StorageError:
            if not best_effort:
                raise


# ---------------------------------------------------------------------------- helpers

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


def _same_or_inside(path: Path, other: Path) -> bool:
    try:
        path.resolve().relative_to(other.resolve())
        return True
    except (ValueError, OSError):
        return False


def _free_name(target: Path, *, also: str = "") -> Path:
    """``target``, or ``name~1.ext``, ``name~2.ext``…: never overwrite a file someone may need."""
    candidate = target
    n = 0
    while candidate.exists() or (also and candidate.with_name(candidate.name + also).exists()):
        n += 1
        candidate = target.with_name(f"{target.stem}~{n}{target.suffix}")
    return candidate


def _drop_copy(copy: Path | None) -> None:
    """Remove a job's copy (if still there) and its folder once no other copy of the batch is in it."""
    if copy is None:
        return
    _unlink(copy)
    try:
        os.rmdir(copy.parent)
    except OSError:
        pass


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _locked(path: Path) -> bool:
    """Windows: the equipment still has the file open (a sharing violation when we ask for write access)."""
    if not os.access(path, os.W_OK):
        return False  # read-only file: we cannot tell, and will not need write access
    try:
        fd = os.open(path, os.O_RDWR)
    except PermissionError:
        return True
    except OSError:
        return False
    os.close(fd)
    return False


def archived_name(path: Path) -> str:
    """The original file name of an archived source (without its ``<sha256>-`` prefix)."""
    return _SHA_PREFIX.sub("", path.name)


# ---------------------------------------------------------------------------- submit

@dataclass
class Submitted:
    """What ``submit_files`` did with one file."""

    path: str
    accepted: list[tuple[str, str, bool]] = field(default_factory=list)  # (id, state, already present)
    error: str | None = None
    detail: str | None = None


async def submit_files(paths: list[Path], spool: Spool, station: StationSection, *, converter: str,
                       arguments: dict[str, Any] | None = None, intake: str = "submit", timeout_s: float = 60.0,
                       memory_limit: int = DEFAULT_MEMORY_LIMIT, workers: int = 2) -> list[Submitted]:
    """Convert files given by a person (``stationflow submit``) and accept their reports.

    The files are read where they are and never touched. Each file's reports are all validated
    before the first is accepted; a failure is reported per file and the others go on.
    """
    pool = WorkerPool(workers, memory_limit=memory_limit)
    results: list[Submitted] = [Submitted(str(p)) for p in paths]
    limiter = anyio.CapacityLimiter(max(1, workers))

    async def one(path: Path, result: Submitted) -> None:
        async with limiter:
            try:
                data = await anyio.to_thread.run_sync(path.read_bytes)
            except OSError as exc:
                result.error = f"cannot read: {exc.strerror or exc}"
                return
            st = path.stat()
            context = ConvertContext(station_name=station.name, location=station.location, purpose=station.purpose,
                                     intake=intake, arguments=dict(arguments or {}), source_name=path.name,
                                     source_mtime=st.st_mtime)
            try:
                converted = await pool.convert(converter, path.resolve(), context,
                                               sha256=hashlib.sha256(data).hexdigest(), timeout=timeout_s)
            except ConversionFailed as exc:
                result.error, result.detail = exc.message, exc.detail or exc.traceback
                return
            for raw in converted.reports:
                try:
                    accepted = await anyio.to_thread.run_sync(
                        lambda raw=raw: spool.accept(raw, source=str(path.resolve())))
                except (InvalidInput, SpoolFull, StorageError) as exc:
                    result.error, result.detail = str(exc), exc.detail
                    return
                result.accepted.append((accepted.key, accepted.state, accepted.already_present))

    try:
        async with anyio.create_task_group() as tg:
            for path, result in zip(paths, results):
                tg.start_soon(one, Path(path), result)
    finally:
        await pool.aclose()
    return results
