"""The equipment-format converters: TestStand ATML, the WATS text format, WSXF repair reports.

Fidelity is checked against the source files themselves: the measurements (numeric, boolean,
string), the steps and the additional results are counted in the XML / text by an independent
reading and must equal what the produced report holds; every numeric value of the source is found
in the report. Each produced report goes through the real emulator over loopback and comes back
byte for byte. The fuzz tests feed truncated, wrongly encoded and hostile files to each converter:
a clear ConversionError or a valid report, never a crash; through an intake, the bad file is kept
whole in the error folder with its reason.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.convert.api import ConversionError, ConvertContext, finish_reports
from stationflow.engine.convert.atml import AtmlConverter, convert_atml_bytes
from stationflow.engine.convert.wsjfbuild import NOTES_NAME, nearest_status
from stationflow.engine.convert.wstf import WstfConverter, convert_wstf_text
from stationflow.engine.convert.wsxf import convert_wsxf_bytes
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.intake.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection
from stationflow.schemas.wsjf import load_report, parse_header
from tests.conftest import FIXTURES, REPORTS

INPUTS = FIXTURES / "inputs"
ATML = sorted((INPUTS / "atml").iterdir())
WSTF = INPUTS / "wstf" / "wstf-example.txt"
UUR_XML = INPUTS / "uur-wsxf.xml"
CTX = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="test",
                     arguments={}, source_name="x", source_mtime=1_790_000_000.0)
STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")
FAST = IntakeOptions(poll_interval_s=0.05, full_retry_s=0.1, post_retry_s=0.1, memory_limit_bytes=512 * 1024**2)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _walk(step: dict[str, Any]) -> list[dict[str, Any]]:
    out = [step]
    for child in step.get("steps") or []:
        out.extend(_walk(child))
    return out


def _counts(report: dict[str, Any]) -> Counter[str]:
    c: Counter[str] = Counter()
    for step in _walk(report["root"]):
        c["steps"] += 1
        for key in ("numericMeas", "booleanMeas", "stringMeas", "additionalResults"):
            c[key] += len(step.get(key) or [])
    return c


def _finish(items: list[dict[str, Any]], sha: str = "0" * 64, converter: str = "test") -> list[bytes]:
    return finish_reports(items, CTX, sha256=sha, converter=converter)


# ------------------------------------------------------------------------------------ ATML: fidelity

_NUMERIC = re.compile(r"(double|integer|int|long|number|float)$", re.I)


def _atml_source_counts(results: ET.Element) -> tuple[Counter[str], list[float], int]:
    """Count what a TestResults element holds, reading the XML directly (not through the converter)."""
    c: Counter[str] = Counter()
    values: list[float] = []
    not_finite = 0
    c["steps"] = 1  # the ResultSet is the root step
    for el in results.iter():
        name = _local(el.tag)
        if name in ("TestGroup", "Test", "SessionAction"):
            c["steps"] += 1
        if name == "TestGroup" and any(_local(k.tag) == "TestResult" and k.find("{*}TestData/{*}Datum") is not None
                                       for k in el):
            c["steps"] += 1  # the group's own measurements get a first child step
        if name == "Item" and el.get("name") != "ReportText" and _local(_parent_of(results, el).tag) == "Collection" \
                and _local(_parent_of(results, _parent_of(results, el)).tag) == "Data":
            c["additionalResults"] += 1
        if name == "Test" and not any(_local(k.tag) == "TestResult" for k in el):
            step_type = el.find("{*}Extension/{*}TSStepProperties/{*}StepType")
            outcome = el.find("{*}Outcome")
            if step_type is not None and "PassFail" in (step_type.text or "") and outcome is not None \
                    and outcome.get("value") in ("Passed", "Failed"):
                c["booleanMeas"] += 1
        if name != "TestResult":
            continue
        datum = el.find("{*}TestData/{*}Datum")
        if datum is None:
            c["additionalResults"] += 1
            continue
        kind = next((v for k, v in datum.attrib.items() if _local(k) == "type"), "")
        if "boolean" in kind.lower():
            c["booleanMeas"] += 1
        elif _NUMERIC.search(kind):
            c["numericMeas"] += 1
            number = float(datum.get("value", "nan"))
            if number == number and abs(number) != float("inf"):
                values.append(number)
            else:
                not_finite += 1
            if el.find(".//{*}ThresholdType") is not None or el.find(".//{*}Nominal") is not None:
                c["additionalResults"] += 1
        else:
            c["stringMeas"] += 1
    return c, values, not_finite


_PARENTS: dict[int, dict[ET.Element, ET.Element]] = {}


def _parent_of(root: ET.Element, el: ET.Element) -> ET.Element:
    parents = _PARENTS.setdefault(id(root), {child: p for p in root.iter() for child in p})
    return parents[el]


@pytest.mark.parametrize("path", ATML, ids=[p.name for p in ATML])
def test_atml_sample_keeps_every_measurement_step_and_value(path: Path) -> None:
    raw = path.read_bytes()
    reports = convert_atml_bytes(raw, {}, CTX)
    root = ET.fromstring(raw)
    sources = [root] if _local(root.tag) == "TestResults" else [e for e in root if _local(e.tag) == "TestResults"]
    assert len(reports) == len(sources) == 1
    expected, values, not_finite = _atml_source_counts(sources[0])
    got = _counts(reports[0])
    assert got == expected, f"{path.name}: source {dict(expected)} vs report {dict(got)}"
    produced = [m["value"] for s in _walk(reports[0]["root"]) for m in s.get("numericMeas") or []]
    assert sorted(v for v in produced if v is not None) == sorted(values)
    assert produced.count(None) == not_finite
    # Not vacuous: the samples are big.
    assert got["steps"] > 20 and got["numericMeas"] >= 2 and got["booleanMeas"] >= 8
    [finished] = _finish(reports)
    load_report(finished)  # the whole step tree validates


def test_atml_5_header_limits_and_outcomes_map_as_documented() -> None:
    [report] = convert_atml_bytes((INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml").read_bytes(), {}, CTX)
    assert (report["pn"], report["sn"], report["result"], report["machineName"]) == \
        ("Ragnar123", "123456789", "F", "TS-2016-BETA")
    assert report["uut"]["user"] == "administrator"
    assert report["uut"]["execTime"] == pytest.approx(2.695)
    assert report["start"].startswith("2019-05-15T14:31:11.452")
    assert report["root"]["seqCall"]["name"] == "Computer Motherboard Test Sequence VIC.seq"
    assert report["root"]["name"] == "MainSequence" and report["root"]["causedSeqFailure"] is True
    steps = {s["name"]: s for s in _walk(report["root"])}
    video = steps["Video Test"]
    assert video["stepType"] == "ET_NLT"
    assert video["numericMeas"] == [{"compOp": "GTLT", "name": None, "status": "P", "unit": "microseconds",
                                     "value": 5.0, "highLimit": 10.0, "lowLimit": 0.0}]
    keyboard = steps["Keyboard Test"]
    assert keyboard["numericMeas"][0]["compOp"] == "GT" and keyboard["numericMeas"][0]["lowLimit"] == 5.0
    assert keyboard["status"] == "F" and keyboard["numericMeas"][0]["status"] == "F"
    assert steps["ROM Diagnostics"]["status"] == "S"  # UserDefined + qualifier Skipped
    assert steps["Powerup Test"]["booleanMeas"] == [{"name": None, "status": "P"}]
    assert steps["CPU Test"]["stepType"] == "SequenceCall" and len(steps["CPU Test"]["steps"]) == 4
    assert steps["Add Partnumber"]["group"] == "S" and steps["Add Partnumber"]["stepType"] == "Statement"
    assert steps["If"]["reportText"] == "{True}"
    assert report["miscInfos"][0]["description"] == "Critical failure" and "Keyboard Test" in report["miscInfos"][0]["text"]
    notes = next(d for d in report["additionalData"] if d["name"] == NOTES_NAME)
    assert any("revision" in p["value"] for p in notes["props"])
    atml = next(d for d in report["additionalData"] if d["name"] == "ATML")
    assert {p["name"] for p in atml["props"]} >= {"uuid", "TestProgram configuration"}


def test_atml_arguments_fill_what_the_file_lacks_and_strings_keep_their_expected_value() -> None:
    raw = (INPUTS / "atml" / "TS2017_ATML2.02 - FATv1.XML").read_bytes()
    [report] = convert_atml_bytes(raw, {"part_number": "100200", "revision": "A2", "process_code": "20"}, CTX)
    assert (report["pn"], report["rev"], report["processCode"]) == ("100200", "A2", 20)
    notes = next((d for d in report["additionalData"] if d["name"] == NOTES_NAME), {"props": []})
    assert not any("part number" in p["value"] or "revision" in p["value"] for p in notes["props"])
    strings = [m for s in _walk(report["root"]) for m in s.get("stringMeas") or []]
    assert {m["compOp"] for m in strings} >= {"CASESENSIT", "LOG"}
    production = (INPUTS / "atml" / "Report_LS2621-1002[Passed][9190300075][2019-03-11][15 06 37].xml").read_bytes()
    [line] = convert_atml_bytes(production, {}, CTX)
    serial = [m for s in _walk(line["root"]) for m in s.get("stringMeas") or []]
    assert serial and all(m["compOp"] == "IGNORECASE" and m["limit"] == m["value"] == "90300075" for m in serial)
    by_name = {s["name"]: s for s in _walk(report["root"])}
    percent = by_name["EQT - PERCENTAGE"]["numericMeas"][0]  # nominal 5 ± 10 %: the file holds the raw 10/10
    assert (percent["compOp"], percent["lowLimit"], percent["highLimit"]) == ("GELE", 4.5, 5.5)
    assert by_name["EQT - PERCENTAGE"]["additionalResults"][0]["name"] == "Numeric limits"
    loops = [s for s in _walk(report["root"]) if "loop" in s]
    assert loops and any(s["loop"]["num"] == 3 for s in loops)
    with pytest.raises(ConversionError, match="process_code"):
        convert_atml_bytes(raw, {"process_code": "ten"}, CTX)


def test_a_batch_gives_one_report_per_uut_with_distinct_repeatable_ids() -> None:
    text = (INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml").read_text(encoding="iso-8859-1")
    head, _, rest = text.partition("<trc:TestResults ")
    body = "<trc:TestResults " + rest[:rest.index("</trc:TestResults>")] + "</trc:TestResults>\n"
    empty_sn = body.replace("<c:SerialNumber>123456789</c:SerialNumber>", "<c:SerialNumber></c:SerialNumber>")
    batch = (head + body + body + empty_sn + "</trc:TestResultsCollection>\n").encode("iso-8859-1")
    reports = convert_atml_bytes(batch, {}, CTX)
    assert [r["sn"] for r in reports] == ["123456789", "123456789", "unknown"]
    first = [parse_header(r).key for r in _finish(reports, sha="a" * 64, converter="atml")]
    again = [parse_header(r).key for r in _finish(convert_atml_bytes(batch, {}, CTX), sha="a" * 64, converter="atml")]
    assert len(set(first)) == 3 and first == again


def test_atml_6_01_namespaces_and_utf_8_read_the_same_and_unknown_elements_are_named() -> None:
    latin = (INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml").read_bytes()
    [expected] = convert_atml_bytes(latin, {}, CTX)
    text = latin.decode("iso-8859-1")
    v601 = (text.replace("urn:IEEE-1636.1:2011:01:", "urn:IEEE-1636.1:2013:")
            .replace("urn:IEEE-1671:2010:Common", "urn:IEEE-1671:2010:Common")
            .replace("ATMLTestResults/2.0", "ATMLTestResults/3.0")
            .replace('encoding="iso-8859-1"', 'encoding="UTF-8"').replace("Ragnar123", "Ragnar123-æøå"))
    [report] = convert_atml_bytes(v601.encode("utf-8"), {}, CTX)
    assert report["pn"] == "Ragnar123-æøå"
    assert report["root"] == expected["root"]
    extra = text.replace("<tr:Personnel>", "<tr:Frobnicator a='1'/><tr:Personnel>", 1).replace(
        "<ts:Index value='0'/>", "<ts:Index value='0'/><ts:Mystery value='1'/>", 1)
    [noted] = convert_atml_bytes(extra.encode("iso-8859-1"), {}, CTX)
    notes = next(d for d in noted["additionalData"] if d["name"] == NOTES_NAME)
    line = next(p["value"] for p in notes["props"] if p["value"].startswith("not converted"))
    assert "<Frobnicator> ×1" in line and "TSStepProperties/Mystery ×1" in line


@pytest.mark.parametrize(("value", "qualifier", "expected"), [
    ("Passed", None, "P"), ("Failed", None, "F"), ("Error", None, "E"), ("Errored", None, "E"),
    ("Terminated", None, "T"), ("Aborted", None, "T"), ("Aborted", "Skipped", "S"), ("Skipped", None, "S"),
    ("NotStarted", None, "S"), ("Done", None, "D"), ("Informational", None, "D"), ("UserDefined", "Passed", "P"),
    ("UserDefined", "Tommy", "D"), ("Whatever", None, "D")])
def test_every_outcome_has_a_nearest_wats_status(value: str, qualifier: str | None, expected: str) -> None:
    status, note = nearest_status(value, qualifier)
    assert status == expected
    assert (note is not None) == (value in ("Whatever",) or (value == "UserDefined" and qualifier == "Tommy"))


# ------------------------------------------------------------------------------------ WSTF

def test_wstf_sample_keeps_every_row_as_a_measurement_or_step() -> None:
    text = WSTF.read_text()
    [report] = convert_wstf_text(text, {}, CTX)
    rows = [line.split("\t") for line in text.splitlines()]
    kinds = Counter(r[0] for r in rows)
    got = _counts(report)
    assert got["numericMeas"] == kinds["NumericLimitTest"] == 9
    assert got["booleanMeas"] == kinds["PassFailTest"] == 5
    assert got["stringMeas"] == kinds["StringValueTest"] == 1
    # root + sequence calls + action + one step per run of rows naming a new step
    starts = sum(1 for prev, row in zip([[""]] + rows, rows)
                 if row[0] in ("NumericLimitTest", "PassFailTest", "StringValueTest")
                 and row[1] and not (prev[0] == row[0] and prev[1] in ("", row[1])))
    assert got["steps"] == 1 + kinds["SequenceCall"] + kinds["ActionStep"] + starts == 13
    steps = {s["name"]: s for s in _walk(report["root"])}
    assert [m["name"] for m in steps["Test3"]["numericMeas"]] == ["meas1", "meas2", "meas3"]
    assert steps["Test3"]["status"] == "F" and steps["Test3"]["causedSeqFailure"] is True
    assert [m["name"] for m in steps["test2.2"]["numericMeas"]] == ["meas1", "meas2"]
    assert steps["SubSeq1"]["reportText"] == "This is a seq call report text"
    assert (report["pn"], report["sn"], report["rev"], report["result"]) == ("100200", "423664753", "A", "F")
    assert report["processName"] == "SW Debug" and report["processCode"] == 10
    assert report["startUTC"] == "2014-07-04T12:09:04Z"
    assert report["uut"]["batchSN"] == "B888" and report["uut"]["user"] == "Martin Lentz"
    assert report["subUnits"][1] == {"partType": "Controller Card", "pn": "Partno 2", "sn": "SN 5555", "rev": "Rev B"}
    assert report["miscInfos"] == [{"description": "uCSwVer", "text": "1.0", "numeric": None}]
    assert report["root"]["seqCall"] == {"path": "c:\\test.seq", "name": "test.seq", "version": "1.0.0.0"}
    load_report(_finish([report])[0])


def test_wstf_operators_statuses_charts_and_several_uuts() -> None:
    def unit(sn: str, rows: list[str], status: str = "") -> str:
        header = [f"SerialNumber\t{sn}", "PartNumber\tPN-1", "Revision\tB", "OperationTypeCode\t30",
                  "StartDateTime\t2026-03-01T10:00:00", "UTCStartDateTime\t2026-03-01T09:00:00"]
        footer = [f"UUTStatus\t{status}"] if status else []
        return "\n".join(["--Header-Start--", *header, "--Step-Data-Start--", *rows, "--Step-Data-End--", *footer,
                          "--UUT-End--"]) + "\n"
    ops = ["NumericLimitTest\tN1\t\t5\t1\t9\tLTGT\tV", "NumericLimitTest\tN2\t\t5\t5\t\tNE\tV",
           "NumericLimitTest\tN3\t\t5\t\t", "StringValueTest\tS1\t\tAbC\tabc\t\tIGNORECASE",
           "PassFailTest\tP1\t\tFALSE", "ActionStep\tA1", "Chart\tLine\tCurve\tV\tvolt\ts\ttime",
           "Series\tplot\tXYG\t1;2;3\t0;1;2"]
    text = unit("A1", ops) + unit("A2", ["NumericLimitTest\tOK\t\t1\t0\t2\tGELE"], "Passed")
    first, second = convert_wstf_text(text, {}, CTX)
    steps = {s["name"]: s for s in _walk(first["root"])}
    assert steps["N1"]["numericMeas"][0]["status"] == "F"  # 5 is inside 1..9: LTGT fails
    assert steps["N2"]["numericMeas"][0]["status"] == "F" and steps["N2"]["numericMeas"][0]["highLimit"] is None
    assert steps["N3"]["numericMeas"][0]["compOp"] == "LOG" and steps["N3"]["status"] == "P"
    assert steps["S1"]["stringMeas"][0]["status"] == "P"
    assert steps["P1"]["status"] == "F" and steps["A1"]["status"] == "D"
    assert steps["A1"]["chart"]["series"] == [{"dataType": "XYG", "name": "plot", "xdata": "0;1;2", "ydata": "1;2;3"}]
    assert first["result"] == "F" and second["result"] == "P" and first["processCode"] == 30
    assert first["start"] == "2026-03-01T10:00:00+01:00" and first["startUTC"] == "2026-03-01T09:00:00Z"
    ids = [parse_header(r).key for r in _finish([first, second])]
    assert len(set(ids)) == 2


@pytest.mark.parametrize(("rows", "message"), [
    (["NumericLimitTest\tX\t\tabc"], "line 7: Value 'abc' is not a number"),
    (["NumericLimitTest\tX\t\t1\t\t\tGELE"], "needs LowLimit and HighLimit"),
    (["NumericLimitTest\tX\t\t1\t\t\tABOUT"], "not a WATS comparison"),
    (["SequenceCall\tS"], "still open"),
    (["EndSequenceCall"], "without an open SequenceCall"),
    (["SequenceCall\tS", "EndSequenceCall\tT"], "does not close"),
    (["Frobnicate\tX"], "not a step type"),
    (["PassFailTest\tP\t\tmaybe"], "TRUE or FALSE"),
])
def test_wstf_errors_name_the_line_and_the_fix(rows: list[str], message: str) -> None:
    text = "\n".join(["--Header-Start--", "SerialNumber\t1", "PartNumber\t2", "OperationTypeCode\t10",
                      "UTCStartDateTime\t2026-01-01T00:00:00", "--Step-Data-Start--", *rows, "--Step-Data-End--",
                      "--UUT-End--"])
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_wstf_text(text, {}, CTX)


def test_a_big_flying_probe_file_converts_quickly() -> None:
    rows = [f"NumericLimitTest\tR{i}\t\t{i % 97}.5\t0\t100\tGELE\tOhm\t\t0.001" for i in range(5000)]
    text = "\n".join(["--Header-Start--", "SerialNumber\tFP-1", "PartNumber\tPCB-9", "OperationTypeCode\t10",
                      "UTCStartDateTime\t2026-01-01T00:00:00", "--Step-Data-Start--", *rows, "--Step-Data-End--",
                      "UUTStatus\tPassed", "--UUT-End--"])
    started = time.perf_counter()
    [report] = convert_wstf_text(text, {}, CTX)
    [raw] = _finish([report])
    elapsed = time.perf_counter() - started
    assert _counts(report)["numericMeas"] == 5000 and len(report["root"]["steps"]) == 5000
    assert elapsed < 5.0, f"{elapsed:.2f} s for 5,000 rows"  # catches quadratic work; ~0.1 s on these machines
    assert len(raw) > 500_000


# ------------------------------------------------------------------------------------ WSXF repair reports

def test_wsxf_uur_converts_to_the_wsjf_repair_sample_field_for_field() -> None:
    [report] = convert_wsxf_bytes(UUR_XML.read_bytes())
    expected = json.loads((REPORTS / "uur_example.json").read_bytes())
    assert report == expected and list(report) == list(expected)
    [raw] = _finish([report], converter="wsxf")
    assert json.loads(raw) == expected and parse_header(raw).type == "R"


def test_wsxf_uur_attachments_parts_and_broken_references() -> None:
    xml = UUR_XML.read_text()
    data = base64.b64encode(b"photo").decode()
    richer = xml.replace("</Report>", '<ReportUnitHierarchy Idx="1" ParentIDX="0" PartType="PSU" PN="P-2" SN="S-2" '
                         'Rev="C" /><Failures Idx="1" PartIdx="1" Category="Component" Code="Open" CompRef="R7" '
                         f'StepID="12"><Comment>a</Comment><Comment>b</Comment></Failures><Binary FailIdx="1"><Data '
                         f'ContentType="image/png" FileName="r7.png">{data}</Data></Binary><Binary><Data '
                         f'ContentType="text/plain" FileName="log.txt">{data}</Data></Binary></Report>')
    [report] = convert_wsxf_bytes(richer.encode())
    psu = report["subUnits"][1]
    assert psu["parentIdx"] == 0 and psu["failures"][0]["comment"] == "a\nb"
    assert psu["failures"][0]["attachments"] == [{"contentType": "image/png", "data": data, "name": "r7.png", "id": None}]
    assert report["binaryData"][0]["name"] == "log.txt"
    with pytest.raises(ConversionError, match="part index 5"):
        convert_wsxf_bytes(xml.replace('PartIdx="0"', 'PartIdx="5"').encode())
    with pytest.raises(ConversionError, match="needs its <UUR> element"):
        convert_wsxf_bytes(re.sub(r"<UUR .*?</UUR>", "", xml).encode())


# ------------------------------------------------------------------------------------ the emulator

def test_every_sample_reaches_the_emulator_byte_for_byte() -> None:
    items: list[bytes] = []
    for path in ATML:
        items += _finish(convert_atml_bytes(path.read_bytes(), {}, CTX), sha=path.name.encode().hex()[:64].ljust(64, "0"))
    items += _finish(convert_wstf_text(WSTF.read_text(), {}, CTX), sha="1" * 64)
    items += _finish(convert_wsxf_bytes(UUR_XML.read_bytes()), sha="2" * 64)
    with Emulator(port=0, seed=1) as emu, httpx.Client(timeout=10) as client:
        for raw in items:
            answer = client.post(f"{emu.url}/api/Report/WSJF", content=raw,
                                 headers={"Authorization": f"Basic {DEFAULT_TOKEN}", "Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
            assert emu.report(parse_header(raw).key) == raw
        assert len(emu.received_ids()) == len(items) == 5


# ------------------------------------------------------------------------------------ hostile input

_BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<TestResults><UUT>&lol2;</UUT></TestResults>"""
_EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><TestResults>&e;</TestResults>"""


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "empty"), (b"   \n", "white space"), (_BILLION_LAUGHS, "DOCTYPE"), (_EXTERNAL, "DOCTYPE"),
    ("<TestResults/>".encode("utf-16"), "UTF-16"), (b"<TestResults><ResultSet>", "not well-formed"),
    (b"<Reports/>", "not an ATML"), (b"<TestResults/>", "no <ResultSet>"),
    (b'<?xml version="1.0" encoding="utf-8"?><TestResults><UUT>\xe9</UUT></TestResults>', "not well-formed"),
])
def test_atml_refuses_hostile_and_broken_files_clearly(raw: bytes, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert_atml_bytes(raw, {}, CTX)


def _must_convert_or_refuse(convert: Any, raw: bytes) -> None:
    try:
        reports = convert(raw)
    except ConversionError as exc:
        assert exc.message and "\n" not in exc.message.strip()
        return
    try:
        for raw_report in _finish(reports):
            parse_header(raw_report)
    except ConversionError:
        pass  # e.g. a cut that left a header field empty: refused by validation, with a message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=32012), junk=st.binary(max_size=40))
def test_atml_truncated_or_spliced_anywhere_is_converted_or_refused(cut: int, junk: bytes) -> None:
    raw = (INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml").read_bytes()
    _must_convert_or_refuse(lambda b: convert_atml_bytes(b, {}, CTX), raw[:cut] + junk)


@settings(max_examples=80, deadline=None)
@given(cut=st.integers(min_value=0, max_value=2510), junk=st.text(max_size=30), keep_rest=st.booleans())
def test_wstf_truncated_or_spliced_anywhere_is_converted_or_refused(cut: int, junk: str, keep_rest: bool) -> None:
    text = WSTF.read_text()
    _must_convert_or_refuse(lambda t: convert_wstf_text(t, {}, CTX), text[:cut] + junk + (text[cut:] if keep_rest else ""))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=1600), junk=st.binary(max_size=20))
def test_wsxf_uur_truncated_or_spliced_anywhere_is_converted_or_refused(cut: int, junk: bytes) -> None:
    raw = UUR_XML.read_bytes()
    _must_convert_or_refuse(convert_wsxf_bytes, raw[:cut] + junk + raw[cut:])


async def test_bad_files_in_an_intake_are_kept_whole_with_the_reason(tmp_path: Path) -> None:
    data, da, dw = tmp_path / "data", tmp_path / "atml", tmp_path / "wstf"
    da.mkdir(), dw.mkdir()
    good_atml = INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml"
    shutil.copy(good_atml, da / good_atml.name)
    (da / "cut.xml").write_bytes(good_atml.read_bytes()[:9000])
    (da / "laughs.xml").write_bytes(_BILLION_LAUGHS)
    shutil.copy(WSTF, dw / "good.txt")
    (dw / "cut.txt").write_bytes(WSTF.read_bytes()[:1500])
    (dw / "utf16.txt").write_bytes(WSTF.read_text().encode("utf-16"))
    bad = {"atml": {"cut.xml": (da / "cut.xml").read_bytes(), "laughs.xml": _BILLION_LAUGHS},
           "wstf": {"cut.txt": (dw / "cut.txt").read_bytes(), "utf16.txt": (dw / "utf16.txt").read_bytes()}}
    sections = [IntakeSection(name="atml", watch=str(da), converter="atml", settle_ms=0),
                IntakeSection(name="wstf", watch=str(dw), converter="wstf", settle_ms=0)]

    with Spool(data) as spool:
        intake = Intake(sections, spool, data, STATION, options=FAST)
        try:
            await intake.scan_once()
            status = intake.status()
        finally:
            await intake.aclose()
        assert len(spool.keys("pending")) == 2  # one from each good file
        for key in spool.keys("pending"):
            load_report(spool.read(key))
    reasons = {"cut.xml": "not well-formed", "laughs.xml": "DOCTYPE", "cut.txt": "--UUT-End--", "utf16.txt": "UTF-16"}
    for intake, files in bad.items():
        folder = data / "rejected" / intake
        for name, content in files.items():
            assert (folder / name).read_bytes() == content
            assert reasons[name] in (folder / f"{name}.error.txt").read_text()
        assert status["intakes"][intake]["counts"]["rejected"] == 2
    assert not list(da.iterdir()) and not list(dw.iterdir())


# ------------------------------------------------------------------------------------ the command line

@pytest.fixture
def station(tmp_path: Path) -> Path:
    config = tmp_path / "station.yaml"
    config.write_text("station: {name: TEST-01, location: Lab, purpose: Development}\n"
                      "server: {url: 'http://127.0.0.1:9'}\ndata_dir: ./data\n")
    return config


def test_submit_takes_atml_and_wstf_and_dry_run_changes_nothing(station: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in ATML]
    assert cli_main(["-c", str(station), "submit", *files, "--converter", "atml", "--dry-run"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["machineName"] for line in lines)
    keys = [parse_header(line).key for line in lines]
    assert captured.err.count("would accept:") == 3 and "nothing was accepted" in captured.err
    assert not (tmp_path / "data" / "spool").exists() or not Spool(tmp_path / "data", readonly=True).keys()

    assert cli_main(["-c", str(station), "submit", *files, "--converter", "atml"]) == 0
    assert cli_main(["-c", str(station), "submit", str(WSTF), "--converter", "wstf"]) == 0
    out = capsys.readouterr().out
    assert out.count("accepted:") == 4 and all(k in out for k in keys)  # the dry run showed the very ids
    with Spool(tmp_path / "data") as spool:
        assert len(spool.keys("pending")) == 4
        for key in keys:
            assert json.loads(spool.read(key))["location"] == "Lab"
    assert cli_main(["-c", str(station), "submit", str(INPUTS / "invalid.xml"), "--converter", "atml",
                     "--dry-run"]) == 4
    assert "not well-formed XML" in capsys.readouterr().err


def test_atml_and_wstf_converters_are_registered_with_their_patterns() -> None:
    assert AtmlConverter.name == "atml" and AtmlConverter.patterns == ("*.xml",)
    assert WstfConverter.name == "wstf" and WstfConverter.patterns == ("*.txt",)


def test_the_readme_example_converter_is_the_tested_file_and_dry_run_shows_its_report(
        station: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = INPUTS / "converters" / "ohm_meter.py"
    readme = (FIXTURES.parent / "README.md").read_text()
    assert example.read_text() in readme  # the guide shows exactly the file tested here
    spec = f"{example}:OhmMeterConverter"
    assert cli_main(["-c", str(station), "submit", str(INPUTS / "ohm-meter.log"), "--converter", spec,
                     "--dry-run"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    report = json.loads(line)
    assert (report["sn"], report["result"], report["machineName"], report["purpose"]) == \
        ("SN-0042", "F", "TEST-01", "Development")
    assert [s["status"] for s in report["root"]["steps"]] == ["P", "F"]
    broken = station.parent / "broken.log"
    broken.write_text("serial=1 part=2\nR1 x\n")
    assert cli_main(["-c", str(station), "submit", str(broken), "--converter", spec, "--dry-run"]) == 4
    assert "not an ohm-meter log" in capsys.readouterr().err
