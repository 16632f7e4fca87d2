"""The service: supervised tasks, degraded state, reloads, signals, one instance per data dir.

In-process tests drive ``Service.run()`` under anyio; the stop and crash tests run the real
``stationflow run`` in a subprocess against the emulator over loopback, and check the spool on disk.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator, Faults
from stationflow.engine.errors import AlreadyRunning, ConfigError
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.service.service import Service
from stationflow.engine.spool.store import Spool
from stationflow.engine.service.supervisor import RestartPolicy
from tests.conftest import ROOT, assert_whole_once

FAST = RestartPolicy(initial_s=0.01, max_s=0.04, max_failures=3, window_s=60.0)
WRONG_TOKEN = "d3Jvbmc6dG9rZW4x"


def write_config(folder: Path, url: str, *, token: str = DEFAULT_TOKEN, grace_s: float = 5.0,
                 concurrency: int = 2, rate: float | None = None, extra: str = "") -> Path:
    path = folder / "station.yaml"
    path.write_text(
        "station: {name: TEST-01}\n"
        f"server: {{url: '{url}', token: {token}, timeout_s: 10, connect_timeout_s: 2}}\n"
        "data_dir: ./data\n"
        f"upload: {{concurrency: {concurrency}, rate_per_s: {'null' if rate is None else rate}, "
        "retry: {initial_s: 0.05, max_s: 0.3, offline_after: 3}}\n"
        f"shutdown: {{grace_s: {grace_s}}}\n"
        "spool: {min_free_disk: 0}\n"
        + extra, encoding="utf-8")
    return path


def fill_spool(data_dir: Path, n: int) -> dict[str, bytes]:
    accepted = {}
    with Spool(data_dir) as spool:
        for i in range(n):
            raw = make_report_bytes(i, seed=11)
            accepted[spool.accept(raw).key] = raw
    return accepted


async def wait_for(check: Callable[[], bool], timeout: float = 10.0,
                   explain: Callable[[], Any] | None = None) -> None:
    """Poll ``check``; on timeout fail with what ``explain`` says about the situation."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {explain() if explain else ''}")
        await anyio.sleep(0.01)


async def serve(service: Service, scenario: Callable[[Service], Awaitable[Any]],
                timeout: float = 40.0) -> tuple[int, Any]:
    """Run the service in-process, play the scenario once it is up, then stop it."""
    out: dict[str, Any] = {}

    async def run() -> None:
        out["rc"] = await service.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(timeout):
            await wait_for(lambda: service.state in ("running", "degraded"))
            out["result"] = await scenario(service)
            service.request_stop("test")
    return out["rc"], out.get("result")


@pytest.fixture
def emulator():
    with Emulator(port=0, seed=3) as emu:
        yield emu


def quiet_service(path: Path, **kw: Any) -> Service:
    return Service(path, restart_policy=FAST, log_stream=io.StringIO(), **kw)


# ---------------------------------------------------------------------- supervised tasks in the service

@pytest.mark.parametrize("kind", ["uploader", "intake", "config_watch", "control"])
async def test_each_kind_of_task_is_restarted_then_given_up_and_the_service_degrades(tmp_path: Path, kind: str) -> None:
    calls: list[int] = []

    async def crashing() -> None:
        calls.append(1)
        raise RuntimeError(f"injected into {kind} #{len(calls)}")

    path = write_config(tmp_path, "http://127.0.0.1:9")
    service = quiet_service(path, task_overrides={kind: crashing})

    async def scenario(svc: Service) -> tuple[dict, dict, list[str]]:
        await wait_for(lambda: svc.state == "degraded")
        given_up = svc.status()
        notes = await svc.reload("test")  # a reload gives the task another chance
        after_reload = svc.status()
        return given_up, after_reload, notes

    rc, (given_up, after_reload, notes) = await serve(service, scenario)
    assert rc == 0
    json.dumps(given_up)  # status is plain JSON
    task = given_up["tasks"][kind]
    assert task["state"] == "given_up"
    assert task["restarts"] == 3
    assert task["last_error"] == f"RuntimeError: injected into {kind} #4"
    assert given_up["service"]["state"] == "degraded"
    assert kind in given_up["service"]["reason"] and "injected" in given_up["service"]["reason"]
    others = {name: t["state"] for name, t in given_up["tasks"].items() if name != kind}
    assert others and set(others.values()) == {"running"}, others
    assert notes == [f"given-up task(s) started again: {kind}"]
    assert after_reload["service"]["state"] == "running"
    assert after_reload["tasks"][kind]["given_up_reason"] is None
    assert service.state == "stopped"
    assert any("crashed" in line and "Traceback" in line for line in service.log_ring.tail(500))


