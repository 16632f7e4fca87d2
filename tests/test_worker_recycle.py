"""Converter workers live long and are replaced when their memory grows, not after a count of files.

A worker costs ~0.15 s of CPU to start, so the pool keeps it as long as it is healthy. It reports
its resident memory after each file; a converter that keeps memory (a leak) gets its worker
replaced once it grew past the pool's limit, and no file is lost on the way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stationflow.engine.convert.api import ConvertContext
from stationflow.engine.convert.pool import Converted, ConversionFailed, WorkerPool
from stationflow.engine.convert.worker import resident_bytes
from stationflow.engine.devtools.samples import make_report_bytes

LEAKY = '''
KEPT = []

class Leaky:
    """Keeps 8 MB of every file's work forever, as a converter with a cache that never forgets."""
    name = "leaky"

    def convert(self, source, context):
        KEPT.append(b"\\x01" * (8 * 1024 * 1024))  # written, so resident
        return [source.read_bytes()]
'''
CTX = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="t")


def _files(folder: Path, count: int, approx_bytes: int = 1000) -> list[tuple[Path, ConvertContext, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        path = folder / f"r{i:04d}.json"
        path.write_bytes(make_report_bytes(i, seed=3, approx_bytes=approx_bytes))
        items.append((path, CTX, f"{i:064x}"))
    return items


async def _convert_all(pool: WorkerPool, spec: str, items: list[tuple[Path, ConvertContext, str]],
                       batch: int) -> list[Converted]:
    done: list[Converted] = []
    for at in range(0, len(items), batch):
        for result in await pool.convert_many(spec, items[at:at + batch], timeout=60):
            assert not isinstance(result, ConversionFailed), result
            done.append(result)
    return done


async def test_a_leaking_converter_gets_its_worker_replaced_and_no_file_is_lost(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY, encoding="utf-8")
    items = _files(tmp_path / "in", 24)
    pool = WorkerPool(1, memory_growth=40 * 1024**2)  # 40 MB: five leaked files are over it
    try:
        done = await _convert_all(pool, f"{tmp_path / 'leaky.py'}:Leaky", items, batch=4)
    finally:
        await pool.aclose()
    assert [json.loads(c.reports[0])["id"] for c in done] == [json.loads(p.read_bytes())["id"] for p, _, _ in items]
    # 24 files × 8 MB against 40 MB of growth: replaced every few batches, never on a count.
    assert 2 <= pool.recycled <= 6, pool.recycled
    assert pool.started in (pool.recycled, pool.recycled + 1)  # the last one may be replaced at its end too


async def test_a_converter_that_keeps_nothing_keeps_its_worker_for_good(tmp_path: Path) -> None:
    """600 files (more than the 500 after which workers used to be restarted): one worker, never replaced."""
    items = _files(tmp_path / "in", 600, approx_bytes=2000)
    pool = WorkerPool(1)
    try:
        done = await _convert_all(pool, "wsjf", items, batch=32)
        worker = pool._idle[0]
        assert worker.baseline is not None and worker.rss is not None  # it did report its memory
        assert worker.jobs == 600
    finally:
        await pool.aclose()
    assert len(done) == 600 and all(len(c.reports) == 1 for c in done)
    assert pool.started == 1 and pool.recycled == 0


def test_resident_memory_is_measured_with_and_without_proc() -> None:
    now = resident_bytes()
    assert now is not None and 5 * 1024**2 < now < 4 * 1024**3
    ballast = b"\x01" * (64 * 1024**2)
    grown = resident_bytes()
    assert grown is not None and grown - now > 50 * 1024**2  # it follows what the process holds
    del ballast
    peak = resident_bytes(statm=str(Path("/nonexistent/statm")))  # no /proc: the peak, from getrusage
    assert peak is not None and peak >= grown - 1024**2


def test_without_proc_or_resource_memory_is_unknown_and_windows_asks_the_working_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from stationflow.engine.convert import worker

    missing = str(Path("/nonexistent/statm"))
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: no POSIX resource module
    assert resident_bytes(statm=missing) is None  # unknown: only a crash replaces the worker
    asked: list[str] = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(worker, "_working_set", lambda: asked.append("ws") or 123_456_789)
    assert resident_bytes(statm=missing) == 123_456_789 and asked == ["ws"]
    monkeypatch.undo()
    assert worker._working_set() is None  # not Windows: no kernel32, an honest "unknown"
