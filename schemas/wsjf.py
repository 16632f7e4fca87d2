"""WSJF (WATS Standard JSON Format) reports: what the server requires, and a lossless full model.

Two models, because they serve two different paths:

- ``ReportHeader`` holds only what the WATS server requires and is validated straight from the
  bytes with every other field ignored. It is the hot path (spool accept, emulator): parsing
  the 50 KB sample this way is several times cheaper than ``json.loads``. The caller keeps the
  bytes it received and stores or sends them as they are — which is also how every field this
  project does not know survives.
- ``Report`` keeps every field (unknown ones included, ``extra="allow"``) and validates the step
  tree. It is for code that builds or changes a report (converters). ``dump_report`` writes only
  the fields that were present, in the order WATS itself writes them, so a report read and
  written back is equal to its input.

Field names are the wire names (``processCode``, ``machineName``): the models mirror the format,
and no alias layer can drift from it.

Rules, as the server applies them (see the samples in ``fixtures/reports``):

- ``id``: a GUID, ``8-4-4-4-12`` hex digits, either case, optionally in braces (the server parses
  it as a .NET Guid, which accepts both). It is kept as written; ``normalise_id`` gives the
  canonical lower-case form to use as a key.
- ``type``: ``T`` (test, UUT) or ``R`` (repair, UUR). A ``T`` report needs its step tree in
  ``root``; an ``R`` report usually has none (its data is in ``uur``).
- ``pn``, ``sn``, ``rev``, ``machineName``, ``location``, ``purpose``: non-empty, at most 100
  characters.
- ``processCode``: a JSON integer that fits 32 bits (the server's type; 99999999999999999999999 is refused).
- every number in the report is finite: ``NaN``, ``Infinity``, ``1e999`` and a float of 400 digits
  (infinite as a double) are refused (the converters write a missing measurement as null).
- ``result``: ``P`` passed, ``F`` failed, ``E`` error, ``T`` terminated, ``D`` done.
- ``start``: ISO 8601 local time with its UTC offset, e.g. ``2026-01-30T22:01:41.4707353+01:00``
  (WATS writes up to 7 fractional digits; kept as written).
- each step: ``stepType`` and ``name`` non-empty, ``status`` one of ``P F S T D E``, nested
  ``steps`` a list of steps (or null).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict  # pydantic needs these on Python < 3.12

__all__ = [
    "ReportHeader",
    "Report",
    "Step",
    "ReportValidationError",
    "parse_header",
    "refuse_non_finite",
    "load_report",
    "dump_report",
    "normalise_id",
    "REQUIRED_FIELDS",
    "REPORT_RESULTS",
    "STEP_STATUSES",
]

# ---------------------------------------------------------------------------------------- errors


class ReportValidationError(ValueError):
    """A report the WATS server would refuse. ``problems`` has one line per problem:
    the field's path, the value found and what is allowed."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])

    def __str__(self) -> str:
        return self.message


# ----------------------------------------------------------------------------------- field types

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_GUID_RE = re.compile(rf"^(?:{_GUID}|\{{{_GUID}\}})$")
_START_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$")
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")

REPORT_RESULTS: tuple[str, ...] = ("P", "F", "E", "T", "D")
STEP_STATUSES: tuple[str, ...] = ("P", "F", "S", "T", "D", "E")


def _check_start(value: str) -> str:
    """ISO 8601 with an offset. Python's parser takes at most 6 fractional digits; WATS writes 7."""
    if not _START_RE.match(value):
        raise PydanticCustomError("start_format", "not an ISO 8601 date-time with a UTC offset")
    date_part, _, rest = value.partition("T")
    trimmed = _FRACTION_RE.sub(r"\1", rest)
    try:
        datetime.fromisoformat(f"{date_part}T{trimmed}".replace("Z", "+00:00"))
    except ValueError as exc:
        raise PydanticCustomError("start_format", "not a real date-time") from exc
    return value


