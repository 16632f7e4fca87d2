"""The uploader's HTTP client: one pooled ``httpx.AsyncClient`` per service, and what it costs per post.

Report posts go on the client transport's own HTTP/1.1 connections (``LeanTransport`` →
``lean_http.py``: 0.07–0.15 ms of CPU per 50 KB post instead of ~0.45 through httpx); httpx
serves the probe, the connection test and any post the lean path does not cover. What follows
is how the httpx path itself was made cheaper.

A post of a 50 KB report is mostly the kernel's work (the socket write); of the Python around it,
two parts were measured as worth cutting (drain profile, issue 18 item 3):

* httpcore asks each pooled connection "has the server closed you?" at every request and again at
  every response's close (``has_expired``). Through anyio that question builds a dict of socket
  attributes and calls ``getpeername`` each time: ~10 % of the event loop's busy time in a drain.
  ``QuickBackend`` hands httpcore streams that answer it with one ``poll`` of the socket they keep.
  The answer is the same (the socket is readable while idle: the server hung up), so a connection
  the server closed is still dropped before it is used.
* httpcore writes a request's head and its body in two ``send`` calls; ``QuickStream`` joins them.
* ``build_request`` parses the relative report path against the base URL at every post; the
  report URL is built once per client instead (``report_url``), exactly as httpx would merge it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import select
import socket
import ssl
import sys
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx

from .answers import Reply, read_bounded, read_reply, reply_of
from .lean_http import LeanPool, readable as _readable
from ...schemas.config import ServerSection, UploadSection

log = logging.getLogger(__name__)

REPORT_PATH = "/api/Report/WSJF"
PROBE_PATH = "/api/App/Version"


def skip_sniffio_lookups() -> None:
    """Process-wide, so called by the process's entry point (``stationflow run``, the benchmarks),
    never on import. httpcore asks ``import sniffio`` several times per request to learn the async
    library. Without sniffio installed (it is not one of our dependencies) every failed import scans
    sys.path again: measured at ~0.14 ms each, ~0.7 ms of CPU per report. A None entry in
    sys.modules makes the import fail at once, which httpcore already handles by assuming asyncio
    — the only loop we run."""
    if importlib.util.find_spec("sniffio") is None:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


#: A write this small is a request's head: held back and sent with what follows (its body).
HEAD_LIMIT = 8 * 1024


def loop_now() -> float:
    """The event loop's clock, which cancel scopes' deadlines are read against (asyncio's is
    ``time.monotonic``), without anyio's look-up of the running library at every call."""
    return asyncio.get_running_loop().time()


class QuickStream(httpcore.AsyncNetworkStream):
    """httpcore's anyio stream, with the raw socket looked up once (see the module docstring), and
    a request's head sent in one write with its body.

    httpcore writes the head and the body of a request separately: two trips through anyio and two
    ``send`` calls per post. A small write is held back and joined to the next one; a read (the
    answer is awaited: a request without a body) sends what is held first, so nothing waits.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        #: The anyio stream under httpcore's (see ``read``); None: httpcore's stream is used as it is.
        raw = getattr(inner, "_stream", None) if type(inner).__name__ == "AnyIOStream" else None
        self._raw: anyio.abc.ByteStream | None = raw if isinstance(raw, anyio.abc.ByteStream) else None
        self._held = b""
        self._held_timeout: float | None = None
        self._sock: socket.socket | None = inner.get_extra_info("socket")
        self._poller: Any = None
        if self._sock is not None and self._sock.fileno() >= 0 and sys.platform != "win32" and hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(self._sock.fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """httpcore's ``AnyIOStream.read`` — the same timeout, the same errors — without its two
        generator context managers (``map_exceptions``, ``fail_after``) around each call: a cancel
        scope and a ``try`` do the same for a third of the CPU (measured 15 → 10 µs a call)."""
        if self._held:
            held, self._held = self._held, b""
            await self._send(held, self._held_timeout)
        raw = self._raw
        if raw is None:
            return await self._inner.read(max_bytes, timeout)
        try:
            if timeout is None:
                return await raw.receive(max_bytes)
            with anyio.CancelScope(deadline=loop_now() + timeout):
                return await raw.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise httpcore.ReadError(exc) from exc
        raise httpcore.ReadTimeout(TimeoutError())  # the scope's deadline passed: nothing else cancels it

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # the end of a body of known length: nothing to send
            return
        if self._held:
            buffer, self._held = self._held + buffer, b""
        elif len(buffer) <= HEAD_LIMIT:
            self._held, self._held_timeout = buffer, timeout
            return
        await self._send(buffer, timeout)

    async def _send(self, buffer: bytes, timeout: float | None) -> None:
        raw = self._raw
        if raw is None:
            await self._inner.write(buffer, timeout)
            return
        try:  # as ``read``: httpcore's ``AnyIOStream.write`` without its context managers
            if timeout is None:
                await raw.send(buffer)
                return
            with anyio.CancelScope(deadline=loop_now() + timeout):
                await raw.send(buffer)
                return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise httpcore.WriteError(exc) from exc
        raise httpcore.WriteTimeout(TimeoutError())

    async def aclose(self) -> None:
        self._held = b""
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        if self._held:  # never so: a proxy's CONNECT is answered (read) before its handshake
            held, self._held = self._held, b""
            await self._send(held, self._held_timeout)
        return QuickStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._sock, self._poller)
        return self._inner.get_extra_info(info)


class QuickBackend(httpcore.AnyIOBackend):
    """httpcore's anyio backend, its streams wrapped in ``QuickStream``."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return QuickStream(await super().connect_tcp(host, port, timeout, local_address, socket_options))


class LeanTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (for the probe, and for posts that cannot go lean) that also holds the
    report posts' own connections (``lean_http``), closed with it."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits, retries=0)
        self.ssl_context = ssl_context
        self.max_connections = limits.max_connections or 1
        self._lean: dict[tuple[str, str, int], LeanPool] = {}

    def lean_pool(self, url: httpx.URL, timeout: httpx.Timeout) -> LeanPool | None:
        """The lean connections to ``url``'s server; None where they do not apply (not http/https)."""
        scheme = url.scheme
        if scheme not in ("http", "https") or not url.host:
            return None
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.host, port)
        pool = self._lean.get(key)
        if pool is None:
            pool = self._lean[key] = LeanPool(url.host, port, self.ssl_context if scheme == "https" else None,
                                              max_connections=self.max_connections, timeout=timeout)
        return pool

    async def aclose(self) -> None:
        pools, self._lean = list(self._lean.values()), {}
        for pool in pools:
            await pool.aclose()
        await super().aclose()


def _quick_transport(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its error mapping, its response streams) over a pool with ``QuickBackend``.
    The pool is httpx's private ``_pool``: if a later httpx has none, its own transport is used as is."""
    context = httpx.create_ssl_context(verify=verify)
    transport = LeanTransport(context, limits)
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            retries=0, network_backend=QuickBackend())
    else:  # pragma: no cover - an httpx this was not written for: slower, not wrong
        log.debug("httpx transport without a connection pool to tune; using it as it is")
    return transport


def build_client(server: ServerSection, upload: UploadSection) -> httpx.AsyncClient:
    """One pooled client for the whole service. Limits and TLS go on the transport we pass."""
    verify: ssl.SSLContext | bool
    if not server.verify_tls:
        log.warning("TLS certificate checks are off (server.verify_tls: false)")
        verify = False
    else:
        verify = ssl.create_default_context(cafile=server.ca_bundle) if server.ca_bundle else True
    limits = httpx.Limits(max_connections=upload.concurrency + 1, max_keepalive_connections=upload.concurrency + 1)
    headers = {"Content-Type": "application/json", "User-Agent": "stationflow/0.1"}
    if server.token is not None:
        headers["Authorization"] = f"Basic {server.token.get_secret_value()}"
    timeout = httpx.Timeout(server.timeout_s, connect=server.connect_timeout_s)
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=timeout, cookies=_no_cookies(),
                             transport=_quick_transport(verify, limits))


def report_url(client: httpx.AsyncClient) -> httpx.URL:
    """The report endpoint under the client's base URL, as ``build_request`` merges a relative path
    (the base's path kept: ``https://host/wats/`` → ``https://host/wats/api/Report/WSJF``)."""
    base = client.base_url
    return base.copy_with(raw_path=base.raw_path + REPORT_PATH.lstrip("/").encode("ascii"))


