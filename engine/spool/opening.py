"""Opening a spool: the lock, the format check, and the start-up scan that rebuilds the index.

The scan streams every state directory once (``os.scandir``), puts reports found in a working
state back through that state's ``on_crash`` transition, and quarantines what is not a report
(never deleting it). Kept apart from the store, which holds the moves between states.
"""

from __future__ import annotations

import array
import contextlib
import gc
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from .. import durable
from ..clock import now_iso
from ..errors import AlreadyRunning, MachineDefinitionError
from ..layout import DataDir
from .entries import HAS_META, MAYBE_META, NAME as _NAME, NAME_ANY_CASE, Entry as _Entry, crc_of as _crc, stamp_file
from .format import check_format

if TYPE_CHECKING:
    from .store import Spool

__all__ = ["open_spool", "WAITS_IN_MTIME"]

#: Marker file: the mtime of each report in a waiting state is its due time (see ``schedule_waiting``).
WAITS_IN_MTIME = "waits-in-mtime"

log = logging.getLogger(__name__)


def open_spool(spool: Spool) -> None:
    if spool.readonly:
        if not spool.root.is_dir():
            return
        check_format(DataDir.of(spool.root.parent).spool_format, record=False)
        refuse_unknown_states(spool)
        scan(spool, recover=False)
        return
    refuse_unknown_states(spool)
    for name in ("tmp", "meta", *spool._states):
        (spool.root / name).mkdir(parents=True, exist_ok=True)
    spool._filelock = FileLock(str(spool.root / "spool.lock"), thread_local=False)
    try:
        spool._filelock.acquire(timeout=0)
    except Timeout as exc:
        raise AlreadyRunning(
            f"the spool in {spool.root} is in use by another stationflow process",
            hint="stop the running service (`stationflow stop`) or use its control commands",
        ) from exc
    try:
        check_format(DataDir.of(spool.root.parent).spool_format)
        scan(spool, recover=True)
        recover_tmp(spool)
        spool._meta.end_torn_line()
    except BaseException:
        spool._filelock.release()
        raise


def refuse_unknown_states(spool: Spool) -> None:
    """Reports in a directory that is no state of the lifecycle in force (the site changed the
    machine): refuse to open, naming each state and its count. Never delete, never guess."""
    if not spool.root.is_dir():
        return
    problems = []
    with os.scandir(spool.root) as it:
        folders = [e for e in it if e.is_dir() and e.name not in ("tmp", "meta", *spool._states)]
    for folder in sorted(folders, key=lambda e: e.name):
        with os.scandir(folder.path) as it:
            count = sum(1 for e in it if NAME_ANY_CASE.match(e.name))
        if count:
            problems.append(f"{folder.path}: {count} report(s) in state '{folder.name}', which the "
                            f"report lifecycle in force ({spool.lifecycle.source}) does not have — add the "
                            f"state back, or start the previous lifecycle and move them on first")
    if problems:
        raise MachineDefinitionError(
            f"the spool holds reports in {len(problems)} state(s) the report lifecycle in force lacks; "
            "nothing was moved", problems=problems,
            hint="the spool is untouched; restore a lifecycle that has these states")


def recover_tmp(spool: Spool) -> None:
    """Leftovers of interrupted writes: report temps go to quarantine (never deleted)."""
    with os.scandir(spool.root / "tmp") as it:
        leftovers = [e for e in it if e.is_file()]
    for entry in leftovers:
        if entry.name.endswith(".meta.tmp"):
            os.unlink(entry.path)  # our own partial sidecar; the previous sidecar is intact
            continue
        quarantine_foreign(spool, Path(entry.path),
                                 "left in tmp/ by an interrupted write (crash or power loss); it was "
                                 "never acknowledged as accepted, so its source was kept and may "
                                 "have been submitted again")


