"""The intake process: watch folders → copy → convert, in a process of its own beside the service.

``python -m stationflow.engine.service.intake_child`` is started by the service
(:mod:`.intake_process`) and nothing else. Intake and uploader in one process share one GIL:
measured, futex waits and context switches were 16–33 % of the service's CPU. Here the intake
runs its own event loop, threads and converter workers; the service keeps the spool, the uploads
and the control server.

Durability argument (unchanged from one process): this process never writes the spool. For each
batch it sends the converted report bytes to the service, which calls ``Spool.accept_many`` — each
report written, fsynced, renamed into ``pending/`` and the directory fsynced — and only then
answers. So a report is in the spool, fsynced, before the uploads can see it, and this process
acts on a source (archive, move, delete, keep) only after that answer. If either process dies
between the two, the source is still in its folder (or its copy and job record are in
``<data_dir>/intake/``) and is converted again to the same ids: the spool answers "already
present", never a second report.

Orphans: the service holds the only other end of this process's stdin. End-of-file there (the
service stopped, or died by ``kill -9``) cancels the intake — which never loses a source — and the
process exits, within ``_ORPHAN_EXIT_S`` even if something hangs. Its converter workers see their
own stdin close and exit with it.

Protocol (frames of :mod:`.frames`), service → intake: ``init`` (once), ``accepted``, ``pause``,
``resume``, ``drain``; intake → service: ``ready``, ``accept``, ``status``, ``logs``, ``drained``.

Log records go in ``logs`` frames of several records: a burst logs a line per batch of files, and
a frame per line cost the service an event-loop wake-up each. A record waits at most
``_LOG_DELAY_S`` (a warning or error not at all), and every other frame takes the records logged
before it along first, so the service logs them in order and before whatever that frame says.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel

from ..errors import StorageError
from ..spool.store import Accepted, Spool
from .frames import parts, read_frame, write_parts

log = logging.getLogger(__name__)

_ORPHAN_EXIT_S = 10.0  # after the service is gone: time to unwind before a hard exit
_STATUS_EVERY_S = 0.2  # the service's copy of the status is at most this old
_LOG_DELAY_S = 0.05  # an info line reaches the service's log at most this much later
_GONE = "the service process is gone; the source stays in its folder and is taken again at the next start"


class ServiceLink:
    """The pipe to the service: framed writes from any thread, one reader thread."""

    def __init__(self, inp: IO[bytes], out: IO[bytes]) -> None:
        self._inp, self._out = inp, out
        self._write_lock = threading.Lock()
        self._logs: list[tuple[int, str, str]] = []  # records not sent yet (level, logger, text)
        self._logs_lock = threading.Lock()
        self._logs_due = threading.Event()
        self._ids = itertools.count(1)
        # request id -> (its answer, how many items it asked for)
        self._waiting: dict[int, tuple[concurrent.futures.Future[list[Accepted | Exception]], int]] = {}
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, message: Any) -> None:
        """One frame, after the log records logged before it (from any thread; blocking)."""
        frame = parts(message)  # pickled before the lock: other threads' frames need not wait for it
        with self._write_lock:
            self._write_logs()
            write_parts(self._out, frame)
            self._out.flush()

    def log(self, level: int, name: str, text: str) -> None:
        """Queue a log record for the service: sent with the next frame, within ``_LOG_DELAY_S``, or
        at once from a warning up."""
        with self._logs_lock:
            self._logs.append((level, name, text))
            first = len(self._logs) == 1
        if level >= logging.WARNING:
            self.flush_logs()
        elif first:
            self._logs_due.set()

    def flush_logs(self) -> None:
        """Send the queued log records now (if any)."""
        with self._write_lock:
            if self._write_logs():
                self._out.flush()

    def _write_logs(self) -> bool:
        """Write the queued records as one frame; the caller holds the write lock and flushes."""
        with self._logs_lock:
            records, self._logs = self._logs, []
        if records:
            write_parts(self._out, parts(("logs", records)))
        return bool(records)

    def forward_logs(self) -> None:
        """The thread that sends queued info records at most ``_LOG_DELAY_S`` after the first."""
        while True:
            self._logs_due.wait()
            time.sleep(_LOG_DELAY_S)
            self._logs_due.clear()
            try:
                self.flush_logs()
            except (OSError, ValueError):
                return  # the service is gone (or the pipe closed): the reader thread ends the process

    def accept_many(self, items: list[tuple[bytes, str | None]], *,
                    validated_keys: Sequence[str | None] | None = None) -> list[Accepted | Exception]:
        """Blocking (intake calls it in a thread): the service's ``Spool.accept_many`` of these items
        (with the ids the converter worker validated). If the service is gone every item is that
        StorageError, so intake keeps the sources."""
        future: concurrent.futures.Future[list[Accepted | Exception]] = concurrent.futures.Future()
        with self._lock:
            if self.closed.is_set():
                return [StorageError(_GONE)] * len(items)
            rid = next(self._ids)
            self._waiting[rid] = (future, len(items))
        try:
            self.send(("accept", rid, items, list(validated_keys) if validated_keys is not None else None))
        except OSError:
            self._fail_waiting()
        return future.result()

    def read(self) -> Any:
        return read_frame(self._inp)

    def answer(self, rid: int, results: list[Accepted | Exception]) -> None:
        with self._lock:
            future, _ = self._waiting.pop(rid, (None, 0))
        if future is not None:
            future.set_result(results)

    def _fail_waiting(self) -> None:
        with self._lock:
            self.closed.set()
            waiting, self._waiting = self._waiting, {}
        for future, count in waiting.values():
            if not future.done():
                future.set_result([StorageError(_GONE)] * count)  # one result per item, as accept_many

    def gone(self) -> None:
        """End of the service's pipe: every accept waiting, and every later one, fails."""
        self._fail_waiting()


