"""When the uploader's quick spool work leaves the event loop: a stalled disk, not a busy machine.

The uploader runs quick spool work on the event loop and moves it to threads for a while when the
disk stalls it (uploader.py, ``_timed_inline``; :class:`StallGate` keeps the rule). On a machine with more runnable
threads than cores, a call is also slow when the kernel simply runs something else meanwhile:
measured on 2 busy cores, every 2,000-file burst tripped the limit that way, and the spool work of
the whole burst then paid a thread hand-off per report (15 % of the service's Python time) while
the disk was fine. ``/proc/thread-self/schedstat`` counts the nanoseconds a thread was runnable but
not running; the time a call took minus that is the time it waited for something else (the disk).
Where the file is missing (not Linux, an old kernel) the wait counts as zero: slow is slow.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stationflow.engine.upload.uploader")  # the uploader's log: its lines, its logger

# Spool work on the event loop moves to threads when the disk stalls it: calls slower than
# ``STALL_MIN_S`` (net of time spent waiting for a CPU) that add up to more than ``INLINE_LIMIT_S``
# within ``STALL_WINDOW_S`` of the first. Measured in 2,000-file bursts on a busy journaled ext4: a
# rename into sent/ now and then waits 5–15 ms for the journal, and most slow calls were the thread
# waiting for a CPU. With the old rule (one call over 20 ms, the run queue counted as disk) most
# bursts moved to threads and paid a thread hand-off per report from then on (15 % of the service's
# Python time, +0.25 ms CPU per report). A disk that hangs trips the rule at once (one 50 ms stall),
# and so does one slow at every call (10 ms per rename, which the old rule never caught).
INLINE_LIMIT_S = 0.045
STALL_MIN_S = 0.005
STALL_WINDOW_S = 0.25
#: After moving spool work to threads, try the event loop again this much later (doubling each
#: time it is slow again, up to the maximum): one journal commit that stalled a rename must not
#: cost the rest of the service's life, a disk that is slow for good is not tried every minute.
INLINE_RETRY_S = 60.0
INLINE_RETRY_MAX_S = 3600.0


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


class StallGate:
    """Whether quick spool work runs on the event loop now; times each call and moves the work to
    threads when disk stalls add up (the rule above), back to the loop after ``retry_s``."""

    def __init__(self) -> None:
        self.inline = True
        self.retry_s = INLINE_RETRY_S
        self.retry_at = math.inf
        self.since, self.total = -math.inf, 0.0  # the stalls counted in the current window
        self._run_queue = RunQueueClock()  # opened on the event loop's thread by the first call

    def timed(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``fn(arg)`` on this thread, its stall (if any) counted."""
        started, queued = time.perf_counter(), self._run_queue.waited_s()
        try:
            return fn(arg)
        finally:
            elapsed = time.perf_counter() - started
            if elapsed > STALL_MIN_S and self.inline:
                self.stalled(elapsed, self._run_queue.waited_s() - queued)

    def stalled(self, elapsed: float, queued: float) -> None:
        """A slow call of spool work on the event loop: count its stall (the time its thread sat in
        the run queue is a busy machine, not a slow disk), and move to threads when they add up."""
        stalled = elapsed - queued
        if stalled <= STALL_MIN_S:
            return
        now = time.monotonic()
        if now - self.since > STALL_WINDOW_S:
            self.since, self.total = now, 0.0
        self.total += stalled
        if self.total <= INLINE_LIMIT_S:
            return
        self.inline = False
        self.retry_at = now + self.retry_s
        log.warning("spool work on the event loop waited %.0f ms for the disk within %.1f s (the last call %.0f ms, "
                    "%.0f ms of it waiting for a CPU); the disk is slow, so spool work moves to worker threads "
                    "(tried on the event loop again in %.0f s)", self.total * 1000, now - self.since,
                    elapsed * 1000, queued * 1000, self.retry_s)
        self.retry_s = min(self.retry_s * 2, INLINE_RETRY_MAX_S)
        self.since, self.total = -math.inf, 0.0

    def use_inline(self) -> bool:
        """Whether quick spool work runs on the event loop now."""
        if not self.inline and time.monotonic() >= self.retry_at:
            self.inline, self.retry_at = True, math.inf
            log.info("trying quick spool work on the event loop again")
        return self.inline

    def close(self) -> None:
        self._run_queue.close()
