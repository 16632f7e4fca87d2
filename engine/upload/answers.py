"""What a server's answer says, in words a person can act on, and what the uploader does about it.

One reading of a WATS (or proxy) answer for every caller: the uploader's error notes, its probe and
the configurator's connection test say the same thing about the same answer. An answer's body is
read only up to ``BODY_LIMIT`` and the connection then closed: a server (or something posing as
one) that answers with an endless body must not fill the station's memory (a 4 GB body once took
the service to 2.1 GB of RSS in 20 s).
"""

from __future__ import annotations

import json
import ssl
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass

import httpx

#: The most of any answer's body that is read (raw bytes, and again after gzip/deflate decoding).
BODY_LIMIT = 64 * 1024

#: Keys under which WATS and common proxies put a human-readable message in a JSON body.
_MESSAGE_KEYS = ("message", "Message", "error", "detail", "title")

REJECT_CODES = {400, 413, 422}
#: Answers to a POST that no retry can fix: the uploader pauses until a person acts (see ``Hold``).
PAUSE_CODES = {401: "the server refused the token (401) — set server.token, see `stationflow config show`",
               403: "the token is not allowed to submit reports (403) — give it the right to submit on the "
                    "WATS server, then `stationflow queue resume`",
               404: "the server has no report endpoint at this address (404) — check server.url"}
TRANSIENT_CODES = {408, 425, 429}
WEB_PAGE = ("the server answered with a web page, not WATS: a proxy? — check server.url and any proxy "
            "(login page) between the station and the server")


@dataclass(frozen=True)
class Reply:
    """An answer with at most ``BODY_LIMIT`` of its body: all the uploader keeps of a response."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> object:
        """The body as JSON (ValueError if it is not, or was cut short)."""
        if self.truncated:
            raise ValueError("body cut short")
        return json.loads(self.body)

    @property
    def is_web_page(self) -> bool:
        """An HTML page (a proxy's login or error page), which WATS never answers."""
        kind = self.headers.get("content-type", "").lower()
        start = self.body[:512].lstrip().lower()
        return "html" in kind or start.startswith((b"<!doctype html", b"<html"))


def _decoder(headers: httpx.Headers) -> zlib._Decompress | None:  # noqa: SLF001 - the stdlib's own type
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=47)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


def reply_of(status: int, headers: httpx.Headers, raw: bytes, truncated: bool) -> Reply:
    """The answer as the uploader keeps it: the body decoded (gzip, deflate) and bounded again. From
    httpx's response (``read_reply``) or straight from the connection pool's (the lean post)."""
    decoder = _decoder(headers)
    body = raw
    if decoder is not None:  # bounded again after decoding: a small gzip can hold a huge body
        try:
            body = decoder.decompress(raw, BODY_LIMIT)
            truncated = truncated or bool(decoder.unconsumed_tail)
        except zlib.error as exc:  # not what it says it is: never taken as an acknowledgement
            raise httpx.DecodingError(f"the answer's {headers.get('content-encoding')} body cannot be "
                                      f"decoded ({exc})") from None
    elif headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        body = b""  # br, zstd: not read at all; the status code still speaks
    return Reply(status, headers, body, truncated)


async def read_reply(response: httpx.Response) -> Reply:
    """Read at most ``BODY_LIMIT`` of a streamed response's body, then close it."""
    try:
        raw, truncated = await read_bounded(_araw(response))
    finally:
        await response.aclose()
    return reply_of(response.status_code, response.headers, raw, truncated)


async def read_bounded(chunks: AsyncIterable[bytes]) -> tuple[bytes, bool]:
    """At most ``BODY_LIMIT`` of a body's raw bytes, and whether there was more (the caller closes
    the response: an unread rest closes its connection)."""
    parts, size, truncated = [], 0, False
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= BODY_LIMIT:
            truncated = True
            break
    raw = parts[0] if len(parts) == 1 else b"".join(parts)
    return raw[:BODY_LIMIT], truncated or len(raw) > BODY_LIMIT


