"""``stationflow config init|validate|show|set|schema``: write, check, show, change and describe the station config."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config_file import (
    DEFAULT_NAME,
    ENV_VAR,
    config_dict,
    config_warnings,
    dump_masked,
    find_config_path,
    load_config,
    read_config_data,
    read_config_text,
    resolved,
    system_config_path,
    system_data_dir,
    save_config,
    validate_config_data,
    write_starter,
)
from ..errors import ConfigError, InvalidInput
from ..station import spool_in_use
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

    setter = group.add_parser("set", help="change values: KEY=VALUE... (checked; comments and number types kept; "
                                           "a private backup)",
                              description="Change values of the station config, e.g. `stationflow config set "
                                          "server.url=https://wats.example.com upload.concurrency=3`. VALUE is "
                                          "read as YAML (30 is a number, true a yes/no, [a, b] a list, null "
                                          "clears); keys are dotted paths, list items by index "
                                          "(intake[0].watch=./drop). The whole file is checked before anything "
                                          "is written; its comments and layout are kept, and the previous file "
                                          "is kept as <name>.bak with the same permissions.")
    setter.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    setter.set_defaults(func=cmd_set)

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


def cmd_set(args: argparse.Namespace) -> int:
    """Parse the assignments, apply them to the file's data, validate, save (comments kept), report."""
    path = find_config_path(args.config)
    text = read_config_text(path)
    if text is None:
        raise ConfigError(f"config file not found: {path}", hint="run `stationflow config init` first, or pass -c PATH")
    data = read_config_data(path)
    before = validate_config_data(copy.deepcopy(data))
    pairs = [_assignment(item) for item in args.assignments]
    cfg = _apply(data, pairs)
    save_config(cfg, path, expected=text)
    old, new = config_dict(before), config_dict(cfg)
    for key, _ in pairs:
        print(f"{key}: {_shown(_get(old, key))} → {_shown(_get(new, key))}")
    print(f"saved {path} (the previous version is kept as {path.name}.bak)")
    if spool_in_use(resolved(cfg, path)):
        print("the service is running: `stationflow reload` makes it use the new values", file=sys.stderr)
    return 0


def _assignment(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInput(f"{item!r} is not KEY=VALUE", hint="e.g. stationflow config set upload.concurrency=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: take it as the text it is
    return key, (raw, value)


def _apply(data: dict[str, Any], pairs: list[tuple[str, Any]]) -> StationConfig:
    """Set each value; where a typed reading is refused (``station.name=123``) try the text as written."""
    typed = copy.deepcopy(data)
    for key, (_, value) in pairs:
        _put(typed, key, value)
    try:
        return validate_config_data(typed)
    except ConfigError as first:
        refused = {line.split(":", 1)[0] for line in first.problems}
        as_text = copy.deepcopy(data)
        for key, (raw, value) in pairs:
            _put(as_text, key, raw if key in refused and not isinstance(value, str) else value)
        try:
            return validate_config_data(as_text)
        except ConfigError:
            raise first from None


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in _PART.findall(key):
        parts.append(int(index) if index else name)
    if not parts or "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") != key:
        raise InvalidInput(f"{key!r} is not a config key", hint="write it as section.key or intake[0].key")
    return parts


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    node: Any = data
    parts = _parts(key)
    for here, part in enumerate(parts[:-1]):
        nxt = parts[here + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise InvalidInput(f"{key}: there is no item {part} (the list has {len(node) if isinstance(node, list) else 0})",
                                   hint="add list items in the configurator or the file")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise InvalidInput(f"{key}: {part} is not inside a section")
        if not isinstance(node.get(part), (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise InvalidInput(f"{key}: there is no item {last}")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise InvalidInput(f"{key}: {last} is not inside a section")


def _get(data: Any, key: str) -> Any:
    for part in _parts(key):
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _shown(value: Any) -> str:
    return "(not set)" if value is None else json.dumps(value, ensure_ascii=False) if not isinstance(value, str) \
        else value


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(StationConfig.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def _default_station_name() -> str:
    name = socket.gethostname().split(".")[0].strip()
    return name[:100] or "STATION-01"
