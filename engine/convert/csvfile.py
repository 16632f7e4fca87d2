"""The built-in ``csv`` converter: one unit under test per file, one measurement per row.

The format, as a test engineer writes it::

    # lines starting with '#' before the header are comments
    sn,pn,rev,process_code,start,operator,step,value,unit,low,high,status
    SN0001,PCBA-1042,C,10,2026-11-02T08:00:00+01:00,anna,Rail 3V3,3.31,V,3.2,3.4,
    SN0001,PCBA-1042,C,10,2026-11-02T08:00:00+01:00,anna,Continuity,,,,,P
    SN0001,PCBA-1042,C,10,2026-11-02T08:00:00+01:00,anna,Firmware,FW-1.2.3,,FW-1.2.3,,

* The first line that is not blank or a ``#`` comment is the header. Column names are matched
  without regard to case or surrounding spaces; unknown columns are ignored. The delimiter is
  ``,``, ``;`` or a tab, whichever the header uses most (or ``arguments.delimiter``).
* **Unit columns** (the same on every row; the first non-empty value counts, a different value on
  a later row is an error — one UUT per file): ``sn`` (required), ``pn``, ``rev``,
  ``process_code`` (whole number), ``process_name``, ``result`` (P/F/E/T, or Passed/Failed…;
  default: F if any row failed, else P), ``start`` (ISO 8601, e.g. ``2026-11-02T08:00:00+01:00``
  or ``2026-11-02 08:00:00``; without an offset the station's local offset is used; without a
  start column, the file's modification time), ``operator``, ``fixture``.
  ``pn``, ``rev`` and ``process_code`` are required by WATS: give them as columns or as
  ``arguments.defaults``.
* **Measurement columns** (one step per row): ``step`` (required: the step name), ``value``,
  ``unit``, ``low``, ``high``, ``comp`` (a WATS comparison: GELE, GE, LE, EQ, NE, GT, LT, GTLT,
  LOG, … or, for text, CASESENSIT / IGNORECASE), ``status`` (P/F/S, pass/fail, ok/nok, 1/0,
  true/false), ``time`` (seconds).
  A number in ``value`` makes a numeric step (ET_NLT); its comparison defaults to GELE with both
  limits, GE with ``low`` only, LE with ``high`` only, LOG with none. Other text makes a string
  step (ET_SVT) compared with ``low`` as the expected text (CASESENSIT) when given. An empty
  ``value`` makes a pass/fail step (ET_PFT), which needs ``status``. An empty ``status`` is
  computed from the value and the limits.
* ``arguments`` of the intake: ``columns`` maps these names to the file's own header names
  (``columns: {sn: Serial, step: "Test name"}``); ``defaults`` gives unit fields the file does
  not carry (``defaults: {pn: PCBA-1042, rev: C, process_code: 10}``); ``delimiter``;
  ``decimal: ","`` reads ``3,31`` as 3.31 (use it with ``;`` or tab as delimiter);
  ``encoding`` (default utf-8; a UTF-8 BOM is fine); ``sequence`` names the root step.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .api import ConversionError, ConvertContext, Converter

__all__ = ["CsvConverter", "convert_csv_text", "UNIT_COLUMNS", "ROW_COLUMNS"]

UNIT_COLUMNS = ("sn", "pn", "rev", "process_code", "process_name", "result", "start", "operator", "fixture")
ROW_COLUMNS = ("step", "value", "unit", "low", "high", "comp", "status", "time")

_STATUS = {"p": "P", "pass": "P", "passed": "P", "ok": "P", "1": "P", "true": "P",
           "f": "F", "fail": "F", "failed": "F", "nok": "F", "0": "F", "false": "F",
           "s": "S", "skip": "S", "skipped": "S", "e": "E", "error": "E", "d": "D", "done": "D",
           "t": "T", "terminated": "T"}
_RESULT = {"p": "P", "pass": "P", "passed": "P", "f": "F", "fail": "F", "failed": "F",
           "e": "E", "error": "E", "t": "T", "terminated": "T", "d": "D", "done": "D"}
_TWO_LIMITS = {"GELE", "GELT", "GTLE", "GTLT", "LEGE", "LEGT", "LTGE", "LTGT"}
_ONE_LIMIT = {"EQ", "NE", "GT", "GE", "LT", "LE"}
_TEXT_OPS = {"CASESENSIT", "IGNORECASE", "LOG"}


def _compare(op: str, v: float, low: float | None, high: float | None) -> bool | None:
    """WATS semantics: one-limit comparisons use the low limit; LTGT & co. pass outside the band."""
    if op == "LOG":
        return True
    if op in _ONE_LIMIT:
        if low is None:
            return None
        return {"EQ": v == low, "NE": v != low, "GT": v > low, "GE": v >= low, "LT": v < low, "LE": v <= low}[op]
    if op in _TWO_LIMITS:
        if low is None or high is None:
            return None
        lo_ok = {"GE": v >= low, "GT": v > low, "LE": v <= low, "LT": v < low}[op[:2]]
        hi_ok = {"LE": v <= high, "LT": v < high, "GE": v >= high, "GT": v > high}[op[2:]]
        return (lo_ok and hi_ok) if op[:1] == "G" else (lo_ok or hi_ok)
    return None


def _pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Rows:
    """The file's rows, with column names resolved through ``arguments.columns``."""

    def __init__(self, text: str, arguments: Mapping[str, Any]) -> None:
        lines = text.splitlines()
        start = 0
        while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
            start += 1
        if start >= len(lines):
            raise ConversionError("no header line: the file holds only blank or comment lines")
        delimiter = str(arguments.get("delimiter") or _pick_delimiter(lines[start]))
        if len(delimiter) != 1:
            raise ConversionError(f"arguments.delimiter must be one character, got {delimiter!r}")
        reader = csv.reader(io.StringIO("\n".join(lines[start:])), delimiter=delimiter)
        try:
            header = next(reader)
        except csv.Error as exc:
            raise ConversionError(f"line {start + 1}: not readable as CSV: {exc}") from None
        self.first_line = start + 1
        found = {name.strip().lower(): i for i, name in enumerate(header)}
        mapping = arguments.get("columns") or {}
        if not isinstance(mapping, Mapping):
            raise ConversionError("arguments.columns must map column names, e.g. {sn: Serial}")
        self.index: dict[str, int] = {}
        for name in (*UNIT_COLUMNS, *ROW_COLUMNS):
            wanted = str(mapping.get(name, name)).strip().lower()
            if wanted in found:
                self.index[name] = found[wanted]
        for name in ("step",):
            if name not in self.index:
                label = mapping.get(name, name)
                shown = ", ".join(" ".join(h.split())[:30] for h in header[:12]) + (", ..." if len(header) > 12 else "")
                raise ConversionError(f"line {start + 1}: no column {label!r} in the header ({shown}) — name it, "
                                      f"or map it with arguments.columns: {{{name}: <your column>}}")
        self.rows: list[tuple[int, list[str]]] = []
        try:
            for cells in reader:
                line = start + reader.line_num
                if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                    continue
                self.rows.append((line, cells))
        except csv.Error as exc:
            raise ConversionError(f"line {start + reader.line_num}: not readable as CSV: {exc}") from None

    def get(self, cells: list[str], name: str) -> str:
        i = self.index.get(name)
        if i is None or i >= len(cells):
            return ""
        return cells[i].strip()


