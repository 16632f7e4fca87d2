"""Talking to the running service from the CLI and the Tk configurator: blocking, bounded, clear.

Plain blocking sockets, one connection per call: the CLI is synchronous, and the configurator
calls from worker threads (never from the Tk thread). Every wait is bounded by ``timeout``
(longer for commands that save or reload). What can go wrong is told in words:

* no ``control.json`` in the data dir, or nothing listening on its port → ``ServiceNotRunning``
  (exit code 7), with how to start the service;
* the service refused → the engine's own error class when the code names one
  (``report_not_found`` → ``ReportNotFound``, ``config_error`` → ``ConfigError`` with its
  ``problems``), else :class:`ControlError`; either way with the service's message and hint.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors
from ..layout import DataDir
from ..errors import ServiceNotRunning, StationflowError
from ...schemas.control import (
    BUSY,
    PROTOCOL_MISMATCH,
    PROTOCOL_VERSION,
    TIMEOUT,
    UNAUTHORIZED,
    error_code_for,
)

#: Commands that save, reload or move many reports get at least this long (the service's own
#: per-request limit is 30 s by default).
SLOW_COMMANDS = {"reload": 40.0, "config.apply": 40.0, "config.validate": 15.0, "queue.retry": 40.0,
                 "queue.retry_failed": 40.0}
_MAX_RESPONSE = 256 * 1024 * 1024
_START_HINT = "start it with `stationflow run` (or through the station's service manager)"


class ControlError(StationflowError):
    """The service refused a request or the connection; ``code`` is the protocol's reason."""

    def __init__(self, message: str, *, code: str, hint: str | None = None, problems: list[str] | None = None,
                 exit_code: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.problems = problems or []
        if exit_code is not None:
            self.exit_code = exit_code


def _engine_errors() -> dict[str, type[StationflowError]]:
    found: dict[str, type[StationflowError]] = {}
    pending: list[type[StationflowError]] = [StationflowError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found[error_code_for(cls.__name__)] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_from_response(error: dict[str, Any]) -> StationflowError:
    """The exception a refused request raises in the client: the engine's class when it names one."""
    code = str(error.get("code") or "error")
    message = str(error.get("message") or code)
    hint = error.get("hint") if isinstance(error.get("hint"), str) else None
    problems = [str(p) for p in error.get("problems") or []]
    exit_code = error.get("exit_code") if isinstance(error.get("exit_code"), int) else None
    cls = _engine_errors().get(code)
    exc: StationflowError | None = None
    if cls is not None and cls is not StationflowError:
        try:
            exc = cls(message, hint=hint)
        except TypeError:
            exc = None
    if exc is None:
        return ControlError(message, code=code, hint=hint, problems=problems, exit_code=exit_code)
    exc.problems = problems  # type: ignore[attr-defined]
    exc.code = code  # type: ignore[attr-defined]
    if exit_code is not None:
        exc.exit_code = exit_code
    return exc


class _Connection:
    """One authenticated connection: line framing over a blocking socket, every wait bounded."""

    def __init__(self, sock: socket.socket, port: int, started: float) -> None:
        self.sock = sock
        self.port = port
        self.started = started
        self.buffer = bytearray()
        self.welcome: dict[str, Any] = {}

    def send(self, message: dict[str, Any], deadline: float) -> None:
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        self.sock.sendall(json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n")

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None when the service closed the connection."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    raise _NotStationflow()
                return message
            if len(self.buffer) > _MAX_RESPONSE:
                raise ControlError("the service's answer is too large", code="too_large")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(256 * 1024)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _NotStationflow(Exception):
    """Something answered that does not speak the protocol (a stale control.json, a reused port)."""


class ControlClient:
    """Calls the service that owns ``data_dir``. Thread-safe: every call has its own connection."""

    def __init__(self, data_dir: str | os.PathLike[str], *, timeout: float = 5.0,
                 client_name: str = "stationflow") -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout
        self.client_name = client_name
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ public

    def call(self, command: str, /, **args: Any) -> Any:
        """Run ``command`` in the service and return its result; raise its error otherwise."""
        deadline = time.monotonic() + max(self.timeout, SLOW_COMMANDS.get(command, 0.0))
        return self._with_connection(deadline, lambda conn: self._request(conn, command, args, deadline))

    def hello(self) -> dict[str, Any]:
        """Connect and authenticate only; return what the service says about itself."""
        deadline = time.monotonic() + self.timeout
        welcome: dict[str, Any] = self._with_connection(deadline, lambda conn: conn.welcome)
        return welcome

    def is_running(self) -> bool:
        """True when a service answers on this data dir's control port (even if it is busy)."""
        try:
            self.hello()
        except ServiceNotRunning:
            return False
        except StationflowError:
            return True
        return True

    def endpoint(self) -> dict[str, Any]:
        """What ``control.json`` says: ``host``, ``port``, ``pid``, ``protocol``, ``started``."""
        path = DataDir.of(self.data_dir).control_file
        try:
            info = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ServiceNotRunning(f"the service is not running (no {path})", hint=_START_HINT) from None
        except PermissionError:
            raise StationflowError(f"cannot read {path}: permission denied",
                                   hint="run this as the user that runs the service") from None
        except (OSError, ValueError) as exc:
            raise ServiceNotRunning(f"the service is not running ({path} is unreadable: {exc})",
                                    hint=_START_HINT) from None
        port = info.get("port") if isinstance(info, dict) else None
        if not isinstance(info, dict) or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ServiceNotRunning(f"the service is not running ({path} names no port)", hint=_START_HINT)
        return info

    def wait_until_stopped(self, timeout: float, *, still_running: Callable[[], bool] | None = None,
                           poll_s: float = 0.1) -> bool:
        """After ``stop``: True once ``still_running()`` says False (by default: once the control port
        stops answering — the service closes it last); False if ``timeout`` passed first."""
        check = still_running or self.is_running
        deadline = time.monotonic() + timeout
        while True:
            if not check():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)

    # ------------------------------------------------------------------ inside

    def _with_connection(self, deadline: float, work: Any) -> Any:
        """Connect, say hello, run ``work(conn)``; retry briefly while the service is busy or restarting."""
        delay = 0.02
        retried_token = False
        while True:
            try:
                conn = self._open(deadline)
            except ControlError as exc:
                if exc.code == UNAUTHORIZED and not retried_token:
                    retried_token = True  # the service restarted between reading the two files
                    continue
                if exc.code == BUSY and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise
            try:
                return work(conn)
            except TimeoutError:
                raise ControlError(f"the service did not answer within {deadline - conn.started:.0f} s",
                                   code=TIMEOUT, hint="it may be overloaded; see its log") from None
            except (ConnectionError, OSError) as exc:
                raise ControlError(f"the connection to the service broke: {exc}", code="connection",
                                   hint="the service may be stopping; try again") from None
            except _NotStationflow:
                raise self._not_stationflow(conn.port) from None
            finally:
                conn.close()

    def _open(self, deadline: float) -> _Connection:
        info = self.endpoint()
        if info.get("protocol") not in (None, PROTOCOL_VERSION):
            raise ControlError(f"the running service speaks control protocol {info.get('protocol')}, this "
                               f"stationflow speaks {PROTOCOL_VERSION}", code=PROTOCOL_MISMATCH,
                               hint="use the stationflow command of the same version as the service")
        port = int(info["port"])
        token_path = DataDir.of(self.data_dir).token_file
        try:
            token = token_path.read_text("ascii").strip()
        except FileNotFoundError:
            raise ServiceNotRunning(f"the service is not running (no {token_path})", hint=_START_HINT) from None
        except PermissionError:
            raise StationflowError(f"cannot read {token_path}: permission denied",
                                   hint="run this as the user that runs the service (the token is "
                                        "readable by that user only)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StationflowError(f"cannot read {token_path}: {exc}") from None
        started = time.monotonic()
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=max(0.001, deadline - started))
        except ConnectionRefusedError:
            raise ServiceNotRunning(
                f"the service is not running (nothing listens on 127.0.0.1:{port}; "
                f"{DataDir.of(self.data_dir).control_file} was left by a service that ended)", hint=_START_HINT) from None
        except TimeoutError:
            raise ControlError(f"the service did not accept a connection on 127.0.0.1:{port} in time",
                               code=TIMEOUT, hint="it may be overloaded; see its log") from None
        except OSError as exc:
            raise ServiceNotRunning(f"the service is not reachable on 127.0.0.1:{port}: {exc.strerror or exc}",
                                    hint=_START_HINT) from None
        conn = _Connection(sock, port, started)
        try:
            conn.send({"protocol": PROTOCOL_VERSION, "token": token, "client": self.client_name}, deadline)
            welcome = conn.receive(deadline)
        except TimeoutError:
            conn.close()
            raise ControlError(f"the service on 127.0.0.1:{port} did not answer the hello in time",
                               code=TIMEOUT, hint="it may be overloaded; see its log") from None
        except (ConnectionError, OSError) as exc:
            conn.close()
            raise ControlError(f"the service closed the connection: {exc}", code="connection",
                               hint="it may be stopping; try again") from None
        except _NotStationflow:
            conn.close()
            raise self._not_stationflow(port) from None
        except BaseException:
            conn.close()
            raise
        if welcome is None:
            conn.close()
            raise ControlError("the service closed the connection without answering the hello", code="connection",
                               hint="it may be stopping; try again")
        if not welcome.get("ok"):
            conn.close()
            raise error_from_response(welcome.get("error") or {})
        conn.welcome = welcome.get("result") or {}
        return conn

    def _request(self, conn: _Connection, command: str, args: dict[str, Any], deadline: float) -> Any:
        rid = next(self._ids)
        conn.send({"id": rid, "command": command, "args": args}, deadline)
        response = conn.receive(deadline)
        if response is None:
            raise ControlError(f"the service closed the connection before answering {command}", code="connection",
                               hint="it may be stopping; try again")
        if response.get("id") != rid:
            error = response.get("error") or {}
            if response.get("id") is None and error:
                raise error_from_response(error)
            raise ControlError(f"the service answered request {response.get('id')!r}, not {rid}",
                               code="protocol", hint="this is a bug; please report it")
        if not response.get("ok"):
            raise error_from_response(response.get("error") or {})
        return response.get("result")

    def _not_stationflow(self, port: int) -> ServiceNotRunning:
        return ServiceNotRunning(
            f"the service is not running (something else answers on 127.0.0.1:{port}; "
            f"{DataDir.of(self.data_dir).control_file} is left over)", hint=_START_HINT)
