"""The service's log: levels that mean one thing, optional JSON lines, a size-rotated file, no secrets.

Where the lines go while the service runs:

- standard error (the console, or the journal under systemd), text or JSON as configured;
- ``<data_dir>/logs/stationflow.log``, rotated by size (``logging.file_max_bytes``, keeping
  ``logging.file_backups`` old files), same format as standard error. When the file cannot be
  renamed (on Windows: a viewer, backup or antivirus holds it) rotation is put off and the lines
  keep going to the same file — none is lost — and :attr:`ServiceLogging.problem` says so;
- an in-memory ring of the last lines, for ``log tail`` through the control protocol.

Every handler carries a :class:`SecretFilter`: a token that slips into a message, an argument or a
traceback is replaced by ``********`` before any handler formats it. ``httpx``/``httpcore`` log one
INFO line per request and ``transitions`` one per state callback; they are held at WARNING unless
the level is DEBUG (INFO is for lifecycle events, not for every report).

A line is cheap (issue 18: the intake logs one per file, ~32 µs each in the service before): it is
masked and formatted once for all three handlers (:class:`OnceFormatter`), the file's size is
counted, not asked of the disk (the standard rotating handler made two ``stat``, a ``seek`` and a
fourth format per line), and the lines of one forwarded batch reach the console and the file in
one write each (:func:`one_write`).
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import stat
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .. import durable
from ..layout import DataDir
from ...schemas.config import MASK, LoggingSection

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CHATTY = ("httpx", "httpcore", "transitions")


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record by the mask. Secrets can be added while running
    (a reloaded token); old ones stay masked, since they may still sit in queued messages."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._version = object()  # a record masked under this version needs no second look
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret and secret.strip() and len(secret) >= 4:  # masking "a" everywhere would hide the log
            with self._lock:
                self._secrets.add(secret)
                self._version = object()

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        version = self._version
        if record.__dict__.get("_sf_masked") is version:  # the same filter on the next handler
            return True
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        record.__dict__["_sf_masked"] = version
        return True


class OnceFormatter(logging.Formatter):
    """A formatter that formats a record once however many handlers write it: the text is kept on
    the record for this formatter (the console, the file and the ring share one instance). Safe
    because a record is not changed once the handlers have it (the secret filter, which does change
    it, runs before the first format and is the same on every handler)."""

    def format(self, record: logging.LogRecord) -> str:
        done = record.__dict__.get("_sf_formatted")
        if done is not None and done[0] is self:
            kept: str = done[1]
            return kept
        text = self.format_once(record)
        record.__dict__["_sf_formatted"] = (self, text)
        return text

    def format_once(self, record: logging.LogRecord) -> str:
        return super().format(record)


class JsonFormatter(OnceFormatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, ``exc``."""

    def format_once(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class LogRing(logging.Handler):
    """The last ``capacity`` formatted lines, in memory (a traceback counts as one entry)."""

    def __init__(self, capacity: int = 500) -> None:
        super().__init__()
        self._lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(TEXT)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def tail(self, n: int = 50) -> list[str]:
        """The last ``n`` lines, oldest first."""
        if n <= 0:
            return []
        lines = list(self._lines)
        return lines[-n:]


#: The text format's one formatter: shared by the ring, the console and the file, so a line is
#: formatted once (:class:`OnceFormatter`).
TEXT = OnceFormatter(TEXT_FORMAT)
_held = threading.local()  # .flushes: the handlers whose flush waits for the end of one_write


@contextmanager
def one_write() -> Iterator[None]:
    """The lines this thread logs inside the block reach the console and the file with one flush
    (one write) each at its end, not one per line; for the intake process's batch of log records
    (a line per file). Nothing waits longer than the block: it holds no await."""
    if getattr(_held, "flushes", None) is not None:  # nested: the outer block flushes
        yield
        return
    flushes: set[_FlushOnce] = set()
    _held.flushes = flushes
    try:
        yield
    finally:
        _held.flushes = None
        for handler in flushes:
            handler.flush()


class _FlushOnce(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose flush waits for the end of a :func:`one_write` block of this thread."""

    def flush(self) -> None:
        flushes = getattr(_held, "flushes", None)
        if flushes is not None:
            flushes.add(self)
            return
        super().flush()


class ConsoleLog(_FlushOnce):
    """Standard error (the console, or the journal under systemd)."""


class RotatingLog(_FlushOnce, logging.handlers.RotatingFileHandler):
    """A size-rotated log file that survives a rotation the system refuses.

    The standard handler closes the file, fails to rename it, drops the line it was writing,
    and tries again (and drops again) at every following line. Here the rename is retried as
    any held file is (:func:`durable.retry_held`); if it still fails, the file is opened again,
    the line is written to it, and rotation waits ``retry_after_s`` before the next try.

    The file's size is counted as lines are written (its size when opened, plus each line's
    bytes), where the standard handler asked the disk at every line (two ``stat``, a ``seek``) and
    formatted the line once more to measure it. Only this handler writes the file; a file emptied
    behind its back is rotated once early, no line lost. (On Windows a line's ``\r`` is not
    counted: a file ends a little past ``maxBytes``, as it could before.)
    """

    retry_after_s = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._size = 0  # bytes in the file as written so far (set again by each _open)
        self._regular = True  # a rotation of /dev/null or a pipe is never attempted (bpo-45401)
        super().__init__(*args, **kwargs)
        self.problem: str | None = None
        self._next_try = 0.0

    def _open(self) -> Any:
        stream = super()._open()
        try:
            info = os.fstat(stream.fileno())
            self._size, self._regular = info.st_size, stat.S_ISREG(info.st_mode)
        except (OSError, ValueError):  # not a file we can ask: count from nothing
            self._size, self._regular = 0, True
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            size = (len(text) if text.isascii()
                    else len(text.encode(self.encoding or "utf-8", self.errors or "strict"))) + len(self.terminator)
            if self._rotate_before(size):
                self.doRollover()
            logging.FileHandler.emit(self, record)  # formats again: the same text, kept on the record
            self._size += size
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    def _rotate_before(self, size: int) -> bool:
        """Whether a line of ``size`` bytes would take the file past ``maxBytes`` (and rotation is not put off)."""
        if self.maxBytes <= 0 or time.monotonic() < self._next_try:
            return False
        if self.stream is None:  # delay was set, or a failed rotation closed it
            self.stream = self._open()
        return self._regular and self._size > 0 and self._size + size >= self.maxBytes

    def shouldRollover(self, record: logging.LogRecord) -> int:
        """The standard entry point, answered from the counted size (``emit`` does not call it)."""
        text = self.format(record)
        return int(self._rotate_before(len(text.encode(self.encoding or "utf-8", self.errors or "strict")) + 1))

    def rotate(self, source: str, dest: str) -> None:
        durable.retry_held("log rotation", source,
                           lambda: logging.handlers.RotatingFileHandler.rotate(self, source, dest))

    def doRollover(self) -> None:
        try:
            super().doRollover()
        except OSError as exc:
            self._next_try = time.monotonic() + self.retry_after_s
            self.problem = (f"the log {self.baseFilename} could not be rotated ({exc.strerror or exc}; another "
                            f"program may hold it): still writing to it, next try in {self.retry_after_s:g} s")
            if self.stream is None:
                self.stream = self._open()
            return
        self.problem = None


class ServiceLogging:
    """Handlers installed on the root logger for the service's lifetime; :meth:`close` puts back
    whatever was there before (the CLI's console handler, a test runner's capture)."""

    def __init__(self, data_dir: Path, section: LoggingSection, ring: LogRing, *,
                 level_override: str | None = None, secrets: Iterable[str] = (),
                 stream: IO[str] | None = None) -> None:
        self.section = section
        self.ring = ring
        self.level_override = level_override
        self.secrets = SecretFilter(secrets)
        self.path = DataDir.of(data_dir).log_file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.console = ConsoleLog(stream or sys.stderr)
        self.file = RotatingLog(
            self.path, maxBytes=int(section.file_max_bytes), backupCount=section.file_backups,
            encoding="utf-8", errors="backslashreplace")  # a file name that is not UTF-8 is logged as \udcXX
        self._root = logging.getLogger()
        self._saved_handlers = list(self._root.handlers)
        self._saved_level = self._root.level
        self._saved_chatty = {name: logging.getLogger(name).level for name in _CHATTY}
        ours: tuple[logging.Handler, ...] = (self.console, self.file, self.ring)
        for handler in ours:
            handler.addFilter(self.secrets)
        for saved in self._saved_handlers:
            self._root.removeHandler(saved)
        for handler in ours:
            self._root.addHandler(handler)
        self.apply(section)

    @property
    def problem(self) -> str | None:
        """Why the log file is not being rotated, for ``status``; None when all is well."""
        return self.file.problem

    @property
    def level(self) -> str:
        return self.level_override or self.section.level

    def apply(self, section: LoggingSection) -> list[str]:
        """Apply a (reloaded) logging section; returns notes of what changed."""
        notes = []
        old = self.section
        self.section = section
        formatter = JsonFormatter() if section.json_ else TEXT
        self.console.setFormatter(formatter)
        self.file.setFormatter(formatter)
        self.file.maxBytes = int(section.file_max_bytes)
        self.file.backupCount = section.file_backups
        level = logging.getLevelName(self.level)
        self._root.setLevel(level)
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)
        if old.level != section.level and self.level_override:
            notes.append(f"logging.level: {section.level} is saved but --log-level {self.level_override} "
                         "stays in force until the service restarts")
        return notes

    def close(self) -> None:
        ours: tuple[logging.Handler, ...] = (self.console, self.file, self.ring)
        for handler in ours:
            self._root.removeHandler(handler)
            handler.removeFilter(self.secrets)
        self.console.flush()
        self.file.close()
        for saved in self._saved_handlers:
            self._root.addHandler(saved)
        self._root.setLevel(self._saved_level)
        for name, level in self._saved_chatty.items():
            logging.getLogger(name).setLevel(level)
