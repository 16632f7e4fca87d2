"""Change notifications for watch folders: intake wakes as soon as a file appears or its writer
closes it, instead of at the next poll.

``watchdog`` gives the operating system's own notifications (inotify on Linux, with an event when
a writer *closes* a file it wrote; ReadDirectoryChangesW on Windows). Notifications only say *when*
to look: the listing (``detect.py``) still decides what is there, so a missed or duplicated
event costs a poll interval, never a file. Polling stays as the fallback — for network shares,
where notifications are unreliable or absent, and when the OS refuses a watch (limits).

On Linux intake reads inotify itself, on its event loop (inotify.py: measured, watchdog's threads
cost more CPU per report than copying the file); ``watchdog`` serves the other systems, and Linux
when intake does not run on an asyncio loop.

Settling early: a file whose writer closed it after writing, and which still has the size and
mtime it had at that close, is done being written; it need not wait ``settle_ms`` more. Equipment
that closes and reopens a file while still writing it sets ``settle_on_close: false``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import anyio.from_thread
import anyio.lowlevel

if TYPE_CHECKING:  # watchdog is imported when it is used: on Linux it is not (5 MB of memory less)
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

    from .inotify import InotifyNotifier

    Notifier: TypeAlias = "ChangeNotifier | InotifyNotifier"

#: (folder, recursive, folders under it that are not watched: the data dir, move_to)
WatchedFolder = tuple[Path, bool, list[Path]]

log = logging.getLogger(__name__)

#: Closed-after-write records kept at most (oldest dropped): a record only shortens a wait.
_MAX_CLOSED = 100_000


def _on_event(notifier: ChangeNotifier, event: FileSystemEvent) -> None:
    """One watchdog event (the observer's thread): note a writer's close, wake intake if it can matter."""
    if event.event_type == "closed" and not event.is_directory:
        notifier.note_closed(os.fsdecode(event.src_path))
    if event.event_type in ("opened", "closed_no_write", "deleted"):
        # Reading a file changes nothing worth a look; nor does a file leaving (intake's own
        # archive moves, or someone taking a file back): the next poll notices it is gone.
        return
    if event.is_directory and event.event_type == "modified":
        return  # a folder's own "modified" comes with the event of the file that changed in it
    path = getattr(event, "dest_path", "") or event.src_path
    if os.path.basename(os.fsdecode(path)).startswith("."):
        # A hidden name is never taken (detect.walk skips it): intake's own claim of a source
        # (renamed to .stationflow-….taking before it goes), an editor's temporary file. It
        # is seen when renamed to a visible name: that event names the visible one.
        return
    notifier.changed()


class ClosedRecords:
    """What writers closed after writing: each path's size and mtime at that moment."""

    def __init__(self) -> None:
        self._closed: dict[str, tuple[int, int, float]] = {}  # path → size, mtime_ns, noted at (monotonic)
        self._lock = threading.Lock()

    def note_closed(self, path: str) -> None:
        """The writer closed ``path`` after writing: remember its size and mtime at that moment."""
        noted = time.monotonic()
        try:
            st = os.stat(path)
        except OSError:
            return
        with self._lock:
            if len(self._closed) >= _MAX_CLOSED:
                self._closed.pop(next(iter(self._closed)))
            self._closed[path] = (st.st_size, st.st_mtime_ns, noted)

    def closed_as(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when ``path`` was closed by its writer and is still exactly as it was then."""
        with self._lock:
            return self._closed.get(path, (-1, -1, 0.0))[:2] == (size, mtime_ns)

    def closed_state(self, path: str) -> tuple[int, int, float] | None:
        """(size, mtime_ns, when it was noted: monotonic) of ``path`` when its writer last closed
        it after writing, if known."""
        with self._lock:
            return self._closed.get(path)


class ChangeNotifier(ClosedRecords):
    """Watches folders with watchdog; calls ``on_change`` (from the observer's thread) when
    something changed.

    ``on_change`` must be thread-safe and cheap (intake passes a function that sets an event on
    its own event loop)."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__()
        self._on_change = on_change
        self._observer: BaseObserver | None = None
        self.watching: dict[str, str] = {}  # folder → "notify" or the reason it is polled only

    def start(self, folders: list[WatchedFolder]) -> None:
        """Watch each (folder, recursive, not watched: ignored here); a folder that cannot be
        watched is polled only."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        notifier = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                _on_event(notifier, event)

        observer = Observer()
        handler = Handler()
        for folder, recursive, _ in folders:
            try:
                observer.schedule(handler, str(folder), recursive=recursive)
                self.watching[str(folder)] = "notify"
            except OSError as exc:  # missing folder, inotify limits, a share without notifications
                self.watching[str(folder)] = f"polling ({exc.strerror or exc})"
        try:
            observer.start()
        except OSError as exc:
            log.warning("change notifications unavailable (%s); polling only", exc)
            self.watching = {f: f"polling ({exc.strerror or exc})" for f in self.watching}
            return
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def changed(self) -> None:
        try:
            self._on_change()
        except RuntimeError:  # the event loop is gone (intake stopping): nothing to wake
            pass


def start_notifier(folders: list[WatchedFolder], first_notice: Callable[[], bool],
                   wake: Callable[[], None]) -> ChangeNotifier | InotifyNotifier:
    """The platform's notifier, started. inotify is read on the running event loop where it is
    available (``wake`` called there, at once); else watchdog, whose thread hops into the loop to
    call ``wake`` — once per burst of events: ``first_notice`` (a flag set without the loop) says
    whether a wake is still to be sent since the intake's last pass."""
    from . import inotify  # it imports this module

    notifier: ChangeNotifier | InotifyNotifier
    if inotify.available():
        def on_loop() -> None:
            if first_notice():
                wake()

        notifier = inotify.InotifyNotifier(on_loop)
    else:
        token = anyio.lowlevel.current_token()

        def from_thread() -> None:
            if first_notice():
                anyio.from_thread.run_sync(wake, token=token)

        notifier = ChangeNotifier(from_thread)
    notifier.start(folders)
    return notifier
