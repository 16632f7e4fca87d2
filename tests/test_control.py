"""The control protocol against a real server on loopback: commands, bad clients, the CLI, a real service.

The server runs in a background thread (an anyio blocking portal) around a small stand-in for the
service that has a real spool on disk; clients are real sockets. The last tests start a real
``stationflow run`` process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient, ControlError
from stationflow.engine.control.commands import build_handlers
from stationflow.engine.control.server import ControlServer
from stationflow.engine.errors import ConfigError, ReportNotFound, ServiceNotRunning, StationflowError
from stationflow.engine.service.logs import LogRing
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import MASK
from stationflow.engine.layout import CONTROL_FILE, TOKEN_FILE
from stationflow.schemas.control import COMMANDS, PROTOCOL_VERSION, Response

ROOT = Path(__file__).resolve().parents[1]
CONFIG_TEXT = """\
station: {name: CTRL-01}
server:
  url: http://127.0.0.1:9
  token: s3cret-token-value
data_dir: ./data
shutdown: {grace_s: 2}
"""


# ----------------------------------------------------------------------------------------------
# A stand-in for engine.service.Service with the API the control commands use (real spool)
# ----------------------------------------------------------------------------------------------

class FakeIntake:
    def __init__(self) -> None:
        self.paused: str | None = None

    def pause(self, reason: str) -> None:
        self.paused = reason

    def resume(self) -> None:
        self.paused = None

    def status(self) -> dict[str, Any]:
        return {"paused": self.paused is not None, "reason": self.paused}


class FakeService:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = resolved(load_config(config_path), config_path)
        self.data_dir = Path(self.config.data_dir)
        self.spool: Spool | None = Spool(self.data_dir)
        self.uploader = None
        self.intake = FakeIntake()
        self.state = "running"
        self.stops: list[str] = []
        self.reloads: list[str] = []
        self.log_ring = LogRing(50)
        for i in range(5):
            self.log_ring.emit(logging.LogRecord("svc", logging.INFO, __file__, 1, f"line {i}", None, None))

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)

    async def reload(self, source: str = "signal") -> list[str]:
        self.reloads.append(source)
        new = await anyio.to_thread.run_sync(lambda: resolved(load_config(self.config_path), self.config_path))
        notes = [] if new == self.config else ["settings changed"]
        self.config = new
        return notes

    def status(self) -> dict[str, Any]:
        return {"service": {"state": self.state, "pid": os.getpid()}, "reports": self.spool.counts(),
                "tasks": {"control": {"state": "running"}}, "uploader": None, "intake": self.intake.status(),
                "metrics": {"sent": 0, "failed": 0}}

    def add_failed(self, index: int, error: str = "400: serial number missing") -> str:
        key = self.spool.accept(make_report_bytes(index, seed=11)).key
        claim = self.spool.claim_next()
        assert claim is not None and claim.key == key
        self.spool.fire(key, "rejected", error=error)
        return key


@contextlib.contextmanager
def serve(data_dir: Path, handlers: dict[str, Any], **kwargs: Any) -> Iterator[tuple[ControlServer, int]]:
    """A real ControlServer on 127.0.0.1, in a background thread, cancelled on exit.

    Its own event loop in a thread (a blocking portal), not an async test: the clients under test
    are blocking sockets and the synchronous CLI, which run in the test's thread meanwhile."""
    server = ControlServer(data_dir, handlers, **kwargs)
    with anyio.from_thread.start_blocking_portal() as portal:
        future, port = portal.start_task(server.serve)
        try:
            yield server, port
        finally:
            future.cancel()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(CONFIG_TEXT)
    return path


@pytest.fixture
def service(config_path: Path) -> Iterator[FakeService]:
    svc = FakeService(config_path)
    yield svc
    svc.spool.close()


@pytest.fixture
def served(service: FakeService) -> Iterator[tuple[ControlServer, int]]:
    with serve(service.data_dir, build_handlers(service), idle_timeout_s=2.0) as pair:
        yield pair


# ----------------------------------------------------------------------------------------------
# Raw sockets, for clients that misbehave
# ----------------------------------------------------------------------------------------------

def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def token_of(data_dir: Path) -> str:
    return (data_dir / TOKEN_FILE).read_text()


def send(sock: socket.socket, message: Any) -> None:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    sock.sendall(data + b"\n")


