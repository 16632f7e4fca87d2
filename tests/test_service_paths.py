"""The service's less travelled paths: deferred and applied reload settings, a vanished config file,
SIGHUP with a broken file, a second stop while draining, tasks that keep failing, a broken part's status.

Each test runs the real ``Service`` in-process under anyio against the real emulator over loopback
(in-process so that a part can be broken on purpose), and asserts what a person sees: the notes of
a reload, ``status``, the log, the spool on disk, the CLI's output.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.emulator import Emulator, Faults
from stationflow.engine.layout import DataDir
from stationflow.engine.errors import ServiceNotRunning, SpoolFull
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.service.logs import LogRing, ServiceLogging
from stationflow.engine.service.service import Service
from stationflow.engine.service.supervisor import RestartPolicy, Supervisor
from stationflow.schemas.config import LoggingSection
from tests.conftest import assert_whole_once
from tests.test_service import FAST, fill_spool, serve, wait_for, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator() -> Any:
    with Emulator(port=0, seed=5) as emu:
        yield emu


async def control_up(svc: Service) -> None:
    """The service is running before its control task has published its port: wait for that too."""
    await wait_for(lambda: DataDir.of(svc.data_dir).control_file.exists())


def service_of(config: Path, **kw: Any) -> tuple[Service, io.StringIO]:
    log = io.StringIO()
    return Service(config, restart_policy=FAST, log_stream=log, **kw), log


async def test_reload_defers_data_dir_and_port_applies_spool_limits_and_the_cli_lists_the_changes(
        tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, emulator.url)
    service, _ = service_of(config)

    async def scenario(svc: Service) -> None:
        await control_up(svc)
        old_data_dir = svc.config.data_dir
        assert svc.spool is not None
        config.write_text(config.read_text().replace("spool: {min_free_disk: 0}",
                                                     "spool: {min_free_disk: 0, max_reports: 3}"))
        # Through the CLI, as a person types it (blocking: in a thread, while the service serves).
        rc = await anyio.to_thread.run_sync(cli_main, ["-c", str(config), "reload"])
        out = capsys.readouterr().out
        assert rc == 0 and out.startswith("reloaded:\n") and "  spool.max_reports: " in out
        # A new data dir or control port would strand the running service's clients: deferred.
        config.write_text(config.read_text().replace("data_dir: ./data", "data_dir: ./elsewhere")
                          + "control: {port: 45999}\n")
        client = ControlClient(old_data_dir, timeout=10.0)
        answer = await anyio.to_thread.run_sync(client.call, "reload")
        changes = answer["changes"]
        assert f"data_dir: takes effect at the next start; this service keeps {old_data_dir}" in changes
        assert "control.port: takes effect at the next start" in changes
        # Deferred settings stay as they were; the spool limit is in force at once.
        assert svc.config.data_dir == old_data_dir and svc.config.control.port == 0
        assert svc.spool.max_reports == 3
        for i in range(3):
            svc.spool.accept(make_report_bytes(i, seed=2))
        with pytest.raises(SpoolFull):
            svc.spool.accept(make_report_bytes(9, seed=2))
        # The file watcher's kind of reload: the same file again is nothing to do.
        assert await svc.reload("file", if_changed=True) == []
        assert svc.status()["service"]["last_reload"]["source"] == "control"

    rc, _ = await serve(service, scenario)
    assert rc == 0
    # A service runs once, and a stopped one cannot reload.
    with pytest.raises(RuntimeError, match="runs once"):
        await service.run()
    with pytest.raises(ServiceNotRunning, match="cannot reload: the service is stopped"):
        await service.reload("control")
    assert not (tmp_path / "elsewhere").exists()


async def test_a_vanished_config_file_keeps_the_settings_and_its_return_is_reloaded(
        tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url)
    service, log = service_of(config, watch_interval_s=0.05)
    text = config.read_text()

    async def scenario(svc: Service) -> None:
        rate = svc.config.upload.rate_per_s
        config.unlink()  # an editor mid-save
        await wait_for(lambda: "is missing; the current settings stay in force" in log.getvalue(),
                       explain=log.getvalue)
        assert svc.config.upload.rate_per_s == rate and svc.state == "running"
        config.write_text(text.replace("rate_per_s: null", "rate_per_s: 7.5"))
        await wait_for(lambda: (svc.last_reload or {}).get("source") == "file", explain=lambda: svc.last_reload)
        assert svc.config.upload.rate_per_s == 7.5
        assert any(c.startswith("upload.rate_per_s: ") for c in svc.last_reload["changes"])  # type: ignore[index]

    rc, _ = await serve(service, scenario)
    assert rc == 0
    assert log.getvalue().count("is missing; the current settings stay in force") == 1


async def test_sighup_with_a_broken_file_keeps_the_old_settings_and_says_why(tmp_path: Path,
                                                                             emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url)
    service, log = service_of(config)

    async def scenario(svc: Service) -> None:
        config.write_text(config.read_text().replace("concurrency: 2", "concurrency: -4"))
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: svc.last_reload is not None, explain=log.getvalue)
        assert svc.last_reload is not None
        assert svc.last_reload["ok"] is False and svc.last_reload["source"] == "SIGHUP"
        assert any("concurrency" in p for p in svc.last_reload["problems"])
        assert svc.config.upload.concurrency == 2 and svc.state == "running"

    rc, _ = await serve(service, scenario)
    assert rc == 0
    assert "config reload (SIGHUP) refused, the old settings stay in force" in log.getvalue()


async def test_while_draining_a_reload_is_refused_and_a_second_stop_cancels_in_flight_uploads(tmp_path: Path) -> None:
    with Emulator(port=0, seed=5, faults=Faults(latency_s=60.0)) as slow:
        config = write_config(tmp_path, slow.url, grace_s=120.0)
        accepted = fill_spool(tmp_path / "data", 2)
        service, log = service_of(config)
        began: dict[str, float] = {}

        async def run() -> None:
            await service.run()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await wait_for(lambda: service.uploader is not None and service.uploader.in_flight > 0,
                               timeout=30, explain=log.getvalue)
                service.request_stop("first")
                await wait_for(lambda: service.state == "draining", explain=lambda: service.state)
                os.kill(os.getpid(), signal.SIGHUP)  # a reload asked for during the stop: refused, said
                await wait_for(lambda: "reload (SIGHUP) ignored: cannot reload: the service is draining"
                               in log.getvalue(), explain=log.getvalue)
                began["second"] = time.monotonic()
                service.request_stop("second")
        took = time.monotonic() - began["second"]
    assert service.state == "stopped"
    assert took < 30, f"the second stop waited {took:.1f} s of a 120 s grace period"
    assert "second stop request (second): cancelling in-flight work now" in log.getvalue()
    assert set(assert_whole_once(tmp_path / "data", accepted).values()) == {"pending"}


async def test_two_tasks_that_keep_failing_both_degrade_the_service_and_a_reload_starts_them_again(
        tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url)
    runs = {"alpha": 0, "beta": 0}

    def failing(name: str) -> Any:
        async def body() -> None:
            runs[name] += 1
            raise RuntimeError(f"{name} is broken")
        return body

    service, log = service_of(config, task_overrides={"alpha": failing("alpha"), "beta": failing("beta")})

    def both_given_up() -> bool:
        because = service.status()["service"]["degraded_because"]
        return service.state == "degraded" and {"task:alpha", "task:beta"} <= set(because)

    async def scenario(svc: Service) -> None:
        await wait_for(both_given_up, explain=lambda: svc.status()["service"])
        reason = svc.status()["service"]["reason"]
        assert "alpha is broken" in reason and "beta is broken" in reason
        before = dict(runs)
        notes = await svc.reload("control")
        assert any(n.startswith("given-up task(s) started again: ") for n in notes)
        assert "alpha" in notes[-1] and "beta" in notes[-1]
        await wait_for(lambda: runs["alpha"] > before["alpha"] and runs["beta"] > before["beta"])
        await wait_for(both_given_up, explain=lambda: svc.status()["service"])

    rc, _ = await serve(service, scenario)
    assert rc == 0


async def test_a_part_whose_status_breaks_is_reported_not_fatal(tmp_path: Path, emulator: Emulator) -> None:
    watch = tmp_path / "in"
    watch.mkdir()
    config = write_config(tmp_path, emulator.url,
                          extra=f"intake:\n  - {{name: ict, watch: '{watch}', converter: wsjf}}\n")
    service, log = service_of(config)

    async def scenario(svc: Service) -> None:
        await control_up(svc)
        assert svc.intake is not None

        def broken() -> dict[str, Any]:
            raise RuntimeError("index is corrupt")
        svc.intake.status = broken  # type: ignore[method-assign]
        client = ControlClient(svc.data_dir, timeout=10.0)
        status = await anyio.to_thread.run_sync(client.call, "status")
        assert status["intake"] == {"error": "RuntimeError: index is corrupt"}
        assert status["metrics"]["converted"] == 0
        assert status["health"]["state"] == "error"
        assert any(r["text"] == "intake cannot report its state: RuntimeError: index is corrupt"
                   for r in status["health"]["reasons"])

    rc, _ = await serve(service, scenario)
    assert rc == 0
    assert re.search(r"status of Intake\w* failed", log.getvalue())  # Intake, or IntakeProcess (the default)


async def test_a_replaced_intake_task_is_left_alone_by_a_reload(tmp_path: Path, emulator: Emulator) -> None:
    watch = tmp_path / "in"
    watch.mkdir()
    intake = f"intake:\n  - {{name: ict, watch: '{watch}', converter: wsjf}}\n"
    config = write_config(tmp_path, emulator.url, extra=intake)
    started = anyio.Event()

    async def own_intake() -> None:
        started.set()
        await anyio.sleep_forever()

    service, _ = service_of(config, task_overrides={"intake": own_intake})

    async def scenario(svc: Service) -> None:
        await started.wait()
        other = tmp_path / "in2"
        other.mkdir()
        config.write_text(config.read_text() + f"  - {{name: fct, watch: '{other}', converter: wsjf}}\n")
        notes = await svc.reload("control")
        assert "intake: 1 → 2 watched folder(s), changed" in notes
        assert svc.supervisor is not None
        assert svc.supervisor.status()["intake"]["state"] == "running"
        assert svc.supervisor.status()["intake"]["restarts"] == 0

    rc, _ = await serve(service, scenario)
    assert rc == 0


# ---------------------------------------------------------------------- the supervisor's own edges

async def _with_supervisor(sup: Supervisor, scenario: Callable[[Supervisor], Awaitable[None]]) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        with anyio.fail_after(30):
            await scenario(sup)


async def test_recycling_a_task_that_is_backing_off_swaps_and_restarts_it_at_once() -> None:
    runs: list[str] = []
    setting = {"value": "old"}

    async def body() -> None:
        runs.append(setting["value"])
        if setting["value"] == "old":
            raise RuntimeError("bad setting")
        await anyio.sleep_forever()

    sup = Supervisor(policy=RestartPolicy(initial_s=60.0, max_s=60.0, jitter=0.0, max_failures=5))
    sup.add("worker", body)

    async def scenario(sup: Supervisor) -> None:
        await sup_wait(lambda: sup.tasks["worker"].state == "backing_off")
        await sup.recycle("worker", timeout_s=5, swap=lambda: setting.update(value="new"))
        await sup_wait(lambda: sup.tasks["worker"].state == "running" and runs[-1:] == ["new"])
        await sup.stop(1.0)

    await _with_supervisor(sup, scenario)
    assert runs == ["old", "new"]  # restarted by the recycle, not after the 60 s backoff


async def test_a_task_that_ignores_its_drain_is_cancelled_after_the_timeout_then_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    drained: list[int] = []

    async def body() -> None:
        runs.append(1)
        await anyio.sleep_forever()

    sup = Supervisor(policy=FAST)
    sup.add("stubborn", body, drain=lambda: drained.append(1))

    async def scenario(sup: Supervisor) -> None:
        await sup_wait(lambda: sup.tasks["stubborn"].state == "running")
        started = time.monotonic()
        await sup.recycle("stubborn", timeout_s=0.3)
        assert time.monotonic() - started < 10
        await sup_wait(lambda: len(runs) == 2 and sup.tasks["stubborn"].state == "running")
        assert sup.tasks["stubborn"].restarts == 0 and not sup.tasks["stubborn"].failures  # not a failure
        await sup.stop(1.0)

    with caplog.at_level(logging.WARNING, logger="stationflow.engine.service.supervisor"):
        await _with_supervisor(sup, scenario)
    assert drained == [1, 1]  # the recycle, then the stop
    assert "task stubborn did not finish within 0.3 s; cancelling it" in caplog.text


async def test_a_drain_that_raises_or_a_task_that_raises_while_stopping_still_stops(
        caplog: pytest.LogCaptureFixture) -> None:
    asked = anyio.Event()

    async def tidy() -> None:
        await asked.wait()
        raise RuntimeError("could not flush on the way out")

    async def plain() -> None:
        await anyio.sleep_forever()

    def broken_drain() -> None:
        raise RuntimeError("drain is broken")

    sup = Supervisor(policy=FAST)
    sup.add("tidy", tidy, drain=asked.set)
    sup.add("plain", plain, drain=broken_drain)

    outcome: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        await sup_wait(lambda: all(t.state == "running" for t in sup.tasks.values()))
        outcome["stop"] = await sup.stop(5.0)
        with pytest.raises(RuntimeError, match="cannot add task 'late': the supervisor is stopping"):
            sup.add("late", plain)

    with caplog.at_level(logging.WARNING, logger="stationflow.engine.service.supervisor"):
        await _with_supervisor(sup, scenario)
    assert outcome["stop"].stuck == [] and outcome["stop"].elapsed_s < 5.0
    assert {t.state for t in sup.tasks.values()} == {"stopped"}
    assert all(not t.failures for t in sup.tasks.values())  # neither counts as a crash
    assert "task tidy raised while stopping" in caplog.text
    assert "draining task plain failed; it will be cancelled" in caplog.text


async def sup_wait(check: Callable[[], bool], timeout: float = 10.0) -> None:
    await wait_for(check, timeout=timeout)


async def test_a_level_forced_on_the_command_line_outlives_a_reload_and_the_reload_says_so(
        tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url)
    service, log = service_of(config, log_level="DEBUG")

    async def scenario(svc: Service) -> None:
        config.write_text(config.read_text() + "logging: {level: ERROR}\n")
        notes = await svc.reload("control")
        assert "logging.level: ERROR is saved but --log-level DEBUG stays in force until the service restarts" \
            in notes
        assert logging.getLogger().getEffectiveLevel() == logging.DEBUG

    rc, _ = await serve(service, scenario)
    assert rc == 0


# ---------------------------------------------------------------------- the service's log

SECRET = "s3cret-token-value"


def _logging(tmp_path: Path, *, secrets: tuple[str, ...] = (), **section: Any) -> tuple[ServiceLogging, LogRing,
                                                                                         io.StringIO]:
    ring, stream = LogRing(50), io.StringIO()
    handlers = ServiceLogging(tmp_path, LoggingSection.model_validate(section), ring, secrets=secrets,
                              stream=stream)
    return handlers, ring, stream


def test_a_json_log_line_carries_the_traceback(tmp_path: Path) -> None:
    handlers, _, stream = _logging(tmp_path, json=True)
    try:
        try:
            raise OSError("disk gone")
        except OSError:
            logging.getLogger("stationflow.engine.test").exception("writing failed")
    finally:
        handlers.close()
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines() if "writing failed" in line]
    assert entry["level"] == "ERROR" and entry["msg"] == "writing failed"
    assert entry["exc"].startswith("Traceback") and "OSError: disk gone" in entry["exc"]
    assert json.loads(handlers.path.read_text().splitlines()[-1])["exc"] == entry["exc"]


def test_a_secret_in_a_logged_stack_is_masked_and_the_ring_keeps_its_tail(tmp_path: Path) -> None:
    handlers, ring, stream = _logging(tmp_path, secrets=(SECRET,))
    try:
        logging.getLogger("stationflow.engine.test").warning("where am I", stack_info=True)  # s3cret-token-value
    finally:
        handlers.close()
    assert "where am I" in stream.getvalue() and "Stack (most recent call last)" in stream.getvalue()
    assert SECRET not in stream.getvalue() and SECRET not in handlers.path.read_text()
    assert SECRET not in "\n".join(ring.tail(50)) and "where am I" in ring.tail(1)[0]
    assert ring.tail(0) == []


async def test_a_log_that_cannot_be_rotated_is_a_note_in_status(tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url, extra="logging: {file_max_bytes: 2000, file_backups: 2}\n")
    log_file = DataDir.of(tmp_path / "data").log_file
    Path(f"{log_file}.1").mkdir(parents=True)  # a folder where the rotated file must go: the rename fails
    service, _ = service_of(config)

    async def scenario(svc: Service) -> None:
        for i in range(40):
            logging.getLogger("stationflow.engine.test").warning("filling the log, line %d %s", i, "x" * 80)
        notes = svc.status()["service"]["file_notes"]
        assert any("could not be rotated" in n for n in notes), notes

    rc, _ = await serve(service, scenario)
    assert rc == 0
    assert log_file.stat().st_size > 2000  # still written to, not lost
