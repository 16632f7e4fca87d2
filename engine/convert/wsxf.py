"""WSXF (WATS Standard XML Format) → WSJF: the built-in ``wsxf`` converter.

The mapping reproduces what a WATS server itself writes when it exports the same report as WSJF
(``fixtures/reports/uut-wsxf-export.xml`` → ``uut-wsjf-export.json``, checked field by field in
``tests/test_converters.py``):

* report attributes → ``type`` (UUT → T), ``id`` (lower case), ``pn``/``sn``/``rev``,
  ``result`` (Passed → P …), ``start``/``startUTC`` (kept as written), ``machineName``,
  ``location``, ``purpose``, ``origin``, ``productName``; ``<Process>`` → ``processCode`` and
  ``processName``; ``<UUT>`` → ``uut``; ``<MiscInfo>`` → ``miscInfos``;
  ``<ReportUnitHierarchy>`` → ``subUnits``;
* ``<Step>`` → a step with ``id``, ``group`` (Main → M, Setup → S, Cleanup → C), ``stepType``,
  ``loop``, ``name``, ``status``, ``errorCode``/``errorMessage``, ``totTime``,
  ``causedUUTFailure``, ``reportText``, the measurements (``NumericLimit`` → ``numericMeas``,
  ``PassFail`` → ``booleanMeas``, ``StringValue`` → ``stringMeas``), ``messagePopup``,
  ``callExe``, ``chart`` with its series, nested ``steps`` and ``seqCall``;
* an empty attribute (``Units=""``) is ``null``, as the server writes it.

What the XML does not carry, and is therefore written as the server writes it when absent:
``processCodeFormat`` (null), ``uut.batchLoopIndex`` (null unless ``BatchLoopIndex`` is given),
``assets``, ``assetStats`` and ``additionalData`` (empty lists). The XML's ordering attributes
(``StepIndex``, ``MeasIndex``, ``MeasOrderNumber``, ``idx``, ``order_no``, ``Typedef``) and the
sequence file name (``Filename``) have no place in WSJF and are dropped, as the server drops them.

An element this converter does not know is refused with its name rather than silently dropped;
``arguments: {ignore_unknown: true}`` converts such files without those elements. Repair (UUR)
reports are read by :mod:`.wsxf_uur`. A DOCTYPE or entity declaration is refused: a result file
has no use for them and they are the way to attack an XML parser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .api import ConversionError, ConvertContext, Converter

__all__ = ["WsxfConverter", "convert_wsxf_bytes", "parse_xml"]

_RESULTS = {"passed": "P", "failed": "F", "error": "E", "terminated": "T", "done": "D",
            "p": "P", "f": "F", "e": "E", "t": "T", "d": "D"}
_STATUSES = {"passed": "P", "failed": "F", "skipped": "S", "terminated": "T", "done": "D", "error": "E",
             "p": "P", "f": "F", "s": "S", "t": "T", "d": "D", "e": "E"}
_GROUPS = {"main": "M", "setup": "S", "cleanup": "C", "m": "M", "s": "S", "c": "C"}
_STEP_CHILDREN = {"Step", "SequenceCall", "NumericLimit", "PassFail", "StringValue", "ReportText", "Chart", "Loop",
                  "MessagePopup", "Callexe"}
_REPORT_CHILDREN = {"UUT", "Process", "MiscInfo", "ReportUnitHierarchy", "Step"}


class _Refused(ConversionError):
    pass


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(value: str | None) -> str | None:
    """Empty attributes are null in WSJF."""
    return value if value else None


def _float(value: str | None, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ConversionError(f"{where}: {value!r} is not a number") from None


def _int(value: str | None, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConversionError(f"{where}: {value!r} is not a whole number") from None


def _number(value: str | None, where: str) -> int | float | None:
    """A whole number stays whole (MiscInfo's numeric is written as 100, not 100.0)."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return _float(value, where)


def _bool(value: str | None, where: str) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ConversionError(f"{where}: {value!r} is not true or false")


def _code(table: dict[str, str], value: str | None, where: str, allowed: str) -> str:
    if value is None or value.strip().lower() not in table:
        raise ConversionError(f"{where}: {value!r} is not one of {allowed}")
    return table[value.strip().lower()]


class _Reader:
    """One report element → one WSJF dict."""

    def __init__(self, ignore_unknown: bool) -> None:
        self.ignore_unknown = ignore_unknown

    def unknown(self, element: ET.Element, where: str) -> None:
        if not self.ignore_unknown:
            raise ConversionError(
                f"{where}: element <{_local(element.tag)}> is not supported by the built-in wsxf converter — "
                "set arguments: {ignore_unknown: true} on this intake to convert the file without it")

    def report(self, el: ET.Element, number: int) -> dict[str, Any]:
        where = f"report #{number}"
        a = el.attrib
        kind = (a.get("type") or "").upper()
        if kind in ("UUR", "R"):
            from .wsxf_uur import uur_report  # imports this module's helpers: loaded after it

            return uur_report(el, where, self.unknown)
        if kind not in ("UUT", "T"):
            raise ConversionError(f"{where}: type {a.get('type')!r} is not UUT")
        children: dict[str, list[ET.Element]] = {}
        for child in el:
            name = _local(child.tag)
            if name not in _REPORT_CHILDREN:
                self.unknown(child, where)
                continue
            children.setdefault(name, []).append(child)
        process = children.get("Process", [None])[0]
        uut_el = children.get("UUT", [None])[0]
        steps = children.get("Step", [])
        if len(steps) > 1:
            raise ConversionError(f"{where}: {len(steps)} root steps; a report has one root step")
        report_id = a.get("ID") or a.get("id")
        report: dict[str, Any] = {
            "type": "T",
            "id": report_id.strip().strip("{}").lower() if report_id else None,
            "pn": a.get("PN"),
            "sn": a.get("SN"),
            "rev": a.get("Rev"),
            "productName": _text(a.get("ProductName")),
            "processCode": _int(process.get("Code"), f"{where}: Process.Code") if process is not None else None,
            "processCodeFormat": _text(process.get("CodeFormat")) if process is not None else None,
            "processName": _text(process.get("Name")) if process is not None else None,
            "result": _code(_RESULTS, a.get("Result"), f"{where}: Result", "Passed, Failed, Error, Terminated"),
            "machineName": _text(a.get("MachineName")),
            "location": _text(a.get("Location")),
            "purpose": _text(a.get("Purpose")),
            "origin": _text(a.get("origin") or a.get("Origin")),
            "start": a.get("Start"),
            "startUTC": _text(a.get("Start_utc")),
            "root": self.step(steps[0], where) if steps else None,
        }
        if report["id"] is None:
            del report["id"]  # finish_reports gives it a deterministic one
        if uut_el is not None:
            report["uut"] = self.uut(uut_el, where)
        report["miscInfos"] = [self.misc(m, where) for m in children.get("MiscInfo", [])]
        report["subUnits"] = [self.sub_unit(u, where) for u in children.get("ReportUnitHierarchy", [])]
        report["assets"] = []
        report["assetStats"] = []
        report["additionalData"] = []
        return report

    def uut(self, el: ET.Element, where: str) -> dict[str, Any]:
        a = el.attrib
        w = f"{where}: UUT"
        comment = el.find("{*}Comment")
        return {
            "execTime": _float(a.get("ExecutionTime"), f"{w}.ExecutionTime"),
            "testSocketIndex": _int(a.get("TestSocketIndex"), f"{w}.TestSocketIndex"),
            "batchSN": _text(a.get("BatchSN")),
            "comment": _text(comment.text) if comment is not None else None,
            "errorCode": _int(a.get("ErrorCode"), f"{w}.ErrorCode"),
            "errorMessage": _text(a.get("ErrorMessage")),
            "fixtureId": _text(a.get("FixtureId")),
            "user": _text(a.get("UserLoginName")),
            "batchFailCount": _int(a.get("BatchFailCount"), f"{w}.BatchFailCount"),
            "batchLoopIndex": _int(a.get("BatchLoopIndex"), f"{w}.BatchLoopIndex"),
            "stepIdCausedUUTFailure": _int(a.get("StepIdCausedUUTFailure"), f"{w}.StepIdCausedUUTFailure"),
        }

    def misc(self, el: ET.Element, where: str) -> dict[str, Any]:
        return {"description": _text(el.get("Description")), "text": _text(el.text),
                "numeric": _number(el.get("Numeric"), f"{where}: MiscInfo.Numeric")}

    def sub_unit(self, el: ET.Element, where: str) -> dict[str, Any]:
        return {"partType": _text(el.get("PartType")), "pn": _text(el.get("PN")), "rev": _text(el.get("Rev")),
                "sn": _text(el.get("SN")),
                "position": _int(el.get("Position"), f"{where}: ReportUnitHierarchy.Position")}

    def step(self, el: ET.Element, parent_where: str) -> dict[str, Any]:
        a = el.attrib
        where = f"{parent_where}: step {a.get('Id', '?')} ({a.get('Name', '?')})"
        parts: dict[str, list[ET.Element]] = {}
        for child in el:
            name = _local(child.tag)
            if name not in _STEP_CHILDREN:
                self.unknown(child, where)
                continue
            parts.setdefault(name, []).append(child)
        step: dict[str, Any] = {
            "id": _int(a.get("Id"), f"{where}: Id"),
            "group": _code(_GROUPS, a.get("Group"), f"{where}: Group", "Main, Setup, Cleanup"),
            "stepType": a.get("StepType"),
        }
        if "Loop" in parts:
            step["loop"] = self.loop(parts["Loop"][0], where)
        step["name"] = a.get("Name")
        step["status"] = _code(_STATUSES, a.get("Status"), f"{where}: Status",
                               "Passed, Failed, Skipped, Terminated, Done, Error")
        if a.get("StepErrorCode") not in (None, ""):
            step["errorCode"] = _int(a.get("StepErrorCode"), f"{where}: StepErrorCode")
        if a.get("StepErrorMessage") not in (None, ""):
            step["errorMessage"] = a.get("StepErrorMessage")
        step["totTime"] = _float(a.get("total_time"), f"{where}: total_time")
        step["causedUUTFailure"] = _bool(a.get("StepCausedUUTFailure"), f"{where}: StepCausedUUTFailure")
        if "ReportText" in parts:
            step["reportText"] = parts["ReportText"][0].text or ""
        if "NumericLimit" in parts:
            step["numericMeas"] = [self.numeric(m, where) for m in parts["NumericLimit"]]
        if "PassFail" in parts:
            step["booleanMeas"] = [self.boolean(m, where) for m in parts["PassFail"]]
        if "StringValue" in parts:
            step["stringMeas"] = [self.string(m, where) for m in parts["StringValue"]]
        if "MessagePopup" in parts:
            m = parts["MessagePopup"][0]
            step["messagePopup"] = {"response": _text(m.get("Response")),
                                    "button": _int(m.get("Button"), f"{where}: MessagePopup.Button")}
        if "Callexe" in parts:
            step["callExe"] = {"exitCode": _float(parts["Callexe"][0].get("ExitCode"), f"{where}: Callexe.ExitCode")}
        if "Chart" in parts:
            step["chart"] = self.chart(parts["Chart"][0], where)
        if "Step" in parts:
            step["steps"] = [self.step(child, parent_where) for child in parts["Step"]]
        if "SequenceCall" in parts:
            s = parts["SequenceCall"][0]
            step["seqCall"] = {"path": _text(s.get("Filepath")), "name": _text(s.get("Name")),
                               "version": _text(s.get("Version"))}
        return step

    def loop(self, el: ET.Element, where: str) -> dict[str, Any]:
        w = f"{where}: Loop"
        return {"idx": _int(el.get("index"), f"{w}.index"), "num": _int(el.get("num"), f"{w}.num"),
                "endingIndex": _int(el.get("ending_index"), f"{w}.ending_index"),
                "passed": _int(el.get("passed"), f"{w}.passed"), "failed": _int(el.get("failed"), f"{w}.failed")}

    def numeric(self, el: ET.Element, where: str) -> dict[str, Any]:
        w = f"{where}: NumericLimit"
        return {"compOp": el.get("CompOperator"), "name": _text(el.get("Name")),
                "status": _code(_STATUSES, el.get("Status"), f"{w}.Status", "Passed, Failed, Skipped"),
                "unit": _text(el.get("Units")), "value": _float(el.get("NumericValue"), f"{w}.NumericValue"),
                "highLimit": _float(el.get("HighLimit"), f"{w}.HighLimit"),
                "lowLimit": _float(el.get("LowLimit"), f"{w}.LowLimit")}

    def boolean(self, el: ET.Element, where: str) -> dict[str, Any]:
        return {"name": _text(el.get("Name")),
                "status": _code(_STATUSES, el.get("Status"), f"{where}: PassFail.Status", "Passed, Failed, Skipped")}

    def string(self, el: ET.Element, where: str) -> dict[str, Any]:
        return {"compOp": el.get("CompOperator"), "name": _text(el.get("Name")),
                "status": _code(_STATUSES, el.get("Status"), f"{where}: StringValue.Status", "Passed, Failed, Skipped"),
                "value": _text(el.get("StringValue")), "limit": _text(el.get("StringLimit"))}

    def chart(self, el: ET.Element, where: str) -> dict[str, Any]:
        series = []
        for s in el:
            if _local(s.tag) != "Series":
                self.unknown(s, f"{where}: Chart")
                continue
            data = {_local(child.tag): child.text for child in s}
            series.append({"dataType": _text(s.get("DataType")), "name": _text(s.get("Name")),
                           "xdata": _text(data.get("xdata")), "ydata": _text(data.get("ydata"))})
        return {"chartType": _text(el.get("ChartType")), "label": _text(el.get("Label")),
                "xLabel": _text(el.get("XLabel")), "xUnit": _text(el.get("XUnit")),
                "yLabel": _text(el.get("YLabel")), "yUnit": _text(el.get("YUnit")), "series": series}


_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


def parse_xml(raw: bytes, *, what: str = "a WSXF file") -> ET.Element:
    """The document's root element; refuses what a result file never holds and an attack needs.

    A DOCTYPE (entities can only be declared inside one) is refused, and so is UTF-16 or binary
    data: the DOCTYPE check reads bytes, so only ASCII-compatible encodings (UTF-8, ISO-8859-x,
    as test equipment writes them) are let through to the parser.
    """
    if not raw.strip():
        raise ConversionError("the file is empty" if not raw else "the file holds only white space")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
        raise ConversionError(f"not UTF-8 or ISO-8859 text (it looks like UTF-16 or binary data) — {what} "
                              "must be saved as UTF-8 or ISO-8859-1")
    if _DOCTYPE.search(raw):
        raise ConversionError("the XML declares a DOCTYPE or entities; result files never do, so it is refused")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ConversionError(f"not well-formed XML: {exc}") from None
    except (LookupError, ValueError) as exc:  # e.g. an encoding="..." Python does not know
        raise ConversionError(f"not readable XML: {exc}") from None


def convert_wsxf_bytes(raw: bytes, *, ignore_unknown: bool = False) -> list[dict[str, Any]]:
    """Every report of a WSXF document, as WSJF dicts (ids as written, or absent)."""
    root = parse_xml(raw)
    name = _local(root.tag)
    if name == "Reports":
        elements = [child for child in root if _local(child.tag) == "Report"]
    elif name == "Report":
        elements = [root]
    else:
        raise ConversionError(f"not a WSXF document: the root element is <{name}>, expected <Reports> or <Report>")
    if not elements:
        raise ConversionError("the WSXF document holds no <Report>")
    reader = _Reader(ignore_unknown)
    return [reader.report(el, i + 1) for i, el in enumerate(elements)]


class WsxfConverter(Converter):
    """WATS XML result files (``*.xml``), one or more reports each."""

    name = "wsxf"
    patterns = ("*.xml",)

    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any]]:
        ignore = bool(context.arguments.get("ignore_unknown", False))
        return convert_wsxf_bytes(source.read_bytes(), ignore_unknown=ignore)
