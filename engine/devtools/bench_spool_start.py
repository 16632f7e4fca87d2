"""Start-up and memory of a spool holding 100,000 reports, per state (issue 18: < 1.5 s, < 100 MB).

Run as ``python -m stationflow.engine.devtools.bench_spool_start [--n 100000] [--rounds 3] [--dir D]``.
The spool is filled as the spool itself leaves it (report files named ``<id>.<crc32>.json`` in the
state's folder; for ``retry_wait`` also the sidecar each waiting report has, and its due time in
the file's mtime), then opened in a fresh process per round (imports, lock, start-up scan and
recovery, index), so the time and the resident memory are what a service starting on that spool
pays. ``retry_wait (first open after upgrading)`` is the same spool without the marker that says
due times are in mtimes: that one open reads every sidecar, as every open did before.
A benchmark prints figures; it is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .samples import make_report_bytes
from ..spool.entries import crc_of
from ..spool.opening import WAITS_IN_MTIME

__all__ = ["main"]


def _rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak from ``resource``, or 0)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024 if sys.platform != "darwin" else 2**20)


def fill(data_dir: Path, state: str, n: int) -> None:
    """``n`` reports of about 1 KB in ``state``, written the way the spool leaves them (no fsync)."""
    from ..spool.store import Spool

    Spool(data_dir, fsync=False).close()  # the folders, the format marker and the waits marker
    template = make_report_bytes(0, seed=1, approx_bytes=1000)
    old_id = json.loads(template)["id"].encode()
    folder = data_dir / "spool" / state
    meta = data_dir / "spool" / "meta"
    due = time.time() + 3600.0
    for _ in range(n):
        key = str(uuid.uuid4())
        raw = template.replace(old_id, key.encode())
        path = folder / f"{key}.{crc_of(raw)}.json"
        with open(path, "wb") as f:
            f.write(raw)
        if state == "retry_wait":
            os.utime(path, (due, due))
            sidecar = {"attempts": 1, "last_error": "503 Service Unavailable", "next_attempt_epoch": due,
                       "history": [{"at": "2026-01-01T00:00:00.000Z", "from": "sending", "to": state,
                                    "trigger": "transient_error", "note": "503 Service Unavailable"}],
                       "id": key}
            (meta / f"{key}.json").write_bytes(json.dumps(sidecar, indent=1).encode())


def _child(data_dir: str) -> None:
    """One measured open, in a fresh process: print seconds and RSS as JSON."""
    started = time.perf_counter()
    from ..spool.store import Spool

    imported = time.perf_counter()
    rss_before = _rss_mb()
    opened_at, cpu_at = time.perf_counter(), time.process_time()
    spool = Spool(data_dir, fsync=False)
    opened, cpu = time.perf_counter(), time.process_time()
    counts = {s: n for s, n in spool.counts().items() if n}
    rss_after = _rss_mb()
    spool.close()
    print(json.dumps({"open_s": opened - opened_at, "cpu_s": cpu - cpu_at, "import_s": imported - started,
                      "rss_before_mb": rss_before, "rss_mb": rss_after, "counts": counts}))


def _measure(data_dir: Path, *, legacy: bool = False) -> dict[str, Any]:
    if legacy:
        (data_dir / "spool" / WAITS_IN_MTIME).unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-m", __spec__.name if __spec__ else "", "--child", str(data_dir)],
                         check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="reports per state (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="opens per figure (default: %(default)s)")
    parser.add_argument("--dir", help="folder to work in (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="sf-bench-start-", dir=args.dir))
    try:
        print(f"spool start-up with {args.n:,} reports per state, {args.rounds} opens each "
              f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
        print(f"{'state':<40} {'open s, median (min-max)':>24} {'CPU s':>6} {'RSS MB':>7} {'before open':>12}")
        for label, state, legacy in [("pending", "pending", False), ("retry_wait", "retry_wait", False),
                                     ("retry_wait (first open after upgrading)", "retry_wait", True)]:
            data_dir = work / state
            if not data_dir.exists():
                started = time.perf_counter()
                fill(data_dir, state, args.n)
                print(f"  (filled {state} in {time.perf_counter() - started:.1f} s)")
            runs = [_measure(data_dir, legacy=legacy) for _ in range(args.rounds)]
            if any(r["counts"] != {state: args.n} for r in runs):
                print(f"  unexpected counts: {[r['counts'] for r in runs]}")
            times = [r["open_s"] for r in runs]
            rss = statistics.median(r["rss_mb"] for r in runs)
            before = statistics.median(r["rss_before_mb"] for r in runs)
            cpu = statistics.median(r["cpu_s"] for r in runs)
            print(f"{label:<40} {statistics.median(times):>11.2f} ({min(times):.2f}-{max(times):.2f}) "
                  f"{cpu:>6.2f} {rss:>7.0f} {before:>12.0f}")
        print("targets: open < 1.5 s and RSS < 100 MB at 100,000 queued in any state")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
