"""Frames between the service and its intake process: a 4-byte big-endian length, then a pickle.

Both ends are this program (the service starts the intake process itself and nothing else writes
to its pipes), so a pickle is safe here and carries report bytes, exceptions and status dicts as
they are. A frame longer than ``MAX_FRAME`` means the stream is out of step: it is refused.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

from anyio.streams.buffered import BufferedByteReceiveStream

MAX_FRAME = 1 << 31  # one accept batch of the largest reports fits many times over
_HEAD = struct.Struct(">I")


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) >= MAX_FRAME:
        raise ValueError(f"a frame of {len(body)} bytes is too large")
    return _HEAD.pack(len(body)) + body


def read_frame(stream: IO[bytes]) -> Any:
    """The next message from a blocking stream; EOFError at the end (the other side is gone)."""
    head = _read_exactly(stream, _HEAD.size)
    return pickle.loads(_read_exactly(stream, _HEAD.unpack(head)[0]))


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def receive_frame(stream: BufferedByteReceiveStream) -> Any:
    """The next message from an async stream; anyio.IncompleteRead / EndOfStream at the end."""
    (size,) = _HEAD.unpack(await stream.receive_exactly(_HEAD.size))
    return pickle.loads(await stream.receive_exactly(size))
