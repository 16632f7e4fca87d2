"""``stationflow submit``: convert files a person names and accept their reports into the spool.

How a named file is read and converted (a regular file of bounded size, through a private copy
in the data dir) is in ``convert/named.py``, shared with ``submit --dry-run``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..convert.named import MAX_NAMED_BYTES, convert_named
from ..convert.pool import ConversionFailed, WorkerPool
from ..convert.worker import DEFAULT_MEMORY_LIMIT
from ..errors import InvalidInput, SpoolFull, StorageError
from ..layout import DataDir
from ..spool.store import Spool
from ...schemas.config import StationSection


@dataclass
class Submitted:
    """What ``submit_files`` did with one file."""

    path: str
    accepted: list[tuple[str, str, bool]] = field(default_factory=list)  # (id, state, already present)
    error: str | None = None
    detail: str | None = None


async def submit_files(paths: list[Path], spool: Spool, station: StationSection, *, converter: str,
                       arguments: dict[str, Any] | None = None, intake: str = "submit", timeout_s: float = 60.0,
                       memory_limit: int = DEFAULT_MEMORY_LIMIT, workers: int = 2,
                       max_bytes: int = MAX_NAMED_BYTES) -> list[Submitted]:
    """Convert files given by a person (``stationflow submit``) and accept their reports.

    The files are never changed. Each is read once into a private copy (see the module
    docstring); each file's reports are all validated before the first is accepted; a failure is
    reported per file and the others go on.
    """
    work = DataDir.of(spool.root.parent).intake_work(intake) / "submitted"
    await anyio.to_thread.run_sync(functools.partial(work.mkdir, parents=True, exist_ok=True))
    pool = WorkerPool(workers, memory_limit=memory_limit)
    results: list[Submitted] = [Submitted(str(p)) for p in paths]
    limiter = anyio.CapacityLimiter(max(1, workers))

    async def one(path: Path, result: Submitted) -> None:
        async with limiter:
            try:
                converted = await convert_named(pool, path, station, converter=converter, arguments=arguments,
                                                intake=intake, timeout_s=timeout_s, max_bytes=max_bytes, work=work)
            except InvalidInput as exc:
                result.error = exc.message.removeprefix(f"{path}: ")
                result.detail = exc.hint
                return
            except ConversionFailed as exc:
                result.error, result.detail = exc.message, exc.detail or exc.traceback
                return
            for raw in converted.reports:
                try:
                    accepted = await anyio.to_thread.run_sync(functools.partial(
                        spool.accept, raw, source=str(path.resolve())))
                except (InvalidInput, SpoolFull, StorageError) as exc:
                    result.error, result.detail = str(exc), exc.detail
                    return
                result.accepted.append((accepted.key, accepted.state, accepted.already_present))

    try:
        async with anyio.create_task_group() as tg:
            for path, result in zip(paths, results):
                tg.start_soon(one, Path(path), result)
    finally:
        await pool.aclose()
    return results

