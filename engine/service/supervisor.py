"""The supervisor: owns every background task of the service; nothing it runs can die silently.

Each task is a small model bound to the ``task`` lifecycle in force (``machines/task.yaml``, or a
site's file), whose states the supervisor knows only by role (``lifecycle/roles.py``)::

    created → starting → running ─(raised / returned)→ backing_off ─(restart)→ starting …
                             └─(too many failures)→ given_up ─(reset, on reload)→ created
    running ─(stop)→ stopping → stopped

A task that raises is logged once, with its traceback, and restarted after a capped, jittered
backoff. A task that *returns* without being asked to stop is a bug (a worker loop fell through)
and counts as a failure too. More than ``max_failures`` failures within ``window_s`` and the task
is given up: it stays down until :meth:`Supervisor.reset_given_up` (a reload) and the owner is
told, so the service can report itself degraded with the reason.

Stopping has two phases (:meth:`Supervisor.stop`): tasks that can *drain* (stop taking new work
and return once their in-flight work is done) are asked to, and get up to the grace period; then
every task still running is cancelled. Triggers fire on the event loop only (the ``transitions``
machine is not thread-safe).
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..backoff import backoff_delay
from ..clock import now_iso
from ..lifecycle import Lifecycle, load_lifecycle
from ..lifecycle.roles import TaskRoles

log = logging.getLogger(__name__)

TaskBody = Callable[[], Awaitable[None]]
DrainHook = Callable[[], Awaitable[None] | None]

# Bound on how long a cancelled task may take to unwind (shielded clean-up such as putting an
# in-flight report back). Past it the supervisor says so and stops waiting: it never hangs a stop.
_UNWIND_S = 10.0



def describe(exc: BaseException) -> str:
    """``Type: message`` of what really went wrong: the leaves of a task group's exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts and when to give up. Defaults: 0.5 s doubling to 30 s, ±20 %;
    more than 3 failures within 5 minutes and the task is given up."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_failures: int = 3
    window_s: float = 300.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds before the restart that follows the ``failures``-th recent failure (from 1)."""
        return backoff_delay(failures, initial_s=self.initial_s, max_s=self.max_s, multiplier=self.multiplier,
                             jitter=self.jitter, rng=rng)


class MachineModel:
    """What a ``transitions`` machine decorates (``state``, ``trigger``), kept apart from the task
    or service it describes so trigger names (``stop``, ``restart``) never shadow real methods."""

    state: str

    if TYPE_CHECKING:  # added by transitions when the lifecycle binds the model
        def trigger(self, trigger_name: str, *args: Any, **kwargs: Any) -> bool: ...


class SupervisedTask:
    """One background task: its body, how to drain it, and what happened to it so far."""

    def __init__(self, name: str, body: TaskBody, drain: DrainHook | None, lifecycle: Lifecycle,
                 roles: TaskRoles | None = None) -> None:
        self.name = name
        self.roles = roles or TaskRoles.of(lifecycle.definition)
        self.body = body
        self.drain = drain
        self._lifecycle = lifecycle
        self._model = MachineModel()
        lifecycle.bind(self._model)
        self.restarts = 0
        self.failures: collections.deque[float] = collections.deque()
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.given_up_reason: str | None = None
        self.since = now_iso()
        self.scope: anyio.CancelScope | None = None
        self.ended = anyio.Event()
        self.stop_requested = False
        self._wake = anyio.Event()
        self._recycling = False
        self._go: anyio.Event | None = None
        self._attempt_done = anyio.Event()
        self._attempt_done.set()

    @property
    def state(self) -> str:
        return self._model.state

    def fire(self, trigger: str) -> None:
        before = self._model.state
        self._model.trigger(trigger)
        self.since = now_iso()
        log.debug("task %s: %s -> %s (%s)", self.name, before, self._model.state, trigger)

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """``state`` is the role (``running``, ``given_up`` …): the same words whatever a site calls
        its states; ``machine_state`` is the state's own name when it differs."""
        role = self.roles.role_of(self.state)
        return {
            "state": role, **({"machine_state": self.state} if role != self.state else {}),
            "since": self.since, "restarts": self.restarts,
            "failures_in_window": len(self.failures), "last_error": self.last_error,
            "last_error_at": self.last_error_at, "given_up_reason": self.given_up_reason,
            "drains": self.drain is not None,
        }

    def _release(self) -> None:
        self._lifecycle.unbind(self._model)


@dataclass
class StopOutcome:
    """What a stop came to: drainable tasks that finished within the grace period, and those cut."""

    finished: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


