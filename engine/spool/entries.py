"""What the spool hands out and keeps in memory: index entries, claims, accept results, report info.

Kept apart from the store so the store is only the moves; the file-name rule (``<key>.<crc32>.json``)
lives here, next to the entry that builds names from it.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NAME", "NAME_ANY_CASE", "KEY", "MAX_HISTORY", "NO_META", "HAS_META", "MAYBE_META", "Entry", "Accepted", "Claim", "ReportInfo", "read_file", "crc_of", "stamp_file"]

log = logging.getLogger(__name__)

#: A report file's name. The key is lower case, the canonical form of a report id, so the key a
#: claim hands out is the key every later call finds.
NAME = re.compile(r"^(?P<key>[0-9a-z][0-9a-z_~\-]{0,120})\.(?P<crc>[0-9a-f]{8})\.json$")
#: A canonical report id as ``parse_header`` gives it (a lower-case GUID): the only key a caller
#: that validated a report itself may hand to ``accept_many``.
KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: The same shape in any case: what the start-up scan recognises as a report file at all (one in
#: another case is renamed to the canonical name, or set aside if that name is taken).
NAME_ANY_CASE = re.compile(NAME.pattern, re.IGNORECASE)
MAX_HISTORY = 50

# What the index knows of a report's sidecar (``Entry.meta``), so the hot path never opens a file
# that is not there and start-up need not list ``meta/``: none, one, or not known yet (found at
# start-up: learnt the first time a move needs it).
NO_META, HAS_META, MAYBE_META = 0, 1, 3


@dataclass(slots=True)
class Entry:
    """What the index knows of one report: no content, just where it is."""

    state: str
    crc: str
    size: int
    busy: bool = False
    meta: int = NO_META

    def filename(self, key: str) -> str:
        return f"{key}.{self.crc}.json"


@dataclass(frozen=True, slots=True)
class Accepted:
    key: str
    state: str
    already_present: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A report taken for sending: its key and the exact bytes to post."""

    key: str
    data: bytes
    attempts: int


@dataclass
class ReportInfo:
    """What ``queue list`` / ``queue show`` print for one report."""

    id: str
    state: str
    size: int
    attempts: int = 0
    last_error: str | None = None
    next_attempt: str | None = None
    source: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "attempts": self.attempts, "last_error": self.last_error,
            "source": self.source, "next_attempt": self.next_attempt, "size": self.size, "path": self.path,
        }


def read_file(path: str | os.PathLike[str], size: int) -> bytes:
    """Read a whole spool file in as few system calls as possible (each one gives up the GIL)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = []
        got = 0
        while got < size:  # spool files never change after accept; the crc checks what was read
            chunk = os.read(fd, size - got)
            if not chunk:
                break  # shorter than recorded: the crc check will quarantine it
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def stamp_file(path: str | os.PathLike[str], epoch: float) -> None:
    """Set a report file's times (informational: a failure costs a wait's timing, never the report)."""
    try:
        os.utime(path, (epoch, epoch))
    except OSError as exc:
        log.warning("could not set the time of %s: %s", path, exc)


def crc_of(data: bytes) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
