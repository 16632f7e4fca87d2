"""The control client against a service that misbehaves: every failure is one clear error, never
a hang or a traceback (the server side is tested in test_control.py; this is the other end)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stationflow.engine.control.client import ControlClient, ControlError
from stationflow.engine.errors import ServiceNotRunning, StationflowError
from stationflow.engine.layout import DataDir
from stationflow.schemas.control import PROTOCOL_VERSION

Behaviour = Callable[[socket.socket], None]


@pytest.fixture
def fake_service(tmp_path: Path) -> Iterator[Callable[[Behaviour], Path]]:
    """A listening socket that publishes control.json and a token like the service, and treats
    each connection with the given behaviour."""
    servers: list[socket.socket] = []

    def start(behaviour: Behaviour) -> Path:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    try:
                        behaviour(conn)
                    except OSError:
                        pass

        threading.Thread(target=serve, daemon=True).start()
        data = DataDir(tmp_path)
        data.control_file.write_text(json.dumps({"port": server.getsockname()[1], "protocol": PROTOCOL_VERSION}))
        data.token_file.write_text("tok")
        return tmp_path

    yield start
    for server in servers:
        server.close()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _welcome(conn: socket.socket) -> None:
    _read_line(conn)
    conn.sendall(json.dumps({"id": None, "ok": True, "result": {"server": "stationflow"}}).encode() + b"\n")


def test_not_a_stationflow_service_on_the_port(fake_service) -> None:  # type: ignore[no-untyped-def]
    data = fake_service(lambda conn: (_read_line(conn), conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")))
    with pytest.raises(StationflowError, match="not .*stationflow|another program"):
        ControlClient(data, timeout=3).call("status")


def test_closed_before_the_hello_is_answered(fake_service) -> None:  # type: ignore[no-untyped-def]
    data = fake_service(lambda conn: _read_line(conn))
    with pytest.raises(ControlError, match="closed the connection"):
        ControlClient(data, timeout=3).call("status")


def test_closed_before_the_request_is_answered(fake_service) -> None:  # type: ignore[no-untyped-def]
    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _read_line(conn)

    data = fake_service(behaviour)
    with pytest.raises(ControlError, match="before answering status"):
        ControlClient(data, timeout=3).call("status")


def test_an_answer_to_another_request(fake_service) -> None:  # type: ignore[no-untyped-def]
    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _read_line(conn)
        conn.sendall(json.dumps({"id": 999, "ok": True, "result": {}}).encode() + b"\n")

    data = fake_service(behaviour)
    with pytest.raises(ControlError, match="answered request 999"):
        ControlClient(data, timeout=3).call("status")


def test_a_service_that_never_answers_times_out(fake_service) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        _welcome(conn)
        _read_line(conn)
        release.wait(10)

    data = fake_service(behaviour)
    try:
        with pytest.raises(ControlError) as caught:
            ControlClient(data, timeout=0.5).call("status")
        assert caught.value.code == "timeout"
    finally:
        release.set()


def test_stale_control_files(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    client = ControlClient(tmp_path, timeout=1)
    with pytest.raises(ServiceNotRunning, match="no .*control.json"):
        client.call("status")
    data.control_file.write_text("{not json")
    with pytest.raises(ServiceNotRunning, match="unreadable"):
        client.call("status")
    data.control_file.write_text(json.dumps({"protocol": PROTOCOL_VERSION}))
    with pytest.raises(ServiceNotRunning, match="names no port"):
        client.call("status")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data.control_file.write_text(json.dumps({"port": port, "protocol": PROTOCOL_VERSION}))
    with pytest.raises(ServiceNotRunning, match="no .*control.token"):
        client.call("status")
    data.token_file.write_text("tok")
    with pytest.raises(ServiceNotRunning, match="nothing listens"):
        client.call("status")
    assert client.is_running() is False
    data.control_file.write_text(json.dumps({"port": port, "protocol": PROTOCOL_VERSION + 1}))
    with pytest.raises(ControlError, match="speaks control protocol"):
        client.call("status")
