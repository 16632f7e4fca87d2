"""``stationflow bundle OUTDIR``: an offline wheelhouse with install scripts, for air-gapped stations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..install.bundle import DEFAULT_PLATFORMS, DEFAULT_PYTHONS, LOCAL, PLATFORM_TAGS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bundle", help="an offline wheelhouse with install.cmd / install.sh (needs the package index once)",
        description="Build stationflow's wheel and download every dependency as binary wheels, pinned by "
                    "constraints.txt, into OUTDIR/wheels; write install.cmd and install.sh, which install "
                    "with --no-index on a station without internet. Needs a source checkout and, on this "
                    "machine, the package index.")
    p.add_argument("outdir", type=Path, metavar="OUTDIR", help="folder to write (created; existing wheels are kept)")
    p.add_argument("--platform", dest="platforms", action="append", metavar="P",
                   help=f"{', '.join(PLATFORM_TAGS)}, {LOCAL} (this machine), or a wheel platform tag; "
                        f"repeat for several (default: {' and '.join(DEFAULT_PLATFORMS)})")
    p.add_argument("--python", dest="pythons", action="append", metavar="V",
                   help=f"Python version of the stations, e.g. 3.12; repeat for several "
                        f"(default: {', '.join(DEFAULT_PYTHONS)})")
    p.add_argument("--source", type=Path, default=None, metavar="DIR",
                   help="the stationflow checkout to build from (default: the one this command runs from)")
    p.set_defaults(func=cmd_bundle)


def cmd_bundle(args: argparse.Namespace) -> int:
    from ..install.bundle import make_bundle, targets

    found = targets(args.platforms, args.pythons)
    bundle = make_bundle(args.outdir.expanduser().absolute(), found, source=args.source)
    print(f"copy {bundle.path} to the station and run install.cmd (Windows) or install.sh (Linux) there")
    return 0
