"""The lifecycles in force at a station: the shipped ones, each replaced by a site's file of the
same name from the config's ``lifecycles:`` folder, after the same checks.

Everything is loaded and checked together, so a refusal lists every problem of every file at once
(a person fixes them in one sitting), and a file in the folder that is no lifecycle the engine
runs (``reprot.yaml``) is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import MachineDefinitionError
from .load import resolve_source, shipped_names
from .machine import Lifecycle, load_lifecycle

__all__ = ["SITE_MACHINES", "folder_problems", "in_force", "in_force_checked_once", "restart_note", "site_lifecycle"]

#: The machines a site file may replace: the engine finds everything it needs in each by role
#: (spool/roles.py for the report machine; lifecycle/roles.py for conversion, task and service).
SITE_MACHINES = ("report", "conversion", "connection", "task", "service")


def _folder(lifecycles: str | Path | None) -> list[Path]:
    if lifecycles is None:
        return []
    folder = Path(lifecycles)
    if not folder.is_dir():
        raise MachineDefinitionError(
            f"the lifecycles folder {folder} does not exist",
            problems=[f"{folder}: config key lifecycles names a folder that does not exist — create it "
                      "or remove the key"],
            hint="fix the config's lifecycles: key")
    return [folder]


def folder_problems(lifecycles: str | Path | None) -> list[str]:
    """What is wrong with the lifecycles folder itself: missing, or holding a file that replaces
    no lifecycle (``reprot.yaml``, a ``.yml``) — refused rather than silently ignored."""
    try:
        dirs = _folder(lifecycles)
    except MachineDefinitionError as exc:
        return list(exc.problems)
    names = shipped_names()
    problems: list[str] = []
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".yaml", ".yml"):
                continue
            if path.suffix == ".yml" or path.stem not in names:
                problems.append(f"{path}: no lifecycle the engine runs is called '{path.stem}' — name a "
                                f"site file after the one it replaces: {', '.join(n + '.yaml' for n in SITE_MACHINES)}")
    return problems


def in_force(lifecycles: str | Path | None) -> dict[str, Lifecycle]:
    """Every lifecycle the station runs, by name; MachineDefinitionError listing every problem."""
    dirs = _folder(lifecycles)
    names = shipped_names()
    problems = folder_problems(lifecycles)
    found: dict[str, Lifecycle] = {}
    for name in names:
        try:
            found[name] = load_lifecycle(name, override_dirs=dirs)
        except MachineDefinitionError as exc:
            problems.extend(exc.problems or [str(exc)])
    if problems:
        raise MachineDefinitionError(
            f"the lifecycles in force are unsafe ({len(problems)} problem(s)); nothing was started",
            problems=problems,
            hint="fix each problem listed; `stationflow machines validate -c CONFIG` re-checks")
    return found


#: in_force answers by the files' contents (at most a few folders are asked about in one process)
_CHECKED: dict[tuple[str, ...], dict[str, Lifecycle]] = {}


def in_force_checked_once(lifecycles: str | Path | None) -> dict[str, Lifecycle]:
    """:func:`in_force`, checked again only when a file changed: for readers that ask every few
    seconds (the configurator's Problems page, ``status``) and never bind a model to a machine —
    the model check costs tenths of a second of CPU that a busy window cannot spare. The files are
    read (a few KB) and their sha256 compared on every call, so an edit is seen at once."""
    try:
        dirs = _folder(lifecycles)
        key = (str(lifecycles), *folder_problems(lifecycles),
               *(f"{source.label}:{source.sha256}" for source in (resolve_source(n, dirs) for n in shipped_names())))
    except MachineDefinitionError:
        return in_force(lifecycles)  # raises, listing every problem
    found = _CHECKED.get(key)
    if found is None:
        found = in_force(lifecycles)
        if len(_CHECKED) >= 8:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def site_lifecycle(lifecycles: str | Path | None, name: str) -> Lifecycle:
    """One lifecycle in force; every machine in force is checked first (see :func:`in_force`)."""
    return in_force(lifecycles)[name]


def _changed(running: Mapping[str, Lifecycle], lifecycles: str | Path | None) -> list[str]:
    """Each machine whose file at a restart would not be the one in force: edited, or another file."""
    folder = Path(lifecycles) if lifecycles is not None else None
    dirs = [folder] if folder is not None and folder.is_dir() else []
    changed: list[str] = []
    for name, lifecycle in sorted(running.items()):
        try:
            source = resolve_source(name, dirs)
        except MachineDefinitionError as exc:
            changed.append(f"{name}: {exc}")
            continue
        if source.label != lifecycle.source:
            changed.append(f"{source.label} (instead of {lifecycle.source})")
        elif source.sha256 != lifecycle.sha256:
            changed.append(f"{source.label} (edited)")
    return changed


def restart_note(running: Mapping[str, Lifecycle], lifecycles: str | Path | None) -> str | None:
    """What a reload says when the lifecycle files (or the config's ``lifecycles:``) changed: the
    machines in force stay — a machine swapped under reports in flight could strand them, and the
    spool's states are checked against it only at start — so the change waits for a restart, and
    the person is told which files, and whether a restart would refuse them. None: nothing changed."""
    changed = _changed(running, lifecycles)
    try:
        in_force(lifecycles)
    except MachineDefinitionError as exc:
        problems = exc.problems or [str(exc)]
        refusal = (f"a restart would refuse them ({len(problems)} problem(s), the first: {problems[0]}) — "
                   "`stationflow machines validate -c CONFIG` lists them")
        if not changed:
            return f"the lifecycles folder has problems; the machines in force stay, but {refusal}"
        return f"lifecycle changes take effect at restart: {', '.join(changed)}; {refusal}"
    if not changed:
        return None
    return f"lifecycle changes take effect at restart: {', '.join(changed)}"
