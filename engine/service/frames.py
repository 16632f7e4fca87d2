"""Frames between the service and its intake process: a 4-byte big-endian length, then a pickle.

Both ends are this program (the service starts the intake process itself and nothing else writes
to its pipes), so a pickle is safe here and carries report bytes, exceptions and status dicts as
they are. A frame longer than ``MAX_FRAME`` means the stream is out of step: it is refused.

An accept frame carries a batch of reports (up to ~1.6 MB), and the report bytes are copied as few
times as the pipe allows. :func:`parts` does not copy a large bytes object (a report) into the
pickle: it travels beside it, as it is (pickle protocol 5's out-of-band buffers), and the frame
says so in its head — the length word's top bit (``MAX_FRAME`` refuses it otherwise), then the
number of such buffers and their lengths, then the pickle, then the buffers::

    classic:      >I len | pickle
    out-of-band:  >I (len | 1<<31) | >I count | count × >I size | pickle | buffer 1 | … | buffer count

The pieces go out in one gathering write (``os.writev``; one write each where there is none), never
joined into a third buffer. Measured (issue 18): pickling an accept batch into one 1.6 MB buffer
cost the intake process ~31 µs per report (7 user, 24 system: ~390 page faults per frame), its
largest single cost. The service reads a whole frame into one buffer kept from frame to frame
(:class:`FrameReader`, up to ``KEEP_BYTES``: a new 1.6 MB buffer per frame cost ~400 page faults
and its zeroing) and copies each report out of it once, into the bytes object the message holds.

Only the intake process → service direction carries reports; :func:`encode` (service → intake
process) stays classic, and :func:`read_frame` and :class:`FrameReader` read both forms.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
from collections.abc import Sequence
from typing import IO, Any, Union

MAX_FRAME = 1 << 31  # one accept batch of the largest reports fits many times over
_HEAD = struct.Struct(">I")
_OUT_OF_BAND = 1 << 31  # in the length word: buffers follow the pickle
_MAX_BUFFERS = 1 << 16  # more in one frame means the stream is out of step
try:  # pieces per writev: the system's IOV_MAX (Linux, the BSDs and macOS: 1024; POSIX's least: 16)
    _IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):  # no sysconf (Windows: no writev either)
    _IOV_MAX = 16
#: A bytes object at least this large travels beside the pickle (a report), a smaller one inside it.
OUT_OF_BAND_BYTES = 16 * 1024
#: The pipe the intake process writes to is made this large where the system allows (Linux): an
#: accept batch then crosses it in a few reads (and writes) instead of one per 64 KB.
PIPE_BYTES = 1 << 20
#: The reader's buffer is kept between frames up to this size (a default accept batch of 50 KB
#: reports is ~1.6 MB); a larger frame is read into a buffer of its own, freed after it.
KEEP_BYTES = 4 << 20

#: One piece of a frame, written as it is.
Part = Union[bytes, memoryview]


def encode(message: Any) -> bytes:
    """The whole frame in one buffer, classic (the service's messages: no reports in them)."""
    body = _body(message)
    return _HEAD.pack(len(body)) + body


def _body(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) >= MAX_FRAME:
        raise ValueError(f"a frame of {len(body)} bytes is too large")
    return body


def parts(message: Any) -> tuple[Part, ...]:
    """The frame's pieces, to be written one after the other (:func:`write_parts`): its head and
    pickle, then, if the message's tuples and lists hold bytes objects of ``OUT_OF_BAND_BYTES`` or
    more (an accept batch's reports), those objects themselves, not copied."""
    lifted = _lift(message, 3)
    if lifted is message:
        body = _body(message)
        return _HEAD.pack(len(body)), body
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(lifted, protocol=5, buffer_callback=buffers.append)  # None: out of band
    views = [buffer.raw() for buffer in buffers]
    sizes = [view.nbytes for view in views]
    if len(body) + sum(sizes) >= MAX_FRAME:
        raise ValueError(f"a frame of {len(body) + sum(sizes)} bytes is too large")
    head = struct.pack(f">II{len(sizes)}I", len(body) | _OUT_OF_BAND, len(sizes), *sizes)
    return (head, body, *views)


def _lift(value: Any, depth: int) -> Any:
    """``value`` with every large bytes object in its tuples and lists (``depth`` levels down)
    wrapped for out-of-band pickling; ``value`` itself when there is none."""
    kind = type(value)
    if kind is bytes:
        return pickle.PickleBuffer(value) if len(value) >= OUT_OF_BAND_BYTES else value
    if depth and (kind is tuple or kind is list):
        items = [_lift(item, depth - 1) for item in value]
        if any(new is not old for new, old in zip(items, value)):
            return tuple(items) if kind is tuple else items
    return value


def write_parts(stream: IO[bytes], frame: Sequence[Part]) -> None:
    """Write one frame to a blocking stream (the caller holds its write lock and flushes). A frame
    with reports beside its pickle goes out in one gathering write (``os.writev``, where there is
    one) after what the stream holds: a write per report would wake the reader once per report."""
    fd = _gathering_fd(stream) if len(frame) > 2 else None
    if fd is None:
        for part in frame:
            stream.write(part)
        return
    stream.flush()
    views = [memoryview(part) for part in frame]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= views[0].nbytes:  # the pieces written whole
            written -= views.pop(0).nbytes
        if written:  # one written in part (a signal interrupted the write)
            views[0] = views[0][written:]


def _gathering_fd(stream: IO[bytes]) -> int | None:
    """The descriptor to ``os.writev`` to under ``stream``, or None (no writev on this system, or
    the stream has no descriptor)."""
    if not hasattr(os, "writev"):
        return None
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


def read_frame(stream: IO[bytes]) -> Any:
    """The next message from a blocking stream; EOFError at the end (the other side is gone)."""
    (word,) = _HEAD.unpack(_read_exactly(stream, _HEAD.size))
    if not word & _OUT_OF_BAND:
        return pickle.loads(_read_exactly(stream, word))
    size = word & ~_OUT_OF_BAND
    (count,) = _HEAD.unpack(_read_exactly(stream, _HEAD.size))
    sizes = _sizes(size, count, _read_exactly(stream, _HEAD.size * count) if count <= _MAX_BUFFERS else b"")
    body = _read_exactly(stream, size)
    return pickle.loads(body, buffers=[_read_exactly(stream, n) for n in sizes])


def _sizes(size: int, count: int, packed: bytes) -> tuple[int, ...]:
    """The buffers' sizes of an out-of-band frame; ValueError if the head cannot be one."""
    if not size or not count or count > _MAX_BUFFERS:
        raise ValueError(f"a frame head of {size} bytes and {count} buffers: the stream is out of step")
    sizes: tuple[int, ...] = struct.unpack(f">{count}I", packed)
    if size + sum(sizes) >= MAX_FRAME:
        raise ValueError(f"a frame of {size + sum(sizes)} bytes: the stream is out of step")
    return sizes


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
    """Frames from an unbuffered blocking stream. A frame (its pickle and the reports beside it) is
    read straight into one buffer — the same buffer every time, grown to the largest frame up to
    ``KEEP_BYTES`` — with a few large reads; each report is copied out of it once into a bytes
    object of its own (which the unpickling uses as it is), and what the pickle holds is copied out
    by the unpickling, so nothing refers to the buffer once :meth:`read` returns. One thread reads
    (the service's reader thread, intake_process.py)."""

    __slots__ = ("pipe", "_buffer")

    def __init__(self, pipe: io.RawIOBase) -> None:
        self.pipe = pipe
        self._buffer = bytearray()

    def read(self) -> Any:
        """The next message; EOFError at the end (the other side is gone), ValueError out of step."""
        with self._fill(_HEAD.size) as head:
            (word,) = _HEAD.unpack(head)
        if not word & _OUT_OF_BAND:
            with self._fill(word) as body:
                return pickle.loads(body)
        size = word & ~_OUT_OF_BAND
        with self._fill(_HEAD.size) as head:
            (count,) = _HEAD.unpack(head)
        if count > _MAX_BUFFERS:
            _sizes(size, count, b"")  # raises: out of step
        with self._fill(_HEAD.size * count) as packed:
            sizes = _sizes(size, count, packed.tobytes())
        # The pickle and the reports in one go (a few reads, not one per report: each read is a
        # wake-up and a take of the GIL); each report is then copied out into a bytes of its own.
        with self._fill(size + sum(sizes)) as frame:
            reports, at = [], size
            for length in sizes:
                with frame[at:at + length] as report:
                    reports.append(report.tobytes())
                at += length
            with frame[:size] as body:
                return pickle.loads(body, buffers=reports)

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
