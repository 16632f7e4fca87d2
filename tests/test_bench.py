"""The benchmark scripts run end to end (tiny sizes): figures are printed, and they are real.

Speed is not asserted here (benchmarks print figures; see the README); these tests only keep the
scripts working, because a benchmark that no longer runs is found out on the one day it is needed.
"""

from __future__ import annotations

from pathlib import Path

from stationflow.engine.devtools import bench_intake
from stationflow.engine.devtools import bench_pipeline


def test_pipeline_benchmark_runs_against_a_real_service_and_emulator(tmp_path: Path) -> None:
    lines: list[str] = []
    figures = bench_pipeline.run(tmp_path, n=40, queued=0, sizes=(1000,), concurrencies=(2,), out=lines.append)
    [(size, uploads, raw, pipe)] = figures.rows
    assert 900 < size < 1200 and uploads == 2
    assert raw > 0 and pipe > 0
    assert figures.queued and figures.queued[0][0] == 0 and figures.queued[0][1] > 0
    assert any("worst pipeline/raw ratio" in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # the stations and spools it made are removed


def test_intake_benchmark_runs(capsys) -> None:
    assert bench_intake.main(["--files", "20", "--kind", "both"]) == 0
    out = capsys.readouterr().out
    assert "csv: 20 files" in out and "wsjf: 20 files" in out
