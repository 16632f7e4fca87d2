"""The ``stationflow`` command: parses arguments and maps errors to documented exit codes.

Each command group lives in its own ``cli_*.py`` module exposing ``register(subparsers)``; a
handler takes the parsed ``argparse.Namespace`` and returns the exit code. Errors are raised as
``StationflowError`` and printed here as one line on standard error (plus one line per problem).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from engine.errors import StationflowError

# Command-group modules, in the order their commands appear in --help.
_GROUPS = (
    "engine.cli_service",
    "engine.cli_queue",
    "engine.cli_reprocess",
    "engine.cli_control",
    "engine.cli_config",
    "engine.cli_configure",
    "engine.cli_machines",
    "engine.cli_emulator",
    "engine.cli_demo",
    "engine.cli_bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stationflow",
        description="Station client for WATS: converts test results, spools them durably, uploads them.",
    )
    parser.add_argument("-c", "--config", metavar="PATH",
                        help="station config (default: $STATIONFLOW_CONFIG, else ./station.yaml)")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override logging.level for this command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # group not built in this version
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level or "WARNING",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except StationflowError as exc:
        print(f"stationflow: error: {exc}", file=sys.stderr)
        for problem in getattr(exc, "problems", []) or []:
            print(f"  - {problem}", file=sys.stderr)
        if exc.detail:
            print(f"  detail: {exc.detail}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stationflow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
