"""The report post's own HTTP/1.1 connections (engine/upload/lean_http.py ``LeanPool``) against a
scripted raw server: every framing an answer may have, keep-alive and when a connection must not be
reused, httpx's errors for every way an answer breaks, the timeouts, cancellation, the pool's limit,
and — through ``ReportPoster`` — the very request httpx would send."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stationflow.engine.upload import lean_http
from stationflow.engine.upload.answers import BODY_LIMIT, read_bounded
from stationflow.engine.upload.client import LeanTransport, ReportPoster, build_client
from stationflow.engine.upload.lean_http import HEAD_LIMIT, LeanPool
from stationflow.schemas.config import ServerSection, UploadSection

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


# ------------------------------------------------------------------ the scripted server


@dataclass
class Answer:
    """What the server does with one request: write ``pieces`` (``pause`` seconds apart), then close
    the connection (``close``), hold it open forever without reading (``hold``), or read the next."""

    pieces: list[bytes] = field(default_factory=lambda: [OK])
    pause: float = 0.0
    close: bool = False
    hold: bool = False

    @classmethod
    def whole(cls, data: bytes, **kw: object) -> Answer:
        return cls([data], **kw)  # type: ignore[arg-type]

    @classmethod
    def bytewise(cls, data: bytes, pause: float = 0.002, **kw: object) -> Answer:
        return cls([data[i:i + 1] for i in range(len(data))], pause, **kw)  # type: ignore[arg-type]


@dataclass
class Received:
    connection: int  # 0 for the server's first connection, 1 for its second, ...
    head: bytes  # request line and headers, up to and including the blank line
    body: bytes


class Scripted:
    """An ``asyncio.start_server`` on 127.0.0.1 answering requests, in the order they arrive (over
    all connections), with ``script``'s answers; ``then`` once the script is used up."""

    def __init__(self, script: list[Answer] | None = None, then: Answer | None = None) -> None:
        self.script = list(script or [])
        self.then = then or Answer()
        self.connections = 0
        self.requests: list[Received] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self._stopping.set()
        for writer in self._writers:
            writer.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.append(writer)
        index, self.connections = self.connections, self.connections + 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(Received(index, head, body))
                answer = self.script.pop(0) if self.script else self.then
                for piece in answer.pieces:
                    writer.write(piece)
                    await writer.drain()
                    if answer.pause:
                        await asyncio.sleep(answer.pause)
                if answer.hold:
                    await self._stopping.wait()  # until ``stop``
                if answer.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            self._handlers.discard(task)


@asynccontextmanager
async def serving(script: list[Answer] | None = None, then: Answer | None = None) -> AsyncIterator[Scripted]:
    server = Scripted(script, then)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def timeout(read: float = 5.0, *, pool: float = 5.0, connect: float = 5.0) -> httpx.Timeout:
    return httpx.Timeout(5.0, read=read, pool=pool, connect=connect)


@asynccontextmanager
async def pool_for(server: Scripted | int, *, max_connections: int = 4,
                   limits: httpx.Timeout | None = None) -> AsyncIterator[LeanPool]:
    port = server if isinstance(server, int) else server.port
    pool = LeanPool("127.0.0.1", port, None, max_connections=max_connections, timeout=limits or timeout())
    try:
        yield pool
    finally:
        await pool.aclose()


def request(body: bytes = b'{"id": 1}') -> bytes:
    return b"POST /api/Report/WSJF HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def chunked(body: bytes, sizes: list[int], *, extension: bytes = b"", trailer: bytes = b"") -> bytes:
    """``body`` as chunks of ``sizes`` (cycled; the rest in one chunk), then the last chunk."""
    out, at, i = [], 0, 0
    while at < len(body):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        part = body[at:at + size]
        out.append(b"%x%s\r\n%s\r\n" % (len(part), extension, part))
        at, i = at + len(part), i + 1
    return b"".join(out) + b"0\r\n" + trailer + b"\r\n"


# ------------------------------------------------------------------ framings and keep-alive


