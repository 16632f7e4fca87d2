"""The non-finite check (``refuse_non_finite``): the cheap pre-test sends every report that may hold
NaN, Infinity or a number beyond a double to the exact judge, and GUIDs and words to nobody.

The old pre-test (any ``e``/``E`` + three digits, or the words NaN/Infinity) is kept here as the
reference: on every document it and the new one must refuse alike, except that the new one also
refuses a float spelled with so many digits that it is infinite without a big exponent (which the
old one let through: ``1`` and 400 zeros ``.5``).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stationflow.engine.convert.api import ConvertContext, finish_reports, load_converter
from stationflow.engine.devtools.bench_pipeline import report_maker
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.schemas import wsjf
from stationflow.schemas.wsjf import ReportValidationError, parse_header, refuse_non_finite
from tests.conftest import FIXTURES

# ------------------------------------------------------------------------- reference and oracle

_OLD_BIG_EXPONENT = (re.compile(rb"e\+?[0-9]{3}"), re.compile(rb"E\+?[0-9]{3}"))


def _old_refusal(data: bytes) -> str | None:
    """What the code before this change said: the refusal's message, or None."""
    if b"NaN" not in data and b"Infinity" not in data and not any(p.search(data) for p in _OLD_BIG_EXPONENT):
        return None
    return _judge(data)


def _judge(data: bytes) -> str | None:
    """The exact judge alone, on every document (what a pre-test may only shorten)."""
    try:
        json.loads(data, parse_constant=wsjf._constant, parse_float=wsjf._finite)
    except wsjf._NotFinite as exc:
        return str(exc)
    except ValueError:
        return None
    return None


def _refusal(data: bytes) -> str | None:
    try:
        refuse_non_finite(data)
    except ReportValidationError as exc:
        assert exc.problems and "not a finite number" in exc.problems[0]
        return exc.message
    return None


def _truly_non_finite(data: bytes) -> bool:
    """The oracle: does Python read a constant or a float that is not finite anywhere in it?"""
    found: list[float] = []
    json.loads(data, parse_constant=lambda c: found.append(math.nan), parse_float=lambda t: found.append(float(t)))
    return any(not math.isfinite(v) for v in found)


# ------------------------------------------------------------------------- documents

_WHITE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@st.composite
def _numbers(draw: Any, max_int_digits: int = 25) -> str:
    """A JSON number spelling: sign, integer part, fraction, exponent with any case, sign and zeros."""
    sign = draw(st.sampled_from(["", "-"]))
    digits = draw(st.integers(0, max_int_digits))
    whole = "0" if digits == 0 else draw(st.sampled_from("123456789")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=digits - 1, max_size=digits - 1)))
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,6}", fullmatch=True)))
    exponent = draw(st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,5}", fullmatch=True),
                              st.sampled_from(["e308", "e309", "E+308", "e999", "E400", "e0400", "e-400"])))
    return sign + whole + fraction + exponent


_CONSTANTS = st.sampled_from(["NaN", "Infinity", "-Infinity"])
_WORDS = st.sampled_from(["NaN check", "Infinity", "e123", "type e1234 ok", "1e999", "8e60-98e0dd9be928",
                          "{0f8fad5b-d9cb-469f-a165-70867728e950}", "x E+400, y", "3fe1234", "Ke2701 - Läs",
                          "value 'NaN'", "NaN", "-Infinity", "1e400 ]", "x 1e400,", "Infinity}"])
_STRINGS = st.one_of(_WORDS, st.builds(lambda: str(uuid.uuid4())), st.text(max_size=12))


