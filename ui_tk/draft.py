"""The config being edited, apart from the widgets (IDLE's way): loaded once, staged, checked, saved.

``Draft`` holds the file's data as it was read and answers the questions the window asks of it:
is this data valid (with one problem per field, in the schema's words), which data folder does it
name (to find the running service), where is the file. Reading and saving touch the disk, so the
window calls :func:`load_draft` and :func:`save_locally` from worker threads.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.config_file import (
    parse_config_text,
    read_config_data,
    resolved,
    save_config,
    starter_config_text,
    validate_config_data,
)
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

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_draft(path: Path) -> Draft:
    """Read the file; a missing or unreadable one gives the starter's data and says why (blocking)."""
    path = Path(os.path.abspath(path))
    if not path.exists():
        data = parse_config_text(starter_config_text(), source="starter")
        return Draft(path, data, is_new=True,
                     notice=f"{path} does not exist yet: showing a starter config; Save writes the file")
    try:
        data = read_config_data(path)
    except ConfigError as exc:
        data = parse_config_text(starter_config_text(), source="starter")
        return Draft(path, data, notice=f"{exc} — showing a starter config instead; Save replaces the file "
                                        f"(the old one is kept as {path.name}.bak)")
    cfg, problems = check(data)
    notice = None
    if problems:
        notice = f"{path.name} has {len(problems)} problem(s); they are marked at their fields"
    return Draft(path, data, notice=notice, problems=problems)


def check(data: dict[str, Any]) -> tuple[StationConfig | None, list[str]]:
    """Validate staged data: (config, []) or (None, one line per problem)."""
    try:
        return validate_config_data(copy.deepcopy(data)), []
    except ConfigError as exc:
        return None, list(exc.problems) or [str(exc)]


def data_dir_of(data: dict[str, Any], base_dir: Path) -> Path:
    """The data folder the data names (where the service's control files are), valid or not."""
    value = data.get("data_dir") if isinstance(data.get("data_dir"), str) and data.get("data_dir") \
        else "./stationflow-data"
    return Path(os.path.normpath(base_dir / os.path.expanduser(value)))


def resolved_config(data: dict[str, Any], path: Path) -> StationConfig | None:
    """The config with absolute paths, for the disk views; None while the data is invalid."""
    cfg, problems = check(data)
    if cfg is None:
        return None
    return resolved(cfg, path)


def save_locally(data: dict[str, Any], path: Path) -> StationConfig:
    """Validate and write the file atomically, the old one kept as ``.bak`` (blocking: worker thread)."""
    cfg = validate_config_data(copy.deepcopy(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, path)
    return cfg