Guid = Annotated[str, Field(pattern=_GUID_RE.pattern)]
HeaderText = Annotated[str, Field(min_length=1, max_length=100)]
StartTime = Annotated[str, AfterValidator(_check_start)]
ReportType = Literal["T", "R"]
ReportResult = Literal["P", "F", "E", "T", "D"]
StepStatus = Literal["P", "F", "S", "T", "D", "E"]
NonEmpty = Annotated[str, Field(min_length=1)]
ProcessCode = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]

REQUIRED_FIELDS: tuple[str, ...] = (
    "id", "type", "pn", "sn", "rev", "processCode", "result", "start", "machineName", "location",
    "purpose",
)

# What each field allows, as a person reads it in a problem line (keyed by the field's name).
_ALLOWED: dict[str, str] = {
    "id": "a GUID like 0f8fad5b-d9cb-469f-a165-70867728950e (the report's identity)",
    "type": "'T' (test report, UUT) or 'R' (repair report, UUR)",
    "pn": "text of 1 to 100 characters (the part number)",
    "sn": "text of 1 to 100 characters (the serial number)",
    "rev": "text of 1 to 100 characters (the part revision)",
    "processCode": "a whole number from -2147483648 to 2147483647, e.g. 10 (the process code)",
    "result": "one of " + ", ".join(repr(r) for r in REPORT_RESULTS)
              + " (passed, failed, error, terminated, done)",
    "start": "an ISO 8601 local time with its UTC offset, e.g. 2026-01-30T22:01:41.47+01:00",
    "machineName": "text of 1 to 100 characters (the station name)",
    "location": "text of 1 to 100 characters (the station location)",
    "purpose": "text of 1 to 100 characters (the test purpose)",
    "root": "an object: the root SequenceCall step with its nested 'steps'",
    "stepType": "non-empty text, e.g. 'ET_NLT' or 'SequenceCall' (the step type)",
    "name": "non-empty text (the step name)",
    "status": "one of " + ", ".join(repr(s) for s in STEP_STATUSES)
              + " (passed, failed, skipped, terminated, done, error)",
    "steps": "a list of step objects, or null",
}


def _require_root(model: Any) -> Any:
    if model.type == "T" and model.root is None:
        raise PydanticCustomError("root_required", "a test report (type 'T') needs its step tree in 'root'")
    return model


# --------------------------------------------------------------------------------- header model


class HeaderStep(TypedDict):
    """One step of the tree, reduced to what the server checks (a dict: cheaper than a model)."""

    stepType: NonEmpty
    name: NonEmpty
    status: StepStatus
    steps: NotRequired[list[HeaderStep] | None]


