"""The report post's own HTTP/1.1 connections: asyncio protocols, kept alive, no per-post layers.

Why by hand (issue 18): a 50 KB report post through httpx's transport cost the service 0.43–0.50 ms
of CPU; the same post on an asyncio protocol costs 0.07 ms (measured side by side against the
emulator, 2,000 posts, 4 connections). The difference is what httpcore wraps around every request
for the general case — anyio locks and cancel scopes (each asking asyncio for the current task),
its pool's bookkeeping, h11's event machinery — about a fifth of the station's whole CPU per report.
The uploader needs one request shape only: a POST with a body of known length, answered by one
response whose body is read up to ``answers.BODY_LIMIT``.

Used only where nothing else is needed: ``http`` and ``https`` (TLS through asyncio's own SSL
transport with the client's SSL context) and no proxy. Everything else — a proxy, another
transport, a header value that is not plain ASCII text — goes through httpx as before
(``client.ReportPoster``). Errors are httpx's (``ConnectError``, ``ReadTimeout``,
``RemoteProtocolError``, ...), so the uploader reads every failure the same way either path.

What the response reader accepts (RFC 9112): a status line ``HTTP/1.x NNN reason``; header lines
(``\\n`` or ``\\r\\n``; folded lines joined); 1xx answers skipped (101 refused); the body framed by
``Transfer-Encoding: chunked`` (extensions and trailers read and dropped), ``Content-Length``
(conflicting values refused), no body for 204/304, else until the server closes. A head over 64 KB,
a malformed line or a connection that ends early is a ``RemoteProtocolError``. A connection is
kept for the next post only after a complete HTTP/1.1 answer without ``Connection: close`` and with
nothing after it; before each reuse it must still be open (a server that closed an idle connection
is seen through ``eof_received``) and idle for less than ``KEEPALIVE_S``.

Timeouts as httpx's: ``connect`` for the connection (and TLS handshake), then ``read`` as the longest
quiet time between bytes of the answer (``WriteTimeout`` instead when the request itself could not be
written out), and ``pool`` for waiting on a free connection. A post that is cancelled (the sending
state's own time limit) closes its connection: it is never reused half-read.
"""

from __future__ import annotations

import asyncio
import collections
import re
import select
import ssl
import sys
from typing import Any

import httpx

from .answers import BODY_LIMIT

HEAD_LIMIT = 64 * 1024  # the longest response head (status line and headers) read
KEEPALIVE_S = 5.0  # an idle connection older than this is closed rather than reused (httpx's default)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: [^\r\n]*)?\r?")
_LINE_END = re.compile(rb"\r?\n")
_SIZE_LINE, _TRAILER, _CHUNK_END = -1, -2, -3  # where a chunked body is when no chunk's data is due


