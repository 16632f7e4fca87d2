"""The durable spool: one directory per report state, moved only by the report machine's triggers.

Layout under ``<data_dir>/spool``::

    tmp/            writes in progress (a leftover here was never accepted; recovery quarantines it)
    <state>/        one directory per state of the report lifecycle (pending, sending, sent, ...)
    meta/           sidecars: attempts, next attempt, last error, source, history

A report is one file ``<key>.<crc32>.json`` holding the exact bytes that were accepted (so every
field the schema does not know survives, and nothing is serialised twice). The crc32 in the name
lets a damaged file be recognised before it is sent. A state change is one ``rename`` between state
directories: the file is in exactly one state at every instant, whatever happens to the process.

Durability argument, per transition:

* ``accept``: file written in ``tmp/``, fsynced, renamed into the initial state, directory fsynced.
  ``accept`` returns only after that, so an accepted report survives power loss. ``accept_many``
  does the same for several reports: all written, fsynced together (concurrent fsyncs share a
  journal commit), renamed, then one directory fsync; it returns (and the reports become
  claimable) only after that fsync.
* into any *durable* state other than a final one: rename, then fsync of the destination
  directory. The sidecar of ``failed``/``quarantined`` reports (the reason a person reads) is fsynced
  before the rename.
* into a non-durable state (``sending``): rename only. If the rename is lost the report is still in
  its durable source state, which is what recovery would restore anyway. At start-up a report found
  in a non-durable state is moved back by that state's ``on_crash`` transition (``recover``), which
  the lifecycle checker proves leads to a durable state.
* into a *final* state (``sent``): rename, directory fsync batched (at most ``sent_sync_every``
  renames or ``sent_sync_s`` seconds later, and at ``close``). If power fails before the batch
  fsync, the report reappears in ``sending/``, recovery puts it back in ``pending/`` and it is sent
  again with the same id, which the server replaces: a duplicate by id, never a loss.

Sidecars are informational and written without fsync (they survive a crash of this process; after
a power loss a missing or truncated sidecar only costs attempts/history, never the report).
No state is named here: the roles (where ``accept`` puts a report, the states the uploader claims
from, the recovery and quarantine transitions, final states) are read from the report lifecycle in
force by ``roles.py``; the lifecycle checker has proven that the definition loses nothing.
Costs do not grow with the queue: an in-memory index keeps states and counts incrementally; the
recovery scan streams with ``os.scandir``.
"""

from __future__ import annotations

import collections
import heapq
import json
import logging
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..clock import iso_from_epoch, now_iso
from .. import durable
from ..layout import DataDir
from .format import check_format
from ..errors import (
    AlreadyRunning,
    MachineDefinitionError,
    DuplicateReport,
    IllegalTransition,
    InvalidReport,
    ReportNotFound,
    SpoolFull,
    StorageError,
)
from ..lifecycle import Lifecycle, load_lifecycle
from .roles import ReportRoles
from ...schemas.wsjf import ReportValidationError, parse_header

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<key>[0-9A-Za-z][0-9A-Za-z_~\-]{0,120})\.(?P<crc>[0-9a-f]{8})\.json$")
_MAX_HISTORY = 50


@dataclass(slots=True)
class _Entry:
    """What the index knows of one report: no content, just where it is."""

    state: str
    crc: str
    size: int
    busy: bool = False

    def filename(self, key: str) -> str:
        return f"{key}.{self.crc}.json"


@dataclass(frozen=True, slots=True)
class Accepted:
    key: str
    state: str
    already_present: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A report taken for sending: its key and the exact bytes to post."""

    key: str
    data: bytes
    attempts: int


@dataclass
class ReportInfo:
    """What ``queue list`` / ``queue show`` print for one report."""

    id: str
    state: str
    size: int
    attempts: int = 0
    last_error: str | None = None
    next_attempt: str | None = None
    source: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
            "source": self.source, "next_attempt": self.next_attempt, "size": self.size, "path": self.path,
        }



def _read_file(path: Path, size: int) -> bytes:
    """Read a whole spool file in as few system calls as possible (each one gives up the GIL)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = []
        got = 0
        while got < size:  # spool files never change after accept; the crc checks what was read
            chunk = os.read(fd, size - got)
            if not chunk:
                break  # shorter than recorded: the crc check will quarantine it
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _crc(data: bytes) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


