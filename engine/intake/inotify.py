"""Linux change notifications read straight from inotify, on intake's own event loop.

Why not ``watchdog`` here (it stays for the other systems, notify.py): measured in a 2,000-file
burst, its inotify thread, move-event grouper, emitter and dispatch threads cost 0.65 ms of CPU
per report — more than copying the file. Most of those events were intake's own work: every copy
read (open, close), the claim rename of a source, the checksum read and the removal each went
through its Python machinery, and the thread hops into the loop cost more.

Here the kernel is asked only for what can make a file ready: a name appearing (created, moved
in), a writer closing a file it wrote, and the watched folders themselves going away. Intake's
own reads and removals raise no event at all; its claim rename lands on a hidden name (leading
dot: never a candidate) and is dropped after a few bytes of parsing. The descriptor is read by
the event loop itself (``add_reader``): no thread, no hop.

As with watchdog, notifications only say *when* to look; the listing decides what is there, and
polling stays the fallback (a missed event costs a poll interval, never a file).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from .notify import ClosedRecords, WatchedFolder

log = logging.getLogger(__name__)

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

#: What can make a file ready, and the folder itself leaving (nothing about reads or removals).
MASK = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_BYTES = 64 * 1024

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.inotify_init1.argtypes = [ctypes.c_int]
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            _libc = libc
        except (OSError, AttributeError):
            return None
    return _libc


def available() -> bool:
    """inotify can be used here: Linux, and intake runs on an asyncio event loop."""
    if _lib() is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class InotifyNotifier(ClosedRecords):
    """Watches folders with inotify; calls ``on_change`` *on the event loop* when a file may be ready.

    Same surface as :class:`.notify.ChangeNotifier` (``start``, ``stop``, ``watching``,
    ``closed_as``); ``start`` and ``stop`` are called on the running asyncio loop."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__()
        self._on_change = on_change
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        # watch descriptor → (folder as bytes, its root folder, recursive, excluded folders)
        self._wds: dict[int, tuple[bytes, str, bool, tuple[Path, ...]]] = {}
        self.watching: dict[str, str] = {}  # folder → "notify" or the reason it is polled only
        self._warned = False  # a sub-folder could not be watched (said once)

    def start(self, folders: list[WatchedFolder]) -> None:
        """Watch each (folder, recursive, excluded); a folder that cannot be watched is polled only."""
        libc = _lib()
        assert libc is not None, "inotify is not available (check available() first)"
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            reason = os.strerror(ctypes.get_errno())
            log.warning("change notifications unavailable (%s); polling only", reason)
            self.watching = {str(f): f"polling ({reason})" for f, _, _ in folders}
            return
        self._fd = fd
        for folder, recursive, excluded in folders:
            problem = self._add_tree(os.fsencode(folder), str(folder), recursive, tuple(excluded))
            self.watching[str(folder)] = f"polling ({problem})" if problem else "notify"
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def stop(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if self._loop is not None:
            try:
                self._loop.remove_reader(fd)
            except (RuntimeError, ValueError):  # the loop is closed already
                pass
            self._loop = None
        self._wds.clear()
        os.close(fd)  # the kernel drops every watch with it

    # ------------------------------------------------------------------ watches

    def _add(self, path: bytes, root: str, recursive: bool, excluded: tuple[Path, ...]) -> str | None:
        """One watch; None, or why it could not be set."""
        libc = _lib()
        assert libc is not None
        wd = libc.inotify_add_watch(self._fd, path, MASK | (IN_DONT_FOLLOW if path != os.fsencode(root) else 0))
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC:
                return "the system's limit of inotify watches is reached (fs.inotify.max_user_watches)"
            return os.strerror(code)
        self._wds[wd] = (path, root, recursive, excluded)
        return None

    def _add_tree(self, path: bytes, root: str, recursive: bool, excluded: tuple[Path, ...]) -> str | None:
        """A folder, and with ``recursive`` every folder under it that intake lists (not hidden, not
        excluded, not reached through a link); the first folder's problem, if any."""
        problem = self._add(path, root, recursive, excluded)
        if problem is not None or not recursive:
            return problem
        stack = [path]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    subs = [e.path for e in it if not e.name.startswith(b".") and e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for sub in subs:
                if _excluded(sub, excluded):
                    continue
                trouble = self._add(sub, root, recursive, excluded)
                if trouble is None:
                    stack.append(sub)
                elif not self._warned:  # its files are still found by polling
                    self._warned = True
                    log.warning("change notifications: %s is polled only (%s)", os.fsdecode(sub), trouble)
        return None

    # ------------------------------------------------------------------ events

    def _readable(self) -> None:
        """The loop's reader callback: read every queued event, wake intake once if one counts."""
        wake = False
        while self._fd >= 0:
            try:
                data = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                log.warning("change notifications stopped (%s); polling only", exc)
                self.watching = {f: f"polling ({exc.strerror or exc})" for f in self.watching}
                self.stop()
                wake = True
                break
            if self._events(data):
                wake = True
            if len(data) < _READ_BYTES // 2:
                break  # drained (most likely): the next event calls this again
        if wake:
            self._on_change()

    def _events(self, data: bytes) -> bool:
        """Handle one read's events; whether intake should look."""
        wake = False
        at, end = 0, len(data)
        unpack = _HEADER.unpack_from
        while at < end:
            wd, mask, _cookie, size = unpack(data, at)
            name = data[at + 16:at + 16 + size].rstrip(b"\0")
            at += 16 + size
            if mask & IN_Q_OVERFLOW:
                wake = True  # events were lost: the listing catches up (close records only shorten waits)
                continue
            if not name:
                if mask & IN_IGNORED:
                    self._gone(wd)
                elif mask & IN_MOVE_SELF:
                    self._moved(wd)
                continue  # the folder itself went: IN_IGNORED follows
            if name[:1] == b".":
                continue  # hidden: never a candidate (intake's own claimed names among them)
            watched = self._wds.get(wd)
            if watched is None:
                continue
            folder, root, recursive, excluded = watched
            path = folder + b"/" + name
            if mask & IN_ISDIR:
                if recursive and not _excluded(path, excluded):
                    self._add_tree(path, root, recursive, excluded)  # its files are found by the listing
                    wake = True
                continue
            if mask & IN_CLOSE_WRITE:
                self.note_closed(os.fsdecode(path))
            wake = True
        return wake

    def _gone(self, wd: int) -> None:
        """A watched folder was removed or moved away (or its file system unmounted)."""
        watched = self._wds.pop(wd, None)
        if watched is None:
            return
        folder, root, _, _ = watched
        if folder == os.fsencode(root):
            self.watching[root] = "polling (the folder was removed or moved)"


    def _moved(self, wd: int) -> None:
        """A watched folder was renamed: a watch folder is no longer where the config says (its
        watch is dropped: what comes to its new place is not ours); a sub-folder's watch follows
        it (it is named again by the event of its new place, in a watched folder)."""
        watched = self._wds.get(wd)
        libc = _lib()
        if watched is None or libc is None or watched[0] != os.fsencode(watched[1]):
            return
        self.watching[watched[1]] = "polling (the folder was removed or moved)"
        libc.inotify_rm_watch(self._fd, wd)  # IN_IGNORED follows


def _excluded(path: bytes, excluded: tuple[Path, ...]) -> bool:
    if not excluded:
        return False
    from .detect import same_or_inside  # detect imports nothing of this module; resolved once per folder

    candidate = Path(os.fsdecode(path))
    return any(same_or_inside(candidate, x) for x in excluded)
