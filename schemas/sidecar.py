"""A spool sidecar (``spool/meta/<key>.json``): what the spool remembers of one report besides its bytes.

Only the shape is here (no I/O): the spool reads the file and sets aside one that does not fit, so a
sidecar with the wrong types (``"attempts": "lots"``, ``"history": "x"``) can never stop start-up or a
claim. Unknown fields are kept (a newer version may add some); the known ones are strictly typed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["MAX_SIDECAR_BYTES", "HistoryEntry", "Sidecar", "SidecarError", "parse_sidecar"]

#: Largest sidecar read (50 history entries with long errors fit many times over); a larger one is
#: damaged or hostile and is set aside unread.
MAX_SIDECAR_BYTES = 1024 * 1024


class HistoryEntry(BaseModel):
    """One move of a report, as ``queue show`` prints it."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    at: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    trigger: str | None = None
    note: str | None = None


class Sidecar(BaseModel):
    """Attempts, next attempt, last error, source and history of one report."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    id: str | None = None
    attempts: Annotated[int, Field(ge=0, le=10**9)] = 0
    last_error: str | None = None
    next_attempt: str | None = None
    next_attempt_epoch: float | None = None
    source: str | None = None
    original_name: str | None = None
    history: list[HistoryEntry] = Field(default_factory=list)


class SidecarError(ValueError):
    """The bytes are no sidecar; the message says what was wrong, on one line."""


def parse_sidecar(data: bytes) -> dict[str, Any]:
    """The sidecar in ``data`` as the plain dict the spool works with; SidecarError if it does not
    fit (not JSON, not UTF-8, not an object, a field of the wrong type).

    Parsed by the standard library first: file names that are not UTF-8 reach sidecars as lone
    surrogates (``"caf\\udce9.json"``), which Python's JSON keeps and a strict parser refuses."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SidecarError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SidecarError(f"not a JSON object but {type(obj).__name__}")
    try:
        model = Sidecar.model_validate(obj)
    except ValidationError as exc:
        raise SidecarError(describe(exc)) from None
    return model.model_dump(by_alias=True, exclude_unset=True)


def describe(exc: ValidationError) -> str:
    """What was wrong, on one line (for the log, status and the report's history)."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "the file"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