def read_message(sock: socket.socket) -> dict[str, Any] | None:
    """One line from the server, checked against the Response schema; None at end of stream."""
    data = bytearray()
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(1)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None
        data += chunk
    message = json.loads(data)
    Response.model_validate(message)
    return message


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def hello(sock: socket.socket, data_dir: Path) -> dict[str, Any]:
    send(sock, {"protocol": PROTOCOL_VERSION, "token": token_of(data_dir)})
    answer = read_message(sock)
    assert answer is not None and answer["ok"], answer
    return answer


def served_well(data_dir: Path) -> None:
    """A well-behaved client gets its answer."""
    status = ControlClient(data_dir, timeout=5.0).call("status")
    assert status["service"]["state"] == "running"


def refusals(caplog: pytest.LogCaptureFixture, code_words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "stationflow.engine.control.server" and r.levelno == logging.WARNING and re.search(code_words,
                                                                                                 r.getMessage())]


# ----------------------------------------------------------------------------------------------
# The files in the data dir
# ----------------------------------------------------------------------------------------------

def test_server_publishes_port_and_a_private_token_then_removes_them(service: FakeService) -> None:
    data_dir = service.data_dir
    with serve(data_dir, build_handlers(service)) as (server, port):
        info = json.loads((data_dir / CONTROL_FILE).read_text())
        assert info["port"] == port == server.port
        assert info["pid"] == os.getpid() and info["protocol"] == PROTOCOL_VERSION
        token_file = data_dir / TOKEN_FILE
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        first = token_file.read_text()
        assert len(first) >= 40
        assert not [p for p in data_dir.iterdir() if p.name.endswith(".tmp")]
    assert not (data_dir / CONTROL_FILE).exists() and not (data_dir / TOKEN_FILE).exists()
    with serve(data_dir, build_handlers(service)):
        assert token_of(data_dir) != first  # fresh at every start


def test_client_says_clearly_when_no_service_runs(tmp_path: Path) -> None:
    client = ControlClient(tmp_path, timeout=1.0)
    with pytest.raises(ServiceNotRunning, match="not running") as err:
        client.call("status")
    assert err.value.exit_code == 7 and "stationflow run" in str(err.value)
    assert client.is_running() is False
    # Left over from a service that was killed: the port refuses.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": dead_port, "pid": 1, "protocol": PROTOCOL_VERSION}))
    (tmp_path / TOKEN_FILE).write_text("x")
    with pytest.raises(ServiceNotRunning, match=f"nothing listens on 127.0.0.1:{dead_port}"):
        client.call("status")
    # Something else took the port meanwhile.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        (tmp_path / CONTROL_FILE).write_text(json.dumps({"port": other.getsockname()[1], "protocol": 1}))

        def answer_http() -> None:
            conn, _ = other.accept()
            conn.recv(1000)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer_http, daemon=True).start()
        with pytest.raises(ServiceNotRunning, match="something else answers"):
            client.call("status")


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------

def test_status_metrics_and_the_queue_through_the_service(service: FakeService, served: Any) -> None:
    failed = service.add_failed(1)
    others = [service.add_failed(i) for i in (3, 4)]
    pending = service.spool.accept(make_report_bytes(2, seed=11)).key
    client = ControlClient(service.data_dir)
    status = client.call("status")
    assert status["service"]["state"] == "running" and status["reports"]["failed"] == 3
    assert client.call("metrics") == {"sent": 0, "failed": 0}

    listing = client.call("queue.list")
    assert listing["total"] == 4 and {r["id"] for r in listing["reports"]} == {failed, pending, *others}
    only_failed = client.call("queue.list", state="failed")
    assert sorted(r["id"] for r in only_failed["reports"]) == sorted([failed, *others])
    assert only_failed["reports"][0]["last_error"] == "400: serial number missing"
    pages = [client.call("queue.list", limit=3, offset=offset) for offset in (0, 3)]
    assert [len(p["reports"]) for p in pages] == [3, 1] and all(p["total"] == 4 for p in pages)
    assert {r["id"] for p in pages for r in p["reports"]} == {failed, pending, *others}
    with pytest.raises(StationflowError, match="unknown state 'lost'") as err:
        client.call("queue.list", state="lost")
    assert err.value.exit_code == 4

    shown = client.call("queue.show", id=failed)
    assert shown["state"] == "failed" and [h["to"] for h in shown["history"]][-1] == "failed"
    with pytest.raises(ReportNotFound) as err:
        client.call("queue.show", id="no-such-report")
    assert err.value.exit_code == 6

    retried = client.call("queue.retry", ids=[failed, "no-such-report", pending])
    assert retried["retried"] == 1 and retried["refused"] == 2
    outcome = {r["id"]: r for r in retried["results"]}
    assert outcome[failed]["state"] == "pending"
    assert outcome["no-such-report"]["code"] == "report_not_found"
    assert outcome[pending]["code"] == "illegal_transition"
    assert service.spool.state_of(failed) == "pending"
    assert service.spool.info(failed).history[-1]["note"] == "retried by an operator (control protocol)"

    assert client.call("queue.retry_failed")["retried"] == 2
    assert all(service.spool.state_of(k) == "pending" for k in others)
    assert client.call("queue.retry_failed") == {"retried": 0, "refused": 0, "results": []}


