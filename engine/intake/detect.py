"""Noticing files and deciding when they are settled (the writer is done with them).

Polling with ``os.scandir``: a file is settled once its size and mtime have not changed for the
intake's ``settle_ms`` (and, on Windows, once it can be opened for writing, i.e. the equipment
has closed it). Listing runs in a thread and changes nothing; the bookkeeping (``detect``) runs on
the event loop.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from ..layout import REPROCESS_ORIGINS
from .model import WINDOWS, TrackedFile, Watch

log = logging.getLogger(__name__)


class Linked(NamedTuple):
    """A file reached through a link that stays inside the watch folder (``follow_links: inside``):
    named by its own path under the watch folder, so the file itself is copied and acted on."""

    path: str
    name: str

    def stat(self) -> os.stat_result:
        return os.stat(self.path, follow_symlinks=False)


def walk(root: Path, recursive: bool, excluded: list[Path], links: list[str] | None = None,
         follow_inside: bool = False) -> Iterable[os.DirEntry[str] | Linked]:
    """Regular files under ``root`` (sub-folders too when ``recursive``), hidden names skipped.

    Symbolic links are not followed nor taken (their paths go to ``links``): a user who may write
    into a watch folder must not make the service read, move or delete files elsewhere (a link to
    the control token was copied into the error folder, readable by all), and a link loop must not
    make the listing endless. With ``follow_inside`` a link whose target resolves inside ``root`` is
    followed: each folder is listed once (by device and inode, so ``ln -s . loop`` ends) and each
    file is yielded once, under its own path."""
    return (entry for entry, _ in walk_relative(root, recursive, excluded, links, follow_inside))


def walk_relative(root: Path, recursive: bool, excluded: list[Path], links: list[str] | None = None,
                  follow_inside: bool = False) -> Iterable[tuple[os.DirEntry[str] | Linked, str]]:
    """:func:`walk`, each file with its path relative to ``root`` (built as the walk goes down:
    ``os.path.relpath`` per file was a measurable share of a listing)."""
    inside = _real(root) if follow_inside else None
    visited: set[tuple[int, int]] = set()
    yielded: set[str] = set()
    if inside is not None:
        try:
            st = os.stat(root)
            visited.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            rel = prefix + name
            try:
                if entry.is_symlink():
                    found = _inside_target(entry.path, inside, root) if inside is not None else None
                    if found is None:
                        if links is not None:
                            links.append(entry.path)
                        continue
                    target, target_rel = found
                    st = os.stat(target, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        if recursive and (st.st_dev, st.st_ino) not in visited \
                                and not any(same_or_inside(Path(target), x) for x in excluded):
                            visited.add((st.st_dev, st.st_ino))
                            stack.append((Path(target), target_rel + os.sep if target_rel else ""))
                    elif stat.S_ISREG(st.st_mode) and target not in yielded:
                        yielded.add(target)
                        yield Linked(target, os.path.basename(target)), target_rel
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not any(same_or_inside(Path(entry.path), x) for x in excluded):
                        if inside is not None:
                            st = entry.stat(follow_symlinks=False)
                            if (st.st_dev, st.st_ino) in visited:
                                continue  # already listed through a link
                            visited.add((st.st_dev, st.st_ino))
                        stack.append((Path(entry.path), rel + os.sep))
                    continue
                if entry.is_file(follow_symlinks=False):
                    if inside is not None:
                        if entry.path in yielded:
                            continue  # already taken through a link
                        yielded.add(entry.path)
                    yield entry, rel
            except OSError:
                continue


def _real(path: Path) -> str | None:
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):
        return None


def _inside_target(link: str, inside: str | None, root: Path) -> tuple[str, str] | None:
    """Where ``link`` leads, as a path under ``root`` and relative to it — or None when it leads
    out of the watch folder, nowhere (dangling) or round in a circle."""
    if inside is None:
        return None
    try:
        real = os.path.realpath(link, strict=True)
    except (OSError, RuntimeError):
        return None
    if real == inside:
        return str(root), ""
    if not real.startswith(inside.rstrip(os.sep) + os.sep):
        return None
    rel = os.path.relpath(real, inside)
    return os.path.join(root, rel), rel


#: A listed file that was not stat-ed (see list_candidates' ``known``): its size and mtime.
UNKNOWN = -1


def list_candidates(watch: Watch, only_reprocess: bool, known: frozenset[str] | set[str] = frozenset()
                    ) -> tuple[list[tuple[str, str, str, int, int]], bool]:
    """(path, origin, relative path, size, mtime_ns) of every candidate file; and whether the
    watch folder itself could be listed. Runs in a thread: it reads the disk, changes nothing.

    A path in ``known`` (a file intake already has in hand, or has confirmed settled and waits
    for room to take) is listed without a stat: size and mtime ``UNKNOWN``. In a burst, re-stat-ing
    thousands of waiting files at every listing was most of a listing's cost, and told nothing:
    a waiting file's size and mtime are checked again when it is copied."""
    sources: list[tuple[Path, str, bool]] = [(watch.reprocess / o, f"reprocess/{o}", False)
                                             for o in REPROCESS_ORIGINS]
    walked_root = False
    if not only_reprocess:
        walked_root = watch.root.is_dir()
        sources.insert(0, (watch.root, "watch", watch.section.recursive))
    found = []
    links: list[str] = []
    for root, origin, recursive in sources:
        follow = origin == "watch" and watch.section.follow_links == "inside"
        watched = origin == "watch"
        for entry, rel in walk_relative(root, recursive, watch.excluded if watched else [], links, follow):
            if watched and not watch.matches(entry.name):
                continue
            path = entry.path
            if path in known:
                found.append((path, origin, rel, UNKNOWN, UNKNOWN))
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            found.append((path, origin, rel, st.st_size, st.st_mtime_ns))
    if not only_reprocess:
        if links and len(links) != len(watch.links_ignored):
            log.warning("intake %s: %d symbolic link(s) in the watch folder are ignored, e.g. %s", watch.name,
                        len(links), links[0])
        watch.links_ignored = links
    return found, walked_root


