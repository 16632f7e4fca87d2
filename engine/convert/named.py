"""Converting files a person names (``stationflow submit``, with or without ``--dry-run``).

A named file is read once, as a regular file of bounded size: a FIFO, a device such as
``/dev/zero`` or an endless file is refused instead of blocking a thread or filling memory. When a
work folder is given the bytes go to a private copy there and the converter reads that copy, so
what is converted is exactly what was checked (``submit`` through the service); a dry run converts
the checked file where it is and writes nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import anyio

from ..errors import InvalidInput
from ...schemas.config import StationSection
from .api import ConvertContext
from .pool import Converted, WorkerPool

#: Largest file ``submit`` reads (the intakes' own limit is max_file_bytes).
MAX_NAMED_BYTES = 256 * 1024**2


def read_regular_file(path: Path, max_bytes: int = MAX_NAMED_BYTES) -> tuple[bytes, float]:
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


async def convert_named(pool: WorkerPool, path: Path, station: StationSection, *, converter: str,
                        arguments: dict[str, Any] | None, intake: str, timeout_s: float,
                        max_bytes: int = MAX_NAMED_BYTES, work: Path | None = None) -> Converted:
    """Convert one named file in a worker; InvalidInput (unreadable, not a regular file, too large)
    or ConversionFailed (the converter's verdict) otherwise."""
    data, mtime = await anyio.to_thread.run_sync(read_regular_file, path, max_bytes)
    context = ConvertContext(station_name=station.name, location=station.location, purpose=station.purpose,
                             intake=intake, arguments=dict(arguments or {}), source_name=path.name,
                             source_mtime=mtime)
    sha256 = hashlib.sha256(data).hexdigest()
    if work is None:
        return await pool.convert(converter, path.resolve(), context, sha256=sha256, timeout=timeout_s)
    copy = work / uuid.uuid4().hex[:16] / path.name  # the converter sees the file under its own name
    try:
        await anyio.to_thread.run_sync(_write_copy, copy, data)
        return await pool.convert(converter, copy, context, sha256=sha256, timeout=timeout_s)
    finally:
        await anyio.to_thread.run_sync(_drop, copy)


def _write_copy(copy: Path, data: bytes) -> None:
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)  # not fsynced: the original stays where it is until the reports are durable


def _drop(copy: Path) -> None:
    copy.unlink(missing_ok=True)
    try:
        copy.parent.rmdir()
    except OSError:
        pass