async def test_content_length_answers_reuse_one_connection() -> None:
    """Two posts, one connection: the answer's length says where it ends, so the next can follow."""
    first = b"HTTP/1.1 201 Created\r\nX-Request-Id: AbC\r\nContent-Length: 5\r\n\r\nfirst"
    second = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 6\r\n\r\nsecond"
    async with serving([Answer.whole(first), Answer.whole(second)]) as server, pool_for(server) as pool:
        status, headers, body, truncated = await pool.post(request(b"one"))
        assert (status, body, truncated) == (201, b"first", False)
        assert headers["x-request-id"] == "AbC" and headers["X-Request-ID"] == "AbC"
        assert [name for name, _ in headers.raw] == [b"x-request-id", b"content-length"]
        status, headers, body, truncated = await pool.post(request(b"two"))
        assert (status, body, truncated) == (200, b"second", False)
        assert headers["Content-Type"] == "text/plain"
    assert server.connections == 1
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (0, b"two")]


async def test_a_chunked_answer_byte_by_byte_with_extension_and_trailer() -> None:
    """Every parser state split at every byte: size line, extension, data, line ends, trailers."""
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;name=v\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    async with serving([Answer.bytewise(answer)]) as server, pool_for(server) as pool:
        status, headers, body, truncated = await pool.post(request())
        assert (status, body, truncated) == (200, b"hello, world", False)
        assert "x-trailer" not in headers  # trailers are read and dropped
        assert (await pool.post(request()))[2] == b"{}"
    assert server.connections == 1


async def test_a_close_delimited_answer_is_read_to_the_end_and_not_kept() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    async with serving([Answer([answer, b" and more"], pause=0.05, close=True)]) as server, \
            pool_for(server) as pool:
        status, _, body, truncated = await pool.post(request())
        assert (status, body, truncated) == (200, b"until the end and more", False)
        assert (await pool.post(request()))[2] == b"{}"
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
], ids=["connection-close", "close-among-tokens", "http/1.0", "http/1.0-keep-alive"])
async def test_an_answer_that_does_not_keep_the_connection(answer: bytes) -> None:
    """The server did not close (it would read on): the client must not reuse it anyway."""
    async with serving([Answer.whole(answer)]) as server, pool_for(server) as pool:
        assert (await pool.post(request()))[::2] == (200, b"ok")
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 2


async def test_interim_100_continue_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
    async with serving([Answer([answer[:10], answer[10:30], answer[30:]], pause=0.02)]) as server, \
            pool_for(server) as pool:
        assert (await pool.post(request()))[::2] == (200, b"real")
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
])
async def test_no_body_answers_are_kept(answer: bytes) -> None:
    async with serving([Answer.whole(answer)]) as server, pool_for(server) as pool:
        status, _, body, truncated = await pool.post(request())
        assert body == b"" and not truncated and status in (204, 304)
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 1


async def test_lf_only_lines_and_a_folded_header() -> None:
    answer = b"HTTP/1.1 200 OK\nX-Long: one\n two\nContent-Length: 3\n\nabc"
    async with serving([Answer.whole(answer)]) as server, pool_for(server) as pool:
        status, headers, body, _ = await pool.post(request())
        assert (status, body, headers["x-long"]) == (200, b"abc", "one two")
        assert (await pool.post(request()))[2] == b"{}"
    assert server.connections == 1


