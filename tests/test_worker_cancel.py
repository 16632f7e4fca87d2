"""The pool reads a worker's answers in a thread of its own: a caller that is cancelled (intake
stopping) must not wait for a hung converter, and the worker it was using is stopped, never
handed out again."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from stationflow.engine.convert.api import ConvertContext
from stationflow.engine.convert.pool import WorkerPool
from tests.conftest import FIXTURES

MISBEHAVING = FIXTURES / "inputs" / "converters" / "misbehaving.py"
SHA = "0" * 64


async def test_a_cancelled_call_returns_at_once_and_its_hung_worker_is_stopped(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("SN-1")
    context = ConvertContext(station_name="STATION-01", location="Line 1", purpose="Production", intake="t")
    pool = WorkerPool(1, memory_limit=512 * 1024**2)
    try:
        await pool.describe(f"{MISBEHAVING}:Hang")  # a worker up: its start is not part of the measurement
        [worker] = pool._idle
        with anyio.move_on_after(1.0):
            await pool.convert(f"{MISBEHAVING}:Hang", src, context, sha256=SHA, timeout=3600)
        started = time.monotonic()
        await anyio.to_thread.run_sync(worker.process.wait, 30)  # stopped: it exits (killed)
        assert time.monotonic() - started < 30 and worker.process.returncode is not None
        assert pool._idle == []  # never handed out again
        after = await pool.convert(f"{MISBEHAVING}:Plain", src, context, sha256=SHA, timeout=60)
        assert after.reports and pool.started == 2  # a new worker took over
    finally:
        with anyio.fail_after(30):
            await pool.aclose()
