"""The whole pipeline measured: a file dropped in a watch folder → durable in the spool → the server's
acknowledgement, against raw non-durable HTTP posts and against the floor, in the same run.

    python -m stationflow.engine.devtools.bench --pipeline [--pipeline-n 2000] [--queued 100000]
    (or: stationflow bench --pipeline)

The server is the emulator in its own process. The pipeline is the real ``stationflow run`` in its
own process (intake with ``settle_ms: 0`` and ``after: archive``, ``rate_per_s`` unlimited), so the
figure includes everything a station does: copy and fsync of the source, conversion in a worker
process, the spool's durable accept, the archive rename, the upload and the move to ``sent``. The
clock starts when the first file is renamed into the watch folder and stops when the emulator has
acknowledged the last report. Raw posts are plain httpx posts of the same bytes, nothing on disk.
The floor (bench_floor.py) is the same durable steps in one minimal loop: ``pipeline ÷ floor``
is what the service's own plumbing costs. CPU per report is the service's and its workers'.

Three arms alternate A B C A B C over the rounds (each round also times files written at a steady
20/s to their acknowledgement, bench_latency's method with the default intake settings), and the
figures are medians with min–max: a shared machine is noisy, and ratios are taken within a round.

Queued: how the time per report changes when the spool already holds 10,000 or 100,000 reports.
They are filled in beforehand without fsync (for speed) and parked in ``retry_wait`` with their next
attempt a day away, so they sit in the index, the state directories and ``meta/`` during the
measurement without competing for the uploads.

The verdict lists every figure that has a target in issue 18, each met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from .bench_floor import floor_rate, session_cpu_s
from .bench_latency import _percentile, one_round
from .bench_upload import raw_post_rate, start_emulator_process
from .bench_verdict import Check, median, spread, verdict
from .emulator import DEFAULT_TOKEN, Emulator
from .samples import make_report
from ..intake.model import BATCH_FILES
from ..spool.store import Spool

SIZES = (50_000,)  # the size of issue 18's targets; --sizes adds others
CONCURRENCIES = (4,)  # the service's default upload concurrency
ROUNDS = 3
WARM_UP_FILES = 2 * BATCH_FILES  # a batch for each of the service's two converter workers
PARK_S = 86_400.0  # the queued reports' next attempt: a day away (also the longest retry.max_s allowed)
#: Issue 18's targets for the figures this benchmark prints.
TARGET_VS_RAW, TARGET_VS_FLOOR, TARGET_CPU_MS, TARGET_P95_MS = 0.5, 0.9, 2.0, 300.0
TARGET_SLOWDOWN, TARGET_STARTUP_S, TARGET_RSS_MB = 0.2, 1.5, 100.0
#: Rounds of an empty against a full spool, at least: one round's ratio moves by ±13 % (σ over 15
#: rounds of one afternoon) around a true slowdown of a few %, against a 20 % target.
QUEUED_ROUNDS = 5


@dataclass
class Row:
    """One report size and upload concurrency: each arm's figure per round (alternating rounds)."""

    size: int
    uploads: int
    raw: list[float] = field(default_factory=list)  # reports/s
    floor: list[float] = field(default_factory=list)
    pipe: list[float] = field(default_factory=list)
    floor_cpu_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # service + workers, per report (empty: not measurable)

    def vs_raw(self) -> list[float]:
        return [p / r for p, r in zip(self.pipe, self.raw)]  # each round against its own raw figure

    def vs_floor(self) -> list[float]:
        return [p / f for p, f in zip(self.pipe, self.floor)]