# ------------------------------------------------------------------ the body limit


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_a_body_over_the_limit_is_cut_and_its_connection_dropped(framing: str) -> None:
    """The answer comes back at the limit without waiting for the rest (the server sends more than
    the limit, then holds), and its half-read connection is never reused."""
    big = bytes(range(256)) * ((BODY_LIMIT + 5000) // 256 + 1)
    if framing == "length":
        answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 10000000\r\n\r\n" + big
    elif framing == "chunked":
        answer = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(big, [10_000])[:-5]
    else:
        answer = b"HTTP/1.1 500 Oops\r\n\r\n" + big
    async with serving([Answer.whole(answer, hold=True)]) as server, pool_for(server) as pool:
        status, _, body, truncated = await asyncio.wait_for(pool.post(request()), 10)
        assert status == 500 and truncated and body == big[:BODY_LIMIT]
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 2


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_whole_body_over_the_limit_is_cut(framing: str) -> None:
    """All of it sent, in pieces: cut at the limit; the next answer is read right whether the
    connection was kept (a length-framed body read to its end) or not."""
    big = b"z" * (BODY_LIMIT + 5000)
    if framing == "length":
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    else:
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(big, [7000])
    pieces = [answer[i:i + 16384] for i in range(0, len(answer), 16384)]
    async with serving([Answer(pieces, pause=0.005)]) as server, pool_for(server) as pool:
        _, _, body, truncated = await asyncio.wait_for(pool.post(request()), 10)
        assert truncated and body == big[:BODY_LIMIT]
        assert (await pool.post(request()))[::2] == (200, b"{}")  # kept only if read to its very end
    assert server.connections in (1, 2) and len(server.requests) == 2


@pytest.mark.parametrize("size", [BODY_LIMIT - 1, BODY_LIMIT, BODY_LIMIT + 1])
async def test_truncated_at_the_limit_as_the_httpx_path_says(size: int) -> None:
    """``truncated`` exactly as ``answers.read_bounded`` (the httpx path) reports it."""
    data = b"y" * size

    async def one_chunk() -> AsyncIterator[bytes]:
        yield data

    expected = await read_bounded(one_chunk())
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (size, data)
    async with serving([Answer.whole(answer)]) as server, pool_for(server) as pool:
        _, _, body, truncated = await pool.post(request())
    assert (body, truncated) == expected


# ------------------------------------------------------------------ servers that close


async def test_a_server_that_closes_without_answering() -> None:
    async with serving([Answer([], close=True)]) as server, pool_for(server) as pool:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await pool.post(request())
        assert (await pool.post(request()))[::2] == (200, b"{}")  # the pool recovers
    assert server.connections == 2


async def test_a_server_that_closes_an_idle_connection_after_a_while() -> None:
    """Seen through ``eof_received`` while idle: the next post goes on a new connection, no error."""
    async with serving([Answer([OK, b""], pause=0.05, close=True)]) as server, pool_for(server) as pool:
        assert (await pool.post(request()))[2] == b"{}"
        await asyncio.sleep(0.3)  # the server's close reaches the client
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 2


async def test_a_server_that_closes_right_after_its_answer() -> None:
    """A server that hangs up together with its answer (no ``Connection: close``): when the next
    post starts, the close is already in the client's socket, though the event loop has not read it
    yet (``time.sleep`` holds the loop). httpx's path (``QuickStream``'s poll, which the client
    module's docstring relies on: "a connection the server closed is still dropped before it is
    used") goes on a new connection; the lean path must not turn it into a failed post either."""
    async with serving([Answer(close=True)]) as server:
        client = build_client(ServerSection(url=server.url, timeout_s=5.0), UploadSection())
        async with client:
            url = client.base_url.join("/x")
            assert (await client.post(url, content=b"{}")).status_code == 200
            time.sleep(0.1)  # noqa: ASYNC251 - on purpose: the FIN arrives, the loop does not read it
            assert (await client.post(url, content=b"{}")).status_code == 200  # httpx: no error
    assert server.connections == 2
    async with serving([Answer(close=True)]) as server, pool_for(server) as pool:
        assert (await pool.post(request()))[2] == b"{}"
        time.sleep(0.1)  # noqa: ASYNC251 - as above
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 2


# ------------------------------------------------------------------ protocol violations


@pytest.mark.parametrize("answer,hold", [
    (b"HTPT/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (HEAD_LIMIT + 100), True),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (HEAD_LIMIT + 100) + b"\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\nhello\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"5" * (HEAD_LIMIT + 10), True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", True),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Le", False),
], ids=["garbage-status", "http/2", "short-code", "head-over-limit-no-end", "head-over-limit-ended",
        "header-without-colon", "space-before-colon", "bad-chunk-size", "0x-chunk-size", "empty-chunk-size",
        "chunk-size-too-long", "size-line-over-limit", "two-lengths", "length-list", "negative-length",
        "chunk-longer-than-size", "101", "eof-in-length-body", "eof-in-chunk", "eof-before-last-chunk",
        "eof-in-head"])
async def test_a_broken_answer_is_a_remote_protocol_error(answer: bytes, hold: bool) -> None:
    """Each refused as it arrives (the server holds the connection open after it: no waiting for
    a timeout), or at the end of the stream where the stream ends too early."""
    async with serving([Answer.whole(answer, hold=hold, close=not hold)]) as server, \
            pool_for(server, limits=timeout(read=10.0)) as pool:
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(pool.post(request()), 8)
        assert time.monotonic() - started < 5
        assert (await pool.post(request()))[::2] == (200, b"{}")  # a new connection; the pool goes on
    assert server.connections == 2


# ------------------------------------------------------------------ timeouts


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async with serving([Answer([], hold=True)]) as server, pool_for(server, limits=timeout(read=0.3)) as pool:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(pool.post(request()), 10)
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 3.0
        assert len(server.requests) == 1  # sent whole; the answer was waited for


async def test_the_read_timeout_is_the_quiet_time_between_bytes() -> None:
    """One byte every 0.1 s for about a second, read timeout 0.3 s: the answer is read whole."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    trickle = Answer([head] + [b"%d" % i for i in range(10)], pause=0.1)
    async with serving([trickle]) as server, pool_for(server, limits=timeout(read=0.3)) as pool:
        started = time.monotonic()
        assert (await pool.post(request()))[::2] == (200, b"0123456789")
        assert time.monotonic() - started > 0.6  # longer than the read timeout in total


async def test_a_stall_in_the_middle_of_the_body_is_a_read_timeout() -> None:
    answer = Answer([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"], hold=True)
    async with serving([answer]) as server, pool_for(server, limits=timeout(read=0.3)) as pool:
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(pool.post(request()), 10)
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 2


async def test_a_server_that_stops_reading_is_a_write_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as deaf:  # listens, never accepts nor reads
        async with pool_for(deaf.getsockname()[1], limits=timeout(read=0.5)) as pool:
            with pytest.raises(httpx.WriteTimeout):
                await asyncio.wait_for(pool.post(request(b"x" * 64_000_000)), 20)


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: refused
        async with pool_for(s.getsockname()[1]) as pool:
            with pytest.raises(httpx.ConnectError):
                await pool.post(request())
            with pytest.raises(httpx.ConnectError):  # and again: the failed one holds no slot
                await pool.post(request())


async def test_a_slow_connect_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def never(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    async with serving() as server, pool_for(server, max_connections=1, limits=timeout(connect=0.2)) as pool:
        monkeypatch.setattr(loop, "create_connection", never)
        with pytest.raises(httpx.ConnectTimeout):
            await asyncio.wait_for(pool.post(request()), 10)
        monkeypatch.undo()
        assert (await pool.post(request()))[::2] == (200, b"{}")  # the one slot was given back


# ------------------------------------------------------------------ cancellation and the pool


async def test_a_post_cancelled_mid_answer_never_leaves_its_connection_for_reuse() -> None:
    half = Answer([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"], hold=True)
    async with serving([half]) as server, pool_for(server) as pool:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.post(request()), 0.2)
        assert (await pool.post(request(b"next")))[::2] == (200, b"{}")
    assert server.connections == 2
    assert [(r.connection, r.body) for r in server.requests][-1] == (1, b"next")


async def test_one_connection_serves_concurrent_posts_in_turn() -> None:
    async with serving(then=Answer([OK[:20], OK[20:]], pause=0.02)) as server, \
            pool_for(server, max_connections=1) as pool:
        answers = await asyncio.wait_for(asyncio.gather(*(pool.post(request(b"%d" % i)) for i in range(3))), 10)
    assert [(status, body) for status, _, body, _ in answers] == [(200, b"{}")] * 3
    assert server.connections == 1
    assert sorted(r.body for r in server.requests) == [b"0", b"1", b"2"]


async def test_a_post_waiting_for_a_busy_connection_gets_a_pool_timeout() -> None:
    async with serving([Answer([], hold=True)]) as server, \
            pool_for(server, max_connections=1, limits=timeout(pool=0.2)) as pool:
        stuck = asyncio.ensure_future(pool.post(request()))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout):
            await asyncio.wait_for(pool.post(request()), 10)
        assert time.monotonic() - started < 3
        assert not stuck.done()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert (await pool.post(request()))[::2] == (200, b"{}")  # the cancelled one's slot is free again
    assert server.connections == 2


@pytest.mark.parametrize("pool_s", [2.0, None], ids=["pool-timeout", "no-pool-timeout"])
async def test_a_waiter_cancelled_as_it_is_woken_does_not_strand_the_next_one(pool_s: float | None) -> None:
    """Post A holds the one connection; B and C wait. A's answer comes and wakes B — and B is
    cancelled before it runs (the sending state's time limit, at that moment). The free
    connection must then go to C (or to B, where asyncio's ``wait_for`` lets B run on regardless:
    Python 3.11 with a pool timeout), not sit idle while C waits out its pool timeout — or, with
    no pool timeout, forever."""
    slow = Answer([OK[:1], OK[1:]], pause=0.3)  # A's answer comes once B and C wait
    async with serving([slow]) as server, \
            pool_for(server, max_connections=1, limits=httpx.Timeout(5.0, pool=pool_s)) as pool:
        waiters: list[asyncio.Task[tuple[int, httpx.Headers, bytes, bool]]] = []

        async def a_then_cancel_b() -> None:
            await pool.post(request(b"a"))
            waiters[0].cancel()  # B was just woken by A's release, and has not run yet

        first = asyncio.ensure_future(a_then_cancel_b())
        await asyncio.sleep(0.1)  # A has the connection, and waits for its answer
        waiters.extend(asyncio.ensure_future(pool.post(request(body))) for body in (b"b", b"c"))
        await asyncio.sleep(0.05)
        assert [r.body for r in server.requests] == [b"a"] and not any(w.done() for w in waiters)
        await asyncio.wait_for(first, 10)
        started = time.monotonic()
        try:
            status, _, body, _ = await asyncio.wait_for(asyncio.shield(waiters[1]), 3)
        finally:
            waiters[1].cancel()
        assert (status, body) == (200, b"{}")
        assert time.monotonic() - started < 1.0  # not after C's 2 s pool timeout
        assert waiters[0].cancelled() or waiters[0].result()[0] == 200


async def test_bytes_on_an_idle_connection_spoil_it() -> None:
    """Junk after a complete answer (later, or in the same packet): that connection is not reused."""
    later = Answer([OK, b"junk"], pause=0.05)
    together = Answer.whole(OK + b"HTTP/1.1 200 OK\r\n")
    async with serving([later, together]) as server, pool_for(server) as pool:
        assert (await pool.post(request()))[2] == b"{}"
        await asyncio.sleep(0.3)  # the junk arrives while the connection is idle
        assert (await pool.post(request()))[2] == b"{}"
        assert (await pool.post(request()))[::2] == (200, b"{}")
    assert server.connections == 3
    assert [r.connection for r in server.requests] == [0, 1, 2]


async def test_an_idle_connection_past_keepalive_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_http, "KEEPALIVE_S", 0.1)
    async with serving() as server, pool_for(server) as pool:
        await pool.post(request())
        await pool.post(request())  # at once: reused
        await asyncio.sleep(0.3)
        await pool.post(request())  # too old: a new one
    assert [r.connection for r in server.requests] == [0, 0, 1]


# ------------------------------------------------------------------ any framing, any split


@st.composite
def framed_answers(draw: st.DrawFn) -> tuple[int, bytes, bytes, list[int], str]:
    status = draw(st.sampled_from([200, 201, 400, 500]))
    body = draw(st.binary(min_size=0, max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\n" % status
    if framing == "length":
        raw = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        sizes = draw(st.lists(st.integers(1, 1500), min_size=1, max_size=8))
        extension = draw(st.sampled_from([b"", b";a=b", b" ; x"]))
        trailer = draw(st.sampled_from([b"", b"X-T: 1\r\n"]))
        raw = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, sizes, extension=extension,
                                                                       trailer=trailer)
    else:
        raw = head + b"\r\n" + body
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=10))))
    return status, body, raw, cuts, framing


@settings(max_examples=50, deadline=None)
@given(framed_answers())
def test_any_framing_split_anywhere_gives_the_body(case: tuple[int, bytes, bytes, list[int], str]) -> None:
    """The pool returns exactly the body and status, however the answer's bytes are cut into reads;
    and after a framed answer the connection is clean for the next one."""
    status, body, raw, cuts, framing = case
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]

    async def run() -> None:
        answer = Answer(pieces, pause=0.002, close=framing == "close")
        async with serving([answer]) as server, pool_for(server) as pool:
            got = await asyncio.wait_for(pool.post(request()), 10)
            assert (got[0], got[2], got[3]) == (status, body, False)
            assert (await asyncio.wait_for(pool.post(request()), 10))[::2] == (200, b"{}")
        assert server.connections == (2 if framing == "close" else 1)

    asyncio.run(run())


# ------------------------------------------------------------------ through ReportPoster


def _names(head: bytes) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:] if line]


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name:
            return value.strip()
    return None


async def test_report_poster_sends_the_request_httpx_sends() -> None:
    data = b'{"id": "5c2e", "name": "r\xc3\xa9port"}' * 50
    async with serving() as server:
        server_section = ServerSection.model_validate({"url": server.url + "/wats/", "token": "dG9rZW4=",
                                                       "timeout_s": 5.0})
        client = build_client(server_section, UploadSection())
        async with client:
            poster = ReportPoster(client)
            assert poster._lean is not None  # the lean path is the one under test
            reply = await poster.post(data)
            assert (reply.status, reply.body) == (200, b"{}")
            response = await client.send(client.build_request("POST", poster.url, content=data))
            assert response.status_code == 200
    lean, through_httpx = server.requests
    assert lean.head.startswith(b"POST /wats/api/Report/WSJF HTTP/1.1\r\n")
    assert _header(lean.head, b"host") == b"127.0.0.1:%d" % server.port
    assert _header(lean.head, b"authorization") == b"Basic dG9rZW4="
    assert _header(lean.head, b"content-type") == b"application/json"
    assert _header(lean.head, b"content-length") == b"%d" % len(data)
    assert lean.body == data
    assert set(_names(lean.head)) == set(_names(through_httpx.head))
    assert _names(lean.head) == _names(through_httpx.head)  # in httpx's order, too
    assert lean.head == through_httpx.head and through_httpx.body == data


async def test_report_poster_without_a_token_sends_no_authorization() -> None:
    async with serving() as server:
        async with build_client(ServerSection(url=server.url), UploadSection()) as client:
            poster = ReportPoster(client)
            assert poster._lean is not None
            assert (await poster.post(b"{}")).status == 200
    assert _header(server.requests[0].head, b"authorization") is None
    assert server.requests[0].head.startswith(b"POST /api/Report/WSJF HTTP/1.1\r\n")


@pytest.mark.parametrize("variable,url", [("HTTP_PROXY", "http://wats.example:8080"),
                                          ("ALL_PROXY", "http://wats.example:8080"),
                                          ("HTTPS_PROXY", "https://wats.example:8443"),
                                          ("ALL_PROXY", "https://wats.example:8443")])
async def test_proxy_variables_and_the_lean_path(variable: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean path is taken exactly where httpx itself would go straight to the server.

    httpx reads proxy variables only for a client without a transport of its own
    (``allow_env_proxies = trust_env and transport is None``); ``build_client`` passes one, so its
    clients go direct whatever the environment says — and the lean post with them. A proxy the
    client does use (a mount) takes the report URL off the lean path."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    async with httpx.AsyncClient() as plain:  # the variable is one httpx honours for this URL...
        assert plain._transport_for_url(httpx.URL(url)) is not plain._transport
    async with build_client(ServerSection(url=url), UploadSection()) as client:
        poster = ReportPoster(client)
        direct = client._transport_for_url(poster.url) is client._transport
        assert direct  # ...but not for build_client's clients
        assert isinstance(client._transport, LeanTransport)
        assert (poster._lean is None) == (not direct)
    transport = LeanTransport(httpx.create_ssl_context(), httpx.Limits(max_connections=2))
    proxied = httpx.AsyncClient(base_url=url, transport=transport,
                                mounts={"all://": httpx.AsyncHTTPTransport(proxy="http://127.0.0.1:9")})
    async with proxied:
        poster = ReportPoster(proxied)
        assert poster._lean is None and poster._pool is not None  # through the proxy's pool instead


# ------------------------------------------------------------------ helpers under test


def test_chunked_helper_builds_what_it_says() -> None:
    assert chunked(b"hello world", [5]) == b"5\r\nhello\r\n5\r\n worl\r\n1\r\nd\r\n0\r\n\r\n"
    assert chunked(b"", [3]) == b"0\r\n\r\n"