def scan(spool: Spool, *, recover: bool) -> None:
    """Stream every state directory once: rebuild the index, put ``sending`` back, quarantine junk.

    Without the cyclic garbage collector: it would walk the growing index again and again while it
    is built (every entry is a tracked object; ~0.1 s of a 0.7 s open at 100,000), and nothing
    here makes a cycle. It is back on when the scan ends, however it ends."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        _scan(spool, recover=recover)
    finally:
        if was_on:
            gc.enable()


def _scan(spool: Spool, *, recover: bool) -> None:
    pending, sent, waiting = Found(), Found(), Found()
    junk: list[tuple[Path, str]] = []
    odd_case: list[tuple[str, str, Path]] = []  # (state, canonical name, path)
    order = sorted(spool._states, key=lambda s: (s not in spool._final, s not in spool._durable))
    entries = spool._entries
    for state in order:
        directory = spool._dir(state)
        if not directory.is_dir():
            continue
        # Per file: one regex match, one stat, one small slotted entry (the hot loop at 100,000).
        found = (pending if state in spool._ready else sent if state in spool._final
                 else waiting if state in spool._wait_states else None)
        count = size = 0
        # os.stat of the name against the open folder: a quarter less than DirEntry.stat, which
        # builds and keeps the whole path (0.25 against 0.35 s at 100,000); Windows: DirEntry.stat
        # (its listing already holds what stat says).
        with contextlib.ExitStack() as closing:
            dir_fd = os.open(directory, os.O_RDONLY) if _STAT_DIR_FD else None
            if dir_fd is not None:
                closing.callback(os.close, dir_fd)
            it = closing.enter_context(os.scandir(directory))
            for item in it:
                name = item.name
                if name.startswith(".") or not item.is_file():
                    continue
                match = _NAME.match(name)
                if match is None and recover and NAME_ANY_CASE.match(name):
                    odd_case.append((state, name.lower(), Path(item.path)))
                    continue
                if match is None or match.group(1) in entries:
                    if recover:
                        why = ("unexpected file name in the spool" if match is None
                               else f"a second copy of report {match.group(1)} "
                                    f"(the other is in {entries[match.group(1)].state}/)")
                        junk.append((Path(item.path), why))
                    continue
                key, crc = match.group(1, 2)
                st = os.stat(name, dir_fd=dir_fd) if dir_fd is not None else item.stat()
                entries[key] = _Entry(state, crc, st.st_size, False, MAYBE_META)
                count += 1
                size += st.st_size
                if found is not None:
                    found.keys.append(key)
                    found.times.append(st.st_mtime)
        spool._counts[state] += count
        spool._bytes[state] += size
    for state, name, path in odd_case:
        canonical(spool, state, name, path, pending, sent, waiting)
    for path, why in junk:
        quarantine_foreign(spool, path, why)
    if recover:
        for state in spool._working:
            for key in [k for k, e in spool._entries.items() if e.state == state]:
                # back to rest through the state's recovery transition (on_crash); a ready
                # state puts it in the queue itself
                spool._fire_locked_io(key, spool.roles.recover[state],
                                     note=f"found in {state} (work in flight) at start-up")
    spool._queue.extend(pending.oldest_first())
    spool._sent_order.extend((sent.times[i], sent.keys[i]) for i in sent.order())
    schedule_waiting(spool, waiting)


_STAT_DIR_FD = os.stat in os.supports_dir_fd  # POSIX


class Found:
    """Keys found in one role's folders with their files' mtimes, kept flat (an array of doubles,
    not a tuple and a float object per report) so 100,000 of them leave little behind."""

    __slots__ = ("keys", "times")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.times = array.array("d")

    def order(self) -> list[int]:
        # Equal mtimes (a coarse clock, a burst) fall back to the key, as the sort of (mtime, key) did.
        return sorted(range(len(self.keys)), key=lambda i: (self.times[i], self.keys[i]))

    def oldest_first(self) -> list[str]:
        return [self.keys[i] for i in self.order()]


def canonical(spool: Spool, state: str, name: str, path: Path, pending: Found, sent: Found, waiting: Found) -> None:
    """A report file named in another case (copied in by hand, or from a case-insensitive disk):
    renamed to its canonical lower-case name in the same state, so the key it is posted under is
    the key the uploader settles; set aside if another report already has that name."""
    match = _NAME.match(name)
    assert match is not None
    key = match["key"]
    if key in spool._entries:
        quarantine_foreign(spool, path, f"a second copy of report {key}, named in another case "
                                        f"(the other is in {spool._entries[key].state}/)")
        return
    target = path.with_name(name)
    durable.replace(path, target)
    spool._sync_dir(state)
    st = target.stat()
    spool._add_entry(key, _Entry(state, match["crc"], st.st_size, False, MAYBE_META))
    for role, found in ((spool._ready, pending), (spool._final, sent), (spool._wait_states, waiting)):
        if state in role:
            found.keys.append(key)
            found.times.append(st.st_mtime)
    note = f"renamed {path.name} to {name} in {state}/ (report file names are lower case)"
    spool.recovery_notes.append(note)
    log.warning("spool recovery: %s", note)


def schedule_waiting(spool: Spool, waiting: Found) -> None:
    """Schedule the reports found in waiting states: the due time is the file's mtime (set as the
    report entered its wait), so no sidecar is read per report. A spool last written by a version
    that kept due times only in sidecars (no ``WAITS_IN_MTIME`` marker) is read the old way once,
    and its files' mtimes are set to their due times, before the marker is written."""
    marker = spool.root / WAITS_IN_MTIME
    if marker.exists():
        spool._schedule_many(waiting.times, waiting.keys)
        return
    for key in waiting.keys:
        recorded = spool._read_meta(key).get("next_attempt_epoch")
        spool._schedule(key, recorded)
        if not spool.readonly:
            entry = spool._entries[key]
            stamp_file(spool._dir(entry.state) / entry.filename(key), time.time() if recorded is None else recorded)
    if not spool.readonly:
        durable.atomic_write(marker, b"due times of waiting reports are their files' mtimes\n")


def quarantine_foreign(spool: Spool, path: Path, reason: str) -> None:
    """Adopt a file that is not (or no longer) a tracked report into quarantine, with its reason."""
    data = path.read_bytes()
    match = NAME_ANY_CASE.match(path.name)
    base = (match["key"] if match else re.sub(r"[^0-9A-Za-z_\-]", "_", path.name.split(".")[0])[:80] or "file").lower()
    # Never under the report's own id: the interrupted write may be accepted again whole
    # (same id, same bytes), and that must not be refused as a duplicate of this leftover.
    n = 1
    key = f"{base}~{n}"
    quarantine = spool.roles.quarantine
    while key in spool._entries or (spool._dir(quarantine) / f"{key}.{_crc(data)}.json").exists():
        n += 1
        key = f"{base}~{n}"
    entry = _Entry(quarantine, _crc(data), len(data), False, HAS_META)
    spool._write_meta(key, {"attempts": 0, "last_error": reason, "original_name": str(path),
                           "history": [{"at": now_iso(), "from": None, "to": quarantine,
                                        "trigger": "recovery", "note": reason}]}, sync=True)
    durable.replace(path, spool._dir(quarantine) / entry.filename(key))
    spool._sync_dir(quarantine)
    spool._add_entry(key, entry)
    note = f"quarantined {path.name}: {reason}"
    spool.recovery_notes.append(note)
    log.warning("spool recovery: %s", note)