class ReportHeader(BaseModel):
    """What the WATS server requires of a report, and nothing else (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Guid
    type: ReportType
    pn: HeaderText
    sn: HeaderText
    rev: HeaderText
    processCode: ProcessCode
    result: ReportResult
    start: StartTime
    machineName: HeaderText
    location: HeaderText
    purpose: HeaderText
    root: HeaderStep | None = None

    require_step_tree = model_validator(mode="after")(_require_root)

    @property
    def key(self) -> str:
        """The canonical id (lower case, no braces): use it for file names and lookups."""
        return normalise_id(self.id)


# ----------------------------------------------------------------------------------- full model
#
# Known fields are declared in the order WATS writes them, so a dump keeps the samples' key order;
# fields nobody declared follow in the order they came. Optional known fields default to None
# and are written back only when they were present in the input (``exclude_unset``).


class Step(BaseModel):
    """A step of the tree; every field is kept, the ones the server checks are validated."""

    model_config = ConfigDict(extra="allow")

    id: Any = None
    group: Any = None
    stepType: NonEmpty
    loop: Any = None
    name: NonEmpty
    start: Any = None
    status: StepStatus
    errorCode: Any = None
    errorCodeFormat: Any = None
    errorMessage: Any = None
    tsGuid: Any = None
    totTime: Any = None
    totTimeFormat: Any = None
    causedSeqFailure: Any = None
    causedUUTFailure: Any = None
    reportText: Any = None
    numericMeas: Any = None
    booleanMeas: Any = None
    stringMeas: Any = None
    messagePopup: Any = None
    callExe: Any = None
    chart: Any = None
    attachment: Any = None
    additionalResults: Any = None
    steps: list[Step] | None = None
    seqCall: Any = None


class Report(BaseModel):
    """A whole WSJF report: validated like ``ReportHeader`` plus the full step tree, lossless."""

    model_config = ConfigDict(extra="allow")

    type: ReportType
    id: Guid
    pn: HeaderText
    sn: HeaderText
    rev: HeaderText
    productName: Any = None
    processCode: ProcessCode
    processCodeFormat: Any = None
    processName: Any = None
    result: ReportResult
    machineName: HeaderText
    location: HeaderText
    purpose: HeaderText
    origin: Any = None
    start: StartTime
    startUTC: Any = None
    root: Step | None = None
    uut: Any = None
    uur: Any = None
    miscInfos: Any = None
    subUnits: Any = None
    assets: Any = None
    assetStats: Any = None
    binaryData: Any = None
    additionalData: Any = None

    require_step_tree = model_validator(mode="after")(_require_root)

    @property
    def key(self) -> str:
        """The canonical id (lower case, no braces)."""
        return normalise_id(self.id)


# --------------------------------------------------------------------------------- entry points


def parse_header(raw: bytes | str) -> ReportHeader:
    """Validate what the server requires, straight from the bytes. Raises ReportValidationError."""
    try:
        header = ReportHeader.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc) from None
    refuse_non_finite(raw)
    return header


def load_report(raw: bytes | str) -> Report:
    """Read a whole report, keeping every field. Raises ReportValidationError."""
    try:
        report = Report.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc) from None
    refuse_non_finite(raw)
    return report


# The cheap test that sends a report to the slow, exact one (``json.loads`` with hooks), measured on
# 200 bench reports of 50 KB. A JSON number is infinite as a double only if it has >= 309 digits
# before the point plus exponent: so either an exponent of three digits or more (``1e999``,
# ``1E+400``, ``1e0400``) or at least 200 digits in a row (``1`` and 400 zeros ``.5``, or
# ``1`` and 250 zeros ``e99``). One C pass (``bytes.translate``) folds every digit to ``0``, ``E``
# to ``e``, ``I`` to ``N`` and drops ``+``, after which each of these is a literal-led search (a
# pattern led by a character class was 15x slower; ``re``'s search for a literal prefix is twice
# as fast as ``in`` for three letters). A constant or a big exponent counts only where JSON can
# have one: before ``,`` ``]`` ``}`` or the end (white space between), and an exponent only after
# a digit. No GUID (``...-8e60-98e0dd9be928``) and few words are (step names like "Ke2701 - Läs"
# and notes like "value 'NaN'" in the real ATML samples are not): the old test (any ``e`` + three
# digits) sent 23 % of the bench reports to the slow path for nothing (0.4 ms each); this one sends
# none. JSON allows nothing else after a value, and only JSON the model took is checked here
# (``parse_header`` and ``load_report`` run the model first). The whole test: 0.07 ms at 50 KB
# (was 0.12, plus the slow path). A whole number of any length stays an int for Python (as before):
# not judged.
_FOLD = bytes.maketrans(b"0123456789EI", b"0000000000eN")
_CONSTANT = re.compile(rb"N(?:aN|nfinity)\s*[,\]}]")  # NaN, Infinity, -Infinity (I folded to N)
_BIG_EXPONENT = re.compile(rb"0e000+\s*[,\]}]")
_LONG_DIGITS = b"0" * 200
_WHITE = b" \t\n\r"


def _may_be_non_finite(data: bytes) -> bool:
    """True if ``data`` may hold NaN, Infinity or a number beyond a double; never False when it
    does (a report that holds such a spelling inside a string is a false positive, judged slowly)."""
    folded = data.translate(_FOLD, b"+")
    if _CONSTANT.search(folded) is not None or _LONG_DIGITS in folded or _BIG_EXPONENT.search(folded) is not None:
        return True
    end = folded.rstrip(_WHITE)  # a document that is, or ends in, a bare value
    if end.endswith((b"NaN", b"Nnfinity")):
        return True
    digits = len(end) - len(end.rstrip(b"0"))
    return digits >= 3 and end[len(end) - digits - 2:len(end) - digits] == b"0e"


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _constant(text: str) -> float:
    raise _NotFinite(text)


def refuse_non_finite(raw: bytes | str) -> None:
    """Refuse ``NaN``, ``Infinity`` and numbers too large for a double (``1e999``) anywhere in the
    report: Python's and pydantic's JSON readers take them, the server cannot store them. Only a
    report that contains such a spelling somewhere (a step named "NaN check" does) is read whole.
    Give it JSON the model has taken: a spelling followed by what cannot follow a JSON value
    (``[1e999x]``) is not looked at (``parse_header`` and ``load_report`` run the model first)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if not _may_be_non_finite(data):
        return
    try:
        json.loads(data, parse_constant=_constant, parse_float=_finite)
    except _NotFinite as exc:
        found = str(exc)
        if len(found) > 40:  # 400 digits say less than their count
            found = f"{found[:12]}...{found[-12:]} ({len(found)} characters)"
        raise ReportValidationError(
            f"invalid WSJF report: a number is {found}",
            [f"{found}: not a finite number — WATS cannot store NaN, Infinity or numbers beyond ±1.8e308; "
             "write null for a missing value"]) from None
    except ValueError:
        return  # not JSON at all: the model has said what it had to say


