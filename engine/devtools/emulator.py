"""A WATS-compatible server on loopback, with fault injection: for the demo, the tests and benchmarks.

It speaks the part of the WATS API the station needs:

- ``POST /api/Report/WSJF`` validates the report as the server does (``schemas.wsjf.parse_header``:
  400 with a message naming each problem), stores it and answers 200. Posting an id again replaces
  the stored report, like WATS; the emulator counts that as a duplicate.
- ``GET /api/App/Version`` (token required: a client can use it to check its token) and
  ``GET /api/internal/Client/Ping`` (no token: a connectivity check).
- ``Authorization: Basic <token>``, compared with the configured token (401 when wrong or missing).

Faults (``Faults``) are set at construction, with ``set_faults`` or through the control endpoint
``/_emulator/faults``; they apply to report posts: an error status (with ``Retry-After``), added
latency, a connection dropped before the report is read, a connection dropped *after* the report is
stored (the acknowledgement is lost: the client must send the same id again), a rejection (400),
or the whole API answering 503, or — ``overload_rps`` — 503 with Retry-After to the API requests
beyond a rate, as a busy server does (``requests_per_second`` says how hard it was hit, second by
second: the fleet benchmark's measure). ``go_down``/``come_back`` close and reopen the listening socket on
the same port, which is what a dead server looks like to a client (connection refused).

It is built on ``http.server`` for zero dependencies and sized for hundreds of requests per second:
HTTP/1.1 keep-alive, TCP_NODELAY (a small answer is not held back by Nagle), one write per answer,
no per-request logging (everything is counted instead) and a deep listen backlog.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import logging
import random
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .. import durable
from ..errors import StorageError
from ...schemas.wsjf import ReportValidationError, normalise_id, parse_header

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "dXNlcjpwYXNz"  # base64 of "user:pass", the token in the sample station config
MAX_BODY_BYTES = 20 * 1024 * 1024
VERSION = "stationflow-emulator/1"

REPORT_PATH = "/api/Report/WSJF"
VERSION_PATH = "/api/App/Version"
PING_PATH = "/api/internal/Client/Ping"
CONTROL_PREFIX = "/_emulator/"


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Rates are probabilities per report post (0 to 1)."""

    error_rate: float = 0.0           # answer ``error_status`` instead of storing
    error_status: int = 503
    retry_after: float | None = None  # seconds, sent as ``Retry-After`` with every injected 503/429/5xx
    latency_s: float = 0.0            # added before every API answer
    drop_before_rate: float = 0.0     # close the connection before reading the report: nothing stored
    drop_after_rate: float = 0.0      # store the report, then close without answering: ack lost
    reject_rate: float = 0.0          # answer 400 to a valid report (the server said no)
    down: bool = False                # every API request gets 503 (the process is up, the service is not)
    overload_rps: float | None = None # API requests per second above this get 503 with Retry-After (a busy server)
    overload_retry_after: float = 1.0 # the Retry-After of those 503s, in seconds

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_before_rate", "drop_after_rate", "reject_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name}: {value!r} — must be a probability from 0 to 1")
        if not isinstance(self.error_status, int) or isinstance(self.error_status, bool) \
                or not 400 <= self.error_status <= 599:
            raise ValueError(f"fault error_status: {self.error_status!r} — must be an HTTP error status, 400 to 599")
        if self.retry_after is not None and (not isinstance(self.retry_after, (int, float))
                                             or isinstance(self.retry_after, bool) or self.retry_after < 0):
            raise ValueError(f"fault retry_after: {self.retry_after!r} — must be seconds (0 or more) or null")
        if not isinstance(self.latency_s, (int, float)) or isinstance(self.latency_s, bool) or self.latency_s < 0:
            raise ValueError(f"fault latency_s: {self.latency_s!r} — must be seconds, 0 or more")
        if self.overload_rps is not None and (not isinstance(self.overload_rps, (int, float))
                                              or isinstance(self.overload_rps, bool) or self.overload_rps <= 0):
            raise ValueError(f"fault overload_rps: {self.overload_rps!r} — must be requests per second (above 0) or null")
        if not isinstance(self.overload_retry_after, (int, float)) or isinstance(self.overload_retry_after, bool) \
                or self.overload_retry_after < 0:
            raise ValueError(f"fault overload_retry_after: {self.overload_retry_after!r} — must be seconds, 0 or more")
        if not isinstance(self.down, bool):
            raise ValueError(f"fault down: {self.down!r} — must be true or false")

    def changed(self, **changes: Any) -> Faults:
        """A copy with ``changes`` applied; unknown names are refused with the list of known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)} — known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EmulatorStats:
    """Counters since start (or the last reset). ``posts`` counts every report post that arrived."""

    posts: int = 0
    accepted: int = 0          # answered 2xx
    unique_ids: int = 0        # distinct report ids stored
    duplicates: int = 0        # a report stored again under an id already stored (replace-by-id)
    rejected_400: int = 0      # answered 400: invalid report (or an injected rejection)
    rejects_injected: int = 0  # of those, injected by ``reject_rate``
    errors_injected: int = 0   # answered ``error_status`` by ``error_rate`` or ``down``
    dropped_before: int = 0    # connection closed before the report was read: nothing stored
    dropped_after: int = 0     # report stored, connection closed without an answer
    unauthorized: int = 0      # answered 401
    too_large: int = 0         # answered 413
    bytes_received: int = 0    # report bodies read
    requests: int = 0          # every HTTP request, control endpoint included
    handler_errors: int = 0    # unexpected exceptions in a request handler (a bug: see the log)
    overloaded: int = 0        # answered 503 because API requests came faster than ``overload_rps``

    def line(self) -> str:
        """One line for a person watching the emulator."""
        return (f"posts={self.posts} accepted={self.accepted} unique={self.unique_ids} "
                f"duplicates={self.duplicates} rejected={self.rejected_400} errors={self.errors_injected} "
                f"dropped_before={self.dropped_before} dropped_after={self.dropped_after} "
                f"unauthorized={self.unauthorized}")


class Emulator:
    """A WATS server on ``host:port`` (port 0: any free port), run in a background thread.

    ``token=None`` disables the token check. ``store_dir`` also writes each stored report as
    ``<id>.json`` (replacing an earlier one). ``keep_in_memory=False`` keeps only ids and counts,
    for long benchmarks; ``report()`` then reads from ``store_dir``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = DEFAULT_TOKEN,
                 store_dir: Path | str | None = None, faults: Faults | None = None, *,
                 seed: int | None = None, keep_in_memory: bool = True,
                 max_body_bytes: int = MAX_BODY_BYTES, tls: tuple[str | Path, str | Path] | None = None) -> None:
        self.host = host
        self.tls = tls  # (certificate chain PEM, private key PEM): serve https
        self._port = port
        self.token = token
        self.store_dir = Path(store_dir) if store_dir is not None else None
        self.keep_in_memory = keep_in_memory
        self.max_body_bytes = max_body_bytes
        self._faults = faults or Faults()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stats = EmulatorStats()
        self._ids: set[str] = set()
        #: Monotonic time each id was first stored (latency measurements: file written → acknowledged).
        self.first_stored: dict[str, float] = {}
        self._reports: dict[str, bytes] = {}
        self._stored_times: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._outage: threading.Timer | None = None
        self._per_second: dict[int, int] = {}  # API requests per whole second of time.monotonic()
        self._load_tokens, self._load_at = 0.0, time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Listen and serve in a background thread; returns once the socket is listening."""
        if self._server is not None:
            return
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self._listen()

    def stop(self) -> None:
        """Stop serving and close every connection. The emulator can be started again."""
        if self._outage is not None:
            self._outage.cancel()
            self._outage = None
        self._close_listener()

    def go_down(self) -> None:
        """Close the listening socket and every open connection: clients see connection refused."""
        self._close_listener()

    def come_back(self) -> None:
        """Listen again on the same port after ``go_down``."""
        if self._server is None:
            self._listen()

    def outage(self, seconds: float) -> None:
        """``go_down`` now and ``come_back`` after ``seconds`` (used by the control endpoint)."""
        if self._outage is not None:
            self._outage.cancel()
        self.go_down()
        self._outage = threading.Timer(seconds, self._end_outage)
        self._outage.daemon = True
        self._outage.start()

    def _end_outage(self) -> None:
        self._outage = None
        try:
            self.come_back()
        except OSError as exc:  # the port was taken meanwhile: say so, the emulator stays down
            log.error("emulator could not listen again on %s:%s: %s", self.host, self._port, exc)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        server = _Server((self.host, self._port), _Handler, self)
        self._port = server.server_address[1]
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            # The handshake happens in the handler's thread, not in the accepting one.
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"wats-emulator-{self._port}", daemon=True)
        self._server, self._thread = server, thread
        thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._conn_lock:
            open_connections = list(self._connections)
            self._connections.clear()
        for conn in open_connections:
            _shut(conn)
        if thread is not None:
            thread.join(timeout=5)

    # ------------------------------------------------------------------ faults and results

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change some faults (``set_faults(error_rate=1.0, retry_after=2)``); returns the new set."""
        with self._lock:
            self._faults = self._faults.changed(**changes)
            return self._faults

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = Faults()

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def requests_per_second(self) -> dict[int, int]:
        """API requests (report posts and version/ping probes, answered or refused) per second of
        ``time.monotonic()``: how hard a fleet of stations hit the server, second by second."""
        with self._lock:
            return dict(self._per_second)

    def received_ids(self) -> set[str]:
        """Canonical (lower-case) ids of every report stored."""
        with self._lock:
            return set(self._ids)

    def times_stored(self, report_id: str) -> int:
        """How many times a report with this id was stored (1 + replacements)."""
        try:
            key = normalise_id(report_id)
        except ReportValidationError:
            return 0
        with self._lock:
            return self._stored_times.get(key, 0)

    def report(self, report_id: str) -> bytes | None:
        """The bytes last stored under this id, or None."""
        try:
            key = normalise_id(report_id)
        except ReportValidationError:
            return None
        with self._lock:
            data = self._reports.get(key)
        if data is None and self.store_dir is not None and key in self.received_ids():
            try:
                return (self.store_dir / f"{key}.json").read_bytes()
            except FileNotFoundError:
                return None
        return data

    def reset(self) -> None:
        """Forget the counters and stored reports (files in ``store_dir`` stay). Faults are kept."""
        with self._lock:
            self._stats = EmulatorStats()
            self._ids.clear()
            self._reports.clear()
            self._stored_times.clear()
            self.first_stored.clear()
            self._per_second.clear()

    # ------------------------------------------------------------------ used by the handler

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + amount)

    def _api_request(self) -> bool:
        """Count one API request; whether it is beyond ``overload_rps`` (a token bucket holding a
        tenth of a second's requests, so a burst is absorbed but a stampede is not)."""
        limit = self._faults.overload_rps
        now = time.monotonic()
        with self._lock:
            second = int(now)
            self._per_second[second] = self._per_second.get(second, 0) + 1
            if limit is None:
                return False
            burst = max(1.0, limit / 10)
            self._load_tokens = min(burst, self._load_tokens + (now - self._load_at) * limit)
            self._load_at = now
            if self._load_tokens >= 1.0:
                self._load_tokens -= 1.0
                return False
            self._stats.overloaded += 1
            return True

    def _roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        with self._lock:
            return self._random.random() < rate

    def _store(self, key: str, raw: bytes) -> None:
        if self.store_dir is not None:
            durable.atomic_write(self.store_dir / f"{key}.json", raw, sync=False)
        with self._lock:
            if key in self._ids:
                self._stats.duplicates += 1
            else:
                self._ids.add(key)
                self._stats.unique_ids += 1
            self._stored_times[key] = self._stored_times.get(key, 0) + 1
            self.first_stored.setdefault(key, time.monotonic())
            if self.keep_in_memory:
                self._reports[key] = raw

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: Emulator) -> None:
        self.emulator = emulator
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished is normal here; anything else is a bug worth a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # resets, broken pipes, timeouts of idle keep-alive connections
            return
        self.emulator._count(handler_errors=1)
        log.exception("emulator request handler failed")


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Drop(Exception):
    """Close the connection without answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = VERSION
    sys_version = ""
    timeout = 60  # an idle keep-alive connection is closed after this; its thread ends
    server: _Server

    # ------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the emulator counts instead of writing a line per request to stderr."""

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              close: bool = False) -> None:
        """The whole answer in one write: status line, headers, JSON body."""
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"HTTP/1.1 {status} {_phrase(status)}",
                 f"Server: {VERSION}",
                 f"Content-Length: {len(payload)}"]
        if payload:
            lines.append("Content-Type: application/json; charset=utf-8")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    def _read_body(self) -> bytes:
        """The request body by Content-Length (411 without one, 413 when over the limit)."""
        emulator = self.server.emulator
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self._send(411, {"message": "Content-Length is required"}, close=True)
            raise _Answered
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(400, {"message": f"bad Content-Length: {length_header!r}"}, close=True)
            raise _Answered from None
        if length > emulator.max_body_bytes:
            emulator._count(too_large=1)
            self._send(413, {"message": f"report is {length} bytes; the limit is {emulator.max_body_bytes}"},
                       close=True)
            raise _Answered
        body = self.rfile.read(length)
        if len(body) != length:
            raise _Drop
        return body

    def _authorized(self) -> bool:
        token = self.server.emulator.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "basic" and hmac.compare_digest(value.strip().encode(), token.encode())

    def _unauthorized(self) -> None:
        self.server.emulator._count(unauthorized=1)
        self._send(401, {"message": "Authorization has been denied for this request."},
                   {"WWW-Authenticate": 'Basic realm="WATS"'})

    def _retry_after(self) -> dict[str, str]:
        retry_after = self.server.emulator.faults.retry_after
        return {} if retry_after is None else {"Retry-After": _seconds(retry_after)}

    def _dispatch(self, method: str) -> None:
        emulator = self.server.emulator
        emulator._count(requests=1)
        path = self.path.split("?", 1)[0]
        try:
            if path.startswith(CONTROL_PREFIX):
                self._control(method, path[len(CONTROL_PREFIX):])
            elif path in (REPORT_PATH, VERSION_PATH, PING_PATH) and emulator._api_request():
                self._discard_body()
                self._send(503, {"message": "the server is busy; try again later"},
                           {"Retry-After": _seconds(emulator.faults.overload_retry_after)})
            elif path == REPORT_PATH and method == "POST":
                self._post_report()
            elif path in (VERSION_PATH, PING_PATH) and method == "GET":
                self._get_info(path)
            elif path in (REPORT_PATH, VERSION_PATH, PING_PATH):
                self._discard_body()
                self._send(405, {"message": f"{method} is not allowed on {path}"})
            else:
                self._discard_body()
                self._send(404, {"message": f"no such endpoint: {path}"})
        except _Answered:
            pass
        except _Drop:
            self.close_connection = True
            _shut(self.connection)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and 0 < int(length) <= self.server.emulator.max_body_bytes:
            self.rfile.read(int(length))
        elif length and length != "0":
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - the names http.server looks up
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ the WATS API

    def _post_report(self) -> None:
        emulator = self.server.emulator
        faults = emulator.faults
        emulator._count(posts=1)
        if faults.latency_s:
            time.sleep(faults.latency_s)
        if faults.down:
            emulator._count(errors_injected=1)
            self._discard_body()
            self._send(503, {"message": "Service Unavailable"}, self._retry_after())
            return
        if emulator._roll(faults.drop_before_rate):
            emulator._count(dropped_before=1)
            raise _Drop
        if not self._authorized():
            self._discard_body()
            self._unauthorized()
            return
        raw = self._read_body()
        emulator._count(bytes_received=len(raw))
        if emulator._roll(faults.error_rate):
            emulator._count(errors_injected=1)
            self._send(faults.error_status, {"message": f"injected error {faults.error_status}"},
                       self._retry_after())
            return
        try:
            header = parse_header(raw)
        except ReportValidationError as exc:
            emulator._count(rejected_400=1)
            self._send(400, {"message": exc.message, "problems": exc.problems})
            return
        if emulator._roll(faults.reject_rate):
            emulator._count(rejected_400=1, rejects_injected=1)
            self._send(400, {"message": "injected rejection: the server refused this report"})
            return
        try:
            emulator._store(header.key, raw)
        except StorageError as exc:  # the store folder is full or gone: the report was not stored
            log.error("emulator could not store report %s: %s", header.id, exc)
            self._send(500, {"message": f"the server could not store the report: {exc.message}"})
            return
        if emulator._roll(faults.drop_after_rate):
            emulator._count(dropped_after=1)
            raise _Drop
        emulator._count(accepted=1)
        self._send(200, {"ID": header.id})

    def _get_info(self, path: str) -> None:
        emulator = self.server.emulator
        faults = emulator.faults
        self._discard_body()
        if faults.latency_s:
            time.sleep(faults.latency_s)
        if faults.down:
            self._send(503, {"message": "Service Unavailable"}, self._retry_after())
            return
        if path == PING_PATH:
            self._send(200, {"ping": "pong"})
            return
        if not self._authorized():
            self._unauthorized()
            return
        self._send(200, {"version": VERSION})

    # ------------------------------------------------------------------ the control endpoint

    def _control(self, method: str, name: str) -> None:
        """Faults, stats and reset, for tests and demos in other processes. Loopback clients only."""
        emulator = self.server.emulator
        if not _is_loopback(self.client_address[0]):
            self._discard_body()
            self._send(403, {"message": "the emulator's control endpoint answers loopback clients only"})
            return
        if name == "faults" and method == "GET":
            self._send(200, emulator.faults.as_dict())
        elif name == "faults" and method == "POST":
            try:
                changes = json.loads(self._read_body() or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("send a JSON object of fault names and values")
                faults = emulator.set_faults(**changes)
            except (ValueError, TypeError) as exc:
                self._send(400, {"message": str(exc)})
                return
            self._send(200, faults.as_dict())
        elif name == "stats" and method == "GET":
            self._send(200, dataclasses.asdict(emulator.stats()))
        elif name == "reset" and method == "POST":
            self._discard_body()
            emulator.reset()
            self._send(200, {"reset": True})
        elif name == "outage" and method == "POST":
            try:
                seconds = float(json.loads(self._read_body() or b"{}").get("seconds", 0))
                if not 0 < seconds <= 3600:
                    raise ValueError
            except (ValueError, TypeError, AttributeError):
                self._send(400, {"message": 'send {"seconds": S} with 0 < S <= 3600'})
                return
            self._send(200, {"down_for_s": seconds}, close=True)
            # after this answer is out: closing the listener from here would cut it off
            timer = threading.Timer(0.05, emulator.outage, args=(seconds,))
            timer.daemon = True
            timer.start()
        else:
            self._discard_body()
            self._send(404, {"message": f"no such control endpoint: {method} {CONTROL_PREFIX}{name}; "
                                        "known: GET/POST faults, GET stats, POST reset, POST outage"})


class _Answered(Exception):
    """The handler already sent its answer."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # an unassigned code chosen for a fault, e.g. 599
        return "Error"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _seconds(value: float) -> str:
    """Retry-After as whole seconds when whole, else with the fraction (``0.5``) for fast tests."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: the only hosts the emulator binds by default."""
    if host == "localhost":
        return True
    return _is_loopback(host)


__all__ = ["Emulator", "EmulatorStats", "Faults", "DEFAULT_TOKEN", "MAX_BODY_BYTES", "is_loopback_host",
           "REPORT_PATH", "VERSION_PATH", "PING_PATH"]