@dataclass
class PipelineFigures:
    """Everything measured in one run, keyed for the README table."""

    rows: list[Row] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: {"p50": [], "p95": [], "p99": []})  # ms per round
    # queued, ms per report, start-up s, the service process's peak RSS in MB (None without /proc)
    queued: list[tuple[int, float, float, float | None]] = field(default_factory=list)
    #: Per alternating round: ms per report with the largest queue ÷ with an empty spool, minus 1;
    #: and the full spool's service start-up (s) and peak RSS (MB) in that round.
    slowdowns: list[float] = field(default_factory=list)
    full_starts: list[float] = field(default_factory=list)
    full_rss: list[float] = field(default_factory=list)
    met: bool = False

    def worst_ratio(self) -> float:
        return min((median(row.vs_raw()) or 0.0 for row in self.rows), default=0.0)

    def queued_slowdown(self) -> float:
        """Time per report at the largest queue against an empty spool, minus 1 (0.2 = 20% slower):
        the median of the alternating rounds when there are some, else the levels' figures."""
        if self.slowdowns:
            return median(self.slowdowns) or 0.0
        if len(self.queued) < 2:
            return 0.0
        return self.queued[-1][1] / self.queued[0][1] - 1.0

    def checks(self) -> list[Check]:
        """Every figure printed that has a target in issue 18."""
        out: list[Check] = []
        for row in self.rows:
            label = f"{row.size / 1000:.1f} KB, {row.uploads} uploads"
            out.append(Check(f"pipeline ÷ raw ({label}), median", median(row.vs_raw()), ">=", TARGET_VS_RAW, "×"))
            out.append(Check(f"pipeline ÷ floor ({label}), median", median(row.vs_floor()), ">=", TARGET_VS_FLOOR,
                             "×"))
            out.append(Check(f"CPU per report, service + workers ({label}), median", median(row.cpu_ms), "<=",
                             TARGET_CPU_MS, " ms"))
        if self.latency["p95"]:
            out.append(Check("file → acknowledged p95, median", median(self.latency["p95"]), "<", TARGET_P95_MS,
                             " ms"))
        if len(self.queued) > 1:
            how = f", median of {len(self.slowdowns)} alternating rounds" if self.slowdowns else ""
            out.append(Check(f"slowdown at {self.queued[-1][0]} queued{how}", self.queued_slowdown() * 100, "<=",
                             TARGET_SLOWDOWN * 100, " %"))
        if self.queued and self.queued[-1][0]:
            level, _, start, rss = self.queued[-1]
            starts = [start, *self.full_starts]  # every start of the full spool: their median
            many = f", median of {len(starts)} starts" if len(starts) > 1 else ""
            out.append(Check(f"service start-up with {level} queued{many}", median(starts), "<",
                             TARGET_STARTUP_S, " s"))
            peaks = [r for r in (rss, *self.full_rss) if r is not None]  # the highest: a peak is a peak
            most = f", highest of {len(peaks)} starts" if len(peaks) > 1 else ""
            out.append(Check(f"service RSS (peak) with {level} queued{most}", max(peaks) if peaks else None, "<",
                             TARGET_RSS_MB, " MB"))
        return out


def report_maker(approx_bytes: int, seed: int = 8) -> Callable[[], bytes]:
    """Reports of about ``approx_bytes``, each with a new id; built once, stamped with an id per call."""
    template = make_report(0, approx_bytes=approx_bytes, seed=seed, station="BENCH-01")
    head, tail = json.dumps({**template, "id": "@@"}, separators=(",", ":")).encode().split(b'"@@"')
    return lambda: head + f'"{uuid.uuid4()}"'.encode() + tail


class _Emulator:
    """The emulator process's control endpoint: reset and the acknowledged count."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=10)

    def reset(self) -> None:
        self.client.post("/_emulator/reset").raise_for_status()

    def accepted(self) -> int:
        return int(self.client.get("/_emulator/stats").json()["accepted"])

    def close(self) -> None:
        self.client.close()


class _Station:
    """A station folder and ``stationflow run`` in a subprocess."""

    def __init__(self, root: Path, url: str, concurrency: int) -> None:
        self.root = root
        self.watch, self.staging, self.data = root / "drop", root / "staging", root / "data"
        for folder in (self.watch, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        self.config = root / "station.yaml"
        self.log = root / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(yaml.safe_dump({
            "station": {"name": "BENCH-01", "location": "Lab", "purpose": "Benchmark"},
            "server": {"url": url, "token": DEFAULT_TOKEN},
            "data_dir": str(self.data),
            "intake": [{"name": "bench", "watch": str(self.watch), "patterns": ["*.json"], "converter": "wsjf",
                        "settle_ms": 0, "after": "archive"}],
            "upload": {"concurrency": concurrency, "rate_per_s": None, "retry": {"initial_s": 1, "max_s": PARK_S}},
            "spool": {"max_reports": 1_000_000, "max_bytes": "100GB", "min_free_disk": 0},
        }, sort_keys=False), encoding="utf-8")

    def start(self) -> float:
        """Start the service; seconds until it says it is running (spool recovery included)."""
        # As on a station, whose install compiled the bytecode (pip does, for a wheel): a developer's
        # PYTHONDONTWRITEBYTECODE would have every start compile stationflow's sources again (~0.3 s).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        started = time.perf_counter()
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(self.config), "run"],
                                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
        deadline = time.monotonic() + 600
        while b"service running" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        return time.perf_counter() - started

    def peak_rss_mb(self) -> float | None:
        """The service process's peak resident memory so far (it holds the spool's index; the
        intake process and the converter workers hold nothing per queued report), None without /proc."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # converter workers leave with it
        except (ProcessLookupError, PermissionError):
            pass

    def stage(self, reports: list[bytes]) -> list[str]:
        names = [f"{uuid.uuid4().hex}.json" for _ in reports]
        for name, raw in zip(names, reports):
            (self.staging / name).write_bytes(raw)
        return names