class _Builder:
    def __init__(self, rows: _Rows, arguments: Mapping[str, Any], context: ConvertContext) -> None:
        self.rows = rows
        self.arguments = arguments
        self.context = context
        decimal = arguments.get("decimal", ".")
        if decimal not in (".", ","):
            raise ConversionError(f"arguments.decimal must be '.' or ',', got {decimal!r}")
        self.decimal = decimal
        defaults = arguments.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise ConversionError("arguments.defaults must map unit fields to values, e.g. {rev: A}")
        self.defaults = {str(k): v for k, v in defaults.items()}

    def number(self, text: str, line: int, column: str) -> float | None:
        if not text:
            return None
        if self.decimal == ",":
            text = text.replace(".", "").replace(",", ".") if "," in text else text
        try:
            value = float(text)
        except ValueError:
            raise ConversionError(f"line {line}: {column} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConversionError(f"line {line}: {column} {text!r} is not a finite number")
        return value

    def is_number(self, text: str) -> bool:
        try:
            self.number(text, 0, "")
            return True
        except ConversionError:
            return False

    def unit_fields(self) -> dict[str, str]:
        values: dict[str, tuple[str, int]] = {}
        for line, cells in self.rows.rows:
            for name in UNIT_COLUMNS:
                value = self.rows.get(cells, name)
                if not value:
                    continue
                if name not in values:
                    values[name] = (value, line)
                elif values[name][0] != value:
                    raise ConversionError(
                        f"line {line}: {name} {value!r} differs from {values[name][0]!r} on line {values[name][1]} "
                        "— the csv converter takes one unit (UUT) per file")
        out = {name: str(v) for name, v in self.defaults.items() if v is not None}
        out.update({name: value for name, (value, _) in values.items()})
        return out

    def start(self, text: str | None) -> str:
        if text:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ConversionError(f"start {text!r} is not a date-time like 2026-11-02T08:00:00+01:00") from None
        elif self.context.source_mtime is not None:
            moment = datetime.fromtimestamp(self.context.source_mtime)
        else:
            raise ConversionError("no start column and no file time: add a start column")
        if moment.tzinfo is None:
            moment = moment.astimezone()  # the station's local offset
        return moment.isoformat()

    def step(self, step_id: int, line: int, cells: list[str]) -> dict[str, Any]:
        get = self.rows.get
        name = get(cells, "step")
        if not name:
            raise ConversionError(f"line {line}: the step name is empty")
        value_text = get(cells, "value")
        status_text = get(cells, "status")
        status = None
        if status_text:
            status = _STATUS.get(status_text.lower())
            if status is None:
                raise ConversionError(f"line {line}: status {status_text!r} is not one of P, F, S "
                                      "(or pass/fail, ok/nok, 1/0)")
        comp = get(cells, "comp").upper()
        unit = get(cells, "unit") or None
        step: dict[str, Any] = {"id": step_id, "group": "M"}
        if value_text and self.is_number(value_text):
            value = self.number(value_text, line, "value")
            assert value is not None, "is_number() said so"
            low = self.number(get(cells, "low"), line, "low")
            high = self.number(get(cells, "high"), line, "high")
            if not comp:
                comp = "GELE" if low is not None and high is not None else "GE" if low is not None else \
                    "LE" if high is not None else "LOG"
            if comp in _ONE_LIMIT and low is None and high is not None:
                low, high = high, None  # WATS keeps a single limit in lowLimit
            if comp not in _ONE_LIMIT | _TWO_LIMITS | {"LOG"}:
                raise ConversionError(f"line {line}: comp {comp!r} is not a numeric comparison "
                                      "(GELE, GE, LE, EQ, NE, GT, LT, GTLT, LOG, ...)")
            if status is None:
                verdict = _compare(comp, value, low, high)
                if verdict is None:
                    raise ConversionError(f"line {line}: comp {comp} needs "
                                          f"{'both limits' if comp in _TWO_LIMITS else 'a limit'} or a status")
                status = "P" if verdict else "F"
            step.update(stepType="ET_NLT", name=name, status=status)
            meas = {"compOp": comp, "name": None, "status": status, "unit": unit, "value": value,
                    "highLimit": high, "lowLimit": low}
            kind = "numericMeas"
        elif value_text:
            limit = get(cells, "low") or None
            comp = comp or ("CASESENSIT" if limit is not None else "LOG")
            if comp not in _TEXT_OPS:
                raise ConversionError(f"line {line}: comp {comp!r} is not a text comparison (CASESENSIT, IGNORECASE, LOG)")
            if status is None:
                if comp == "LOG" or limit is None:
                    status = "P"
                elif comp == "IGNORECASE":
                    status = "P" if value_text.casefold() == limit.casefold() else "F"
                else:
                    status = "P" if value_text == limit else "F"
            step.update(stepType="ET_SVT", name=name, status=status)
            meas = {"compOp": comp, "name": None, "status": status, "value": value_text, "limit": limit}
            kind = "stringMeas"
        else:
            if status is None:
                raise ConversionError(f"line {line}: step {name!r} has neither a value nor a status")
            step.update(stepType="ET_PFT", name=name, status=status)
            meas = {"name": None, "status": status}
            kind = "booleanMeas"
        step["totTime"] = self.number(get(cells, "time"), line, "time") or 0.0
        step["causedUUTFailure"] = False
        step[kind] = [meas]
        return step

    def report(self) -> dict[str, Any]:
        if not self.rows.rows:
            raise ConversionError(f"no measurement rows after the header (line {self.rows.first_line})")
        unit = self.unit_fields()
        if not unit.get("sn"):
            raise ConversionError("no serial number: add an sn column (or map yours with arguments.columns)")
        missing = [name for name in ("pn", "rev", "process_code") if not unit.get(name)]
        if missing:
            raise ConversionError(f"no {', '.join(missing)}: add the column(s) or set arguments.defaults "
                                  f"(e.g. defaults: {{{missing[0]}: ...}})")
        try:
            process_code = int(str(unit["process_code"]))
        except ValueError:
            raise ConversionError(f"process_code {unit['process_code']!r} is not a whole number") from None
        steps = [self.step(i + 2, line, cells) for i, (line, cells) in enumerate(self.rows.rows)]
        if unit.get("result"):
            result = _RESULT.get(unit["result"].lower())
            if result is None:
                raise ConversionError(f"result {unit['result']!r} is not one of P, F, E, T (or Passed, Failed...)")
        else:
            result = "F" if any(s["status"] == "F" for s in steps) else "P"
        sequence = str(self.arguments.get("sequence") or "MainSequence Callback")
        report: dict[str, Any] = {
            "type": "T", "pn": unit["pn"], "sn": unit["sn"], "rev": unit["rev"],
            "processCode": process_code,
        }
        if unit.get("process_name"):
            report["processName"] = unit["process_name"]
        report["result"] = result
        report["start"] = self.start(unit.get("start"))
        report["root"] = {"id": 1, "group": "M", "stepType": "SequenceCall", "name": sequence,
                          "status": "F" if result == "F" else "P",
                          "totTime": round(sum(s["totTime"] for s in steps), 6), "causedUUTFailure": False,
                          "steps": steps,
                          "seqCall": {"path": self.context.source_name or None, "name": sequence, "version": None}}
        uut = {k: v for k, v in (("user", unit.get("operator")), ("fixtureId", unit.get("fixture"))) if v}
        if uut:
            report["uut"] = uut
        return report


def convert_csv_text(text: str, arguments: Mapping[str, Any], context: ConvertContext) -> dict[str, Any]:
    rows = _Rows(text, arguments)
    return _Builder(rows, arguments, context).report()


class CsvConverter(Converter):
    """One UUT per CSV file, one measurement per row (see the module's docstring for the format)."""

    name = "csv"
    patterns = ("*.csv",)

    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any]]:
        raw = source.read_bytes()
        if not raw.strip():
            raise ConversionError("the file is empty" if not raw else "the file holds only white space")
        encoding = str(context.arguments.get("encoding") or "utf-8")
        if encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
            encoding = "utf-8-sig"
        try:
            text = raw.decode(encoding)
        except LookupError:
            raise ConversionError(f"arguments.encoding {encoding!r} is not an encoding Python knows") from None
        except UnicodeDecodeError as exc:
            raise ConversionError(f"not valid {encoding} text at byte {exc.start} — set arguments.encoding on this "
                                  "intake (e.g. cp1252 or latin-1) to the encoding the equipment writes") from None
        if "\x00" in text:
            raise ConversionError("the file holds NUL characters: it is binary data or UTF-16, not CSV text "
                                  "(set arguments.encoding: utf-16 if the equipment writes UTF-16)")
        return [convert_csv_text(text, context.arguments, context)]
