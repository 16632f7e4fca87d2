"""Intake in a process of its own: control, reload, stop and the hand-over through the spool.

The service runs in-process (``Service.run()`` under anyio); its intake process is real, and so are
the emulator over loopback and the control protocol. ``tests/chaos/test_procsplit_kill.py`` kills
the processes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.layout import CONTROL_FILE
from stationflow.engine.lifecycle import in_force
from stationflow.engine.errors import AlreadyRunning, InvalidReport, StorageError
from stationflow.engine.service import intake_process
from stationflow.engine.service.frames import encode, read_frame
from stationflow.engine.service.intake_child import ServiceLink
from stationflow.engine.service.service import Service
from stationflow.engine.station import open_spool
from stationflow.engine.spool.store import Accepted
from tests.conftest import ROOT
from tests.test_service import FAST, serve, wait_for, write_config

INTAKE = ("intake:\n"
          "  - {name: ict, watch: ./drop, patterns: ['*.json'], converter: wsjf, settle_ms: 50, after: archive}\n")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0, seed=3) as emu:
        yield emu


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: the signal check is all there is


def station(tmp_path: Path, emulator: Emulator) -> Service:
    path = write_config(tmp_path, emulator.url, extra=INTAKE)
    (tmp_path / "drop").mkdir()
    return Service(path, restart_policy=FAST, watch_interval_s=3600, log_stream=io.StringIO(), intake_process=True)


def drop(tmp_path: Path, n: int, seed: int) -> str:
    raw = make_report_bytes(n, seed=seed)
    staged = tmp_path / f"staged-{n}-{seed}.json"
    staged.write_bytes(raw)
    os.replace(staged, tmp_path / "drop" / f"r{n}-{seed}.json")
    return str(json.loads(raw)["id"]).lower()


async def test_the_intake_runs_beside_the_service_and_the_control_server_still_drives_it(
        tmp_path: Path, emulator: Emulator) -> None:
    service = station(tmp_path, emulator)
    seen: dict[str, Any] = {}

    async def scenario(svc: Service) -> None:
        client = ControlClient(svc.data_dir, timeout=10)

        async def call(command: str, **args: Any) -> Any:
            return await anyio.to_thread.run_sync(lambda: client.call(command, **args))

        await wait_for(lambda: (svc.status()["intake"] or {}).get("process") == "running"
                       and (svc.data_dir / CONTROL_FILE).exists(), 30)
        status = await call("status")
        child = status["intake"]["pid"]
        seen["child"] = child
        assert child != os.getpid() and alive(child)
        first = drop(tmp_path, 1, seed=5)
        await wait_for(lambda: first in emulator.received_ids(), 30, lambda: service.log_ring.tail(20))
        # The counters the intake process keeps reach status (pushed at most ~0.2 s late).
        await wait_for(lambda: (svc.status()["metrics"]["converted"] or 0) >= 1, 10, svc.status)

        # Pause and resume go through the one control server to the intake process, which says so.
        paused = await call("intake.pause", reason="maintenance")
        assert paused["paused"] is True
        await wait_for(lambda: any("intake paused: maintenance" in line for line in svc.log_ring.tail(200)), 10,
                       lambda: svc.log_ring.tail(20))
        assert (await call("status"))["intake"]["paused_reason"] == "maintenance"
        second = drop(tmp_path, 2, seed=5)
        resumed = await call("intake.resume")
        assert resumed["paused"] is False
        await wait_for(lambda: second in emulator.received_ids(), 30, lambda: service.log_ring.tail(20))

        # The spool is the service's: queue commands see the reports the intake process handed over.
        listed = await call("queue.list", state="sent")
        assert {first, second} <= {row["id"] for row in listed["reports"]}, listed

        # A reload that changes the intake starts a new intake process with the new settings.
        svc.config_path.write_text(svc.config_path.read_text().replace("settle_ms: 50", "settle_ms: 60"))
        await svc.reload("test")
        await wait_for(lambda: svc.status()["intake"].get("pid") not in (None, child)
                       and svc.status()["intake"].get("process") == "running", 30, svc.status)
        await wait_for(lambda: not alive(child), 15, lambda: f"the old intake process {child} is still there")
        seen["child"] = svc.status()["intake"]["pid"]
        third = drop(tmp_path, 3, seed=5)
        await wait_for(lambda: third in emulator.received_ids(), 30, lambda: service.log_ring.tail(20))
        assert svc.status()["tasks"]["intake"]["restarts"] == 0, "a reload is not a crash"

    rc, _ = await serve(service, scenario, timeout=120)
    assert rc == 0
    # A clean stop ends the intake process too.
    await wait_for(lambda: not alive(seen["child"]), 15)
    assert emulator.stats().duplicates == 0


async def test_a_killed_intake_process_is_replaced_and_its_file_is_delivered_once(
        tmp_path: Path, emulator: Emulator) -> None:
    service = station(tmp_path, emulator)

    async def scenario(svc: Service) -> None:
        await wait_for(lambda: (svc.status()["intake"] or {}).get("process") == "running", 30)
        child = svc.status()["intake"]["pid"]
        os.kill(child, 9)
        await wait_for(lambda: svc.status()["intake"].get("pid") not in (None, child)
                       and svc.status()["intake"].get("process") == "running", 30, svc.status)
        assert svc.status()["tasks"]["intake"]["restarts"] == 1
        assert any("intake process" in line and "exited" in line for line in svc.log_ring.tail(200))
        report = drop(tmp_path, 4, seed=6)
        await wait_for(lambda: report in emulator.received_ids(), 30, lambda: svc.log_ring.tail(20))

    rc, _ = await serve(service, scenario, timeout=90)
    assert rc == 0 and emulator.stats().duplicates == 0


async def test_the_intake_stays_in_the_service_process_when_asked(tmp_path: Path, emulator: Emulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(intake_process.ENV, "0")
    path = write_config(tmp_path, emulator.url, extra=INTAKE)
    (tmp_path / "drop").mkdir()
    service = Service(path, restart_policy=FAST, watch_interval_s=3600, log_stream=io.StringIO())

    async def scenario(svc: Service) -> None:
        assert not isinstance(svc.intake, intake_process.IntakeProcess)
        report = drop(tmp_path, 5, seed=7)
        await wait_for(lambda: report in emulator.received_ids(), 30, lambda: svc.log_ring.tail(20))

    rc, _ = await serve(service, scenario, timeout=60)
    assert rc == 0


@pytest.mark.parametrize(("value", "separate"), [(None, True), ("1", True), ("0", False), ("off", False),
                                                 (" No ", False), ("on", True), ("false", False)])
def test_the_process_model_option(monkeypatch: pytest.MonkeyPatch, value: str | None, separate: bool) -> None:
    if value is None:
        monkeypatch.delenv(intake_process.ENV, raising=False)
    else:
        monkeypatch.setenv(intake_process.ENV, value)
    assert intake_process.separate_by_default() is separate


def test_answers_cross_the_pipe_whole() -> None:
    """Accepted results and refusals (with their hint) arrive as they were sent."""
    read, write = os.pipe()
    message = ("accepted", 7, [Accepted("abc", "pending"), InvalidReport("report refused: no id", detail="id"),
                               StorageError("disk full", hint="free space")])
    with os.fdopen(write, "wb") as out:
        out.write(encode(message))
    with os.fdopen(read, "rb") as inp:
        kind, rid, results = read_frame(inp)
        with pytest.raises(EOFError):
            read_frame(inp)
    assert (kind, rid, results[0]) == ("accepted", 7, Accepted("abc", "pending"))
    assert isinstance(results[1], InvalidReport) and results[1].detail == "id"
    assert isinstance(results[2], StorageError) and str(results[2]) == "disk full — free space"


def test_when_the_service_is_gone_every_accept_keeps_its_source() -> None:
    """An accept waiting for the service, and every later one, is a StorageError: intake keeps the
    source (a storage error pauses it; the file is taken again by the next intake process)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with os.fdopen(to_child_r, "rb") as inp, os.fdopen(from_child_w, "wb") as out, \
            os.fdopen(from_child_r, "rb") as service_side:
        link = ServiceLink(inp, out)
        results: list[Any] = []
        waiting = __import__("threading").Thread(
            target=lambda: results.extend(link.accept_many([(b"{}", None), (b"[]", "src")], validated_keys=["k", None])))
        waiting.start()
        request = read_frame(service_side)  # the request reached the service, with the validated ids
        assert request[0] == "accept" and request[2] == [(b"{}", None), (b"[]", "src")] and request[3] == ["k", None]
        os.close(to_child_w)  # ... which then died
        try:
            link.read()
        except EOFError:
            link.gone()
        waiting.join(10)
        assert not waiting.is_alive()
        assert len(results) == 2 and all(isinstance(r, StorageError) and "gone" in str(r) for r in results)
        later = link.accept_many([(b"{}", None), (b"{}", None)])
        assert [type(r) for r in later] == [StorageError, StorageError]