def pipeline_rate(station: _Station, server: _Emulator, reports: list[bytes], *,
                  warm_up: Callable[[], bytes] | None = None) -> tuple[float, float | None]:
    """Reports per second from the first file in the watch folder to the last acknowledgement, and
    the CPU ms per report the service and its workers used meanwhile (None without /proc).

    With ``warm_up``, ``WARM_UP_FILES`` reports go through first, untimed: converter workers
    start on demand, and their start-up is not what a running station pays per report. One file
    started one worker; the second then started inside the timed burst (~0.2 s of CPU, ~0.1 ms
    per report of a 2,000-file figure). Two full batches at once start both.
    """
    if warm_up is not None:
        pipeline_rate(station, server, [warm_up() for _ in range(WARM_UP_FILES)])
    names = station.stage(reports)
    server.reset()
    os.sync()  # start with no dirty pages: earlier figures' writeback would slow this one's fsyncs
    assert station.proc is not None
    cpu = session_cpu_s(station.proc.pid)
    started = time.perf_counter()
    for name in names:
        os.replace(station.staging / name, station.watch / name)
    deadline = time.monotonic() + 60 + len(reports)
    while server.accepted() < len(reports):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {server.accepted()} of {len(reports)} acknowledged; service log: "
                               f"{station.log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    after = session_cpu_s(station.proc.pid)
    cpu_ms = (after - cpu) * 1000 / len(reports) if cpu is not None and after is not None else None
    return len(reports) / elapsed, cpu_ms


def park(data_dir: Path, make: Callable[[], bytes], count: int) -> float:
    """Add ``count`` reports to the spool, parked in retry_wait for a day; returns seconds taken."""
    started = time.perf_counter()
    with Spool(data_dir, fsync=False, max_reports=10_000_000, max_bytes=10**12, max_wait_s=PARK_S) as spool:
        for _ in range(count):
            spool.accept(make())
            claim = spool.claim_next()
            assert claim is not None
            spool.fire(claim.key, "transient_error", error="parked by the benchmark", next_attempt_s=PARK_S)
    os.sync()
    return time.perf_counter() - started


