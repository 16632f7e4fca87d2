"""Python as Windows sees it, as far as imports go: the POSIX-only modules cannot be imported.

Used as a script (by tests/test_windows_sim.py and .ci/offline-install, with whatever interpreter
has stationflow installed):

- ``python winsim.py check``: import every module of the ``stationflow`` package and run every
  subcommand's ``--help``; print one line per failure and exit 1 if there was any.
- ``python winsim.py run ARGS...``: the ``stationflow`` command with ARGS.

Blocking works two ways at once, as a Windows Python behaves: ``sys.modules[name] = None`` (an
``import`` raises ImportError) and a finder first on ``sys.meta_path`` for submodules.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import io
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

BLOCKED = ("resource", "fcntl", "pwd", "grp", "termios")
TOP_PACKAGES = ("engine", "schemas", "machines", "ui_tk")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: simulating Windows)", name=name)
        return None


def install() -> None:
    for name in BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]
    sys.meta_path.insert(0, _Blocker())


def modules() -> Iterator[str]:
    """Every module of the installed package, except ``__main__`` (importing it runs the CLI)."""
    seen = {"stationflow"}
    yield "stationflow"
    # The sub-packages by name too: an editable install maps them from other folders, so walking
    # stationflow's own folder finds them only in a wheel install.
    for top in ("stationflow", *(f"stationflow.{part}" for part in TOP_PACKAGES)):
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}.", onerror=lambda name: None):
            if info.name not in seen and not info.name.endswith("__main__"):
                seen.add(info.name)
                yield info.name


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the parser: (), ("run",), ("config", "init"), ..."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in sorted(action.choices.items()):
                yield from commands(child, (*prefix, name))


def check() -> int:
    failures: list[str] = []
    imported = 0
    for name in modules():
        try:
            importlib.import_module(name)
            imported += 1
        except BaseException as exc:  # noqa: BLE001 - every kind of failure is reported
            failures.append(f"import {name}: {type(exc).__name__}: {exc}")
    from stationflow.engine.cli.main import build_parser, main

    helped = 0
    for path in commands(build_parser()):
        out = io.StringIO()
        code: Any = None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001
            failures.append(f"stationflow {' '.join(path)} --help: {type(exc).__name__}: {exc}\n"
                            + traceback.format_exc())
            continue
        if code not in (0, None) or "usage:" not in out.getvalue():
            failures.append(f"stationflow {' '.join(path)} --help: exit {code}: {out.getvalue()[-300:]}")
        else:
            helped += 1
    for line in failures:
        print(line)
    print(f"imported {imported} modules, {helped} commands' --help with {', '.join(BLOCKED)} blocked; "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    install()
    if args[:1] == ["check"]:
        return check()
    if args[:1] == ["run"]:
        from stationflow.engine.cli.main import main as cli

        return cli(args[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
