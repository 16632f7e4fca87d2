"""Times a person reads: one format everywhere (UTC, ISO 8601, milliseconds).

Wall-clock time is only for what people read (history, error files, status); timeouts and
backoff use ``time.monotonic``. One format means the times in a report's sidecar, its source's
error file and the service's status can be compared at a glance.
"""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    """Now, e.g. ``2026-11-30T12:00:00.123+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso_from_epoch(seconds: float) -> str:
    """A Unix time in the same format."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
