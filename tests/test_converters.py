"""Converters: WSXF and CSV mapping, stamping and ids, loading, and the worker processes for real.

The fuzz test at the end pushes 1,000 generated inputs through the real worker pool and the real
spool: every input is either spooled or refused with a message, and the pool never loses a worker.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.engine.convert.csvfile import CsvConverter, _compare
from stationflow.engine.convert.pool import ConversionFailed, WorkerPool
from stationflow.engine.convert.wsxf import WsxfConverter, convert_wsxf_bytes
from stationflow.engine.convert.api import (
    ConversionError,
    ConvertContext,
    ConverterLoadError,
    WsjfConverter,
    deterministic_id,
    finish_reports,
    load_converter,
)
from stationflow.engine.errors import DuplicateReport, InvalidInput
from stationflow.engine.spool.store import Spool
from stationflow.schemas.wsjf import load_report, parse_header
from tests.conftest import FIXTURES, REPORTS

INPUTS = FIXTURES / "inputs"
MISBEHAVING = INPUTS / "converters" / "misbehaving.py"
CTX = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="test",
                     arguments={}, source_name="x", source_mtime=1_790_000_000.0)
SHA = "0" * 64


def _finish(items: Any, ctx: ConvertContext = CTX, converter: str = "test", sha: str = SHA) -> list[bytes]:
    return finish_reports(items, ctx, sha256=sha, converter=converter)


# ------------------------------------------------------------------------------------ WSXF

def test_wsxf_sample_converts_to_the_wsjf_sample_field_for_field() -> None:
    xml = (REPORTS / "uut-wsxf-export.xml").read_bytes()
    expected = json.loads((REPORTS / "uut-wsjf-export.json").read_bytes())
    [report] = convert_wsxf_bytes(xml)

    def walk(a: Any, b: Any, path: str) -> None:
        assert type(a) is type(b), f"{path}: {a!r} vs {b!r}"
        if isinstance(a, dict):
            assert list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
            for key in a:
                walk(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list):
            assert len(a) == len(b), f"{path}: {len(a)} vs {len(b)} items"
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        else:
            assert a == b, f"{path}: {a!r} vs {b!r}"

    walk(report, expected, "report")

    def count(step: dict, key: str) -> int:
        return len(step.get(key) or []) + sum(count(s, key) for s in step.get("steps") or [])

    # Not vacuous: the sample has 186 steps and every kind of measurement.
    assert count({"steps": [report["root"]]}, "steps") == 186
    assert count(report["root"], "numericMeas") == 108 and count(report["root"], "stringMeas") == 21
    # Through the finishing step the bytes are exactly what the server exported: nothing to stamp.
    [raw] = _finish([report], converter="wsxf")
    assert raw == (REPORTS / "uut-wsjf-export.json").read_bytes().strip()


def test_wsxf_several_reports_unknown_elements_and_refusals(tmp_path: Path) -> None:
    xml = (REPORTS / "uut-wsxf-export.xml").read_text(encoding="utf-8")
    head, _, rest = xml.partition("<Report ")
    body = "<Report " + rest.rsplit("</Reports>", 1)[0]
    second = body.replace('ID="33A2D408-3FC8-480B-B554-6866C77FD91C" ', "").replace('SN="FATTest-325"', 'SN="two"')
    two = convert_wsxf_bytes((head + body + second + "</Reports>").encode())
    assert [r["sn"] for r in two] == ["FATTest-325", "two"] and "id" not in two[1]
    raws = _finish(two, converter="wsxf")
    assert json.loads(raws[1])["id"] == deterministic_id(SHA, "wsxf", 1)

    odd = xml.replace("<Process ", '<Asset SN="A1" /><Process ', 1).encode()
    with pytest.raises(ConversionError, match=r"<Asset> is not supported.*ignore_unknown"):
        convert_wsxf_bytes(odd)
    assert convert_wsxf_bytes(odd, ignore_unknown=True)[0]["sn"] == "FATTest-325"

    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Reports>&a;</Reports>'
    for raw, message in [(bomb, "DOCTYPE"), (b"", "empty"), (b"<Reports><Report", "not well-formed"),
                         (b"<Foo/>", "root element is <Foo>"), (b"<Reports/>", "no <Report>"),
                         (xml.replace('type="UUT"', 'type="UUR"').encode(), "UUR"),
                         (xml.replace('Result="Failed"', 'Result="Maybe"').encode(), "Result: 'Maybe'"),
                         ((INPUTS / "invalid.xml").read_bytes(), "not well-formed")]:
        with pytest.raises(ConversionError, match=message):
            convert_wsxf_bytes(raw)
    path = tmp_path / "a.xml"
    path.write_bytes(odd)
    ctx = ConvertContext(station_name="S", arguments={"ignore_unknown": True})
    assert len(list(WsxfConverter().convert(path, ctx))) == 1


# ------------------------------------------------------------------------------------ WSJF, stamping, ids

def test_wsjf_bytes_pass_through_untouched_when_complete() -> None:
    raw = (REPORTS / "uut-wsjf-export.json").read_bytes()
    items = list(WsjfConverter().convert(REPORTS / "uut-wsjf-export.json", CTX))
    assert items == [raw]
    assert _finish(items) == [raw]  # same bytes: nothing re-serialised, every field kept


def test_stamping_deterministic_ids_and_unknown_fields() -> None:
    items = list(WsjfConverter().convert(INPUTS / "multi.json", CTX))
    first = _finish(items, converter="wsjf", sha="a" * 64)
    again = _finish(json.loads((INPUTS / "multi.json").read_bytes()), converter="wsjf", sha="a" * 64)
    assert first == again  # a crash and a second conversion give the same ids and bytes
    reports = [json.loads(r) for r in first]
    assert [r["id"] for r in reports] == [deterministic_id("a" * 64, "wsjf", i) for i in range(2)]
    assert len({r["id"] for r in reports}) == 2
    for r in reports:
        assert r["machineName"] == "STATION-01" and r["purpose"] == "Production"
        assert r["location"] == "Line 1"  # present in the file: not overwritten (same value here)
        assert r["vendorField"] == {"kept": True}
        parse_header(json.dumps(r))
    other = [json.loads(r)["id"] for r in _finish(json.loads((INPUTS / "multi.json").read_bytes()),
                                                   converter="csv", sha="a" * 64)]
    assert set(other).isdisjoint(r["id"] for r in reports)  # the converter is part of the identity
    assert json.loads(_finish([{**reports[0], "location": "Bay 9"}])[0])["location"] == "Bay 9"


def test_missing_station_field_names_the_config_key() -> None:
    report = json.loads((INPUTS / "multi.json").read_bytes())[0]
    del report["location"]
    bare = ConvertContext(station_name="S")
    with pytest.raises(ConversionError, match=r"location: missing.*set station\.location"):
        _finish([report], bare)
    with pytest.raises(ConversionError, match="not a GUID|id"):
        _finish([{**report, "id": "not-a-guid"}])
    with pytest.raises(ConversionError, match="NaN"):
        _finish([{**report, "id": None, "extra": float("nan")}])
    with pytest.raises(ConversionError, match="no report"):
        _finish([])


@pytest.mark.parametrize("name, message", [
    ("truncated.json", "not valid JSON"),
    ("garbage.json", "not a WSJF report|UTF-16 or binary"),
    ("empty.json", "the file is empty"),
    ("utf16.json", "not UTF-8"),
])
def test_bad_wsjf_inputs_give_a_clear_reason(name: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        _finish(WsjfConverter().convert(INPUTS / name, CTX))


# ------------------------------------------------------------------------------------ CSV

def test_csv_sample_is_a_whole_valid_report() -> None:
    [item] = CsvConverter().convert(INPUTS / "fct-sample.csv", CTX)
    [raw] = _finish([item], converter="csv")
    report = load_report(raw)  # the full model: every step and measurement valid
    steps = report.root.steps
    assert [s.stepType for s in steps] == ["ET_NLT", "ET_NLT", "ET_PFT", "ET_SVT"]
    assert [s.status for s in steps] == ["P", "F", "P", "P"] and report.result == "F"
    assert report.sn == "SN0001" and report.processCode == 10 and report.machineName == "STATION-01"
    assert steps[0].numericMeas == [{"compOp": "GELE", "name": None, "status": "P", "unit": "V", "value": 3.31,
                                     "highLimit": 3.4, "lowLimit": 3.2}]
    assert report.uut == {"user": "anna"}


def test_csv_columns_defaults_decimal_comma_and_local_time() -> None:
    args = {"columns": {"sn": "Seriennummer", "pn": "Teil", "rev": "Index", "process_code": "Prozess",
                        "start": "Zeit", "step": "Prüfschritt", "value": "Messwert", "unit": "Einheit",
                        "low": "UG", "high": "OG", "status": "Ergebnis"},
            "decimal": ",", "sequence": "Endprüfung"}
    ctx = ConvertContext(station_name="S", location="L", purpose="P", arguments=args)
    [item] = CsvConverter().convert(INPUTS / "fct-semicolon.csv", ctx)
    steps = item["root"]["steps"]
    assert steps[0]["numericMeas"][0]["value"] == 12.05 and steps[0]["status"] == "P"
    # A single high limit is a LE comparison; WATS keeps the one limit in lowLimit.
    assert steps[1]["numericMeas"][0] | {} == {"compOp": "LE", "name": None, "status": "P", "unit": "A",
                                               "value": 0.41, "highLimit": None, "lowLimit": 0.5}
    assert steps[2]["stepType"] == "ET_PFT" and steps[2]["status"] == "P"
    assert item["root"]["name"] == "Endprüfung" and item["result"] == "P"
    assert item["start"].startswith("2026-11-02T09:15:00") and item["start"][19] in "+-"
    parse_header(_finish([item], ctx)[0])


@pytest.mark.parametrize("text, args, message", [
    ("sn,step,value\nA,s,1\n", {}, r"no pn, rev, process_code.*arguments\.defaults"),
    ("sn,step,value\n", {"defaults": {"pn": "P", "rev": "A", "process_code": 1}}, "no measurement rows"),
    ("sn,value\nA,1\n", {}, r"no column 'step'.*arguments\.columns"),
    ("sn,pn,rev,process_code,step,value\nA,P,A,1,s,1\nB,P,A,1,t,2\n", {}, r"line 3: sn 'B' differs.*one unit"),
    ("sn,pn,rev,process_code,step,status\nA,P,A,1,s,\n", {}, "neither a value nor a status"),
    ("sn,pn,rev,process_code,step,value,status\nA,P,A,1,s,1,maybe\n", {}, "status 'maybe'"),
    ("sn,pn,rev,process_code,step,value,comp\nA,P,A,1,s,1,GELE\n", {}, "needs both limits"),
    ("sn,pn,rev,process_code,step,value\nA,P,A,x,s,1\n", {}, "process_code 'x'"),
    ("# only a comment\n\n", {}, "no header"),
])
def test_csv_refusals_name_the_line_and_the_fix(tmp_path: Path, text: str, args: dict, message: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConversionError, match=message):
        list(CsvConverter().convert(path, ConvertContext(station_name="S", arguments=args, source_mtime=0.0)))


def test_csv_wrong_encoding_says_which_setting_fixes_it() -> None:
    with pytest.raises(ConversionError, match=r"not valid utf-8-sig text.*arguments\.encoding"):
        list(CsvConverter().convert(INPUTS / "latin1.csv", CTX))
    ctx = ConvertContext(station_name="S", location="L", purpose="P", arguments={"encoding": "cp1252"})
    [item] = CsvConverter().convert(INPUTS / "latin1.csv", ctx)
    assert item["uut"] == {"user": "Bjørn"}


def test_csv_comparisons_agree_with_the_real_wats_sample() -> None:
    """Every numeric measurement WATS itself judged in the sample gets the same verdict here."""
    report = json.loads((REPORTS / "uut-wsjf-export.json").read_bytes())
    checked = 0

    def walk(step: dict) -> None:
        nonlocal checked
        for m in step.get("numericMeas") or []:
            if m["compOp"] != "LOG":
                assert _compare(m["compOp"], m["value"], m["lowLimit"], m["highLimit"]) == (m["status"] == "P"), m
                checked += 1
        for s in step.get("steps") or []:
            walk(s)

    walk(report["root"])
    assert checked > 80


# ------------------------------------------------------------------------------------ loading

def test_loading_converters_by_name_file_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_converter("csv") is CsvConverter
    assert load_converter(f"{MISBEHAVING}:Plain").name == "plain"
    (tmp_path / "site_conv.py").write_text("class Mine:\n    name = 'mine'\n    def convert(self, s, c):\n"
                                           "        return []\nNOT_A_CLASS = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_converter("site_conv:Mine").name == "mine"
    for spec, message in [("nowhere.py:X", "does not exist"), (f"{MISBEHAVING}:Nope", "has no class 'Nope'"),
                          ("site_conv:NOT_A_CLASS", "not a converter class"), ("no_such_mod:X", "cannot import"),
                          ("bogus", "neither a built-in")]:
        with pytest.raises(ConverterLoadError, match=message):
            load_converter(spec)


# ------------------------------------------------------------------------------------ worker processes

async def _pool_run(fn: Any, *, size: int = 1, memory: int = 512 * 1024**2) -> Any:
    pool = WorkerPool(size, memory_limit=memory)
    try:
        return await fn(pool)
    finally:
        await pool.aclose()


def _ctx(**arguments: Any) -> ConvertContext:
    return ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="t",
                          arguments=arguments)


async def test_worker_kills_a_hanging_converter_at_the_timeout_and_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("SN-1")

    async def scenario(pool: WorkerPool) -> tuple[ConversionFailed, float, Any]:
        await pool.describe(f"{MISBEHAVING}:Hang")  # a worker up: its start is not part of the measurement
        started = time.monotonic()
        with pytest.raises(ConversionFailed) as info:
            await pool.convert(f"{MISBEHAVING}:Hang", src, _ctx(), sha256=SHA, timeout=1.0)
        elapsed = time.monotonic() - started
        after = await pool.convert(f"{MISBEHAVING}:Plain", src, _ctx(), sha256=SHA, timeout=10)
        return info.value, elapsed, after

    failure, elapsed, after = await _pool_run(scenario)
    assert failure.kind == "timeout" and "1 s" in failure.message
    assert 0.9 < elapsed < 5
    assert json.loads(after.reports[0])["sn"] == "SN-1"  # a new worker took over


@pytest.mark.parametrize("bad, kind", [("HANG", "timeout"), ("CRASH", "crash"), ("BOOM", "error")]
                         + ([] if sys.platform == "win32" else [("HOG", "memory")]))
async def test_convert_many_answers_file_by_file_and_stops_at_a_file_that_kills_the_worker(
        tmp_path: Path, bad: str, kind: str) -> None:
    texts = ["SN-1", "SN-2", bad, "SN-4"]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"f{i}.txt")
        paths[-1].write_text(text)
    spec = f"{MISBEHAVING}:Moody"
    # Only a hang needs the timeout to end it; the others must end by themselves, however busy the
    # machine (a hog zeroes hundreds of MB before it reaches the limit: seconds under load).
    timeout = 1.0 if kind == "timeout" else 30.0

    async def scenario(pool: WorkerPool) -> tuple[list[Any], float, Any]:
        await pool.describe(spec)  # a worker up: its start is not part of the measurement
        started = time.monotonic()
        results = await pool.convert_many(spec, [(p, _ctx(), SHA) for p in paths], timeout=timeout)
        elapsed = time.monotonic() - started
        after = await pool.convert_many(spec, [(paths[3], _ctx(), SHA)], timeout=10)
        return results, elapsed, after

    results, elapsed, after = await _pool_run(scenario)
    assert [json.loads(r.reports[0])["sn"] for r in results[:2]] == ["SN-1-0", "SN-2-0"]
    failure = results[2]
    assert isinstance(failure, ConversionFailed)
    if kind == "memory":
        assert failure.kind == "memory" or "killed by signal" in failure.message
    else:
        assert failure.kind == kind
    if kind == "error":  # the worker survives a converter that raises: the next file is converted
        assert len(results) == 4 and json.loads(results[3].reports[0])["sn"] == "SN-4-0"
    else:  # the worker is gone: the file after it was not attempted, and is left to the caller
        assert len(results) == 3
    if kind == "timeout":
        assert elapsed < 10  # a hang costs one timeout, not one per file
    assert json.loads(after[0].reports[0])["sn"] == "SN-4-0"  # a new worker took over


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_AS is POSIX")
async def test_worker_memory_limit_stops_a_leaking_converter(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("SN-1")

    async def scenario(pool: WorkerPool) -> tuple[ConversionFailed, Any, int]:
        with pytest.raises(ConversionFailed) as info:
            await pool.convert(f"{MISBEHAVING}:Hog", src, _ctx(), sha256=SHA, timeout=20)
        after = await pool.convert("csv", INPUTS / "fct-sample.csv", _ctx(), sha256=SHA, timeout=10)
        return info.value, after, pool.started

    failure, after, started = await _pool_run(scenario)
    assert failure.kind in ("memory", "crash"), failure.message
    assert failure.kind != "memory" or "memory" in failure.message
    assert len(after.reports) == 1 and started == 2  # the exhausted worker was replaced


async def test_worker_reports_exceptions_crashes_and_survives_prints(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("SN-7")

    async def scenario(pool: WorkerPool) -> tuple[ConversionFailed, ConversionFailed, Any, Any]:
        with pytest.raises(ConversionFailed) as boom:
            await pool.convert(f"{MISBEHAVING}:Boom", src, _ctx(), sha256=SHA, timeout=10)
        with pytest.raises(ConversionFailed) as crash:
            await pool.convert(f"{MISBEHAVING}:Crash", src, _ctx(), sha256=SHA, timeout=10)
        chatty = await pool.convert(f"{MISBEHAVING}:Chatty", src, _ctx(), sha256=SHA, timeout=10)
        described = await pool.describe(f"{MISBEHAVING}:Slow")
        return boom.value, crash.value, chatty, described

    boom, crash, chatty, described = await _pool_run(scenario)
    assert boom.kind == "error" and "ValueError: cannot parse a.txt" in boom.message
    assert "_parse" in boom.traceback and "misbehaving.py" in boom.traceback
    assert crash.kind == "crash" and "exited with code 13" in crash.message
    report = json.loads(chatty.reports[0])
    assert report["sn"] == "SN-7-0" and report["machineName"] == "STATION-01"
    assert report["id"] == deterministic_id(SHA, "chatty", 0)
    assert described == {"name": "slow", "patterns": ["*.txt"]}


async def test_workers_convert_in_parallel(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_text(f"SN-{i}")

    async def scenario(pool: WorkerPool) -> float:
        async with anyio.create_task_group() as tg:  # start four workers: start-up cost out of the measurement
            for _ in range(4):
                tg.start_soon(pool.describe, f"{MISBEHAVING}:Slow")
        assert pool.started == 4
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for f in files:
                tg.start_soon(lambda f=f: pool.convert(f"{MISBEHAVING}:Slow", f, _ctx(delay=0.6, count=1),
                                                       sha256=SHA, timeout=10))
        return time.monotonic() - started

    elapsed = await _pool_run(scenario, size=4)
    assert elapsed < 3 * 0.6  # four 0.6 s conversions overlapped


# ------------------------------------------------------------------------------------ fuzz

_SAMPLE_JSON = (REPORTS / "uut-wsjf-export.json").read_bytes()
_SAMPLE_XML = (REPORTS / "uut-wsxf-export.xml").read_bytes()
_SAMPLE_CSV = (INPUTS / "fct-sample.csv").read_bytes()
_SMALL = (INPUTS / "multi.json").read_bytes()

_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[str, bytes]:
    converter = draw(st.sampled_from(["wsjf", "wsxf", "csv"]))
    sample = {"wsjf": _SMALL, "wsxf": _SAMPLE_XML, "csv": _SAMPLE_CSV}[converter]
    kind = "valid" if draw(st.booleans()) else draw(st.sampled_from(
        ["binary", "text", "truncated", "mutated", "json", "report", "csv_rows"]))
    if kind == "valid":  # well-formed input with generated values: must be spooled
        sn = draw(st.text(alphabet=st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=40))
        value = draw(st.floats(-1e6, 1e6, allow_nan=False))
        if converter == "wsjf":
            report = json.loads(_SMALL)[0] | {"sn": sn, "processCode": draw(st.integers(0, 10**6))}
            report["root"]["steps"][0]["numericMeas"][0]["value"] = value
            data = json.dumps(report).encode()
        elif converter == "wsxf":
            data = _SAMPLE_XML.replace(b'SN="FATTest-325"', f'SN="{sn}"'.encode()).replace(
                b'ID="33A2D408-3FC8-480B-B554-6866C77FD91C" ', b"")
        else:
            rows = "".join(f"{sn},PN-1,A,10,2026-11-02T08:00:00+01:00,step {i},{value + i},V,,,\n"
                           for i in range(draw(st.integers(1, 20))))
            data = b"sn,pn,rev,process_code,start,step,value,unit,low,high,status\n" + rows.encode()
    elif kind == "binary":
        data = draw(st.binary(max_size=512))
    elif kind == "text":
        data = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    elif kind == "truncated":
        data = sample[:draw(st.integers(0, len(sample)))]
    elif kind == "mutated":
        data = bytearray(sample)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    elif kind == "json":
        data = json.dumps(draw(_json_values)).encode()
    elif kind == "report":
        report = json.loads(_SMALL)[0]
        for key in draw(st.lists(st.sampled_from(sorted(report)), max_size=3)):
            report[key] = draw(_json_values)
        data = json.dumps(report).encode()
    else:
        rows = draw(st.lists(st.lists(st.text(alphabet="abc019.,;-PF \"", max_size=6), min_size=1, max_size=8),
                             max_size=5))
        data = b"sn,pn,rev,process_code,step,value,low,high,status\n" + "\n".join(",".join(r) for r in rows).encode()
    return converter, data


# The pool lives for the whole module (1,000 examples) and hypothesis calls the test synchronously, once
# per example: so the pool runs on an event loop of its own in a thread (a blocking portal), which
# outlives any one test's loop.
@pytest.fixture(scope="module")
def fuzz_rig(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz")
    spool = Spool(root / "data", fsync=False)
    with start_blocking_portal() as portal:
        pool = WorkerPool(2, memory_limit=512 * 1024**2, memory_growth=2**40)  # replaced only after a failure
        tally = {"n": 0, "spooled": 0, "refused": 0}
        yield root, spool, portal, pool, tally
        portal.call(pool.aclose)
    # Not vacuous: both outcomes happened, over the whole run.
    assert tally["n"] >= 1000 and tally["spooled"] >= 200 and tally["refused"] >= 200, tally
    spool.close()


# 1,000 inputs through real worker processes: out of the quick local run.
@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=_inputs())
def test_fuzz_every_input_is_spooled_or_refused_and_the_pool_survives(fuzz_rig: Any, case: tuple[str, bytes]) -> None:
    root, spool, portal, pool, tally = fuzz_rig
    converter, data = case
    tally["n"] += 1
    path = root / f"in-{tally['n']}"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    try:
        converted = portal.call(lambda: pool.convert(converter, path, _ctx(), sha256=sha, timeout=20))
    except ConversionFailed as exc:
        assert exc.kind == "invalid", f"{converter} on {data[:80]!r}: {exc.kind}: {exc.message}\n{exc.traceback}"
        assert exc.message
        tally["refused"] += 1
    else:
        for raw in converted.reports:
            try:
                spool.accept(raw, source=str(path))
            except DuplicateReport:
                pass  # a mutated copy of a report with a fixed id: the intake would reject that file
            except InvalidInput as exc:  # never: the worker validated it already
                pytest.fail(f"spool refused a validated report: {exc}")
        tally["spooled"] += 1
    assert pool.started <= 2, "a worker died or hung on an input"