async def test_a_task_that_returns_silently_degrades_the_service(tmp_path: Path) -> None:
    async def falls_through() -> None:
        return None

    service = quiet_service(write_config(tmp_path, "http://127.0.0.1:9"), task_overrides={"config_watch": falls_through})

    async def scenario(svc: Service) -> dict:
        await wait_for(lambda: svc.state == "degraded")
        return svc.status()

    _, status = await serve(service, scenario)
    assert "ended without being asked to stop" in status["service"]["reason"]
    assert status["tasks"]["config_watch"]["state"] == "given_up"


async def test_an_uploader_crash_restarts_it_and_every_report_still_arrives(tmp_path: Path, emulator: Emulator,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, emulator.url)
    accepted = fill_spool(tmp_path / "data", 12)
    original = Spool.claim_next
    injected: list[int] = []

    def claim_next_failing_once(self: Spool):  # a disk error inside a real upload worker
        if not injected:
            injected.append(1)
            raise OSError(5, "injected I/O error")
        return original(self)

    monkeypatch.setattr(Spool, "claim_next", claim_next_failing_once)
    service = quiet_service(path)

    async def scenario(svc: Service) -> dict:
        await wait_for(lambda: len(emulator.received_ids()) == len(accepted))
        await wait_for(lambda: svc.status()["reports"]["sent"] == len(accepted))
        return svc.status()

    _, status = await serve(service, scenario)
    assert status["tasks"]["uploader"]["restarts"] == 1
    assert "injected I/O error" in status["tasks"]["uploader"]["last_error"]
    assert status["service"]["state"] == "running"
    assert status["metrics"]["sent"] == len(accepted)
    assert status["metrics"]["upload_latency"]["p50_ms"] is not None
    assert emulator.received_ids() == set(accepted)


# ---------------------------------------------------------------------- reloads