class Supervisor:
    """Runs tasks in one anyio task group and keeps them running until :meth:`stop`.

    ``on_event(task, event)`` is called on the event loop for ``crashed``, ``given_up`` and
    ``reset``; the service uses it to go degraded and back.
    """

    def __init__(self, *, policy: RestartPolicy | None = None,
                 on_event: Callable[[SupervisedTask, str], None] | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic,
                 lifecycle: Lifecycle | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.tasks: dict[str, SupervisedTask] = {}
        self._on_event = on_event
        self._rng = rng or random.Random()
        self._clock = clock
        self._lifecycle = lifecycle or load_lifecycle("task")
        self.roles = TaskRoles.of(self._lifecycle.definition)
        self._tg: TaskGroup | None = None
        self._stopping = False
        self._closed = anyio.Event()
        self._grace_scope: anyio.CancelScope | None = None

    # ------------------------------------------------------------------ building

    def add(self, name: str, body: TaskBody, *, drain: DrainHook | None = None) -> SupervisedTask:
        """Register a task; if the supervisor is already running, start it now.

        ``drain`` (optional) asks the task to stop taking new work and return once its in-flight
        work is done; a task without one is simply cancelled when the service stops.
        """
        if name in self.tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        if self._stopping:
            raise RuntimeError(f"cannot add task {name!r}: the supervisor is stopping")
        task = SupervisedTask(name, body, drain, self._lifecycle, self.roles)
        self.tasks[name] = task
        if self._tg is not None:
            self._tg.start_soon(self._keep, task, name=f"supervised:{name}")
        return task

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every task; return once :meth:`stop` has ended them all."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for task in list(self.tasks.values()):
                tg.start_soon(self._keep, task, name=f"supervised:{task.name}")
            task_status.started()
            await self._closed.wait()
        self._tg = None

    async def _keep(self, task: SupervisedTask) -> None:
        """One task's whole life: run, restart after failures, give up, stop."""
        try:
            task.fire("start")
            while True:
                failure = await self._attempt(task)
                if self._should_stop(task):
                    return
                if task._recycling:
                    assert task._go is not None
                    await task._go.wait()
                    task._recycling = False
                    if self._should_stop(task):
                        return
                    task.fire("recycle")
                    continue
                assert failure is not None
                if not await self._after_failure(task, failure):
                    return
        finally:
            self._finish(task)

    def _should_stop(self, task: SupervisedTask) -> bool:
        return self._stopping or task.stop_requested

    async def _attempt(self, task: SupervisedTask) -> str | None:
        """Run the body once: a failure description, or None when it ended because it was asked to."""
        task._attempt_done = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                task.scope = scope
                if self._should_stop(task):
                    return None
                task.fire("started")
                try:
                    await task.body()
                except Exception as exc:  # noqa: BLE001 - logged with traceback, counted, restarted
                    task.last_error = describe(exc)
                    task.last_error_at = now_iso()
                    if self._should_stop(task) or task._recycling:
                        log.exception("task %s raised while stopping", task.name)
                        return None
                    log.exception("task %s crashed", task.name)
                    return task.last_error
                if self._should_stop(task) or task._recycling:
                    return None
                task.last_error = "ended without being asked to stop (a bug: a task must run until stopped)"
                task.last_error_at = now_iso()
                log.error("task %s %s; treated as a crash", task.name, task.last_error)
                return task.last_error
            # Cancelled through its own scope: as asked (stop, recycle, retire), or a failure.
            if self._should_stop(task) or task._recycling:
                return None
            task.last_error = "cancelled without being asked to stop"
            task.last_error_at = now_iso()
            log.error("task %s was %s; treated as a crash", task.name, task.last_error)
            return task.last_error
        finally:
            task.scope = None
            task._attempt_done.set()

    async def _after_failure(self, task: SupervisedTask, failure: str) -> bool:
        """Count the failure; back off (True: restart) or give up until reset (False: stop)."""
        now = self._clock()
        task.failures.append(now)
        while task.failures and now - task.failures[0] > self.policy.window_s:
            task.failures.popleft()
        if len(task.failures) > self.policy.max_failures:
            task.given_up_reason = (f"task {task.name} failed {len(task.failures)} times within "
                                    f"{self.policy.window_s:g} s; last: {failure}")
            task.fire("give_up")
            log.error("giving up %s — it stays down until the config is reloaded or the service "
                      "restarts", task.given_up_reason)
            self._notify(task, "given_up")
            while task.state != self.roles.created:
                if not await self._sleep(task, math.inf):
                    return False
            task.fire("start")
            return True
        delay = self.policy.delay(len(task.failures), self._rng)
        task.fire("crashed")
        log.warning("task %s restarts in %.1f s (failure %d of %d allowed within %g s)", task.name, delay,
                    len(task.failures), self.policy.max_failures, self.policy.window_s)
        self._notify(task, "crashed")
        if not await self._sleep(task, delay):
            return False
        task.restarts += 1
        task.fire("restart")
        return True

    async def _sleep(self, task: SupervisedTask, seconds: float) -> bool:
        """Wait ``seconds`` or until woken; False if the task is to stop."""
        task._wake = anyio.Event()
        if self._should_stop(task):
            return False
        with anyio.move_on_after(seconds):
            await task._wake.wait()
        return not self._should_stop(task)

    def _finish(self, task: SupervisedTask) -> None:
        """Whatever ended the task (stop, cancel, error), it ends in ``stopped``."""
        try:
            roles = self.roles
            if task.state in (roles.starting, roles.running):
                task.fire("stop")
            if task.state == roles.stopping:
                task.fire("stopped")
            elif task.state != roles.stopped:
                task.fire("stop")
        finally:
            task.ended.set()

    def _notify(self, task: SupervisedTask, event: str) -> None:
        if self._on_event is not None:
            self._on_event(task, event)

    # ------------------------------------------------------------------ changing tasks while running

    def given_up(self) -> list[SupervisedTask]:
        return [t for t in self.tasks.values() if t.state == self.roles.given_up]

    def reset_given_up(self) -> list[str]:
        """Give every given-up task another chance (a reload does this); returns their names."""
        names = []
        for task in self.given_up():
            task.failures.clear()
            task.given_up_reason = None
            task.fire("reset")
            task.wake()
            names.append(task.name)
            log.info("task %s gets another chance", task.name)
            self._notify(task, "reset")
        return names

    async def recycle(self, name: str, *, timeout_s: float, swap: Callable[[], None] | None = None) -> None:
        """Restart a task on purpose (new settings): drain it (or cancel it after ``timeout_s``),
        call ``swap`` while it is down, start it again. Not counted as a failure."""
        task = self.tasks[name]
        if task.state != self.roles.running or task._recycling:
            if swap is not None:
                swap()
            if task.state == self.roles.backing_off:
                task.wake()  # restart now, with the new settings
            return
        task._recycling = True
        task._go = anyio.Event()
        done = task._attempt_done
        try:
            await self._drain_or_cancel(task, done, timeout_s)
            if swap is not None:
                swap()
        finally:
            task._go.set()

    async def retire(self, name: str, *, timeout_s: float) -> None:
        """Stop one task for good (e.g. its section was removed from the config) and forget it."""
        task = self.tasks[name]
        task.stop_requested = True
        task.wake()
        if task.state in (self.roles.starting, self.roles.running):
            task.fire("stop")
        await self._drain_or_cancel(task, task.ended, timeout_s)
        with anyio.move_on_after(_UNWIND_S):
            await task.ended.wait()
        del self.tasks[name]
        task._release()

    async def _drain_or_cancel(self, task: SupervisedTask, done: anyio.Event, timeout_s: float) -> None:
        with anyio.move_on_after(timeout_s):
            if task.drain is not None:
                await self._call_drain(task)
            else:
                self._cancel(task)
            await done.wait()
        if not done.is_set():
            log.warning("task %s did not finish within %g s; cancelling it", task.name, timeout_s)
            self._cancel(task)
            with anyio.move_on_after(_UNWIND_S):
                await done.wait()

    async def _call_drain(self, task: SupervisedTask) -> None:
        assert task.drain is not None
        try:
            result = task.drain()
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - logged; the task is cancelled instead of drained
            log.exception("draining task %s failed; it will be cancelled", task.name)
            self._cancel(task)

    def cancel(self, name: str) -> None:
        """Cancel one task's current run. While stopping, recycling or retiring that ends it as
        asked; otherwise its ending counts as a failure and it is restarted."""
        self._cancel(self.tasks[name])

    @staticmethod
    def _cancel(task: SupervisedTask) -> None:
        task.wake()
        if task.scope is not None:
            task.scope.cancel()

    # ------------------------------------------------------------------ stopping

    async def stop(self, grace_s: float) -> StopOutcome:
        """Two-phase stop: drain what can drain, for up to ``grace_s``; then cancel the rest."""
        started = time.monotonic()
        self._stopping = True
        outcome = StopOutcome()
        draining = [t for t in self.tasks.values()
                    if t.drain is not None and t.state in (self.roles.starting, self.roles.running)]
        for task in self.tasks.values():
            task.stop_requested = True
            task.wake()
            if task._go is not None:
                task._go.set()
        for task in draining:
            task.fire("stop")

        async def drain_one(task: SupervisedTask) -> None:
            await self._call_drain(task)
            await task.ended.wait()

        with anyio.move_on_after(grace_s) as self._grace_scope:
            async with anyio.create_task_group() as tg:
                for task in draining:
                    tg.start_soon(drain_one, task, name=f"drain:{task.name}")
        outcome.finished = [t.name for t in draining if t.ended.is_set()]
        outcome.cut = [t.name for t in draining if not t.ended.is_set()]
        # Phase two: cancel whatever still runs (tasks without a drain, drains that ran out of time).
        for task in self.tasks.values():
            if not task.ended.is_set():
                if task.name not in outcome.cut:
                    outcome.cancelled.append(task.name)
                if task.scope is not None:
                    task.scope.cancel()
        with anyio.move_on_after(_UNWIND_S):
            for task in self.tasks.values():
                await task.ended.wait()
        outcome.stuck = [t.name for t in self.tasks.values() if not t.ended.is_set()]
        if outcome.stuck:
            log.error("tasks did not end within %g s of being cancelled: %s", _UNWIND_S, ", ".join(outcome.stuck))
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
        self._closed.set()
        outcome.elapsed_s = time.monotonic() - started
        return outcome

    def hurry(self) -> None:
        """Cut the grace period short (a second stop request): cancel in-flight work now."""
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    def close(self) -> None:
        """Detach every task model from the lifecycle machine (after :meth:`run` has returned)."""
        for task in self.tasks.values():
            task._release()

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: task.status() for name, task in self.tasks.items()}
