"""The health model: ``status --json`` says ``ok``/``warning``/``error`` with reasons, live and from disk.

The pure rules are checked on status dicts; the promises that matter are checked for real: a real
``stationflow run`` against the emulator over loopback with the token refused, with the server
down, with a file that cannot be converted, and after ``kill -9``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.health import health_of
from stationflow.engine.spool.store import Spool
from tests.conftest import ROOT
from tests.helpers_service import ServiceRun

WRONG_TOKEN = "d3Jvbmc6dG9rZW4x"


# ---------------------------------------------------------------------- the rules, on status dicts

def _running(**parts: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"service": {"state": "running"}, "reports": {"pending": 0, "sent": 5},
                              "uploader": {"mode": "online"},
                              "intake": {"paused": False, "intakes": {"ict": {"problem": None, "counts": {}}}}}
    status.update(parts)
    return status


def test_all_well_is_ok_and_says_so() -> None:
    health = health_of(_running())
    assert health == {"state": "ok", "summary": "running; uploads flowing; 1 watch folder healthy", "reasons": []}


def test_a_refused_token_is_an_error_at_server_token_with_time_and_safe_reports() -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "+00:00"
    status = _running(reports={"pending": 28, "retry_wait": 2, "sent": 1, "failed": 0},
                      uploader={"mode": "paused", "reason": "server answered 401: token refused", "since": since})
    health = health_of(status)
    assert health["state"] == "error"
    reason = health["reasons"][0]
    assert reason["field"] == "server.token" and reason["page"] == "Connection"
    local = time.strftime("%H:%M", time.localtime())
    assert reason["text"].startswith(f"the server refuses the token (401) since {local}")
    assert "30 reports safe in the spool, waiting" in reason["text"]


def test_an_unreachable_server_and_a_missing_watch_folder_name_their_fields() -> None:
    status = _running(uploader={"mode": "offline", "reason": "5 failures in a row; last: connection refused"},
                      intake={"paused": False, "intakes": {
                          "a": {"problem": None}, "b": {"problem": "the watch folder /x does not exist (yet)"}}})
    health = health_of(status)
    fields = [r["field"] for r in health["reasons"]]
    assert health["state"] == "error" and fields == ["server.url", "intake[1].watch"]
    assert "cannot be reached" in health["reasons"][0]["text"]


def test_waiting_for_a_person_is_a_warning_not_an_error() -> None:
    status = _running(reports={"pending": 0, "failed": 2, "quarantined": 1},
                      intake={"paused": True, "paused_reason": "by an operator", "intakes": {"ict": {}}},
                      rejected_files={"ict": 12})
    health = health_of(status)
    assert health["state"] == "warning"
    texts = [r["text"] for r in health["reasons"]]
    assert any(t.startswith("intake ict: 12 files could not be converted") for t in texts)
    assert any(t.startswith("2 reports were refused by the server") for t in texts)
    assert any(t.startswith("1 report is quarantined") for t in texts)
    assert any(t.startswith("intake is paused (by an operator)") for t in texts)
    assert health["summary"].endswith("(and 3 more)")


def test_a_degraded_service_names_the_task_that_gave_up() -> None:
    status = _running(service={"state": "degraded", "degraded_because": {"task:uploader": "crashed 5 times"}},
                      tasks={"uploader": {"state": "given_up", "given_up_reason": "crashed 5 times"}})
    health = health_of(status)
    assert health["state"] == "error"
    assert [r["text"] for r in health["reasons"]] == [
        "the service is degraded: uploader stopped after repeated failures (crashed 5 times) — see the log, "
        "fix the cause, then Reload"]


# ---------------------------------------------------------------------- for real

def _config(folder: Path, url: str, *, token: str = DEFAULT_TOKEN, intake: str = "") -> Path:
    path = folder / "station.yaml"
    path.write_text(
        "station: {name: HEALTH-01}\n"
        f"server: {{url: '{url}', token: {token}, timeout_s: 5, connect_timeout_s: 1}}\n"
        "data_dir: ./data\n"
        "upload: {concurrency: 2, retry: {initial_s: 0.05, max_s: 0.2, offline_after: 2}}\n"
        "shutdown: {grace_s: 3}\n"
        "spool: {min_free_disk: 0}\n" + intake, encoding="utf-8")
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _status(config: Path) -> dict[str, Any]:
    done = _cli(config, "status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture
def service_of() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    started: list[ServiceRun] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        started.append(ServiceRun(config, ready_s=30))
        return started[-1].proc

    yield start
    for service in started:
        service.stop(20)


def _wait_health(config: Path, check: Callable[[dict[str, Any]], bool], what: str,
                 timeout: float = 30) -> dict[str, Any]:
    client = ControlClient(config.parent / "data")
    deadline = time.monotonic() + timeout
    while True:
        status = client.call("status")
        if check(status):
            return dict(status)
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s; health: {status.get('health')}"
        time.sleep(0.05)


def _seed(data_dir: Path, n: int) -> None:
    with Spool(data_dir) as spool:
        for i in range(n):
            spool.accept(make_report_bytes(i, seed=21))


def test_token_refused_makes_status_and_healthcheck_unhealthy(tmp_path: Path, service_of: Any) -> None:
    with Emulator(port=0, seed=3) as emulator:
        config = _config(tmp_path, emulator.url, token=WRONG_TOKEN)
        _seed(tmp_path / "data", 3)
        service_of(config)
        _wait_health(config, lambda s: (s.get("uploader") or {}).get("mode") == "paused", "uploads paused")
        status = _status(config)
        health = status["health"]
        assert health["state"] == "error", health
        assert [r["field"] for r in health["reasons"]] == ["server.token"], health
        assert "refuses the token (401)" in health["reasons"][0]["text"]
        assert "3 reports safe in the spool" in health["reasons"][0]["text"]
        check = _cli(config, "healthcheck")
        assert check.returncode == 1 and "refuses the token" in check.stderr
        human = _cli(config, "status")
        assert "health: error" in human.stdout and "[server.token]" in human.stdout


def test_server_down_is_an_error_at_server_url(tmp_path: Path, service_of: Any) -> None:
    with Emulator(port=0, seed=3) as emulator:
        config = _config(tmp_path, emulator.url)
        emulator.go_down()
        _seed(tmp_path / "data", 2)
        service_of(config)
        status = _wait_health(config, lambda s: s["health"]["state"] == "error", "the server counted as down")
        assert status["health"]["reasons"][0]["field"] == "server.url"
        assert "cannot be reached" in status["health"]["reasons"][0]["text"]
        assert _cli(config, "healthcheck").returncode == 1


def test_a_file_that_cannot_be_converted_fails_only_the_strict_healthcheck(tmp_path: Path, service_of: Any) -> None:
    (tmp_path / "drop").mkdir()
    intake = ("intake:\n  - {name: ict, watch: ./drop, patterns: ['*.json'], converter: wsjf, settle_ms: 50, "
              "after: archive}\n")
    with Emulator(port=0, seed=3) as emulator:
        config = _config(tmp_path, emulator.url, intake=intake)
        service_of(config)
        (tmp_path / "drop" / "broken.json").write_text("{not json", encoding="utf-8")
        status = _wait_health(config, lambda s: s["health"]["state"] == "warning", "the file to be rejected")
        reason = status["health"]["reasons"][0]
        assert reason["field"] == "intake[0]" and reason["text"].startswith("intake ict: 1 file could not be converted")
        assert status["rejected_files"] == {"ict": 1}
        relaxed, strict = _cli(config, "healthcheck"), _cli(config, "healthcheck", "--strict")
        assert relaxed.returncode == 0, relaxed.stderr
        assert strict.returncode == 1 and "could not be converted" in strict.stderr


def test_from_disk_a_missing_watch_folder_and_a_killed_service_are_reported(tmp_path: Path, service_of: Any) -> None:
    intake = "intake:\n  - {name: ict, watch: ./nowhere, converter: wsjf}\n"
    with Emulator(port=0, seed=3) as emulator:
        config = _config(tmp_path, emulator.url, intake=intake)
        stopped = _status(config)
        assert stopped["service"]["state"] == "stopped" and stopped["health"]["state"] == "error"
        fields = [r["field"] for r in stopped["health"]["reasons"]]
        assert fields == [None, "intake[0].watch"]
        proc = service_of(config)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = _status(config)
        assert killed["service"]["state"] == "ended unexpectedly"
        assert killed["health"]["reasons"][0]["text"].startswith(f"the service ended unexpectedly (pid {proc.pid})")
