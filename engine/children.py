"""Child Python processes (converter workers, the service started by the configurator) must import
this very stationflow, wherever it is installed or checked out, not another copy on the path."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def import_root() -> str:
    """The folder that holds the ``stationflow`` package in use (site-packages, or a checkout)."""
    return str(Path(str(sys.modules["stationflow"].__file__)).resolve().parents[1])


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with :func:`import_root` first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (import_root(), env.get("PYTHONPATH")) if p)
    return env
