"""Converters run in worker processes: one that hangs, crashes or eats memory costs one file.

This module is what a worker process runs; the service's side, the pool, is :mod:`.pool`.

The service keeps a small pool of ``python -m stationflow.engine.convert.worker`` processes. Each converts
one file at a time on request and answers with the finished report bytes (stamped, with ids,
validated: :func:`.api.finish_reports`), so the service only has to accept them.

* **Timeout**: the service stops waiting after the intake's ``timeout_s`` and kills the worker
  (a new one is started for the next file).
* **Memory**: on POSIX the worker limits its own address space (``RLIMIT_AS``) before it loads
  any converter; a converter that allocates past it gets ``MemoryError`` (or dies), the file is
  rejected, and the worker is replaced.
* **Recycling**: a worker lives as long as it stays healthy; starting one costs ~0.15 s of CPU,
  which a restart every few hundred files paid for nothing. After each file it reports its
  resident memory (less the report bytes it is about to send), and the pool replaces it once that
  grew more than ``memory_growth`` past what it used after its first file (a converter that leaks),
  or when it crashed, hung or hit its memory limit.
* **Crash**: a worker that exits mid-file (segfault, ``os._exit``) is seen as end-of-stream.
* **Orphans**: a worker whose service died (``kill -9``) sees end-of-file on its stdin (only the
  service holds the other end) and exits at once, even in the middle of a hung converter. It does
  not compare its parent's pid: on Windows a venv's ``Scripts\\python.exe`` is a redirector that
  starts the real interpreter as its child, so the worker's parent is never the service.
* **A worker that died while idle** (or whose redirector did) is replaced and the request sent
  again: no file was attempted, so it is a retry, not a failure of the file.

Protocol on the worker's stdin/stdout: frames of a 4-byte big-endian length and a payload. Once
started (its imports done), the worker sends one JSON frame ``{"ready": true}``: a file's timeout
counts from the request, so it never includes the start of a new worker. A
request is one JSON frame. An answer is one JSON frame, followed (on success) by one raw frame
per report — report bytes are never wrapped in another JSON document. A ``convert_many`` request
names several files; the worker answers each in turn and flushes after each, so the service
times every file on its own and knows which one a hang or crash belongs to. The worker's own stdout is
redirected to stderr, so a converter that prints cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import struct
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_MEMORY_GROWTH", "resident_bytes"]

#: Address-space limit of a worker (POSIX). Generous: it stops runaway converters, not real files.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3
#: A worker whose resident memory grew this much past its size after its first file is replaced
#: (a leaking converter). A worker with its converter loaded uses ~30–60 MB; real files come and go.
DEFAULT_MEMORY_GROWTH = 256 * 1024**2
#: How long a new worker may take to start (interpreter, imports) before it is given up: apart from
#: the files' timeout, which must not pay for a start on a busy machine.
START_TIMEOUT_S = 120.0
#: Largest frame accepted from a worker (one report, or a request).
MAX_FRAME = 512 * 1024**2
_HEADER = struct.Struct(">I")
log = logging.getLogger(__name__)
_TRACEBACK_LINES = 12
WORKER_MODULE = __spec__.name if __spec__ is not None and __name__ == "__main__" else __name__


# =============================================================================== the worker side

def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def _write_frame(stream: BinaryIO, data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)


def _short_traceback(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-_TRACEBACK_LINES:])


class _Requests:
    """Request frames from the service, read by a thread of their own.

    The thread also watches the service: end-of-file on stdin while a file is being converted
    means the service is gone (stopped, or killed with ``kill -9``), and nobody wants the answer;
    the worker exits at once rather than letting a hung converter outlive the service. End-of-file
    between files is the normal end (the pool closes an idle worker's stdin).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._frames: queue.Queue[bytes | None] = queue.Queue()
        self.busy = False
        threading.Thread(target=self._read, name="stationflow-worker-stdin", daemon=True).start()

    def _read(self) -> None:
        while True:
            frame = _read_frame(self._stream)
            if frame is None:
                if self.busy:
                    os._exit(ORPHAN_EXIT)
                self._frames.put(None)
                return
            self._frames.put(frame)

    def next(self) -> bytes | None:
        """The next request, or None at the end of the input."""
        return self._frames.get()


#: Exit status of a worker that found its service gone in the middle of a file.
ORPHAN_EXIT = 3


_STATM = "/proc/self/statm"
_statm_fd: int | None = None  # kept open by the worker: one pread per file, not open/read/close
_page_size: int | None = None


def _own_statm() -> bytes:
    global _statm_fd, _page_size
    if _statm_fd is None:
        _statm_fd = os.open(_STATM, os.O_RDONLY)
        _page_size = os.sysconf("SC_PAGE_SIZE")
    return os.pread(_statm_fd, 256, 0)  # a /proc file read from its start is made anew


def resident_bytes(statm: str = _STATM) -> int | None:
    """This process's resident memory now: /proc on Linux, the working set on Windows, the peak
    (``ru_maxrss``) elsewhere; None when it cannot be known (then only a crash recycles)."""
    try:
        if statm == _STATM and hasattr(os, "pread"):
            data = _own_statm()
            return int(data.split()[1]) * (_page_size or os.sysconf("SC_PAGE_SIZE"))
        with open(statm, "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    if sys.platform == "win32":
        return _working_set()
    try:
        import resource
    except ImportError:  # neither /proc nor POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def _working_set() -> int | None:
    """The working set of this process (Windows), through psapi's GetProcessMemoryInfo."""
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                    ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t), ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                    ("PagefileUsage", ctypes.c_size_t), ("PeakPagefileUsage", ctypes.c_size_t)]

    try:
        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        handle = kernel32.GetCurrentProcess()
        if not kernel32.K32GetProcessMemoryInfo(handle, ctypes.byref(counters), counters.cb):
            return None
        return int(counters.WorkingSetSize)
    except (OSError, AttributeError):
        return None


