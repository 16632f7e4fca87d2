"""The service's local door: a line-oriented JSON protocol on 127.0.0.1, guarded by a token.

Who may knock: only processes on this machine (the listener is bound to 127.0.0.1 and nothing
else), and among them only those that can read ``<data_dir>/control.token`` (mode 0600, fresh at
every start). Everything a client sends is treated as hostile until proven otherwise:

* a line is read in chunks and refused once it passes ``max_line`` — a 10 MB line costs at most
  ``max_line`` + one chunk of memory;
* each line must be complete within ``idle_timeout_s`` of when the server started waiting for it,
  so a client dribbling one byte a second is cut off like a silent one;
* each command runs under ``request_timeout_s``;
* at most ``max_connections`` sessions at once; when full, the oldest connection that has not yet
  said hello is evicted (so a flood of silent connections cannot lock out the CLI), and if every
  session is authenticated the newcomer is answered ``busy``;
* every refusal is logged at WARNING with its reason, at most a few per reason a minute (a flood
  must not flood the log); the counts are in :meth:`ControlServer.stats`.

A handler's ``StationflowError`` becomes an error response with its message, hint and problems;
any other exception is logged with its traceback and answered ``internal``; the server keeps
serving either way. Message shapes: ``schemas/control.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hmac
import inspect
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute, SocketStream
from pydantic import BaseModel, SecretStr, ValidationError

from .. import durable
from ... import __version__
from ..clock import now_iso
from ..layout import DataDir
from ..errors import InvalidInput, StationflowError, StorageError
from ..install.winacl import restrict
from ...schemas.config import MASK
from ...schemas.control import (
    BAD_ARGS,
    BAD_HELLO,
    BAD_JSON,
    BAD_REQUEST,
    BUSY,
    INTERNAL,
    MAX_LINE,
    PROTOCOL_MISMATCH,
    PROTOCOL_VERSION,
    REQUEST_TIMEOUT,
    TIMEOUT,
    TOO_LARGE,
    TOO_MANY_ERRORS,
    UNAUTHORIZED,
    UNKNOWN_COMMAND,
    Hello,
    Request,
    error_code_for,
)

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

LOOPBACK = "127.0.0.1"
_CHUNK = 64 * 1024
_MAX_BAD_IN_A_ROW = 20          # unreadable messages in a row before a session is closed
_DRAIN_S = 1.0                  # after refusing a too-long line, discard input this long so the
_DRAIN_BYTES = 32 * 1024 * 1024  # client can read the refusal (closing with unread data resets)
_REFUSAL_SEND_S = 0.5           # a refused client gets this long to take the error line
_LOG_WINDOW_S = 60.0
_LOG_PER_WINDOW = 5


class BadArguments(InvalidInput):
    """A command's arguments do not fit its schema; ``problems`` names each one."""

    code = BAD_ARGS

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


@dataclasses.dataclass(frozen=True)
class AfterReply:
    """A handler result whose ``then`` runs once the response is written (``stop``: answer first)."""

    result: Any
    then: Callable[[], Any]


