"""Small pieces every equipment-format converter needs when it builds a WSJF report.

Test equipment writes times without a UTC offset (TestStand's ATML, the WATS text format), but
WSJF wants local time *with* its offset plus the same moment in UTC; and a converter must never drop
part of a file silently, so what has no WSJF place goes into ``additionalData`` (which WATS keeps
and shows with the report) as named values or as a conversion note a person can read.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

__all__ = ["NOTES_NAME", "parse_moment", "start_fields", "notes_entry", "prop", "nearest_status"]

#: The name of the ``additionalData`` entry that carries a converter's notes about the file.
NOTES_NAME = "stationflow conversion notes"

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_moment(text: str) -> datetime | None:
    """An ISO 8601 date-time, with or without an offset or ``Z``; more than 6 fraction digits are cut."""
    text = text.strip()
    if not text:
        return None
    date_part, sep, rest = text.replace(" ", "T", 1).partition("T")
    rest = _FRACTION.sub(r"\1", rest)
    try:
        return datetime.fromisoformat(f"{date_part}{sep}{rest}".replace("Z", "+00:00"))
    except ValueError:
        return None


def start_fields(moment: datetime) -> dict[str, str]:
    """``start`` (local time with its offset) and ``startUTC`` for a moment.

    A moment without an offset is taken as the station's local time, as the equipment wrote it.
    """
    local = moment.astimezone() if moment.tzinfo is None else moment
    utc = local.astimezone(timezone.utc)
    return {"start": local.isoformat(), "startUTC": utc.isoformat().replace("+00:00", "Z")}


def prop(name: str, value: Any) -> dict[str, Any]:
    """One ``additionalData`` property: text, number, boolean, or an object of nested properties."""
    if isinstance(value, bool):
        return {"name": name, "type": "Boolean", "value": "true" if value else "false"}
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return {"name": name, "type": "String", "value": str(value)}
        return {"name": name, "type": "Number", "value": repr(value)}
    if isinstance(value, dict):
        return {"name": name, "type": "Obj", "props": [prop(k, v) for k, v in value.items()]}
    if isinstance(value, list):
        return {"name": name, "type": "Obj", "props": [prop(f"[{i}]", v) for i, v in enumerate(value)]}
    return {"name": name, "type": "String", "value": "" if value is None else str(value)}


def notes_entry(notes: list[str]) -> dict[str, Any]:
    """The ``additionalData`` entry listing what a converter could not map one to one."""
    return {"name": NOTES_NAME, "props": [prop(f"note {i + 1}", note) for i, note in enumerate(notes)]}


_STEP = {"passed": "P", "failed": "F", "error": "E", "errored": "E", "terminated": "T", "aborted": "T",
         "skipped": "S", "notstarted": "S", "done": "D", "informational": "D", "running": "E",
         "p": "P", "f": "F", "e": "E", "t": "T", "s": "S", "d": "D"}


def nearest_status(value: str | None, qualifier: str | None = None) -> tuple[str | None, str | None]:
    """The WSJF step status (P F S T D E) of an outcome name, and a note when it was only the nearest.

    ``UserDefined`` and ``Aborted`` carry the real outcome in their qualifier when TestStand knows it
    (``Aborted`` + ``Skipped`` is a step skipped because the run was aborted). Returns ``(None, None)``
    for an empty value.
    """
    raw = (value or "").strip()
    if not raw:
        return None, None
    key = raw.lower().replace(" ", "")
    qual = (qualifier or "").strip()
    qkey = qual.lower().replace(" ", "")
    if key in ("userdefined", "aborted") and qkey in _STEP:
        return _STEP[qkey], None
    if key in _STEP:
        note = f"outcome {raw!r} with qualifier {qual!r} kept as {_STEP[key]}" if qual and key == "aborted" else None
        return _STEP[key], note
    if key == "userdefined":
        return "D", f"user-defined outcome {qual or '(no qualifier)'!r} kept as D (done)"
    return "D", f"unknown outcome {raw!r} kept as D (done)"
