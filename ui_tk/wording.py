"""Field labels as an operator reads them: "Read timeout (s)", not "timeout s".

The schema's keys are a file format (``timeout_s``, ``rate_per_s``); a settings window speaks in
titles with their unit. A field's own ``title`` in the schema wins; otherwise the table below
(keyed by the field's path without list indexes, then by its key), else the key made readable
with the unit its suffix names.
"""

from __future__ import annotations

import re

#: path or key → title (the unit is added from the key's suffix unless the title has one)
TITLES = {
    "server.url": "Server address (URL)",
    "server.token": "Access token",
    "server.verify_tls": "Check the server's certificate",
    "server.ca_bundle": "Certificate authority file (PEM)",
    "server.timeout_s": "Read timeout",
    "server.connect_timeout_s": "Connect timeout",
    "station.name": "Station name",
    "data_dir": "Data folder",
    "intake.watch": "Watch folder",
    "intake.patterns": "File name patterns",
    "intake.recursive": "Include sub-folders",
    "intake.follow_links": "Follow symbolic links",
    "intake.settle_ms": "Wait until unchanged",
    "intake.after": "After conversion",
    "intake.move_to": "Move to folder",
    "intake.max_file_bytes": "Largest file",
    "intake.timeout_s": "Conversion time limit",
    "upload.concurrency": "Reports sent at once",
    "upload.rate_per_s": "Most reports per second",
    "upload.retry.initial_s": "First wait after a failure",
    "upload.retry.max_s": "Longest wait",
    "upload.retry.multiplier": "Wait multiplier",
    "upload.retry.jitter": "Random spread",
    "upload.retry.offline_after": "Failures before offline",
    "spool.max_reports": "Most reports waiting",
    "spool.max_bytes": "Most bytes waiting",
    "spool.min_free_disk": "Free disk to keep",
    "spool.keep_sent_days": "Keep sent reports",
    "shutdown.grace_s": "Time to finish when stopping",
    "control.port": "Control port",
    "logging.level": "Log level",
    "logging.json": "JSON lines",
    "logging.file_max_bytes": "Rotate log file at",
    "logging.file_backups": "Rotated log files kept",
}
_UNITS = (("_per_s", ""), ("_ms", "ms"), ("_s", "s"), ("_days", "days"))


def label(path: str, key: str, title: str | None = None) -> str:
    """The label of the field at ``path`` (``intake[0].timeout_s``) whose key is ``key``."""
    general = re.sub(r"\[\d+\]", "", path)
    text = title or TITLES.get(general) or TITLES.get(key)
    unit = next((u for suffix, u in _UNITS if key.endswith(suffix)), "")
    if text is None:
        base = key
        for suffix, _ in _UNITS:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        text = base.replace("_", " ").strip().capitalize() or key
    return f"{text} ({unit})" if unit and "(" not in text else text


__all__ = ["TITLES", "label"]
