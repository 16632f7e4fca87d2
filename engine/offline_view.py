"""The station as seen from disk, for the configurator while the service is stopped.

The configurator (``ui_tk``) never imports the spool: when the control protocol does not answer,
it calls these functions (from a worker thread — they read directories) to show the counts and
the reports that wait for a person, read the log file, and retry reports itself. Reading opens
the spool read-only (no lock, nothing moved); retrying takes the spool's lock like
``stationflow queue retry`` and is refused plainly while a service holds it.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from .errors import IllegalTransition, StationflowError
from .lifecycle import load_lifecycle
from .layout import DataDir
from .station import open_spool, spool_in_use
from ..schemas.config import StationConfig

#: States whose reports wait for a person (the Queue page lists them with their message).
PROBLEM_STATES = ("failed", "quarantined")


def report_states() -> list[str]:
    """Every state of the report lifecycle, in the order the YAML declares them."""
    return list(load_lifecycle("report").states)


def spool_counts(cfg: StationConfig) -> dict[str, int]:
    """Reports per state, read from the spool's folders (zeros when the spool does not exist yet).

    ``cfg`` must be resolved (absolute ``data_dir``).
    """
    if not DataDir.of(cfg.data_dir).spool.is_dir():
        return {state: 0 for state in report_states()}
    return open_spool(cfg, readonly=True).counts()


def problem_reports(cfg: StationConfig, *, states: tuple[str, ...] = PROBLEM_STATES,
                    limit: int = 500) -> list[dict[str, Any]]:
    """Failed and quarantined reports with their last error (the server's message), at most ``limit``."""
    if not DataDir.of(cfg.data_dir).spool.is_dir():
        return []
    spool = open_spool(cfg, readonly=True)
    rows: list[dict[str, Any]] = []
    for state in states:
        if state not in spool.lifecycle.states:
            continue
        for info in spool.iter_info(state):
            rows.append(info.as_dict())
            if len(rows) >= limit:
                return rows
    return rows


def retry_reports(cfg: StationConfig, ids: list[str] | None = None, *, all_failed: bool = False) -> dict[str, Any]:
    """Move reports back to ``pending`` (what ``stationflow queue retry`` does), without a service.

    Returns ``{"retried": [ids], "errors": ["id: why", ...]}``. Raises ``AlreadyRunning`` when a
    service holds the spool (then retry through the control protocol instead).
    """
    retried: list[str] = []
    errors: list[str] = []
    with open_spool(cfg) as spool:
        targets = list(ids or []) + (spool.keys("failed") if all_failed else [])
        for key in targets:
            try:
                spool.fire(key, "retry", note="retried by an operator (configurator)")
                retried.append(key)
            except (IllegalTransition, StationflowError) as exc:
                errors.append(f"{key}: {exc}")
    return {"retried": retried, "errors": errors}


def log_tail(cfg: StationConfig, n: int = 200) -> list[str]:
    """The last ``n`` lines of the service's log file (empty when it has never run)."""
    path = DataDir.of(cfg.data_dir).log_file
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 256 * 1024))  # enough for n lines; never read a whole big log
            lines = deque(fh.read().decode("utf-8", errors="replace").splitlines(), maxlen=n)
    except FileNotFoundError:
        return []
    return list(lines)


def spool_locked(cfg: StationConfig) -> bool:
    """True when some process (normally the service) holds the spool, answering control or not."""
    return spool_in_use(cfg)


__all__ = ["PROBLEM_STATES", "log_tail", "problem_reports", "report_states", "retry_reports", "spool_counts",
           "spool_locked"]
