"""The ``stationflow`` command: parses arguments and maps errors to documented exit codes.

Each command group lives in its own module of this package exposing ``register(subparsers)``; a
handler takes the parsed ``argparse.Namespace`` and returns the exit code. Errors are raised as
``StationflowError`` and printed here as one line on standard error (plus one line per problem).

Groups that live outside the engine (the Tk configurator's ``configure``) register themselves
through the ``stationflow.commands`` entry point, so the engine never imports the UI.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from ... import __version__
from ..errors import StationflowError
from . import bench, bundle, config, control, demo, emulator, machines, queue, reprocess, service, service_setup

# Command-group modules, in the order their commands appear in --help.
_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (  # type: ignore[type-arg]
    service.register, queue.register, reprocess.register, control.register, config.register,
)
_LATER_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (  # type: ignore[type-arg]
    machines.register, service_setup.register, bundle.register, emulator.register, demo.register,
    bench.register,
)
ENTRY_POINT_GROUP = "stationflow.commands"
_CONFIG_HELP = "station config (default: $STATIONFLOW_CONFIG, else ./station.yaml)"


def _plugin_groups() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    """Command groups registered by other parts of the distribution (the configurator)."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.dist is not None and ep.dist.name != "stationflow":
            continue  # only our own distribution adds commands
        found.append(ep.load())
    return found


def _accept_config_everywhere(parser: argparse.ArgumentParser) -> None:
    """``-c/--config`` after the subcommand too (``stationflow status -c FILE``): each subparser
    gets the option, defaulting to "not given" so the global one before the command still counts."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if not any("--config" in a.option_strings for a in child._actions):
                    child.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS,
                                       help=_CONFIG_HELP)
                _accept_config_everywhere(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stationflow",
        description="Station client for WATS: converts test results, spools them durably, uploads them.",
    )
    parser.add_argument("--version", action="version", version=f"stationflow {__version__}")
    parser.add_argument("-c", "--config", metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override logging.level for this command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in (*_GROUPS, *_plugin_groups(), *_LATER_GROUPS):
        register(sub)
    _accept_config_everywhere(parser)
    return parser


def _safe_output() -> None:
    """Any console can print any name: a file name that is not UTF-8, or a redirected cp1252
    stdout on Windows, must not turn a listing into a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _safe_output()
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
