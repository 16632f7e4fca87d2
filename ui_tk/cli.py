"""``stationflow configure``: open the Tk configurator on the station config.

The window lives in ``ui_tk`` and is imported only when this command runs, so the rest of the
command line works on stations without Tk or without a display.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..engine.config_file import find_config_path
from ..engine.errors import StationflowError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("configure", help="the Tk configurator: edit the config, watch the queue and the service",
                       description="Open the configurator window on the station config (-c PATH, else "
                                   "$STATIONFLOW_CONFIG, else ./station.yaml; a missing file starts from the "
                                   "starter and is written on Save). Works with the service stopped.")
    # Also accepted after the command (`stationflow configure -c PATH`); absent, the global -c stands.
    p.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS,
                   help="station config (default: $STATIONFLOW_CONFIG, else ./station.yaml)")
    p.set_defaults(func=cmd_configure)


def cmd_configure(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    try:
        import tkinter
    except ImportError:
        raise StationflowError("the configurator needs Tk, which this Python lacks",
                               hint="install it (Debian/Ubuntu: apt install python3-tk), or edit the YAML and "
                                    "check it with `stationflow config validate`") from None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StationflowError("no display to open the configurator on (DISPLAY is not set)",
                               hint="run it on the station's desktop, or use ssh -X; the CLI works without it")
    try:
        from .app import run
        return run(path)
    except tkinter.TclError as exc:
        raise StationflowError(f"cannot open the configurator window: {exc}",
                               hint="check the DISPLAY, or use the CLI (`stationflow config validate`)") from None
