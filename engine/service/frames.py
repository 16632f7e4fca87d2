"""Frames between the service and its intake process: a 4-byte big-endian length, then a pickle.

Both ends are this program (the service starts the intake process itself and nothing else writes
to its pipes), so a pickle is safe here and carries report bytes, exceptions and status dicts as
they are. A frame longer than ``MAX_FRAME`` means the stream is out of step: it is refused.

An accept frame carries a batch of reports (up to ~1.6 MB): the report bytes are copied as few
times as the pipe allows — the head and the pickle are written one after the other (never joined
into a third buffer), and the service reads a frame straight into one buffer (:class:`FrameReader`)
and unpickles it from there (each report's bytes copied out of it once). That buffer is kept from
frame to frame (up to ``KEEP_BYTES``): a new 1.6 MB buffer per frame cost ~400 page faults and its
zeroing, measured 61 → 30 µs of system time per report in the reader.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from typing import IO, Any

MAX_FRAME = 1 << 31  # one accept batch of the largest reports fits many times over
_HEAD = struct.Struct(">I")
#: The pipe the intake process writes to is made this large where the system allows (Linux): an
#: accept batch then crosses it in a few reads (and writes) instead of one per 64 KB.
PIPE_BYTES = 1 << 20
#: The reader's buffer is kept between frames up to this size (a default accept batch of 50 KB
#: reports is ~1.6 MB); a larger frame is read into a buffer of its own, freed after it.
KEEP_BYTES = 4 << 20


def encode(message: Any) -> bytes:
    """The whole frame in one buffer (small messages; large ones go through :func:`parts` and :func:`write_parts`)."""
    body = _body(message)
    return _HEAD.pack(len(body)) + body


def _body(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) >= MAX_FRAME:
        raise ValueError(f"a frame of {len(body)} bytes is too large")
    return body


def parts(message: Any) -> tuple[bytes, bytes]:
    """The frame's head and body, to be written one after the other (:func:`write_parts`)."""
    body = _body(message)
    return _HEAD.pack(len(body)), body


def write_parts(stream: IO[bytes], frame: tuple[bytes, bytes]) -> None:
    """Write one frame to a blocking stream (the caller holds its write lock and flushes)."""
    stream.write(frame[0])
    stream.write(frame[1])


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
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_frame_into(pipe: io.RawIOBase) -> Any:
    """The next message from an unbuffered blocking stream (one frame, a buffer of its own); the
    service's reader thread keeps one :class:`FrameReader` instead."""
    return FrameReader(pipe).read()


class FrameReader:
    """Frames from an unbuffered blocking stream, each read straight into one buffer — the same
    buffer every time, grown to the largest frame up to ``KEEP_BYTES`` — and unpickled from there
    (the report bytes are copied out of it once, by the unpickling, so nothing refers to the buffer
    once :meth:`read` returns). One thread reads (the service's reader thread, intake_process.py)."""

    __slots__ = ("pipe", "_buffer")

    def __init__(self, pipe: io.RawIOBase) -> None:
        self.pipe = pipe
        self._buffer = bytearray()

    def read(self) -> Any:
        """The next message; EOFError at the end (the other side is gone), ValueError out of step."""
        with self._fill(_HEAD.size) as head:
            (size,) = _HEAD.unpack(head)
        if size >= MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes: the stream is out of step")
        with self._fill(size) as body:
            return pickle.loads(body)

    def _fill(self, size: int) -> memoryview:
        """``size`` bytes of the stream, in a view the caller releases (the kept buffer cannot be
        grown while a view of it is held)."""
        buffer = self._buffer
        if size > len(buffer):
            buffer = bytearray(size)
            if size <= KEEP_BYTES:
                self._buffer = buffer
        view = memoryview(buffer)[:size]
        try:
            got = 0
            while got < size:
                with view[got:] as rest:
                    count = self.pipe.readinto(rest)
                if not count:
                    raise EOFError("the other side closed the pipe")
                got += count
        except BaseException:
            view.release()
            raise
        return view


def widen_pipe(fd: int) -> None:
    """Make the pipe ``fd`` belongs to ``PIPE_BYTES`` long, where the system allows it (Linux only;
    elsewhere, or past the system's limit, the pipe stays as it is: only slower)."""
    if sys.platform != "linux":
        return
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except OSError:
        pass
