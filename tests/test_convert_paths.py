"""The converters' refusals and edge cases, one per branch, on the real samples and variations of them.

Each case asserts what the person sees: the ConversionError's message (naming the line or the
field and the fix), or the value the edge case produces in the report. The samples are the files in
fixtures/ (copies of /work/shared/data), mutated by plain text replacement so every case reads as
"this sample, with that changed".
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.engine.convert.api import (ConversionError, ConverterLoadError, ConvertContext, converter_patterns,
                                            finish_reports, load_converter)
from stationflow.engine.convert.atml import convert_atml_bytes
from stationflow.engine.convert.csvfile import CsvConverter, convert_csv_text
from stationflow.engine.convert.preview import preview_files
from stationflow.engine.convert.wsjfbuild import NOTES_NAME, parse_moment, prop
from stationflow.engine.convert.wstf import WstfConverter, convert_wstf_text
from stationflow.engine.convert.wsxf import WsxfConverter, convert_wsxf_bytes
from stationflow.engine.convert.atml import AtmlConverter
from stationflow.schemas.config import StationSection
from stationflow.schemas.wsjf import parse_header
from tests.conftest import FIXTURES, REPORTS

INPUTS = FIXTURES / "inputs"
CTX = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="test",
                     arguments={}, source_name="x", source_mtime=1_790_000_000.0)
NO_MTIME = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="test",
                          arguments={}, source_name="x", source_mtime=None)
STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")


def _walk(step: dict[str, Any]) -> list[dict[str, Any]]:
    out = [step]
    for child in step.get("steps") or []:
        out.extend(_walk(child))
    return out


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in _walk(report["root"])}


def _notes(report: dict[str, Any]) -> list[str]:
    entry = next((d for d in report["additionalData"] if d["name"] == NOTES_NAME), {"props": []})
    return [p["value"] for p in entry["props"]]


def _valid(report: dict[str, Any], converter: str = "test") -> None:
    """The report passes the same validation the spool applies."""
    for raw in finish_reports([report], CTX, sha256="0" * 64, converter=converter):
        parse_header(raw)


# ------------------------------------------------------------------------------------ WATS text format

def _wstf(rows: list[str], header: list[str] | None = None, footer: list[str] | None = None) -> str:
    head = header if header is not None else ["SerialNumber\t1", "PartNumber\t2", "OperationTypeCode\t10",
                                              "UTCStartDateTime\t2026-01-01T00:00:00"]
    return "\n".join(["--Header-Start--", *head, "--Step-Data-Start--", *rows, "--Step-Data-End--",
                      *(footer or []), "--UUT-End--"])


_H = ["SerialNumber\t1", "PartNumber\t2", "UTCStartDateTime\t2026-01-01T00:00:00"]  # no process code


@pytest.mark.parametrize(("text", "message"), [
    (_wstf([], footer=["ExecutionTime\tslow"]), "executiontime 'slow' is not a number"),
    (_wstf([], header=["SerialNumber\t1", "PartNumber\t2", "OperationTypeCode\t10"]), None),  # see NO_MTIME test
    (_wstf(["NumericLimitTest\tX\t\t1\t\t\t\t\t\tquick"]), "line 7: StepExecutionTime 'quick' is not a number"),
    (_wstf(["NumericLimitTest\tX\t\t1\t\t\t\t\t\t\t\tE42"]), "line 7: StepErrorCode 'E42' is not a whole number"),
    (_wstf(["NumericLimitTest\tX\t\t"]), "line 7: a NumericLimitTest needs a number in Value"),
    (_wstf(["StringValueTest\tS\t\tabc\tabc\t\tGELE"]), "CompOperator 'GELE' is not a string comparison"),
    (_wstf(["Chart\tLine\tC"]), "line 7: a Chart line needs a step before it"),
    (_wstf(["ActionStep\tA", "Chart\tLine", "Chart\tLine"]), "line 9: the step 'A' already has a chart"),
    (_wstf(["ActionStep\tA", "Series\ts\tXYG\t1;2"]), "line 8: a Series line needs a Chart line before it"),
    (_wstf(["ActionStep\tA", "Chart\tLine", "Series\ts\tXY\t1;2"]), "Series data type 'XY' is not XYG"),
    (_wstf(["ActionStep\tA", "Chart\tLine", "Series\ts\tXYG\t\t1;2"]), "line 9: a Series needs Y data"),
    (_wstf(["ActionStep\tA", "Chart\tLine", "Series\ts\tXYG\t1;2\t1;2;3"]), "X and Y data of the series differ"),
    (_wstf(["ActionStep\tA", "Chart\tLine", "Series\ts\tXYG\t1;two"]), "line 9: Y data 'two' is not a number"),
    (_wstf([], footer=["UUTStatus\tMaybe"]), "UUTStatus 'Maybe' is not Passed, Failed"),
    (_wstf([], header=["SerialNumber\t1", "OperationTypeCode\t10", "UTCStartDateTime\t2026-01-01T00:00:00"]),
     "UUT at line 1: no PartNumber in the header"),
    (_wstf([]).replace("--Step-Data-Start--", "--Header-Start--\n--Step-Data-Start--", 1),
     "--Header-Start-- before the previous UUT's --UUT-End--"),
    ("-- Header-Start--\nSerialNumber\t1\n", "the file ends inside the UUT that starts at line 1"),
    (_wstf(["NumericLimitTest\tX\t\t1\t\t\t\t\tMaybe"]), "line 7: status 'Maybe' is not one of Passed"),
])
def test_wstf_refusals_name_the_line_and_the_field(text: str, message: str | None) -> None:
    if message is None:
        [report] = convert_wstf_text(text, {}, CTX)  # no start time: the file's time, with a note saying so
        assert any("modification time" in n for n in _notes(report))
        with pytest.raises(ConversionError, match="UUT at line 1: no StartDateTime or UTCStartDateTime"):
            convert_wstf_text(text, {}, NO_MTIME)
        return
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_wstf_text(text, {}, CTX)


def test_wstf_process_code_comes_from_the_arguments_by_name_or_is_refused() -> None:
    text = _wstf([], header=[*_H, "OperationTypeName\tBurn-in"])
    [report] = convert_wstf_text(text, {"process_codes": {"Burn-in": "40"}}, CTX)
    assert report["processCode"] == 40 and report["processName"] == "Burn-in"
    with pytest.raises(ConversionError, match=re.escape("arguments: process code 'forty' is not a whole number")):
        convert_wstf_text(text, {"process_code": "forty"}, CTX)


def test_wstf_multiple_blocks_error_codes_limits_and_statuses_that_ripple_up() -> None:
    rows = [
        "SequenceCall\tSeq\t\t\t\t\t\t\tPassed",
        "MultipleNumericLimitTest\tM",                                   # opens the step, no measurement yet
        "MultipleNumericLimitTest\t\tm1\t5\t1\t9",
        "MultipleNumericLimitTest\t\tm2\t50\t1\t9",                      # fails: the step and Seq fail
        "EndMultipleNumericLimitTest\t\t\t\t\t\t\t\tFailed\t2.5",
        "NumericLimitTest\tHigh\t\t3\t\t4",                               # only a high limit: LE, kept in lowLimit
        "NumericLimitTest\tErr\t\t3\t\t\tLOG\t\tError\t\tr\t17\tbroken probe\tTrue",
        "EndSequenceCall",
        "MultiplePassFailTest\tEmpty",                                    # never gets a measurement
        "EndMultiplePassFailTest",
    ]
    [report] = convert_wstf_text(_wstf(rows), {}, CTX)
    steps = _steps(report)
    assert [m["status"] for m in steps["M"]["numericMeas"]] == ["P", "F"]
    assert steps["M"]["status"] == "F" and steps["M"]["totTime"] == 2.5 and steps["M"]["stepType"] == "ET_MNLT"
    assert steps["Seq"]["status"] == "F"  # written Passed, but a step inside failed
    high = steps["High"]["numericMeas"][0]
    assert (high["compOp"], high["lowLimit"], high["highLimit"], high["status"]) == ("LE", 4.0, None, "P")
    err = steps["Err"]
    assert err["numericMeas"][0]["status"] == "F"  # an Error measurement counts as failed
    assert (err["errorCode"], err["errorMessage"], err["causedSeqFailure"]) == (17, "broken probe", True)
    assert steps["Empty"]["stepType"] == "Action"
    assert report["result"] == "F"
    _valid(report)


def test_wstf_files_in_another_encoding_are_refused_with_the_fix(tmp_path: Path) -> None:
    source = tmp_path / "r.txt"
    source.write_bytes(_wstf([], header=[*_H, "OperatorName\tJos\xe9"]).encode("cp1252"))
    with pytest.raises(ConversionError, match=r"not valid utf-8-sig text at byte \d+ — set arguments.encoding"):
        WstfConverter().convert(source, CTX)
    ctx = replace(CTX, arguments={"encoding": "klingon"})
    with pytest.raises(ConversionError, match="arguments.encoding 'klingon' is not an encoding Python knows"):
        WstfConverter().convert(source, ctx)
    ok = replace(CTX, arguments={"encoding": "cp1252"})
    [report] = WstfConverter().convert(source, ok)
    assert report["uut"]["user"] == "José"


# ------------------------------------------------------------------------------------ CSV

_CSV = (INPUTS / "fct-sample.csv").read_text()


def _csv_rows(*rows: str, header: str = "sn,pn,rev,process_code,start,step,value,unit,low,high,comp,status") -> str:
    return "\n".join([header, *rows])


@pytest.mark.parametrize(("text", "arguments", "message"), [
    (_CSV, {"delimiter": ";;"}, "arguments.delimiter must be one character, got ';;'"),
    (_CSV, {"columns": ["sn"]}, "arguments.columns must map column names"),
    (_CSV, {"decimal": ";"}, "arguments.decimal must be '.' or ',', got ';'"),
    (_CSV, {"defaults": ["rev"]}, "arguments.defaults must map unit fields to values"),
    ("sn,step," + "x" * 140_000 + "\nA,B,C", {}, "line 1: not readable as CSV"),
    (_csv_rows("S1,P,A,10,,R,1,V,2,3,,", "S1,P,A,10,,R2,\"" + "y" * 140_000 + "\",,,,,"), {},
     "line 3: not readable as CSV"),
    (_csv_rows("S1,P,A,10,,R,1,V,inf,3,,"), {}, "line 2: low 'inf' is not a finite number"),
    (_csv_rows("S1,P,A,10,yesterday,R,1,V,,,,"), {}, "start 'yesterday' is not a date-time"),
    (_csv_rows("S1,P,A,10,,R,1,V,,,ABOUT,"), {}, "line 2: comp 'ABOUT' is not a numeric comparison"),
    (_csv_rows("S1,P,A,10,,R,1,V,,,EQ,"), {}, "line 2: comp EQ needs a limit or a status"),
    (_csv_rows("S1,P,A,10,,R,abc,,abc,,GELE,"), {}, "line 2: comp 'GELE' is not a text comparison"),
    (_csv_rows("S1,P,A,10,,R,1,,,,,,maybe", header="sn,pn,rev,process_code,start,step,value,unit,low,high,comp,status,result"),
     {}, "result 'maybe' is not one of P, F, E, T"),
])
def test_csv_refusals_say_what_to_change(text: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_csv_text(text, arguments, CTX)


def test_a_csv_header_with_an_unclosed_quote_is_refused_in_one_line() -> None:
    """Found by the mutation test below: the header's cells were shown with their line breaks, so
    the CLI printed a message over several lines."""
    with pytest.raises(ConversionError) as caught:
        convert_csv_text('"sn;pn;Messwert\nSN1;PN;1\n', {}, CTX)
    assert "no column 'step' in the header (sn;pn;Messwert SN1;PN;1)" in caught.value.message
    assert "\n" not in caught.value.message


def test_csv_text_comparisons_result_column_and_process_name() -> None:
    header = "sn,pn,rev,process_code,process_name,result,step,value,low,comp"
    text = _csv_rows("S1,P,A,10,ICT,Passed,Logged,anything,,LOG", "S1,P,A,10,ICT,Passed,Case,ABC,abc,IGNORECASE",
                     "S1,P,A,10,ICT,Passed,Plain,abc,,", header=header)
    report = convert_csv_text(text, {}, CTX)
    steps = _steps(report)
    assert [steps[n]["stringMeas"][0]["status"] for n in ("Logged", "Case", "Plain")] == ["P", "P", "P"]
    assert report["result"] == "P" and report["processName"] == "ICT"
    assert report["start"] == datetime.fromtimestamp(1_790_000_000.0).astimezone().isoformat()  # the file's time
    _valid(report)
    with pytest.raises(ConversionError, match="no start column and no file time"):
        convert_csv_text(text, {}, NO_MTIME)


def test_csv_unknown_encoding_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "r.csv"
    source.write_text(_CSV)
    ctx = replace(CTX, arguments={"encoding": "klingon"})
    with pytest.raises(ConversionError, match="arguments.encoding 'klingon' is not an encoding Python knows"):
        CsvConverter().convert(source, ctx)


# ------------------------------------------------------------------------------------ WSXF (test and repair)

_XML = (REPORTS / "uut-wsxf-export.xml").read_text(encoding="utf-8")
_UUR = (INPUTS / "uur-wsxf.xml").read_text(encoding="utf-8")


def _swap(text: str, old: str, new: str) -> bytes:
    assert old in text, f"the sample no longer holds {old!r}"
    return text.replace(old, new, 1).encode("utf-8")


@pytest.mark.parametrize(("raw", "message"), [
    (_swap(_XML, 'ExecutionTime="123.67"', 'ExecutionTime="fast"'), "UUT.ExecutionTime: 'fast' is not a number"),
    (_swap(_XML, 'TestSocketIndex="999"', 'TestSocketIndex="nine"'), "UUT.TestSocketIndex: 'nine' is not a whole number"),
    (_swap(_XML, 'StepCausedUUTFailure="false"', 'StepCausedUUTFailure="perhaps"'), "'perhaps' is not true or false"),
    (_swap(_XML, 'type="UUT"', 'type="XYZ"'), "report #1: type 'XYZ' is not UUT"),
    (_swap(_XML, "</Report></Reports>", '<Step Id="999" Group="Main" Name="Extra" StepType="Action" '
                                        'Status="Done" /></Report></Reports>'), "report #1: 2 root steps"),
    (_swap(_XML, 'StepType="SequenceCall" Status="Failed" total_time="0" StepIndex="0" StepCausedUUTFailure="false">',
           'StepType="SequenceCall" Status="Failed" total_time="0" StepIndex="0" StepCausedUUTFailure="false"><Mystery/>'),
     "element <Mystery> is not supported"),
    (_swap(_XML, '<Series Name="Fibionacci"', '<Legend/><Series Name="Fibionacci"'), "Chart: element <Legend>"),
    (_swap(_XML, 'encoding="utf-8"', 'encoding="klingon"'), "not readable XML"),
    (_swap(_UUR, '<Process Code="500" Name="Repair" />', ""), "a repair report needs <Process>"),
    (_swap(_UUR, 'Code="Burned Component"', ""), "Failures #1: a failure needs its Code"),
    (_swap(_UUR, "</Report>", '<Binary FailIdx="7"><Data ContentType="text/plain">aGk=</Data></Binary></Report>'),
     "attachment #1 names failure index 7, but no <Failures> has that Idx"),
    (_swap(_UUR, "</Report>", "<Binary></Binary></Report>"), "<Binary> without its <Data>"),
    (_swap(_UUR, "</Report>", "<Mystery/></Report>"), "element <Mystery> is not supported"),
])
def test_wsxf_refusals_name_the_report_and_the_attribute(raw: bytes, message: str) -> None:
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_wsxf_bytes(raw)


def test_wsxf_unknown_elements_are_skipped_when_asked_and_odd_numbers_still_read() -> None:
    raw = _swap(_XML, '<Series Name="Fibionacci"', '<Legend/><Series Name="Fibionacci"').decode()
    raw = raw.replace('StepCausedUUTFailure="false">', 'StepCausedUUTFailure="">' + "<Mystery/>", 1)
    raw = raw.replace('Numeric="100"', 'Numeric="1.5"', 1)
    [report] = convert_wsxf_bytes(raw.encode(), ignore_unknown=True)
    assert report["miscInfos"][0]["numeric"] == 1.5  # not a whole number: read as a float
    assert report["root"]["causedUUTFailure"] is None  # empty: not given
    fib = _steps(report)["Fibionacci"]
    assert [s["name"] for s in fib["chart"]["series"]] == ["Fibionacci", "Mean"]
    _valid(report, "wsxf")


def test_a_single_report_element_as_the_document_root_converts() -> None:
    body = re.search(r"<Report .*</Report>", _XML, re.S)
    assert body is not None
    root = body.group(0).replace("<Report ", '<Report xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf" ', 1)
    [report] = convert_wsxf_bytes(root.encode())
    assert report["sn"] == "FATTest-325"


def test_a_repair_report_without_id_or_units_gets_them_made_and_keeps_misc_ids() -> None:
    raw = _UUR.replace('ID="83AC0B8E-B575-4004-94DE-F905774C3ED8" ', "")
    raw = re.sub(r"<ReportUnitHierarchy [^>]*/>", "", raw)
    raw = raw.replace("</Report>", '<MiscInfo Description="Repair type" Id="{AB-CD}" Numeric="3">x</MiscInfo></Report>')
    raw = raw.replace("</Report>", "<Mystery/></Report>")  # skipped: ignore_unknown is set
    ctx_items = convert_wsxf_bytes(raw.encode(), ignore_unknown=True)
    [report] = ctx_items
    assert "id" not in report
    assert report["subUnits"][0]["idx"] == 0 and report["subUnits"][0]["sn"] == "MODULE-20251221230142-5519"
    assert report["subUnits"][0]["failures"][0]["code"] == "Burned Component"
    assert report["miscInfos"] == [{"description": "Repair type", "text": "x", "numeric": 3, "id": "ab-cd"}]
    [finished] = finish_reports(ctx_items, CTX, sha256="1" * 64, converter="wsxf")
    assert parse_header(finished).key  # an id was given


# ------------------------------------------------------------------------------------ ATML

_ATML = (INPUTS / "atml" / "ATML 5.00 [2 31 11 PM][5 15 2019].xml").read_text(encoding="iso-8859-1")


def _atml(old: str, new: str, text: str = _ATML) -> bytes:
    assert old in text, f"the sample no longer holds {old!r}"
    return text.replace(old, new, 1).encode("iso-8859-1")


def test_atml_without_start_time_uses_the_file_time_or_is_refused() -> None:
    raw = _atml('startDateTime = "2019-05-15T14:31:11.452" ', "")
    [report] = convert_atml_bytes(raw, {}, CTX)
    assert any("modification time" in n for n in _notes(report))
    with pytest.raises(ConversionError, match="the ResultSet has no startDateTime"):
        convert_atml_bytes(raw, {}, NO_MTIME)


def test_atml_report_outcome_missing_or_unknown_is_noted() -> None:
    [none] = convert_atml_bytes(_atml('<tr:Outcome value="Failed" />', ""), {}, CTX)
    assert none["result"] == "D" and any("no outcome" in n for n in _notes(none))
    [odd] = convert_atml_bytes(_atml('<tr:Outcome value="Failed" />',
                                     '<tr:Outcome value="UserDefined" qualifier="Wobbly" />'), {}, CTX)
    assert odd["result"] == "D" and any(n.startswith("report result:") for n in _notes(odd))


def test_atml_result_set_properties_and_definition_extensions_are_kept() -> None:
    raw = _atml("<ts:NumOfResults value = '23'/>",
                "<ts:NumOfResults value = '23'/><ts:BatchSerialNumber value='B-7'/><ts:TestSocketIndex value='3'/>"
                "<ts:Shift>night<ts:Crew/></ts:Shift><ts:Line>L4</ts:Line>")
    raw = _atml("</c:Definition>", "<c:Extension><c:Fixture>F-9</c:Fixture></c:Extension></c:Definition>",
                raw.decode("iso-8859-1"))
    [report] = convert_atml_bytes(raw, {}, CTX)
    assert report["uut"]["batchSN"] == "B-7" and report["uut"]["testSocketIndex"] == 3
    atml = {p["name"]: p for p in next(d for d in report["additionalData"] if d["name"] == "ATML")["props"]}
    assert atml["Line"]["value"] == "L4"
    assert atml["Shift"]["value"] == "night"  # an unknown element with children keeps its text
    assert atml["UUT definition"]["props"][0]["name"] == "Fixture"
    _valid(report)


def test_atml_unknown_elements_inside_a_test_are_named_in_the_notes() -> None:
    opening = re.search(r"<tr:Test ID = \"59\"[^>]*>", _ATML)
    assert opening is not None
    raw = _atml(opening.group(0), opening.group(0) + "<tr:Oddity/><tr:Extension><ts:Gadget/></tr:Extension>")
    [report] = convert_atml_bytes(raw, {}, CTX)
    notes = " ".join(_notes(report))
    assert "<Oddity>" in notes and "Extension/Gadget" in notes


_HANDMADE = """<tr:Test ID="900" name="Handmade">
  <tr:Extension><ts:TSStepProperties><ts:StepType>NumericLimitTest</ts:StepType><ts:StepGroup>Main</ts:StepGroup>
  </ts:TSStepProperties></tr:Extension>
  <tr:Data><c:Note/></tr:Data>
  <tr:TestResult ID="tr-1" name="Garbled">
    <tr:TestData><c:Datum value="abc" xsi:type="ts:TS_double"/></tr:TestData>
    <tr:Weird/>
    <tr:Outcome value="UserDefined" qualifier="Odd"/>
    <tr:TestLimits><tr:Limits><c:LimitPair operator="AND"><c:Limit comparator="GE"><c:Datum value="1" xsi:type="ts:TS_double"/>
    </c:Limit></c:LimitPair></tr:Limits></tr:TestLimits>
  </tr:TestResult>
  <tr:TestResult ID="tr-2" name="Flag"><tr:TestData><c:Datum value="true" xsi:type="ts:TS_boolean"/></tr:TestData></tr:TestResult>
  <tr:TestResult ID="tr-3" name="Text">
    <tr:TestData><c:Datum xsi:type="ts:TS_string"><c:Value>hello</c:Value></c:Datum></tr:TestData>
    <tr:TestLimits><tr:Limits><c:SingleLimit comparator="CIEQ"><c:Datum xsi:type="ts:TS_string"><c:Value>HELLO</c:Value>
    </c:Datum></c:SingleLimit></tr:Limits></tr:TestLimits>
  </tr:TestResult>
  <tr:TestResult ID="tr-4" name="Percent">
    <tr:TestData><c:Datum value="5" xsi:type="ts:TS_double"/></tr:TestData>
    <tr:TestLimits><tr:Limits><c:LimitPair operator="AND">
      <c:Limit comparator="GE"><c:Datum value="10" xsi:type="ts:TS_double"/></c:Limit>
      <c:Limit comparator="LE"><c:Datum value="n/a" xsi:type="ts:TS_double"/></c:Limit></c:LimitPair>
      <c:Extension><ts:TSLimitProperties><ts:ThresholdType>percentage</ts:ThresholdType>
      <ts:RawLimits><ts:Nominal value="5"/></ts:RawLimits></ts:TSLimitProperties></c:Extension>
    </tr:Limits></tr:TestLimits>
  </tr:TestResult>
  <tr:Outcome value="Done"/>
