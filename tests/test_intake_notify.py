"""Change notifications: a finished file is taken at once, a file still being written never early."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.intake import Intake, IntakeOptions
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import IntakeSection, StationSection

STATION = StationSection(name="STATION-01", location="Line 1", purpose="Production")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="close-after-write is inotify's")


@linux_only
async def test_a_file_closed_by_its_writer_is_taken_without_waiting_settle_ms(tmp_path: Path) -> None:
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    section = IntakeSection(name="n", watch=str(drop), converter="wsjf", settle_ms=5000, after="delete")
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(poll_interval_s=10.0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with anyio.fail_after(30):  # started: the watch is set up, the converter loaded
                while intake.status()["intakes"]["n"]["notifications"] != "notify" or not intake.status()["workers"]["started"]:
                    await anyio.sleep(0.01)
            taken: list[float] = []
            for i in range(5):
                started = time.monotonic()
                (drop / f"r{i}.json").write_bytes(make_report_bytes(i, seed=31))
                with anyio.fail_after(4):  # far below settle_ms (5 s) and the poll interval (10 s)
                    while len(spool.keys()) < i + 1:
                        await anyio.sleep(0.005)
                taken.append(time.monotonic() - started)
            tg.cancel_scope.cancel()
        await intake.aclose()
    assert max(taken) < 4.0 and sorted(taken)[2] < 1.0, taken


async def test_a_file_written_slowly_with_pauses_is_never_taken_early(tmp_path: Path) -> None:
    """Written over 5 s, pausing up to 0.8 s between rows (less than settle_ms), kept open until
    done: taken once, whole, only after its writer closed it."""
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    target = drop / "slow.csv"
    section = IntakeSection(name="c", watch=str(drop), converter="csv", settle_ms=1000, after="delete")
    pauses = [0.1, 0.8, 0.3, 0.8, 0.05, 0.6, 0.8, 0.2, 0.7, 0.45]  # 4.8 s
    with Spool(data) as spool:
        intake = Intake([section], spool, data, STATION, options=IntakeOptions(poll_interval_s=0.05))
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            with open(target, "w", encoding="utf-8") as out:
                out.write("sn,pn,rev,process_code,start,step,value,unit,low,high,status\n")
                out.flush()
                for i, pause in enumerate(pauses):
                    out.write(f"SN9,PN,A,10,2026-11-02T08:00:00+01:00,step {i},{i},V,,,\n")
                    out.flush()
                    await anyio.sleep(pause)
                    assert spool.keys() == [], f"taken while still being written (after row {i})"
                    assert target.exists()
            closed = time.monotonic()
            with anyio.fail_after(10):
                while target.exists():
                    await anyio.sleep(0.01)
            took = time.monotonic() - closed
            tg.cancel_scope.cancel()
        await intake.aclose()
        [key] = spool.keys()
        steps = json.loads(spool.read(key))["root"]["steps"]
    assert [s["name"] for s in steps] == [f"step {i}" for i in range(len(pauses))]
    if sys.platform.startswith("linux"):
        assert took < 0.9, f"the closed file waited {took:.2f} s (close-after-write should end the settle)"
