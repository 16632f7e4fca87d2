"""Sidecars: a report's attempts, next attempt, last error, source and history, in ``meta/<key>.json``.

Informational (see the store's durability argument): written without fsync except before a report
moves to a state a person reads, and a missing or unreadable one costs history, never the report.
Which keys have one is kept in memory, so the hot path never tries to open a file that is not there.
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

__all__ = ["Sidecars"]

log = logging.getLogger(__name__)


class Sidecars:
    """The ``meta/`` folder of one spool."""

    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.root = root
        self.dir = root / "meta"
        self._fsync = fsync
        self.with_meta: set[str] = set()  # keys that have a sidecar: no failed open() per claim
        # Keys whose sidecar says only where the report came from (written at accept, 0 attempts):
        # a claim need not read it, and sending at the first attempt adds nothing a person needs,
        # so -> sent does not rewrite it.
        self.source_only: set[str] = set()

    def scan(self) -> None:
        """Learn which keys have a sidecar (one directory listing)."""
        if self.dir.is_dir():
            with os.scandir(self.dir) as it:
                self.with_meta.update(e.name[:-5] for e in it if e.name.endswith(".json"))

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def read(self, key: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path(key).read_bytes())
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:
            log.warning("sidecar of report %s is unreadable (%s); starting a new one", key, exc)
            return {"history": [{"at": now_iso(), "note": f"previous sidecar unreadable: {exc}"}]}

    def write(self, key: str, meta: dict[str, Any], *, sync: bool = False) -> None:
        meta["id"] = key
        tmp = self.root / "tmp" / f"{key}.{threading.get_ident()}.meta.tmp"
        durable.write_file(tmp, json.dumps(meta, indent=1).encode(), sync=sync and self._fsync)
        durable.replace(tmp, self.path(key))
        self.with_meta.add(key)
        self.source_only.discard(key)
        if sync and self._fsync:
            durable.fsync_dir(self.dir)

    def unlink(self, key: str) -> None:
        self.with_meta.discard(key)
        self.source_only.discard(key)
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
