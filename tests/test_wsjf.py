"""The WSJF models: what the server requires is refused with a named problem, everything else survives."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.schemas.wsjf import (
    REQUIRED_FIELDS,
    Report,
    ReportHeader,
    ReportValidationError,
    dump_report,
    load_report,
    normalise_id,
    parse_header,
)

REPORTS = Path(__file__).resolve().parent.parent / "fixtures" / "reports"
SAMPLES = sorted(REPORTS.glob("*.json"))
UUT = REPORTS / "uut-wsjf-export.json"
UUR = REPORTS / "uur_example.json"


def _same(a: bytes, b: bytes) -> bool:
    """Equal values *and* the same key order everywhere."""
    return json.dumps(json.loads(a)) == json.dumps(json.loads(b))


def _problems(raw: bytes | str) -> list[str]:
    with pytest.raises(ReportValidationError) as info:
        parse_header(raw)
    assert info.value.problems, "a refusal must list its problems"
    assert str(info.value).startswith("invalid WSJF report: ")
    return info.value.problems


def _sample(path: Path = UUT) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def _steps(step: dict[str, Any]) -> list[dict[str, Any]]:
    out = [step]
    for child in step.get("steps") or []:
        out.extend(_steps(child))
    return out


# ------------------------------------------------------------------------------------ samples


def test_there_are_samples_of_both_types() -> None:
    types = {json.loads(p.read_bytes())["type"] for p in SAMPLES}
    assert types == {"T", "R"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_passes_the_header_check(path: Path) -> None:
    raw = path.read_bytes()
    data = json.loads(raw)
    header = parse_header(raw)
    assert isinstance(header, ReportHeader)
    for field in REQUIRED_FIELDS:
        assert getattr(header, field) == data[field], field
    assert header.key == data["id"].lower()


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_round_trips_with_key_order(path: Path) -> None:
    raw = path.read_bytes()
    report = load_report(raw)
    again = dump_report(report)
    assert json.loads(again) == json.loads(raw)
    assert _same(again, raw)
    # and a second trip changes nothing
    assert dump_report(load_report(again)) == again


def test_uur_sample_has_no_step_tree_and_keeps_its_repair_section() -> None:
    report = load_report(UUR.read_bytes())
    assert report.type == "R" and report.root is None
    dumped = json.loads(dump_report(report))
    assert "root" not in dumped  # absent stays absent: nothing invented
    assert dumped["uur"]["refUUT"] == "873d67f8-7669-4f4b-a627-e598e444d323"
    assert dumped["processCodeFormat"] is None  # null stays null


def test_full_model_validates_the_whole_step_tree() -> None:
    report = load_report(UUT.read_bytes())
    assert report.root is not None
    assert report.root.stepType == "SequenceCall"
    assert report.root.steps and report.root.steps[0].steps
    count = 0
    stack = [report.root]
    while stack:
        step = stack.pop()
        count += 1
        stack.extend(step.steps or [])
    assert count == len(_steps(_sample()["root"]))


def test_a_report_built_in_python_dumps_only_what_was_given() -> None:
    report = Report(type="R", id="83ac0b8e-b575-4004-94de-f905774c3ed8", pn="P", sn="S", rev="A",
                    processCode=500, result="P", machineName="M", location="L", purpose="Repair",
                    start="2025-12-21T23:01:45+01:00", uur={"comment": "ok"})
    assert json.loads(dump_report(report)) == {
        "type": "R", "id": "83ac0b8e-b575-4004-94de-f905774c3ed8", "pn": "P", "sn": "S", "rev": "A",
        "processCode": 500, "result": "P", "machineName": "M", "location": "L", "purpose": "Repair",
        "start": "2025-12-21T23:01:45+01:00", "uur": {"comment": "ok"}}


# ------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_each_missing_required_field_is_named(field: str) -> None:
    data = _sample()
    del data[field]
    problems = _problems(json.dumps(data))
    assert problems == [problems[0]] and problems[0].startswith(f"{field}: missing — required: ")


@pytest.mark.parametrize("field", ["pn", "sn", "rev", "machineName", "location", "purpose"])
def test_empty_or_too_long_text_is_refused(field: str) -> None:
    for value in ("", "x" * 101):
        data = _sample()
        data[field] = value
        (problem,) = _problems(json.dumps(data))
        assert problem.startswith(f"{field}: {value!r}"[:40]) and "1 to 100 characters" in problem
    data = _sample()
    data[field] = "x" * 100
    parse_header(json.dumps(data))


@pytest.mark.parametrize(("field", "value", "says"), [
    ("id", "not-a-guid", "GUID"),
    ("id", "33a2d4083fc8480bb5546866c77fd91c", "GUID"),  # no hyphens: refused
    ("id", 12, "GUID"),
    ("type", "X", "'T' (test report, UUT) or 'R'"),
    ("type", "t", "'T' (test report, UUT) or 'R'"),
    ("result", "Passed", "one of 'P', 'F', 'E', 'T', 'D'"),
    ("processCode", "10", "whole number"),
    ("processCode", 10.5, "whole number"),
    ("processCode", True, "whole number"),
    ("start", "2026-01-30 22:01:41", "ISO 8601"),
    ("start", "2026-01-30T22:01:41", "ISO 8601"),  # no offset
    ("start", "2026-02-30T22:01:41+01:00", "ISO 8601"),  # no such day
    ("pn", None, "1 to 100 characters"),
    ("root", "steps", "root SequenceCall step"),
])
def test_bad_values_are_refused_with_path_value_and_what_is_allowed(field: str, value: Any, says: str) -> None:
    data = _sample()
    data[field] = value
    (problem,) = _problems(json.dumps(data))
    assert problem.startswith(f"{field}: {value!r}"), problem
    assert says in problem, problem


@pytest.mark.parametrize("value", ["{33A2D408-3FC8-480B-B554-6866C77FD91C}", "33A2D408-3FC8-480B-B554-6866C77FD91C"])
def test_guid_forms_are_accepted_and_kept_as_written(value: str) -> None:
    data = _sample()
    data["id"] = value
    raw = json.dumps(data).encode()
    header = parse_header(raw)
    assert header.id == value
    assert header.key == "33a2d408-3fc8-480b-b554-6866c77fd91c"
    assert json.loads(dump_report(load_report(raw)))["id"] == value


@pytest.mark.parametrize("value", ["2026-01-30T22:01:41.4707353+01:00", "2026-01-30T10:49:36Z",
                                   "2026-01-30T10:49:36.919-05:00", "2026-01-30T10:49+00:00"])
def test_start_times_wats_writes_are_accepted(value: str) -> None:
    data = _sample()
    data["start"] = value
    assert parse_header(json.dumps(data)).start == value


@pytest.mark.parametrize("result", ["P", "F", "E", "T", "D"])
def test_every_wats_result_code_is_accepted(result: str) -> None:
    data = _sample()
    data["result"] = result
    assert parse_header(json.dumps(data)).result == result


def test_a_test_report_needs_its_step_tree_but_a_repair_report_does_not() -> None:
    data = _sample()
    del data["root"]
    (problem,) = _problems(json.dumps(data))
    assert problem.startswith("root: missing") and "type 'T'" in problem
    with pytest.raises(ReportValidationError):
        load_report(json.dumps(data))
    data["type"] = "R"
    assert parse_header(json.dumps(data)).root is None


def test_problems_in_the_step_tree_name_the_path() -> None:
    data = _sample()
    data["root"]["steps"][0]["steps"][1]["status"] = "X"
    del data["root"]["steps"][2]["name"]
    data["root"]["steps"][3]["stepType"] = ""
    problems = _problems(json.dumps(data))
    assert problems == [
        "root.steps[0].steps[1].status: 'X' — must be one of 'P', 'F', 'S', 'T', 'D', 'E' "
        "(passed, failed, skipped, terminated, done, error)",
        "root.steps[2].name: missing — required: non-empty text (the step name)",
        "root.steps[3].stepType: '' — must be non-empty text, e.g. 'ET_NLT' or 'SequenceCall' (the step type)",
    ]
    with pytest.raises(ReportValidationError) as info:
        load_report(json.dumps(data))
    assert info.value.problems == problems


def test_a_step_that_is_not_an_object_is_named() -> None:
    data = _sample()
    data["root"]["steps"][1] = 7
    (problem,) = _problems(json.dumps(data))
    assert problem.startswith("root.steps[1]: 7 — must be a step object")


def test_null_steps_are_allowed() -> None:
    data = _sample()
    data["root"]["steps"][0]["steps"] = None
    raw = json.dumps(data).encode()
    parse_header(raw)
    assert _same(dump_report(load_report(raw)), raw)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe"])
def test_broken_json_is_one_clear_problem(raw: bytes) -> None:
    (problem,) = _problems(raw)
    assert problem.startswith("not valid JSON")


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"T"', b"null"])
def test_a_report_must_be_an_object(raw: bytes) -> None:
    (problem,) = _problems(raw)
    assert problem.startswith("the report must be a JSON object")


def test_a_very_bad_report_lists_a_bounded_number_of_problems() -> None:
    data = _sample()
    for step in _steps(data["root"]):
        step["status"] = "?"
    problems = _problems(json.dumps(data))
    assert len(problems) == 21 and problems[-1].startswith("... and ")


def test_values_shown_in_problems_are_shortened() -> None:
    data = _sample()
    data["type"] = "T" * 500
    (problem,) = _problems(json.dumps(data))
    assert len(problem) < 200


def test_refusal_is_a_value_error() -> None:
    assert issubclass(ReportValidationError, ValueError)


# ----------------------------------------------------------------------------------- normalise_id


def test_normalise_id() -> None:
    assert normalise_id("{33A2D408-3FC8-480B-B554-6866C77FD91C}") == "33a2d408-3fc8-480b-b554-6866c77fd91c"
    assert normalise_id("33a2d408-3fc8-480b-b554-6866c77fd91c") == "33a2d408-3fc8-480b-b554-6866c77fd91c"
    for bad in ["", "x", "{33a2d408-3fc8-480b-b554-6866c77fd91c", "33a2d408-3fc8-480b-b554-6866c77fd91cc",
                "../../etc/passwd", "33a2d408-3fc8-480b-b554-6866c77fd91g", None]:
        with pytest.raises(ReportValidationError) as info:
            normalise_id(bad)  # type: ignore[arg-type]
        assert info.value.problems[0].startswith("id: ")


# ----------------------------------------------------------------------------------- properties

_KNOWN = {"id", "type", "pn", "sn", "rev", "productName", "processCode", "processCodeFormat", "processName",
          "result", "machineName", "location", "purpose", "origin", "start", "startUTC", "root", "uut", "uur",
          "miscInfos", "subUnits", "assets", "assetStats", "binaryData", "additionalData", "group", "stepType",
          "loop", "name", "status", "errorCode", "errorCodeFormat", "errorMessage", "tsGuid", "totTime",
          "totTimeFormat", "causedSeqFailure", "causedUUTFailure", "reportText", "numericMeas", "booleanMeas",
          "stringMeas", "messagePopup", "callExe", "chart", "attachment", "additionalResults", "steps", "seqCall"}

_keys = st.text(min_size=1, max_size=12).filter(lambda k: k not in _KNOWN)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_extras = st.dictionaries(_keys, _json, min_size=1, max_size=4)
_BASES = {p.name: p.read_bytes() for p in SAMPLES}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_BASES)), top=_extras, in_steps=st.lists(st.tuples(st.integers(0, 10**6), _extras),
                                                                             max_size=4))
def test_unknown_fields_anywhere_survive_the_round_trip(name: str, top: dict[str, Any],
                                                        in_steps: list[tuple[int, dict[str, Any]]]) -> None:
    data = json.loads(_BASES[name])
    data.update(top)
    steps = _steps(data["root"]) if "root" in data else []
    for index, extra in in_steps if steps else []:
        steps[index % len(steps)].update(extra)
    raw = json.dumps(data).encode()
    parse_header(raw)  # unknown fields never disturb the server's check
    again = dump_report(load_report(raw))
    assert json.loads(again) == data
    assert list(json.loads(again)) == list(data)[: len(data) - len(top)] + list(top)


_TOP_REQUIRED = st.sampled_from(REQUIRED_FIELDS)
_STEP_REQUIRED = st.sampled_from(["stepType", "name", "status"])


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(_BASES)), field=_TOP_REQUIRED, step_field=_STEP_REQUIRED,
       pick=st.integers(0, 10**6), in_tree=st.booleans())
def test_removing_a_required_field_gives_a_problem_naming_it(name: str, field: str, step_field: str, pick: int,
                                                             in_tree: bool) -> None:
    data = json.loads(_BASES[name])
    if in_tree and "root" in data:
        steps = _steps(data["root"])
        victim = steps[pick % len(steps)]
        del victim[step_field]
        expected_tail = f".{step_field}: missing" if victim is not data["root"] else f"root.{step_field}: missing"
        check = lambda p: expected_tail in p and p.startswith("root")  # noqa: E731
    else:
        del data[field]
        check = lambda p: p.startswith(f"{field}: missing")  # noqa: E731
    raw = json.dumps(data)
    problems = _problems(raw)
    assert len(problems) == 1 and check(problems[0]), problems
    with pytest.raises(ReportValidationError) as info:
        load_report(raw)
    assert info.value.problems == problems


def test_the_header_is_not_changed_by_extra_fields_a_server_ignores() -> None:
    data = copy.deepcopy(_sample())
    data["somethingNew"] = {"nested": [1, 2, 3]}
    assert parse_header(json.dumps(data)) == parse_header(UUT.read_bytes())
