"""Work off the Tk thread: jobs run in threads, their results come back through a queue polled with after().

Tk is single-threaded and a handler that waits (for the service, the network or an fsync) freezes
the whole window. So every such call is a *job*: a function run in its own worker thread, whose
result (or exception) is put on a ``queue.Queue``; the Tk thread polls that queue with
``after()`` and calls the job's ``on_done``/``on_error`` there, where touching widgets is safe.

Everything is owned, so that closing stops it: a :class:`Runner` (one per window) owns the result
queue, the poll timer and every worker thread; a :class:`Scope` (one per page) owns its ``after()``
timers and repeating refreshes. ``Scope.close()`` cancels its timers and drops results that arrive
later; ``Runner.close()`` closes every scope, cancels the poll timer and joins the threads.

The worker threads are a small pool started with the window (more are added only while every one
is busy): submitting a job is a ``queue.put``, never a thread start, because starting a thread
waits for the new thread to get the GIL — tens of milliseconds on a busy station.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Prefix of every worker thread's name (tests look for leftovers by it).
THREAD_PREFIX = "stationflow-ui"

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


@dataclass
class _Job:
    scope: Scope
    name: str
    key: str | None
    on_done: Done | None
    on_error: Failed | None
    started: float = field(default_factory=time.monotonic)


class Runner:
    """The window's worker threads and the one ``after()`` loop that brings their results back.

    ``poll_ms`` is how often the queue is looked at; each poll hands back results until
    ``budget_ms`` is spent and leaves the rest for the next poll, so a burst of results never
    holds the Tk thread for long.
    """

    def __init__(self, root: tk.Misc, *, poll_ms: int = 30, budget_ms: float = 15.0,
                 on_error: Failed | None = None, workers: int = 3, max_workers: int = 12) -> None:
        self.root = root
        self.poll_ms = poll_ms
        self.budget_s = budget_ms / 1000
        self.on_error = on_error
        self._results: queue.Queue[tuple[_Job, bool, Any]] = queue.Queue()
        self._jobs: queue.Queue[tuple[_Job, Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None] = \
            queue.Queue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._waiting = 0
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._scopes: list[Scope] = []
        self._counter = itertools.count(1)
        self._closed = False
        self.stop_event = threading.Event()  # set at close: long jobs check it and end early
        self._poll_id: str | None = root.after(poll_ms, self._poll)
        for _ in range(workers):
            self._spawn()

    # ------------------------------------------------------------------ public

    def scope(self, name: str) -> Scope:
        """A new owner of timers and jobs (one per page); closed with the runner at the latest."""
        scope = Scope(self, name)
        self._scopes.append(scope)
        return scope

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> list[str]:
        """Cancel every timer, stop delivering results, join the worker threads.

        Returns the names of threads still running after ``timeout`` (a network call stuck in a
        timeout longer than ours); they are daemon threads and hold nothing of the window's.
        """
        if self._closed:
            return []
        self._closed = True
        self.stop_event.set()
        for scope in list(self._scopes):
            scope.close()
        if self._poll_id is not None:
            try:
                self.root.after_cancel(self._poll_id)
            except tk.TclError:
                pass
            self._poll_id = None
        for _ in self.threads:
            self._jobs.put(None)  # one "stop" per worker, after the jobs already queued (skipped)
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in self.threads]
        if left:
            log.warning("worker threads still running after close: %s", ", ".join(left))
        self._drain()
        return left

    # ------------------------------------------------------------------ inside

    def _start(self, job: _Job, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            self._waiting += 1
            more = self._waiting > self._idle and len(self._threads) < self.max_workers
        self._jobs.put((job, fn, args, kwargs))
        if more:
            self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{THREAD_PREFIX}-{next(self._counter)}", daemon=True)
        with self._lock:
            self._threads.append(thread)
            self._idle += 1  # idle from now: no second thread is started for the next job
        thread.start()

    def _work(self) -> None:
        """A worker: run jobs until the stop marker; jobs still queued at close are skipped."""
        try:
            while True:
                item = self._jobs.get()
                with self._lock:
                    self._idle -= 1
                    if item is not None:
                        self._waiting -= 1
                if item is None:
                    return
                job, fn, args, kwargs = item
                if not self._closed:
                    try:
                        value = fn(*args, **kwargs)
                    except BaseException as exc:  # noqa: BLE001 - delivered to the Tk thread, shown there
                        self._results.put((job, False, exc))
                    else:
                        self._results.put((job, True, value))
                with self._lock:
                    self._idle += 1
        finally:
            with self._lock:
                self._threads.remove(threading.current_thread())

    def _poll(self) -> None:
        self._poll_id = None
        if self._closed:
            return
        deadline = time.perf_counter() + self.budget_s
        while time.perf_counter() < deadline:
            try:
                job, ok, value = self._results.get_nowait()
            except queue.Empty:
                break
            self._deliver(job, ok, value)
        if not self._closed:
            self._poll_id = self.root.after(self.poll_ms, self._poll)

    def _deliver(self, job: _Job, ok: bool, value: Any) -> None:
        scope = job.scope
        scope._finished(job)
        if scope.closed:
            return
        try:
            if ok:
                if job.on_done is not None:
                    job.on_done(value)
            elif job.on_error is not None:
                job.on_error(value)
            elif scope.on_error is not None:
                scope.on_error(value)
            elif self.on_error is not None:
                self.on_error(value)
            else:
                log.error("job %s failed: %s", job.name, value)
        except Exception as exc:  # noqa: BLE001 - a bug in a result handler: show it, keep polling
            log.exception("result handler of job %s failed", job.name)
            if self.on_error is not None:
                self.on_error(exc)

    def _drain(self) -> None:
        """Forget results that arrived after close (nothing may act on a closed window)."""
        while True:
            try:
                job, _, _ = self._results.get_nowait()
            except queue.Empty:
                return
            job.scope._finished(job)


class Scope:
    """Timers and jobs of one page. ``close()`` cancels the timers; late results are dropped."""

    def __init__(self, runner: Runner, name: str) -> None:
        self.runner = runner
        self.name = name
        self.on_error: Failed | None = None
        self._afters: set[str] = set()
        self._running: dict[str, _Job] = {}
        self._jobs = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.runner.closed

    @property
    def stop_event(self) -> threading.Event:
        return self.runner.stop_event

    def busy(self, key: str) -> bool:
        """True while a job submitted with ``key`` has not been handed back."""
        return key in self._running

    @property
    def jobs_in_flight(self) -> int:
        return self._jobs

    def submit(self, fn: Callable[..., Any], *args: Any, on_done: Done | None = None,
               on_error: Failed | None = None, key: str | None = None, name: str | None = None,
               **kwargs: Any) -> bool:
        """Run ``fn(*args, **kwargs)`` in a worker thread; ``on_done(result)`` / ``on_error(exc)`` later,
        in the Tk thread. With ``key``, a job still running under the same key makes this a no-op
        (returns False): a slow service never piles up refreshes."""
        if self.closed:
            return False
        if key is not None and key in self._running:
            return False
        job = _Job(self, str(name or key or getattr(fn, "__name__", "job")), key, on_done, on_error)
        if key is not None:
            self._running[key] = job
        self._jobs += 1
        self.runner._start(job, fn, args, kwargs)
        return True

    def after(self, ms: int, fn: Callable[..., Any], *args: Any) -> str | None:
        """``root.after`` that this scope remembers (and cancels at close)."""
        if self.closed:
            return None
        holder: list[str] = []

        def fire() -> None:
            if holder:
                self._afters.discard(holder[0])
            if not self.closed:
                fn(*args)

        fire.__wrapped__ = getattr(fn, "__wrapped__", fn)  # type: ignore[attr-defined]  # for the busy meter
        after_id = self.runner.root.after(ms, fire)
        holder.append(after_id)
        self._afters.add(after_id)
        return after_id

    def cancel(self, after_id: str | None) -> None:
        if after_id is None:
            return
        if after_id in self._afters:
            self._afters.discard(after_id)
            try:
                self.runner.root.after_cancel(after_id)
            except tk.TclError:
                pass

    def every(self, ms: int, fn: Callable[[], Any], *, now: bool = True) -> Repeater:
        """Call ``fn`` every ``ms`` (the delay counts from the end of the previous call)."""
        repeater = Repeater(self, ms, fn)
        repeater.start(now=now)
        return repeater

    @property
    def pending_afters(self) -> int:
        return len(self._afters)

    def close(self) -> None:
        """Cancel every timer of this scope; results of its running jobs will be dropped."""
        self._closed = True
        for after_id in list(self._afters):
            self.cancel(after_id)

    def _finished(self, job: _Job) -> None:
        self._jobs = max(0, self._jobs - 1)
        if job.key is not None and self._running.get(job.key) is job:
            del self._running[job.key]


class Repeater:
    """A periodic call owned by a scope; ``stop()`` and ``start()`` as a page hides and shows."""

    def __init__(self, scope: Scope, ms: int, fn: Callable[[], Any]) -> None:
        self.scope = scope
        self.ms = ms
        self.fn = fn
        self._after: str | None = None
        self.running = False

        def tick() -> None:
            self._tick()

        tick.__wrapped__ = fn  # type: ignore[attr-defined]  # the busy meter names the handler by it
        self._tick_fn = tick

    def start(self, *, now: bool = True) -> None:
        self.stop()
        self.running = True
        self._after = self.scope.after(0 if now else self.ms, self._tick_fn)

    def stop(self) -> None:
        self.running = False
        self.scope.cancel(self._after)
        self._after = None

    def _tick(self) -> None:
        self._after = None
        if not self.running:
            return
        try:
            self.fn()
        finally:
            if self.running and not self.scope.closed:
                self._after = self.scope.after(self.ms, self._tick_fn)
