"""Tell a stalled disk from a busy machine: how long a thread waited for a CPU (Linux's schedstat).

The uploader runs quick spool work on the event loop and moves it to threads when one call takes
too long, for a disk that stalls (uploader.py, ``_timed_inline``). On a machine with more runnable
threads than cores, a call is also slow when the kernel simply runs something else meanwhile:
measured on 2 busy cores, every 2,000-file burst tripped the limit that way, and the spool work of
the whole burst then paid a thread hand-off per report (15 % of the service's Python time) while
the disk was fine. ``/proc/thread-self/schedstat`` counts the nanoseconds a thread was runnable but
not running; the time a call took minus that is the time it waited for something else (the disk).
Where the file is missing (not Linux, an old kernel) the wait counts as zero: slow is slow.
"""

from __future__ import annotations

import os
import sys
import threading


class RunQueueClock:
    """Seconds the calling thread has waited for a CPU; one ``pread`` (~2 µs) per question."""

    def __init__(self) -> None:
        self._fd = -1
        self._thread: int | None = None
        self._known = sys.platform.startswith("linux")

    def waited_s(self) -> float:
        """The calling thread's total wait in the run queue so far (0.0 where it cannot be known)."""
        if not self._known:
            return 0.0
        try:
            if self._thread != threading.get_ident():  # the file describes the thread that opened it
                self.close()
                self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
                self._thread = threading.get_ident()
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            self._known = False
            self.close()
            return 0.0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._thread = -1, None
