"""``run`` (the service in the foreground) and ``healthcheck`` (exit 0/1 for service managers)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from ..config_file import find_config_path, load_config, resolved
from ..errors import StationflowError
from ..health import ERROR, WARNING, health_of


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="the service in the foreground until SIGTERM, SIGINT or `stationflow stop`",
                       description="Run the station service in the foreground: watch folders, spool, upload. "
                                   "SIGTERM/SIGINT (Ctrl+C) stop it gracefully; a second one stops it at "
                                   "once; SIGHUP reloads the config. Exits 8 if another service already "
                                   "runs on the same data dir.")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("healthcheck", help="exit 0 if the service runs and nothing is in error, 1 otherwise",
                       description="For container and service-manager health checks: exit 0 when the service "
                                   "answers, runs, and its health is not `error` (token refused, server "
                                   "unreachable, watch folder missing, ...); 1 otherwise with a one-line reason. "
                                   "--strict fails on warnings too (files that failed to convert, failed "
                                   "reports, intake paused).")
    p.add_argument("--strict", action="store_true", help="unhealthy on warnings too, not only on errors")
    p.set_defaults(func=cmd_healthcheck)


def cmd_run(args: argparse.Namespace) -> int:
    from ..service.service import Service
    from ..upload.uploader import SWITCH_INTERVAL_S, skip_sniffio_lookups

    service = Service(find_config_path(args.config), log_level=getattr(args, "log_level", None))
    # Process-wide, so set by the process's entry point, not by the Service (a library class):
    # threads (file work) and the event loop then share the GIL in short turns.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    skip_sniffio_lookups()
    if hasattr(os, "umask"):
        # Everything the service creates under the data dir (spool, copies, error folder, archive,
        # log) is private to its user: result files and tokens are nobody else's to read.
        os.umask(0o077)
    return anyio.run(service.run)


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Always 0 or 1 (Docker reserves 2): a broken config is unhealthy too, with its reason."""
    try:
        healthy, line = check_health(args.config, strict=getattr(args, "strict", False))
    except StationflowError as exc:
        healthy, line = False, str(exc)
    print(f"{'healthy' if healthy else 'unhealthy'}: {line}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def check_health(config_arg: str | None, *, strict: bool = False) -> tuple[bool, str]:
    """(healthy, one-line reason), from the running service's own status and health (engine/health.py)
    through the control protocol; a service that holds the lock but does not answer is unhealthy."""
    from ..control.client import ControlClient
    from ..service.service import lock_is_held, read_pid

    path = find_config_path(config_arg)
    cfg = resolved(load_config(path), path)
    data_dir = Path(cfg.data_dir)
    try:
        answer: Any = ControlClient(cfg.data_dir).call("status")
    except StationflowError as exc:
        if lock_is_held(data_dir):
            return False, (f"a service (pid {read_pid(data_dir) or 'unknown'}) holds the lock of "
                           f"{cfg.data_dir} but does not answer on the control protocol: {exc}")
        raise
    status: dict[str, Any] = answer if isinstance(answer, dict) else {}
    given = status.get("health")
    health: dict[str, Any] = given if isinstance(given, dict) else health_of(status)
    service = status.get("service", {})
    state = service.get("state")
    failing = (ERROR, WARNING) if strict else (ERROR,)
    if health["state"] in failing:
        return False, f"health {health['state']}: {health['summary']}"
    if state == "running":
        note = f"; {health['state']}: {health['summary']}" if health["state"] != "ok" else ""
        return True, f"running (pid {service.get('pid')}, up {service.get('uptime_s')} s){note}"
    reason = service.get("reason")
    return False, f"the service is {state}" + (f": {reason}" if reason else "")
