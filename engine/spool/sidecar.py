"""Sidecars: a report's attempts, next attempt, last error, source and history, in ``meta/<key>.json``.

Informational (see the store's durability argument): written without fsync except before a report
moves to a state a person reads, and a missing or unreadable one costs history, never the report.
Which reports have one is kept in the index (``Entry.meta``), so the hot path never tries to open a
file that is not there.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .. import durable
from ..clock import now_iso
from ..errors import StorageError
from ...schemas.sidecar import MAX_SIDECAR_BYTES, SidecarError, parse_sidecar

__all__ = ["Sidecars"]

log = logging.getLogger(__name__)


class Sidecars:
    """The ``meta/`` folder of one spool."""

    def __init__(self, root: Path, *, fsync: bool, readonly: bool = False, notes: list[str] | None = None) -> None:
        self.root = root
        self.dir = root / "meta"
        self._fsync = fsync
        self._readonly = readonly
        #: One line per sidecar set aside (shared with the spool's ``recovery_notes``).
        self.notes: list[str] = notes if notes is not None else []

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def read(self, key: str) -> dict[str, Any] | None:
        """The sidecar of ``key`` checked against the schema; None when there is none. One that cannot
        be read or does not fit is set aside (renamed, never deleted) and the report goes on with
        default metadata and a note in its history: a sidecar never stops a report."""
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._set_aside(key, f"cannot be opened: {exc.strerror or exc}", rename=False)
        try:
            size = os.fstat(fd).st_size
            if size > MAX_SIDECAR_BYTES:
                return self._set_aside(key, f"{size} bytes, far more than a sidecar holds (at most {MAX_SIDECAR_BYTES})")
            data = b""
            while len(data) < size and (chunk := os.read(fd, size - len(data))):
                data += chunk
        except OSError as exc:
            return self._set_aside(key, f"cannot be read: {exc.strerror or exc}", rename=False)
        finally:
            os.close(fd)
        try:
            return parse_sidecar(data)
        except SidecarError as exc:
            return self._set_aside(key, str(exc))

    def _set_aside(self, key: str, problem: str, *, rename: bool = True) -> dict[str, Any]:
        """Rename a bad sidecar to ``<key>.json.bad[-n]`` beside the others and say so; return the
        default metadata the report goes on with."""
        path = self.path(key)
        where = str(path)
        if rename and not self._readonly:
            n = 1
            aside = path.with_name(f"{path.name}.bad")
            while aside.exists():
                n += 1
                aside = path.with_name(f"{path.name}.bad-{n}")
            try:
                os.replace(path, aside)
                where = f"{path} (set aside as {aside.name})"
            except OSError as exc:
                where = f"{path} (could not be set aside: {exc.strerror or exc})"
        note = f"sidecar of report {key} ignored, {problem}: {where}; the report goes on with default metadata"
        log.warning("spool: %s", note)
        meta: dict[str, Any] = {"history": [{"at": now_iso(), "from": None, "to": None, "trigger": None,
                                             "note": note}]}
        if not self._readonly:
            self.notes.append(note)
            try:  # the note stays with the report (queue show) even if nothing else is written
                self.write(key, dict(meta))
            except StorageError as exc:
                log.warning("spool: no new sidecar for report %s: %s", key, exc)
        return meta

    def write(self, key: str, meta: dict[str, Any], *, sync: bool = False) -> None:
        meta["id"] = key
        tmp = self.root / "tmp" / f"{key}.{threading.get_ident()}.meta.tmp"
        durable.write_file(tmp, json.dumps(meta, indent=1).encode(), sync=sync and self._fsync)
        durable.replace(tmp, self.path(key))
        if sync and self._fsync:
            durable.fsync_dir(self.dir)

    def unlink(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
