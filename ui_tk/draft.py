"""The config being edited, apart from the widgets (IDLE's way): loaded once, staged, checked, saved.

``Draft`` holds the file's data as it was read and answers the questions the window asks of it:
is this data valid (with one problem per field, in the schema's words), which data folder does it
name (to find the running service), where is the file. Reading and saving touch the disk, so the
window calls :func:`load_draft` and :func:`save_locally` from worker threads.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.config_file import (
    ConfigChangedOnDisk,
    parse_config_text,
    read_config_text,
    resolved,
    save_config,
    starter_config_text,
    validate_config_data,
)
from ..engine.config_text import flatten
from ..engine.errors import ConfigError
from ..schemas.config import StationConfig


@dataclass
class Draft:
    """The file's data as loaded (``data``) and what loading it said (``notice``)."""

    path: Path
    data: dict[str, Any]
    is_new: bool = False
    notice: str | None = None  # why the data is not (only) the file's: missing, unreadable, invalid
    problems: list[str] = field(default_factory=list)
    #: The file's text when it was read (None: it did not exist). Save refuses to overwrite anything
    #: else: an edit made on disk meanwhile is offered for merging, never silently undone.
    text: str | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_draft(path: Path) -> Draft:
    """Read the file; a missing or unreadable one gives the starter's data and says why (blocking)."""
    path = Path(os.path.abspath(path))
    text = read_config_text(path)
    if text is None:
        data = parse_config_text(starter_config_text(), source="starter")
        return Draft(path, data, is_new=True,
                     notice=f"{path} does not exist yet: showing a starter config; Save writes the file")
    try:
        data = parse_config_text(text, source=str(path))
    except ConfigError as exc:
        data = parse_config_text(starter_config_text(), source="starter")
        return Draft(path, data, text=text,
                     notice=f"{exc} — showing a starter config instead; Save replaces the file "
                            f"(the old one is kept as {path.name}.bak)")
    cfg, problems = check(data)
    notice = None
    if problems:
        notice = f"{path.name} has {len(problems)} problem(s); they are marked at their fields"
    return Draft(path, data, notice=notice, problems=problems, text=text)


def check(data: dict[str, Any]) -> tuple[StationConfig | None, list[str]]:
    """Validate staged data: (config, []) or (None, one line per problem)."""
    try:
        return validate_config_data(copy.deepcopy(data)), []
    except ConfigError as exc:
        return None, list(exc.problems) or [str(exc)]


def data_dir_of(data: dict[str, Any], base_dir: Path) -> Path:
    """The data folder the data names (where the service's control files are), valid or not."""
    named = data.get("data_dir")
    value = named if isinstance(named, str) and named else "./stationflow-data"
    return Path(os.path.normpath(base_dir / os.path.expanduser(value)))


def resolved_config(data: dict[str, Any], path: Path) -> StationConfig | None:
    """The config with absolute paths, for the disk views; None while the data is invalid."""
    cfg, problems = check(data)
    if cfg is None:
        return None
    return resolved(cfg, path)


def save_locally(data: dict[str, Any], path: Path, expected: str | None) -> StationConfig:
    """Validate and write the file atomically, comments kept, the old one kept as ``.bak``; refused
    with ``ConfigChangedOnDisk`` when the file is no longer ``expected`` (blocking: worker thread)."""
    cfg = validate_config_data(copy.deepcopy(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, path, expected=expected)
    return cfg


def unchanged_on_disk(path: Path, expected: str | None) -> None:
    """Raise ``ConfigChangedOnDisk`` when the file is not what was loaded (before saving through the service)."""
    current = read_config_text(path)
    if current != expected:
        raise ConfigChangedOnDisk(path, current)


@dataclass
class Merge:
    """Your edits put on top of the file's new version, field by field."""

    data: dict[str, Any]
    theirs: list[str]  # fields changed on disk that are kept
    conflicts: list[str]  # fields changed both on disk and here: yours win, listed for review


def merge(base: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any]) -> Merge:
    """Three-way merge of config data by field: a field you changed takes your value, any other the file's.

    Lists (the intake folders) are one field each: merged as a whole, like the file's other values.
    """
    b, m, t = flatten(base), flatten(mine), flatten(theirs)
    result = dict(t)
    kept, conflicts = [], []
    for path in [*m, *(p for p in b if p not in m)]:
        mine_value, base_value = m.get(path, _GONE), b.get(path, _GONE)
        if mine_value == base_value:
            if t.get(path, _GONE) != base_value:
                kept.append(_dotted(path))
            continue
        if t.get(path, _GONE) not in (base_value, mine_value):
            conflicts.append(_dotted(path))
        if mine_value is _GONE:
            result.pop(path, None)
        else:
            result[path] = mine_value
    kept += [_dotted(p) for p in t if p not in b and p not in m]
    return Merge(_unflatten(result), sorted(set(kept)), conflicts)


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``station.location: Line 1 → Line 2`` for every field that differs (the token never shown)."""
    before, after = flatten(old), flatten(new)
    lines = []
    for path in [*after, *(p for p in before if p not in after)]:
        a, b = before.get(path, _GONE), after.get(path, _GONE)
        if a != b:
            secret = path[-1] == "token"
            lines.append(f"{_dotted(path)}: {_shown(a, secret)} → {_shown(b, secret)}")
    return lines


_GONE: Any = object()


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(top level)"


def _shown(value: Any, secret: bool) -> str:
    if value is _GONE or value is None:
        return "(not set)"
    if secret:
        return "********"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if not path:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out
