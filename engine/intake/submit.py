"""``stationflow submit``: convert files a person names and accept their reports into the spool."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..convert.api import ConvertContext
from ..convert.worker import DEFAULT_MEMORY_LIMIT, ConversionFailed, WorkerPool
from ..errors import InvalidInput, SpoolFull, StorageError
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
                       memory_limit: int = DEFAULT_MEMORY_LIMIT, workers: int = 2) -> list[Submitted]:
    """Convert files given by a person (``stationflow submit``) and accept their reports.

    The files are read where they are and never touched. Each file's reports are all validated
    before the first is accepted; a failure is reported per file and the others go on.
    """
    pool = WorkerPool(workers, memory_limit=memory_limit)
    results: list[Submitted] = [Submitted(str(p)) for p in paths]
    limiter = anyio.CapacityLimiter(max(1, workers))

    async def one(path: Path, result: Submitted) -> None:
        async with limiter:
            try:
                data = await anyio.to_thread.run_sync(path.read_bytes)
            except OSError as exc:
                result.error = f"cannot read: {exc.strerror or exc}"
                return
            st = path.stat()
            context = ConvertContext(station_name=station.name, location=station.location, purpose=station.purpose,
                                     intake=intake, arguments=dict(arguments or {}), source_name=path.name,
                                     source_mtime=st.st_mtime)
            try:
                converted = await pool.convert(converter, path.resolve(), context,
                                               sha256=hashlib.sha256(data).hexdigest(), timeout=timeout_s)
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
