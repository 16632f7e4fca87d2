"""A ``convert_many`` request times each file on its own: a batch of slow but healthy files takes
longer than ``timeout`` in all and every file is converted; a file that hangs after them is still
stopped at its own ``timeout``. (The pool keeps one cancel scope per request and moves its deadline
on after each answer, which must mean exactly this.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stationflow.engine.convert.api import ConvertContext
from stationflow.engine.convert.pool import ConversionFailed, Converted, WorkerPool

SLOW_CONVERTER = '''
import time

class Slow:
    name = "slow"
    patterns = ("*.txt",)

    def convert(self, source, context):
        text = source.read_text(encoding="utf-8").strip()
        if text == "HANG":
            while True:
                time.sleep(0.05)
        time.sleep(float(text))
        return [{"type": "T", "pn": "PN-TEST", "sn": source.stem, "rev": "A", "processCode": 10, "result": "P",
                 "start": "2026-11-02T08:00:00+01:00",
                 "root": {"id": 1, "group": "M", "stepType": "SequenceCall", "name": "Main", "status": "P",
                          "steps": []}}]
'''


async def test_each_file_of_a_batch_has_its_own_timeout(tmp_path: Path) -> None:
    module = tmp_path / "slow.py"
    module.write_text(SLOW_CONVERTER)
    spec = f"{module}:Slow"
    paths = []
    for i, text in enumerate(["1.0"] * 5 + ["HANG"]):
        paths.append(tmp_path / f"f{i}.txt")
        paths[-1].write_text(text)
    context = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="t")
    pool = WorkerPool(1, memory_limit=512 * 1024**2)
    try:
        await pool.describe(spec)  # a worker up: its start is not part of the files' time
        started = time.monotonic()
        results = await pool.convert_many(spec, [(p, context, "0" * 64) for p in paths], timeout=3.0)
        elapsed = time.monotonic() - started
    finally:
        await pool.aclose()
    assert len(results) == 6
    converted = results[:5]
    assert all(isinstance(r, Converted) for r in converted), converted
    assert [json.loads(r.reports[0])["sn"] for r in converted if isinstance(r, Converted)] == \
        [f"f{i}" for i in range(5)]
    hang = results[5]
    assert isinstance(hang, ConversionFailed) and hang.kind == "timeout"
    assert elapsed > 5 + 3.0 - 0.5  # five files of 1 s (more than the 3 s timeout in all), then the hang's 3 s
