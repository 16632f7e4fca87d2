"""WSXF repair (UUR) reports → WSJF ``type: "R"`` reports, as the WATS server writes them.

The XML (``<Report type="UUR">``) carries, beside the header attributes a test report has:

* ``<Process Code Name>``: the **repair** process → ``processCode`` / ``processName``;
* ``<UUR UserLoginName ReferencedUUT ExecutionTime ConfirmDate FinalizeDate Parent Active>`` with a
  ``<Comment>`` and its own ``<Process>``: the **test** operation the unit failed in → ``uur``
  (``user``, ``refUUT``, ``execTime``, ``confirmDate``, ``finalizeDate``, ``parent``, ``comment``,
  ``processCode``, ``processName``);
* ``<MiscInfo Description Id>text</MiscInfo>`` → ``miscInfos`` (with the repair type's ``id``);
* ``<ReportUnitHierarchy Idx ParentIDX ReplacedIDX Position PartType PN SN Rev>`` → ``subUnits``
  (index 0 is the unit itself; without any, it is made from the report's pn/sn/rev);
* ``<Failures Idx PartIdx Category Code CompRef FunctionBlock StepID Article…>`` with ``<Comment>``
  lines → the ``failures`` of the sub-unit whose ``idx`` is ``PartIdx``;
* ``<Binary FailIdx><Data ContentType FileName BinaryDataGUID>base64</Data></Binary>`` → the
  ``attachments`` of that failure, or the report's ``binaryData`` without ``FailIdx``.

The fail code's GUID (``Failcode``) is dropped: WSJF names a failure by its category and code text,
which the same element carries. ``Active`` (always true in an export) is dropped too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from .api import ConversionError
from .wsxf import _RESULTS, _code, _float, _int, _local, _number, _text

__all__ = ["UUR_CHILDREN", "uur_report"]

UUR_CHILDREN = {"UUR", "Process", "MiscInfo", "ReportUnitHierarchy", "Failures", "Binary"}


def _guid(value: str | None) -> str | None:
    return value.strip().strip("{}").lower() if value and value.strip() else None


def uur_report(el: ET.Element, where: str, unknown: Callable[[ET.Element, str], None]) -> dict[str, Any]:
    """One ``<Report type="UUR">`` → one WSJF repair report (id as written, or absent)."""
    a = el.attrib
    parts: dict[str, list[ET.Element]] = {}
    for child in el:
        name = _local(child.tag)
        if name in ("UUT", "Step"):
            raise ConversionError(f"{where}: a repair report (type UUR) holds no <{name}> — is its type meant to be UUT?")
        if name not in UUR_CHILDREN:
            unknown(child, where)
            continue
        parts.setdefault(name, []).append(child)
    if "UUR" not in parts:
        raise ConversionError(f"{where}: a repair report (type UUR) needs its <UUR> element")
    process = parts.get("Process", [None])[0]
    if process is None:
        raise ConversionError(f"{where}: a repair report needs <Process> (the repair process code)")
    report: dict[str, Any] = {
        "type": "R",
        "id": _guid(a.get("ID") or a.get("id")),
        "pn": a.get("PN"),
        "sn": a.get("SN"),
        "rev": a.get("Rev"),
        "productName": _text(a.get("ProductName")),
        "processCode": _int(process.get("Code"), f"{where}: Process.Code"),
        "processCodeFormat": _text(process.get("CodeFormat")),
        "processName": _text(process.get("Name")),
        "result": _code(_RESULTS, a.get("Result") or "Passed", f"{where}: Result", "Passed, Failed, Error, Terminated"),
        "machineName": _text(a.get("MachineName")),
        "location": _text(a.get("Location")),
        "purpose": _text(a.get("Purpose")),
        "origin": _text(a.get("origin") or a.get("Origin")),
        "start": a.get("Start"),
        "startUTC": _text(a.get("Start_utc")),
        "uur": _uur(parts["UUR"][0], where),
    }
    if report["id"] is None:
        del report["id"]  # finish_reports gives it a deterministic one
    report["miscInfos"] = [_misc(m, where) for m in parts.get("MiscInfo", [])]
    units = [_unit(u, i, where) for i, u in enumerate(parts.get("ReportUnitHierarchy", []))]
    if not any(u["idx"] == 0 for u in units):
        units.insert(0, {"partType": "Main", "pn": report["pn"], "rev": report["rev"], "sn": report["sn"], "idx": 0})
    by_idx = {u["idx"]: u for u in units}
    failures: dict[int, dict[str, Any]] = {}
    for i, f in enumerate(parts.get("Failures", [])):
        failure, part_idx, fail_idx = _failure(f, i, where)
        if part_idx not in by_idx:
            raise ConversionError(f"{where}: failure #{i + 1} names part index {part_idx}, but no "
                                  "<ReportUnitHierarchy> has that Idx")
        by_idx[part_idx].setdefault("failures", []).append(failure)
        failures[fail_idx] = failure
    binary: list[dict[str, Any]] = []
    for i, b in enumerate(parts.get("Binary", [])):
        attachment = _binary(b, where)
        owner = _int(b.get("FailIdx"), f"{where}: Binary #{i + 1}.FailIdx")
        if owner is None:
            binary.append(attachment)
        elif owner in failures:
            failures[owner].setdefault("attachments", []).append(attachment)
        else:
            raise ConversionError(f"{where}: attachment #{i + 1} names failure index {owner}, but no "
                                  "<Failures> has that Idx")
    report["subUnits"] = units
    if binary:
        report["binaryData"] = binary
    report["assets"] = []
    report["assetStats"] = []
    report["additionalData"] = []
    return report


def _uur(el: ET.Element, where: str) -> dict[str, Any]:
    w = f"{where}: UUR"
    a = el.attrib
    test_process = next((c for c in el if _local(c.tag) == "Process"), None)
    comment = next((c for c in el if _local(c.tag) == "Comment"), None)
    return {
        "comment": _text(comment.text) if comment is not None else _text(a.get("Comment")),
        "user": _text((a.get("UserLoginName") or "").strip()),
        "processCode": _int(test_process.get("Code"), f"{w}.Process.Code") if test_process is not None else None,
        "processName": _text(test_process.get("Name")) if test_process is not None else None,
        "refUUT": _guid(a.get("ReferencedUUT")),
        "confirmDate": _text(a.get("ConfirmDate")),
        "finalizeDate": _text(a.get("FinalizeDate")),
        "execTime": _float(a.get("ExecutionTime"), f"{w}.ExecutionTime"),
        "parent": _guid(a.get("Parent")),
        "children": None,
    }


def _misc(el: ET.Element, where: str) -> dict[str, Any]:
    out = {"description": _text(el.get("Description")), "text": _text(el.text),
           "numeric": _number(el.get("Numeric"), f"{where}: MiscInfo.Numeric")}
    if el.get("Id"):
        out["id"] = _guid(el.get("Id"))
    return out


def _unit(el: ET.Element, position: int, where: str) -> dict[str, Any]:
    w = f"{where}: ReportUnitHierarchy #{position + 1}"
    idx = _int(el.get("Idx"), f"{w}.Idx")
    unit: dict[str, Any] = {"partType": _text(el.get("PartType")), "pn": _text(el.get("PN")),
                            "rev": _text(el.get("Rev")), "sn": _text(el.get("SN")),
                            "idx": position if idx is None else idx}
    for attr, key in (("ParentIDX", "parentIdx"), ("Position", "position"), ("ReplacedIDX", "replacedIdx")):
        value = _int(el.get(attr), f"{w}.{attr}")
        if value is not None:
            unit[key] = value
    return unit


def _failure(el: ET.Element, position: int, where: str) -> tuple[dict[str, Any], int, int]:
    w = f"{where}: Failures #{position + 1}"
    comments = [c.text or "" for c in el if _local(c.tag) == "Comment"]
    comment = "\n".join(comments) if comments else _text(el.get("Comment"))
    failure = {
        "artNumber": _text(el.get("ArticleNumber")), "artRev": _text(el.get("ArticleRevision")),
        "artVendor": _text(el.get("ArticleVendor")), "artDescription": _text(el.get("ArticleDescription")),
        "category": _text(el.get("Category")), "code": _text(el.get("Code")), "comment": comment or None,
        "comRef": _text(el.get("CompRef")), "funcBlock": _text(el.get("FunctionBlock")),
        "refStepId": _int(el.get("StepID"), f"{w}.StepID"), "refStepName": _text(el.get("StepName")),
    }
    if failure["code"] is None:
        raise ConversionError(f"{w}: a failure needs its Code (the fail code)")
    part_idx = _int(el.get("PartIdx"), f"{w}.PartIdx")
    fail_idx = _int(el.get("Idx"), f"{w}.Idx")
    return failure, 0 if part_idx is None else part_idx, position if fail_idx is None else fail_idx


def _binary(el: ET.Element, where: str) -> dict[str, Any]:
    data = next((c for c in el if _local(c.tag) == "Data"), None)
    if data is None:
        raise ConversionError(f"{where}: <Binary> without its <Data>")
    return {"contentType": _text(data.get("ContentType")), "data": "".join((data.text or "").split()),
            "name": _text(data.get("FileName")), "id": _guid(data.get("BinaryDataGUID"))}
