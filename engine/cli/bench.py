"""``stationflow bench``: measure this station's disk and spool, print the figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="measure this station: disk durability limit and spool rates")
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
                        "against raw HTTP posts; 1 KB and 50 KB, 1/4/16 uploads; 0, 10000 and --queued queued)")
    p.add_argument("--pipeline-n", type=int, default=2000, help="files per pipeline figure (default 2000)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import sys

    from ..upload.uploader import SWITCH_INTERVAL_S, skip_sniffio_lookups

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # measure what the service runs with
    skip_sniffio_lookups()
    if args.pipeline:
        from ..devtools import bench_pipeline

        result = bench_pipeline.run(args.dir, n=args.pipeline_n, queued=args.queued)
        ok = result.worst_ratio() >= 0.8 and result.queued_slowdown() <= 0.2
        print("targets met" if ok else "some targets not met on this station (see above)")
        return 0
    from ..devtools import bench  # imported here: it measures with POSIX-only modules

    figures = bench.run(args.dir, report_bytes=args.size, n=args.n, queued=args.queued)
    if args.upload_n:
        from ..devtools import bench_upload

        bench_upload.run(args.dir, n=args.upload_n)
    ratios = figures.ratios()
    ok = ratios["cycle_vs_raw"] >= 0.6 and (not figures.queued or ratios["queued_vs_empty"] >= 0.8)
    print("targets met" if ok else "some targets not met on this disk (see above)")
    return 0
