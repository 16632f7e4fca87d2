"""The lifecycles in force at a station: the shipped ones, each replaced by a site's file of the
same name from the config's ``lifecycles:`` folder, after the same checks.

Everything is loaded and checked together, so a refusal lists every problem of every file at once
(a person fixes them in one sitting), and a file in the folder that is no lifecycle the engine
runs (``reprot.yaml``) is refused rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MachineDefinitionError
from .load import shipped_names
from .machine import Lifecycle, load_lifecycle

__all__ = ["SITE_MACHINES", "in_force", "site_lifecycle"]

#: The machines a site file may replace: the engine finds everything it needs in these by role.
#: The supervisor and the service still load the shipped task and service machines (their code
#: names those states), so a site file for them would be checked and then silently not used: it is
#: refused instead.
SITE_MACHINES = ("report", "conversion", "connection")


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


def in_force(lifecycles: str | Path | None) -> dict[str, Lifecycle]:
    """Every lifecycle the station runs, by name; MachineDefinitionError listing every problem."""
    dirs = _folder(lifecycles)
    names = shipped_names()
    problems: list[str] = []
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".yaml", ".yml"):
                continue
            if path.suffix == ".yml" or path.stem not in names:
                problems.append(f"{path}: no lifecycle the engine runs is called '{path.stem}' — name a "
                                f"site file after the one it replaces: {', '.join(n + '.yaml' for n in SITE_MACHINES)}")
            elif path.stem not in SITE_MACHINES:
                problems.append(f"{path}: a site cannot replace the {path.stem} lifecycle yet (the engine "
                                f"runs the shipped one) — remove the file; site files may replace: "
                                f"{', '.join(n + '.yaml' for n in SITE_MACHINES)}")
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


def site_lifecycle(lifecycles: str | Path | None, name: str) -> Lifecycle:
    """One lifecycle in force; every machine in force is checked first (see :func:`in_force`)."""
    return in_force(lifecycles)[name]
