"""``stationflow machines``: check lifecycle YAML against the invariants and the no-loss model
check, draw it, list it.

A site that edits or overrides a lifecycle runs ``machines validate -c CONFIG`` (the machines in
force: the config's ``lifecycles:`` folder over the shipped files) or ``machines validate FILE``
before deploying it; the same checks run when the service starts, so a bad edit can never reach a
running station.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ..errors import MachineDefinitionError
from ..lifecycle import Lifecycle, load_lifecycle, resolve, shipped_names


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("machines", help="check and draw the lifecycle YAML definitions",
                            description=(__doc__ or "").split("\n\n")[0])
    actions = parser.add_subparsers(dest="machines_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dir", dest="dirs", action="append", type=Path, default=[], metavar="DIR",
                       help="a folder of site overrides (<name>.yaml), searched before the shipped "
                            "definitions; may be repeated (with -c CONFIG, its lifecycles: folder is one)")
        return p

    validate = add("validate", "check lifecycle files (default: every one in force) against the invariants "
                               "and the no-loss model check")
    validate.add_argument("files", nargs="*", metavar="FILE", help="a .yaml file or a lifecycle name")
    validate.set_defaults(func=_validate)

    graph = add("graph", "print a lifecycle as a Mermaid state diagram")
    graph.add_argument("target", metavar="NAME|FILE")
    graph.set_defaults(func=_graph)

    listing = add("list", "list the lifecycles and the file each is loaded from (with its sha256)")
    listing.set_defaults(func=_list)


def _dirs(args: argparse.Namespace) -> list[Path]:
    """``--dir`` folders, then the site folder of the config (given with -c or $STATIONFLOW_CONFIG,
    or ./station.yaml when it exists)."""
    from ..config_file import find_config_path, load_config, resolved

    dirs = list(args.dirs)
    given = getattr(args, "config", None) or os.environ.get("STATIONFLOW_CONFIG")
    path = find_config_path(getattr(args, "config", None))
    if given or path.is_file():
        cfg = resolved(load_config(path), path)
        if cfg.lifecycles:
            folder = Path(cfg.lifecycles)
            if not folder.is_dir():
                raise MachineDefinitionError(
                    f"the lifecycles folder {folder} does not exist",
                    problems=[f"{path}: lifecycles: {folder} is not a folder — create it or remove the key"])
            dirs.append(folder)
    return dirs


def _origin(lifecycle: Lifecycle) -> str:
    return f"{'shipped' if lifecycle.shipped else 'site'}, sha256 {(lifecycle.sha256 or '?')[:16]}"


def _validate(args: argparse.Namespace) -> int:
    dirs = _dirs(args)
    targets = args.files or _names(dirs)
    problems: list[str] = []
    failed = 0
    for target in targets:
        started = time.perf_counter()
        try:
            lifecycle = load_lifecycle(target, override_dirs=dirs)
        except MachineDefinitionError as exc:
            failed += 1
            problems.extend(exc.problems or [str(exc)])
            continue
        took = (time.perf_counter() - started) * 1000
        rules = lifecycle.registry.rules.get(lifecycle.name)
        proven = f"; proven: {rules.summary}" if rules else ""
        print(f"OK {lifecycle.name} ({lifecycle.source}; {_origin(lifecycle)}): {len(lifecycle.states)} states, "
              f"{len(lifecycle.definition.transitions)} transitions{proven} ({took:.1f} ms)")
    if failed:
        raise MachineDefinitionError(
            f"{failed} of {len(targets)} lifecycle definition(s) are invalid", problems=problems,
            hint="fix each problem listed, then run `stationflow machines validate` again")
    return 0


def _graph(args: argparse.Namespace) -> int:
    print(load_lifecycle(args.target, override_dirs=_dirs(args)).mermaid(), end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    dirs = _dirs(args)
    for name in _names(dirs):
        label = resolve(name, dirs)[0]
        try:
            lifecycle = load_lifecycle(name, override_dirs=dirs)
            summary = f"{lifecycle.definition.description} ({_origin(lifecycle)})"
        except MachineDefinitionError:
            summary = "INVALID — run `stationflow machines validate`"
        print(f"{name:<12} {label}\n{'':<12} {summary}")
    return 0


def _names(dirs: list[Path]) -> list[str]:
    """Shipped names plus any extra lifecycle a site override folder adds."""
    names = set(shipped_names())
    for folder in dirs:
        names.update(path.stem for path in Path(folder).glob("*.yaml"))
    return sorted(names)
