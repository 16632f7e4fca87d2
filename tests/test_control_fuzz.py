"""Hypothesis throws 1,000 random byte strings and messages at the control port while another
client keeps asking for status: every answer is a well-formed response, and status never fails."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stationflow.engine.control.client import ControlClient
from stationflow.engine.control.commands import build_handlers
from stationflow.engine.layout import TOKEN_FILE
from stationflow.schemas.control import COMMANDS, PROTOCOL_VERSION, Response
from tests.test_control import CONFIG_TEXT, FakeService, serve

MAX_LINE = 4096

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
arg_names = st.sampled_from(["state", "limit", "offset", "id", "ids", "n", "reason", "data"]) | st.text(max_size=6)
requests = st.fixed_dictionaries(
    {"id": st.integers() | st.text(max_size=70) | st.none() | st.booleans(),
     "command": st.sampled_from([c for c in COMMANDS if c != "config.apply"] + ["nope", ""]) | st.text(max_size=12),
     "args": st.dictionaries(arg_names, json_values, max_size=3) | json_values},
    optional={"extra": json_values},
)
lines = st.one_of(
    st.binary(max_size=300),
    requests.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(MAX_LINE - 10, 3 * MAX_LINE).map(lambda n: b"x" * n),
)
hellos = st.sampled_from(["good", "wrong", "none", "old", "raw"])


@pytest.fixture
def fuzz_target(tmp_path: Path) -> Any:
    config_path = tmp_path / "station.yaml"
    config_path.write_text(CONFIG_TEXT)
    service = FakeService(config_path)
    service.add_failed(1)
    with serve(service.data_dir, build_handlers(service), max_line=MAX_LINE, idle_timeout_s=2.0) as (server, port):
        yield service, server, port
    service.spool.close()


def _exchange(port: int, first: bytes | None, body: list[bytes]) -> list[dict[str, Any]]:
    """Send everything, then end our side; collect every line the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        payload = (first + b"\n" if first is not None else b"") + b"\n".join(body)
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused and closed before we were done
            pass
        data = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


# 1,000 examples against a real server: out of the quick local run.
@pytest.mark.slow
def test_random_input_never_breaks_the_server_and_status_is_always_served(fuzz_target: Any) -> None:
    service, server, port = fuzz_target
    token = (service.data_dir / TOKEN_FILE).read_text()
    first_lines = {
        "good": json.dumps({"protocol": PROTOCOL_VERSION, "token": token}).encode(),
        "wrong": json.dumps({"protocol": PROTOCOL_VERSION, "token": token[::-1]}).encode(),
        "none": json.dumps({"protocol": PROTOCOL_VERSION}).encode(),
        "old": json.dumps({"protocol": PROTOCOL_VERSION - 1, "token": token}).encode(),
        "raw": None,
    }

    stop = threading.Event()
    answered: list[int] = []
    failures: list[BaseException] = []

    def keep_asking() -> None:
        client = ControlClient(service.data_dir, timeout=5.0)
        while not stop.is_set():
            try:
                assert client.call("status")["service"]["state"] == "running"
                answered.append(1)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)
            stop.wait(0.005)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    examples = [0]
    seen: set[str] = set()

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hello=hellos, body=st.lists(lines, max_size=4))
    @example(hello="good", body=[b'{"id": 1, "command": "status"}', b'{"id": 2, "command": "queue.list", '
                                b'"args": {"limit": 0}}', b'{"id": 3, "command": "nope"}', b"{", b"[]",
                                b"x" * (MAX_LINE + 1)])
    @example(hello="wrong", body=[])
    @example(hello="old", body=[])
    @example(hello="raw", body=[b"hi"])
    def throw(hello: str, body: list[bytes]) -> None:
        examples[0] += 1
        for message in _exchange(port, first_lines[hello], body):
            response = Response.model_validate(message)
            seen.add(response.error.code if response.error else "ok")
            if hello != "good":
                assert response.ok is False and response.id is None

    try:
        throw()
    finally:
        stop.set()
        asker.join(10)
    assert examples[0] >= 1000
    # The input reached every kind of answer, not just the hello's refusals.
    assert {"ok", "bad_hello", "unauthorized", "protocol_version", "bad_json", "bad_request", "unknown_command",
            "bad_args", "too_large"} <= seen, seen
    assert failures == [], failures[:3]
    assert len(answered) > 50
    deadline = time.monotonic() + 3
    while server.connection_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connection_count == 0  # nothing left hanging
    assert ControlClient(service.data_dir).call("status")["reports"]["failed"] + \
        ControlClient(service.data_dir).call("status")["reports"]["pending"] == 1
