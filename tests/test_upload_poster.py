"""The uploader's lean post (engine/upload/client.py ``ReportPoster``): past httpx's client layers
and straight to the client's connection pool, yet on the wire the very request httpx sends, with
the same timeouts and the same errors; and the spool's batch rule for fsyncs of sent/."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from stationflow.engine import durable
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.engine.upload.answers import BODY_LIMIT, classify_exception
from stationflow.engine.upload.client import ReportPoster, build_client, httpx_error, report_url
from stationflow.schemas.config import ServerSection, UploadSection


class _Recorder:
    """Records each request's bytes as received, and answers it with ``answer`` (or with nothing,
    holding the connection, when ``answer`` is None)."""

    def __init__(self, answer: bytes | None = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                             b"Set-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\n{}") -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        except OSError:  # the client hung up (an answer it stopped reading)
            conn.close()

    def _exchange(self, conn: socket.socket) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                buffered += chunk
            head, _, rest = buffered.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffered = rest[length:]
            if self.answer is None:
                self._held.append(conn)  # never answered: the client's read timeout must end it
                return
            conn.sendall(self.answer)

    def __enter__(self) -> _Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    with _Recorder() as server:
        yield server


def _server(url: str, **extra: object) -> ServerSection:
    return ServerSection.model_validate({"url": url, "token": "dG9rZW4=", "timeout_s": 5.0, **extra})


async def test_the_lean_post_sends_the_request_httpx_sends(recorder: _Recorder) -> None:
    """Byte for byte: request line, every header in httpx's order, the body."""
    report = make_report_bytes(1, seed=18)
    client = build_client(_server(recorder.url + "/wats/"), UploadSection())
    async with client:
        response = await client.post(report_url(client), content=report)
        assert response.status_code == 200
        poster = ReportPoster(client)
        assert poster._pool is not None  # the lean way, not the fallback through ``send``
        reply = await poster.post(report)
        assert reply.status == 200 and reply.body == b"{}"
    through_httpx, lean = recorder.requests
    assert lean == through_httpx
    assert lean.startswith(b"POST /wats/api/Report/WSJF HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Basic dG9rZW4=\r\n" in lean and lean.endswith(report)
    assert b"cookie" not in lean.lower()  # the server's Set-Cookie was kept by neither way


async def test_the_client_never_keeps_a_cookie(recorder: _Recorder) -> None:
    """The probe goes through the client (cookie jar and all): a cookie the server sets must not
    start riding on later requests, which the lean post would not send."""
    client = build_client(_server(recorder.url), UploadSection())
    async with client:
        for _ in range(2):
            assert (await client.get("/api/App/Version")).status_code == 200
        assert len(client.cookies) == 0
    assert all(b"cookie" not in request.lower() for request in recorder.requests)


async def test_a_server_that_never_answers_ends_in_httpx_read_timeout() -> None:
    with _Recorder(answer=None) as silent:
        client = build_client(_server(silent.url, timeout_s=0.5), UploadSection())
        async with client:
            with anyio.fail_after(30):
                with pytest.raises(httpx.ReadTimeout) as caught:
                    await ReportPoster(client).post(b"{}")
    assert len(silent.requests) == 1  # it was sent whole, and the answer was waited for
    assert classify_exception(caught.value).message == "the server did not answer in time (ReadTimeout)"


async def test_a_server_that_stops_reading_ends_in_httpx_write_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as deaf:  # listens, never reads: the socket buffers fill
        client = build_client(_server(f"http://127.0.0.1:{deaf.getsockname()[1]}", timeout_s=0.5), UploadSection())
        async with client:
            with anyio.fail_after(30):
                with pytest.raises(httpx.WriteTimeout):
                    await ReportPoster(client).post(b"x" * 64_000_000)


async def test_a_refused_connection_ends_in_httpx_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        client = build_client(_server(f"http://127.0.0.1:{port}"), UploadSection())
        async with client:
            with pytest.raises(httpx.ConnectError):
                await ReportPoster(client).post(b"{}")


async def test_an_endless_answer_is_read_to_the_limit_and_its_connection_dropped() -> None:
    answer = b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 200_000
    with _Recorder(answer=answer) as server:
        client = build_client(_server(server.url), UploadSection())
        async with client:
            poster = ReportPoster(client)
            reply = await poster.post(b"{}")
            assert reply.status == 500 and reply.truncated and len(reply.body) == BODY_LIMIT
            assert poster._pool is not None and not poster._pool.connections  # not kept half read


def test_httpcore_errors_become_the_httpx_errors_httpx_raises() -> None:
    import httpcore

    assert type(httpx_error(httpcore.ReadTimeout("slow"))) is httpx.ReadTimeout
    assert type(httpx_error(httpcore.ConnectError("refused"))) is httpx.ConnectError
    assert type(httpx_error(httpcore.RemoteProtocolError("bad"))) is httpx.RemoteProtocolError
    assert str(httpx_error(httpcore.WriteError("broken pipe"))) == "broken pipe"
    assert httpx_error(ValueError("not httpcore's")) is None


async def test_a_client_with_a_transport_of_its_own_is_used_through_send() -> None:
    """A transport that is not httpx's (a test's, a later httpx's): the poster posts through it."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, stream=httpx.ByteStream(b'{"id": "x"}'))

    async with httpx.AsyncClient(base_url="http://wats.example/", transport=httpx.MockTransport(answer)) as client:
        poster = ReportPoster(client)
        assert poster._pool is None
        reply = await poster.post(b'{"id": "x"}')
    assert reply.status == 201 and seen[0].content == b'{"id": "x"}'
    assert str(seen[0].url) == "http://wats.example/api/Report/WSJF"


# ------------------------------------------------------------------ sent/ fsyncs by the batch rule


def test_sync_final_if_due_follows_the_spools_batch_rule(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = durable.fsync_dir
    monkeypatch.setattr(durable, "fsync_dir", lambda path: (synced.append(Path(path).name), real(path))[1])
    with Spool(data_dir, sent_sync_every=3, sent_sync_s=3600.0) as spool:
        keys = [spool.accept(make_report_bytes(i, seed=18)).key for i in range(4)]
        spool.final_sync_elsewhere = True  # as the uploader sets it: renames never fsync by themselves
        synced.clear()
        for n, key in enumerate(keys[:3], start=1):
            claim = spool.claim_next()
            assert claim is not None and claim.key == key
            spool.fire(key, "accepted")
            assert "sent" not in synced
            assert spool.sync_final_if_due() is (n == 3)  # the third rename fills the batch
        assert synced.count("sent") == 1
        claim = spool.claim_next()
        assert claim is not None
        spool.fire(claim.key, "accepted")
        assert spool.sync_final_if_due() is False  # one rename, and well within sent_sync_s
        spool._last_final_sync -= 3601.0  # the time limit passes
        assert spool.sync_final_if_due() is True and synced.count("sent") == 2
        assert spool.sync_final_if_due() is False  # nothing left to make durable
    assert spool.counts()["sent"] == 4


# ------------------------------------------------------------------ a busy machine is not a slow disk


def test_the_run_queue_clock_reads_the_calling_threads_wait() -> None:
    from stationflow.engine.upload.stall import RunQueueClock

    clock = RunQueueClock()
    try:
        first = clock.waited_s()
        assert first >= 0.0 and clock.waited_s() >= first  # a running total: never goes back
        if sys.platform.startswith("linux"):
            assert clock._fd >= 0 and clock._thread == threading.get_ident()
        seen: list[int | None] = []
        worker = threading.Thread(target=lambda: (clock.waited_s(), seen.append(clock._thread)))
        worker.start()
        worker.join()
        if sys.platform.startswith("linux"):
            assert seen == [worker.ident]  # reopened for the thread that asked, not the one that opened it
    finally:
        clock.close()
    assert clock._fd == -1


async def test_spool_work_stays_on_the_loop_when_the_machine_not_the_disk_was_slow(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch, recorder: _Recorder) -> None:
    """A claim that took 50 ms while its thread sat 50 ms in the run queue: the disk was fine."""
    from stationflow.engine.upload import stall
    from stationflow.engine.upload.uploader import Uploader

    waits = iter([0.0, 0.05])  # the first claim's before and after; 0 for everything later
    monkeypatch.setattr(stall.RunQueueClock, "waited_s", lambda self: next(waits, 0.0))
    with Spool(data_dir) as spool:
        key = spool.accept(make_report_bytes(1, seed=18)).key
        real_claim = spool.claim_next

        def preempted_claim() -> object:
            time.sleep(0.05)  # as long as the run queue wait above
            return real_claim()

        spool.claim_next = preempted_claim  # type: ignore[method-assign]
        uploader = Uploader(spool, _server(recorder.url), UploadSection(concurrency=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            with anyio.fail_after(30):
                while spool.counts()["sent"] < 1:
                    await anyio.sleep(0.01)
            assert uploader._gate.inline  # still on the event loop
            uploader.drain()
        assert spool.state_of(key) == "sent"


def test_disk_stalls_that_add_up_move_spool_work_to_threads_a_lone_one_does_not(
        data_dir: Path, recorder: _Recorder) -> None:
    from stationflow.engine.upload.uploader import Uploader

    with Spool(data_dir) as spool:
        uploader = Uploader(spool, _server(recorder.url), UploadSection())
        uploader._gate.stalled(0.040, 0.0)  # the journal held a rename: stays on the loop
        uploader._gate.stalled(0.400, 0.398)  # slow because the machine was busy, not the disk
        uploader._gate.stalled(0.004, 0.0)  # not a stall at all
        assert uploader._gate.inline
        uploader._gate.since -= 1.0  # later: the first stall no longer counts
        for _ in range(4):
            uploader._gate.stalled(0.010, 0.0)
        assert uploader._gate.inline  # 40 ms within a quarter second
        uploader._gate.stalled(0.010, 0.0)  # every call slowed by the disk: 50 ms within a quarter second
        assert not uploader._gate.inline and uploader._gate.retry_s == 120
