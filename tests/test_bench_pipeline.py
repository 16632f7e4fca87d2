"""``bench --pipeline`` end to end at a tiny size, and its verdict.

Speed is not asserted (a benchmark prints figures; the README records them). What is asserted:
every figure issue 18 asks for is printed from real measurements (raw posts, the floor loop, the
real service, its CPU, the latency of files written at a steady rate, queued reports), the arms
alternate over three rounds with medians and min–max, and the verdict names every figure that has
a target and can say "not met".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from stationflow.engine.devtools import bench_pipeline
from stationflow.engine.devtools.bench_floor import floor_rate, session_cpu_s
from stationflow.engine.devtools.bench_pipeline import PipelineFigures, Row
from stationflow.engine.devtools.bench_upload import start_emulator_process
from stationflow.engine.devtools.bench_verdict import Check, spread, verdict


@pytest.mark.slow  # a real service, emulator and latency rounds: a minute or two on a busy machine
def test_the_pipeline_benchmark_prints_every_figure_and_a_verdict(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_pipeline.main(["--dir", str(tmp_path), "--pipeline-n", "12", "--queued", "20",
                 "--pipeline-sizes", "1000", "--pipeline-uploads", "2", "--pipeline-latency-s", "1"]) == 0
    out = capsys.readouterr().out
    rounds = [line for line in out.splitlines() if re.match(r"\s+round \d: ", line)]
    assert len(rounds) == 3, out  # three alternating rounds, each with every arm
    for line in rounds:
        assert re.search(r"raw \d+/s, floor \d+/s, pipeline \d+/s; latency p95 \d+ ms", line), line
    [row] = [line for line in out.splitlines() if re.match(r"\s+\d+\.\dKB\s+2 \|", line)]
    cells = [c.strip() for c in row.split("|")[1:]]
    assert len(cells) == 7
    for cell in cells:  # median (min–max) of the three rounds: real, positive figures
        median, low, high = map(float, re.fullmatch(r"([\d.]+) \(([\d.]+)–([\d.]+)\)", cell).groups())  # type: ignore[union-attr]
        assert 0 < low <= median <= high, cell
    assert re.search(r"file → acknowledged at 20 files/s.*p50 \d+.*p95 \d+.*p99 \d+", out)
    assert re.search(r"\s+20 queued: +[\d.]+ ms per report \([+-]\d+% against none\); service start-up "
                     r"[\d.]+ s; service RSS peak \d+ MB", out)
    alternating = re.findall(r"alternating round (\d): [\d.]+ ms per report empty, [\d.]+ ms with 20 queued "
                             r"\([+-]\d+%\); its service start-up [\d.]+ s", out)
    assert alternating == ["1", "2", "3", "4", "5"], out  # the slowdown's verdict: empty and full spools alternated
    verdict_lines = out[out.index("verdict (every figure with a target):"):].splitlines()[1:]
    figures = ["pipeline ÷ raw", "pipeline ÷ floor", "CPU per report", "file → acknowledged p95",
               "slowdown at 20 queued, median of 5 alternating rounds",
               "service start-up with 20 queued, median of 6 starts", "service RSS (peak) with 20 queued, highest of 6 starts"]
    for figure in figures:
        assert any(figure in line and line.rstrip().endswith(("met", "NOT met")) for line in verdict_lines), figure
    missed = sum(1 for line in verdict_lines if line.endswith("NOT met"))
    assert verdict_lines[len(figures)] == ("targets met" if missed == 0 else
                                           f"some targets not met on this station ({missed} of {len(figures)}; see above)")
    assert list(tmp_path.iterdir()) == []  # the stations, floor folders and spools it made are removed


def test_the_verdict_says_not_met_and_never_passes_what_was_not_measured() -> None:
    figures = PipelineFigures(rows=[Row(50_000, 4, raw=[1000.0, 900.0, 1100.0], floor=[400.0, 380.0, 420.0],
                                        pipe=[300.0, 290.0, 310.0], floor_cpu_ms=[1.8, 1.9, 2.0])])
    figures.latency = {"p50": [20.0], "p95": [120.0], "p99": [400.0]}
    figures.queued = [(0, 3.0, 0.4, 60.0), (100_000, 3.9, 2.5, None)]
    lines: list[str] = []
    assert verdict(figures.checks(), lines.append) is False
    text = "\n".join(lines)
    assert "pipeline ÷ raw (50.0 KB, 4 uploads), median: 0.30× (target ≥ 0.5×): NOT met" in text
    assert "pipeline ÷ floor (50.0 KB, 4 uploads), median: 0.75× (target ≥ 0.9×): NOT met" in text
    assert "CPU per report, service + workers (50.0 KB, 4 uploads): not measured here" in text.replace(", median", "")
    assert "file → acknowledged p95, median: 120.00 ms (target < 300 ms): met" in text
    assert "slowdown at 100000 queued: 30.00 % (target ≤ 20 %): NOT met" in text
    assert "service start-up with 100000 queued: 2.50 s (target < 1.5 s): NOT met" in text
    assert "service RSS (peak) with 100000 queued: not measured here" in text
    assert lines[-1] == "some targets not met on this station (6 of 7; see above)"
    assert figures.worst_ratio() == pytest.approx(0.3, abs=0.01)
    assert PipelineFigures().queued_slowdown() == 0.0 and PipelineFigures().worst_ratio() == 0.0
    # alternating rounds, when measured, decide the slowdown (their median), not the levels' figures
    figures.slowdowns = [0.05, -0.02, 0.30]
    assert figures.queued_slowdown() == pytest.approx(0.05)
    assert any(c.line() == "  slowdown at 100000 queued, median of 3 alternating rounds: 5.00 % (target ≤ 20 %): met"
               for c in figures.checks())
    # ... and every start of the full spool counts: the median start-up, the highest peak of memory
    figures.full_starts, figures.full_rss = [1.2, 1.1, 1.7], [90.0, 101.0]
    lines_now = [c.line() for c in figures.checks()]
    assert "  service start-up with 100000 queued, median of 4 starts: 1.45 s (target < 1.5 s): met" in lines_now
    assert "  service RSS (peak) with 100000 queued, highest of 2 starts: 101.00 MB (target < 100 MB): NOT met" in lines_now
    good = [Check("a", 0.6, ">=", 0.5), Check("b", 1.0, "<=", 2.0), Check("c", 100, "<", 300)]
    assert verdict(good, lines.append) is True and lines[-1] == "targets met"
    assert verdict([], lines.append) is False  # nothing measured is not "met"
    # a value just off its target is not shown as the target itself
    assert Check("r", 0.4971, ">=", 0.5, "×").line() == "  r: 0.497× (target ≥ 0.5×): NOT met"
    assert Check("c", 2.0004, "<=", 2.0, " ms").line() == "  c: 2.0004 ms (target ≤ 2 ms): NOT met"
    assert Check("c", 2.0, "<=", 2.0, " ms").line() == "  c: 2.00 ms (target ≤ 2 ms): met"
    assert spread([3.0, 1.0, 2.0]) == "2 (1–3)" and spread([2.5], ".1f") == "2.5" and spread([]) == "n/a"


@pytest.mark.slow  # an emulator process
def test_the_floor_loop_leaves_every_report_sent_and_no_source(tmp_path: Path) -> None:
    """The floor does the durable steps for real: every report posted, in sent/, fsynced files."""
    from stationflow.engine.devtools.bench_pipeline import report_maker

    proc, url = start_emulator_process()
    try:
        make = report_maker(1000)
        rate, cpu_ms = floor_rate(tmp_path, url, [make() for _ in range(15)])
    finally:
        proc.terminate()
        proc.wait(10)
    assert rate > 0 and cpu_ms > 0
    assert len(list((tmp_path / "sent").iterdir())) == 15
    for folder in ("source", "copies", "tmp", "pending"):
        assert list((tmp_path / folder).iterdir()) == [], folder


def test_session_cpu_counts_the_workers_of_the_service() -> None:
    """A leader that only sleeps, with a child (as a converter worker is) that burns CPU: counted."""
    import subprocess
    import sys
    import time

    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys,time\n"
                               f"subprocess.Popen([sys.executable,'-c',{burn!r}])\ntime.sleep(60)"],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while (session_cpu_s(leader.pid) or 0.0) < 0.3:  # the state that matters: the child's 0.3 s counted
            assert time.monotonic() < deadline, session_cpu_s(leader.pid)
            time.sleep(0.05)
    finally:
        os.killpg(leader.pid, 9)
        leader.wait()
    assert session_cpu_s(leader.pid) is None  # reaped: nothing to read any more


def test_session_cpu_is_read_finer_than_the_clock_tick() -> None:
    """Each live process's time comes from its CPU clock, not /proc's 10 ms ticks: a process that
    used x s of CPU (as it says itself) and then sleeps reads as x, to the millisecond."""
    import subprocess
    import sys

    code = ("import time\nt=time.process_time()\nwhile time.process_time()-t<0.0137: pass\n"
            "print(time.process_time(), flush=True)\ntime.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert leader.stdout is not None
        said = float(leader.stdout.readline())
        seen = session_cpu_s(leader.pid)
    finally:
        os.killpg(leader.pid, 9)
        leader.wait()
    assert seen is not None and said <= seen < said + 0.003, (said, seen)


def test_a_service_that_does_not_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """The benchmark says why the service did not start (its log), instead of waiting forever."""
    station = bench_pipeline._Station(tmp_path / "s", "http://127.0.0.1:9", 1)
    station.config.write_text("station: [this is not a config\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="the service did not start: .*"):
        station.start()
    assert station.proc is None  # stopped and reaped


def test_every_start_of_the_queued_spool_holds_the_queued_reports_and_nothing_sent(tmp_path: Path) -> None:
    """Earlier rounds' sent reports would be carried in the index into the next start (memory and
    start-up measured on more than the queued reports): the spool prunes them before each start,
    and the parked (queued) reports stay."""
    from stationflow.engine.spool.store import Spool

    station = bench_pipeline._Station(tmp_path / "s", "http://127.0.0.1:9", 1)
    make = bench_pipeline.report_maker(1_000)
    bench_pipeline.park(station.data, make, 2)
    with Spool(station.data) as spool:
        for _ in range(3):
            key = spool.accept(make()).key
            claim = spool.claim_next()
            assert claim is not None and claim.key == key
            spool.fire(key, "accepted")
        assert spool.counts()["sent"] == 3
    seen: list[dict[str, int]] = []

    def start() -> float:
        with Spool(station.data, readonly=True) as spool:
            seen.append(spool.counts())
        raise RuntimeError("not started in this test")

    station.start = start  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        bench_pipeline._queued_round(station, None, make, 1)  # type: ignore[arg-type]
    [counts] = seen
    assert counts["sent"] == 0 and counts["retry_wait"] == 2 and sum(counts.values()) == 2
