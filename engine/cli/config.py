"""``stationflow config init|validate|show|schema``: write, check, show and describe the station config."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from ..config_file import (
    DEFAULT_NAME,
    ENV_VAR,
    config_dict,
    config_warnings,
    dump_masked,
    find_config_path,
    load_config,
    resolved,
    system_config_path,
    system_data_dir,
    write_starter,
)
from ...schemas.config import StationConfig


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("config", help="write, check, show or describe the station config",
                            description="Write, check, show or describe the station config.")
    group = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    init = group.add_parser("init", help="write a commented starter config",
                            description="Write a commented starter config that loads as it is.")
    init.add_argument("path", nargs="?", metavar="PATH",
                      help="where to write it (default: -c, $STATIONFLOW_CONFIG, else ./station.yaml)")
    init.add_argument("--force", action="store_true",
                      help="replace an existing file (the old one is kept as <name>.bak)")
    init.add_argument("--station-name", metavar="NAME", default=None,
                      help="station.name to write (default: this computer's name)")
    init.add_argument("--system", action="store_true",
                      help=f"for a station run as a service: write {system_config_path()} with data_dir "
                           f"{system_data_dir()} (this OS's locations)")
    init.add_argument("--data-dir", metavar="DIR", default=None,
                      help="data_dir to write (default: ./stationflow-data, or this OS's with --system)")
    init.set_defaults(func=cmd_init)

    validate = group.add_parser("validate", help="check a config file, one line per problem",
                                description="Check a config file; exit 3 with one line per problem.")
    validate.add_argument("file", nargs="?", metavar="FILE", help="file to check (default: the station config)")
    validate.set_defaults(func=cmd_validate)

    show = group.add_parser("show", help="print the effective config (defaults filled in, secrets masked)",
                            description="Print the effective config: defaults filled in, relative paths "
                                        "resolved, the token masked.")
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(func=cmd_show)

    schema = group.add_parser("schema", help="print the JSON Schema of the config",
                              description="Print the JSON Schema of the station config.")
    schema.set_defaults(func=cmd_schema)


def cmd_init(args: argparse.Namespace) -> int:
    if args.path:
        path = Path(args.path).expanduser().absolute()
    elif args.system:
        path = system_config_path()
    else:  # a new station's file: -c, $STATIONFLOW_CONFIG or ./station.yaml, never the installed one
        path = Path(os.path.abspath(os.path.expanduser(args.config or os.environ.get(ENV_VAR) or DEFAULT_NAME)))
    name = args.station_name or _default_station_name()
    data_dir = args.data_dir or (str(system_data_dir()) if args.system else "./stationflow-data")
    written = write_starter(path, station_name=name, force=args.force, data_dir=data_dir)
    print(f"wrote a starter config to {written} (data_dir: {data_dir})")
    if not args.system and not args.data_dir:
        print(f"for a station run as a service: `stationflow config init --system` writes {system_config_path()} "
              f"with data_dir {system_data_dir()}")
    print("next: set server.url and server.token, add an intake, then run `stationflow config validate`")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser().absolute() if args.file else find_config_path(args.config)
    cfg = resolved(load_config(path), path)
    print(f"OK: {path}")
    for note in config_warnings(cfg):
        print(f"warning: {note}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    cfg = resolved(load_config(path), path)
    if args.json:
        print(json.dumps(config_dict(cfg), indent=2, ensure_ascii=False))
    else:
        print(f"# effective config from {path} (defaults filled in, paths resolved, secrets masked)")
        print(dump_masked(cfg), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(StationConfig.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def _default_station_name() -> str:
    name = socket.gethostname().split(".")[0].strip()
    return name[:100] or "STATION-01"