def dump_report(report: Report) -> bytes:
    """The report as WSJF bytes: only the fields that were present, nulls and unknown fields kept."""
    return report.model_dump_json(exclude_unset=True).encode("utf-8")


def normalise_id(value: str) -> str:
    """The canonical form of a report id: lower case, without braces. Refuses anything not a GUID."""
    if not isinstance(value, str) or not _GUID_RE.match(value):
        shown = _show(value)
        raise ReportValidationError(f"not a report id: {shown} is not a GUID",
                                    [f"id: {shown} — must be {_ALLOWED['id']}"])
    return value.strip("{}").lower()


# ------------------------------------------------------------------------------ problem lines

_MAX_PROBLEMS = 20


def _refusal(exc: ValidationError) -> ReportValidationError:
    problems = [_problem(err) for err in exc.errors(include_url=False)]
    if len(problems) > _MAX_PROBLEMS:
        problems = problems[:_MAX_PROBLEMS] + [f"... and {len(problems) - _MAX_PROBLEMS} more"]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return ReportValidationError(f"invalid WSJF report: {problems[0]}{more}", problems)


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(err: Any) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "json_invalid":
        return f"not valid JSON: {err['ctx'].get('error', err['msg']) if err.get('ctx') else err['msg']}"
    if kind == "root_required":
        return f"root: missing — {err['msg']}"
    if not loc:
        if kind in ("model_type", "model_attributes_type"):
            return f"the report must be a JSON object, found {_show(err['input'])}"
        return str(err["msg"])
    path = _path(loc)
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    allowed = _ALLOWED.get(field)
    if kind == "missing":
        return f"{path}: missing — required: {allowed}" if allowed else f"{path}: missing — required"
    if kind in ("model_type", "model_attributes_type", "dict_type") and isinstance(loc[-1], int):
        allowed = "a step object with 'stepType', 'name' and 'status'"
    found = _show(err["input"])
    if allowed:
        return f"{path}: {found} — must be {allowed}"
    return f"{path}: {found} — {err['msg']}"