def _limit_memory(limit: int) -> None:
    if limit <= 0:
        return
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_AS; the timeout still applies
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError) as exc:
        print(f"stationflow convert worker: cannot limit memory: {exc}", file=sys.stderr)


def _load(spec: str) -> tuple[Any, str | None, dict[str, Any] | None]:
    """(converter class, its name, None), or (None, None, the failure answer)."""
    from .api import ConverterLoadError, converter_name, load_converter

    try:
        cls = load_converter(spec)
    except ConverterLoadError as exc:
        return None, None, {"ok": False, "kind": "load", "message": str(exc)}
    except Exception as exc:  # a broken module: say what and where
        return None, None, {"ok": False, "kind": "load", "message": f"converter {spec!r} cannot be loaded: "
                            f"{type(exc).__name__}: {exc}", "traceback": _short_traceback(exc)}
    return cls, converter_name(cls, spec), None


def _convert_one(cls: Any, name: str, item: dict[str, Any], max_reports: int) -> tuple[dict[str, Any], list[bytes]]:
    from .api import ConversionError, ConvertContext, finish_reports

    context = ConvertContext.from_dict(item["context"])
    try:
        converter = cls()
        items = converter.convert(Path(item["source"]), context)
        keys: list[str] = []
        reports = finish_reports(items if items is not None else [], context, sha256=item["sha256"],
                                 converter=name, max_reports=max_reports, keys=keys)
    except ConversionError as exc:
        return {"ok": False, "kind": "invalid", "message": exc.message, "detail": exc.detail, "converter": name}, []
    except MemoryError as exc:
        return {"ok": False, "kind": "memory", "converter": name,
                "message": "the converter ran out of memory (the worker's memory limit)",
                "traceback": _short_traceback(exc)}, []
    except RecursionError as exc:
        return {"ok": False, "kind": "error", "converter": name,
                "message": "the converter recursed too deeply (RecursionError)", "traceback": _short_traceback(exc)}, []
    except Exception as exc:
        return {"ok": False, "kind": "error", "converter": name,
                "message": f"the converter raised {type(exc).__name__}: {exc}", "traceback": _short_traceback(exc)}, []
    return {"ok": True, "name": name, "count": len(reports), "ids": keys}, reports


def _with_rss(answer: dict[str, Any], reports: list[bytes]) -> dict[str, Any]:
    """The answer with this worker's resident memory after the file, less the reports it holds
    for sending (they go once sent): what the converter kept is what counts."""
    rss = resident_bytes()
    if rss is not None:
        answer["rss"] = max(0, rss - sum(len(r) for r in reports))
    return answer


def _answers(request: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[bytes]]]:
    """One answer per item of the request (``describe`` and ``convert`` have one item)."""
    cls, name, failed = _load(request["spec"])
    op = request["op"]
    if op == "describe":
        yield failed or {"ok": True, "name": name, "patterns": _patterns(cls)}, []
        return
    items = request["items"] if op == "convert_many" else [request]
    max_reports = int(request.get("max_reports", 100_000))
    for item in items:
        if failed is not None:
            yield failed, []
            continue
        assert name is not None
        answer, reports = _convert_one(cls, name, item, max_reports)
        yield _with_rss(answer, reports), reports
        if answer.get("kind") == "memory":
            return  # a heap that hit its limit is not trusted with the next file


def _patterns(cls: Any) -> list[str]:
    from .api import converter_patterns

    return converter_patterns(cls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY_LIMIT)
    args = parser.parse_args(argv)
    _limit_memory(args.memory_limit)
    for stream in (sys.stdout, sys.stderr):  # a converter's print must not fail on a cp1252 console
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # converter prints go to stderr
    requests = _Requests(sys.stdin.buffer)
    from . import api  # noqa: F401 - the converter framework, loaded before saying ready (see START_TIMEOUT_S)

    try:
        _write_frame(out, json.dumps({"ready": True}).encode())
        out.flush()
    except BrokenPipeError:
        return 0
    while True:
        frame = requests.next()
        if frame is None:
            return 0
        requests.busy = True
        memory = False
        answers = _answers(json.loads(frame))
        while True:
            try:
                answer, reports = next(answers)
            except StopIteration:
                break
            except MemoryError:
                answer, reports = {"ok": False, "kind": "memory", "message": "the worker ran out of memory"}, []
            try:
                _write_frame(out, json.dumps(answer).encode())
                for report in reports:
                    _write_frame(out, report)
                out.flush()  # each file's answer as soon as it is ready: the service times files one by one
            except BrokenPipeError:
                return 0  # the service is gone (stopped or killed): nobody wants the answer
            del reports
            if answer.get("kind") == "memory":
                memory = True
                break
        if memory:
            return 2  # a heap that hit its limit is not trusted with the next file
        requests.busy = False


if __name__ == "__main__":
    sys.exit(main())
