"""The uploader's HTTP client: one pooled ``httpx.AsyncClient`` per service, and what it costs per post.

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

import importlib.util
import logging
import select
import socket
import ssl
import sys
from typing import Any

import httpcore
import httpx

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


def _readable(sock: socket.socket | None, poller: Any = None) -> bool:
    """Whether reading ``sock`` would return at once (data, or the end a closed peer leaves); a socket
    that is gone counts as readable, as httpcore counts it. ``poller``: a ``select.poll`` object with
    the socket registered (one system call per question, not three)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if poller is not None:
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows, and where poll is missing


#: A write this small is a request's head: held back and sent with what follows (its body).
HEAD_LIMIT = 8 * 1024


class QuickStream(httpcore.AsyncNetworkStream):
    """httpcore's anyio stream, with the raw socket looked up once (see the module docstring), and
    a request's head sent in one write with its body.

    httpcore writes the head and the body of a request separately: two trips through anyio and two
    ``send`` calls per post. A small write is held back and joined to the next one; a read (the
    answer is awaited: a request without a body) sends what is held first, so nothing waits.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._held = b""
        self._held_timeout: float | None = None
        self._sock: socket.socket | None = inner.get_extra_info("socket")
        self._poller: Any = None
        if self._sock is not None and self._sock.fileno() >= 0 and sys.platform != "win32" and hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(self._sock.fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            held, self._held = self._held, b""
            await self._inner.write(held, self._held_timeout)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # the end of a body of known length: nothing to send
            return
        if self._held:
            buffer, self._held = self._held + buffer, b""
        elif len(buffer) <= HEAD_LIMIT:
            self._held, self._held_timeout = buffer, timeout
            return
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self._held = b""
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        if self._held:  # never so: a proxy's CONNECT is answered (read) before its handshake
            held, self._held = self._held, b""
            await self._inner.write(held, self._held_timeout)
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


def _quick_transport(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its error mapping, its response streams) over a pool with ``QuickBackend``.
    The pool is httpx's private ``_pool``: if a later httpx has none, its own transport is used as is."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, retries=0)
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), max_connections=limits.max_connections,
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
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=timeout,
                             transport=_quick_transport(verify, limits))


def report_url(client: httpx.AsyncClient) -> httpx.URL:
    """The report endpoint under the client's base URL, as ``build_request`` merges a relative path
    (the base's path kept: ``https://host/wats/`` → ``https://host/wats/api/Report/WSJF``)."""
    base = client.base_url
    return base.copy_with(raw_path=base.raw_path + REPORT_PATH.lstrip("/").encode("ascii"))