</tr:Test>
<tr:TestGroup name="x.seq#Grp" ID="901" callerName="Grp">
  <tr:Extension><ts:TSStepProperties><ts:StepType>SequenceCall</ts:StepType></ts:TSStepProperties></tr:Extension>
  <tr:TestResult ID="tr-9" name="Params"><tr:TestData><c:Collection><c:Item name="gain"><c:Datum value="2"
    xsi:type="ts:TS_double"/></c:Item></c:Collection></tr:TestData></tr:TestResult>
  <tr:Outcome value="Passed"/>
</tr:TestGroup>
"""


def test_atml_odd_results_are_converted_as_far_as_they_go_and_the_rest_is_noted() -> None:
    """A hand-made Test in the real sample: a value that is not a number, one limit of a pair, an
    unknown outcome, a boolean without its own outcome under a Done step, an expected string, a
    percentage limit with an unreadable bound, and elements this converter does not know."""
    [report] = convert_atml_bytes(_atml("</tr:ResultSet>", _HANDMADE + "</tr:ResultSet>"), {}, CTX)
    step = _steps(report)["Handmade"]
    garbled, percent = step["numericMeas"]
    assert garbled["value"] is None and (garbled["compOp"], garbled["lowLimit"]) == ("GE", 1.0)
    assert (percent["compOp"], percent["lowLimit"], percent["highLimit"]) == ("GELE", 4.5, None)
    assert step["booleanMeas"][0]["status"] == "P"  # TRUE, and the step (Done) says nothing better
    assert step["stringMeas"][0]["compOp"] == "IGNORECASE" and step["stringMeas"][0]["limit"] == "HELLO"
    group = _steps(report)["Grp"]  # its only result is a parameter set: kept on the group, no extra step
    assert [a["name"] for a in group["additionalResults"]] == ["Params"] and not group.get("steps")
    notes = " ".join(_notes(report))
    for expected in ("'abc' is not a number; written as null", "TestResult/Weird", "Data/Note", "Garbled"):
        assert expected in notes, expected
    _valid(report)


def test_an_atml_collection_without_test_results_is_refused() -> None:
    with pytest.raises(ConversionError, match="the ATML file holds no <TestResults>"):
        convert_atml_bytes(b'<trc:TestResultsCollection xmlns:trc="urn:x"></trc:TestResultsCollection>', {}, CTX)


# ------------------------------------------------------------------------------------ the converter API

def test_a_converter_file_that_fails_to_import_or_is_not_python_is_a_load_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("1 / 0\n")
    with pytest.raises(ConverterLoadError, match="loading .*broken.py failed: ZeroDivisionError"):
        load_converter(f"{broken}:Conv")
    shouting = tmp_path / "conv.PY"
    shouting.write_text("class Conv: pass\n")
    with pytest.raises(ConverterLoadError, match="cannot be loaded as Python"):
        load_converter(f"{shouting}:Conv")


def test_a_single_pattern_string_is_one_pattern() -> None:
    class One:
        patterns = "*.dat"

    assert converter_patterns(One) == ["*.dat"]


@pytest.mark.parametrize(("items", "message"), [
    ([{"set": {1, 2}}], "not JSON data"),
    ([42], "the converter yielded a int, not a report dict"),
    ([b"[1, 2]"], "invalid report: report #1"),
])
def test_finishing_refuses_what_is_not_a_report(items: list[Any], message: str) -> None:
    with pytest.raises(ConversionError, match=re.escape(message)):
        finish_reports(items, CTX, sha256="0" * 64, converter="t")


def test_finishing_refuses_more_reports_than_allowed() -> None:
    report = {"type": "T", "pn": "P", "sn": "S", "rev": "A", "processCode": 10, "result": "P",
              "start": "2026-01-01T00:00:00+00:00"}
    with pytest.raises(ConversionError, match="more than 1 reports from one file"):
        finish_reports([report, dict(report)], CTX, sha256="0" * 64, converter="t", max_reports=1)


def test_additional_data_values_that_json_cannot_carry_become_text() -> None:
    assert prop("v", math.nan) == {"name": "v", "type": "String", "value": "nan"}
    assert prop("l", [1, "a"]) == {"name": "l", "type": "Obj", "props": [
        {"name": "[0]", "type": "Number", "value": "1"}, {"name": "[1]", "type": "String", "value": "a"}]}
    assert parse_moment("   ") is None


async def test_preview_of_a_folder_or_a_missing_file_says_why(tmp_path: Path) -> None:
    folder, missing = tmp_path / "a-folder", tmp_path / "missing.json"
    folder.mkdir()
    first, second = await preview_files([folder, missing], STATION, converter="wsjf", workers=1)
    assert first.error == "not a regular file" and first.detail and "devices" in first.detail
    assert second.error is not None and second.error.startswith("cannot read") and not second.reports


# ------------------------------------------------------------------------------------ any mutation of a real sample

_SAMPLES = [("atml", AtmlConverter, p) for p in sorted((INPUTS / "atml").iterdir())] + [
    ("wstf", WstfConverter, INPUTS / "wstf" / "wstf-example.txt"),
    ("wsxf", WsxfConverter, REPORTS / "uut-wsxf-export.xml"),
    ("wsxf", WsxfConverter, INPUTS / "uur-wsxf.xml"),
    ("csv", CsvConverter, INPUTS / "fct-sample.csv"),
    ("csv", CsvConverter, INPUTS / "fct-semicolon.csv"),
]


@pytest.mark.parametrize(("name", "cls", "sample"), _SAMPLES, ids=[f"{n}-{p.name}" for n, _, p in _SAMPLES])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mutation_of_a_real_sample_converts_or_is_refused_cleanly(tmp_path: Path, name: str, cls: type,
                                                                     sample: Path, data: st.DataObject) -> None:
    """Replace any stretch of a real file with any bytes (a flipped byte, a cut, a splice): the
    converter returns reports the server would take, or refuses with one clear line — never
    another exception (that would reach the person as a traceback)."""
    raw = sample.read_bytes()
    start = data.draw(st.integers(0, len(raw)), label="start")
    end = data.draw(st.integers(start, min(len(raw), start + 64)), label="end")
    junk = data.draw(st.binary(max_size=16) | st.sampled_from([b"\t", b"\n", b"<", b">", b'"', b",", b";", b"-"]),
                     label="junk")
    source = tmp_path / f"m{data.draw(st.integers(0, 10**9))}{sample.suffix}"
    source.write_bytes(raw[:start] + junk + raw[end:])
    try:
        items = list(cls().convert(source, CTX))
        finished = finish_reports(items, CTX, sha256="0" * 64, converter=name)
    except ConversionError as exc:
        assert exc.message.strip() and "\n" not in exc.message.strip(), exc.message
        return
    for report_bytes in finished:
        parse_header(report_bytes)
