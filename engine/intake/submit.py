"""``stationflow submit``: convert files a person names and accept their reports into the spool.

A named file is read once, as a regular file of bounded size (a FIFO, a device such as
``/dev/zero`` or an endless file is refused instead of blocking a thread or filling memory), into
a private copy in the data dir; the converter reads that copy, so what is converted is exactly
what was checked.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..convert.api import ConvertContext
from ..convert.worker import DEFAULT_MEMORY_LIMIT, ConversionFailed, WorkerPool
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


#: Largest file ``submit`` reads (the intakes' own limit is max_file_bytes).
MAX_SUBMIT_BYTES = 256 * 1024**2


def read_regular_file(path: Path, max_bytes: int = MAX_SUBMIT_BYTES) -> tuple[bytes, float]:
    """The bytes and mtime of ``path`` if it is a regular file of at most ``max_bytes``; else
    InvalidInput. Opened without blocking (a FIFO with no writer would hang a thread for good)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{path}: not a regular file", hint="submit reads result files, not devices, "
                                                                   "pipes or folders")
        if st.st_size > max_bytes:
            raise InvalidInput(f"{path}: {st.st_size} bytes, more than the {max_bytes} submit reads")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidInput(f"{path}: grew past {max_bytes} bytes while it was read")
        return data, st.st_mtime
    finally:
        os.close(fd)


async def submit_files(paths: list[Path], spool: Spool, station: StationSection, *, converter: str,
                       arguments: dict[str, Any] | None = None, intake: str = "submit", timeout_s: float = 60.0,
                       memory_limit: int = DEFAULT_MEMORY_LIMIT, workers: int = 2,
                       max_bytes: int = MAX_SUBMIT_BYTES) -> list[Submitted]:
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
                data, mtime = await anyio.to_thread.run_sync(read_regular_file, path, max_bytes)
            except InvalidInput as exc:
                result.error = exc.message.removeprefix(f"{path}: ")
                result.detail = exc.hint
                return
            context = ConvertContext(station_name=station.name, location=station.location, purpose=station.purpose,
                                     intake=intake, arguments=dict(arguments or {}), source_name=path.name,
                                     source_mtime=mtime)
            folder = work / uuid.uuid4().hex[:16]
            copy = folder / path.name  # the converter sees the file under its own name
            try:
                await anyio.to_thread.run_sync(_write_copy, copy, data)
                converted = await pool.convert(converter, copy, context,
                                               sha256=hashlib.sha256(data).hexdigest(), timeout=timeout_s)
            except ConversionFailed as exc:
                result.error, result.detail = exc.message, exc.detail or exc.traceback
                return
            finally:
                await anyio.to_thread.run_sync(_drop, copy)
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


def _write_copy(copy: Path, data: bytes) -> None:
    copy.parent.mkdir()
    copy.write_bytes(data)  # not fsynced: the original stays where it is until the reports are durable


def _drop(copy: Path) -> None:
    copy.unlink(missing_ok=True)
    try:
        copy.parent.rmdir()
    except OSError:
        pass
