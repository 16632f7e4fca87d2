"""The whole pipeline measured: a file dropped in a watch folder → durable in the spool → the server's
acknowledgement, against raw non-durable HTTP posts of the same reports to the same server, in the same run.

    python -m stationflow.engine.devtools.bench_pipeline [-n 2000] [--queued 100000]      (or: stationflow bench --pipeline)

The server is the emulator in its own process. The pipeline is the real ``stationflow run`` in its
own process (intake with ``settle_ms: 0`` and ``after: archive``, ``rate_per_s`` unlimited), so the
figure includes everything a station does: copy and fsync of the source, conversion in a worker
process, the spool's durable accept, the archive rename, the upload and the move to ``sent``. The
clock starts when the first file is renamed into the watch folder and stops when the emulator has
acknowledged the last report. Raw posts are plain httpx posts of the same bytes, nothing on disk.

Queued: how the time per report changes when the spool already holds 10,000 or 100,000 reports.
They are filled in beforehand without fsync (for speed) and parked in ``retry_wait`` with their next
attempt a day away, so they sit in the index, the state directories and ``meta/`` during the
measurement without competing for the uploads. Ratios are computed within one run, because
shared machines are noisy.
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from .bench_upload import raw_post_rate, start_emulator_process
from .emulator import DEFAULT_TOKEN
from .samples import make_report
from ..spool.store import Spool

SIZES = (1_000, 50_000)
CONCURRENCIES = (1, 4, 16)
PARK_S = 86_400.0  # the queued reports' next attempt: a day away (also the longest retry.max_s allowed)


@dataclass
class PipelineFigures:
    """Everything measured in one run, keyed for the README table."""

    rows: list[tuple[int, int, float, float]] = field(default_factory=list)  # size, uploads, raw/s, pipeline/s
    queued: list[tuple[int, float, float]] = field(default_factory=list)  # queued, ms per report, start-up s

    def worst_ratio(self) -> float:
        return min((pipe / raw for _, _, raw, pipe in self.rows), default=0.0)

    def queued_slowdown(self) -> float:
        """Time per report at the largest queue against an empty spool, minus 1 (0.2 = 20% slower)."""
        if len(self.queued) < 2:
            return 0.0
        return self.queued[-1][1] / self.queued[0][1] - 1.0


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
        started = time.perf_counter()
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(self.config), "run"],
                                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 600
        while b"service running" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        return time.perf_counter() - started

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
                  warm_up: Callable[[], bytes] | None = None) -> float:
    """Reports per second from the first file in the watch folder to the last acknowledgement.

    With ``warm_up``, one report goes through first, untimed: the converter workers start with
    the first file, and that start-up is not what a running station pays per report.
    """
    if warm_up is not None:
        pipeline_rate(station, server, [warm_up()])
    names = station.stage(reports)
    server.reset()
    os.sync()  # start with no dirty pages: earlier figures' writeback would slow this one's fsyncs
    started = time.perf_counter()
    for name in names:
        os.replace(station.staging / name, station.watch / name)
    deadline = time.monotonic() + 60 + len(reports)
    while server.accepted() < len(reports):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {server.accepted()} of {len(reports)} acknowledged; service log: "
                               f"{station.log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.02)
    return len(reports) / (time.perf_counter() - started)


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


def run(workdir: Path | None = None, *, n: int = 2000, queued: int = 100_000, sizes: tuple[int, ...] = SIZES,
        concurrencies: tuple[int, ...] = CONCURRENCIES, out: Callable[[str], None] = print) -> PipelineFigures:
    """Measure and print every pipeline figure; the folder is removed afterwards."""
    figures = PipelineFigures()
    base = Path(tempfile.mkdtemp(prefix="stationflow-bench-pipeline-", dir=workdir))
    proc, url = start_emulator_process()
    server = _Emulator(url)
    try:
        out(f"pipeline: {n} files per figure dropped in a watch folder → spool (fsync) → server acknowledgement;")
        out(f"  `stationflow run` and the emulator each in their own process ({url}); {os.cpu_count()} CPU(s); "
            f"disk {base}")
        out(f"  {'report':>7} {'uploads':>8} {'raw POST/s':>11} {'pipeline/s':>11} {'ratio':>6}   (target ≥ 0.80)")
        for size in sizes:
            make = report_maker(size)
            actual = len(make())
            for c in concurrencies:
                raw = raw_post_rate(url, [make() for _ in range(n)], c)
                station = _Station(base / f"s{size}-c{c}", url, c)
                try:
                    station.start()
                    pipe = pipeline_rate(station, server, [make() for _ in range(n)], warm_up=make)
                finally:
                    station.stop()
                    shutil.rmtree(station.root, ignore_errors=True)
                figures.rows.append((actual, c, raw, pipe))
                out(f"  {actual / 1000:>5.1f}KB {c:>8} {raw:>11.0f} {pipe:>11.0f} {pipe / raw:>6.2f}")
        levels = sorted({0, min(10_000, queued), queued}) if queued else [0]
        make = report_maker(SIZES[0])
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
                startup = station.start()
                try:
                    # Best of two batches: one figure per level on a shared machine is mostly noise.
                    rate = max(pipeline_rate(station, server, [make() for _ in range(n)], warm_up=make),
                               pipeline_rate(station, server, [make() for _ in range(n)]))
                finally:
                    station.stop()
                ms = 1000.0 / rate
                figures.queued.append((level, ms, startup))
                versus = f" ({ms / figures.queued[0][1] - 1:+.0%} against none; target ≤ +20%)" if level else ""
                out(f"    {level:>7} queued: {ms:6.2f} ms per report{versus}; service start-up {startup:.1f} s")
        finally:
            station.stop()
    finally:
        server.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
    ratio, slowdown = figures.worst_ratio(), figures.queued_slowdown()
    out(f"  worst pipeline/raw ratio {ratio:.2f} (target ≥ 0.80): {'met' if ratio >= 0.8 else 'NOT met'}; "
        f"slowdown at {levels[-1]} queued {slowdown:+.0%} (target ≤ +20%): {'met' if slowdown <= 0.2 else 'NOT met'}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stationflow.engine.devtools.bench_pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="files per figure (default 2000)")
    parser.add_argument("--queued", type=int, default=100_000, help="largest queue measured (default 100000; 0 skips)")
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: temp)")
    args = parser.parse_args(argv)
    run(args.dir, n=args.n, queued=args.queued)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