def test_an_intake_process_whose_service_goes_away_mid_accept_keeps_the_source_and_exits(tmp_path: Path) -> None:
    """The service asked to accept a batch and vanished (end of the intake process's stdin) before
    answering: the intake process leaves the source where it is and exits by itself, cleanly."""
    path = write_config(tmp_path, "http://127.0.0.1:9", extra=INTAKE)
    (tmp_path / "drop").mkdir()
    cfg = resolved(load_config(path), path)
    proc = subprocess.Popen([sys.executable, "-m", "stationflow.engine.service.intake_child"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(encode(("init", {"sections": cfg.intake, "station": cfg.station,
                                          "data_dir": str(cfg.data_dir),
                                          "machines": {"conversion": in_force(cfg.lifecycles)["conversion"]},
                                          "log_level": 20, "switch_interval_s": 0.005})))
        proc.stdin.flush()
        deadline = time.monotonic() + 60

        def next_frame() -> Any:
            """The next message, failing (not hanging) if none comes in time."""
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "the intake process sent nothing more in time"
            return read_frame(proc.stdout)

        kinds = []
        while not kinds or kinds[-1] != "ready":
            kinds.append(next_frame()[0])
        drop(tmp_path, 8, seed=9)
        while True:  # logs and status until the request to accept the report
            message = next_frame()
            assert message[0] in ("ready", "status", "logs", "accept"), message[0]
            if message[0] == "logs":
                assert all(level < logging.ERROR for level, _, _ in message[1]), message[1]
            if message[0] == "accept":
                break
        items = message[2]
        assert len(items) == 1 and json.loads(items[0][0])["id"]
        proc.stdin.close()  # gone without an answer
        started = time.monotonic()
        assert proc.wait(20) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [p.name for p in (tmp_path / "drop").iterdir()] == ["r8-9.json"], "the source must stay"


async def test_a_pause_and_a_drain_asked_before_the_process_is_up_reach_it(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The control server may answer before the intake process runs: what it was asked is sent with
    ``init``, and the intake process's own status then says so."""
    caplog.set_level(logging.INFO)
    path = write_config(tmp_path, "http://127.0.0.1:9", extra=INTAKE)
    (tmp_path / "drop").mkdir()
    cfg = resolved(load_config(path), path)
    with open_spool(cfg) as spool:
        proc = intake_process.IntakeProcess(cfg, spool, Path(cfg.data_dir))
        proc.pause("before the start")
        assert proc.status()["paused_reason"] == "before the start" and proc.status()["process"] == "starting"
        async with anyio.create_task_group() as tg:
            tg.start_soon(proc.run)
            await wait_for(lambda: any("intake paused: before the start" in r.getMessage() for r in caplog.records),
                           30, lambda: caplog.text[-2000:])
            with anyio.fail_after(30):
                await proc.drain()
            child = proc.pid
            assert child is not None and alive(child)
            tg.cancel_scope.cancel()
        await wait_for(lambda: not alive(child), 15)

        late = intake_process.IntakeProcess(cfg, spool, Path(cfg.data_dir))
        await late.drain()  # nothing runs yet: returns at once
        async with anyio.create_task_group() as tg:
            tg.start_soon(late.run)

            def child_says_draining() -> bool:
                status = late.status()
                return status["workers"]["size"] > 0 and status["draining"] is True
            await wait_for(child_says_draining, 30, late.status)
            tg.cancel_scope.cancel()


def _intake_children() -> list[int]:
    """Live intake processes started by this (test) process."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"intake_child" in cmdline:
                found.append(int(entry.name))
    return found


async def test_an_intake_process_started_early_ends_when_the_spool_cannot_be_opened(
        tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake process starts while the spool opens; a service that then fails to start leaves
    no intake process behind."""
    started: list[int | None] = []
    real_start = intake_process.IntakeProcess.start

    async def start(self: intake_process.IntakeProcess) -> None:
        await real_start(self)
        started.append(self.pid)

    monkeypatch.setattr(intake_process.IntakeProcess, "start", start)
    service = station(tmp_path, emulator)
    assert _intake_children() == []
    with open_spool(service.config):  # someone else holds the spool
        with pytest.raises(AlreadyRunning, match="in use"):
            await service.run()
    assert service.state == "error"
    assert len(started) == 1 and started[0] is not None, "the intake process was started before the spool"
    assert _intake_children() == [] and not alive(started[0])