def read_reply_sync(response: httpx.Response) -> Reply:
    """``read_reply`` for the blocking client (the connection test)."""
    chunks, size, truncated = [], 0, False
    try:
        for chunk in _raw(response):
            chunks.append(chunk)
            size += len(chunk)
            if size >= BODY_LIMIT:
                truncated = True
                break
    finally:
        response.close()
    raw = b"".join(chunks)
    return reply_of(response.status_code, response.headers, raw[:BODY_LIMIT], truncated or len(raw) > BODY_LIMIT)


def _araw(response: httpx.Response) -> AsyncIterator[bytes]:
    return response.aiter_raw(chunk_size=16 * 1024)


def _raw(response: httpx.Response) -> Iterator[bytes]:
    return response.iter_raw(chunk_size=16 * 1024)


def server_message(reply: Reply, limit: int = 500) -> str:
    """The server's own message: a JSON body's message field, else the start of the body text."""
    body = reply.text.strip()
    try:
        data = reply.json()
    except ValueError:
        return body[:limit]
    if isinstance(data, dict):
        for key in _MESSAGE_KEYS:
            value = data.get(key)
            if isinstance(value, str):
                return value[:limit]
    return body[:limit]


@dataclass
class Answer:
    """What one attempt came to, in the uploader's terms. ``hold``: a pause that a probe cannot
    lift (the probe's GET may well succeed while every POST is refused), see ``Hold``."""

    kind: str  # accepted | rejected | pause | transient | timeout
    message: str
    retry_after: float | None = None
    status: int | None = None
    hold: bool = False


def classify_reply(reply: Reply) -> Answer:
    code = reply.status
    if 200 <= code < 300:
        if reply.is_web_page:
            return Answer("transient", f"{WEB_PAGE} ({code})", status=code)
        return Answer("accepted", f"{code}", status=code)
    text = server_message(reply)
    if code in PAUSE_CODES:
        return Answer("pause", PAUSE_CODES[code] + (f" (server said: {text})" if text else ""), status=code,
                      hold=True)
    if 300 <= code < 400:
        where = reply.headers.get("location", "?")
        return Answer("pause", f"the server redirects to {where} ({code}) — set server.url to the final address",
                      status=code, hold=True)
    if code in TRANSIENT_CODES or code >= 500:
        return Answer("transient", f"server answered {code}" + (f": {text}" if text else ""),
                      retry_after=retry_after(reply.headers), status=code)
    return Answer("rejected", f"server rejected the report ({code})" + (f": {text}" if text else ""), status=code)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind an httpx error, if the failure was the TLS handshake."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def what_broke(exc: BaseException) -> str:
    """An exception in words: its message, else its type — and the cause behind it, if it says more.
    httpx's errors often have an empty message ("the connection broke before the answer: " said
    nothing); the type (``RemoteProtocolError``, ``ReadError``) and its cause do."""
    text = str(exc).strip()
    words = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        words += f" ({type(cause).__name__}: {str(cause).strip()})"
    return words


def classify_exception(exc: BaseException) -> Answer:
    tls = _tls_failure(exc)
    if tls is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(exc)
        return Answer("pause", f"TLS check of the server failed ({detail}) — renew the server's certificate, "
                               "or set server.ca_bundle to the CA that signed it")
    if isinstance(exc, httpx.ConnectError):
        return Answer("transient", f"cannot connect to the server: {what_broke(exc)}")
    if isinstance(exc, httpx.TimeoutException):
        return Answer("transient", f"the server did not answer in time ({type(exc).__name__})")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.NetworkError)):
        return Answer("transient", f"the connection broke before the answer: {what_broke(exc)}")
    return Answer("transient", what_broke(exc))


def retry_after(headers: httpx.Headers) -> float | None:
    """The server's ``Retry-After`` in seconds (a number or an HTTP date), if it sent a usable one."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
