"""Intake: from the files test equipment writes to reports durable in the spool, without losing one.

Each configured intake watches one folder by listing it (``os.scandir``), woken by change
notifications (``inotify.py`` on Linux, ``notify.py``'s watchdog elsewhere) and by polling as the
fallback. A file's life follows the ``conversion`` lifecycle (``machines/conversion.yaml``)::

    detected → settled → copying → copied → converting → spooled → done
                                                 ↘ rejected        (and: changed, vanished → gone, defer)

1. **Settle.** A file is taken once its size and mtime have not changed for ``settle_ms``
   (and, on Windows, once it can be opened for writing, i.e. the equipment has closed it).
2. **Copy.** The file is copied into ``<data_dir>/intake/<name>/copies/<batch>/<file name>`` and
   fsynced, and its batch's job record is written, *before* the converter runs. The converter reads the copy.
3. **Convert** in a worker process (``convert/worker.py``), with the intake's timeout and a
   memory limit. Every report is stamped, given an id if it has none and validated before the
   first is accepted. A file larger than ``max_file_bytes`` is rejected without being read.
4. **Accept** every report into the spool (each durable when ``accept_many`` returns).

New files are taken in batches (up to ``BATCH_FILES`` of one intake and ``BATCH_BYTES`` of sources):
copied in one thread hop with their fsyncs issued together, converted in one exchange with a
worker (each file still has its own timeout and its own outcome; a file that hangs or crashes the
worker costs that file, and the files after it in the batch are converted on their own in the next
pass), accepted under one spool directory fsync, and finished with one fsync per folder touched. Batching is what lets a
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

import logging
import math
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..convert.api import ConvertContext
from ..convert.pool import ConversionFailed, Converted, WorkerPool
from ..errors import SpoolFull, StorageError
from ..lifecycle import Lifecycle, load_lifecycle
from ..spool.store import Accepted, Spool
from ...schemas.config import IntakeSection, StationSection
from ..clock import now_iso
from .copying import Changed, CopyTimeout, TooLarge, Vanished, copy_all
from .detect import backlog, detect, known_files, list_candidates, next_pass_in, settle_seen
from .notify import start_notifier
from .model import BATCH_FILES, FileOutcome, IntakeOptions, TrackedFile, Watch, cut_batches, disk_full
from .post_actions import accept_then_post, after_action, drop_records, log_finished, post_all, prune_archive, source_unchanged, write_kept
from .recovery import recover
from .rejects import move_to_rejected
from .status import intake_status

if TYPE_CHECKING:
    from .notify import Notifier

log = logging.getLogger(__name__)


__all__ = ["Intake", "IntakeOptions", "FileOutcome"]


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
        # the conversion lifecycle in force at the station (a site's file, checked with the others
        # when the spool was opened), else the shipped one
        self.lifecycle = lifecycle or getattr(spool, "machines", {}).get("conversion") or load_lifecycle("conversion")
        self.workers = max(1, workers)
        self.pool = WorkerPool(self.workers, memory_limit=self.options.memory_limit_bytes,
                               memory_growth=self.options.worker_memory_growth_bytes)
        self._watches = [Watch(s, self.data_dir, self.lifecycle) for s in sections]
        self._limiter = anyio.CapacityLimiter(self.workers)
        self._manual_pause: str | None = None
        self._full_pause: str | None = None
        self._full_retry_at = 0.0
        self._draining = False
        self._in_flight: set[TrackedFile] = set()
        self._idle = anyio.Event()
        self._idle.set()
        self._room = anyio.Event()  # set when a busy intake has room for more files again, or a folder changed
        self._notified = False  # a watch folder changed since the last listing (set from the notifier's thread)
        self._unlisted = False  # changes were notified that no listing has looked at yet (see _collect)
        self._notifier: Notifier | None = None
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
        return intake_status(self, self._watches, self._notifier, draining=self._draining,
                             in_flight=len(self._in_flight))

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Poll the watch folders until cancelled."""
        self._notifier = self._start_notifier()  # before start-up: nothing that arrives meanwhile is missed
        try:
            await self._start()
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
                    # A change notification (notify.py) wakes it at once, for a fresh listing.
                    with anyio.move_on_after(next_pass_in(self._watches, self.options.poll_interval_s,
                                                           notified=self._notifier is not None)):
                        await self._room.wait()
                    # Early (no fresh listing) when room freed up, or while files seen at the last
                    # listing are due and wait only for room: a burst drains without listing (and
                    # stat-ing) its thousands of files at every pass; what arrives meanwhile is seen
                    # at the next listing, at most a poll interval later (behind the burst anyway).
                    early = (self._room.is_set() and not self._notified) or self._backlog()
                    self._unlisted = self._unlisted or self._notified
                    self._room, self._notified = anyio.Event(), False
        finally:
            if self._notifier is not None:
                self._notifier.stop()
                self._notifier = None
            with anyio.CancelScope(shield=True):
                await self._save_kept()

    def _backlog(self) -> bool:
        return backlog(self._watches, self._in_flight, self._notifier.closed_as if self._notifier else None)

    def _start_notifier(self) -> Notifier | None:
        """OS change notifications for the watch folders (polling stays, as the fallback)."""
        if not self.options.notifications:
            return None
        return start_notifier([(w.root, w.section.recursive, w.excluded) for w in self._watches if w.root.is_dir()],
                              self._first_notice, lambda: self._room.set())

    def _first_notice(self) -> bool:
        """A change was notified; True if it is the first since the last pass (it wakes the loop)."""
        first, self._notified = not self._notified, True
        return first

    async def scan_once(self, *, only_reprocess: bool = False) -> int:
        """One pass: detect, check settling, take every settled file; return files finished."""
        await self._start()
        files = await self._collect(only_reprocess=only_reprocess)
        finished = 0

        async def some(batch: list[TrackedFile]) -> None:
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

    def _batches(self, ready: list[TrackedFile]) -> list[list[TrackedFile]]:
        """New (settled) files of one intake go in batches, spread over the workers; a file that
        resumes from another state (copied, spooled, rejected) goes alone."""
        new: dict[Watch, list[TrackedFile]] = {}
        batches: list[list[TrackedFile]] = []
        for file in ready:
            if file.state == file.watch.roles.settled:
                new.setdefault(file.watch, []).append(file)
            else:
                batches.append([file])
        # Split over the workers that are free now: with one batch still at work, the room it
        # leaves (half the in-flight budget) goes as one full batch, not two halves waiting for one
        # worker — every batch pays its thread hops, job record, worker exchange, spool accept and
        # folder fsyncs once, whatever its size.
        stats = self._limiter.statistics()
        idle = max(1, self.workers - stats.borrowed_tokens - stats.tasks_waiting)
        for files in new.values():
            # A burst goes in full batches; fewer files are split over the idle workers, a quarter
            # batch at least (below that, one exchange with a worker costs less than two).
            size = max(1, min(BATCH_FILES, max(math.ceil(len(files) / idle), BATCH_FILES // 4)))
            batches.extend(cut_batches(files, size))
        return batches

    def _register(self, file: TrackedFile) -> None:
        self._in_flight.add(file)
        if self._idle.is_set():
            self._idle = anyio.Event()

    async def _guarded(self, files: list[TrackedFile]) -> int:
        """Take a batch; return how many files were finished (done or rejected). Never raises but
        cancellation: an unexpected error leaves each file in a durable state for a later pass."""
        try:
            async with self._limiter:
                if files[0].state == files[0].watch.roles.settled:
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

    def _unexpected(self, files: list[TrackedFile], exc: Exception) -> None:
        """Put files that met an unexpected error back where their work can resume (copy kept,
        source untouched) and retry them later; a full disk pauses the intake instead of logging."""
        if disk_full(exc):
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
            back = file.watch.roles.recover.get(file.state)  # the state's on_crash: back to rest
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
            await anyio.to_thread.run_sync(recover, watch)
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

    # ------------------------------------------------------------------ detecting and settling

    async def _collect(self, *, only_reprocess: bool = False, early: bool = False) -> list[TrackedFile]:
        """What is ready to be worked on now: settled new files, resumed jobs, retries."""
        if not self._started:
            await self._start()
        await self._load_converters()
        now = time.monotonic()
        ready: list[TrackedFile] = []
        if self._draining or self._manual_pause:
            return ready
        budget = self.options.max_in_flight - len(self._in_flight)
        full = self._full_pause is not None
        retry_full = full and now >= self._full_retry_at
        if retry_full and not any(f.state == w.roles.copied and f not in self._in_flight
                                  for w in self._watches for f in w.busy):
            # Nothing waits for room any more (it was rejected, or finished): try new files again;
            # the next refusal pauses again.
            self._full_pause = None
            full = retry_full = False
        listed_all = True  # every watch listed in this pass (or skipped): the changes notified are seen
        for watch in self._watches:
            if watch.problem:
                continue
            # Work already under way from an earlier pass or run: copies waiting for the spool,
            # post-actions or rejections that failed, jobs resumed at start-up.
            for file in list(watch.busy):  # not the files waiting to settle: a burst's thousands
                if file in self._in_flight or budget <= 0 or now < file.next_try:
                    continue
                roles = watch.roles
                if file.state in (roles.spooled, roles.rejected) or (
                        file.state == roles.copied and (not full or retry_full)):
                    ready.append(file)
                    budget -= 1
                    if full and file.state == roles.copied:
                        self._full_retry_at = now + self.options.full_retry_s
                        retry_full = False
            if full:
                continue
            if early and not only_reprocess and time.monotonic() - watch.listed_at < self.options.poll_interval_s:
                # An early pass (room freed up in a burst): the folder was listed moments ago, so
                # take more of the files already seen instead of listing thousands again. New files
                # are seen at the next listing; each file's size and mtime are checked again when
                # it is copied.
                settled = settle_seen(watch, time.monotonic(), budget, self._in_flight,
                                      self._notifier.closed_state if self._notifier else None)
                budget -= len(settled)
                ready.extend(settled)
                # The files seen are all in hand and the folders changed since they were listed (the
                # rest of a burst still being written): listed now, not a poll interval later — with
                # room in flight and no wake-up to come, the burst would stall that long.
                if budget <= 0 or not self._unlisted:
                    listed_all = False
                    continue
            # Listing the folders is blocking I/O (a thread); the bookkeeping stays on this loop.
            listed_from = time.monotonic()
            listing, walked_root = await anyio.to_thread.run_sync(list_candidates, watch, only_reprocess,
                                                                  known_files(watch))
            if not only_reprocess:
                watch.listed_at = time.monotonic()
            settled = detect(watch, listing, walked_root, time.monotonic(), only_reprocess, budget,
                             self._in_flight, self._notifier.closed_as if self._notifier else None,
                             listed_from)
            ready.extend(settled)
            budget -= len(settled)
        if listed_all and not only_reprocess:
            self._unlisted = False
        self._saturated = budget <= 0
        return ready

    # ------------------------------------------------------------------ new files, in batches

    async def _take_new(self, files: list[TrackedFile]) -> int:
        """Settled files of one intake: copied in one thread hop, converted in one exchange with a
        worker, accepted under one spool directory fsync, post-actions with shared folder fsyncs.
        Each file keeps its own outcome; a file that fails a step leaves the batch alone."""
        watch = files[0].watch
        finished = 0
        todo: list[TrackedFile] = []
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
        deadline = time.monotonic() + (self.lifecycle.state(watch.roles.copying).timeout or 300.0)
        failures = await anyio.to_thread.run_sync(lambda: copy_all(todo, deadline, fsync=self.options.fsync))
        copied: list[TrackedFile] = []
        for file, exc in zip(todo, failures):
            if exc is None:
                file.fire("copied")
                copied.append(file)
            else:
                finished += await self._copy_failed(file, exc)
        if copied:
            finished += await self._convert(copied)
        return finished

    async def _copy_failed(self, file: TrackedFile, exc: Exception) -> int:
        """What a failed copy means for the file (it is in ``copying``); 1 if it is finished."""
        watch = file.watch
        if isinstance(exc, Vanished):
            file.fire("vanished")
            watch.gone += 1
            watch.forget(file)
            self._note_error(watch, file.path, "the file disappeared before it was copied whole; nothing "
                             "of it was taken", quiet=True)
        elif isinstance(exc, (Changed, PermissionError)):
            file.fire("changed")
            file.restart_settle(time.monotonic())
            file.note = ("open in another program; waiting" if isinstance(exc, PermissionError)
                         else "still changing; waiting")
        elif isinstance(exc, CopyTimeout):
            file.fire("timeout")
            file.restart_settle(time.monotonic())
            self._note_error(watch, file.path, "copying the file took too long (the copying state's timeout); "
                             "it is tried again")
        elif isinstance(exc, TooLarge):
            file.fire("reject")
            await self._reject(file, "too_large", f"the file grew past max_file_bytes "
                               f"({int(watch.section.max_file_bytes)}) while it was copied")
            return 1
        else:
            self._unexpected([file], exc)
        return 0

    # ------------------------------------------------------------------ one file resuming

    async def _take(self, file: TrackedFile) -> bool:
        """A file resuming from a durable state: spooled (post-action), rejected (move to the error
        folder failed before), copied (convert again from the copy)."""
        roles = file.watch.roles
        if file.state == roles.spooled:
            return await self._finish([file]) == 1
        if file.state == roles.rejected and file.pending_reject is not None:
            await self._reject(file, **file.pending_reject)
            return file.pending_reject is None
        if file.state == roles.copied:
            return await self._convert([file]) == 1
        raise RuntimeError(f"intake: {file.path} cannot be resumed from state {file.state!r}")

    def _context(self, file: TrackedFile) -> ConvertContext:
        name = file.path.name
        return ConvertContext(station_name=self.station.name, location=self.station.location,
                              purpose=self.station.purpose, intake=file.watch.name,
                              arguments=dict(file.watch.section.arguments), source_name=name,
                              source_mtime=file.mtime_ns / 1e9)

    async def _convert(self, files: list[TrackedFile]) -> int:
        """Convert copied files of one intake in one exchange with a worker, then spool them."""
        watch = files[0].watch
        for file in files:
            assert file.copy is not None and file.sha256 is not None
            file.fire("convert")
        ceiling = self.lifecycle.state(watch.roles.converting).timeout or watch.section.timeout_s
        timeout = min(watch.section.timeout_s, ceiling)
        results = await self.pool.convert_many(
            watch.section.converter, [(f.copy, self._context(f), f.sha256) for f in files],  # type: ignore[misc]
            timeout=timeout, max_reports=self.options.max_reports_per_file)
        finished = 0
        converted: list[tuple[TrackedFile, Converted]] = []
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

    async def _conversion_failed(self, file: TrackedFile, exc: ConversionFailed) -> int:
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

    async def _spool(self, converted: list[tuple[TrackedFile, Converted]]) -> int:
        """Accept every report of the converted files in one call (one directory fsync); the post-actions
        of the files it returned durable follow in the same thread hop (post_actions.accept_then_post)."""
        results, durable, failures = await anyio.to_thread.run_sync(lambda: accept_then_post(
            self.spool, [(f, r.reports, r.ids) for f, r in converted], fsync=self.options.fsync))
        finished = 0
        spooled: list[TrackedFile] = []
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
            assert spooled == durable  # the same files, in the same order: their post-actions are done
            if isinstance(failures, Exception):
                raise failures  # unexpected: the files are spooled; a later pass applies the post-actions
            finished += await self._finish(spooled, failures)
        return finished

    async def _defer(self, file: TrackedFile, exc: Exception) -> None:
        """The spool refused (full, or a storage error): the copy waits, the source stays in place."""
        watch = file.watch
        file.fire("defer")
        self._full_pause = f"the spool refuses new reports: {exc}"
        self._full_retry_at = time.monotonic() + self.options.full_retry_s
        file.note = "waiting for room in the spool"  # its batch's job record says copied: resumed from the copy
        log.warning("intake %s: %s — %s stays in place; retrying every %g s", watch.name,
                    self._full_pause, file.path, self.options.full_retry_s)

    # ------------------------------------------------------------------ after: archive, move, delete, keep

    async def _finish(self, files: list[TrackedFile], failures: list[Exception | None] | None = None) -> int:
        """Apply the post-actions of spooled files (one thread hop), or note those applied already
        (``failures``: post_all's results); return how many are done."""
        if failures is None:
            failures = await anyio.to_thread.run_sync(lambda: post_all(files, fsync=self.options.fsync))
        kept: list[TrackedFile] = []
        for file, exc in zip(files, failures):
            if exc is not None:
                watch = file.watch
                file.next_try = time.monotonic() + self.options.post_retry_s
                file.note = f"post-action {after_action(file)} failed: {exc}; retrying"
                self._note_error(watch, file.path, f"its reports are in the spool, but {after_action(file)} failed: "
                                 f"{exc} — retried every {self.options.post_retry_s:g} s")
            elif after_action(file) == "keep":
                kept.append(file)
        if kept:
            # Remembered durably in kept.json before the job records go (a restart would otherwise
            # convert the files again; the same ids, but work for nothing).
            for file in kept:
                file.watch.kept[str(file.path)] = [file.size, file.mtime_ns]
                file.watch.kept_dirty = True
            try:
                for watch in {file.watch for file in kept}:
                    await write_kept(watch, fsync=self.options.fsync)
            except (OSError, StorageError) as exc:
                for file in kept:
                    failures[files.index(file)] = exc
                    file.next_try = time.monotonic() + self.options.post_retry_s
                    file.note = f"post-action keep failed: {exc}; retrying"
            else:
                await anyio.to_thread.run_sync(drop_records, kept)
        finished: list[TrackedFile] = []
        for file, failure in zip(files, failures):
            if failure is not None:
                continue
            watch = file.watch
            file.fire("finish")
            watch.forget(file)
            watch.done += 1
            finished.append(file)
            self.outcomes.append(FileOutcome(watch.name, str(file.path), file.state, list(file.reports), file.already))
        log_finished(finished)
        return len(finished)

    async def _remember_kept(self, file: TrackedFile) -> None:
        """Note a source left in place (after: keep) durably, so a restart does not take it again."""
        file.watch.kept[str(file.path)] = [file.size, file.mtime_ns]
        file.watch.kept_dirty = True
        await write_kept(file.watch, fsync=self.options.fsync)

    async def _save_kept(self) -> None:
        for watch in self._watches:
            if watch.kept_dirty:
                try:
                    await write_kept(watch, fsync=self.options.fsync)
                except StorageError as exc:
                    log.warning("intake %s: cannot save %s: %s", watch.name, watch.kept_file, exc)

    # ------------------------------------------------------------------ rejected

    async def _reject(self, file: TrackedFile, kind: str, reason: str, *, detail: str | None = None,
                      traceback_text: str | None = None, converter: str | None = None) -> None:
        watch = file.watch
        try:
            error_file = await anyio.to_thread.run_sync(lambda: move_to_rejected(
                file, kind, reason, detail, traceback_text, converter, fsync=self.options.fsync))
            if after_action(file) == "keep" and await anyio.to_thread.run_sync(source_unchanged, file) is True:
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
        watch.forget(file)
        watch.release_record(file)
        watch.rejected += 1
        self._note_error(watch, file.path, reason, error_file=error_file)
        self.outcomes.append(FileOutcome(watch.name, str(file.path), file.state, list(file.reports), file.already,
                                         reason=reason, error_file=error_file))
        log.warning("intake %s: %s rejected: %s (see %s)", watch.name, file.path, reason, error_file)

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

    def _note_error(self, watch: Watch, path: Path, reason: str, *, error_file: str | None = None,
                    quiet: bool = False) -> None:
        watch.last_error = {"at": now_iso(), "file": str(path), "reason": reason, "error_file": error_file}
        if not quiet:
            log.debug("intake %s: %s: %s", watch.name, path, reason)

