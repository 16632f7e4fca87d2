"""``stationflow service install|uninstall|print``: run this station at boot.

A systemd unit on Linux, a WinSW service on Windows, both generated from the station's config
(see ``engine/install/units.py``). ``print`` shows exactly what ``install`` would write and run
and changes nothing; ``--os`` prints the other system's form (to prepare it, or to review it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePath

from ..config_file import find_config_path, load_config, resolved
from ..errors import StationflowError
from ..install import units, winacl

_THIS_OS = "windows" if sys.platform == "win32" else "linux"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("service", help="run this station at boot: install, uninstall or print the service",
                            description=__doc__.split("\n\n")[0] if __doc__ else None)
    actions = parser.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    specs = (("print", "show the unit (Linux) or WinSW XML (Windows) and the commands; changes nothing"),
             ("install", "write the service for this station's config, register it and start it"),
             ("uninstall", "stop and remove the service; the data dir, spool and config are kept"))
    for name, text in specs:
        p = actions.add_parser(name, help=text, description=text)
        p.add_argument("--os", choices=("linux", "windows"), default=_THIS_OS,
                       help=f"which system's service (default: this one, {_THIS_OS}); install and "
                            "uninstall only for this one")
        p.add_argument("--name", default=units.DEFAULT_NAME, help="service name (default: %(default)s)")
        p.add_argument("--user", default=units.DEFAULT_USER,
                       help="Linux: the system user the service runs as, created if missing (default: %(default)s)")
        p.add_argument("--account", default=units.DEFAULT_ACCOUNT,
                       help="Windows: the service account (default: %(default)s; or NT AUTHORITY\\LocalService, "
                            "DOMAIN\\gmsa$)")
        if name == "install":
            p.add_argument("--winsw", metavar="EXE", default=None,
                           help=f"Windows: the WinSW executable to use ({units.WINSW_URL})")
            p.add_argument("--no-start", action="store_true", help="register the service but do not start it")
        p.set_defaults(func=cmd_service)


def _spec(args: argparse.Namespace) -> units.ServiceSpec:
    path = find_config_path(args.config)
    cfg = resolved(load_config(path), path)
    return units.ServiceSpec.from_config(cfg, path, command=units.stationflow_command(args.os), name=args.name)


def _user_exists(user: str) -> bool:
    try:
        import pwd  # POSIX only: imported here so the module loads on Windows
    except ImportError:
        return True
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _plan(args: argparse.Namespace, spec: units.ServiceSpec) -> units.Plan:
    if args.service_command == "uninstall":
        if args.os == "linux":
            return units.linux_uninstall_plan(spec)
        return units.windows_uninstall_plan(spec)
    if args.os == "linux":
        exists = _user_exists(args.user) if _THIS_OS == "linux" else True
        return units.linux_plan(spec, user=args.user, user_exists=exists,
                                enable=not getattr(args, "no_start", False))
    acl = [winacl.icacls_command(spec.config_path, [args.account], directory=False),
           winacl.icacls_command(spec.data_dir, [args.account], directory=True)]
    if PurePath(spec.config_path).parent.name.lower() == "stationflow":  # a folder of its own
        acl.insert(0, winacl.icacls_command(str(PurePath(spec.config_path).parent), [args.account], directory=True))
    plan = units.windows_plan(spec, account=args.account, winsw=getattr(args, "winsw", None), acl_commands=acl,
                              registered=_registered(args.name) if _THIS_OS == "windows" else False)
    if getattr(args, "no_start", False):
        plan.commands = [c for c in plan.commands if c[-1:] != ["start"]]
    return plan


def _registered(name: str) -> bool:
    """Whether Windows knows a service of this name (``sc.exe query`` exits 0)."""
    try:
        return subprocess.run(["sc.exe", "query", name], capture_output=True).returncode == 0
    except OSError:
        return False


def cmd_service(args: argparse.Namespace) -> int:
    spec = _spec(args)
    plan = _plan(args, spec)
    if args.service_command == "print":
        print(plan.describe(), end="")
        return 0
    if args.os != _THIS_OS:
        raise StationflowError(f"cannot {args.service_command} a {args.os} service on {_THIS_OS}",
                               hint=f"use `stationflow service print --os {args.os}` to see what it would be")
    _check_can_install(args, spec)
    if args.service_command == "install":
        Path(spec.data_dir).mkdir(parents=True, exist_ok=True)
    units.apply(plan, _run)
    if args.service_command == "install":
        print(f"installed the {args.name} service for {spec.config_path}")
        print(f"check it: stationflow -c {spec.config_path} status")
    else:
        print(f"removed the {args.name} service; the data dir {spec.data_dir} is kept")
    return 0


def _check_can_install(args: argparse.Namespace, spec: units.ServiceSpec) -> None:
    if args.os == "linux":
        if shutil.which("systemctl") is None:
            raise StationflowError("systemd is not running this system (no systemctl)",
                                   hint="`stationflow service print` shows the unit; run `stationflow run` "
                                        "under your service manager instead")
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise StationflowError(f"`stationflow service {args.service_command}` needs root",
                                   hint=f"run it with sudo, e.g. sudo {sys.argv[0]} service {args.service_command}")
        return
    if args.service_command == "install" and not getattr(args, "winsw", None):
        wrapper = units.service_dir(spec.config_path) / f"{spec.name}-service.exe"
        if not Path(wrapper).exists():
            raise StationflowError("the WinSW service wrapper is needed",
                                   hint=f"download {units.WINSW_URL} and pass it with --winsw PATH")


def _run(command: list[str]) -> int:
    try:
        return subprocess.run(command).returncode
    except FileNotFoundError:
        print(f"stationflow: {command[0]} not found", file=sys.stderr)
        return 127