def error_code(exc: BaseException) -> str:
    """``ReportNotFound`` → ``report_not_found``: the stable code a client can switch on."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return error_code_for(type(exc).__name__)


def problems_of(exc: ValidationError, *, limit: int = 20) -> list[str]:
    """Pydantic errors as ``field: message`` lines — without the input values (they may be huge or secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        lines.append(f"{where}: {err['msg']}")
    return lines


# ------------------------------------------------------------------------------------------
# Small parts
# ------------------------------------------------------------------------------------------

class _RefusalLog:
    """WARNING per refusal, at most ``per_window`` per reason per window; the rest are counted
    and mentioned in the next line logged for that reason."""

    def __init__(self, per_window: int = _LOG_PER_WINDOW, window_s: float = _LOG_WINDOW_S) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self.counts: collections.Counter[str] = collections.Counter()
        self._windows: dict[str, list[float]] = {}  # code -> [window start, logged, suppressed]

    def refused(self, code: str, message: str) -> None:
        self.counts[code] += 1
        now = time.monotonic()
        window = self._windows.get(code)
        if window is None or now - window[0] >= self.window_s:
            suppressed = int(window[2]) if window else 0
            self._windows[code] = [now, 1, 0]
            if suppressed:
                message += f" ({suppressed} more refusal(s) of this kind were not logged)"
            log.warning("control: %s", message)
        elif window[1] < self.per_window:
            window[1] += 1
            log.warning("control: %s", message)
        else:
            window[2] += 1


class _LineTooLong(Exception):
    def __init__(self, seen: int) -> None:
        super().__init__(seen)
        self.seen = seen


class _ClientGone(Exception):
    """The peer closed or reset the connection, or stopped reading our answers."""


class _LineReader:
    """Lines out of a byte stream, never holding more than ``max_line`` plus one chunk."""

    def __init__(self, stream: SocketStream, max_line: int) -> None:
        self.stream = stream
        self.max_line = max_line
        self.buffer = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at end of stream (an unfinished line is dropped)."""
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0:
                if end > self.max_line:
                    raise _LineTooLong(len(self.buffer))
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buffer) > self.max_line:
                raise _LineTooLong(len(self.buffer))
            searched = len(self.buffer)
            try:
                chunk = await self.stream.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return None
            self.buffer += chunk


@dataclasses.dataclass(eq=False)
class _Session:
    number: int
    peer: str
    scope: anyio.CancelScope
    opened: float = dataclasses.field(default_factory=time.monotonic)
    client: str | None = None
    authenticated: bool = False
    evicted: bool = False


def _to_json(value: Any) -> Any:
    """What ``json.dumps`` cannot write by itself, as plain data (a secret always as the mask)."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple, collections.deque)):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    # A file name that is not UTF-8 (bytes a test station wrote) arrives here as lone surrogates:
    # sent as \udcXX text, so the answer is still valid UTF-8 JSON and the name still recognisable.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_to_json).encode(
        "utf-8", "backslashreplace") + b"\n"


def _error(request_id: Any, code: str, message: str, *, hint: str | None = None,
           problems: list[str] | None = None, exit_code: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "problems": problems or [], "hint": hint}
    if exit_code is not None:
        error["exit_code"] = exit_code
    return {"id": request_id, "ok": False, "error": error}


def _id_of(obj: Any) -> Any:
    """The request id to echo, when the message has a usable one; else None."""
    if isinstance(obj, dict):
        rid = obj.get("id")
        if (isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= 2**53) or \
                (isinstance(rid, str) and len(rid) <= 64):
            return rid
    return None


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with a file only its owner can read; never readable by others,
    not even for a moment (the temp file is created with mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise StorageError(f"cannot create {tmp}: {exc.strerror}",
                           hint="check that the data dir is writable by the service's user") from None
    try:
        try:
            restrict(tmp)  # Windows: 0600 means nothing there; the ACL is cut to the service (install/winacl.py)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        durable.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a full disk leaves nothing behind
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}",
                               hint="free space on the data dir's disk; the control protocol starts again by "
                                    "itself") from None
        raise


# ------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------

