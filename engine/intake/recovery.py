"""Start-up: pick up what a previous run of intake left in the data dir, losing nothing.

Partial copies in ``tmp/`` are dropped (their sources are untouched); a job record (one per
batch, listing its files; or one per file, as older versions wrote) resumes each file whose copy
is still there (converting again gives the same report ids: "already present" in the spool); an
entry whose copy is gone was finished, or its copy lost, and its source (if still there) is taken
from the start; a copy that no record names was never recorded, so its source is untouched and it
goes. A record stays until the last file it lists is finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..layout import REPROCESS_ORIGINS
from .post_actions import release_claim
from .model import ERROR_SUFFIX, TrackedFile, Watch, unlink_quietly

log = logging.getLogger(__name__)


def recover(watch: Watch) -> None:
    """Pick up what a previous run left: job records, orphan copies, partial copies."""
    for folder in (watch.copies, watch.jobs, watch.tmp, watch.rejected_dir,
                   *(watch.reprocess / o for o in REPROCESS_ORIGINS)):
        folder.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(watch.tmp):
        unlink_quietly(entry.path)  # partial copies: their sources are untouched
    try:
        watch.kept = {k: list(v) for k, v in json.loads(watch.kept_file.read_bytes()).items()}
    except FileNotFoundError:
        watch.kept = {}
    except (ValueError, OSError, AttributeError) as exc:
        log.warning("intake %s: %s is unreadable (%s); kept files may be converted again",
                    watch.name, watch.kept_file, exc)
        watch.kept = {}
    owned: set[str] = set()
    for entry in os.scandir(watch.jobs):
        if not entry.name.endswith(".json"):
            continue
        try:
            record = json.loads(Path(entry.path).read_bytes())
            batch = Path(entry.name).stem
            entries = record["files"] if "files" in record else [record]  # one per batch, or per file (older)
            files = [_resumed(watch, item, batch) for item in entries]
        except (ValueError, OSError, KeyError, TypeError) as exc:
            log.warning("intake %s: job record %s is unreadable (%s); its sources are taken again",
                        watch.name, entry.path, exc)
            unlink_quietly(entry.path)
            continue
        live = 0
        for file in files:
            if file.copy is not None and not file.copy.exists() and file.state != watch.roles.spooled:
                # The copy is gone (finished, archived, or lost to a power cut): take the source from
                # the start. A source already claimed for removal goes back under its name first.
                release_claim(file)
                continue
            if file.copy is not None:
                owned.add(f"{file.copy.parent.name}/{file.copy.name}")
            watch.track(file)
            live += 1
            log.info("intake %s: resuming %s from state %s", watch.name, file.path, file.state)
        if live:
            watch.hold_record(batch, live)
        else:
            unlink_quietly(entry.path)
    for entry in os.scandir(watch.copies):
        # A copy no job record refers to was never recorded: its source is untouched.
        if not entry.is_dir(follow_symlinks=False):
            unlink_quietly(entry.path)
            continue
        for inner in os.scandir(entry.path):
            if f"{entry.name}/{inner.name}" in owned:
                continue
            if inner.is_dir(follow_symlinks=False):
                shutil.rmtree(inner.path, ignore_errors=True)
            else:
                unlink_quietly(inner.path)
        try:
            os.rmdir(entry.path)
        except OSError:
            pass  # still holds copies of jobs being resumed
    watch.rejected = sum(1 for e in os.scandir(watch.rejected_dir)
                         if e.is_file() and not e.name.endswith(ERROR_SUFFIX))


def _resumed(watch: Watch, record: dict[str, Any], batch: str) -> TrackedFile:
    """The tracked file a job record's entry describes (raises on a malformed entry)."""
    state = record["state"]
    watch.lifecycle.state(state)
    if state != watch.roles.spooled:
        state = watch.roles.copied  # records are written in copied or spooled; anything else resumes from the copy
    copy = watch.copies / record["copy"] if record.get("copy") else None
    return TrackedFile(watch, Path(record["source"]), record.get("rel") or Path(record["source"]).name,
                       record.get("origin", "watch"), state, int(record["size"]), int(record["mtime_ns"]),
                       time.monotonic(), job=record["job"], batch=batch, sha256=record.get("sha256"), copy=copy,
                       reports=list(record.get("reports") or []), identity=_identity(record.get("identity")))


def _identity(value: object) -> tuple[int, int]:
    """A record's (device, inode) of the copied source; (0, 0) when absent or malformed."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return (0, 0)