def known_files(watch: Watch) -> set[str]:
    """Paths a listing need not stat (on the loop, before the listing's thread): files in hand
    (any state but waiting) and waiting files confirmed settled (``due``)."""
    known = {str(f.path) for f in watch.busy}
    known.update(str(f.path) for f in watch.waiting if f.due)
    return known


def detect(watch: Watch, listing: list[tuple[str, str, str, int, int]], walked_root: bool,
           now: float, only_reprocess: bool, budget: int, in_flight: set[TrackedFile],
           closed_as: Callable[[str, int, int], bool] | None = None, listed_from: float | None = None
           ) -> list[TrackedFile]:
    """Track the listed files; return at most ``budget`` that stayed unchanged for settle_ms, or
    that their writer is known to be done with (``closed_as``: closed after writing and unchanged
    since; see notify.py) — ``settle`` fired. The others stay detected, and settle in a later pass.
    One that is due but finds no room is marked ``due``: later listings need not stat it again.
    ``listed_from``: when the listing started (its stats are no older)."""
    seen_at = now if listed_from is None else listed_from
    early = closed_as if watch.section.settle_on_close else None
    if not only_reprocess:
        watch.folder_problem = None if walked_root else f"the watch folder {watch.root} does not exist (yet)"
    settle_watch = watch.section.settle_ms / 1000.0
    initial = watch.lifecycle.initial
    seen: set[str] = set()
    settled: list[TrackedFile] = []
    for key, origin, rel, size, mtime_ns in listing:
        settle = settle_watch if origin == "watch" else 0.0
        seen.add(key)
        file = watch.files.get(key)
        if size == UNKNOWN:
            if file is None or file.state != initial:
                continue  # in hand (or finished since the listing's snapshot): nothing to decide here
            size, mtime_ns = file.size, file.mtime_ns  # confirmed settled by an earlier listing
        elif file is not None:
            file.seen_at = seen_at
        if file is None:
            kept = watch.kept.get(key)
            if kept is not None:
                if kept == [size, mtime_ns]:
                    continue
                del watch.kept[key]  # changed since it was kept: new content, taken again
                watch.kept_dirty = True
            file = TrackedFile(watch, Path(key), rel, origin, initial, size, mtime_ns, now, seen_at=seen_at)
            watch.track(file)
            if settle > 0 and not (early is not None and early(key, size, mtime_ns)):
                continue
        if file.state != initial or now < file.next_try:
            continue  # owned by a job in progress, or waiting after an error
        if (size, mtime_ns) != (file.size, file.mtime_ns):
            file.size, file.mtime_ns = size, mtime_ns
            file.restart_settle(now)
            if not (early is not None and early(key, size, mtime_ns)):
                continue  # still changing (or closed after an earlier listing caught it half written)
        if not file.due and now - file.stable_since < settle and not (
                early is not None and early(key, size, mtime_ns)):
            continue
        if len(settled) >= budget:
            file.due = True  # confirmed settled by this listing's stat; waits for room
            continue
        if WINDOWS and locked(file.path):
            file.note = "open in another program; waiting until it is closed"
            file.restart_settle(now)
            continue
        file.note = None
        settled.append(file)
    for file in settled:
        file.fire("settle")
    for file in list(watch.waiting):
        if str(file.path) in seen or file in in_flight:
            continue
        if file.origin == "watch" and only_reprocess:
            continue  # its folder was not listed in this pass
        # Before it settled, someone took it away (or renamed it): nothing of it was ours.
        file.fire("vanished")
        watch.gone += 1
        watch.forget(file)
    if walked_root and watch.kept:
        for key in [k for k in watch.kept if k not in seen]:
            del watch.kept[key]  # a kept file that is no longer there needs no memory
            watch.kept_dirty = True
    return settled


