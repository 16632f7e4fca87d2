"""Convert files without keeping anything: what ``stationflow submit --dry-run`` shows.

A converter author (or a person checking a new tester's files) wants to see the exact WSJF the
station would accept, before anything reaches the spool or the server. The conversion runs exactly
as in an intake — in a worker process, with the same stamping, ids and validation — and the report
bytes are handed back instead of being accepted. Nothing is written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..errors import InvalidInput
from .named import convert_named
from .pool import ConversionFailed, WorkerPool
from .worker import DEFAULT_MEMORY_LIMIT
from ...schemas.config import StationSection

__all__ = ["Preview", "preview_files"]


@dataclass
class Preview:
    """One file's reports as the spool would receive them, or why it would be refused."""

    path: str
    reports: list[bytes] = field(default_factory=list)
    error: str | None = None
    detail: str | None = None


async def preview_files(paths: list[Path], station: StationSection, *, converter: str, arguments: dict[str, Any] | None = None,
                        intake: str = "submit", timeout_s: float = 60.0, workers: int = 2,
                        memory_limit: int = DEFAULT_MEMORY_LIMIT) -> list[Preview]:
    """Convert each file in a worker process and return its finished report bytes; files are only read."""
    pool = WorkerPool(workers, memory_limit=memory_limit)
    results = [Preview(str(p)) for p in paths]
    limiter = anyio.CapacityLimiter(max(1, workers))

    async def one(path: Path, result: Preview) -> None:
        async with limiter:
            try:
                converted = await convert_named(pool, path, station, converter=converter, arguments=arguments,
                                                intake=intake, timeout_s=timeout_s)
            except InvalidInput as exc:
                result.error = exc.message.removeprefix(f"{path}: ")
                result.detail = exc.hint
                return
            except ConversionFailed as exc:
                result.error, result.detail = exc.message, exc.detail or exc.traceback
                return
            result.reports = list(converted.reports)

    try:
        async with anyio.create_task_group() as tg:
            for path, result in zip(paths, results):
                tg.start_soon(one, Path(path), result)
    finally:
        await pool.aclose()
    return results
