"""``stationflow machines``: check lifecycle YAML against the invariants, draw it, list it.

A site that edits or overrides a lifecycle runs ``machines validate FILE`` before deploying it;
the same checks run when the service loads the file, so a bad edit can never reach a running
station.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MachineDefinitionError
from ..lifecycle import load_lifecycle, resolve, shipped_names


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("machines", help="check and draw the lifecycle YAML definitions",
                            description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="machines_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dir", dest="dirs", action="append", type=Path, default=[], metavar="DIR",
                       help="a folder of site overrides (<name>.yaml), searched before the shipped "
                            "definitions; may be repeated")
        return p

    validate = add("validate", "check lifecycle files (default: every shipped one) against the invariants")
    validate.add_argument("files", nargs="*", metavar="FILE", help="a .yaml file or a lifecycle name")
    validate.set_defaults(func=_validate)

    graph = add("graph", "print a lifecycle as a Mermaid state diagram")
    graph.add_argument("target", metavar="NAME|FILE")
    graph.set_defaults(func=_graph)

    listing = add("list", "list the lifecycles and the file each is loaded from")
    listing.set_defaults(func=_list)


def _validate(args: argparse.Namespace) -> int:
    targets = args.files or _names(args.dirs)
    problems: list[str] = []
    failed = 0
    for target in targets:
        try:
            lifecycle = load_lifecycle(target, override_dirs=args.dirs)
        except MachineDefinitionError as exc:
            failed += 1
            problems.extend(exc.problems or [str(exc)])
            continue
        print(f"OK {lifecycle.name} ({lifecycle.source}): {len(lifecycle.states)} states, "
              f"{len(lifecycle.definition.transitions)} transitions")
    if failed:
        raise MachineDefinitionError(
            f"{failed} of {len(targets)} lifecycle definition(s) are invalid", problems=problems,
            hint="fix each problem listed, then run `stationflow machines validate` again")
    return 0


def _graph(args: argparse.Namespace) -> int:
    print(load_lifecycle(args.target, override_dirs=args.dirs).mermaid(), end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name in _names(args.dirs):
        label = resolve(name, args.dirs)[0]
        try:
            summary = load_lifecycle(name, override_dirs=args.dirs).definition.description
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