class ControlServer:
    """Serves the control protocol until cancelled. Use ``await server.serve()`` inside the service
    (or ``await tg.start(server.serve)`` to get the port once it listens)."""

    def __init__(self, data_dir: str | os.PathLike[str], handlers: Mapping[str, Handler], *, port: int = 0,
                 host: str = LOOPBACK, max_connections: int = 32, max_line: int = MAX_LINE,
                 idle_timeout_s: float = 30.0, request_timeout_s: float = 30.0) -> None:
        try:
            loopback_only = ipaddress.ip_address(host) == ipaddress.ip_address(LOOPBACK)
        except ValueError:
            loopback_only = False
        if not loopback_only:
            raise StationflowError(
                f"the control server listens on {LOOPBACK} only, not {host!r}",
                hint="the control protocol is for this machine; use SSH or a remote desktop to control "
                     "a station from elsewhere")
        if not 0 <= port <= 65535:
            raise StationflowError(f"control port {port} is not a TCP port", hint="set control.port to 0..65535")
        if max_connections < 1 or max_line < 64 or idle_timeout_s <= 0 or request_timeout_s <= 0:
            raise ValueError("max_connections >= 1, max_line >= 64 and positive timeouts are required")
        self.data_dir = Path(data_dir)
        self.handlers: dict[str, Handler] = dict(handlers)
        self.requested_port = port
        self.host = LOOPBACK
        self.max_connections = max_connections
        self.max_line = max_line
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.port: int | None = None
        self.peak_connections = 0
        self.requests = 0
        self._token: str | None = None
        self._sessions: dict[int, _Session] = {}
        self._numbers = 0
        self._turning_away = 0
        self._refusals = _RefusalLog()

    # ------------------------------------------------------------------ public

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    def stats(self) -> dict[str, Any]:
        """For the service's status: where it listens, sessions now and at most, refusals by reason."""
        return {"host": self.host, "port": self.port, "connections": len(self._sessions),
                "peak_connections": self.peak_connections, "requests": self.requests,
                "refusals": dict(self._refusals.counts)}

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen, publish the port and a fresh token in the data dir, serve until cancelled, clean up."""
        listener = await self._listen()
        try:
            self._publish()
            log.info("control: listening on %s:%s", self.host, self.port)
            assert self.port is not None, "_listen() sets the port"
            task_status.started(self.port)
            async with anyio.create_task_group() as tg:
                await self._accept_loop(listener, tg)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
                self._unpublish()
            log.info("control: closed")

    # ------------------------------------------------------------------ listening and files

    async def _listen(self) -> anyio.abc.SocketListener:
        try:
            multi = await anyio.create_tcp_listener(local_host=self.host, local_port=self.requested_port,
                                                    backlog=512)
        except OSError as exc:
            raise StationflowError(
                f"the control server cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}",
                hint="another program uses this port: set control.port to 0 (any free port) or another "
                     "port in the station config") from None
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        self.port = int(listener.extra(SocketAttribute.local_address)[1])
        return listener

    def _publish(self) -> None:
        """Token first, then the file that says where to knock: a client that finds the port finds the token."""
        self._token = secrets.token_urlsafe(32)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(DataDir.of(self.data_dir).token_file, self._token.encode("ascii"))
        info = {"host": self.host, "port": self.port, "pid": os.getpid(), "protocol": PROTOCOL_VERSION,
                "version": __version__,
                "started": now_iso()}
        # Rebuilt at every start: a crash-safe replace is needed, power-loss durability is not.
        durable.atomic_write(DataDir.of(self.data_dir).control_file, json.dumps(info, indent=1).encode("utf-8"), sync=False)

    def _unpublish(self) -> None:
        """Remove the files if they are still ours (never another instance's)."""
        try:
            info = json.loads(DataDir.of(self.data_dir).control_file.read_text("utf-8"))
            if info.get("port") == self.port and info.get("pid") == os.getpid():
                DataDir.of(self.data_dir).control_file.unlink()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            token_path = DataDir.of(self.data_dir).token_file
            if self._token is not None and hmac.compare_digest(token_path.read_bytes(), self._token.encode()):
                token_path.unlink()
        except OSError:
            pass

    # ------------------------------------------------------------------ connections

    async def _accept_loop(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.BrokenResourceError, OSError) as exc:
                # Out of file descriptors, a connection reset before accept: keep the door open.
                self._refusals.refused("accept", f"accept failed: {exc!r}; retrying shortly")
                await anyio.sleep(0.1)
                continue
            self._numbers += 1
            number = self._numbers
            peer = self._peer(stream)
            if len(self._sessions) >= self.max_connections and not self._evict_one(peer):
                tg.start_soon(self._turn_away, stream, number, peer, name=f"control-refuse-{number}")
                continue
            session = _Session(number, peer, anyio.CancelScope())
            self._sessions[number] = session
            self.peak_connections = max(self.peak_connections, len(self._sessions))
            tg.start_soon(self._run_session, stream, session, name=f"control-session-{number}")

    @staticmethod
    def _peer(stream: SocketStream) -> str:
        try:
            address = stream.extra(SocketAttribute.remote_address)
            assert isinstance(address, tuple)
            host, port = address[:2]
            return f"{host}:{port}"
        except Exception:  # noqa: BLE001 - only used in log lines
            return "?"

    def _evict_one(self, newcomer: str) -> bool:
        """Make room by evicting the oldest session that has not said hello; False if all have."""
        waiting = [s for s in self._sessions.values() if not s.authenticated and not s.evicted]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda s: s.opened)
        oldest.evicted = True
        oldest.scope.cancel()
        self._sessions.pop(oldest.number, None)
        self._refusals.refused("evicted", f"evicted #{oldest.number} from {oldest.peer}: it had not said hello "
                                          f"after {time.monotonic() - oldest.opened:.1f} s and all "
                                          f"{self.max_connections} connection slots were taken (a newcomer from "
                                          f"{newcomer} needed one)")
        return True

    async def _turn_away(self, stream: SocketStream, number: int, peer: str) -> None:
        """Every slot holds an authenticated session: answer ``busy`` and close."""
        self._refusals.refused(BUSY, f"refused #{number} from {peer}: all {self.max_connections} connection "
                                     "slots are in use by authenticated clients")
        self._turning_away += 1
        try:
            if self._turning_away <= 4 * self.max_connections:  # beyond that, just close
                with anyio.move_on_after(_REFUSAL_SEND_S):
                    await stream.send(encode(_error(None, BUSY, "the service is busy: too many control connections",
                                                    hint="try again in a moment")))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._turning_away -= 1
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def _run_session(self, stream: SocketStream, session: _Session) -> None:
        try:
            with session.scope:
                await self._session(stream, session)
        except _ClientGone:
            log.debug("control: #%s from %s went away", session.number, session.peer)
        except Exception:  # noqa: BLE001 - a session must never take the server down
            log.exception("control: internal error in session #%s from %s", session.number, session.peer)
        finally:
            self._sessions.pop(session.number, None)
            with anyio.CancelScope(shield=True):
                if session.evicted:
                    with anyio.move_on_after(_REFUSAL_SEND_S):
                        try:
                            await stream.send(encode(_error(
                                None, BUSY, "the service is busy: too many control connections waiting to say "
                                            "hello", hint="say hello at once after connecting; try again")))
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            pass
                await stream.aclose()

    async def _session(self, stream: SocketStream, session: _Session) -> None:
        reader = _LineReader(stream, self.max_line)
        line = await self._next_line(stream, reader, session)
        if line is None:
            return
        if not await self._hello(stream, session, line):
            return
        bad_in_a_row = 0
        while True:
            line = await self._next_line(stream, reader, session)
            if line is None:
                return
            response, after, bad = await self._answer(line, session)
            await self._send(stream, response, session)
            if after is not None:
                await self._run_after(after)
            bad_in_a_row = bad_in_a_row + 1 if bad else 0
            if bad_in_a_row >= _MAX_BAD_IN_A_ROW:
                await self._refuse(stream, session, TOO_MANY_ERRORS,
                                   f"{bad_in_a_row} unreadable messages in a row; closing",
                                   hint="send one JSON request object per line")
                return

    async def _next_line(self, stream: SocketStream, reader: _LineReader, session: _Session) -> bytes | None:
        """The next line, or None when the session is over (the client left, or was cut off and told why)."""
        try:
            with anyio.fail_after(self.idle_timeout_s):
                line = await reader.readline()
        except _LineTooLong as exc:
            await self._refuse(stream, session, TOO_LARGE,
                               f"a line longer than the limit of {self.max_line} bytes (read {exc.seen} bytes, "
                               "then stopped reading)",
                               hint=f"messages are single JSON lines of at most {self.max_line} bytes", drain=True)
            return None
        except TimeoutError:
            if session.authenticated and not reader.buffer:
                log.debug("control: closing idle session #%s from %s", session.number, session.peer)
                await self._refuse(stream, session, TIMEOUT, f"closed after {self.idle_timeout_s:g} s idle",
                                   quiet=True, hint="connect again")
                return None
            what = (f"sent {len(reader.buffer)} bytes but no complete line within {self.idle_timeout_s:g} s"
                    if reader.buffer else f"sent nothing within {self.idle_timeout_s:g} s")
            await self._refuse(stream, session, TIMEOUT, what + (" of connecting" if not session.authenticated
                                                                  else ""),
                               hint="send each message as one complete line")
            return None
        if line is None and not session.authenticated:
            detail = f" ({len(reader.buffer)} bytes of an unfinished line)" if reader.buffer else ""
            self._refusals.refused(BAD_HELLO, f"#{session.number} from {session.peer} closed the connection "
                                              f"without saying hello{detail}")
        return line

    async def _hello(self, stream: SocketStream, session: _Session, line: bytes) -> bool:
        """Check the first line: protocol first (a newer client may add fields), then shape, then token."""
        example = '{"protocol": %d, "token": "<contents of control.token>"}' % PROTOCOL_VERSION
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            await self._refuse(stream, session, BAD_HELLO, "the first line is not a JSON hello",
                               hint=f"start with {example}")
            return False
        protocol = obj.get("protocol")
        if isinstance(protocol, int) and not isinstance(protocol, bool) and protocol != PROTOCOL_VERSION:
            await self._refuse(stream, session, PROTOCOL_MISMATCH,
                               f"the client speaks control protocol {protocol}, this service speaks "
                               f"{PROTOCOL_VERSION}",
                               hint="use the stationflow command of the same version as the running service")
            return False
        try:
            hello = Hello.model_validate(obj)
        except ValidationError as exc:
            await self._refuse(stream, session, BAD_HELLO,
                               "the first line is not a valid hello: " + "; ".join(problems_of(exc, limit=3)),
                               hint=f"start with {example}")
            return False
        offered = (hello.token or "").encode("utf-8")
        if self._token is None or not hmac.compare_digest(offered, self._token.encode("ascii")):
            why = "wrong token" if hello.token else "no token"
            await self._refuse(stream, session, UNAUTHORIZED, f"{why} in the hello",
                               hint=f"read the token from {DataDir.of(self.data_dir).token_file} (it changes at every "
                                    "service start) as the user that runs the service")
            return False
        session.authenticated = True
        session.client = hello.client
        log.debug("control: #%s from %s (%s) authenticated", session.number, session.peer, hello.client or "?")
        await self._send(stream, session=session, message={"id": None, "ok": True, "result": {
            "protocol": PROTOCOL_VERSION, "server": "stationflow", "version": __version__, "pid": os.getpid(),
            "commands": sorted(self.handlers)}})
        return True

    async def _answer(self, line: bytes,
                      session: _Session) -> tuple[dict[str, Any] | bytes, AfterReply | None, bool]:
        """The response to one line; ``bad`` marks an unreadable message (the connection stays open)."""
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return _error(None, BAD_JSON, "not a JSON message (one UTF-8 JSON object per line)"), None, True
        rid = _id_of(obj)
        try:
            request = Request.model_validate(obj)
        except ValidationError as exc:
            return _error(rid, BAD_REQUEST, "not a valid request", problems=problems_of(exc),
                          hint='send {"id": 1, "command": "status", "args": {}}'), None, True
        except RecursionError:
            return _error(rid, BAD_REQUEST, "not a valid request (nested too deeply)"), None, True
        handler = self.handlers.get(request.command)
        if handler is None:
            return _error(request.id, UNKNOWN_COMMAND, f"unknown command {request.command[:64]!r}",
                          hint="commands: " + ", ".join(sorted(self.handlers))), None, False
        self.requests += 1
        return (*await self._call(handler, request, session), False)

    async def _call(self, handler: Handler, request: Request,
                    session: _Session) -> tuple[dict[str, Any] | bytes, AfterReply | None]:
        rid = request.id
        try:
            with anyio.move_on_after(self.request_timeout_s) as scope:
                result = await handler(request.args)
        except StationflowError as exc:
            log.debug("control: %s from #%s refused: %s", request.command, session.number, exc)
            return _error(rid, error_code(exc), exc.message, hint=exc.hint,
                          problems=list(getattr(exc, "problems", None) or []), exit_code=exc.exit_code), None
        except ValidationError as exc:
            return _error(rid, BAD_ARGS, f"bad arguments for {request.command}", problems=problems_of(exc),
                          exit_code=InvalidInput.exit_code), None
        except Exception:  # noqa: BLE001 - a handler bug must not take the server down
            log.exception("control: command %s failed with an internal error", request.command)
            return _error(rid, INTERNAL, f"internal error while running {request.command}",
                          hint="the service's log has the details"), None
        if scope.cancelled_caught:
            self._refusals.refused(REQUEST_TIMEOUT, f"{request.command} from #{session.number} took longer than "
                                                    f"{self.request_timeout_s:g} s and was cancelled")
            return _error(rid, REQUEST_TIMEOUT, f"{request.command} did not finish within "
                                                f"{self.request_timeout_s:g} s", hint="see the service's log"), None
        after = result if isinstance(result, AfterReply) else None
        try:
            return encode({"id": rid, "ok": True, "result": after.result if after else result}), after
        except (TypeError, ValueError, RecursionError):
            log.exception("control: the result of %s cannot be sent as JSON", request.command)
            return _error(rid, INTERNAL, f"internal error while answering {request.command}",
                          hint="the service's log has the details"), after

    async def _run_after(self, after: AfterReply) -> None:
        try:
            outcome = after.then()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # noqa: BLE001
            log.exception("control: the follow-up of a command failed")

    # ------------------------------------------------------------------ writing

    async def _send(self, stream: SocketStream, message: dict[str, Any] | bytes, session: _Session) -> None:
        """Write one line; a client that does not take it within the idle timeout is cut off."""
        data = message if isinstance(message, bytes) else encode(message)
        try:
            with anyio.fail_after(self.idle_timeout_s):
                await stream.send(data)
        except TimeoutError:
            self._refusals.refused("slow_reader", f"closed #{session.number} from {session.peer}: it did not "
                                                  f"read its answers for {self.idle_timeout_s:g} s")
            raise _ClientGone() from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _ClientGone() from exc

    async def _refuse(self, stream: SocketStream, session: _Session, code: str, reason: str, *,
                      hint: str | None = None, drain: bool = False, quiet: bool = False) -> None:
        """Log why (rate-limited), tell the client (briefly), and end the session."""
        if not quiet:
            self._refusals.refused(code, f"closed #{session.number} from {session.peer}: {reason}")
        with anyio.move_on_after(_REFUSAL_SEND_S):
            try:
                await stream.send(encode(_error(None, code, reason, hint=hint)))
                await stream.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
        if drain:
            # Closing a socket with unread input resets it, and the client may never see the
            # refusal: discard (not store) what it is still sending, for a bounded time and size.
            discarded = 0
            with anyio.move_on_after(_DRAIN_S):
                try:
                    while discarded < _DRAIN_BYTES:
                        discarded += len(await stream.receive(_CHUNK))
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
