"""``stationflow demo``: run the whole pipeline against the emulator; exit 0 only if nothing was lost."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devtools.demo import run_demo


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="the whole pipeline against a local WATS emulator, no setup needed")
    p.add_argument("--reports", type=int, default=300, help="how many reports to generate (default 300)")
    p.add_argument("--outage", type=float, default=3.0, metavar="SECONDS",
                   help="take the server down this long in the middle (default 3; 0 = no outage)")
    p.add_argument("--dir", type=Path, default=None, help="where to make the temporary station")
    p.add_argument("--keep", action="store_true", help="keep the temporary station to look at afterwards")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.reports < 1:
        raise SystemExit("stationflow: error: --reports must be at least 1")
    result = run_demo(reports=args.reports, outage_s=args.outage, workdir=args.dir, keep=args.keep)
    return 0 if result.lost == 0 else 10
