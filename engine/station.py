"""What a command needs from a station config: the resolved config and the spool built from it."""

from __future__ import annotations

from pathlib import Path

from .layout import DataDir
from .lifecycle import Lifecycle
from .config_file import find_config_path, load_config, resolved
from .spool.store import Spool
from ..schemas.config import StationConfig


def load_station(config_arg: str | None) -> tuple[Path, StationConfig]:
    """Find and load the config; relative paths in it become absolute (relative to its folder)."""
    path = find_config_path(config_arg)
    return path, resolved(load_config(path), path)


def open_spool(cfg: StationConfig, *, readonly: bool = False, machines: dict[str, Lifecycle] | None = None) -> Spool:
    """The spool of this station with the config's limits; ``readonly`` takes no lock and moves nothing.

    Every lifecycle in force (the config's ``lifecycles:`` folder over the shipped ones) is checked
    first: an unsafe one raises MachineDefinitionError listing every problem before anything on
    disk is touched. ``machines``: those already in force (the service keeps its own for the run)."""
    from .lifecycle import in_force

    machines = machines if machines is not None else in_force(cfg.lifecycles)
    spool = Spool(
        cfg.data_dir,
        lifecycle=machines["report"],
        max_reports=cfg.spool.max_reports,
        max_bytes=int(cfg.spool.max_bytes),
        min_free_bytes=int(cfg.spool.min_free_disk),
        keep_sent_days=cfg.spool.keep_sent_days,
        readonly=readonly,
        max_wait_s=cfg.upload.retry.max_s,
    )
    spool.machines = machines
    return spool


def spool_in_use(cfg: StationConfig) -> bool:
    """True when another process (normally the service) holds this station's spool lock."""
    return lock_file_held(DataDir.of(cfg.data_dir).spool_lock)


def lock_file_held(path: Path) -> bool:
    """True while some process holds the file lock at ``path`` (probing takes it for an instant)."""
    from filelock import FileLock, Timeout

    if not path.exists():
        return False
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
