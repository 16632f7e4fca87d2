"""The uploader's HTTP client made cheaper per post (engine/upload/client.py), and still right:
a connection the server closed while idle is never used again, the report URL is the one httpx
would merge."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpcore
import pytest

from stationflow.engine.upload import client as client_module
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.upload.client import HEAD_LIMIT, PROBE_PATH, REPORT_PATH, build_client, report_url
from stationflow.schemas.config import ServerSection, UploadSection


class _HangsUpAfterEachAnswer:
    """Answers each request 200 as HTTP/1.1 keep-alive (no ``Connection: close``), then closes the
    connection anyway: the client finds out only by looking at the idle socket."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    def __enter__(self) -> _HangsUpAfterEachAnswer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


@pytest.fixture
def hangs_up() -> Iterator[_HangsUpAfterEachAnswer]:
    with _HangsUpAfterEachAnswer() as server:
        yield server


async def test_a_connection_the_server_closed_while_idle_is_not_used_again(
        hangs_up: _HangsUpAfterEachAnswer, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[bool] = []
    real = client_module._readable

    def watched(sock: socket.socket | None, poller: Any = None) -> bool:
        answers.append(real(sock, poller))
        return answers[-1]

    monkeypatch.setattr(client_module, "_readable", watched)
    client = build_client(ServerSection(url=hangs_up.url, timeout_s=5.0), UploadSection(concurrency=1))
    async with client:
        for _ in range(3):
            response = await client.post(report_url(client), content=b"{}")
            assert response.status_code == 200  # never "server disconnected": a new connection each time
            await anyio.sleep(0.2)  # the server hangs up meanwhile
    assert hangs_up.connections == 3
    assert True in answers  # the quick check is the one httpcore asked, and it saw the hang-up


@pytest.mark.parametrize("base", ["http://wats.example", "http://wats.example/", "https://wats.example:8443/wats",
                                  "https://wats.example/wats/", "http://10.0.0.5:8080/a%20b/"])
def test_the_report_url_is_the_one_httpx_would_merge(base: str) -> None:
    client = build_client(ServerSection(url=base), UploadSection())
    assert report_url(client) == client.build_request("POST", REPORT_PATH).url
    assert str(report_url(client)).endswith("/api/Report/WSJF")


async def test_a_post_is_one_write_and_a_request_without_body_is_not_held_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore writes a request's head and body separately; the client joins them into one write.
    A GET (no body) is sent when its answer is awaited, not held."""
    writes: list[int] = []
    real_connect = httpcore.AnyIOBackend.connect_tcp

    class Counting(httpcore.AsyncNetworkStream):
        def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
            self._inner = inner

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return await self._inner.read(max_bytes, timeout)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if buffer:
                writes.append(len(buffer))
            await self._inner.write(buffer, timeout)

        async def aclose(self) -> None:
            await self._inner.aclose()

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    async def connect(self: Any, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return Counting(await real_connect(self, *args, **kwargs))

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect)
    report = make_report_bytes(1, seed=18)
    with Emulator(port=0, seed=1) as emu:
        client = build_client(ServerSection(url=emu.url, token=DEFAULT_TOKEN, timeout_s=5.0), UploadSection())
        async with client:
            for _ in range(3):
                assert (await client.post(report_url(client), content=report)).status_code == 200
            with anyio.fail_after(5):
                assert (await client.get(PROBE_PATH)).status_code == 200
    assert len(writes) == 4, writes  # three posts, head and body together; one GET
    assert all(size > len(report) for size in writes[:3]) and writes[3] < HEAD_LIMIT
