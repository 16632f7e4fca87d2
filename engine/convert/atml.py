"""IEEE 1636.1 (ATML) test results as NI TestStand writes them → WSJF: the built-in ``atml`` converter.

Both schema generations are read by element *local names*, so the namespace URIs (which differ
between TestStand versions and even between files of one version) do not matter: ATML 2.02 (a
``TestResults`` root, 2007/2009 schema) and ATML 5.00/6.01 (a ``TestResultsCollection`` of
``TestResults``). The XML declaration decides the encoding (TestStand writes iso-8859-1 or UTF-8).

**One report per ``TestResults``** (a batch writes one per test socket). A report gets no id here:
:func:`.api.finish_reports` derives it from the file's sha256 and the report's position, so a batch
whose serial numbers are all equal or empty still gives distinct, repeatable ids.

Header: ``UUT/SerialNumber`` → ``sn``; the ``IdentificationNumber`` of type Part → ``pn``;
``Definition@version`` (or an identification number of type Revision) → ``rev``; ``ModelName`` →
``productName``; ``Personnel/SystemOperator`` → ``uut.user``; ``TestStation/SerialNumber`` →
``machineName``; ``ResultSet`` start/end → ``start``/``startUTC`` (the station's offset: TestStand
writes local time without one) and ``uut.execTime``; ``ResultSet/Outcome`` → ``result``; batch serial
number and test socket index (``TSResultSetProperties``) → ``uut``. The sequence file becomes the root
step's ``seqCall`` (path and file name: the software WATS shows for the report). ATML has no part
revision or process code in most files: they come from the intake's ``arguments`` (``part_number``,
``revision``, ``process_code``, ``process_name``, ``serial_number``), else ``unknown`` / 10 — and a
conversion note says so.

Steps: ``ResultSet`` → the root sequence-call step; ``TestGroup`` → a sequence-call step (its name
is TestStand's ``callerName``) with its steps; ``Test`` → a test step whose every ``TestResult`` with a
single ``Datum`` is a measurement of that step — numeric (``numericMeas``: value, unit, limits and
comparison from ``LimitPair``/``SingleLimit``/``Expected``, e.g. ``GE``+``LE`` → ``GELE``, an ``OR``
pair → ``LTGT``; no limits → ``LOG``), boolean (``booleanMeas``) or string (``stringMeas`` with its
expected value: ``EQ`` → ``CASESENSIT``, ``CIEQ`` → ``IGNORECASE``); a pass/fail test without a
``TestResult`` (TestStand writes only its outcome) has one boolean measurement with the step's
status. A ``TestResult`` holding a collection or an array (additional results, parameters) becomes
an ``additionalResults`` entry of its step. ``SessionAction`` → an action step (TestStand's step type
kept, e.g. ``Action``, ``Label``, ``NI_Flow_If``). A ``TestGroup``'s own measurements go into a first
child step named like the group (WATS does not take measurements on a sequence call).
Each step keeps its group (Setup/Main/Cleanup), start, ``TotalTime`` (else end − start), TestStand
step id (``tsGuid``), loop counts, "caused sequence failure", report text and any other ``Data``
item (``additionalResults``).

Outcomes (:func:`.wsjfbuild.nearest_status`): Passed P, Failed F, Error/Errored E, Terminated T,
Aborted T (or its qualifier: ``Aborted``+``Skipped`` is S), Skipped/NotStarted S, Done/Informational
D, UserDefined → its qualifier when that is an outcome, else D with a note. A measurement without
its own outcome takes its step's: P, F or S; E and T make it F; D makes it P. The report result
cannot be S: a skipped run is D.

Kept elsewhere: ``TestProgram`` (configuration, serial number), the report ``uuid``, the UUT type,
``TSResultSetProperties`` and the critical failure stack go to ``additionalData`` /
``miscInfos``. Dropped on purpose, because WSJF derives them: ``Index`` and ``BlockLevel`` (order and
indentation are the tree itself), ``ModuleTime`` (part of ``TotalTime``), ``NumOfResults`` (a count
of what is converted) and ``RawLimits`` equal to the limits. Anything else this converter does not
know is named in the report's conversion notes (``additionalData``, see :mod:`.wsjfbuild`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any

from .api import ConversionError, ConvertContext, Converter
from .wsjfbuild import nearest_status, notes_entry, parse_moment, prop, start_fields
from .wsxf import parse_xml

__all__ = ["AtmlConverter", "convert_atml_bytes"]

_RESULT_OF_STATUS = {"P": "P", "F": "F", "E": "E", "T": "T", "D": "D", "S": "D"}
_MEAS_OF_STATUS = {"P": "P", "F": "F", "S": "S", "E": "F", "T": "F", "D": "P"}
_GROUPS = {"main": "M", "setup": "S", "cleanup": "C"}
_NUMERIC = {"double", "float", "integer", "int", "long", "short", "unsignedinteger", "decimal", "ts_double",
            "ts_number", "number", "ts_i32", "ts_i64", "ts_u32", "ts_u64"}
_BOOLEAN = {"boolean", "ts_boolean", "bool"}
_STRING_OPS = {"EQ": "CASESENSIT", "CIEQ": "IGNORECASE", "NE": "NE", "CINE": "NE"}
_DEFAULT_NAMES = {"numeric", "passfail", "string", "boolean"}
#: TestStand step properties WSJF derives (see the module docstring); not named in the notes.
_DERIVED = {"Index", "BlockLevel", "ModuleTime", "NumOfResults"}
_STEP_CHILDREN = {"Extension", "Outcome", "ActionOutcome", "Data", "TestResult", "TestGroup", "Test", "SessionAction"}
_RESULT_CHILDREN = {"TestData", "TestLimits", "Extension", "Outcome"}


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _kids(el: ET.Element | None, name: str) -> Iterator[ET.Element]:
    if el is not None:
        for child in el:
            if _local(child.tag) == name:
                yield child


def _kid(el: ET.Element | None, *path: str) -> ET.Element | None:
    for name in path:
        el = next(_kids(el, name), None)
        if el is None:
            return None
    return el


def _text(el: ET.Element | None) -> str | None:
    if el is None:
        return None
    value = (el.text or "").strip()
    return value or None


def _attr(el: ET.Element | None, name: str) -> str | None:
    if el is None:
        return None
    for key, value in el.attrib.items():
        if _local(key) == name:
            return value
    return None


def _datum_type(datum: ET.Element) -> str:
    kind = _attr(datum, "type") or ""
    return kind.rsplit(":", 1)[-1].strip().lower()


def _datum_value(datum: ET.Element) -> str | None:
    value = _attr(datum, "value")
    if value is not None:
        return value
    inner = _kid(datum, "Value")
    return (inner.text or "") if inner is not None else None


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def _collection(el: ET.Element) -> Any:
    """A ``c:Collection`` / ``c:Datum`` / ``c:IndexedArray`` as plain Python data (for additional data)."""
    name = _local(el.tag)
    if name == "Datum":
        value = _datum_value(el)
        kind = _datum_type(el)
        if kind in _NUMERIC and value is not None:
            number = _number(value)
            return number if number is not None else value
        if kind in _BOOLEAN and value is not None:
            return value.strip().lower() in ("true", "1")
        return value
    if name == "Collection":
        out: dict[str, Any] = {}
        for item in _kids(el, "Item"):
            content = next(iter(item), None)
            key = _attr(item, "name") or f"item {len(out) + 1}"
            out[key] = _collection(content) if content is not None else None
        return out
    if name in ("IndexedArray", "Array"):
        return {(_attr(e, "position") or str(i)): (_attr(e, "value") if _attr(e, "value") is not None else _text(e)
                                                   or _text(_kid(e, "Value")))
                for i, e in enumerate(el) if _local(e.tag) == "Element"}
    return _text(el)


class _Report:
    """One ``TestResults`` element → one WSJF report dict."""

    def __init__(self, el: ET.Element, number: int, arguments: Mapping[str, Any], context: ConvertContext) -> None:
        self.el = el
        self.where = f"UUT #{number}"
        self.arguments = arguments
        self.context = context
        self.notes: list[str] = []
        self.next_id = 0
        self.unknown: dict[str, int] = {}

    # ------------------------------------------------------------------------------ header

    def build(self) -> dict[str, Any]:
        el = self.el
        result_set = _kid(el, "ResultSet")
        if result_set is None:
            raise ConversionError(f"{self.where}: no <ResultSet>: the file holds no test results")
        uut = _kid(el, "UUT")
        definition = _kid(uut, "Definition")
        ident = _kid(definition, "Identification")
        numbers = list(_kids(_kid(ident, "IdentificationNumbers"), "IdentificationNumber"))
        pn = next((_attr(n, "number") for n in numbers if (_attr(n, "type") or "").lower() == "part"), None) \
            or next((_attr(n, "number") for n in numbers if _attr(n, "number")), None)
        rev = _attr(definition, "version") or next(
            (_attr(n, "number") for n in numbers if "rev" in (_attr(n, "type") or "").lower()), None)
        operator = _kid(el, "Personnel", "SystemOperator")
        outcome = _kid(result_set, "Outcome")
        status, note = nearest_status(_attr(outcome, "value"), _attr(outcome, "qualifier"))
        if note:
            self.notes.append(f"report result: {note}")
        start = parse_moment(_attr(result_set, "startDateTime") or "")
        end = parse_moment(_attr(result_set, "endDateTime") or "")
        if start is None:
            if self.context.source_mtime is None:
                raise ConversionError(f"{self.where}: the ResultSet has no startDateTime")
            start = datetime.fromtimestamp(self.context.source_mtime)
            self.notes.append("no start time in the file: the file's modification time is the start")
        report: dict[str, Any] = {
            "type": "T",
            "pn": self.given("part_number", pn, "part number"),
            "sn": self.given("serial_number", _text(_kid(uut, "SerialNumber")), "serial number"),
            "rev": self.given("revision", rev, "revision"),
            "productName": _text(_kid(ident, "ModelName")),
            "processCode": self.process_code(),
            "processName": self.arguments.get("process_name") or None,
            "result": _RESULT_OF_STATUS.get(status or "", "D") if status else "D",
        }
        if status is None:
            self.notes.append("the ResultSet has no outcome: report result D (done)")
        station = _text(_kid(el, "TestStation", "SerialNumber"))
        if station:
            report["machineName"] = station
        report.update(start_fields(start))
        header: dict[str, Any] = {"user": (_attr(operator, "name") or _attr(operator, "ID")) if operator is not None
                                  else None,
                                  "execTime": (end - start).total_seconds() if end is not None and _same_kind(start, end)
                                  else None}
        misc: list[dict[str, Any]] = []
        atml: dict[str, Any] = {"uuid": _attr(el, "uuid")}
        props = _kid(el, "Extension", "TSResultSetProperties")
        for child in props if props is not None else ():
            name = _local(child.tag)
            value = _attr(child, "value") if _attr(child, "value") is not None else _text(child)
            if name == "BatchSerialNumber":
                header["batchSN"] = value
            elif name == "TestSocketIndex":
                header["testSocketIndex"] = int(_number(value) or 0) if _number(value) is not None else None
            elif name == "CriticalFailureStack":
                for entry in _kids(child, "CriticalFailureStackEntry"):
                    misc.append({"description": "Critical failure", "numeric": None,
                                 "text": f"{_attr(entry, 'stepName')} in {_attr(entry, 'sequenceName')} "
                                         f"({_attr(entry, 'sequenceFileName')}), result {_attr(entry, 'resultID')}"})
            elif name not in _DERIVED:
                atml[name] = _collection(child) if len(child) else value
        if _attr(uut, "UutType"):
            atml["UUT type"] = _attr(uut, "UutType")
        program = _kid(el, "TestProgram")
        if program is not None:
            atml["TestProgram serial number"] = _text(_kid(program, "SerialNumber"))
            config = _kid(program, "Configuration", "Collection")
            if config is not None:
                atml["TestProgram configuration"] = _collection(config)
        extension = _kid(definition, "Extension")
        if extension is not None:
            atml["UUT definition"] = {_local(c.tag): _collection(c) for c in extension}
        report["uut"] = header
        report["root"] = self.root(result_set)
        for child in el:
            name = _local(child.tag)
            if name not in ("ResultSet", "UUT", "Personnel", "TestStation", "TestProgram", "Extension"):
                self.count(f"<{name}>")
        report["miscInfos"] = misc
        report["subUnits"] = []
        additional = [{"name": "ATML", "props": [prop(k, v) for k, v in atml.items() if v is not None]}]
        if self.unknown:
            self.notes.append("not converted (no WSJF place): " + ", ".join(
                f"{name} ×{count}" for name, count in sorted(self.unknown.items())))
        if self.notes:
            additional.append(notes_entry(self.notes))
        report["additionalData"] = additional
        return report

    def count(self, what: str) -> None:
        """Something of the file this converter does not map: named, with its count, in the notes."""
        self.unknown[what] = self.unknown.get(what, 0) + 1

    def given(self, key: str, found: str | None, what: str) -> str:
        if found and found.strip():
            return found.strip()
        value = str(self.arguments.get(key) or "").strip()
        if value:
            return value
        self.notes.append(f"no {what} in the file and no arguments.{key}: written as 'unknown'")
        return "unknown"

    def process_code(self) -> int:
        raw = self.arguments.get("process_code")
        if raw in (None, ""):
            self.notes.append("ATML carries no process code and no arguments.process_code is set: 10 is used")
            return 10
        try:
            return int(str(raw))
        except ValueError:
            raise ConversionError(f"arguments.process_code {raw!r} is not a whole number") from None

    # ------------------------------------------------------------------------------ steps

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def root(self, result_set: ET.Element) -> dict[str, Any]:
        path, _, sequence = (_attr(result_set, "name") or "").partition("#")
        file_name = PureWindowsPath(path).name if path else None
        step = self.common(result_set, sequence or file_name or "MainSequence", "SequenceCall")
        step["seqCall"] = {"path": path or None, "name": file_name, "version": None}
        step["steps"] = self.children(result_set, step)
        return step

    def common(self, el: ET.Element, name: str, default_type: str) -> dict[str, Any]:
        """The fields every step has, in the order WATS writes them."""
        props = _kid(el, "Extension", "TSStepProperties")
        ts_type = _text(_kid(props, "StepType")) or default_type
        group = (_text(_kid(props, "StepGroup")) or "Main").lower()
        outcome = _kid(el, "Outcome") if _kid(el, "Outcome") is not None else _kid(el, "ActionOutcome")
        status, note = nearest_status(_attr(outcome, "value"), _attr(outcome, "qualifier"))
        step: dict[str, Any] = {"id": self.new_id(), "group": _GROUPS.get(group, "M"), "stepType": ts_type,
                                "name": name.strip() or "(unnamed)", "status": status or "D"}
        if note:
            self.notes.append(f"step {step['id']} ({name}): {note}")
        start = parse_moment(_attr(el, "startDateTime") or "")
        end = parse_moment(_attr(el, "endDateTime") or "")
        if start is not None:
            step["start"] = start_fields(start)["start"]
        total = _number(_attr(_kid(props, "TotalTime"), "value"))
        if total is None and start is not None and end is not None and _same_kind(start, end):
            total = (end - start).total_seconds()
        step["totTime"] = total
        guid = _text(_kid(props, "StepId")) or _attr(el, "testReferenceID")
        if guid:
            step["tsGuid"] = guid
        caused = _attr(_kid(props, "StepCausedSequenceFailure"), "value")
        if caused is not None:
            step["causedSeqFailure"] = caused.strip().lower() == "true"
        loop = _kid(props, "LoopingProperties")
        if loop is not None:
            def count(tag: str) -> int | None:
                value = _number(_attr(_kid(loop, tag), "value"))
                return int(value) if value is not None else None
            step["loop"] = {"idx": count("LoopIndex"), "num": count("NumLoops"), "endingIndex": count("EndingLoopIndex"),
                            "passed": count("NumPassed"), "failed": count("NumFailed")}
        for child in el:
            if _local(child.tag) not in _STEP_CHILDREN:
                self.count(f"<{_local(child.tag)}>")
        for child in _kid(el, "Extension") or ():
            if _local(child.tag) != "TSStepProperties":
                self.count(f"Extension/{_local(child.tag)}")
        for child in _kid(el, "Data") or ():
            if _local(child.tag) != "Collection":
                self.count(f"Data/{_local(child.tag)}")
        for child in props if props is not None else ():
            tag = _local(child.tag)
            if tag not in _DERIVED and tag not in ("StepType", "StepGroup", "TotalTime", "StepId",
                                                   "StepCausedSequenceFailure", "LoopingProperties"):
                self.count(f"TSStepProperties/{tag}")
        extras: list[dict[str, Any]] = []
        data = _kid(el, "Data", "Collection")
        for item in _kids(data, "Item"):
            content = next(iter(item), None)
            value = _collection(content) if content is not None else None
            item_name = _attr(item, "name") or "Data"
            if item_name == "ReportText" and not isinstance(value, dict):
                step["reportText"] = "" if value is None else str(value)
            else:
                extras.append(_additional(item_name, value))
        if extras:
            step["additionalResults"] = extras
        return step

    def children(self, parent: ET.Element, parent_step: dict[str, Any]) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        own = list(_kids(parent, "TestResult"))
        if own:
            measured = self.test_step(parent, parent_step["name"], own, group_of=parent_step)
            if measured is not None:
                steps.append(measured)
        for child in parent:
            name = _local(child.tag)
            if name == "TestGroup":
                steps.append(self.group(child))
            elif name == "Test":
                step = self.test_step(child, _attr(child, "name") or "", list(_kids(child, "TestResult")))
                assert step is not None
                steps.append(step)
            elif name == "SessionAction":
                steps.append(self.common(child, _attr(child, "name") or "", "Action"))
        return steps

    def group(self, el: ET.Element) -> dict[str, Any]:
        path, _, sequence = (_attr(el, "name") or "").partition("#")
        caller = _attr(el, "callerName")
        defined = _attr(el, "userDefinedType") or ""
        if not caller and "SequenceCallStepName" in defined and "'" in defined:
            caller = defined.split("'", 1)[1].rsplit("'", 1)[0]
        step = self.common(el, caller or sequence or path or "SequenceCall", "SequenceCall")
        step["stepType"] = "SequenceCall"
        step["seqCall"] = {"path": path or None, "name": sequence or None, "version": None}
        step["steps"] = self.children(el, step)
        return step

    def test_step(self, el: ET.Element, name: str, results: list[ET.Element],
                  group_of: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A ``Test`` (or a group's own results): its measurements by kind, the rest as additional results."""
        numeric: list[tuple[str, dict[str, Any]]] = []
        boolean: list[tuple[str, dict[str, Any]]] = []
        string: list[tuple[str, dict[str, Any]]] = []
        extras: list[dict[str, Any]] = []
        if group_of is not None:
            step = {"id": self.new_id(), "group": group_of["group"], "stepType": "Action", "name": name,
                    "status": group_of["status"]}
            ts_type = "Test"
        else:
            step = self.common(el, name, "Action")
            ts_type = step["stepType"]
        for result in results:
            for child in result:
                if _local(child.tag) not in _RESULT_CHILDREN:
                    self.count(f"TestResult/{_local(child.tag)}")
            label = _attr(result, "name") or _attr(result, "ID") or ""
            if label.startswith("tr-") and _attr(result, "name"):
                label = _attr(result, "name") or label
            datum = _kid(result, "TestData", "Datum")
            if datum is None:
                data = _kid(result, "TestData")
                content = next(iter(data), None) if data is not None else None
                extras.append(_additional(label or "TestResult", _collection(content) if content is not None else None))
                continue
            own = _kid(result, "Outcome")
            own_status, note = nearest_status(_attr(own, "value"), _attr(own, "qualifier"))
            if note:
                self.notes.append(f"step {step['id']} ({name}), {label}: {note}")
            status = _MEAS_OF_STATUS[own_status or step["status"]]
            kind = _datum_type(datum)
            value = _datum_value(datum)
            limits = _kid(result, "TestLimits", "Limits")
            if kind in _BOOLEAN:
                if own_status is None and step["status"] not in ("P", "F", "S") and value is not None:
                    status = "P" if value.strip().lower() in ("true", "1") else "F"
                boolean.append((label, {"name": None, "status": status}))
            elif kind in _NUMERIC or (kind == "" and _number(value) is not None):
                meas = self.numeric(step, label, result, datum, value, limits, status)
                numeric.append((label, meas))
                extra = _limit_extras(result, limits, label)
                if extra is not None:
                    extras.append(extra)
            else:
                string.append((label, self.string(value, limits, status)))
        if not results and "passfail" in ts_type.lower() and step["status"] in ("P", "F"):
            boolean.append(("", {"name": None, "status": step["status"]}))
        if group_of is not None and not (numeric or boolean or string):
            group_of.setdefault("additionalResults", []).extend(extras)
            self.next_id -= 1  # no step made: keep the ids dense
            return None
        for key, items in (("numericMeas", numeric), ("booleanMeas", boolean), ("stringMeas", string)):
            if items:
                for label, meas in items:
                    if len(items) > 1 or label.strip().lower() not in _DEFAULT_NAMES:
                        meas["name"] = label or None
                step[key] = [meas for _, meas in items]
        kinds = [k for k, items in (("N", numeric), ("B", boolean), ("S", string)) if items]
        if kinds:
            first = kinds[0]
            many = len({"N": numeric, "B": boolean, "S": string}[first]) > 1
            step["stepType"] = {"N": "ET_MNLT" if many else "ET_NLT", "B": "ET_MPFT" if many else "ET_PFT",
                                "S": "ET_MSVT" if many else "ET_SVT"}[first]
        elif ts_type in ("SequenceCall", "WATS_SeqCall"):
            step["stepType"] = "SequenceCall"
            step["seqCall"] = {"path": None, "name": name or None, "version": None}
        if extras:
            step.setdefault("additionalResults", []).extend(extras)
        return step

    def numeric(self, step: dict[str, Any], label: str, result: ET.Element, datum: ET.Element, value: str | None,
                limits: ET.Element | None, status: str) -> dict[str, Any]:
        number = _number(value)
        if number is not None and not math.isfinite(number):
            self.notes.append(f"step {step['id']} ({step['name']}), {label}: value {value!r} has no JSON form; "
                              "written as null")
            number = None
        elif number is None:
            self.notes.append(f"step {step['id']} ({step['name']}), {label}: value {value!r} is not a number; "
                              "written as null")
        comp, low, high = "LOG", None, None
        unit = _attr(datum, "nonStandardUnit") or _attr(datum, "standardUnit")
        if limits is not None and not _is_log(limits):
            pair = _kid(limits, "LimitPair")
            single = _kid(limits, "SingleLimit") if pair is None else None
            expected = _kid(limits, "Expected") if pair is None and single is None else None
            if pair is not None:
                bounds = list(_kids(pair, "Limit"))
                comps = [(_attr(b, "comparator") or "").upper() for b in bounds]
                values = [_number(_datum_value(d)) if (d := _kid(b, "Datum")) is not None else None for b in bounds]
                if len(bounds) == 2:
                    comp, low, high = comps[0] + comps[1], values[0], values[1]
                elif bounds:
                    comp, low = comps[0], values[0]
            elif single is not None or expected is not None:
                limit = single if single is not None else expected
                assert limit is not None
                comp = (_attr(limit, "comparator") or "EQ").upper()
                inner = _kid(limit, "Datum")
                low = _number(_datum_value(inner)) if inner is not None else None
        threshold = _threshold(result, limits)
        if threshold is not None and comp != "LOG":
            low, high = threshold(low), threshold(high, upper=True)
        return {"compOp": comp, "name": None, "status": status, "unit": unit or None, "value": number,
                "highLimit": high, "lowLimit": low}

    @staticmethod
    def string(value: str | None, limits: ET.Element | None, status: str) -> dict[str, Any]:
        comp, limit = "LOG", None
        expected = _kid(limits, "Expected") if limits is not None else None
        if expected is None and limits is not None:
            expected = _kid(limits, "SingleLimit")
        if expected is not None and not _is_log(limits):
            comp = _STRING_OPS.get((_attr(expected, "comparator") or "EQ").upper(), "CASESENSIT")
            inner = _kid(expected, "Datum")
            limit = _datum_value(inner) if inner is not None else None
        return {"compOp": comp, "name": None, "status": status, "value": value, "limit": limit}


