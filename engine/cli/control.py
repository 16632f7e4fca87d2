"""``stop`` and ``reload``: ask the running service, through its control protocol.

Both need only the config's ``data_dir`` to find the service, so they work even when the config
file has just been edited into an invalid state (that is often exactly when a person reloads:
the service answers with the file's problems and keeps its old settings).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..config_file import find_config_path, load_config, read_config_data, resolved
from ..control.client import ControlClient
from ..errors import ConfigError, StationflowError
from ...schemas.config import StationConfig

_DEFAULT_DATA_DIR = StationConfig.model_fields["data_dir"].default
_DEFAULT_GRACE = 60.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stop", help="stop the running service gracefully (finishes in-flight work)")
    p.add_argument("--no-wait", action="store_true", help="return once the service has started stopping")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=None,
                   help="how long to wait for the service to end (default: shutdown.grace_s + 15)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("reload", help="make the running service read its config file again")
    p.set_defaults(func=cmd_reload)


def station_data_dir(config_arg: str | None) -> tuple[Path, float]:
    """The data dir (and grace period) from the config; from the raw YAML if the file is invalid."""
    path = find_config_path(config_arg)
    try:
        cfg = resolved(load_config(path), path)
        return Path(cfg.data_dir), cfg.shutdown.grace_s
    except ConfigError:
        data = read_config_data(path)  # a file that is not even YAML: nothing to go on, say so
        raw = data.get("data_dir", _DEFAULT_DATA_DIR)
        if not isinstance(raw, str) or not raw.strip():
            raise
        return Path(os.path.normpath(path.parent / os.path.expanduser(raw))), _DEFAULT_GRACE


def cmd_stop(args: argparse.Namespace) -> int:
    data_dir, grace = station_data_dir(args.config)
    client = ControlClient(data_dir)
    answer = client.call("stop")
    pid = answer.get("pid") if isinstance(answer, dict) else None
    grace = float(answer.get("grace_s") or grace) if isinstance(answer, dict) else grace
    if args.no_wait:
        print(f"stopping the service (pid {pid})")
        return 0
    timeout = args.timeout if args.timeout is not None else grace + 15.0
    print(f"stopping the service (pid {pid}); in-flight work may take up to {grace:g} s", file=sys.stderr)
    started = time.monotonic()
    if not client.wait_until_stopped(timeout, still_running=_lock_probe(data_dir)):
        raise StationflowError(f"the service (pid {pid}) is still stopping after {timeout:g} s",
                               hint="it is finishing in-flight work; check `stationflow status`, or stop it "
                                    "through the service manager")
    print(f"stopped ({time.monotonic() - started:.1f} s)")
    return 0


def _lock_probe(data_dir: Path) -> Callable[[], bool]:
    """The service's one-instance lock is released by the kernel as the process ends (a pid can
    linger as a zombie): the surest sign that it has stopped."""
    from ..service.service import lock_is_held

    return lambda: lock_is_held(data_dir)


def cmd_reload(args: argparse.Namespace) -> int:
    data_dir, _ = station_data_dir(args.config)
    answer = ControlClient(data_dir).call("reload")
    changes = answer.get("changes", []) if isinstance(answer, dict) else []
    if not changes:
        print("reloaded: no changes")
    else:
        print("reloaded:")
        for change in changes:
            print(f"  {change}")
    return 0
