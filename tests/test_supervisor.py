"""The supervisor: restart with backoff, give up, silent returns, two-phase stop, recycle."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import anyio
import pytest

from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.service.supervisor import RestartPolicy, StopOutcome, SupervisedTask, Supervisor

FAST = RestartPolicy(initial_s=0.01, max_s=0.04, max_failures=3, window_s=60.0)


class Boom(RuntimeError):
    pass


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.005)


async def run_with(sup: Supervisor, scenario: Callable[[Supervisor], Awaitable[object]]) -> object:
    """Run the supervisor and the scenario side by side; the scenario must stop it."""
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        result = await scenario(sup)
        tg.cancel_scope.deadline = anyio.current_time() + 5  # a scenario that forgot to stop fails loudly
    return result


def crashes_then_serves(times: int, calls: list[int]) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        calls.append(1)
        if len(calls) <= times:
            raise Boom(f"injected failure {len(calls)}")
        await anyio.sleep_forever()
    return body


async def test_a_crashing_task_is_logged_once_per_crash_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    events: list[tuple[str, str]] = []
    sup = Supervisor(policy=FAST, on_event=lambda t, e: events.append((t.name, e)))
    sup.add("worker", crashes_then_serves(2, calls))

    async def scenario(sup: Supervisor) -> dict:
        await wait_for(lambda: len(calls) == 3 and sup.tasks["worker"].state == "running")
        seen = sup.status()["worker"]
        await sup.stop(1.0)
        return seen

    with caplog.at_level(logging.INFO, logger="stationflow.engine.service.supervisor"):
        seen = await run_with(sup, scenario)
    assert seen["state"] == "running"
    assert seen["restarts"] == 2
    assert seen["last_error"] == "Boom: injected failure 2"
    assert seen["given_up_reason"] is None
    tracebacks = [r for r in caplog.records if r.exc_info and "crashed" in r.getMessage()]
    assert len(tracebacks) == 2, "each crash is logged exactly once, with its traceback"
    assert all(isinstance(r.exc_info[1], Boom) for r in tracebacks)
    assert events == [("worker", "crashed"), ("worker", "crashed")]
    assert sup.tasks["worker"].state == "stopped"


async def test_more_than_max_failures_in_the_window_gives_the_task_up() -> None:
    calls: list[int] = []
    events: list[str] = []
    sup = Supervisor(policy=FAST, on_event=lambda t, e: events.append(e))
    sup.add("worker", crashes_then_serves(10**6, calls))
    sup.add("healthy", anyio.sleep_forever)

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: sup.tasks["worker"].state == "given_up")
        await anyio.sleep(0.2)  # well past the backoff: a given-up task is not started again
        await sup.stop(1.0)

    await run_with(sup, scenario)
    assert len(calls) == 4, "given up on the 4th failure (more than 3), and never started again"
    worker = sup.tasks["worker"]
    assert worker.restarts == 3
    assert "failed 4 times within 60 s" in worker.given_up_reason
    assert "Boom: injected failure 4" in worker.given_up_reason
    assert events == ["crashed", "crashed", "crashed", "given_up"]
    assert sup.tasks["healthy"].restarts == 0


async def test_a_task_that_returns_by_itself_is_a_failure_not_an_ending() -> None:
    calls: list[int] = []

    async def falls_through() -> None:
        calls.append(1)

    sup = Supervisor(policy=FAST)
    sup.add("silent", falls_through)

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: sup.tasks["silent"].state == "given_up")
        await sup.stop(1.0)

    await run_with(sup, scenario)
    assert len(calls) == 4
    assert "ended without being asked to stop" in sup.tasks["silent"].last_error
    assert "ended without being asked to stop" in sup.tasks["silent"].given_up_reason


async def test_failures_spread_wider_than_the_window_never_give_up() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 100.0  # every failure is 100 s after the previous one; the window is 60 s
        return now[0]

    calls: list[int] = []
    sup = Supervisor(policy=FAST, clock=clock)
    sup.add("flaky", crashes_then_serves(8, calls))

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: len(calls) == 9 and sup.tasks["flaky"].state == "running")
        await sup.stop(1.0)

    await run_with(sup, scenario)
    assert sup.tasks["flaky"].restarts == 8
    assert sup.tasks["flaky"].given_up_reason is None


async def test_a_reset_gives_a_given_up_task_another_chance() -> None:
    calls: list[int] = []
    events: list[str] = []
    sup = Supervisor(policy=FAST, on_event=lambda t, e: events.append(e))
    sup.add("worker", crashes_then_serves(4, calls))

    async def scenario(sup: Supervisor) -> list[str]:
        await wait_for(lambda: sup.tasks["worker"].state == "given_up")
        names = sup.reset_given_up()
        await wait_for(lambda: sup.tasks["worker"].state == "running")
        await sup.stop(1.0)
        return names

    assert await run_with(sup, scenario) == ["worker"]
    assert len(calls) == 5
    assert events[-2:] == ["given_up", "reset"]
    assert sup.tasks["worker"].given_up_reason is None


async def test_stop_drains_what_can_drain_and_cancels_the_rest() -> None:
    finished_work: list[str] = []

    def drainable(name: str, work_s: float) -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
        asked = anyio.Event()

        async def body() -> None:
            await asked.wait()
            await anyio.sleep(work_s)  # in-flight work finishing
            finished_work.append(name)
        return body, asked.set

    quick_body, quick_drain = drainable("quick", 0.05)
    slow_body, slow_drain = drainable("slow", 30.0)
    sup = Supervisor(policy=FAST)
    sup.add("quick", quick_body, drain=quick_drain)
    sup.add("slow", slow_body, drain=slow_drain)
    sup.add("plain", anyio.sleep_forever)

    async def scenario(sup: Supervisor) -> StopOutcome:
        await wait_for(lambda: all(t.state == "running" for t in sup.tasks.values()))
        return await sup.stop(0.3)

    outcome = await run_with(sup, scenario)
    assert outcome.finished == ["quick"]
    assert outcome.cut == ["slow"]
    assert outcome.cancelled == ["plain"]
    assert outcome.stuck == []
    assert 0.3 <= outcome.elapsed_s < 1.0
    assert finished_work == ["quick"]
    assert {t.state for t in sup.tasks.values()} == {"stopped"}
    assert all(t.restarts == 0 for t in sup.tasks.values()), "a drained task's return is not a crash"


async def test_stop_wakes_a_task_in_backoff_at_once() -> None:
    sup = Supervisor(policy=RestartPolicy(initial_s=30, max_s=30, jitter=0))
    calls: list[int] = []
    sup.add("worker", crashes_then_serves(1, calls))

    async def scenario(sup: Supervisor) -> StopOutcome:
        await wait_for(lambda: sup.tasks["worker"].state == "backing_off")
        return await sup.stop(5.0)

    outcome = await run_with(sup, scenario)
    assert outcome.elapsed_s < 0.2
    assert sup.tasks["worker"].state == "stopped"


async def test_hurry_cuts_the_grace_period_short() -> None:
    sup = Supervisor(policy=FAST)
    sup.add("stubborn", anyio.sleep_forever, drain=lambda: None)

    async def scenario(sup: Supervisor) -> StopOutcome:
        await wait_for(lambda: sup.tasks["stubborn"].state == "running")
        async with anyio.create_task_group() as tg:
            async def second_request() -> None:
                await anyio.sleep(0.1)
                sup.hurry()
            tg.start_soon(second_request)
            return await sup.stop(30.0)

    outcome = await run_with(sup, scenario)
    assert outcome.cut == ["stubborn"]
    assert outcome.elapsed_s < 1.0


async def test_recycle_restarts_with_new_settings_without_counting_a_failure() -> None:
    settings = {"value": "old"}
    seen: list[str] = []
    asked = {"event": anyio.Event()}

    async def body() -> None:
        seen.append(settings["value"])
        asked["event"] = anyio.Event()
        await asked["event"].wait()

    sup = Supervisor(policy=FAST)
    sup.add("worker", body, drain=lambda: asked["event"].set())

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: seen == ["old"])

        def swap() -> None:
            assert sup.tasks["worker"].state == "running"  # down, but never marked as failed
            settings["value"] = "new"

        await sup.recycle("worker", timeout_s=1.0, swap=swap)
        await wait_for(lambda: seen == ["old", "new"])
        await sup.stop(1.0)

    await run_with(sup, scenario)
    worker = sup.tasks["worker"]
    assert worker.restarts == 0 and worker.failures == type(worker.failures)() and worker.last_error is None


async def test_tasks_can_be_added_and_retired_while_running() -> None:
    started: list[str] = []

    async def body() -> None:
        started.append("late")
        await anyio.sleep_forever()

    sup = Supervisor(policy=FAST)
    sup.add("first", anyio.sleep_forever)

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: sup.tasks["first"].state == "running")
        sup.add("late", body)
        await wait_for(lambda: started == ["late"])
        with pytest.raises(ValueError, match="already supervised"):
            sup.add("late", body)
        await sup.retire("late", timeout_s=0.5)
        assert "late" not in sup.tasks
        await sup.stop(1.0)

    await run_with(sup, scenario)


def test_backoff_is_capped_and_jittered() -> None:
    policy = RestartPolicy(initial_s=0.5, max_s=30.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(7)
    for failures in range(1, 30):
        base = min(0.5 * 2 ** (failures - 1), 30.0)
        delays = {policy.delay(failures, rng) for _ in range(20)}
        assert all(base * 0.8 - 1e-9 <= d <= min(base * 1.2, 30.0) + 1e-9 for d in delays)
        assert len(delays) > 1, "jitter spreads restarts of many tasks"
    assert max(policy.delay(50, rng) for _ in range(100)) <= 30.0


def test_task_states_follow_the_shipped_task_lifecycle() -> None:
    """Every transition the supervisor fires is one task.yaml allows (else ``fire`` would raise)."""
    lifecycle = load_lifecycle("task")
    task = SupervisedTask("probe", anyio.sleep_forever, None, lifecycle)
    path = ["start", "started", "crashed", "restart", "started", "recycle", "started", "give_up", "reset",
            "start", "started", "stop", "stopped"]
    for trigger in path:
        task.fire(trigger)
    assert task.state == "stopped" and lifecycle.is_final("stopped")
    assert task.status()["state"] == "stopped"


async def test_a_task_cancelled_from_outside_without_a_stop_counts_as_a_failure() -> None:
    calls: list[int] = []

    async def body() -> None:
        calls.append(1)
        await anyio.sleep_forever()

    sup = Supervisor(policy=FAST)
    sup.add("worker", body)

    async def scenario(sup: Supervisor) -> None:
        await wait_for(lambda: sup.tasks["worker"].state == "running")
        sup.cancel("worker")
        await wait_for(lambda: len(calls) == 2 and sup.tasks["worker"].state == "running")
        await sup.stop(1.0)

    await run_with(sup, scenario)
    assert sup.tasks["worker"].restarts == 1
    assert sup.tasks["worker"].last_error == "cancelled without being asked to stop"