def _same_kind(a: datetime, b: datetime) -> bool:
    return (a.tzinfo is None) == (b.tzinfo is None)


def _threshold(result: ET.Element | None, limits: ET.Element | None) -> Any:
    """Limits TestStand gives relative to a nominal value (its "equal with threshold" tests): the file
    holds the raw percentage, ppm or delta in the limit pair; WATS needs the absolute limits.

    Returns a function turning a raw low/high figure into the absolute limit, or None.
    """
    for holder in (_kid(result, "Extension", "TSLimitProperties"), _kid(limits, "Extension", "TSLimitProperties")):
        kind = (_text(_kid(holder, "ThresholdType")) or "").lower()
        nominal = _number(_attr(_kid(holder, "RawLimits", "Nominal"), "value"))
        if kind in ("percentage", "ppm", "delta") and nominal is not None:
            scale = {"percentage": abs(nominal) / 100, "ppm": abs(nominal) / 1e6, "delta": 1.0}[kind]

            def absolute(raw: float | None, upper: bool = False, nominal: float = nominal,
                         scale: float = scale) -> float | None:
                if raw is None:
                    return None
                return nominal + raw * scale if upper else nominal - raw * scale
            return absolute
    return None


def _is_log(limits: ET.Element | None) -> bool:
    flag = _attr(_kid(limits, "Extension", "TSLimitProperties", "IsComparisonTypeLog"), "value")
    return bool(flag and flag.strip().lower() == "true")