class Spool:
    """The report store. Thread-safe; blocking (call it through ``anyio.to_thread`` from async code).

    Open with ``Spool(data_dir, ...)``: that takes the spool's lock and runs startup recovery. A
    ``readonly=True`` spool takes no lock, moves nothing, and is what ``status``/``queue list``
    use while a service owns the spool.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        lifecycle: Lifecycle | None = None,
        max_reports: int = 100_000,
        max_bytes: int = 10 * 10**9,
        min_free_bytes: int = 0,
        keep_sent_days: float = 7.0,
        readonly: bool = False,
        sent_sync_every: int = 64,
        sent_sync_s: float = 1.0,
        fsync: bool = True,
        max_wait_s: float = 86400.0,
    ) -> None:
        self.root = DataDir.of(data_dir).spool
        self.lifecycle = lifecycle or load_lifecycle("report")
        #: Every lifecycle in force at the station (set by ``station.open_spool``), for the parts
        #: built around this spool: the uploader's connection machine.
        self.machines: dict[str, Lifecycle] = {"report": self.lifecycle}
        self.max_reports = max_reports
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.keep_sent_s = keep_sent_days * 86400.0
        #: Longest wait of a report in a waiting state (the retry policy's cap, upload.retry.max_s).
        self.max_wait_s = max_wait_s
        self.readonly = readonly
        self._fsync = fsync
        self._sent_sync_every = sent_sync_every
        self._sent_sync_s = sent_sync_s
        #: Where each role of the report machine is (no state is named in this module).
        self.roles = ReportRoles.of(self.lifecycle)
        self._initial = self.roles.accept
        self._ready = self.roles.ready  # state -> the trigger that takes a report for sending
        self._states = self.lifecycle.states
        self._final = set(self.roles.final)
        self._durable = set(self.roles.durable)
        self._person_states = set(self.roles.person)
        self._wait_states = self.roles.waits
        self._working = [s for s in self._states if s not in self._durable]
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._bytes: collections.Counter[str] = collections.Counter()
        self._queue: collections.deque[str] = collections.deque()
        self._waiting: list[tuple[float, int, str]] = []
        self._wait_seq = 0
        self._sent_order: collections.deque[tuple[float, str]] = collections.deque()
        self._unsynced_final: set[str] = set()
        self._final_renames = 0
        self._last_final_sync = time.monotonic()
        self._clock_ref = (time.time(), time.monotonic())
        self._filelock: FileLock | None = None
        self.recovery_notes: list[str] = []
        self._listeners: list[Callable[[], None]] = []
        self._with_meta: set[str] = set()  # keys that have a sidecar: no failed open() per claim
        # Keys whose sidecar says only where the report came from (written at accept, 0 attempts):
        # a claim need not read it, and sending at the first attempt adds nothing a person needs,
        # so -> sent does not rewrite it.
        self._source_only: set[str] = set()
        #: When true, renames into final states never fsync in the caller's thread: whoever set it
        #: (the uploader's scheduler) calls ``sync_final()`` at least every ``sent_sync_s``.
        self.final_sync_elsewhere = False
        self._open()

    # ------------------------------------------------------------------ opening and recovery

    def _dir(self, state: str) -> Path:
        return self.root / state

    def _open(self) -> None:
        if self.readonly:
            if not self.root.is_dir():
                return
            check_format(DataDir.of(self.root.parent).spool_format, record=False)
            self._refuse_unknown_states()
            self._scan(recover=False)
            return
        self._refuse_unknown_states()
        for name in ("tmp", "meta", *self._states):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._filelock = FileLock(str(self.root / "spool.lock"), thread_local=False)
        try:
            self._filelock.acquire(timeout=0)
        except Timeout as exc:
            raise AlreadyRunning(
                f"the spool in {self.root} is in use by another stationflow process",
                hint="stop the running service (`stationflow stop`) or use its control commands",
            ) from exc
        try:
            check_format(DataDir.of(self.root.parent).spool_format)
            self._scan(recover=True)
            self._recover_tmp()
        except BaseException:
            self._filelock.release()
            raise

    def _refuse_unknown_states(self) -> None:
        """Reports in a directory that is no state of the lifecycle in force (the site changed the
        machine): refuse to open, naming each state and its count. Never delete, never guess."""
        if not self.root.is_dir():
            return
        problems = []
        with os.scandir(self.root) as it:
            folders = [e for e in it if e.is_dir() and e.name not in ("tmp", "meta", *self._states)]
        for folder in sorted(folders, key=lambda e: e.name):
            with os.scandir(folder.path) as it:
                count = sum(1 for e in it if _NAME.match(e.name))
            if count:
                problems.append(f"{folder.path}: {count} report(s) in state '{folder.name}', which the "
                                f"report lifecycle in force ({self.lifecycle.source}) does not have — add the "
                                f"state back, or start the previous lifecycle and move them on first")
        if problems:
            raise MachineDefinitionError(
                f"the spool holds reports in {len(problems)} state(s) the report lifecycle in force lacks; "
                "nothing was moved", problems=problems,
                hint="the spool is untouched; restore a lifecycle that has these states")

    def _recover_tmp(self) -> None:
        """Leftovers of interrupted writes: report temps go to quarantine (never deleted)."""
        with os.scandir(self.root / "tmp") as it:
            leftovers = [e for e in it if e.is_file()]
        for entry in leftovers:
            if entry.name.endswith(".meta.tmp"):
                os.unlink(entry.path)  # our own partial sidecar; the previous sidecar is intact
                continue
            self._quarantine_foreign(Path(entry.path),
                                     "left in tmp/ by an interrupted write (crash or power loss); it was "
                                     "never acknowledged as accepted, so its source was kept and may "
                                     "have been submitted again")

    def _scan(self, *, recover: bool) -> None:
        """Stream every state directory once: rebuild the index, put ``sending`` back, quarantine junk."""
        meta_dir = self.root / "meta"
        if meta_dir.is_dir():
            with os.scandir(meta_dir) as it:
                self._with_meta.update(e.name[:-5] for e in it if e.name.endswith(".json"))
        pending: list[tuple[float, str]] = []
        sent: list[tuple[float, str]] = []
        waiting: list[str] = []
        junk: list[tuple[Path, str]] = []
        order = sorted(self._states, key=lambda s: (s not in self._final, s not in self._durable))
        for state in order:
            directory = self._dir(state)
            if not directory.is_dir():
                continue
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    match = _NAME.match(entry.name)
                    if not match or match["key"] in self._entries:
                        if recover:
                            why = ("unexpected file name in the spool" if not match
                                   else f"a second copy of report {match['key']} "
                                        f"(the other is in {self._entries[match['key']].state}/)")
                            junk.append((Path(entry.path), why))
                        continue
                    key = match["key"]
                    st = entry.stat()
                    self._add_entry(key, _Entry(state, match["crc"], st.st_size))
                    if state in self._ready:
                        pending.append((st.st_mtime, key))
                    elif state in self._final:
                        sent.append((st.st_mtime, key))
                    elif state in self._wait_states:
                        waiting.append(key)
        for path, why in junk:
            self._quarantine_foreign(path, why)
        if recover:
            for state in self._working:
                for key in [k for k, e in self._entries.items() if e.state == state]:
                    # back to rest through the state's recovery transition (on_crash); a ready
                    # state puts it in the queue itself
                    self._fire_locked_io(key, self.roles.recover[state],
                                         note=f"found in {state} (work in flight) at start-up")
        pending.sort()
        self._queue.extend(key for _, key in pending)
        sent.sort()
        self._sent_order.extend(sent)
        for key in waiting:
            meta = self._read_meta(key)
            self._schedule(key, meta.get("next_attempt_epoch"))

    def _add_entry(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._counts[entry.state] += 1
        self._bytes[entry.state] += entry.size

    def _quarantine_foreign(self, path: Path, reason: str) -> None:
        """Adopt a file that is not (or no longer) a tracked report into quarantine, with its reason."""
        data = path.read_bytes()
        match = _NAME.match(path.name)
        base = match["key"] if match else re.sub(r"[^0-9A-Za-z_\-]", "_", path.name.split(".")[0])[:80] or "file"
        # Never under the report's own id: the interrupted write may be accepted again whole
        # (same id, same bytes), and that must not be refused as a duplicate of this leftover.
        n = 1
        key = f"{base}~{n}"
        quarantine = self.roles.quarantine
        while key in self._entries or (self._dir(quarantine) / f"{key}.{_crc(data)}.json").exists():
            n += 1
            key = f"{base}~{n}"
        entry = _Entry(quarantine, _crc(data), len(data))
        self._write_meta(key, {"attempts": 0, "last_error": reason, "original_name": str(path),
                               "history": [{"at": now_iso(), "from": None, "to": quarantine,
                                            "trigger": "recovery", "note": reason}]}, sync=True)
        durable.replace(path, self._dir(quarantine) / entry.filename(key))
        self._sync_dir(quarantine)
        self._add_entry(key, entry)
        note = f"quarantined {path.name}: {reason}"
        self.recovery_notes.append(note)
        log.warning("spool recovery: %s", note)

    # ------------------------------------------------------------------ accept

    def accept(self, raw: bytes, *, source: str | None = None) -> Accepted:
        """Validate and store a report; return only once it is durable in the initial state."""
        [result] = self.accept_many([(raw, source)])
        if isinstance(result, Exception):
            raise result
        return result

    def accept_many(self, items: list[tuple[bytes, str | None]]) -> list[Accepted | Exception]:
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
        self._writable()
        results: list[Accepted | Exception | None] = [None] * len(items)
        staged: list[tuple[int, str, _Entry, Path, int]] = []  # (index, key, entry, tmp file, open fd)
        stop: Exception | None = None
        try:
            for index, (raw, _source) in enumerate(items):
                if stop is not None:
                    results[index] = stop
                    continue
                try:
                    prepared = self._stage(raw)
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
            synced = durable.fsync_all([fd for *_, fd in staged]) if self._fsync else [None] * len(staged)
        except BaseException:
            self._unstage(staged)
            raise
        written: list[tuple[int, str]] = []  # (index, key) of reports new in this call
        left = list(zip(staged, synced))
        try:
            while left:
                (index, key, entry, tmp, fd), failure = left.pop(0)
                try:
                    os.close(fd)
                except OSError as exc:
                    failure = failure or StorageError(f"writing {tmp} failed: {exc.strerror}")
                if failure is None:
                    try:
                        durable.replace(tmp, self._dir(self._initial) / entry.filename(key))
                    except StorageError as exc:
                        failure = exc
                if failure is not None:
                    durable._unlink_quietly(tmp)
                    with self._lock:
                        self._drop_entry(key)
                    results[index] = failure
                    continue
                # In the initial state on disk: the index says so whatever happens next.
                with self._lock:
                    entry.busy = False
                results[index] = Accepted(key, self._initial)
                written.append((index, key))
        except BaseException:
            self._unstage([item for item, _ in left])
            raise
        finally:
            if written:
                keys = [key for _, key in written]
                try:
                    self._sync_dir(self._initial)
                except StorageError as exc:
                    for index, _key in written:
                        results[index] = exc
                    written = []
                finally:
                    try:
                        # Before the reports can be claimed: an uploader's transition rewrites the
                        # sidecar from what it reads, and would drop a source written meanwhile.
                        self._write_sources(written, items)
                    finally:
                        # The files are in the initial state on disk whatever the fsync said, so
                        # they are claimable (at worst one is sent while its source stays and is
                        # converted again to the same id later: a duplicate by id, never a loss).
                        if self._initial in self._ready:  # else a person or a wait moves them on
                            with self._lock:
                                self._queue.extend(keys)
                            self._notify()
        return [r if r is not None else StorageError("report not stored (internal error)") for r in results]

    def _write_sources(self, written: list[tuple[int, str]], items: list[tuple[bytes, str | None]]) -> None:
        """The sidecar of each new report that has a source (informational: a failure is logged)."""
        for index, key in written:
            source = items[index][1]
            if source is None:
                continue
            try:
                self._write_meta(key, {"attempts": 0, "source": source,
                                       "history": [{"at": now_iso(), "from": None, "to": self._initial,
                                                    "trigger": "accept", "note": None}]})
                self._source_only.add(key)
            except StorageError as exc:  # informational; the report itself is durable
                log.warning("report %s accepted without its sidecar (source): %s", key, exc)

    def _stage(self, raw: bytes) -> Accepted | tuple[str, _Entry, Path, int]:
        """Validate, check room, and write the report in tmp/ (not yet fsynced): its key, index
        entry (busy), tmp file and open descriptor; or Accepted if these bytes are already here."""
        try:
            header = parse_header(raw)
        except ReportValidationError as exc:
            raise InvalidReport(f"report refused: {exc}", detail="; ".join(exc.problems)) from exc
        key = header.key
        crc = _crc(raw)
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:
                return self._accept_existing(key, existing, raw, crc)
            self._check_room(len(raw))
            entry = _Entry(self._initial, crc, len(raw), busy=True)
            self._add_entry(key, entry)
        tmp = self.root / "tmp" / f"{key}.{crc}.json.tmp"
        try:
            fd = durable.write_open(tmp, raw)
        except BaseException:
            with self._lock:
                self._drop_entry(key)
            raise
        return key, entry, tmp, fd

    def _unstage(self, staged: list[tuple[int, str, _Entry, Path, int]]) -> None:
        """Undo staged writes after an error: nothing of them was accepted."""
        for _index, key, _entry, tmp, fd in staged:
            try:
                os.close(fd)
            except OSError:
                pass
            durable._unlink_quietly(tmp)
            with self._lock:
                if key in self._entries:
                    self._drop_entry(key)

    def _accept_existing(self, key: str, existing: _Entry, raw: bytes, crc: str) -> Accepted:
        """The same id again: identical bytes are a no-op (a re-conversion after a crash); else refuse."""
        if existing.crc == crc and existing.size == len(raw):
            try:
                same = (self._dir(existing.state) / existing.filename(key)).read_bytes() == raw
            except FileNotFoundError:
                same = True  # it is being moved right now; the crc and size already match
            if same:
                return Accepted(key, existing.state, already_present=True)
        raise DuplicateReport(
            f"a different report with id {key} is already in the spool (state {existing.state})",
            hint="a new report needs a new id; the server replaces reports by id",
        )

    def _check_room(self, size: int) -> None:
        active = sum(c for s, c in self._counts.items() if s not in self._final)
        if active >= self.max_reports:
            raise SpoolFull(f"spool full: {active} reports waiting (spool.max_reports = {self.max_reports})",
                            hint="restore the connection to the server or raise spool.max_reports")
        used = sum(b for s, b in self._bytes.items() if s not in self._final)
        if used + size > self.max_bytes:
            raise SpoolFull(f"spool full: {used + size} bytes would exceed spool.max_bytes = {self.max_bytes}",
                            hint="restore the connection to the server or raise spool.max_bytes")
        if self.min_free_bytes:
            free = shutil.disk_usage(self.root).free
            if free - size < self.min_free_bytes:
                raise SpoolFull(f"disk almost full: {free} bytes free, spool.min_free_disk = {self.min_free_bytes}",
                                hint=f"free space on the disk holding {self.root}")

    def _drop_entry(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._counts[entry.state] -= 1
        self._bytes[entry.state] -= entry.size

    # ------------------------------------------------------------------ transitions

    def fire(self, key: str, trigger: str, *, error: str | None = None, next_attempt_s: float | None = None,
             note: str | None = None, count_attempt: bool = False, by_operator: bool = False) -> str:
        """Move a report by firing ``trigger``; return its new state.

        This is the only way a report changes state. ``error`` is recorded as the last error;
        ``next_attempt_s`` (seconds from now) is when the new state's wait ends (at once if not
        given); ``count_attempt`` adds one to the report's send attempts; ``by_operator`` allows
        only a ``by: operator`` transition (checked while the report is held, so it cannot move
        under the check).
        """
        self._writable()
        key = key.lower()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise ReportNotFound(f"no report {key} in the spool", hint="see `stationflow queue list`")
            if entry.busy:
                raise IllegalTransition(f"report {key} is being moved right now; try again")
            entry.busy = True
        try:
            if by_operator:
                self.lifecycle.next_state_by_operator(entry.state, trigger)
            dest = self._fire_locked_io(key, trigger, error=error, next_attempt_s=next_attempt_s, note=note,
                                        count_attempt=count_attempt)
        finally:
            entry.busy = False
        return dest

    def fire_operator(self, key: str, trigger: str, *, note: str | None = None) -> str:
        """Fire a trigger on behalf of a person: only a ``by: operator`` transition of the report's
        current state is allowed (IllegalTransition, exit 4, names the ones that are)."""
        return self.fire(key, trigger, note=note or f"{trigger} by an operator", by_operator=True)

    def _fire_locked_io(self, key: str, trigger: str, *, error: str | None = None,
                        next_attempt_s: float | None = None, note: str | None = None,
                        count_attempt: bool = False) -> str:
        """Do the disk work of one transition for an entry the caller has marked busy."""
        entry = self._entries[key]
        source = entry.state
        dest = self.lifecycle.next_state(source, trigger)
        waits = dest in self._wait_states
        if waits and next_attempt_s is None:
            next_attempt_s = 0.0  # entered by a person or by recovery: due at once
        # The hot path writes no sidecar: pending -> sending never, and -> sent only when the report
        # already has one (a report sent at its first attempt has nothing to say; its ctime is when).
        needs_meta = (count_attempt or error or note or waits or dest in self._person_states
                      or source in self._person_states)
        if needs_meta or (dest in self._final and key in self._with_meta and key not in self._source_only):
            meta = self._read_meta(key)
            if count_attempt:
                meta["attempts"] = int(meta.get("attempts", 0)) + 1
            if error is not None:
                meta["last_error"] = error
            if waits:
                meta["next_attempt_epoch"] = time.time() + float(next_attempt_s or 0.0)
                meta["next_attempt"] = iso_from_epoch(meta["next_attempt_epoch"])
            else:
                meta.pop("next_attempt_epoch", None)
                meta.pop("next_attempt", None)
            history = meta.setdefault("history", [])
            history.append({"at": now_iso(), "from": source, "to": dest, "trigger": trigger,
                            "note": error or note})
            del history[:-_MAX_HISTORY]
            try:
                self._write_meta(key, meta, sync=dest in self._person_states)
            except StorageError as exc:
                if dest in self._person_states:
                    raise  # the reason a person reads is written before the report moves
                # Informational (see the module docstring): a full disk must not hold the report in
                # a working state, where nothing but a restart would move it again.
                log.warning("report %s moves to %s without its sidecar (attempts, history): %s", key, dest, exc)
        durable.replace(self._dir(source) / entry.filename(key), self._dir(dest) / entry.filename(key))
        with self._lock:
            self._counts[source] -= 1
            self._bytes[source] -= entry.size
            entry.state = dest
            entry.busy = False  # in the same critical section as the queue append below
            self._counts[dest] += 1
            self._bytes[dest] += entry.size
            if dest in self._ready:
                self._queue.append(key)
            elif waits:
                self._schedule(key, time.time() + float(next_attempt_s or 0.0))
            elif dest in self._final:
                self._sent_order.append((time.time(), key))
        if dest in self._ready:
            self._notify()
        # The rename is done and the index agrees with the disk; now make it durable (a failure
        # raises, but never leaves the index pointing at the wrong directory).
        if dest in self._final:
            self._note_final_rename(dest)
        elif dest in self._durable:
            self._sync_dir(dest)
        return dest

    def _note_final_rename(self, dest: str) -> None:
        with self._lock:
            self._unsynced_final.add(dest)
            self._final_renames += 1
            due = (self._final_renames >= self._sent_sync_every
                   or time.monotonic() - self._last_final_sync >= self._sent_sync_s)
        if due and not self.final_sync_elsewhere:
            self.sync_final()

    def sync_final(self) -> None:
        """Make batched renames into final states durable (see the module's durability argument)."""
        with self._lock:
            states, self._unsynced_final = self._unsynced_final, set()
            self._final_renames = 0
            self._last_final_sync = time.monotonic()
        for state in states:
            self._sync_dir(state)

    def _schedule(self, key: str, due_epoch: float | None) -> None:
        """Remember when a waiting report is due, bounded by what the retry policy allows."""
        now_wall, now_mono = time.time(), time.monotonic()
        delay = 0.0 if due_epoch is None else due_epoch - now_wall
        # A wall clock that jumped (or was set back before a restart) leaves an absurd delay:
        # never wait longer than the retry policy's cap.
        delay = min(max(delay, 0.0), self.max_wait_s)
        self._wait_seq += 1
        heapq.heappush(self._waiting, (now_mono + delay, self._wait_seq, key))

    def release_due(self, *, limit: int = 1000) -> int:
        """Fire the ``then`` trigger of waiting reports whose time has come; return how many."""
        self._writable()
        released = 0
        now = time.monotonic()
        while released < limit:
            with self._lock:
                if not self._waiting or self._waiting[0][0] > now:
                    break
                _, _, key = heapq.heappop(self._waiting)
                entry = self._entries.get(key)
                if entry is None or entry.state not in self._wait_states or entry.busy:
                    continue
                trigger = self._wait_states[entry.state]
            try:
                self.fire(key, trigger)
                released += 1
            except IllegalTransition:
                continue
        return released

    def next_due_in(self) -> float | None:
        """Seconds until the next waiting report is due, or None when none waits."""
        with self._lock:
            if not self._waiting:
                return None
            return max(0.0, self._waiting[0][0] - time.monotonic())

    def claim_next(self) -> Claim | None:
        """Take the oldest ready report by firing its trigger into the sending state (``send`` in the
        shipped machine); None when none waits.

        The bytes are checked against the crc32 in the file name: a damaged report is quarantined
        with the reason and the next one is tried.
        """
        self._writable()
        while True:
            with self._lock:
                key = None
                taken: _Entry | None = None
                for _ in range(len(self._queue)):  # bounded: busy ones go back to the end once
                    candidate = self._queue.popleft()
                    entry = self._entries.get(candidate)
                    if entry is None or entry.state not in self._ready:
                        continue  # stale: it left its ready state by another trigger
                    if entry.busy:
                        self._queue.append(candidate)  # being moved right now; keep its place in line
                        continue
                    entry.busy = True
                    key, taken = candidate, entry
                    break
                if key is None or taken is None:
                    return None
            entry = taken
            try:
                dest = self._fire_locked_io(key, self._ready[entry.state])
                data = _read_file(self._dir(dest) / entry.filename(key), entry.size)
                if _crc(data) != entry.crc:
                    self._fire_locked_io(key, self.roles.quarantine_trigger, error=(
                        f"content does not match its checksum (crc32 {_crc(data)}, expected {entry.crc}): "
                        "the file was damaged after it was accepted"))
                    continue
                attempts = (int(self._read_meta(key).get("attempts", 0))
                            if key in self._with_meta and key not in self._source_only else 0)
                return Claim(key, data, attempts)
            finally:
                entry.busy = False

    # ------------------------------------------------------------------ reading

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from whichever thread) each time a report becomes ready to send."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    def has_pending(self) -> bool:
        """Cheap check for upload workers: is anything waiting in a ready state?"""
        return any(self._counts.get(state, 0) > 0 for state in self._ready)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {state: self._counts.get(state, 0) for state in self._states}

    def total_bytes(self) -> int:
        with self._lock:
            return sum(b for s, b in self._bytes.items() if s not in self._final)

    def state_of(self, key: str) -> str:
        with self._lock:
            entry = self._entries.get(key.lower())
        if entry is None:
            raise ReportNotFound(f"no report {key} in the spool", hint="see `stationflow queue list`")
        return entry.state

    def keys(self, state: str | None = None) -> list[str]:
        with self._lock:
            return [k for k, e in self._entries.items() if state is None or e.state == state]

    def info(self, key: str) -> ReportInfo:
        key = key.lower()
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise ReportNotFound(f"no report {key} in the spool", hint="see `stationflow queue list`")
        meta = self._read_meta(key)
        path = self._dir(entry.state) / entry.filename(key)
        history = list(meta.get("history", []))
        if not history:
            history = self._history_from_file(path, entry.state)
        return ReportInfo(
            id=key, state=entry.state, size=entry.size, attempts=int(meta.get("attempts", 0)),
            last_error=meta.get("last_error"), next_attempt=meta.get("next_attempt"), source=meta.get("source"),
            history=history, path=str(path),
        )

    def _history_from_file(self, path: Path, state: str) -> list[dict[str, Any]]:
        """A report with no sidecar went the quiet way: accepted (mtime), then moved (ctime) if it moved."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        history = [{"at": iso_from_epoch(st.st_mtime), "from": None, "to": self._initial, "trigger": "accept", "note": None}]
        if state != self._initial:
            history.append({"at": iso_from_epoch(st.st_ctime), "from": None, "to": state, "trigger": None,
                            "note": "time of the last move (no sidecar: nothing else to record)"})
        return history

    def iter_info(self, state: str | None = None) -> Iterator[ReportInfo]:
        for key in self.keys(state):
            try:
                yield self.info(key)
            except ReportNotFound:
                continue

    def read(self, key: str) -> bytes:
        key = key.lower()
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise ReportNotFound(f"no report {key} in the spool", hint="see `stationflow queue list`")
        return (self._dir(entry.state) / entry.filename(key)).read_bytes()

    # ------------------------------------------------------------------ retention

    def prune_sent(self) -> int:
        """Delete reports the server acknowledged more than ``keep_sent_days`` ago; return how many.

        Refuses to prune when the wall clock has jumped forward against the monotonic clock since
        the spool opened, so a clock set a year ahead cannot empty the archive of sent reports.
        """
        self._writable()
        wall0, mono0 = self._clock_ref
        drift = (time.time() - wall0) - (time.monotonic() - mono0)
        if drift > 3600:
            log.warning("not pruning sent reports: the wall clock jumped %.0f s ahead of the monotonic clock", drift)
            return 0
        cutoff = time.time() - self.keep_sent_s
        pruned = 0
        while True:
            with self._lock:
                if not self._sent_order or self._sent_order[0][0] > cutoff:
                    break
                _, key = self._sent_order.popleft()
                entry = self._entries.get(key)
                if entry is None or entry.state not in self._final or entry.busy:
                    continue
                self._drop_entry(key)
            try:
                os.unlink(self._dir(entry.state) / entry.filename(key))
            except FileNotFoundError:
                pass
            self._unlink_meta(key)
            pruned += 1
        return pruned

    # ------------------------------------------------------------------ sidecars

    def _meta_path(self, key: str) -> Path:
        return self.root / "meta" / f"{key}.json"

    def _read_meta(self, key: str) -> dict[str, Any]:
        try:
            data = json.loads(self._meta_path(key).read_bytes())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:
            log.warning("sidecar of report %s is unreadable (%s); starting a new one", key, exc)
            return {"history": [{"at": now_iso(), "note": f"previous sidecar unreadable: {exc}"}]}

    def _write_meta(self, key: str, meta: dict[str, Any], *, sync: bool = False) -> None:
        meta["id"] = key
        tmp = self.root / "tmp" / f"{key}.{threading.get_ident()}.meta.tmp"
        durable.write_file(tmp, json.dumps(meta, indent=1).encode(), sync=sync and self._fsync)
        durable.replace(tmp, self._meta_path(key))
        self._with_meta.add(key)
        self._source_only.discard(key)
        if sync:
            self._sync_dir("meta")

    def _unlink_meta(self, key: str) -> None:
        self._with_meta.discard(key)
        self._source_only.discard(key)
        try:
            os.unlink(self._meta_path(key))
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ plumbing

    def _sync_dir(self, state: str) -> None:
        if self._fsync:
            durable.fsync_dir(self.root / state)

    def _writable(self) -> None:
        if self.readonly:
            raise StorageError("this spool was opened read-only")

    def close(self) -> None:
        if self.readonly or self._filelock is None:
            return
        self.sync_final()
        self._filelock.release()
        self._filelock = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
