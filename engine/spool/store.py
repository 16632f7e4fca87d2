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
  renames or ``sent_sync_s`` seconds later, and at ``close``; where the uploader's scheduler has
  taken the syncs over, at its first tick after that: ``sync_final_if_due``). If power fails
  before the batch fsync, the report reappears in ``sending/``, recovery puts it back in
  ``pending/`` and it is sent again with the same id, which the server replaces: a duplicate by
  id, never a loss.

Sidecars are informational and written without fsync (they survive a crash of this process; after
a power loss a missing or truncated sidecar only costs attempts/history, never the report).
No state is named here: the roles (where ``accept`` puts a report, the states the uploader claims
from, the recovery and quarantine transitions, final states) are read from the report lifecycle in
force by ``roles.py``; the lifecycle checker has proven that the definition loses nothing.
Costs do not grow with the queue: an in-memory index keeps states and counts incrementally; the
recovery scan streams with ``os.scandir``.

``Spool`` is the one public entry point; this module holds the index and the moves between states.
Its parts: ``opening.py`` (lock, format, start-up scan and recovery), ``accepting.py`` (accept),
``sidecar.py`` (``meta/``), ``entries.py`` (the file-name rule and the records handed out).
"""

from __future__ import annotations

import collections
import array
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..clock import iso_from_epoch, now_iso
from .. import durable
from ..layout import DataDir
from ..errors import IllegalTransition, ReportNotFound, StorageError
from ..lifecycle import Lifecycle, load_lifecycle
from .due import DueTimes
from .roles import ReportRoles
from . import accepting, opening
from .entries import HAS_META, MAYBE_META, NO_META
from .entries import MAX_HISTORY as _MAX_HISTORY, Accepted, Claim, Entry as _Entry, ReportInfo
from .entries import crc_of as _crc, read_file as _read_file, stamp_file
from .sidecar import Sidecars

__all__ = ["Spool", "Accepted", "Claim", "ReportInfo"]

log = logging.getLogger(__name__)


class Spool:
    """The report store. Thread-safe; blocking (call it through ``anyio.to_thread`` from async code).

    Open with ``Spool(data_dir, ...)``: that takes the spool's lock and runs startup recovery. A
    ``readonly=True`` spool takes no lock, moves nothing, and is what ``status``/``queue list``
    use while a service owns the spool.
    """

    #: Bytes of freshly accepted reports kept for their claims (4 MiB: a few batches of 50 KB
    #: reports, which a running uploader claims within milliseconds of their accept).
    FRESH_BYTES = 4 * 1024 * 1024
    #: ... kept only while the ready queue is this short: with more waiting (no uploader claiming,
    #: a server down), they would wait long and hold memory for nothing.
    FRESH_QUEUE = 512

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
        #: Each state's directory as a string ending in a separator: a report's path is one string
        #: concatenation on the hot path (pathlib's joins were ~4 % of the uploader's CPU).
        self._prefix = {state: os.path.join(self.root, state, "") for state in self._states}
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._bytes: collections.Counter[str] = collections.Counter()
        self._queue: collections.deque[str] = collections.deque()
        self._waiting = DueTimes()
        self._sent_order: collections.deque[tuple[float, str]] = collections.deque()
        #: The bytes of reports accepted by this process and not yet claimed, newest last, at most
        #: ``FRESH_BYTES`` in all: a claim of one of them posts these very bytes (already checked
        #: against their crc when they were named) instead of reading the file back (``claim_next``).
        self._fresh: dict[str, bytes] = {}
        self._fresh_bytes = 0
        self._unsynced_final: set[str] = set()
        self._final_renames = 0
        self._last_final_sync = time.monotonic()
        self._clock_ref = (time.time(), time.monotonic())
        self._filelock: FileLock | None = None
        self.recovery_notes: list[str] = []
        self._meta = Sidecars(self.root, fsync=fsync, readonly=readonly, notes=self.recovery_notes)
        self._listeners: list[Callable[[], None]] = []
        #: When true, renames into final states never fsync in the caller's thread: whoever set it
        #: (the uploader's scheduler) calls ``sync_final()`` at least every ``sent_sync_s``.
        self.final_sync_elsewhere = False
        opening.open_spool(self)

    # ------------------------------------------------------------------ index

    def _dir(self, state: str) -> Path:
        return self.root / state

    def _path(self, state: str, key: str, entry: _Entry) -> str:
        """Where the report ``key`` is in ``state``."""
        return f"{self._prefix[state]}{key}.{entry.crc}.json"

    def _add_entry(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._counts[entry.state] += 1
        self._bytes[entry.state] += entry.size

    def _drop_entry(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._counts[entry.state] -= 1
        self._bytes[entry.state] -= entry.size
        self._forget_fresh(key)

    def _keep_fresh(self, key: str, data: bytes) -> None:
        """Remember an accepted report's bytes for its claim (the caller holds the lock); the
        oldest are forgotten beyond ``FRESH_BYTES`` (their claims read the file, as after a restart)."""
        if len(data) > self.FRESH_BYTES:
            return
        self._forget_fresh(key)
        self._fresh[key] = data
        self._fresh_bytes += len(data)
        while self._fresh_bytes > self.FRESH_BYTES:
            self._forget_fresh(next(iter(self._fresh)))

    def _forget_fresh(self, key: str) -> bytes | None:
        data = self._fresh.pop(key, None)
        if data is not None:
            self._fresh_bytes -= len(data)
        return data

    # ------------------------------------------------------------------ accept

    def accept(self, raw: bytes, *, source: str | None = None) -> Accepted:
        """Validate and store a report; return only once it is durable in the initial state."""
        [result] = self.accept_many([(raw, source)])
        if isinstance(result, Exception):
            raise result
        return result

    def accept_many(self, items: list[tuple[bytes, str | None]], *,
                    validated_keys: Sequence[str | None] | None = None) -> list[Accepted | Exception]:
        """Accept several reports under one directory fsync; one result per item, in order (the
        durability argument is in the module docstring, the work in ``accepting.py``).

        A refusal of one item (invalid, different report under the same id) is that item's
        result and the others go on; a full spool or a storage error stops the call, and every
        item not yet stored gets that error.

        ``validated_keys`` (one per item; None or "" where unknown) is for intake alone: the converter
        worker has already checked these very bytes with ``parse_header`` and gives their canonical
        ids, so they are not parsed a second time (0.2 ms at 50 KB). Every other caller lets the
        spool validate.
        """
        if validated_keys is not None and len(validated_keys) != len(items):
            raise ValueError("validated_keys must give one key per item")
        return accepting.accept_many(self, items, validated_keys)

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
        now = time.time()
        due = now + float(next_attempt_s or 0.0)
        # The hot path writes no sidecar: pending -> sending never, and -> sent only when the report
        # already has one (a report sent at its first attempt has nothing to say; its ctime is when).
        needs_meta = (count_attempt or error or note or waits or dest in self._person_states
                      or source in self._person_states)
        rewrite = dest in self._final and entry.meta in (HAS_META, MAYBE_META)
        meta = self._read_meta(key, entry) if needs_meta or rewrite else {}
        if needs_meta or (rewrite and entry.meta == HAS_META):
            if count_attempt:
                meta["attempts"] = int(meta.get("attempts", 0)) + 1
            if error is not None:
                meta["last_error"] = error
            if waits:
                meta["next_attempt_epoch"] = due
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
        final = dest in self._final
        path = self._path(source, key, entry)
        if waits or final:
            # The file's mtime says when its state's clock runs out: the due time of a wait, the time
            # a final state was reached (what keep_sent_days counts from). Set before the rename, so
            # a file in such a state never carries its accept time; the start-up scan reads it from
            # the directory listing instead of a sidecar per report.
            stamp_file(path, due if waits else now)
        durable.replace(path, self._path(dest, key, entry))
        ready = dest in self._ready
        sync_final = False
        with self._lock:
            self._counts[source] -= 1
            self._bytes[source] -= entry.size
            entry.state = dest
            entry.busy = False  # in the same critical section as the queue append below
            self._counts[dest] += 1
            self._bytes[dest] += entry.size
            if ready:
                self._queue.append(key)
            elif waits:
                self._schedule(key, due)
            elif final:
                self._sent_order.append((now, key))
                self._unsynced_final.add(dest)  # made durable in a batch (``sync_final_if_due``)
                self._final_renames += 1
                sync_final = not self.final_sync_elsewhere and self._final_sync_due()
        if ready:
            self._notify()
        # The rename is done and the index agrees with the disk; now make it durable (a failure
        # raises, but never leaves the index pointing at the wrong directory).
        if sync_final:
            self.sync_final()
        elif dest in self._durable and not final:
            self._sync_dir(dest)
        return dest

    def _final_sync_due(self) -> bool:
        """The batch rule of renames into final states (the module docstring); under ``_lock``."""
        return bool(self._unsynced_final) and (
            self._final_renames >= self._sent_sync_every
            or time.monotonic() - self._last_final_sync >= self._sent_sync_s)

    def sync_final_if_due(self) -> bool:
        """``sync_final`` when the batch rule says so (``sent_sync_every`` renames, or ``sent_sync_s``
        since the last sync, whichever comes first); True when it synced. For whoever took the
        syncs over (``final_sync_elsewhere``): the uploader's scheduler calls it from its thread
        at every tick (0.25 s), so a station sending fewer than ``sent_sync_every`` reports a second
        fsyncs ``sent/`` once a second, not at every tick."""
        with self._lock:
            due = self._final_sync_due()
        if due:
            self.sync_final()
        return due

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
        self._waiting.push(now_mono + delay, key)

    def _schedule_many(self, due_epochs: Sequence[float], keys: Sequence[str]) -> None:
        """``_schedule`` for the waiting reports found at start-up, kept flat (due.py)."""
        now_wall, now_mono = time.time(), time.monotonic()
        offset, latest = now_mono - now_wall, now_mono + self.max_wait_s
        # _schedule's clamp, written out (no min/max call per report: 100,000 of them at start-up).
        dues = array.array("d", (now_mono if (at := due + offset) < now_mono else latest if at > latest else at
                                 for due in due_epochs))
        self._waiting.add_found(dues, keys)

    def release_due(self, *, limit: int = 1000) -> int:
        """Fire the ``then`` trigger of waiting reports whose time has come; return how many."""
        self._writable()
        released = 0
        now = time.monotonic()
        while released < limit:
            with self._lock:
                first = self._waiting.first()
                if first is None or first > now:
                    break
                key = self._waiting.pop()
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
            first = self._waiting.first()
            if first is None:
                return None
            return max(0.0, first - time.monotonic())

    def claim_next(self) -> Claim | None:
        """Take the oldest ready report by firing its trigger into the sending state (``send`` in the
        shipped machine); None when none waits.

        The bytes are checked against the crc32 in the file name: a damaged report is quarantined
        with the reason and the next one is tried. A report this process accepted moments ago is
        posted from the bytes it was accepted with (the very bytes written, fsynced and named by
        their crc): no read back, no second crc (~40 µs of the service's CPU per 50 KB report).
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
                fresh = self._forget_fresh(key)
            entry = taken
            try:
                dest = self._fire_locked_io(key, self._ready[entry.state])
                if fresh is not None and len(fresh) == entry.size:
                    data = fresh
                else:
                    data = _read_file(self._path(dest, key, entry), entry.size)
                if data is not fresh and _crc(data) != entry.crc:
                    self._fire_locked_io(key, self.roles.quarantine_trigger, error=(
                        f"content does not match its checksum (crc32 {_crc(data)}, expected {entry.crc}): "
                        "the file was damaged after it was accepted"))
                    continue
                attempts = (int(self._read_meta(key, entry).get("attempts", 0))
                            if entry.meta in (HAS_META, MAYBE_META) else 0)
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
            last_error=meta.get("last_error"), next_attempt=meta.get("next_attempt"), source=meta.get("source") or self._meta.source_of(key),
            history=history, path=str(path),
        )

    def _history_from_file(self, path: Path, state: str) -> list[dict[str, Any]]:
        """A report with no sidecar went the quiet way: accepted (mtime), then moved (ctime) if it
        moved; in a final state the mtime is when it got there (the accept time is not kept)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        if state in self._final:
            return [{"at": None, "from": None, "to": self._initial, "trigger": "accept",
                     "note": "time not kept (the file's time is when it reached its final state)"},
                    {"at": iso_from_epoch(st.st_mtime), "from": None, "to": state, "trigger": None,
                     "note": "the first attempt (no sidecar: nothing else to record)"}]
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
        if pruned and not self.readonly:
            try:  # the sources of pruned reports are no longer needed
                self._meta.compact_sources(lambda key: key in self._entries)
            except (OSError, StorageError) as exc:
                log.warning("sources journal not compacted: %s", exc)
        return pruned

    # ------------------------------------------------------------------ sidecars

    def _read_meta(self, key: str, entry: _Entry | None = None) -> dict[str, Any]:
        """The report's sidecar ({} if none); with ``entry`` (held busy by the caller), the index
        learns whether there is one."""
        meta = self._meta.read(key)
        if entry is not None:
            entry.meta = NO_META if meta is None else HAS_META
        return meta or {}

    def _write_meta(self, key: str, meta: dict[str, Any], *, sync: bool = False) -> None:
        self._meta.write(key, meta, sync=sync)
        entry = self._entries.get(key)
        if entry is not None:
            entry.meta = HAS_META

    def _unlink_meta(self, key: str) -> None:
        self._meta.unlink(key)

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
