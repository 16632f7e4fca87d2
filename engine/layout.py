"""Every path under the data dir, in one place.

The data dir is the station's own folder: the spool, intake's staging copies, the archive, the
error folder, the log, the service's lock and pid, the control protocol's port and token. Every
module asks :class:`DataDir` for a path instead of joining names of its own, so the layout can be
read (and changed) here alone::

    <data_dir>/
      spool/                one directory per report state (spool/store.py), spool.lock, format
      intake/<intake>/      staging copies and job records of files being converted
      archive/<intake>/     source files kept after conversion (``after: archive``)
      rejected/<intake>/    source files that could not be converted, each with .error.txt
      logs/stationflow.log  the service's log (size-rotated)
      stationflow.lock      held by the one running service
      stationflow.pid       that service's pid
      control.json          where the control protocol listens (while the service runs)
      control.token         the control protocol's token (private)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SPOOL_DIR = "spool"
SPOOL_LOCK = "spool.lock"
SPOOL_FORMAT_FILE = "format"
INTAKE_DIR = "intake"
ARCHIVE_DIR = "archive"
REJECTED_DIR = "rejected"
LOG_FILE = Path("logs") / "stationflow.log"
LOCK_FILE = "stationflow.lock"
PID_FILE = "stationflow.pid"
CONTROL_FILE = "control.json"
TOKEN_FILE = "control.token"
#: The folders intake keeps source files in, which ``reprocess`` reads from.
REPROCESS_ORIGINS = (ARCHIVE_DIR, REJECTED_DIR)


@dataclass(frozen=True)
class DataDir:
    """The paths of one station's data dir."""

    root: Path

    @classmethod
    def of(cls, data_dir: str | os.PathLike[str]) -> DataDir:
        return cls(Path(data_dir))

    @property
    def spool(self) -> Path:
        return self.root / SPOOL_DIR

    @property
    def spool_lock(self) -> Path:
        return self.spool / SPOOL_LOCK

    @property
    def spool_format(self) -> Path:
        return self.spool / SPOOL_FORMAT_FILE

    def intake_work(self, intake: str) -> Path:
        """Intake ``intake``'s staging folder (copies being converted, job records)."""
        return self.root / INTAKE_DIR / intake

    def reprocess_root(self, intake: str) -> Path:
        """Where ``reprocess`` puts files for intake ``intake`` to take again, one folder per origin."""
        return self.intake_work(intake) / "reprocess"

    def reprocess_inbox(self, intake: str, origin: str) -> Path:
        """The folder of ``reprocess_root`` for files from ``origin`` (archive or rejected)."""
        return self.reprocess_root(intake) / origin

    @property
    def intake_root(self) -> Path:
        return self.root / INTAKE_DIR

    @property
    def archive(self) -> Path:
        return self.root / ARCHIVE_DIR

    def rejected(self, intake: str | None = None) -> Path:
        return self.root / REJECTED_DIR if intake is None else self.root / REJECTED_DIR / intake

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def pid_file(self) -> Path:
        return self.root / PID_FILE

    @property
    def control_file(self) -> Path:
        return self.root / CONTROL_FILE

    @property
    def token_file(self) -> Path:
        return self.root / TOKEN_FILE
