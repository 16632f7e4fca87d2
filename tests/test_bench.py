"""The benchmark scripts run end to end (tiny sizes): figures are printed, and they are real.

Speed is not asserted here (benchmarks print figures; see the README); these tests only keep the
scripts working, because a benchmark that no longer runs is found out on the one day it is needed.
"""

from __future__ import annotations

from pathlib import Path

from stationflow.engine.devtools import bench_intake


def test_intake_benchmark_runs(capsys) -> None:
    assert bench_intake.main(["--files", "20", "--kind", "both"]) == 0
    out = capsys.readouterr().out
    assert "csv: 20 files" in out and "wsjf: 20 files" in out


def test_station_benchmark_runs_from_the_command_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`stationflow bench` at tiny sizes: disk limit, spool cycle and upload figures, and a verdict."""
    from stationflow.engine.cli.main import main

    assert main(["bench", "--dir", str(tmp_path), "-n", "40", "--queued", "0", "--upload-n", "30"]) == 0
    out = capsys.readouterr().out
    assert "raw" in out and "spool" in out.lower()
    assert "targets met" in out or "some targets not met" in out
    assert list(tmp_path.iterdir()) == []


def test_latency_benchmark_runs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """file written → acknowledged, both arms, one short round each: every file is timed."""
    from stationflow.engine.devtools import bench_latency

    assert bench_latency.main(["--rate", "10", "--seconds", "1", "--rounds", "1", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "close  round: 10 files" in out and "stable round: 10 files" in out
    assert "target p95 < 300 ms" in out
