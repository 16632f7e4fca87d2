"""The WATS Standard Text Format → WSJF: the built-in ``wstf`` converter.

A file holds one or more UUTs, each a block of tab-separated lines::

    --Header-Start--
    SerialNumber<TAB>423664753            (one key and its value per line)
    Subunit<TAB>Main board<TAB>Partno 1<TAB>SN 6654433<TAB>Rev 1
    --Step-Data-Start--
    StepType<TAB>StepName<TAB>MeasureName<TAB>Value<TAB>LowLimit<TAB>HighLimit<TAB>CompOperator<TAB>Unit
        <TAB>StepStatus<TAB>StepExecutionTime<TAB>StepReportText<TAB>StepErrorCode<TAB>StepErrorMessage
        <TAB>CausedSequenceFailure        (the column header line; its order is used when present)
    SequenceCall ... / NumericLimitTest ... / EndSequenceCall
    --Step-Data-End--
    UUTStatus<TAB>Failed                  (the footer may repeat UUTStatus, ErrorCode, ErrorMessage, ExecutionTime)
    --UUT-End--

Header keys: ``SerialNumber`` → ``sn``, ``PartNumber`` → ``pn``, ``Revision`` → ``rev``,
``OperationTypeCode`` → ``processCode``, ``OperationTypeName`` → ``processName``, ``UUTStatus`` →
``result`` (the last one wins; without one it is computed from the steps), ``StartDateTime`` (local)
and/or ``UTCStartDateTime`` → ``start``/``startUTC`` (with both, their difference is the offset;
with one, the station's offset), ``StationName`` → ``machineName``, ``OperatorName``,
``BatchSerialNumber``, ``FixtureId``, ``TestSocketIndex``, ``ExecutionTime``, ``ErrorCode``,
``ErrorMessage``, ``Comment`` → ``uut``; ``SoftwareName``/``SoftwareVersion`` → the root step's
``seqCall``; ``Subunit`` rows (part type, part number, serial number, revision) → ``subUnits``;
``ConverterMode`` is read and dropped (statuses are always taken as written and computed where
missing). Every other key is a ``miscInfos`` entry. The process code comes from
``OperationTypeCode``, else ``arguments.process_code``, else ``arguments.process_codes`` (a map from
operation type name to code), else 10 with a conversion note.

Steps: ``SequenceCall`` opens a sequence (``EndSequenceCall`` closes it; its name, if given, must
match, and its status and times override the opening row's). ``NumericLimitTest``,
``PassFailTest``, ``StringValueTest`` (and their ``Multiple…`` forms) add one measurement each; a row
of the same type whose ``StepName`` is empty or equal to the current step's continues that step (a
multi-measurement step; ``MeasureName`` names each measurement). ``ActionStep`` is an action step.
``Chart`` (chart type, label, Y unit, Y label, X unit, X label) and ``Series`` (name, ``XYG``, Y data,
X data) attach a chart to the current step. Comparison operators: LOG, EQ, NE, GT, GE, LT, LE and
the two-limit forms (GELE … LTGT); single-limit ones use ``LowLimit``; an empty operator is LOG
without limits, GELE with both, GE/LE with one. A string step's expected value is in the
``LowLimit`` column. An empty status is computed (the WATS client's "active" mode) and a failed
measurement fails its step and every sequence above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path, PureWindowsPath
from typing import Any

from .api import ConversionError, ConvertContext, Converter
from .csvfile import _compare
from .wsjfbuild import notes_entry, parse_moment, start_fields

__all__ = ["WstfConverter", "convert_wstf_text", "COLUMNS"]

COLUMNS = ("StepType", "StepName", "MeasureName", "Value", "LowLimit", "HighLimit", "CompOperator", "Unit",
           "StepStatus", "StepExecutionTime", "StepReportText", "StepErrorCode", "StepErrorMessage",
           "CausedSequenceFailure")
_ALIASES = {"status": "StepStatus", "stringlimit": "LowLimit"}
_STATUS = {"passed": "P", "failed": "F", "skipped": "S", "done": "D", "error": "E", "terminated": "T",
           "p": "P", "f": "F", "s": "S", "d": "D", "e": "E", "t": "T"}
_RESULT = {"passed": "P", "failed": "F", "error": "E", "terminated": "T", "done": "D",
           "p": "P", "f": "F", "e": "E", "t": "T", "d": "D"}
_TWO = {"GELE", "GELT", "GTLE", "GTLT", "LEGE", "LEGT", "LTGE", "LTGT"}
_ONE = {"EQ", "NE", "GT", "GE", "LT", "LE"}
_STRING_OPS = {"LOG", "EQ", "NE", "CASESENSIT", "IGNORECASE"}
_KINDS = {"numericlimittest": "N", "multiplenumericlimittest": "N", "endmultiplenumericlimittest": "N",
          "passfailtest": "B", "multiplepassfailtest": "B", "endmultiplepassfailtest": "B",
          "stringvaluetest": "S", "multiplestringvaluetest": "S", "endmultiplestringvaluetest": "S"}
_MEAS_KEY = {"N": "numericMeas", "B": "booleanMeas", "S": "stringMeas"}
_TYPES = {"N": ("ET_NLT", "ET_MNLT"), "B": ("ET_PFT", "ET_MPFT"), "S": ("ET_SVT", "ET_MSVT")}
_HEADER_KEYS = {"serialnumber", "partnumber", "revision", "operationtypecode", "operationtypename", "uutstatus",
                "errorcode", "errormessage", "startdatetime", "utcstartdatetime", "executiontime", "stationname",
                "operatorname", "batchserialnumber", "fixtureid", "testsocketindex", "softwarename",
                "softwareversion", "comment", "convertermode", "subunit"}


class _Unit:
    """One ``--Header-Start--`` … ``--UUT-End--`` block being read."""

    def __init__(self, line: int, arguments: Mapping[str, Any], context: ConvertContext) -> None:
        self.first_line = line
        self.arguments = arguments
        self.context = context
        self.header: dict[str, tuple[str, int]] = {}
        self.misc: list[dict[str, Any]] = []
        self.sub_units: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.columns = {name.lower(): i for i, name in enumerate(COLUMNS)}
        self.next_id = 1
        self.root: dict[str, Any] = {"id": 1, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
                                     "status": "", "steps": []}
        self.stack: list[dict[str, Any]] = [self.root]
        self.current: dict[str, Any] | None = None
        self.current_kind = ""
        self.chart: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------ header and footer

    def header_line(self, cells: list[str], line: int) -> None:
        key = cells[0].strip()
        value = cells[1].strip() if len(cells) > 1 else ""
        if key.lower() == "subunit":
            part = [c.strip() for c in cells[1:5]] + [""] * 4
            self.sub_units.append({"partType": part[0] or None, "pn": part[1] or None, "sn": part[2] or None,
                                   "rev": part[3] or None})
        elif key.lower() in _HEADER_KEYS:
            self.header[key.lower()] = (value, line)
        else:
            self.misc.append({"description": key, "text": value or None, "numeric": None})

    def number(self, key: str, whole: bool = False) -> float | int | None:
        value, line = self.header.get(key, ("", 0))
        if not value:
            return None
        try:
            return int(value) if whole else float(value)
        except ValueError:
            raise ConversionError(f"line {line}: {key} {value!r} is not a {'whole ' if whole else ''}number") from None

    def text(self, key: str) -> str | None:
        return self.header.get(key, ("", 0))[0] or None

    def process_code(self) -> int:
        code = self.number("operationtypecode", whole=True)
        if code is not None:
            return int(code)
        name = self.text("operationtypename")
        by_name = self.arguments.get("process_codes") or {}
        for candidate in (self.arguments.get("process_code"),
                          by_name.get(name) if isinstance(by_name, Mapping) and name else None):
            if candidate not in (None, ""):
                try:
                    return int(str(candidate))
                except ValueError:
                    raise ConversionError(f"arguments: process code {candidate!r} is not a whole number") from None
        self.notes.append(f"no OperationTypeCode (operation type {name!r}) and no arguments.process_code or "
                          "process_codes entry: 10 is used")
        return 10

    def start(self) -> dict[str, str]:
        local_text, utc_text = self.text("startdatetime"), self.text("utcstartdatetime")
        local = parse_moment(local_text) if local_text else None
        utc = parse_moment(utc_text) if utc_text else None
        if local_text and local is None or utc_text and utc is None:
            bad = local_text if local_text and local is None else utc_text
            raise ConversionError(f"start time {bad!r} is not a date-time like 2014-07-04T12:09:04")
        if utc is not None and utc.tzinfo is None:
            utc = utc.replace(tzinfo=timezone.utc)
        if local is not None and local.tzinfo is None and utc is not None:
            offset = timedelta(minutes=round((local - utc.replace(tzinfo=None)).total_seconds() / 60))
            if abs(offset) <= timedelta(hours=14):
                local = local.replace(tzinfo=timezone(offset))
        if local is not None:
            return start_fields(local)
        if utc is not None:
            return start_fields(utc.astimezone())  # the station's offset
        if self.context.source_mtime is None:
            raise ConversionError(f"UUT at line {self.first_line}: no StartDateTime or UTCStartDateTime")
        self.notes.append("no start time in the file: the file's modification time is the start")
        return start_fields(datetime.fromtimestamp(self.context.source_mtime))

    # ------------------------------------------------------------------------------ steps

    def column_header(self, cells: list[str]) -> None:
        self.columns = {}
        for i, name in enumerate(cells):
            key = name.strip().lower()
            self.columns[_ALIASES.get(key, name.strip()).lower()] = i

    def cell(self, cells: list[str], name: str) -> str:
        i = self.columns.get(name.lower())
        return cells[i].strip() if i is not None and i < len(cells) else ""

    def step_line(self, cells: list[str], line: int) -> None:
        kind_name = cells[0].strip()
        key = kind_name.lower()
        if key == "stepType".lower():
            self.column_header(cells)
            return
        name = self.cell(cells, "StepName")
        if key == "sequencecall":
            step = self.new_step(cells, line, "SequenceCall", name)
            step["seqCall"] = {"path": None, "name": name or None, "version": None}
            step["steps"] = []
            self.stack.append(step)
            self.current, self.current_kind = None, ""
        elif key == "endsequencecall":
            if len(self.stack) == 1:
                raise ConversionError(f"line {line}: EndSequenceCall without an open SequenceCall")
            seq = self.stack[-1]
            if name and name != seq["name"]:
                raise ConversionError(f"line {line}: EndSequenceCall {name!r} does not close the open "
                                      f"SequenceCall {seq['name']!r}")
            self.general(seq, cells, line, override=True)
            self.stack.pop()
            self.current, self.current_kind = None, ""
        elif key in _KINDS:
            kind = _KINDS[key]
            if key.startswith("endmultiple"):
                if self.current is not None and self.current_kind == kind:
                    self.general(self.current, cells, line, override=True)
                self.current, self.current_kind = None, ""
                return
            continues = (self.current is not None and self.current_kind == kind
                         and (not name or name == self.current["name"]))
            if not continues:
                self.current = self.new_step(cells, line, "", name)
                self.current_kind = kind
            assert self.current is not None
            if key.startswith("multiple") and not self.cell(cells, "Value") and not self.cell(cells, "MeasureName"):
                return  # the opening line of a Multiple… block: the step, no measurement yet
            self.measure(self.current, kind, cells, line)
            if continues:
                self.general(self.current, cells, line, override=False)
        elif key == "actionstep":
            self.new_step(cells, line, "Action", name)
            self.current, self.current_kind = None, ""
        elif key == "chart":
            self.add_chart(cells, line)
        elif key == "series":
            self.add_series(cells, line)
        else:
            raise ConversionError(f"line {line}: {kind_name!r} is not a step type of the WATS text format "
                                  "(SequenceCall, EndSequenceCall, NumericLimitTest, PassFailTest, StringValueTest, "
                                  "ActionStep, Chart, Series)")

    def new_step(self, cells: list[str], line: int, step_type: str, name: str) -> dict[str, Any]:
        self.next_id += 1
        status = self.cell(cells, "StepStatus")
        step: dict[str, Any] = {"id": self.next_id, "group": "M", "stepType": step_type, "name": name or "(unnamed)",
                                "status": self.status(status, line) if status else ""}
        self.general(step, cells, line, override=True)
        self.stack[-1]["steps"].append(step)
        self.chart = None
        return step

    def status(self, text: str, line: int) -> str:
        code = _STATUS.get(text.strip().lower())
        if code is None:
            raise ConversionError(f"line {line}: status {text!r} is not one of Passed, Failed, Skipped, Done, "
                                  "Error, Terminated")
        return code

    def general(self, step: dict[str, Any], cells: list[str], line: int, *, override: bool) -> None:
        """Time, report text, error code and message, caused-sequence-failure: set when given."""
        status = self.cell(cells, "StepStatus")
        if override and status and step.get("status") is not None:
            step["status"] = self.status(status, line)
        time = self.cell(cells, "StepExecutionTime")
        if time:
            try:
                step["totTime"] = float(time)
            except ValueError:
                raise ConversionError(f"line {line}: StepExecutionTime {time!r} is not a number") from None
        text = self.cell(cells, "StepReportText")
        if text:
            step["reportText"] = text
        code = self.cell(cells, "StepErrorCode")
        if code:
            try:
                step["errorCode"] = int(code)
            except ValueError:
                raise ConversionError(f"line {line}: StepErrorCode {code!r} is not a whole number") from None
        message = self.cell(cells, "StepErrorMessage")
        if message:
            step["errorMessage"] = message
        caused = self.cell(cells, "CausedSequenceFailure")
        if caused:
            if caused.lower() not in ("true", "false", "1", "0"):
                raise ConversionError(f"line {line}: CausedSequenceFailure {caused!r} is not True or False")
            step["causedSeqFailure"] = caused.lower() in ("true", "1")

    def measure(self, step: dict[str, Any], kind: str, cells: list[str], line: int) -> None:
        value = self.cell(cells, "Value")
        given = self.cell(cells, "StepStatus")
        status = self.status(given, line) if given else None
        meas: dict[str, Any]
        if kind == "N":
            number = _float(value, line, "Value")
            if number is None:
                raise ConversionError(f"line {line}: a NumericLimitTest needs a number in Value")
            low = _float(self.cell(cells, "LowLimit"), line, "LowLimit")
            high = _float(self.cell(cells, "HighLimit"), line, "HighLimit")
            op = self.cell(cells, "CompOperator").upper()
            if not op:
                op = "GELE" if low is not None and high is not None else "GE" if low is not None else \
                    "LE" if high is not None else "LOG"
                if op == "LE":
                    low, high = high, None
            if op not in _TWO and op not in _ONE and op != "LOG":
                raise ConversionError(f"line {line}: CompOperator {op!r} is not a WATS comparison (LOG, EQ, NE, GT, "
                                      "GE, LT, LE, GELE, GELT, GTLE, GTLT, LEGE, LEGT, LTGE, LTGT)")
            if op in _TWO and (low is None or high is None) or op in _ONE and low is None:
                raise ConversionError(f"line {line}: CompOperator {op} needs "
                                      f"{'LowLimit and HighLimit' if op in _TWO else 'LowLimit'}")
            low, high = (None, None) if op == "LOG" else (low, None) if op in _ONE else (low, high)
            if status is None:
                ok = _compare(op, number, low, high)
                status = "P" if ok in (True, None) else "F"
            meas = {"compOp": op, "name": None, "status": status, "unit": self.cell(cells, "Unit") or None,
                    "value": number, "highLimit": high, "lowLimit": low}
        elif kind == "B":
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "passed", "failed"):
                raise ConversionError(f"line {line}: a PassFailTest needs TRUE or FALSE in Value, not {value!r}")
            if status is None:
                status = "P" if lowered in ("true", "1", "passed") else "F"
            meas = {"name": None, "status": status}
        else:
            limit = self.cell(cells, "LowLimit")
            op = self.cell(cells, "CompOperator").upper() or ("CASESENSIT" if limit else "LOG")
            if op not in _STRING_OPS:
                raise ConversionError(f"line {line}: CompOperator {op!r} is not a string comparison "
                                      "(LOG, EQ, NE, CASESENSIT, IGNORECASE)")
            if status is None:
                same = value.casefold() == limit.casefold() if op == "IGNORECASE" else value == limit
                status = "P" if op == "LOG" or same == (op != "NE") else "F"
            meas = {"compOp": op, "name": None, "status": status, "value": value, "limit": limit or None}
        if status not in ("P", "F", "S"):
            status = {"E": "F", "T": "F", "D": "P"}[status]
            meas["status"] = status
        name = self.cell(cells, "MeasureName")
        if name:
            meas["name"] = name
        step.setdefault(_MEAS_KEY[kind], []).append(meas)

    def add_chart(self, cells: list[str], line: int) -> None:
        target = self.current or (self.stack[-1]["steps"][-1] if self.stack[-1]["steps"] else None)
        if target is None:
            raise ConversionError(f"line {line}: a Chart line needs a step before it")
        if "chart" in target:
            raise ConversionError(f"line {line}: the step {target['name']!r} already has a chart (one per step)")
        raw = [c.strip() for c in cells[1:7]] + [""] * 6
        self.chart = {"chartType": raw[0] or "Line", "label": raw[1] or None, "xLabel": raw[5] or None,
                      "xUnit": raw[4] or None, "yLabel": raw[3] or None, "yUnit": raw[2] or None, "series": []}
        target["chart"] = self.chart

    def add_series(self, cells: list[str], line: int) -> None:
        if self.chart is None:
            raise ConversionError(f"line {line}: a Series line needs a Chart line before it")
        raw = [c.strip() for c in cells[1:5]] + [""] * 4
        if (raw[1] or "XYG").upper() != "XYG":
            raise ConversionError(f"line {line}: Series data type {raw[1]!r} is not XYG")
        ydata = _series(raw[2], line, "Y data")
        xdata = _series(raw[3], line, "X data") if raw[3] else None
        if ydata is None:
            raise ConversionError(f"line {line}: a Series needs Y data")
        if xdata is not None and xdata.count(";") != ydata.count(";"):
            raise ConversionError(f"line {line}: X and Y data of the series differ in length")
        self.chart["series"].append({"dataType": "XYG", "name": raw[0] or None, "xdata": xdata, "ydata": ydata})

    # ------------------------------------------------------------------------------ the report

    def report(self, line: int) -> dict[str, Any]:
        if len(self.stack) > 1:
            raise ConversionError(f"line {line}: the UUT ends with SequenceCall {self.stack[-1]['name']!r} still open "
                                  "(an EndSequenceCall is missing)")
        software = self.text("softwarename")
        self.root["name"] = PureWindowsPath(software).name if software else "MainSequence"
        self.root["seqCall"] = {"path": software, "name": PureWindowsPath(software).name if software else None,
                                "version": self.text("softwareversion")}
        _settle(self.root)
        computed = self.root["status"]
        result_text = self.text("uutstatus")
        if result_text:
            result = _RESULT.get(result_text.lower())
            if result is None:
                raise ConversionError(f"line {self.header['uutstatus'][1]}: UUTStatus {result_text!r} is not "
                                      "Passed, Failed, Error or Terminated")
        else:
            result = "F" if computed == "F" else "P"
        missing = [label for k, label in (("serialnumber", "SerialNumber"), ("partnumber", "PartNumber"))
                   if not self.text(k)]
        if missing:
            raise ConversionError(f"UUT at line {self.first_line}: no {' or '.join(missing)} in the header")
        uut = {"user": self.text("operatorname"), "batchSN": self.text("batchserialnumber"),
               "fixtureId": self.text("fixtureid"), "comment": self.text("comment"),
               "execTime": self.number("executiontime"),
               "testSocketIndex": self.number("testsocketindex", whole=True),
               "errorCode": self.number("errorcode", whole=True), "errorMessage": self.text("errormessage")}
        report: dict[str, Any] = {
            "type": "T", "pn": self.text("partnumber"), "sn": self.text("serialnumber"),
            "rev": self.text("revision") or str(self.arguments.get("revision") or "") or self.unknown("Revision"),
            "processCode": self.process_code(), "processName": self.text("operationtypename"), "result": result,
        }
        station = self.text("stationname")
        if station:
            report["machineName"] = station
        report.update(self.start())
        report["root"] = self.root
        report["uut"] = {k: v for k, v in uut.items() if v is not None}
        report["miscInfos"] = self.misc
        report["subUnits"] = self.sub_units
        report["additionalData"] = [notes_entry(self.notes)] if self.notes else []
        return report

    def unknown(self, key: str) -> str:
        self.notes.append(f"no {key} in the header and no arguments.revision: written as 'unknown'")
        return "unknown"


def _float(text: str, line: int, column: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConversionError(f"line {line}: {column} {text!r} is not a number") from None


def _series(text: str, line: int, what: str) -> str | None:
    if not text:
        return None
    text = text.replace(",", ".")
    for part in text.split(";"):
        _float(part.strip(), line, what)
    return text


def _settle(step: dict[str, Any]) -> str:
    """Fill statuses the file left empty, and let failures ripple up (the WATS client's active mode)."""
    children = [_settle(s) for s in step.get("steps") or []]
    measures = [m["status"] for key in ("numericMeas", "booleanMeas", "stringMeas") for m in step.get(key) or []]
    failed = "F" in children or "F" in measures
    if not step["status"]:
        step["status"] = "F" if failed else ("P" if measures or children or step["stepType"] == "SequenceCall"
                                             else "D")
    elif failed and step["status"] == "P":
        step["status"] = "F"
    for key, kind in (("numericMeas", "N"), ("booleanMeas", "B"), ("stringMeas", "S")):
        items = step.get(key)
        if items and not step["stepType"]:
            step["stepType"] = _TYPES[kind][1 if len(items) > 1 or items[0]["name"] else 0]
    if not step["stepType"]:
        step["stepType"] = "Action"
    return str(step["status"])


def convert_wstf_text(text: str, arguments: Mapping[str, Any], context: ConvertContext) -> list[dict[str, Any]]:
    """Every UUT of a WATS text-format document, as WSJF dicts (ids are given by ``finish_reports``)."""
    reports: list[dict[str, Any]] = []
    unit: _Unit | None = None
    state = "outside"
    line = 0
    tail = text.rstrip().rsplit("\n", 1)[-1].split("\t", 1)[0].replace(" ", "").lower()
    if "--header-start--" in text.lower() and tail != "--uut-end--":
        raise ConversionError("the file does not end with --UUT-End--: truncated, or still being written")
    for line, raw in enumerate(text.splitlines(), start=1):
        cells = raw.rstrip("\r\n").split("\t")
        while cells and not cells[-1].strip() and len(cells) > 1:
            cells.pop()
        first = cells[0].strip()
        if not first and len(cells) <= 1:
            continue
        marker = first.replace(" ", "").lower()
        if marker == "--header-start--":
            if unit is not None:
                raise ConversionError(f"line {line}: --Header-Start-- before the previous UUT's --UUT-End--")
            unit, state = _Unit(line, arguments, context), "header"
        elif unit is None:
            raise ConversionError(f"line {line}: {first[:40]!r} before --Header-Start-- — not a WATS text-format file")
        elif marker == "--step-data-start--":
            state = "steps"
        elif marker == "--step-data-end--":
            state = "footer"
        elif marker == "--uut-end--":
            reports.append(unit.report(line))
            unit, state = None, "outside"
        elif state == "steps":
            unit.step_line(cells, line)
        else:
            unit.header_line(cells, line)
    if unit is not None:
        raise ConversionError(f"the file ends inside the UUT that starts at line {unit.first_line} (no --UUT-End--): "
                              "truncated, or still being written")
    if not reports:
        raise ConversionError("no --Header-Start-- in the file: not a WATS text-format file")
    return reports


class WstfConverter(Converter):
    """WATS Standard Text Format files (``*.txt``), one report per UUT block."""

    name = "wstf"
    patterns = ("*.txt",)

    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any]]:
        raw = source.read_bytes()
        encoding = str(context.arguments.get("encoding") or "utf-8-sig")
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
            raise ConversionError("not UTF-8 text (it looks like UTF-16 or binary data) — save the file as UTF-8, "
                                  "or set arguments.encoding")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ConversionError(f"not valid {encoding} text at byte {exc.start} — set arguments.encoding "
                                  "(e.g. cp1252) on this intake") from None
        except LookupError:
            raise ConversionError(f"arguments.encoding {encoding!r} is not an encoding Python knows") from None
        return convert_wstf_text(text, context.arguments, context)
