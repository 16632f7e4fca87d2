"""Measure this station: the disk's durability limit and the spool's rates, printed as figures.

A benchmark is a script that prints numbers, not a timed test. Ratios are computed from figures
taken in the same run, because shared machines are noisy. ``stationflow bench`` runs it; the
README records what it printed on the development machine.
"""

from __future__ import annotations

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
            out(f"start-up recovery of {queued} pending reports:   {figures.recovery_s:8.2f} s (target < 3 s)")
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