def _raw_rate(url: str, reports: list[bytes], uploads: int) -> float:
    """Raw posts in a thread of their own: the figure is the same (this thread only waits), and the
    caller's frames keep coverage's line tracing, which an event loop run with httpx on this very
    stack loses on Python 3.11 (seen as untested lines after every raw figure)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(raw_post_rate, url, reports, uploads).result()


def _one_round(base: Path, url: str, server: _Emulator, row: Row, n: int, r: int) -> None:
    """One round of one row: raw, floor, pipeline, one after the other (the rounds alternate them)."""
    make = report_maker(row.size)
    raw = _raw_rate(url, [make() for _ in range(n)], row.uploads)
    floor_dir = base / f"floor-{row.size}-{row.uploads}-{r}"
    try:
        floor, floor_cpu = floor_rate(floor_dir, url, [make() for _ in range(n)])
    finally:
        shutil.rmtree(floor_dir, ignore_errors=True)
    station = _Station(base / f"s{row.size}-c{row.uploads}-{r}", url, row.uploads)
    try:
        station.start()
        pipe, cpu_ms = pipeline_rate(station, server, [make() for _ in range(n)], warm_up=make)
    finally:
        station.stop()
        shutil.rmtree(station.root, ignore_errors=True)
    row.raw.append(raw)
    row.floor.append(floor)
    row.pipe.append(pipe)
    row.floor_cpu_ms.append(floor_cpu)
    if cpu_ms is not None:
        row.cpu_ms.append(cpu_ms)


def _latency_round(base: Path, emulator: Emulator, figures: PipelineFigures, *, rate: float, seconds: float,
                   seed: int) -> str:
    """One file → acknowledged round (default intake settings, bench_latency's method)."""
    values = one_round(base, emulator, settle_on_close=True, rate=rate, seconds=seconds, seed=seed)
    if not values:
        raise RuntimeError("no file of the latency round was acknowledged")
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        figures.latency[name].append(_percentile(values, q) * 1000)
    return f"latency p95 {figures.latency['p95'][-1]:.0f} ms"


def run(workdir: Path | None = None, *, n: int = 2000, queued: int = 100_000, sizes: tuple[int, ...] = SIZES,
        concurrencies: tuple[int, ...] = CONCURRENCIES, rounds: int = ROUNDS, latency_rate: float = 20.0,
        latency_s: float = 10.0, out: Callable[[str], None] = print) -> PipelineFigures:
    """Measure and print every pipeline figure and the verdict; the folder is removed afterwards.

    Arms alternate within each round (raw, floor, pipeline for each row, then a latency round), so
    a shared machine's slow moments fall on every arm alike; figures are medians over the rounds.
    """
    figures = PipelineFigures(rows=[Row(len(report_maker(size)()), c) for size in sizes for c in concurrencies])
    base = Path(tempfile.mkdtemp(prefix="stationflow-bench-pipeline-", dir=workdir))
    proc, url = start_emulator_process()
    server = _Emulator(url)
    levels = sorted({0, min(10_000, queued), queued}) if queued else [0]
    try:
        out(f"pipeline: {n} files per figure dropped in a watch folder → spool (fsync) → server acknowledgement;")
        out(f"  `stationflow run` and the emulator each in their own process ({url}); {os.cpu_count()} CPU(s); "
            f"disk {base} ({_filesystem(base)}); load average {_load()}")
        out(f"  {rounds} rounds, arms alternating within each: raw httpx POSTs, floor (the same durable steps in "
            f"one minimal loop), pipeline; then file → ack latency at {latency_rate:g} files/s for {latency_s:g} s")
        with Emulator(port=0, seed=1, keep_in_memory=False) as latency_server:
            for r in range(rounds):
                done = []
                for row in figures.rows:
                    _one_round(base, url, server, row, n, r)
                    done.append(f"{row.size / 1000:.0f} KB×{row.uploads}: raw {row.raw[-1]:.0f}/s, floor "
                                f"{row.floor[-1]:.0f}/s, pipeline {row.pipe[-1]:.0f}/s")
                done.append(_latency_round(base, latency_server, figures, rate=latency_rate, seconds=latency_s,
                                           seed=r + 1))
                out(f"  round {r + 1}: " + "; ".join(done))
        out(f"  medians over {rounds} rounds (min–max):")
        out(f"  {'report':>7} {'uploads':>7} | {'raw POST/s':>16} | {'floor/s':>16} | {'pipeline/s':>16} | "
            f"{'pipeline÷raw':>16} | {'pipeline÷floor':>16} | {'CPU ms/report':>16} | floor CPU ms")
        for row in figures.rows:
            out(f"  {row.size / 1000:>5.1f}KB {row.uploads:>7} | {spread(row.raw):>16} | {spread(row.floor):>16} | "
                f"{spread(row.pipe):>16} | {spread(row.vs_raw(), '.2f'):>16} | {spread(row.vs_floor(), '.2f'):>16} | "
                f"{spread(row.cpu_ms, '.2f'):>16} | {spread(row.floor_cpu_ms, '.2f')}")
        out(f"  file → acknowledged at {latency_rate:g} files/s, default intake settings: "
            + ", ".join(f"{k} {spread(v)} ms" for k, v in figures.latency.items()))
        _queued(base, url, server, figures, levels, n, out, rounds=max(rounds, QUEUED_ROUNDS))
    finally:
        server.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
    figures.met = verdict(figures.checks(), out)
    return figures


def _queued(base: Path, url: str, server: _Emulator, figures: PipelineFigures, levels: list[int], n: int,
            out: Callable[[str], None], *, rounds: int = 0) -> None:
    """Time per report with 0, 10,000 and ``queued`` reports already in the spool; then the slowdown
    at the largest queue in ``rounds`` alternating rounds against an empty spool."""
    make = report_maker(1_000)
    out(f"  time per report with reports already queued ({len(make())} B reports, 4 uploads, best of 2 "
        f"batches; the queued ones parked in retry_wait):")
    station = _Station(base / "queued", url, 4)
    filled = 0
    try:
        for level in levels:
            if level > filled:
                took = park(station.data, make, level - filled)
                out(f"    parked {level - filled} more reports without fsync in {took:.0f} s")
                filled = level
            startup, ms, rss = _queued_round(station, server, make, n)
            figures.queued.append((level, ms, startup, rss))
            versus = f" ({ms / figures.queued[0][1] - 1:+.0%} against none)" if level else ""
            memory = f"; service RSS peak {rss:.0f} MB" if rss is not None else ""
            out(f"    {level:>7} queued: {ms:6.2f} ms per report{versus}; service start-up {startup:.2f} s{memory}")
        if filled and rounds:
            # The levels above are measured a minute apart, and a shared machine's speed moves by a
            # fifth in a minute: the slowdown's verdict comes from rounds that alternate an empty
            # spool and the full one (A B, B A, ...), each its own service started afresh.
            empty = _Station(base / "queued-empty", url, 4)
            for r in range(rounds):
                # A B, then B A: a machine slowing down (or speeding up) over the rounds falls on both.
                if r % 2 == 0:
                    none_ms = _queued_round(empty, server, make, n)[1]
                startup, full_ms, rss = _queued_round(station, server, make, n)
                if r % 2 == 1:
                    none_ms = _queued_round(empty, server, make, n)[1]
                figures.slowdowns.append(full_ms / none_ms - 1.0)
                figures.full_starts.append(startup)
                if rss is not None:
                    figures.full_rss.append(rss)
                out(f"    alternating round {r + 1}: {none_ms:.2f} ms per report empty, {full_ms:.2f} ms with "
                    f"{filled} queued ({figures.slowdowns[-1]:+.0%}); its service start-up {startup:.2f} s")
    finally:
        station.stop()


def _queued_round(station: _Station, server: _Emulator, make: Callable[[], bytes], n: int
                  ) -> tuple[float, float, float | None]:
    """Start the station, time the best of two batches of ``n`` reports, stop it: (start-up s, ms per
    report, the service's peak RSS in MB).

    The reports earlier rounds sent are pruned first (the spool's own ``prune_sent``, with no days
    kept; the service is stopped), so every start holds the queued reports and nothing else: each
    round sends 4,000 more, which the index would carry into the next start (~4 MB more at the
    fourth start of 100,000)."""
    if station.data.exists():
        with Spool(station.data, keep_sent_days=0.0, max_reports=10_000_000, max_bytes=10**12,
                   max_wait_s=PARK_S) as spool:
            spool.prune_sent()
    startup = station.start()
    try:
        # Best of two batches: one figure per level on a shared machine is mostly noise.
        rate = max(pipeline_rate(station, server, [make() for _ in range(n)], warm_up=make)[0],
                   pipeline_rate(station, server, [make() for _ in range(n)])[0])
        rss = station.peak_rss_mb()
    finally:
        station.stop()
    return startup, 1000.0 / rate, rss


def _filesystem(path: Path) -> str:
    """The file system type of ``path``'s mount (Linux), for the printed method."""
    best, kind = "", "file system unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) >= len(best):
                    best, kind = parts[1], f"{parts[2]} at {parts[1]}"
    except OSError:
        pass
    return kind


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def run_from(args: argparse.Namespace) -> PipelineFigures:
    return run(args.dir, n=args.pipeline_n, queued=args.queued, rounds=args.pipeline_rounds,
               sizes=tuple(int(v) for v in str(args.pipeline_sizes).split(",") if v),
               concurrencies=tuple(int(v) for v in str(args.pipeline_uploads).split(",") if v),
               latency_s=args.pipeline_latency_s)


def main(argv: list[str] | None = None) -> int:
    from .bench import main as bench_main

    return bench_main(["--pipeline", *(argv or sys.argv[1:])])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
