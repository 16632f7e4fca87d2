"""Measure this station: the disk's durability limit and the spool's rates, printed as figures.

A benchmark is a script that prints numbers, not a timed test. Ratios are computed from figures
taken in the same run, because shared machines are noisy. ``stationflow bench`` runs it (or
``python -m stationflow.engine.devtools.bench [--pipeline]``); the README records what it printed
on the development machine. The verdict at the end covers every figure that has a target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import durable
from ..errors import StationflowError
from .bench_verdict import Check, verdict
from .samples import make_report
from ..spool.store import Spool


@dataclass
class Figures:
    """Everything measured in one run, for printing and for the README."""

    report_bytes: int = 0
    raw_per_s: float = 0.0
    cycle_per_s: float = 0.0
    queued: int = 0
    cycle_queued_per_s: float = 0.0
    recovery_s: float = 0.0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, float]:
        return {
            "cycle_vs_raw": self.cycle_per_s / self.raw_per_s if self.raw_per_s else 0.0,
            "queued_vs_empty": self.cycle_queued_per_s / self.cycle_per_s if self.cycle_per_s else 0.0,
        }


def _peak_rss_mb() -> float:
    """Peak memory of this process; 0 where ``resource`` does not exist (Windows)."""
    try:
        import resource  # POSIX only: imported here so the module loads on Windows
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _rate(n: int, fn: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - started)


def raw_disk_limit(directory: Path, payload: bytes, n: int) -> float:
    """Operations per second of the bare recipe: write + fsync + rename + directory fsync."""
    tmp = directory / "raw-tmp"
    dest = directory / "raw-dest"
    tmp.mkdir(exist_ok=True)
    dest.mkdir(exist_ok=True)

    def one(i: int) -> None:
        path = tmp / f"{i}.json"
        durable.write_file(path, payload)
        os.replace(path, dest / f"{i}.json")
        durable.fsync_dir(dest)

    return _rate(n, one)


def _report_bytes_factory(approx: int) -> Callable[[int], bytes]:
    template = make_report(0, approx_bytes=approx, seed=11)
    prefix = json.dumps({**template, "id": "@@"}, separators=(",", ":")).encode()
    head, tail = prefix.split(b'"@@"')

    def make(i: int) -> bytes:
        return head + f'"{i:08x}-{os.getpid() & 0xFFFF:04x}-4000-8000-{int(time.time()) & 0xFFFFFFFFFFFF:012x}"'.encode() + tail

    return make


def spool_cycle_rate(spool: Spool, make: Callable[[int], bytes], n: int, offset: int) -> float:
    """accept → send → sent, one report at a time, through the real spool and lifecycle."""

    def one(i: int) -> None:
        spool.accept(make(offset + i))
        claim = spool.claim_next()
        assert claim is not None
        spool.fire(claim.key, "accepted")

    return _rate(n, one)


def run(workdir: Path | None = None, *, report_bytes: int = 1000, n: int = 2000, queued: int = 100_000,
        rounds: int = 5, out: Callable[[str], None] = print) -> Figures:
    """Run every measurement in a fresh folder (removed afterwards) and print as it goes.

    The raw loop, the empty spool and the full spool are measured in alternating rounds of
    ``n / rounds`` operations and their times summed, so that a shared machine's slow moments
    fall on every figure alike.
    """
    base = Path(tempfile.mkdtemp(prefix="stationflow-bench-", dir=workdir))
    figures = Figures()
    make = _report_bytes_factory(report_bytes)
    payload = make(0)
    figures.report_bytes = len(payload)
    per_round = max(1, n // rounds)
    try:
        out(f"disk: {base} — report size {len(payload)} bytes, {rounds} alternating rounds of {per_round} "
            f"operations per figure")
        full_spool: Spool | None = None
        if queued:
            full = base / "full"
            out(f"filling a spool with {queued} pending reports …")
            started = time.perf_counter()
            with Spool(full, fsync=False, max_reports=queued + n + 10) as filling:
                for i in range(queued):
                    filling.accept(make(10_000_000 + i))
            del filling  # measure one index at a time
            os.sync()
            out(f"  filled in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            full_spool = Spool(full, max_reports=queued + n + 10)
            figures.recovery_s = time.perf_counter() - started
            figures.queued = queued
            out(f"start-up recovery of {queued} pending reports:   {figures.recovery_s:8.2f} s (target < 1.5 s)")
        raw_t = empty_t = full_t = 0.0
        with Spool(base / "empty") as empty_spool:
            for r in range(rounds):
                raw_dir = base / f"raw-{r}"
                raw_dir.mkdir()
                raw_t += per_round / raw_disk_limit(raw_dir, payload, per_round)
                empty_t += per_round / spool_cycle_rate(empty_spool, make, per_round, r * per_round)
                if full_spool is not None:
                    full_t += per_round / spool_cycle_rate(full_spool, make, per_round, r * per_round)
        total = rounds * per_round
        figures.raw_per_s = total / raw_t
        figures.cycle_per_s = total / empty_t
        out(f"raw durable limit (write+fsync+rename+dir fsync): {figures.raw_per_s:8.0f} /s")
        out(f"spool accept→send→sent, empty spool:             {figures.cycle_per_s:8.0f} /s "
            f"({figures.ratios()['cycle_vs_raw']:.0%} of raw; target ≥ 60%)")
        if full_spool is not None:
            figures.cycle_queued_per_s = total / full_t
            full_spool.close()
            out(f"spool cycle with {queued} queued:               {figures.cycle_queued_per_s:8.0f} /s "
                f"({figures.ratios()['queued_vs_empty']:.0%} of empty; target ≥ 80%)")
        figures.peak_rss_mb = _peak_rss_mb()
        out(f"peak memory (RSS): {figures.peak_rss_mb:.0f} MB (target < 100 MB)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return figures


def station_checks(figures: Figures, upload: dict[str, float]) -> list[Check]:
    """Every figure ``stationflow bench`` prints that has a target (the upload ones too)."""
    ratios = figures.ratios()
    checks = [Check("spool cycle ÷ raw durable limit", ratios["cycle_vs_raw"], ">=", 0.6, "×")]
    if figures.queued:
        checks += [Check(f"spool cycle with {figures.queued} queued ÷ empty", ratios["queued_vs_empty"], ">=", 0.8, "×"),
                   Check(f"start-up recovery of {figures.queued}", figures.recovery_s, "<", 1.5, " s")]
    if figures.peak_rss_mb:
        checks.append(Check("peak memory (RSS)", figures.peak_rss_mb, "<", 100.0, " MB"))
    for key in sorted(k for k in upload if k.startswith("raw_")):
        c = key[len("raw_"):]
        checks.append(Check(f"spool → server drain ÷ raw POSTs, {c} at a time", upload[f"drain_{c}"] / upload[key],
                            ">=", 0.85, "×"))
    if "latency_p95_ms" in upload:
        checks.append(Check("accept → acknowledgement p95 at 50/s", upload["latency_p95_ms"], "<", 50.0, " ms"))
    return checks


def run_cli(args: argparse.Namespace) -> int:
    """``stationflow bench`` with its parsed options: measure, print, give the verdict (exit 0 either way:
    a benchmark reports figures; the verdict line says whether they meet the targets)."""
    from ..upload.uploader import SWITCH_INTERVAL_S, skip_sniffio_lookups

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # measure what the service runs with
    skip_sniffio_lookups()
    if args.dir is not None:
        # --dir names the disk to measure; a folder not made yet is made (as data_dir is by the service).
        try:
            Path(args.dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StationflowError(f"--dir {args.dir}: {exc.strerror or exc}",
                                   hint="name a folder on the disk that holds data_dir") from exc
    if args.pipeline:
        from . import bench_pipeline

        bench_pipeline.run_from(args)
        return 0
    figures = run(args.dir, report_bytes=args.size, n=args.n, queued=args.queued)
    upload: dict[str, float] = {}
    if args.upload_n:
        from . import bench_upload

        upload = bench_upload.run(args.dir, n=args.upload_n)
    verdict(station_checks(figures, upload))
    return 0


def main(argv: list[str] | None = None) -> int:
    from ..cli.bench import add_arguments

    parser = argparse.ArgumentParser(prog="python -m stationflow.engine.devtools.bench",
                                     description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
