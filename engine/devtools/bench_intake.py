"""Intake throughput: files per second from a watch folder to durable reports in the spool.

    python -m stationflow.engine.devtools.bench_intake [--files 300] [--kind csv|wsjf|both] [--workers 2]

Each run writes the files into a fresh watch folder, starts an :class:`..intake.Intake`
(settle time 0, ``after: archive``) and measures until every report is accepted (fsynced) and
every source archived. Everything is real: the copy and its fsync, the worker processes, the
spool's durable accept, the archive rename. The worker start-up is not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from ..intake import Intake, IntakeOptions
from .samples import make_report_bytes
from ..spool.store import Spool
from ...schemas.config import IntakeSection, StationSection


def _csv(i: int) -> bytes:
    rows = "".join(f"SN{i:08d},PCBA-1042,C,10,2026-11-02T08:00:00+01:00,Rail {k},{3.3 + k / 100:.3f},V,3.2,3.6,\n"
                   for k in range(13))
    return ("sn,pn,rev,process_code,start,step,value,unit,low,high,status\n" + rows).encode()


def _wsjf(i: int) -> bytes:
    return make_report_bytes(i, seed=1, approx_bytes=50_000)


async def _measure(kind: str, files: int, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="stationflow-bench-") as tmp:
        root = Path(tmp)
        drop, data = root / "drop", root / "data"
        drop.mkdir()
        make, pattern = (_csv, "csv") if kind == "csv" else (_wsjf, "json")
        size = 0
        for i in range(files):
            raw = make(i)
            size += len(raw)
            (drop / f"f{i:06d}.{pattern}").write_bytes(raw)
        spool = Spool(data, max_reports=files * 2)
        section = IntakeSection(name="bench", watch=str(drop), converter="csv" if kind == "csv" else "wsjf",
                                settle_ms=0, after="archive")
        intake = Intake([section], spool, data, StationSection(name="BENCH", location="Lab", purpose="Bench"),
                        workers=workers, options=IntakeOptions(poll_interval_s=0.01))
        try:
            async with anyio.create_task_group() as tg:  # start the workers before the clock starts
                for _ in range(workers):
                    tg.start_soon(intake.pool.describe, section.converter)
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                tg.start_soon(intake.run)
                while len(spool.keys()) < files or any(drop.iterdir()):
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            elapsed = time.perf_counter() - started
        finally:
            await intake.aclose()
            spool.close()
        return elapsed, size // files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stationflow.engine.devtools.bench_intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--kind", choices=["csv", "wsjf", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    for kind in (["csv", "wsjf"] if args.kind == "both" else [args.kind]):
        elapsed, average = anyio.run(_measure, kind, args.files, args.workers)
        print(f"{kind:>4}: {args.files} files of ~{average / 1000:.1f} KB in {elapsed:.2f} s = "
              f"{args.files / elapsed:.0f} files/s ({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
