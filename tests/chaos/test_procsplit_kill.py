"""``kill -9`` of the intake process, then of the service process, while files keep arriving.

The intake runs in a process of its own (engine/service/intake_process.py). Killing it must cost
nothing: the supervisor starts a new one, which converts again whatever had not been answered (the
same ids: "already present", so no report twice). Killing the service process alone must take the
intake process with it (it sees end-of-file on its stdin), and the next start recovers as always.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.service.intake_process import ENV
from tests.chaos.harness import Dropper, Station, wait_for


def intake_process_of(service_pid: int) -> int | None:
    """The pid of the service's intake process (a child running intake_child), if there is one."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == service_pid and b"intake_child" in cmdline:
            return int(entry.name)
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_of_the_intake_process_and_of_the_service_under_load_loses_nothing(
        tmp_path: Path, emulator: Emulator, stations: list[Station], scale: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")  # the service started below runs its intake in a process of its own
    files, concurrency = 400 * scale, 4
    station = Station(tmp_path / "station", emulator.url, seed=3, concurrency=concurrency)
    stations.append(station)
    station.start()
    dropper = Dropper(station, files, per_s=40)
    dropper.start()
    service = station.proc
    assert service is not None

    # 1. The intake process, twice, while files flow: a new one takes over each time.
    for kill in range(2):
        floor = len(emulator.received_ids()) + 20
        wait_for(lambda: len(emulator.received_ids()) >= floor, 60, "reports flowing to the server",
                 lambda: station.missing_at_server(emulator))
        child = wait_for(lambda: intake_process_of(service.pid), 60, "the intake process", station.log_tail)
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: (intake_process_of(service.pid) or child) != child, 60,
                 f"a new intake process after kill {kill + 1}", station.log_tail)
    assert service.poll() is None, station.log_tail()
    assert emulator.stats().duplicates == 0, "killing the intake process made the uploader send a report twice"

    # 2. The service process alone (not its group): its intake process must not outlive it.
    wait_for(lambda: len(emulator.received_ids()) >= floor + 20, 60, "reports flowing again",
             lambda: station.missing_at_server(emulator))
    child = wait_for(lambda: intake_process_of(service.pid), 60, "the intake process", station.log_tail)
    os.kill(service.pid, signal.SIGKILL)
    service.wait(15)
    wait_for(lambda: not alive(child), 20, "the orphaned intake process to exit")
    station.check(emulator).assert_ok("after kill -9 of the service")
    station.close()  # converter workers of the killed group, if any are still unwinding

    station.start()
    dropper.finish()
    verdict = station.drain_and_check(emulator, 180 * scale, "at the end")
    assert verdict.on_server == files and verdict.in_rejected == 0, verdict.line()
    # Exactly once, except the uploads in flight when the service died (resent with the same id).
    assert emulator.stats().duplicates <= concurrency, verdict.line()
    assert "intake process" in station.all_logs()