def settle_seen(watch: Watch, now: float, budget: int, in_flight: set[TrackedFile],
                closed_state: Callable[[str], tuple[int, int, float] | None] | None = None) -> list[TrackedFile]:
    """At most ``budget`` files seen at the last listing that are due to settle (``settle`` fired).

    A file its writer closed after that listing looked at it (half written, say) is taken as it was
    at that close, without waiting for the next listing: the close is what ``settle_on_close``
    waits for, and copy_data checks the file is still exactly so before taking it (a close noted
    while the listing ran may be the older of the two: then the copy finds the file changed, and
    it waits to settle again)."""
    settled: list[TrackedFile] = []
    settle_watch = watch.section.settle_ms / 1000.0
    on_close = closed_state if watch.section.settle_on_close else None
    for file in watch.waiting:
        if len(settled) >= budget:
            break
        if file in in_flight or now < file.next_try:
            continue
        if not file.due:
            record = on_close(str(file.path)) if on_close is not None else None
            closed = False
            if record is not None:
                size, mtime_ns, noted = record
                if (size, mtime_ns) == (file.size, file.mtime_ns):
                    closed = True
                elif noted >= file.seen_at:  # closed after it was looked at: as it was then
                    file.size, file.mtime_ns, file.seen_at = size, mtime_ns, noted
                    file.restart_settle(now)
                    closed = True
            if not closed and now - file.stable_since < (settle_watch if file.origin == "watch" else 0.0):
                continue
        if WINDOWS and locked(file.path):
            continue
        file.note = None
        settled.append(file)
    for file in settled:
        file.fire("settle")
    return settled


def same_or_inside(path: Path, other: Path) -> bool:
    try:
        path.resolve().relative_to(other.resolve())
        return True
    except (ValueError, OSError):
        return False


def locked(path: Path) -> bool:
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


def backlog(watches: list[Watch], in_flight: set[TrackedFile],
            closed_as: Callable[[str, int, int], bool] | None) -> bool:
    """Files seen at the last listing that are due (settled, or closed by their writer) and wait
    only for room in flight. Files still settling do not count: a new file is listed at once
    then, and starts its own settle time without waiting for a poll interval. Over the files
    waiting only (in a burst the first one answers), not every file tracked."""
    now = time.monotonic()
    for w in watches:
        settle = w.section.settle_ms / 1000.0
        early = closed_as if w.section.settle_on_close else None
        for f in w.waiting:
            if f in in_flight or now < f.next_try:
                continue
            if f.due or now - f.stable_since >= (settle if f.origin == "watch" else 0.0) or (
                    early is not None and early(str(f.path), f.size, f.mtime_ns)):
                return True
    return False


def next_pass_in(watches: list[Watch], poll_interval_s: float, *, notified: bool) -> float:
    """Seconds until intake's next pass: the poll interval, or — when change notifications wake it
    for everything else — sooner, as soon as a detected file is due to settle. Files already due
    wait for room in flight, which wakes intake itself. Not a loop over every file at every pass:
    each watch keeps a lower bound (``next_due``), looked for again only once it has passed."""
    wait = poll_interval_s
    if not notified:
        return wait
    now = time.monotonic()
    for watch in watches:
        if watch.next_due <= now:
            settle = watch.section.settle_ms / 1000.0
            dues = [due for file in watch.waiting if file.origin == "watch"
                    and (due := file.stable_since + settle) > now]
            watch.next_due = min(dues, default=math.inf)
        if watch.next_due < math.inf:
            wait = min(wait, watch.next_due - now + 0.005)
    return wait
