"""The control protocol's error paths, from both ends, and the CLI commands that stand on it.

The server side is a real ``ControlServer`` on loopback (in a background thread) with handlers that
answer what a service might: odd values, a bug in a follow-up, invalid arguments, a service that
never stops. The client side meets real sockets that misbehave (tests/test_control_client.py's
fake service): a stale token, an answer that trickles in, a hello that is never answered. The
CLI runs in-process (``main([...])``) and is judged by its exit code and what it prints; the
"service holds the lock but does not answer" cases hold the lock in a real second process.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient, ControlError
from stationflow.engine.control.commands import build_handlers
from stationflow.engine.control.server import AfterReply, ControlServer
from stationflow.engine.errors import ConfigError, InvalidInput, ServiceNotRunning, StationflowError
from stationflow.engine.layout import DataDir
from stationflow.engine.spool.store import Spool
from stationflow.engine.station_access import StationAccess
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.schemas.config import MASK
from stationflow.schemas.control import PROTOCOL_VERSION
from tests.conftest import ROOT
from tests.test_control import CONFIG_TEXT, FakeService, serve
from tests.test_control_client import _read_line, _welcome, fake_service

__all__ = ["fake_service"]


def station(folder: Path, extra: str = "") -> Path:
    path = folder / "station.yaml"
    path.write_text("station: {name: PATHS-01}\nserver: {url: 'http://127.0.0.1:9', token: dG9rZW4=}\n"
                    "data_dir: ./data\nshutdown: {grace_s: 1}\nspool: {min_free_disk: 0}\n" + extra)
    (folder / "data").mkdir(exist_ok=True)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Another process holding a data dir's one-instance lock (as a service that hangs would)."""
    procs: list[subprocess.Popen[str]] = []

    def hold(data_dir: Path) -> subprocess.Popen[str]:
        code = ("import sys; from filelock import FileLock; from stationflow.engine.layout import DataDir\n"
                "d = DataDir.of(sys.argv[1]); d.lock_file.parent.mkdir(parents=True, exist_ok=True)\n"
                "lock = FileLock(str(d.lock_file), thread_local=False); lock.acquire()\n"
                "print('held', flush=True); sys.stdin.read()\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(data_dir)], cwd=ROOT, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(20)


# ---------------------------------------------------------------------- the server

class Colour(enum.Enum):
    RED = "red"


class Part(BaseModel):
    name: str
    token: SecretStr


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_answers_of_any_plain_type_arrive_as_json_and_a_secret_only_as_the_mask(tmp_path: Path) -> None:
    async def odd(_: dict[str, Any]) -> Any:
        return {"secret": SecretStr("hunter2"), "part": Part(name="uploader", token=SecretStr("s3")),
                "path": PurePosixPath("/data/spool"), "at": datetime(2026, 11, 30, 10, 45, tzinfo=timezone.utc),
                "day": date(2026, 11, 30), "colour": Colour.RED, "set": {3}, "pair": (1, 2),
                "recent": collections.deque([4, 5]), "point": Point(1, 2)}

    with serve(tmp_path, {"status": odd}):
        got = ControlClient(tmp_path, timeout=5).call("status")
    assert got == {"secret": MASK, "part": {"name": "uploader", "token": "**********"}, "path": "/data/spool",
                   "at": "2026-11-30T10:45:00+00:00", "day": "2026-11-30", "colour": "red", "set": [3],
                   "pair": [1, 2], "recent": [4, 5], "point": {"x": 1, "y": 2}}
    assert "hunter2" not in json.dumps(got) and "s3" not in json.dumps(got)


def test_a_handler_that_finds_bad_arguments_answers_bad_args_with_the_fields(tmp_path: Path) -> None:
    async def strict(args: dict[str, Any]) -> Any:
        return Part.model_validate(args)

    with serve(tmp_path, {"status": strict}):
        with pytest.raises(StationflowError) as caught:
            ControlClient(tmp_path, timeout=5).call("status", name=5)
    err = caught.value
    assert getattr(err, "code", None) == "bad_args" and err.exit_code == InvalidInput.exit_code
    assert str(err).startswith("bad arguments for status")
    problems = getattr(err, "problems", [])
    assert any(p.startswith("name:") for p in problems) and any(p.startswith("token:") for p in problems)


def test_a_follow_up_that_fails_is_logged_and_the_server_keeps_serving(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def explode() -> None:
        raise RuntimeError("the follow-up broke")

    async def stop(_: dict[str, Any]) -> Any:
        return AfterReply({"stopping": True}, explode)

    followed = threading.Event()

    async def later() -> None:
        followed.set()

    async def status(_: dict[str, Any]) -> Any:
        return AfterReply({"service": {"state": "running"}}, later)

    with caplog.at_level(logging.ERROR, logger="stationflow.engine.control.server"), \
            serve(tmp_path, {"stop": stop, "status": status}):
        client = ControlClient(tmp_path, timeout=5)
        assert client.call("stop") == {"stopping": True}
        deadline = time.monotonic() + 10
        while "the follow-up of a command failed" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
        assert client.call("status") == {"service": {"state": "running"}}
        assert followed.wait(10)  # an async follow-up is awaited
    assert "the follow-up broke" in caplog.text


def test_impossible_server_settings_are_refused_before_listening(tmp_path: Path) -> None:
    with pytest.raises(StationflowError, match="control port 70000 is not a TCP port"):
        ControlServer(tmp_path, {}, port=70000)
    with pytest.raises(ValueError, match="max_line >= 64"):
        ControlServer(tmp_path, {}, max_line=10)


def test_a_control_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import anyio

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ControlServer(tmp_path, {}, port=port)
        with pytest.raises(StationflowError, match=f"cannot listen on 127.0.0.1:{port}") as caught:
            anyio.run(server.serve)
    assert "control.port to 0" in (caught.value.hint or "")
    assert not DataDir(tmp_path).control_file.exists()


def test_an_oversized_request_is_refused_and_the_client_raises_the_servers_reason(tmp_path: Path) -> None:
    async def status(_: dict[str, Any]) -> Any:
        return {}

    with serve(tmp_path, {"status": status}, max_line=4096):
        with pytest.raises(StationflowError) as caught:
            ControlClient(tmp_path, timeout=5).call("status", blob="x" * 10_000)
    assert getattr(caught.value, "code", None) == "too_large"
    assert "longer than the limit of 4096 bytes" in str(caught.value)


# ---------------------------------------------------------------------- the client

def test_a_token_replaced_by_a_restart_is_read_again_once(fake_service: Any) -> None:
    seen: list[int] = []

    def behaviour(conn: socket.socket) -> None:
        seen.append(1)
        if len(seen) == 1:
            _read_line(conn)
            conn.sendall(json.dumps({"id": None, "ok": False, "error": {
                "code": "unauthorized", "message": "wrong token"}}).encode() + b"\n")
            return
        _welcome(conn)
        request = json.loads(_read_line(conn))
        conn.sendall(json.dumps({"id": request["id"], "ok": True, "result": {"fine": True}}).encode() + b"\n")

    data = fake_service(behaviour)
    assert ControlClient(data, timeout=5).call("status") == {"fine": True}
    assert len(seen) == 2


def test_a_token_refused_twice_is_an_error(fake_service: Any) -> None:
    def behaviour(conn: socket.socket) -> None:
        _read_line(conn)
        conn.sendall(json.dumps({"id": None, "ok": False, "error": {
            "code": "unauthorized", "message": "wrong token"}}).encode() + b"\n")

    data = fake_service(behaviour)
    with pytest.raises(StationflowError, match="wrong token"):
        ControlClient(data, timeout=5).call("status")


def test_an_answer_that_trickles_in_without_end_times_out(fake_service: Any) -> None:
    release = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _read_line(conn)
        conn.sendall(b'{"id": 1, "ok": true, "result": "')
        while not release.wait(0.05):
            conn.sendall(b"x")

    data = fake_service(behaviour)
    started = time.monotonic()
    try:
        with pytest.raises(ControlError) as caught:
            ControlClient(data, timeout=0.5).call("status")
    finally:
        release.set()
    assert caught.value.code == "timeout" and "did not answer within" in str(caught.value)
    assert time.monotonic() - started < 10


def test_a_hello_that_is_never_answered_times_out(fake_service: Any) -> None:
    release = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        _read_line(conn)
        release.wait(10)

    data = fake_service(behaviour)
    try:
        with pytest.raises(ControlError, match="did not answer the hello in time") as caught:
            ControlClient(data, timeout=0.5).call("status")
    finally:
        release.set()
    assert caught.value.code == "timeout"


def test_a_program_that_answers_the_hello_then_speaks_http_is_not_the_service(fake_service: Any) -> None:
    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _read_line(conn)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    data = fake_service(behaviour)
    with pytest.raises(ServiceNotRunning, match="something else answers on 127.0.0.1:"):
        ControlClient(data, timeout=3).call("status")


def test_an_unreadable_token_file_says_so(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        data.control_file.write_text(json.dumps({"port": listening.getsockname()[1], "protocol": PROTOCOL_VERSION}))
        data.token_file.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(StationflowError, match=f"cannot read {data.token_file}"):
            ControlClient(tmp_path, timeout=2).call("status")


def test_a_service_of_another_protocol_counts_as_running(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    data.control_file.write_text(json.dumps({"port": 9, "protocol": PROTOCOL_VERSION + 1}))
    data.token_file.write_text("tok")
    assert ControlClient(tmp_path, timeout=1).is_running() is True


def test_waiting_for_a_service_that_does_not_stop_gives_up_at_the_timeout(fake_service: Any) -> None:
    data = fake_service(lambda conn: _welcome(conn))
    client = ControlClient(data, timeout=2)
    started = time.monotonic()
    assert client.wait_until_stopped(0.3, poll_s=0.05) is False
    assert 0.3 <= time.monotonic() - started < 10


# ---------------------------------------------------------------------- the CLI

def test_stop_gives_up_after_its_timeout_while_the_service_holds_its_lock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lock_holder: Any) -> None:
    config = station(tmp_path)
    data_dir = tmp_path / "data"
    stops: list[bool] = []

    async def stop(_: dict[str, Any]) -> Any:
        stops.append(True)
        return {"pid": 4242, "grace_s": 1}

    lock_holder(data_dir)
    with serve(data_dir, {"stop": stop}):
        rc, _, err = run_cli(capsys, "-c", str(config), "stop", "--timeout", "0.3")
    assert stops == [True]
    assert rc == StationflowError.exit_code
    assert "stationflow: error: the service (pid 4242) is still stopping after 0.3 s" in err


def test_stop_with_a_broken_config_that_names_no_data_dir_reports_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("station: {name: X}\ndata_dir: [not, a, path]\n")
    rc, _, err = run_cli(capsys, "-c", str(config), "stop")
    assert rc == ConfigError.exit_code and err.startswith("stationflow: error: ")
    assert "data_dir" in err


def test_healthcheck_of_a_service_that_holds_the_lock_but_does_not_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lock_holder: Any) -> None:
    config = station(tmp_path)
    proc = lock_holder(tmp_path / "data")
    DataDir.of(tmp_path / "data").pid_file.write_text(f"{proc.pid}\n")
    rc, out, err = run_cli(capsys, "-c", str(config), "healthcheck")
    assert rc == 1 and not out
    assert err.startswith(f"unhealthy: a service (pid {proc.pid}) holds the lock of ")
    assert "does not answer on the control protocol" in err


def test_healthcheck_of_a_service_still_starting_is_unhealthy_with_its_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = station(tmp_path)

    async def status(_: dict[str, Any]) -> Any:
        return {"service": {"state": "starting", "reason": "recovering the spool"}, "reports": {}}

    with serve(tmp_path / "data", {"status": status}):
        rc, out, err = run_cli(capsys, "-c", str(config), "healthcheck")
    assert rc == 1 and err == "unhealthy: the service is starting: recovering the spool\n"


def test_status_of_a_live_service_prints_notes_and_parts_of_any_shape(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = station(tmp_path)

    async def status(_: dict[str, Any]) -> Any:
        return {"service": {"state": "running", "pid": 7, "file_notes": ["spool/x.json was held by another program"]},
                "reports": {"pending": 1}, "uploader": "not started", "intake": None,
                "tasks": {"uploader": {"state": "running"}, "legacy": "running"},
                "health": {"state": "ok", "summary": "fine", "reasons": []}}

    with serve(tmp_path / "data", {"status": status}):
        rc, out, _ = run_cli(capsys, "-c", str(config), "status")
    assert rc == 0
    assert "note: spool/x.json was held by another program" in out
    assert "  task legacy: running" in out
    assert "not started" in out


def test_status_and_queue_commands_from_the_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = station(tmp_path)
    with Spool(tmp_path / "data") as spool:
        key = spool.accept(make_report_bytes(1, seed=3)).key
        spool.accept(make_report_bytes(2, seed=3))
    rc, out, _ = run_cli(capsys, "-c", str(config), "status")
    assert rc == 0
    assert out.startswith("service: ")
    assert "reports: pending 2" in out
    rc, out, err = run_cli(capsys, "-c", str(config), "queue", "show", key, "--json")
    assert rc == 0 and json.loads(out)["id"] == key and json.loads(out)["state"] == "pending"
    rc, out, err = run_cli(capsys, "-c", str(config), "queue", "retry")
    assert rc == InvalidInput.exit_code
    assert "stationflow: error: name the reports to retry, or give --all-failed" in err


@pytest.mark.slow
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_file_that_cannot_be_converted_is_refused_with_its_detail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], dry_run: bool) -> None:
    config = station(tmp_path)
    bad = tmp_path / "broken.json"
    bad.write_text('{"type": "T"}')  # a report with every required field missing
    rc, out, err = run_cli(capsys, "-c", str(config), "submit", str(bad), *(["--dry-run"] if dry_run else []))
    assert rc == InvalidInput.exit_code
    assert f"stationflow: error: {bad}: " in err
    assert "(and 7 more problem(s))\n  detail: report #1: pn: missing" in err
    with Spool(tmp_path / "data") as spool:
        assert sum(spool.counts().values()) == 0


# ---------------------------------------------------------------------- commands, against a stand-in service

@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[FakeService]:
    path = tmp_path / "station.yaml"
    path.write_text(CONFIG_TEXT + f"intake:\n  - {{name: ict, watch: '{tmp_path / 'drop'}', converter: wsjf}}\n")
    (tmp_path / "drop").mkdir()
    svc = FakeService(path)
    yield svc
    if svc.spool is not None:
        svc.spool.close()


def test_commands_say_which_part_is_missing(stand_in: FakeService) -> None:
    spool = stand_in.spool
    with serve(stand_in.data_dir, build_handlers(stand_in)):
        client = ControlClient(stand_in.data_dir, timeout=5)
        stand_in.intake = None  # type: ignore[assignment]
        with pytest.raises(StationflowError, match="no intake is running on this station"):
            client.call("intake.pause", reason="maintenance")
        stand_in.spool, stand_in.state = None, "starting"
        with pytest.raises(StationflowError, match=r"the spool is not open \(the service is starting\)"):
            client.call("queue.list")
    stand_in.spool = spool


@pytest.mark.slow
def test_submit_through_the_service_names_an_intake_and_needs_absolute_paths(stand_in: FakeService,
                                                                             tmp_path: Path) -> None:
    report = tmp_path / "drop" / "one.json"
    report.write_bytes(make_report_bytes(7, seed=9))
    with serve(stand_in.data_dir, build_handlers(stand_in)):
        client = ControlClient(stand_in.data_dir, timeout=30)
        with pytest.raises(InvalidInput, match="submit needs absolute paths"):
            client.call("submit", paths=["drop/one.json"], converter="ict")
        answer = client.call("submit", paths=[str(report)], converter="ict")
    [result] = answer["results"]
    assert result["error"] is None and len(result["accepted"]) == 1
    assert stand_in.spool is not None and stand_in.spool.counts()["pending"] == 1


def test_config_get_of_a_broken_file_shows_the_running_settings_and_the_problems(stand_in: FakeService) -> None:
    stand_in.config_path.write_text("station: {name: X}\nserver: {url: 'ftp://nowhere'}\n")
    with serve(stand_in.data_dir, build_handlers(stand_in)):
        got = ControlClient(stand_in.data_dir, timeout=5).call("config.get")
    assert got["source"] == "running"
    assert got["config"]["station"]["name"] == "CTRL-01"
    assert any("server.url" in p for p in got["problems"])


def test_config_apply_that_the_service_refuses_to_reload_says_the_old_settings_stay(
        stand_in: FakeService) -> None:
    async def refuse(source: str = "signal") -> list[str]:
        raise ConfigError("intake ict: the watch folder cannot be watched", problems=["intake[0].watch: busy"])

    stand_in.reload = refuse  # type: ignore[method-assign]
    with serve(stand_in.data_dir, build_handlers(stand_in)):
        client = ControlClient(stand_in.data_dir, timeout=10)
        data = client.call("config.get")["config"]
        data["upload"]["rate_per_s"] = 5.0
        with pytest.raises(ConfigError) as caught:
            client.call("config.apply", data=data)
    message = str(caught.value)
    assert f"{stand_in.config_path} was saved, but the service refused to reload it" in message
    assert "the old settings stay in force" in message
    assert getattr(caught.value, "problems", []) == ["intake[0].watch: busy"]
    assert Path(f"{stand_in.config_path}.bak").exists()


# ---------------------------------------------------------------------- station access (live, else disk)

def _access(config: Path) -> StationAccess:
    return StationAccess(resolved(load_config(config), config), timeout=5)


def test_the_disk_lists_reports_by_page_and_refuses_an_unknown_state(tmp_path: Path) -> None:
    config = station(tmp_path)
    with Spool(tmp_path / "data") as spool:
        keys = [spool.accept(make_report_bytes(i, seed=4)).key for i in range(3)]
    access = _access(config)
    every = access.reports("pending").rows
    assert sorted(r["id"] for r in every) == sorted(keys)
    page = access.reports("pending", offset=1, limit=1)
    assert page.source == "disk" and page.total == 3 and page.rows == every[1:2]
    with pytest.raises(InvalidInput, match="unknown state 'lost'"):
        access.reports("lost")


def test_reprocess_refuses_a_file_that_is_not_a_rejected_one(tmp_path: Path) -> None:
    config = station(tmp_path, f"intake:\n  - {{name: ict, watch: '{tmp_path}', converter: wsjf}}\n")
    stray = tmp_path / "stray.json"
    stray.write_text("{}")
    with pytest.raises(StationflowError, match="is not a rejected file of intake ict"):
        _access(config).reprocess("ict", stray)


def test_an_older_service_without_health_is_judged_here_and_its_errors_are_not_a_stopped_service(
        tmp_path: Path) -> None:
    config = station(tmp_path)
    broken = {"on": False}

    async def status(_: dict[str, Any]) -> Any:
        if broken["on"]:
            raise RuntimeError("a bug in the service")
        return {"service": {"state": "stopping"}, "reports": {"pending": 2}}

    with serve(tmp_path / "data", {"status": status}):
        answer = _access(config).status()
        assert answer.live and answer.data["health"]["state"] == "warning"
        assert answer.data["health"]["summary"] == "the service is stopping"
        broken["on"] = True
        with pytest.raises(ControlError, match="internal error while running status"):
            _access(config).status()


def test_a_service_that_stops_answering_mid_listing_is_reported_not_half_listed(tmp_path: Path) -> None:
    config = station(tmp_path)
    with Spool(tmp_path / "data") as spool:
        for i in range(2):
            key = spool.accept(make_report_bytes(i, seed=6)).key
            assert spool.claim_next() is not None
            spool.fire(key, "rejected", error="400: bad serial")
    calls: list[dict[str, Any]] = []

    async def queue_list(args: dict[str, Any]) -> Any:
        calls.append(args)
        if len(calls) > 1:
            raise ServiceNotRunning("the service is stopping")
        return {"total": 2, "offset": 0, "reports": [{"id": "a" * 32, "state": "failed", "path": ""}]}

    async def status(_: dict[str, Any]) -> Any:
        return {"service": {"state": "running"}, "reports": {"failed": 2}}

    with serve(tmp_path / "data", {"queue.list": queue_list, "status": status}):
        access = _access(config)
        with pytest.raises(ServiceNotRunning, match="stopped answering while listing reports"):
            access.reports("failed", limit=2)
        # problems(): status answers but listing does not (it used to ask again, forever): the disk answers
        page = access.problems()
    assert page.source == "disk" and page.total == 2 and {r["state"] for r in page.rows} == {"failed"}


def test_a_control_file_with_a_port_out_of_range_is_a_stale_file_not_a_crash(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    data.token_file.write_text("tok")
    for port in (70000, 0, -1, True):
        data.control_file.write_text(json.dumps({"port": port, "protocol": PROTOCOL_VERSION}))
        with pytest.raises(ServiceNotRunning, match="names no port"):
            ControlClient(tmp_path, timeout=1).call("status")


def _reset(conn: socket.socket) -> None:
    """Close with a reset (RST), as a process that dies does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_a_service_that_resets_the_connection_at_once_is_a_connection_error(
        fake_service: Any) -> None:
    """Where the reset lands (the connect, the hello sent, the hello awaited) is up to the kernel;
    each is one clear error, never a traceback or a hang."""
    data = fake_service(_reset)
    with pytest.raises(StationflowError) as at_once:
        ControlClient(data, timeout=3).call("status")
    err = at_once.value
    if isinstance(err, ServiceNotRunning):
        assert "is not reachable on 127.0.0.1:" in str(err) and "reset" in str(err).lower()
    else:
        assert getattr(err, "code", None) == "connection" and "closed the connection" in str(err)


def test_a_service_that_resets_the_connection_after_the_hello(fake_service: Any) -> None:
    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _reset(conn)

    data = fake_service(behaviour)
    with pytest.raises(ControlError) as caught:
        ControlClient(data, timeout=3).call("status")
    assert caught.value.code == "connection"
    assert "broke" in str(caught.value) or "before answering status" in str(caught.value)