async def test_an_invalid_config_is_refused_with_reasons_and_the_old_settings_stay(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", rate=100)
    service = Service(path, restart_policy=FAST, watch_interval_s=0.05, log_stream=io.StringIO())

    async def scenario(svc: Service) -> dict:
        uploader = svc.uploader
        text = path.read_text()
        path.write_text(text.replace("rate_per_s: 100", "rate_per_s: -1, concurency: 3"))
        with pytest.raises(ConfigError) as refused:
            await svc.reload("test")
        assert any(p.startswith("upload.rate_per_s") for p in refused.value.problems)
        assert any(p.startswith("upload.concurency") and "did you mean 'concurrency'" in p
                   for p in refused.value.problems)
        assert svc.config.upload.rate_per_s == 100 and uploader.upload.rate_per_s == 100
        assert svc.state == "running"
        # The watcher saw the same broken file: it does not retry it, and status says why.
        await anyio.sleep(0.2)
        assert svc.last_reload["source"] == "test" and svc.last_reload["ok"] is False
        # An edit that breaks it differently is picked up by the watcher and refused too.
        path.write_text(text.replace("rate_per_s: 100", "rate_per_s: fast"))
        await wait_for(lambda: svc.last_reload["source"] == "file")
        refused_by_watch = dict(svc.last_reload)
        # Fixed: applied without a restart.
        path.write_text(text.replace("rate_per_s: 100", "rate_per_s: 7"))
        await wait_for(lambda: svc.last_reload["ok"])
        assert svc.uploader.upload.rate_per_s == 7 and svc.config.upload.rate_per_s == 7
        return {"watch": refused_by_watch, "ok": svc.last_reload, "status": svc.status()}

    rc, seen = await serve(service, scenario)
    assert rc == 0
    assert seen["watch"]["ok"] is False
    assert any(p.startswith("upload.rate_per_s") for p in seen["watch"]["problems"])
    assert seen["ok"]["changes"] == ["upload.rate_per_s: 100.0 → 7.0"]
    assert seen["status"]["service"]["last_reload"]["ok"] is True
    errors = [line for line in service.log_ring.tail(500) if " ERROR " in line]
    assert any("reload (test) refused" in line for line in errors)
    assert any("upload.concurency" in line for line in errors), "each problem is logged at ERROR"


async def test_reload_applies_intake_and_concurrency_changes_without_a_restart(tmp_path: Path, emulator: Emulator) -> None:
    intake = ("intake:\n"
              "  - {name: ict, watch: ./drop, patterns: ['*.json'], converter: wsjf, settle_ms: 50, after: keep}\n")
    path = write_config(tmp_path, emulator.url, concurrency=2, extra=intake)
    (tmp_path / "drop").mkdir()
    service = Service(path, restart_policy=FAST, watch_interval_s=3600, log_stream=io.StringIO())

    async def scenario(svc: Service) -> list[list[str]]:
        first_intake, first_uploader = svc.intake, svc.uploader
        path.write_text(path.read_text().replace("settle_ms: 50", "settle_ms: 80").replace(
            "concurrency: 2", "concurrency: 3"))
        notes = [await svc.reload("test")]
        assert svc.intake is not first_intake and svc.uploader is not first_uploader
        assert svc.uploader.upload.concurrency == 3
        await wait_for(lambda: svc.supervisor.tasks["intake"].state == "running")
        raw = make_report_bytes(3, seed=42)
        (tmp_path / "drop" / "new.json").write_bytes(raw)  # the new intake really serves
        await wait_for(lambda: json.loads(raw)["id"].lower() in emulator.received_ids(), timeout=20,
                       explain=lambda: (svc.status(), service.log_ring.tail(30)))
        path.write_text(path.read_text().split("intake:")[0])
        notes.append(await svc.reload("test"))
        assert svc.intake is None and "intake" not in svc.supervisor.tasks
        path.write_text(path.read_text() + intake)
        notes.append(await svc.reload("test"))
        await wait_for(lambda: svc.supervisor.tasks["intake"].state == "running")
        assert {t["restarts"] for t in svc.status()["tasks"].values()} == {0}, "a reload is not a crash"
        assert svc.state == "running"
        return notes

    rc, notes = await serve(service, scenario)
    assert rc == 0
    assert "upload.concurrency: 2 → 3" in notes[0]
    assert "intake: 1 → 1 watched folder(s), changed" in notes[0]
    assert notes[1] == ["intake: 1 → 0 watched folder(s), changed"]
    assert notes[2] == ["intake: 0 → 1 watched folder(s), changed"]


async def test_sighup_applies_a_new_token_and_uploads_resume(tmp_path: Path, emulator: Emulator) -> None:
    path = write_config(tmp_path, emulator.url, token=WRONG_TOKEN)
    accepted = fill_spool(tmp_path / "data", 3)
    service = Service(path, restart_policy=FAST, watch_interval_s=3600, log_stream=io.StringIO())

    async def scenario(svc: Service) -> dict:
        await wait_for(lambda: svc.state == "degraded")  # 401: uploads paused, a person must act
        paused = svc.status()
        logging.getLogger("tests.leak").warning("a careless line with the token %s in it", WRONG_TOKEN)
        path.write_text(path.read_text().replace(WRONG_TOKEN, DEFAULT_TOKEN))
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: svc.last_reload is not None)
        await wait_for(lambda: emulator.received_ids() == set(accepted))
        await wait_for(lambda: svc.state == "running")
        logging.getLogger("tests.leak").warning("and the new one %s", DEFAULT_TOKEN)
        return {"paused": paused, "reload": svc.last_reload}

    rc, seen = await serve(service, scenario)
    assert rc == 0
    assert seen["paused"]["uploader"]["mode"] == "paused"
    assert "401" in seen["paused"]["service"]["reason"]
    assert seen["reload"]["source"] == "SIGHUP" and seen["reload"]["ok"] is True
    assert "server.token: changed" in seen["reload"]["changes"]
    log_text = (tmp_path / "data" / "logs" / "stationflow.log").read_text()
    for text in (log_text, "\n".join(service.log_ring.tail(500))):
        assert "a careless line with the token ******** in it" in text
        assert WRONG_TOKEN not in text and DEFAULT_TOKEN not in text