def _scalars(numbers: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(numbers, _CONSTANTS, _STRINGS.map(json.dumps), st.sampled_from(["true", "false", "null"]))


def _documents(numbers: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON text (as Python's reader takes it) with white space anywhere between tokens."""

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        def array(items: list[tuple[str, str, str]]) -> str:
            return "[" + ",".join(a + item + b for a, item, b in items) + "]"

        def obj(items: list[tuple[str, str, str, str]]) -> str:
            return "{" + ",".join(f"{a}{json.dumps(k)}{b}:{c}{v}" for k, a, b, c, v in items) + "}"

        return st.one_of(
            st.lists(st.tuples(_WHITE, children, _WHITE), max_size=4).map(array),
            st.lists(st.tuples(_STRINGS, _WHITE, _WHITE, _WHITE, children), max_size=4).map(obj))

    return st.tuples(_WHITE, st.recursive(_scalars(numbers), extend, max_leaves=12), _WHITE).map("".join)


# ------------------------------------------------------------------------- properties

_EXAMPLES = ["1e999", "1E+400", "-1e309", "1.0e0400", "[NaN]", "[1, [2, {\"a\": -Infinity}]]",
             "{\"a\": [1e999 ]}", "[1e999\n]", "{\"a\":1E+400}", "  -1e309 \n", "[\"8e60-98e0dd9be928\", 1e308]",
             "[1e-400]", "{\"x\": \"NaN check 1e999\"}", "[0.5e00309]", "1e99", "[1e0000000000000000309]"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_numbers()))
@example("1e999")
@example("1E+400")
@example("-1e309")
@example("1.0e0400")
@example("[1, [2, {\"a\": -Infinity}]]")
@example("  -1e309 \n")
@example("[\"8e60-98e0dd9be928\", 1e308]")
@example("[1e0000000000000000309]")
def test_refused_exactly_when_the_old_check_refused(text: str) -> None:
    data = text.encode()
    assert _refusal(data) == (None if (old := _old_refusal(data)) is None else f"invalid WSJF report: a number is {old}")
    assert (_refusal(data) is not None) == _truly_non_finite(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(_numbers(max_int_digits=420)))
def test_refused_exactly_when_a_number_is_not_finite_whatever_its_length(text: str) -> None:
    """Long mantissas too: refused exactly when Python reads a non-finite float (or a constant)."""
    data = text.encode()
    assert (_refusal(data) is not None) == _truly_non_finite(data)
    assert (_refusal(data) is not None) == (_judge(data) is not None)


@pytest.mark.parametrize("text", _EXAMPLES)
def test_the_spellings_as_strings_and_in_a_report(text: str) -> None:
    """Each spelling, alone and as a value in a real report: parse_header says what the judge says."""
    assert (_refusal(text.encode()) is not None) == _truly_non_finite(text.encode())
    raw = make_report_bytes(1, seed=3).replace(b'"pn"', b'"level": ' + text.encode() + b', "pn"', 1)
    if _truly_non_finite(text.encode()):
        with pytest.raises(ReportValidationError, match="a number is"):
            parse_header(raw)
    else:
        assert parse_header(raw).pn


@pytest.mark.parametrize("spelling", ["1" + "0" * 400 + ".5", "1" + "0" * 250 + "e99", "-1" + "0" * 500 + "e-100",
                                      "1" + "0" * 309 + ".0"])
def test_a_float_with_hundreds_of_digits_is_refused(spelling: str) -> None:
    """The old pre-test let these through (no big exponent): they are infinite as doubles."""
    raw = make_report_bytes(1, seed=3).replace(b'"pn"', b'"level": ' + spelling.encode() + b', "pn"', 1)
    assert _old_refusal(raw) is None
    with pytest.raises(ReportValidationError) as info:
        parse_header(raw)
    assert f"({len(spelling)} characters)" in info.value.message and len(info.value.message) < 120


@pytest.mark.parametrize("spelling", ["1" + "0" * 400, "9" * 307 + ".5", "1" + "0" * 300 + "e-100"])
def test_long_but_finite_or_whole_numbers_pass(spelling: str) -> None:
    """A whole number is read as an int (not a double, as before); a long float that fits passes."""
    raw = make_report_bytes(1, seed=3).replace(b'"pn"', b'"level": ' + spelling.encode() + b', "pn"', 1)
    assert wsjf._may_be_non_finite(raw)  # judged
    assert parse_header(raw).pn


def test_guids_and_words_never_take_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench reports (random GUIDs: 'e' + three digits in about a quarter of them) and words
    like e1234, "Ke2701 - Läs" or "value 'NaN'" are settled by the pre-test alone."""
    def no_slow_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the slow path ran")

    make = report_maker(50_000)
    reports = [make() for _ in range(200)]
    reports.append(make_report_bytes(1, seed=3).replace(b'"pn"',
        b'"note": "type e1234", "e": "3fe1234-e100", "step": "Ke2701 - L\xc3\xa4s", "v": "value \'NaN\'", "pn"', 1))
    assert sum(1 for r in reports if any(p.search(r) for p in _OLD_BIG_EXPONENT)) > 10  # the old false positives
    monkeypatch.setattr(wsjf.json, "loads", no_slow_path)
    for raw in reports:
        assert not wsjf._may_be_non_finite(raw)
        assert parse_header(raw).key


def test_a_str_report_is_checked_like_its_bytes() -> None:
    raw = make_report_bytes(1, seed=3).decode().replace('"pn"', '"level": [1E+400 ], "pn"', 1)
    with pytest.raises(ReportValidationError, match="a number is 1E\\+400"):
        parse_header(raw)


# ------------------------------------------------------------------------- the real samples

_SAMPLES = [(FIXTURES / "reports" / name, "wsjf") for name in ("uut-wsjf-export.json", "new_report_example.json",
                                                                  "uur_example.json")]
_SAMPLES += [(path, "atml") for path in sorted((FIXTURES / "inputs" / "atml").iterdir())]
_SAMPLES += [(FIXTURES / "inputs" / "wstf" / "wstf-example.txt", "wstf"),
             (FIXTURES / "reports" / "uut-wsxf-export.xml", "wsxf"), (FIXTURES / "inputs" / "uur-wsxf.xml", "wsxf")]


@pytest.mark.parametrize(("path", "converter"), _SAMPLES, ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_real_sample_is_judged_as_before(path: Path, converter: str) -> None:
    """Every real report, and what the ATML/WSTF/WSXF converters make of the real equipment files,
    passes as before, without the slow path."""
    context = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", source_name=path.name,
                             source_mtime=1_790_000_000.0)
    keys: list[str] = []
    reports = finish_reports(list(load_converter(converter)().convert(path, context)), context, sha256="0" * 64,
                             converter=converter, keys=keys)
    assert reports and len(keys) == len(reports)
    for raw in reports:
        assert _old_refusal(raw) is None and _refusal(raw) is None
        assert not wsjf._may_be_non_finite(raw)
        assert parse_header(raw).key in keys