def readable(sock: Any, poller: Any = None) -> bool:
    """Whether reading ``sock`` would return at once (data, or the end a closed peer leaves); a socket
    that is gone counts as readable. ``poller``: a ``select.poll`` object with the socket registered
    (one system call per question). Also httpcore's "is this connection closed?" (client.py)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if poller is not None:
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows, and where poll is missing


class _Broken(Exception):
    """The answer breaks HTTP/1.1 (becomes ``httpx.RemoteProtocolError``)."""


class _Answer:
    """The response being read: status, headers, body so far, and how the body ends."""

    __slots__ = ("status", "headers", "keep", "framing", "left", "body", "size", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep = False
        self.framing = ""  # "length" | "chunked" | "close" | "" (head not read yet)
        self.left = 0  # "length": body bytes still to come; "chunked": of the current chunk, or _SIZE_LINE...
        self.body = bytearray()
        self.size = 0
        self.truncated = False

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        room = BODY_LIMIT - len(self.body)
        if room > 0:
            self.body += data[:room]
        if self.size >= BODY_LIMIT:  # as ``answers.read_bounded``: at the limit the rest is not read
            self.truncated = True


def _header_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _tokens(values: list[bytes]) -> list[bytes]:
    return [token.strip().lower() for value in values for token in value.split(b",") if token.strip()]


def _read_head(raw: bytes) -> _Answer:
    """Status line and headers of one answer (without the blank line that ends them)."""
    lines = _LINE_END.split(raw)
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise _Broken(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    answer = _Answer()
    answer.status = int(status.group(2))
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # a folded line continues the header before it
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise _Broken(f"malformed header line: {line[:80]!r}")
        headers.append((name.lower(), value.strip(b" \t")))
    answer.headers = headers
    connection = _tokens(_header_values(headers, b"connection"))
    answer.keep = status.group(1) == b"1" and b"close" not in connection
    codings = _tokens(_header_values(headers, b"transfer-encoding"))
    lengths = {value.strip() for value in _header_values(headers, b"content-length")}
    if answer.status in (204, 304):
        answer.framing, answer.left = "length", 0
    elif codings:
        if codings[-1] == b"chunked":
            answer.framing, answer.left = "chunked", _SIZE_LINE
        else:
            answer.framing, answer.keep = "close", False
    elif lengths:
        if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
            raise _Broken(f"unusable Content-Length: {sorted(lengths)!r}")
        answer.framing, answer.left = "length", int(lengths.pop())
    else:
        answer.framing, answer.keep = "close", False
    return answer


class _Connection(asyncio.Protocol):
    """One kept-alive connection; reads one answer per request, as the bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_s: float | None) -> None:
        self._loop = loop
        self._read_s = read_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._answer: _Answer | None = None
        self._waiter: asyncio.Future[_Answer] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._got_bytes = False
        self._poller: Any = None  # ``select.poll`` of the socket (POSIX), for ``usable``

    # asyncio's protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0 and hasattr(select, "poll") and sys.platform != "win32":
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for: never reuse this one
            self.close()
            return
        self._got_bytes = True
        self._deadline = self._loop.time() + (self._read_s or 0.0)
        self._buf += data
        try:
            self._parse(eof=False)
        except _Broken as exc:
            self._fail(httpx.RemoteProtocolError(str(exc)))

    def eof_received(self) -> bool | None:
        self._ended()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._deadline = self._loop.time() + (self._read_s or 0.0)

    # the request
    async def request(self, data: bytes) -> _Answer:
        assert self.transport is not None
        self._answer, self._got_bytes = None, False
        waiter = self._waiter = self._loop.create_future()
        if self._read_s is not None:
            self._deadline = self._loop.time() + self._read_s
            self._timer = self._loop.call_at(self._deadline, self._check_time)
        self.transport.write(data)
        try:
            answer: _Answer = await waiter
            return answer
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._waiter = None

    def usable(self, now: float) -> bool:
        """Still open, idle for less than ``KEEPALIVE_S``, and nothing waiting to be read: an idle
        connection's socket is readable only if the server closed it (or sent what nobody asked
        for), and the loop may not have read that yet (httpcore asks the same before a reuse)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing() or now - self.idle_since >= KEEPALIVE_S:
            return False
        return not readable(transport.get_extra_info("socket"), self._poller)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # reading the answer
    def _parse(self, *, eof: bool) -> None:
        while True:
            answer = self._answer
            if answer is None:
                end = _HEAD_END.search(self._buf)
                if end is None:
                    if len(self._buf) > HEAD_LIMIT:
                        raise _Broken(f"the answer's head is over {HEAD_LIMIT} bytes")
                    return
                if end.start() > HEAD_LIMIT:
                    raise _Broken(f"the answer's head is over {HEAD_LIMIT} bytes")
                answer = _read_head(bytes(self._buf[:end.start()]))
                del self._buf[:end.end()]
                if 100 <= answer.status < 200:
                    if answer.status == 101:
                        raise _Broken("the server switched protocols (101) in answer to a report post")
                    continue  # an interim answer: the real one follows
                self._answer = answer
            if self._body(answer, eof=eof):
                return

    def _body(self, answer: _Answer, *, eof: bool) -> bool:
        """Read what there is of the body; True when nothing more can be read now."""
        buf = self._buf
        if answer.framing == "length":
            take = min(answer.left, len(buf))
            answer.add(memoryview(buf)[:take])
            del buf[:take]
            answer.left -= take
            if answer.left == 0:
                self._done(answer)
            elif answer.truncated:
                self._done(answer, keep=False)
            return True
        if answer.framing == "close":
            answer.add(buf)
            buf.clear()
            if eof or answer.truncated:
                self._done(answer, keep=False)
            return True
        while not answer.truncated:  # chunked
            if answer.left == _CHUNK_END:  # the line end after a chunk's data
                if buf[:2] == b"\r\n" or buf[:1] == b"\n":
                    del buf[:1 if buf[:1] == b"\n" else 2]
                    answer.left = _SIZE_LINE
                    continue
                if len(buf) == 0 or buf == b"\r":
                    return True
                raise _Broken("a chunk is longer than its size says")
            if answer.left < 0:  # a size line, or (after the last chunk) a trailer line, is due
                end = _LINE_END.search(buf)
                if end is None:
                    if len(buf) > HEAD_LIMIT:
                        raise _Broken("a chunk size line (or trailer) is too long")
                    return True
                line = bytes(buf[:end.start()])
                del buf[:end.end()]
                if answer.left == _TRAILER:  # trailers: until the empty line
                    if not line:
                        self._done(answer)
                        return True
                    continue
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                    raise _Broken(f"bad chunk size line: {line[:40]!r}")
                answer.left = int(size, 16) or _TRAILER
                continue
            take = min(answer.left, len(buf))
            answer.add(memoryview(buf)[:take])
            del buf[:take]
            answer.left -= take
            if answer.left > 0:
                return True
            answer.left = _CHUNK_END
        self._done(answer, keep=False)
        return True

    def _done(self, answer: _Answer, keep: bool = True) -> None:
        if self._buf or not keep or not answer.keep:
            answer.keep = False
        waiter = self._waiter
        self._answer = None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        if not answer.keep:
            self.close()

    def _ended(self, exc: Exception | None = None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        answer = self._answer
        if answer is not None and answer.framing == "close":
            self._done(answer, keep=False)
        elif not self._got_bytes:
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."), exc)
        else:
            self._fail(httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
                       exc)

    def _fail(self, error: Exception, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _check_time(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_time)
            return
        if self._write_paused:
            self._fail(httpx.WriteTimeout("the request could not be written in time"))
        else:
            self._fail(httpx.ReadTimeout("no answer in time"))


class LeanPool:
    """Kept-alive connections to one server (scheme, host, port) for report posts."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, *, max_connections: int,
                 timeout: httpx.Timeout) -> None:
        self.host, self.port = host, port
        self._ssl = ssl_context
        self._max = max(1, max_connections)
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[_Connection] = set()

    async def post(self, data: bytes) -> tuple[int, httpx.Headers, bytes, bool]:
        """Send a whole request (head and body); the answer's status, headers, body (at most
        ``BODY_LIMIT``) and whether the body was cut there. Raises httpx's errors."""
        conn = await self._acquire()
        try:
            answer = await conn.request(data)
        except BaseException:
            conn.close()
            self._release(conn)
            raise
        self._release(conn)
        return answer.status, httpx.Headers(answer.headers), bytes(answer.body), answer.truncated

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
            self._forget(conn)
        while self._open >= self._max:
            slot: asyncio.Future[None] = loop.create_future()
            self._waiting.append(slot)
            try:
                async with asyncio.timeout(self._timeout.pool):
                    await slot
            except BaseException as exc:
                if slot.done() and not slot.cancelled():  # woken, but leaving: the next waiter is woken instead
                    self._wake()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("no free connection in time") from None
                raise
            finally:
                if slot in self._waiting:
                    self._waiting.remove(slot)
            if self._idle:
                conn = self._idle.pop()
                if conn.usable(loop.time()):
                    return conn
                conn.close()
                self._forget(conn)
        self._open += 1
        try:
            conn = await self._connect(loop)
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        self._all.add(conn)
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        def protocol() -> _Connection:
            return _Connection(loop, self._timeout.read)

        kwargs: dict[str, Any] = {}
        if self._ssl is not None:
            kwargs = {"ssl": self._ssl, "server_hostname": self.host}
        try:
            async with asyncio.timeout(self._timeout.connect):
                _, conn = await loop.create_connection(protocol, self.host, self.port, **kwargs)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {self.host}:{self.port} in time") from None
        except OSError as exc:  # ssl.SSLError (a failed TLS check) is one: its cause is kept for the message
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            self._forget(conn)
        else:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        self._wake()

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1

    def _wake(self) -> None:
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                return
