"""``reprocess``: archived or rejected source files, put back where their intake takes them again.

Why: a converter was fixed or changed, or reports were lost on the server. A file is *staged*
into ``<data_dir>/intake/<name>/reprocess/<origin>/`` (an archived file is linked or copied — the
archive is never changed; a rejected file is moved, its ``.error.txt`` dropped); the running
service's intake, or :func:`convert_staged` when none runs, converts it like a new file.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .. import durable
from ..layout import DataDir
from ..spool.store import Spool
from ...schemas.config import IntakeSection, StationConfig
from .intake import Intake
from .model import ERROR_SUFFIX, FileOutcome
from .post_actions import archived_name, free_name


@dataclass
class Staged:
    intake: str
    origin: str  # "archive" or "rejected"
    source: Path
    staged: Path | None = None


def select(cfg: StationConfig, intakes: list[IntakeSection], since: date | None, until: date | None,
           rejected: bool) -> list[Staged]:
    """The archived files (by archive day) and rejected files (by rejection day) to take again."""
    data_dir = Path(cfg.data_dir)
    names = {i.name for i in intakes}
    found: list[Staged] = []
    archive = DataDir(data_dir).archive
    if since is not None and archive.is_dir():
        for day_dir in sorted(archive.iterdir()):
            try:
                day = date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            if day < since or (until is not None and day > until):
                continue
            for intake_dir in sorted(p for p in day_dir.iterdir() if p.is_dir() and p.name in names):
                found += [Staged(intake_dir.name, "archive", f) for f in sorted(intake_dir.iterdir()) if f.is_file()]
    if rejected:
        for name in sorted(names):
            folder = DataDir(data_dir).rejected(name)
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if not f.is_file() or f.name.endswith(ERROR_SUFFIX) or f.name.startswith("."):
                    continue
                note = f.with_name(f.name + ERROR_SUFFIX)
                when = date.fromtimestamp((note if note.exists() else f).stat().st_mtime)
                if since is not None and when < since or until is not None and when > until:
                    continue
                found.append(Staged(name, "rejected", f))
    return found


def stage(cfg: StationConfig, items: list[Staged]) -> None:
    """Put each file where its intake takes it: ``intake/<name>/reprocess/<origin>/<original name>``."""
    for item in items:
        folder = DataDir.of(cfg.data_dir).reprocess_inbox(item.intake, item.origin)
        folder.mkdir(parents=True, exist_ok=True)
        name = archived_name(item.source) if item.origin == "archive" else item.source.name
        target = free_name(folder / name)
        if item.origin == "archive":
            tmp = folder / f".{target.name}.tmp"
            try:
                os.link(item.source, tmp)  # the archived file is never changed: a link is enough
            except OSError:
                with open(item.source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                    dst.flush()
                    os.fsync(dst.fileno())
            durable.replace(tmp, target)
        else:
            durable.replace(item.source, target)
            note = item.source.with_name(item.source.name + ERROR_SUFFIX)
            try:
                os.unlink(note)
            except FileNotFoundError:
                pass
        durable.fsync_dir(folder)
        item.staged = target


async def convert_staged(cfg: StationConfig, intakes: list[IntakeSection], spool: Spool) -> list[FileOutcome]:
    """Take the staged files now, in this process (no service runs); what became of each."""
    intake = Intake(intakes, spool, Path(cfg.data_dir), cfg.station)
    try:
        while await intake.scan_once(only_reprocess=True):
            pass
        waiting = intake.paused_reason
    finally:
        await intake.aclose()
    if waiting:
        print(f"stationflow: {waiting}; the remaining files wait in {DataDir.of(cfg.data_dir).intake_root}/<intake>/"
              "reprocess/ and are taken when there is room", file=sys.stderr)
    return list(intake.outcomes)