def test_intake_log_reload_and_stop(service: FakeService, served: Any) -> None:
    client = ControlClient(service.data_dir)
    assert client.call("intake.pause", reason="maintenance") == {"paused": True, "reason": "maintenance"}
    assert client.call("intake.resume") == {"paused": False, "reason": None}
    assert client.call("log.tail", n=2)["lines"][-1].endswith("line 4")
    assert len(client.call("log.tail")["lines"]) == 5
    assert client.call("reload") == {"changes": []} and service.reloads == ["control"]
    answer = client.call("stop")
    assert answer["stopping"] is True and answer["pid"] == os.getpid() and answer["grace_s"] == 2
    deadline = time.monotonic() + 2
    while not service.stops and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.stops == ["stop requested through the control protocol"]


def test_unknown_commands_and_bad_arguments_are_answered_not_fatal(service: FakeService, served: Any) -> None:
    client = ControlClient(service.data_dir)
    with pytest.raises(ControlError) as err:
        client.call("queue.delete", id="x")
    assert err.value.code == "unknown_command" and "queue.list" in err.value.hint
    with pytest.raises(ControlError) as err:
        client.call("queue.list", limit=0, colour="red")
    assert err.value.code == "bad_args" and err.value.exit_code == 4
    assert any(p.startswith("limit:") for p in err.value.problems)
    assert any(p.startswith("colour:") for p in err.value.problems)
    with pytest.raises(ControlError, match="bad arguments for status"):
        client.call("status", verbose=True)
    assert set(client.hello()["commands"]) == set(COMMANDS)
    served_well(service.data_dir)


def test_config_get_masks_the_token_and_apply_keeps_it(service: FakeService, served: Any,
                                                       config_path: Path) -> None:
    client = ControlClient(service.data_dir)
    got = client.call("config.get")
    assert got["source"] == "file" and got["path"] == str(config_path)
    assert got["config"]["server"]["token"] == MASK and "s3cret" not in json.dumps(got)

    edited = got["config"]
    edited["station"]["location"] = "Line 7"
    assert client.call("config.validate", data=edited) == {"valid": True, "problems": [], "warnings": [
        "intake: no watched folders — only `stationflow submit` will add reports"]}
    applied = client.call("config.apply", data=edited)
    assert applied["saved"] == str(config_path) and applied["changes"] == ["settings changed"]
    assert service.reloads == ["control"]
    on_disk = load_config(config_path)
    assert on_disk.station.location == "Line 7"
    assert on_disk.server.token.get_secret_value() == "s3cret-token-value"  # the mask was not saved
    assert "s3cret-token-value" in config_path.with_name("station.yaml.bak").read_text()

    bad = json.loads(json.dumps(edited))
    bad["upload"] = {"concurency": 3}
    checked = client.call("config.validate", data=bad)
    assert checked["valid"] is False and checked["problems"][0].startswith("upload.concurency: unknown key")
    before = config_path.read_bytes()
    with pytest.raises(ConfigError) as err:
        client.call("config.apply", data=bad)
    assert err.value.exit_code == 3 and err.value.problems[0].startswith("upload.concurency")
    assert config_path.read_bytes() == before and service.reloads == ["control"]

    # The mask with no token stored to keep is refused, not saved as a token.
    no_token = json.loads(json.dumps(edited))
    no_token["server"]["token"] = None
    client.call("config.apply", data=no_token)
    no_token["server"]["token"] = MASK
    result = client.call("config.validate", data=no_token)
    assert result["valid"] is False and "masked placeholder" in result["problems"][0]