def _no_cookies() -> CookieJar:
    """A jar that keeps nothing: the station never needs cookies, and the lean post sends none, so
    the probe (through the client) must not start sending one a server set either."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


#: httpcore's errors as httpx names them (httpx's own table, ``httpx._transports.default``): the
#: uploader reads every failure as an httpx error, whichever way the post went.
_HTTPX_ERROR_OF: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException, httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout, httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout, httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError, httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError, httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol, httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError, httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def httpx_error(exc: Exception) -> httpx.HTTPError | None:
    """The httpx error httpx itself would raise for ``exc`` (the most specific one), or None when
    ``exc`` is not an httpcore error."""
    for cls in type(exc).__mro__:
        mapped = _HTTPX_ERROR_OF.get(cls)
        if mapped is not None:
            return mapped(str(exc))
    return None


class ReportPoster:
    """Posts report bytes to one client's report endpoint, past the client's own layers.

    ``AsyncClient.send`` wraps every post in layers the uploader never uses: an auth flow (the
    token is a fixed header), a redirect loop (a redirect pauses the uploader instead), a cookie
    jar, event hooks, an elapsed-time timer and a response object around httpcore's. Measured,
    they were about a third of the event loop's time per post. The poster hands the connection
    pool of the client's own transport (the one httpx picks for the report URL: its TLS, limits
    and any proxy) the request httpx would have built: the same URL, the same headers in the same
    order, the same timeouts; httpcore's errors become the httpx errors httpx would raise. A
    client whose transport is not httpx's (a test's, a later httpx's) is used as it is, through
    ``send``.

    Leaner still, and the usual path: where the client's transport is ``LeanTransport`` (every
    client ``build_client`` makes) and no proxy applies, the request — those same bytes — goes on
    the transport's own HTTP/1.1 connections (``lean_http``), 0.07 ms of CPU per post instead of
    0.45.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.url = report_url(client)
        template = client.build_request("POST", self.url, content=b"")
        #: Every header but the length, in httpx's order; the length goes last, where httpx puts it.
        self._headers = [(name, value) for name, value in template.headers.raw if name.lower() != b"content-length"]
        self._timeout = template.extensions["timeout"]
        self._target = httpcore.URL(scheme=self.url.raw_scheme, host=self.url.raw_host, port=self.url.port,
                                    target=self.url.raw_path)
        transport = client._transport_for_url(self.url)  # noqa: SLF001 - the one httpx would use
        pool = getattr(transport, "_pool", None)
        self._pool: httpcore.AsyncConnectionPool | None = (
            pool if isinstance(transport, httpx.AsyncHTTPTransport) and isinstance(pool, httpcore.AsyncConnectionPool)
            else None)
        self._lean: LeanPool | None = None
        self._head = b""
        if isinstance(transport, LeanTransport) and _plain(self._headers):
            self._lean = transport.lean_pool(self.url, httpx.Timeout(**self._timeout))
            target = self.url.raw_path or b"/"
            self._head = (b"POST " + target + b" HTTP/1.1\r\n"
                          + b"".join(name + b": " + value + b"\r\n" for name, value in self._headers)
                          + b"Content-Length: ")

    async def post(self, data: bytes) -> Reply:
        """Post ``data``; the answer with at most ``BODY_LIMIT`` of its body. Raises httpx's errors."""
        if self._lean is not None:
            status, headers, raw, truncated = await self._lean.post(
                b"%s%d\r\n\r\n%s" % (self._head, len(data), data))
            return reply_of(status, headers, raw, truncated)
        if self._pool is None:
            return await read_reply(await self.client.send(self.client.build_request("POST", self.url, content=data),
                                                           stream=True))
        request = httpcore.Request(b"POST", self._target, headers=[*self._headers, (b"Content-Length", b"%d" % len(data))],
                                   content=data, extensions={"timeout": self._timeout})
        try:
            response = await self._pool.handle_async_request(request)
            try:
                raw, truncated = await read_bounded(response.stream)  # type: ignore[arg-type]
            finally:
                await response.aclose()
        except Exception as exc:
            mapped = httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return reply_of(response.status, httpx.Headers(response.headers), raw, truncated)


def _plain(headers: list[tuple[bytes, bytes]]) -> bool:
    """Header names and values the lean post may write as they are: visible ASCII and spaces (h11,
    on the other path, refuses anything that would break the request's framing)."""
    return all(_VISIBLE.fullmatch(name) and _TEXT.fullmatch(value) for name, value in headers)


_VISIBLE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TEXT = re.compile(rb"[\x20-\x7e\t]*")