# ---------------------------------------------------------------------- real processes

_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_services():
    """A failed test must not leave a service running (it would hold its data dir and a port)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_service(config: Path, log_to: Path) -> subprocess.Popen:
    """``stationflow run`` in a subprocess; returns once it logs that it is running."""
    err = log_to.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(config), "run"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    _STARTED.append(proc)
    deadline = time.monotonic() + 15
    while "service running" not in log_to.read_text():
        assert proc.poll() is None, f"service exited early ({proc.returncode}): {log_to.read_text()}"
        assert time.monotonic() < deadline, f"service did not start: {log_to.read_text()}"
        time.sleep(0.02)
    return proc


def stop_and_time(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(sig)
    rc = proc.wait(timeout)
    return rc, time.monotonic() - started


def spool_states(data_dir: Path) -> dict[str, str]:
    spool = Spool(data_dir, readonly=True)
    return {key: spool.state_of(key) for key in spool.keys()}


def assert_quick_stop(log_text: str, took: float) -> None:
    """An idle service stops at once: the stop itself, as the service measures it (drain, cancel,
    converter workers closed), under a second. The process's exit after it (interpreter teardown: on
    a busy machine near a second of its own) is bounded well under the 30 s grace it must not wait for."""
    [stopped_in] = [float(m) for m in re.findall(r"stopped in ([0-9.]+) s", log_text)]
    assert stopped_in < 1.0, f"the idle stop took {stopped_in:.2f} s"
    assert took < 5.0, f"the process exited {took:.2f} s after the signal"


def healthcheck(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), "healthcheck"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_service_stops_in_under_a_second(tmp_path: Path, emulator: Emulator, sig: int) -> None:
    config = write_config(tmp_path, emulator.url, grace_s=30)
    proc = start_service(config, tmp_path / "stderr.log")
    health = healthcheck(config)
    assert health.returncode == 0, health.stderr
    rc, took = stop_and_time(proc, sig)
    assert rc == 0, (tmp_path / "stderr.log").read_text()
    log_text = (tmp_path / "data" / "logs" / "stationflow.log").read_text()
    assert_quick_stop(log_text, took)
    assert f"stop requested ({signal.Signals(sig).name})" in log_text
    assert "service draining -> stopped" in log_text
    assert not (tmp_path / "data" / "stationflow.pid").exists()
    after = healthcheck(config)
    assert after.returncode == 1 and after.stderr.startswith("unhealthy: "), after


def test_a_file_dropped_in_a_watch_folder_reaches_the_server_and_the_stop_stays_quick(
        tmp_path: Path, emulator: Emulator) -> None:
    intake = ("intake:\n"
              "  - {name: ict, watch: ./drop, patterns: ['*.json'], converter: wsjf, settle_ms: 50, after: archive}\n")
    config = write_config(tmp_path, emulator.url, grace_s=30, extra=intake)
    (tmp_path / "drop").mkdir()
    proc = start_service(config, tmp_path / "stderr.log")
    raw = make_report_bytes(7, seed=99)
    report_id = json.loads(raw)["id"].lower()
    (tmp_path / "drop" / "r7.json").write_bytes(raw)
    deadline = time.monotonic() + 15
    while report_id not in emulator.received_ids():
        assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
        assert time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()
        time.sleep(0.02)
    rc, took = stop_and_time(proc)
    assert rc == 0, (tmp_path / "stderr.log").read_text()
    assert not (tmp_path / "drop" / "r7.json").exists(), "archived once its report was in the spool"
    log_text = (tmp_path / "data" / "logs" / "stationflow.log").read_text()
    assert_quick_stop(log_text, took)
    assert "tasks uploader, intake, config_watch" in log_text
    assert "grace period" not in log_text


async def test_a_second_instance_on_the_same_data_dir_is_refused(tmp_path: Path, emulator: Emulator) -> None:
    config = write_config(tmp_path, emulator.url)
    first = start_service(config, tmp_path / "first.log")
    try:
        # Refused at once: timed in-process, without a new interpreter's start (seconds on a busy machine).
        started = time.monotonic()
        with pytest.raises(AlreadyRunning):
            await quiet_service(config).run()
        assert time.monotonic() - started < 2
        second = subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), "run"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 8
        assert f"already running on data dir {tmp_path / 'data'}" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None, "the refused second run must not disturb the first"
    finally:
        rc, _ = stop_and_time(first)
    assert rc == 0


def test_sigterm_during_slow_uploads_finishes_in_flight_work_and_loses_nothing(tmp_path: Path) -> None:
    with Emulator(port=0, faults=Faults(latency_s=0.6)) as emulator:
        config = write_config(tmp_path, emulator.url, grace_s=10, concurrency=3)
        accepted = fill_spool(tmp_path / "data", 15)
        proc = start_service(config, tmp_path / "stderr.log")
        deadline = time.monotonic() + 10
        while emulator.stats().posts < 3:  # three uploads are waiting for the slow server's answer
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rc, took = stop_and_time(proc)
        received = emulator.received_ids()
    assert rc == 0
    assert took < 3.0, f"stop took {took:.2f} s with 0.6 s uploads in flight"
    states = assert_whole_once(tmp_path / "data", accepted)
    sent = {key for key, state in states.items() if state == "sent"}
    assert len(sent) >= 3, "the uploads in flight finished within the grace period"
    assert sent <= received
    assert {states[key] for key in set(accepted) - sent} <= {"pending"}, states
    log_text = (tmp_path / "data" / "logs" / "stationflow.log").read_text()
    assert f"left in the spool: pending {len(accepted) - len(sent)}" in log_text


def test_in_flight_uploads_past_the_grace_period_are_cancelled_back_to_pending(tmp_path: Path) -> None:
    with Emulator(port=0, faults=Faults(latency_s=5.0)) as emulator:
        config = write_config(tmp_path, emulator.url, grace_s=0.3, concurrency=2)
        accepted = fill_spool(tmp_path / "data", 4)
        proc = start_service(config, tmp_path / "stderr.log")
        deadline = time.monotonic() + 10
        while emulator.stats().posts < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rc, took = stop_and_time(proc)
    assert rc == 0
    assert took < 2.0, f"stop took {took:.2f} s with a 0.3 s grace period"
    states = assert_whole_once(tmp_path / "data", accepted)
    assert set(states.values()) == {"pending"}, states
    log_text = (tmp_path / "data" / "logs" / "stationflow.log").read_text()
    assert "grace period of 0.3 s ran out: cancelled uploader" in log_text


def test_kill_9_mid_upload_then_restart_sends_everything(tmp_path: Path) -> None:
    with Emulator(port=0, faults=Faults(latency_s=0.3)) as emulator:
        config = write_config(tmp_path, emulator.url, grace_s=5, concurrency=2)
        accepted = fill_spool(tmp_path / "data", 10)
        proc = start_service(config, tmp_path / "first.log")
        deadline = time.monotonic() + 10
        while emulator.stats().posts < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait(10)
        states = assert_whole_once(tmp_path / "data", accepted)  # nothing lost by the kill
        assert "sending" in states.values(), "the kill hit uploads in flight"
        emulator.clear_faults()
        again = start_service(config, tmp_path / "second.log")  # the dead process's lock is gone
        deadline = time.monotonic() + 15
        while emulator.received_ids() != set(accepted) or \
                set(spool_states(tmp_path / "data").values()) != {"sent"}:
            assert again.poll() is None
            assert time.monotonic() < deadline, spool_states(tmp_path / "data")
            time.sleep(0.05)
        rc, _ = stop_and_time(again)
    assert rc == 0
    assert set(assert_whole_once(tmp_path / "data", accepted).values()) == {"sent"}


def test_request_stop_from_another_thread_stops_a_service_run_in_a_thread(tmp_path: Path) -> None:
    """How a Windows service wrapper embeds it: no signals off the main thread, stop by request."""
    import threading

    service = quiet_service(write_config(tmp_path, "http://127.0.0.1:9"))
    result: dict[str, Any] = {}
    # Its own event loop in its own thread, on purpose: that is the embedding under test.
    thread = threading.Thread(target=lambda: result.setdefault("rc", anyio.run(service.run)))
    thread.start()
    deadline = time.monotonic() + 15
    while service.state != "running":
        assert thread.is_alive() and time.monotonic() < deadline, service.log_ring.tail(20)
        time.sleep(0.01)
    started = time.monotonic()
    service.request_stop("service manager")
    thread.join(10)
    assert not thread.is_alive() and result["rc"] == 0
    assert time.monotonic() - started < 1.0
    assert service.stop_reason == "service manager" and service.state == "stopped"


def test_the_log_file_can_be_json_lines_rotated_by_size_and_never_holds_the_token(tmp_path: Path) -> None:
    from stationflow.engine.service.logs import LogRing, ServiceLogging
    from stationflow.schemas.config import LoggingSection

    root = logging.getLogger()
    before = list(root.handlers)
    ring = LogRing(capacity=10)
    section = LoggingSection.model_validate({"level": "INFO", "json": True, "file_max_bytes": 2000,
                                             "file_backups": 2})
    logs = ServiceLogging(tmp_path, section, ring, secrets=[DEFAULT_TOKEN], stream=io.StringIO())
    try:
        probe = logging.getLogger("tests.logs")
        probe.debug("below the level: not written")
        for i in range(60):
            probe.info("line %d with %s", i, DEFAULT_TOKEN)
        try:
            raise ValueError(f"token {DEFAULT_TOKEN} in an exception")
        except ValueError:
            probe.exception("it failed")
    finally:
        logs.close()
    folder = tmp_path / "logs"
    assert sorted(p.name for p in folder.iterdir()) == ["stationflow.log", "stationflow.log.1", "stationflow.log.2"]
    entries = [json.loads(line) for f in folder.iterdir() for line in f.read_text().splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert not any("below the level" in e["msg"] for e in entries)
    last = json.loads((folder / "stationflow.log").read_text().splitlines()[-1])
    assert last["msg"] == "it failed" and "ValueError: token ******** in an exception" in last["exc"]
    assert all(DEFAULT_TOKEN not in f.read_text() for f in folder.iterdir())
    assert len(ring.tail(100)) == 10 and ring.tail(1)[0].startswith(tuple("0123456789"))
    assert root.handlers == before, "closing puts back the handlers that were there"