def test_handler_failures_and_slow_commands_leave_the_server_serving(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def status(args: dict[str, Any]) -> Any:
        return {"service": {"state": "running"}}

    async def refuse(args: dict[str, Any]) -> Any:
        raise ConfigError("nope", problems=["a: b"], hint="do c")

    async def crash(args: dict[str, Any]) -> Any:
        raise RuntimeError("a bug")

    async def slow(args: dict[str, Any]) -> Any:
        await anyio.sleep(30)

    async def unserialisable(args: dict[str, Any]) -> Any:
        return {"x": object()}

    handlers = {"status": status, "refuse": refuse, "crash": crash, "slow": slow, "odd": unserialisable}
    with serve(tmp_path, handlers, request_timeout_s=0.3):
        client = ControlClient(tmp_path)
        with pytest.raises(ConfigError) as err:
            client.call("refuse")
        assert (err.value.message, err.value.problems, err.value.hint) == ("nope", ["a: b"], "do c")
        with pytest.raises(ControlError) as crashed:
            client.call("crash")
        assert crashed.value.code == "internal" and "a bug" not in str(crashed.value)
        assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
        started = time.monotonic()
        with pytest.raises(ControlError) as timed_out:
            client.call("slow")
        assert timed_out.value.code == "request_timeout" and time.monotonic() - started < 2
        with pytest.raises(ControlError) as odd:
            client.call("odd")
        assert odd.value.code == "internal"
        served_well(tmp_path)


# ----------------------------------------------------------------------------------------------
# Framing on one connection
# ----------------------------------------------------------------------------------------------

def test_one_connection_survives_malformed_lines_and_echoes_ids(service: FakeService, served: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _, port = served
    with connect(port) as sock:
        welcome = hello(sock, service.data_dir)
        assert welcome["id"] is None and welcome["result"]["protocol"] == PROTOCOL_VERSION
        # Pipelined: three requests before reading; answers in order, each with its id.
        sock.sendall(b'{"id": "a", "command": "status"}\n{"id": 7, "command": "metrics"}\n'
                     b'{"id": 8, "command": "nope"}\n')
        answers = [read_message(sock) for _ in range(3)]
        assert [a["id"] for a in answers] == ["a", 7, 8]
        assert answers[2]["error"]["code"] == "unknown_command"
        for line, code, rid in ((b"{not json", "bad_json", None), (b"\xff\xfe\x00", "bad_json", None),
                                (b"[1, 2]", "bad_request", None), (b'{"id": 5}', "bad_request", 5),
                                (b'{"id": 6, "command": "status", "args": []}', "bad_request", 6),
                                (b'{"id": true, "command": "status"}', "bad_request", None),
                                (b"[" * 100_000, "bad_json", None)):
            send(sock, line)
            answer = read_message(sock)
            assert answer["ok"] is False and answer["error"]["code"] == code and answer["id"] == rid, line[:40]
        send(sock, {"id": 9, "command": "status"})
        assert read_message(sock)["result"]["service"]["state"] == "running"
        # A client that only sends garbage is closed after a while, and told why.
        sock.sendall(b"garbage\n" * 25)
        codes = []
        while (answer := read_message(sock)) is not None:
            codes.append(answer["error"]["code"])
        assert codes[-1] == "too_many_errors" and codes.count("bad_json") == 20
    assert refusals(caplog, "unreadable messages in a row")
    served_well(service.data_dir)


# ----------------------------------------------------------------------------------------------
# Bad clients: each refused or cut off, with a logged reason, while a good client is served
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("first_line", "code", "logged"), [
    (lambda token: {"protocol": PROTOCOL_VERSION, "token": token + "x"}, "unauthorized", "wrong token"),
    (lambda token: {"protocol": PROTOCOL_VERSION}, "unauthorized", "no token"),
    (lambda token: {"protocol": PROTOCOL_VERSION, "token": ""}, "unauthorized", "no token"),
    (lambda token: {"protocol": 0, "token": token}, "protocol_version", "speaks control protocol 0"),
    (lambda token: {"protocol": "1", "token": token}, "bad_hello", "not a valid hello"),
    (lambda token: {"id": 1, "command": "status"}, "bad_hello", "not a valid hello"),
    (lambda token: b"GET / HTTP/1.1\r", "bad_hello", "not a JSON hello"),
])
def test_a_bad_hello_is_refused_and_closed(service: FakeService, served: Any, caplog: pytest.LogCaptureFixture,
                                           first_line: Any, code: str, logged: str) -> None:
    _, port = served
    with connect(port) as sock:
        send(sock, first_line(token_of(service.data_dir)))
        answer = read_message(sock)
        assert answer["ok"] is False and answer["error"]["code"] == code
        assert read_message(sock) is None  # and closed
    assert refusals(caplog, logged)
    served_well(service.data_dir)


def test_a_10_mb_line_is_cut_off_without_being_read_whole(service: FakeService, served: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server, port = served
    for authenticated in (False, True):
        with connect(port) as sock:
            if authenticated:
                hello(sock, service.data_dir)
            sender_error: list[BaseException] = []

            def flood() -> None:
                try:
                    sock.sendall(b'{"id": 1, "command": "' + b"x" * 10_000_000)
                except OSError as exc:
                    sender_error.append(exc)

            sender = threading.Thread(target=flood)
            sender.start()
            served_well(service.data_dir)  # served while the flood is on its way
            answer = read_message(sock)
            sender.join(10)
            assert answer is not None and answer["error"]["code"] == "too_large", sender_error
    logged = refusals(caplog, "longer than the limit")
    assert len(logged) == 2
    seen = [int(m) for line in logged for m in re.findall(r"read (\d+) bytes", line)]
    assert seen and max(seen) <= server.max_line + 64 * 1024 + 1  # never the whole 10 MB
    served_well(service.data_dir)


def dribble(sock: socket.socket, data_dir: Path, limit_s: float = 3.0) -> float:
    """Send one byte every 0.1 s (never a whole line) until the server hangs up; a good client is
    served at every step. Returns how long the server let it go on."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - started < limit_s:
        try:
            sock.sendall(b"{")
        except OSError:
            break
        served_well(data_dir)
        try:
            if sock.recv(65536) == b"":
                break
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
    return time.monotonic() - started


def test_a_slow_or_silent_client_is_cut_off_at_the_timeout(service: FakeService,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with serve(service.data_dir, build_handlers(service), idle_timeout_s=0.5) as (_, port):
        with connect(port) as sock:
            assert 0.4 < dribble(sock, service.data_dir) < 1.5
        with connect(port) as sock:
            hello(sock, service.data_dir)
            assert 0.4 < dribble(sock, service.data_dir) < 1.5
        with connect(port) as silent:
            started = time.monotonic()
            assert read_message(silent)["error"]["code"] == "timeout"
            assert 0.4 < time.monotonic() - started < 1.5
        with connect(port) as idle:  # an authenticated client that says nothing more: closed quietly
            hello(idle, service.data_dir)
            assert read_message(idle)["error"]["code"] == "timeout"
    assert refusals(caplog, r"sent \d+ bytes but no complete line within 0.5 s of connecting")
    assert refusals(caplog, r"sent \d+ bytes but no complete line within 0.5 s$")
    assert refusals(caplog, r"sent nothing within 0.5 s of connecting")
    assert not refusals(caplog, "idle")


def test_a_client_that_stops_reading_its_answers_is_cut_off(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async def status(args: dict[str, Any]) -> Any:
        return {"service": {"state": "running"}}

    async def big(args: dict[str, Any]) -> Any:
        return "x" * 1_000_000

    with serve(tmp_path, {"status": status, "big": big}, idle_timeout_s=0.5) as (server, _):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", server.port))
            hello(sock, tmp_path)
            sock.sendall(b'{"id": 1, "command": "big"}\n' * 50)  # and never read the answers
            deadline = time.monotonic() + 5
            while not refusals(caplog, "did not read its answers") and time.monotonic() < deadline:
                served_well(tmp_path)
                time.sleep(0.05)
        assert refusals(caplog, "did not read its answers for 0.5 s")
        served_well(tmp_path)


def test_random_bytes_are_refused_and_the_server_keeps_serving(service: FakeService, served: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    _, port = served
    rng = __import__("random").Random(6)
    for _ in range(50):
        with connect(port) as sock:
            try:
                sock.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))))
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # already refused and closed
                pass
            while (answer := read_message(sock)) is not None:
                assert answer["ok"] is False
    assert refusals(caplog, "hello")
    served_well(service.data_dir)


def test_hundreds_of_connections_at_once(service: FakeService, caplog: pytest.LogCaptureFixture) -> None:
    with serve(service.data_dir, build_handlers(service), max_connections=8) as (server, port):
        # Silent connections hold no slot against a client that says hello: the oldest is evicted.
        flood = [connect(port) for _ in range(300)]
        try:
            for _ in range(5):
                served_well(service.data_dir)
            assert server.peak_connections <= 8
        finally:
            for sock in flood:
                sock.close()
        assert refusals(caplog, "had not said hello")
        # Every slot held by an authenticated client: a newcomer is told "busy" and closed.
        held = [connect(port) for _ in range(8)]
        try:
            for sock in held:
                hello(sock, service.data_dir)
            with connect(port) as extra:
                assert read_message(extra)["error"]["code"] == "busy"
            with pytest.raises(ControlError) as err:
                ControlClient(service.data_dir, timeout=0.5).call("status")
            assert err.value.code == "busy"
        finally:
            for sock in held:
                sock.close()
        assert refusals(caplog, "slots are in use by authenticated clients")
        deadline = time.monotonic() + 3
        while server.connection_count and time.monotonic() < deadline:
            time.sleep(0.01)
        served_well(service.data_dir)
        assert server.peak_connections <= 8


def test_a_flood_of_refusals_does_not_flood_the_log(service: FakeService, served: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    server, port = served
    for _ in range(60):
        with connect(port) as sock:
            send(sock, {"protocol": PROTOCOL_VERSION, "token": "guess"})
            read_message(sock)
    logged = refusals(caplog, "wrong token")
    assert 1 <= len(logged) <= 5
    assert server.stats()["refusals"]["unauthorized"] == 60
    assert "guess" not in caplog.text  # what a client offered as a token is never logged


# ----------------------------------------------------------------------------------------------
# Loopback only
# ----------------------------------------------------------------------------------------------

def _this_machines_other_addresses() -> set[str]:
    """Every IPv4 address of this machine that is not loopback."""
    found: set[str] = set()
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
        found.update(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out))
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        found.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # picks the outgoing interface; sends nothing
        found.add(probe.getsockname()[0])
    return {a for a in found if not ipaddress.ip_address(a).is_loopback and a != "0.0.0.0"}


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "::1", "localhost", "192.168.1.10", "127.0.0.2"])
def test_the_server_refuses_any_host_but_loopback(tmp_path: Path, host: str) -> None:
    with pytest.raises(StationflowError, match="127.0.0.1 only"):
        ControlServer(tmp_path, {}, host=host)


def test_the_server_is_not_reachable_on_any_address_but_loopback(service: FakeService, served: Any) -> None:
    server, port = served
    assert server.stats()["host"] == "127.0.0.1"
    others = _this_machines_other_addresses() | {"127.0.0.2"}  # loopback, but not the bound address
    for address in sorted(others):
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=1.0).close()
    with pytest.raises(OSError):
        socket.create_connection(("::1", port), timeout=1.0).close()
    if Path("/proc/net/tcp").exists():  # what the kernel says is listening on that port
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listening == [f"0100007F:{port:04X}"]
    served_well(service.data_dir)


# ----------------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------------

def test_cli_reads_through_the_running_service_and_falls_back_to_the_disk(
        service: FakeService, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failed = service.add_failed(21)
    with serve(service.data_dir, build_handlers(service)):
        assert cli_main(["-c", str(config_path), "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["service"]["state"] == "running" and status["reports"]["failed"] == 1
        assert cli_main(["-c", str(config_path), "status"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("service: running") and f"failed: {failed} — 400: serial number missing" in out
        assert cli_main(["-c", str(config_path), "queue", "list", "--json"]) == 0
        captured = capsys.readouterr()
        assert [r["id"] for r in json.loads(captured.out)] == [failed] and "spool on disk" not in captured.err
        assert cli_main(["-c", str(config_path), "queue", "show", failed]) == 0
        assert "last_error: 400: serial number missing" in capsys.readouterr().out
        # The service holds the spool's lock: a retry can only have gone through the service.
        assert cli_main(["-c", str(config_path), "queue", "retry", failed, "nope"]) == 4
        captured = capsys.readouterr()
        assert f"{failed}: pending" in captured.out and "no report nope" in captured.err
        assert service.spool.state_of(failed) == "pending"
        assert cli_main(["-c", str(config_path), "reload"]) == 0
        assert "reloaded: no changes" in capsys.readouterr().out

    service.spool.close()  # the service is gone: the commands read the disk and say so
    assert cli_main(["-c", str(config_path), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["service"]["state"] == "stopped"
    assert status["service"]["note"] == "service not running — read from the spool on disk"
    assert status["health"]["state"] == "error"
    assert status["reports"]["pending"] == 1
    assert cli_main(["-c", str(config_path), "queue", "list"]) == 0
    captured = capsys.readouterr()
    assert failed in captured.out and "service not running — read from the spool on disk" in captured.err
    assert cli_main(["-c", str(config_path), "queue", "show", failed]) == 0
    assert "read from the spool on disk" in capsys.readouterr().err
    for command in ("stop", "reload"):
        assert cli_main(["-c", str(config_path), command]) == 7
        assert "the service is not running" in capsys.readouterr().err


def test_cli_reload_shows_the_files_problems_and_stop_works_with_a_broken_file(
        service: FakeService, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(service.data_dir, build_handlers(service)):
        config_path.write_text(CONFIG_TEXT + "upload: {concurency: 3}\n")
        assert cli_main(["-c", str(config_path), "reload"]) == 3
        err = capsys.readouterr().err
        assert "not valid" in err and "upload.concurency: unknown key" in err
        assert cli_main(["-c", str(config_path), "stop", "--no-wait"]) == 0
        assert "stopping the service" in capsys.readouterr().out
        deadline = time.monotonic() + 2
        while not service.stops and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.stops


# ----------------------------------------------------------------------------------------------
# End to end: a real `stationflow run`
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow  # a real `stationflow run` process
def test_a_real_service_status_retry_and_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "station.yaml"
    config_path.write_text(CONFIG_TEXT + "control: {submit_folders: [./incoming]}\n")
    (tmp_path / "incoming").mkdir()
    cfg = resolved(load_config(config_path), config_path)
    data_dir = Path(cfg.data_dir)
    with Spool(data_dir) as spool:  # a report the server rejected, waiting for a person
        key = spool.accept(make_report_bytes(1, seed=5)).key
        spool.claim_next()
        spool.fire(key, "rejected", error="400: rejected by the server")
    console = (tmp_path / "console.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(config_path), "run"], cwd=ROOT,
                            stdout=console, stderr=subprocess.STDOUT)
    try:
        client = ControlClient(data_dir, timeout=5.0)
        deadline = time.monotonic() + 20
        while not client.is_running():
            assert proc.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "the service did not open its control port"
            time.sleep(0.05)
        status = client.call("status")
        assert status["service"]["state"] == "running" and status["reports"]["failed"] == 1
        assert status["tasks"]["control"]["state"] == "running"
        assert cli_main(["-c", str(config_path), "queue", "retry", key]) == 0
        assert f"{key}: pending" in capsys.readouterr().out
        after = client.call("queue.show", id=key)
        assert after["state"] != "failed"
        assert any(h["trigger"] == "retry" and "control protocol" in h["note"] for h in after["history"])
        # submit while the service owns the spool: the service converts and accepts the files
        good, bad = tmp_path / "incoming" / "good.json", tmp_path / "incoming" / "bad.json"
        good.write_bytes(make_report_bytes(2, seed=5))
        bad.write_bytes(b'{"id": "truncated')
        assert cli_main(["-c", str(config_path), "submit", str(good), str(bad)]) == 4
        out, err = capsys.readouterr()
        submitted = json.loads(good.read_bytes())["id"]
        assert f"accepted: {submitted}" in out and "through the running service" in err and "bad.json" in err
        assert client.call("queue.show", id=submitted)["id"] == submitted
        assert good.exists() and bad.exists()  # submit never touches the files
        assert cli_main(["-c", str(config_path), "stop"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert proc.wait(10) == 0, (tmp_path / "console.log").read_text()
        assert "stop requested through the control protocol" in (tmp_path / "console.log").read_text()
        assert not (data_dir / CONTROL_FILE).exists() and not (data_dir / TOKEN_FILE).exists()
        assert not client.is_running()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        console.close()
    with Spool(data_dir, readonly=True) as spool:
        assert spool.counts()["failed"] == 0 and key in spool.keys()
