"""``stationflow bench``: measure this station's disk, spool, uploads or whole pipeline; print the figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``stationflow bench`` and of ``python -m stationflow.engine.devtools.bench``."""
    p.add_argument("--dir", type=Path, default=None,
                   help="folder on the disk to measure (default: the system temp folder; use the data_dir's disk)")
    p.add_argument("--size", type=int, default=1000, help="report size in bytes (default 1000)")
    p.add_argument("-n", type=int, default=2000, help="operations per figure (default 2000)")
    p.add_argument("--queued", type=int, default=100_000,
                   help="reports queued for the 'full spool' figure (default 100000; 0 skips it)")
    p.add_argument("--upload-n", type=int, default=1000,
                   help="reports per upload figure (50 KB sample; default 1000; 0 skips the upload figures)")
    p.add_argument("--pipeline", action="store_true",
                   help="measure the whole pipeline instead (watch folder → spool → server acknowledgement, "
                        "against raw HTTP posts and the floor loop, CPU per report, file → ack latency; "
                        "0, 10000 and --queued queued)")
    p.add_argument("--pipeline-n", type=int, default=2000, help="files per pipeline figure and round (default 2000)")
    p.add_argument("--pipeline-rounds", type=int, default=3,
                   help="alternating rounds (default 3; medians with min–max are printed)")
    p.add_argument("--pipeline-sizes", default="50000",
                   help="report sizes in bytes, comma-separated (default 50000: the targets' size)")
    p.add_argument("--pipeline-uploads", default="4",
                   help="upload concurrencies, comma-separated (default 4: the service's default)")
    p.add_argument("--pipeline-latency-s", type=float, default=10.0,
                   help="seconds of each file → acknowledged round at 20 files/s (default 10)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="measure this station: disk durability limit and spool rates")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..devtools.bench import run_cli  # imported here: it measures with POSIX-only modules

    return run_cli(args)