def _additional(name: str, value: Any) -> dict[str, Any]:
    """A WSJF additional-results / additional-data entry: a name and its properties."""
    if isinstance(value, dict):
        return {"name": name, "props": [prop(k, v) for k, v in value.items()]}
    return {"name": name, "props": [prop(name, value)]}


def _limit_extras(result: ET.Element, limits: ET.Element | None, label: str) -> dict[str, Any] | None:
    """Limits given relative to a nominal value (percent, ppm, delta): the absolute limits are the
    measurement's; the nominal and the raw figures are kept beside it."""
    found: dict[str, Any] = {}
    for holder in (_kid(result, "Extension", "TSLimitProperties"), _kid(limits, "Extension", "TSLimitProperties")):
        threshold = _text(_kid(holder, "ThresholdType"))
        if threshold:
            found["ThresholdType"] = threshold
            for raw in _kid(holder, "RawLimits") or ():
                found[f"Raw{_local(raw.tag)}"] = _number(_attr(raw, "value"))
    nominal = _kid(_kid(limits, "LimitPair"), "Nominal")
    if nominal is not None and _kid(nominal, "Datum") is not None:
        found["Nominal"] = _number(_datum_value(_kid(nominal, "Datum")))  # type: ignore[arg-type]
    if not found:
        return None
    return {"name": f"{label or 'Numeric'} limits", "props": [prop(k, v) for k, v in found.items()]}


def convert_atml_bytes(raw: bytes, arguments: Mapping[str, Any], context: ConvertContext) -> list[dict[str, Any]]:
    """Every UUT of an ATML document, as WSJF dicts (without ids: see the module docstring)."""
    root = parse_xml(raw, what="an ATML file")
    name = _local(root.tag)
    if name == "TestResultsCollection":
        elements = list(_kids(root, "TestResults"))
    elif name == "TestResults":
        elements = [root]
    else:
        raise ConversionError(f"not an ATML test results file: the root element is <{name}>, expected "
                              "<TestResultsCollection> or <TestResults>")
    if not elements:
        raise ConversionError("the ATML file holds no <TestResults>")
    return [_Report(el, i + 1, arguments, context).build() for i, el in enumerate(elements)]


class AtmlConverter(Converter):
    """TestStand ATML result files (``*.xml``), one report per UUT."""

    name = "atml"
    patterns = ("*.xml",)

    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any]]:
        return convert_atml_bytes(source.read_bytes(), context.arguments, context)