class _SpoolProxy:
    """What intake uses of a spool, served by the service: ``accept_many`` and the lifecycles."""

    def __init__(self, link: ServiceLink, machines: dict[str, Any]) -> None:
        self.accept_many = link.accept_many
        self.machines = machines


class _ForwardLogs(logging.Handler):
    """Every record goes to the service, which writes it to its log file and status ring."""

    def __init__(self, link: ServiceLink) -> None:
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.link.log(record.levelno, record.name, text)
        except Exception:  # noqa: BLE001 - a log line must never take the intake down
            self.handleError(record)


async def serve(link: ServiceLink, init: dict[str, Any]) -> None:
    """Run the intake until the service says drain (then wait for end-of-file) or goes away."""
    from ..intake import Intake

    spool = cast(Spool, _SpoolProxy(link, init["machines"]))  # intake calls accept_many and reads machines only
    intake = Intake(init["sections"], spool, Path(init["data_dir"]), init["station"])
    token = anyio.lowlevel.current_token()
    stop = anyio.Event()
    changed = anyio.Event()

    async def drain() -> None:
        await intake.drain()
        link.send(("drained",))

    def on_message(message: tuple[Any, ...]) -> None:  # on the event loop
        kind = message[0]
        if kind == "pause":
            intake.pause(message[1])
        elif kind == "resume":
            intake.resume()
        elif kind == "drain":
            tg.start_soon(drain)
        changed.set()

    def reader() -> None:
        try:
            while True:
                message = link.read()
                if message[0] == "accepted":
                    link.answer(message[1], message[2])
                else:
                    anyio.from_thread.run_sync(on_message, message, token=token)
        except (EOFError, OSError, anyio.RunFinishedError):
            pass
        finally:
            link.gone()
            threading.Timer(_ORPHAN_EXIT_S, os._exit, (3,)).start()  # never outlive the service for long
            try:
                anyio.from_thread.run_sync(stop.set, token=token)
            except anyio.RunFinishedError:
                pass

    async def push_status() -> None:
        nonlocal changed
        last: dict[str, Any] | None = None
        while True:
            status = intake.status()
            if status != last:
                link.send(("status", status))
                last = status
            with anyio.move_on_after(_STATUS_EVERY_S):
                await changed.wait()
            changed = anyio.Event()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run, name="intake")
            tg.start_soon(push_status, name="intake-status")
            threading.Thread(target=reader, name="service-link", daemon=True).start()
            link.send(("ready",))
            await stop.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await intake.aclose()


def main() -> int:
    # The protocol owns the real stdout; anything printed (a converter, a library) goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    link = ServiceLink(sys.stdin.buffer, out)
    try:
        kind, init = link.read()
    except EOFError:
        return 0
    assert kind == "init"
    sys.setswitchinterval(init["switch_interval_s"])
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(link)]
    root.setLevel(init["log_level"])
    threading.Thread(target=link.forward_logs, name="forward-logs", daemon=True).start()
    try:
        anyio.run(serve, link, init)
    finally:
        try:
            link.flush_logs()  # the last lines (how it ended) before the process exits
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
