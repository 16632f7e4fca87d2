"""Converters run in worker processes: one that hangs, crashes or eats memory costs one file.

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
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

__all__ = ["ConversionFailed", "Converted", "WorkerPool", "DEFAULT_MEMORY_LIMIT", "DEFAULT_MEMORY_GROWTH", "resident_bytes"]

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


# =============================================================================== the service side

class ConversionFailed(Exception):
    """A file could not be converted. ``kind``: invalid, error, memory, timeout, crash or load."""

    def __init__(self, kind: str, message: str, *, converter: str | None = None, detail: str | None = None,
                 traceback_text: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.converter = converter
        self.detail = detail
        self.traceback = traceback_text

    def __str__(self) -> str:
        return self.message


@dataclass
class Converted:
    converter: str
    reports: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # each report's id as the worker validated it


class _Worker:
    """One worker process and the blocking pipes the pool talks to it through (from a thread)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None  # asked for with PIPE
        self.stdin: IO[bytes] = process.stdin
        self.stdout: IO[bytes] = process.stdout
        self.jobs = 0
        self.ready = False  # its "ready" frame read
        self.baseline: int | None = None  # resident bytes after its first file (its converter loaded)
        self.rss: int | None = None  # resident bytes after its latest file
        self.expired = False  # the watchdog stopped it (a timeout), or its caller gave up on it

    def note_rss(self, answer: dict[str, Any]) -> None:
        rss = answer.get("rss")
        if isinstance(rss, int):
            self.rss = rss
            if self.baseline is None:
                self.baseline = rss

    def grew_past(self, limit: int) -> bool:
        return self.rss is not None and self.baseline is not None and self.rss - self.baseline > limit

    def stop(self) -> None:
        """Kill it and close its stdin (from any thread; the thread reading its answers then sees
        end-of-file). Closing stdin matters behind a venv redirector (Windows): killing the
        redirector leaves the real interpreter running, which exits when its stdin ends."""
        self.expired = True
        try:
            self.process.kill()
        except OSError:
            pass
        try:
            self.stdin.close()
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        """Blocking: stop it and reap it."""
        self.stop()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._close_pipes()

    def close(self) -> None:
        """Blocking: the normal end (its stdin closed: it exits by itself), killed after 2 s."""
        try:
            self.stdin.close()
        except (OSError, ValueError):
            pass  # the worker is gone already; waiting and killing below still apply
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass


class _Watchdog:
    """Stops a worker whose answer is late: one thread for the pool, woken only when a deadline
    may have passed or comes sooner. Moving a deadline on (after each answer) costs a lock, not a
    wake-up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadlines: dict[_Worker, float] = {}
        self._thread: threading.Thread | None = None

    def arm(self, worker: _Worker, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            before = self._deadlines.get(worker)
            self._deadlines[worker] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stationflow-worker-watchdog", daemon=True)
                self._thread.start()
            elif before is None or deadline < before:
                self._cond.notify()

    def disarm(self, worker: _Worker) -> None:
        with self._cond:
            self._deadlines.pop(worker, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for worker, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[worker]
                        try:
                            worker.stop()
                        except Exception:  # noqa: BLE001 - the watchdog must outlive any one worker
                            log.exception("convert worker: stopping a late worker failed")
                self._cond.wait(min(self._deadlines.values(), default=now + 60) - now)


class _Gone(Exception):
    """The worker's stdout ended (it exited, or was stopped) in the middle of an answer."""


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)  # a buffered reader: whole, or short only at the end of the stream
    if len(data) < size:
        raise _Gone(f"end of stream after {len(data)} of {size} bytes")
    return data


class WorkerPool:
    """Up to ``size`` worker processes, started on demand and replaced after a failure.

    ``convert`` is safe to call from many tasks at once: each call takes a worker for itself.
    A call that is cancelled kills the worker it was using (its state is unknown).

    Each exchange with a worker (its request, and every file's answer and report frames) runs in
    one thread, reading the worker's stdout as a blocking buffered stream: a report arrives in one
    or two reads straight into its bytes. Reading it through the event loop's pipe transport cost
    a callback, a buffer copy and a task wake-up per 64 KB (a fifth of the intake's CPU). Each
    file's timeout is kept by a watchdog thread, which stops the worker (the reads then end).
    """

    def __init__(self, size: int = 2, *, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 python: str | None = None, memory_growth: int = DEFAULT_MEMORY_GROWTH) -> None:
        import anyio

        self.size = max(1, size)
        self.memory_limit = memory_limit
        self.python = python or sys.executable
        self.memory_growth = memory_growth
        self.recycled = 0  # healthy workers replaced because their memory grew (for status and tests)
        self._slots = anyio.Semaphore(self.size)
        self._idle: list[_Worker] = []
        self._closed = False
        self._watchdog = _Watchdog()
        self.started = 0  # workers started so far (for status and tests)

    def _spawn(self) -> _Worker:
        """Blocking: start a worker process (its "ready" frame is read by the first exchange)."""
        from ..children import child_env
        from ..service.frames import widen_pipe

        command = [self.python, "-m", WORKER_MODULE, "--memory-limit", str(self.memory_limit)]
        env = child_env()  # the worker imports this very package, wherever it is installed
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env)
        assert process.stdout is not None
        widen_pipe(process.stdout.fileno())  # a report crosses in one write and one read (Linux)
        return _Worker(process)

    def _receive(self, worker: _Worker) -> tuple[dict[str, Any], list[bytes]]:
        """Blocking: one file's answer and, on success, its report frames."""
        stream = worker.stdout

        def frame() -> bytes:
            (size,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
            if size > MAX_FRAME:
                raise ConversionFailed("error", f"the converter produced a report of {size} bytes "
                                                f"(more than {MAX_FRAME} bytes)")
            return _read_exactly(stream, size)

        answer = json.loads(frame())
        reports = [frame() for _ in range(int(answer.get("count", 0)))] if answer.get("ok") else []
        return answer, reports

    @staticmethod
    def _crashed(worker: _Worker, exc: BaseException) -> ConversionFailed:
        try:
            code: int | None = worker.process.wait(2)
        except subprocess.TimeoutExpired:
            code = worker.process.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return ConversionFailed("crash", f"the converter's worker process {how} while converting", detail=repr(exc))

    async def _run_many(self, request: dict[str, Any], count: int,
                        timeout: float) -> list[tuple[dict[str, Any], list[bytes]] | ConversionFailed]:
        """Send one request and read up to ``count`` answers, each within ``timeout`` of the one
        before (the per-file limit). After a timeout, a crash or a memory failure the list ends
        early: the files after it were not attempted and the worker is replaced.

        A worker taken from the idle list that turns out to be gone before it answered anything
        (it, or the venv redirector in front of it, died while idle) did not attempt a file: the
        request goes once more to a fresh worker instead of failing the file."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        async with self._slots:
            while True:
                worker, reused = await self._take()
                results = await self._exchange(worker, request, count, timeout)
                stale = reused and len(results) == 1 and isinstance(results[0], ConversionFailed) \
                    and results[0].kind == "crash"
                if not stale:
                    return results
                log.info("convert worker: an idle worker was gone (%s); sending the request to a new one",
                         results[0])

    async def _take(self) -> tuple[_Worker | None, bool]:
        """An idle worker (True) that still runs, else None: a new one is started by the exchange."""
        import anyio

        while self._idle:
            worker = self._idle.pop()
            if worker.process.poll() is None:
                return worker, True
            await anyio.to_thread.run_sync(worker.kill)  # exited while idle: reap it
        return None, False

    async def _exchange(self, worker: _Worker | None, request: dict[str, Any], count: int,
                        timeout: float) -> list[tuple[dict[str, Any], list[bytes]] | ConversionFailed]:
        import anyio

        box: list[_Worker] = [worker] if worker is not None else []
        if not box:
            self.started += 1  # counted here, on the loop: the thread starts it (_talk)
        gave_up = threading.Event()
        try:
            results, healthy = await anyio.to_thread.run_sync(self._talk, box, request, count, timeout, gave_up,
                                                              abandon_on_cancel=True)
        except BaseException:  # cancelled: the worker's state is unknown
            gave_up.set()
            if box:
                box[0].stop()  # the thread sees the end of its stream, reaps the worker and ends
            raise
        worker = box[0]
        worker.jobs += max(1, len(results))
        grown = worker.grew_past(self.memory_growth)
        if healthy and not self._closed and not grown:
            self._idle.append(worker)
        elif healthy:
            if grown:
                self.recycled += 1
                log.info("convert worker: replaced after %d file(s): its memory grew from %.0f MB to %.0f MB "
                         "(more than %.0f MB; a converter that keeps memory)", worker.jobs,
                         (worker.baseline or 0) / 2**20, (worker.rss or 0) / 2**20, self.memory_growth / 2**20)
            await anyio.to_thread.run_sync(worker.close)
        return results

    def _talk(self, box: list[_Worker], request: dict[str, Any], count: int, timeout: float,
              gave_up: threading.Event) -> tuple[list[tuple[dict[str, Any], list[bytes]] | ConversionFailed], bool]:
        """Blocking (a thread): the whole exchange, a new worker started first if ``box`` is empty;
        (the results, whether the worker is fit for another request). An unfit worker is killed
        and reaped here. ``gave_up``: the caller was cancelled (the worker is stopped)."""
        if not box:
            box.append(self._spawn())
        worker = box[0]
        if gave_up.is_set():  # cancelled while it started (the caller saw no worker to stop)
            worker.stop()
        healthy = False
        results: list[tuple[dict[str, Any], list[bytes]] | ConversionFailed] = []
        watchdog = self._watchdog
        try:
            if not worker.ready:
                # Its start is not counted in a file's timeout (START_TIMEOUT_S apart).
                watchdog.arm(worker, START_TIMEOUT_S)
                answer, _ = self._receive(worker)
                if answer.get("ready") is not True:
                    raise ConversionFailed("crash", f"the converter's worker process sent {answer!r} instead of "
                                                    "saying it was ready")
                worker.ready = True
            body = json.dumps(request).encode()
            worker.stdin.write(_HEADER.pack(len(body)) + body)
            worker.stdin.flush()
            watchdog.arm(worker, timeout)  # each file: ``timeout`` from the answer before
            for _ in range(count):
                answer, reports = self._receive(worker)
                results.append((answer, reports))
                worker.note_rss(answer)
                if answer.get("kind") == "memory":
                    break
                watchdog.arm(worker, timeout)
            else:
                healthy = True
        except ConversionFailed as exc:
            results.append(exc)
        except (_Gone, OSError, ValueError) as exc:  # ValueError: a pipe closed by stop()
            if not worker.expired:
                results.append(self._crashed(worker, exc))
            elif not worker.ready:
                results.append(ConversionFailed("timeout", f"the converter's worker process did not start "
                                                           f"within {START_TIMEOUT_S:g} s"))
            else:
                results.append(ConversionFailed("timeout", f"the converter took longer than {timeout:g} s "
                                                           "(the intake's timeout_s) and was stopped"))
        finally:
            watchdog.disarm(worker)
            if worker.expired:
                healthy = False  # stopped by the watchdog (or given up) after its last answer
            if not healthy:
                worker.kill()
        return results, healthy

    async def _run(self, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[bytes]]:
        [result] = await self._run_many(request, 1, timeout)
        if isinstance(result, ConversionFailed):
            raise result
        return result

    @staticmethod
    def _converted(spec: str, answer: dict[str, Any], reports: list[bytes]) -> Converted | ConversionFailed:
        if not answer.get("ok"):
            return ConversionFailed(answer.get("kind", "error"), answer.get("message", "conversion failed"),
                                    converter=answer.get("converter"), detail=answer.get("detail"),
                                    traceback_text=answer.get("traceback"))
        ids: Any = answer.get("ids")
        valid = isinstance(ids, list) and len(ids) == len(reports) and all(isinstance(i, str) for i in ids)
        return Converted(answer.get("name", spec), reports, list(ids) if valid else [])

    async def convert(self, spec: str, source: Path, context: Any, *, sha256: str, timeout: float,
                      max_reports: int = 100_000) -> Converted:
        """The finished report bytes of ``source``, or ConversionFailed saying why not."""
        request = {"op": "convert", "spec": spec, "source": str(source), "context": context.to_dict(),
                   "sha256": sha256, "max_reports": max_reports}
        result = self._converted(spec, *await self._run(request, timeout))
        if isinstance(result, ConversionFailed):
            raise result
        return result

    async def convert_many(self, spec: str, items: list[tuple[Path, Any, str]], *, timeout: float,
                           max_reports: int = 100_000) -> list[Converted | ConversionFailed]:
        """Several files in one exchange with one worker: (source, context, sha256) each.

        One result per file in order, each file within ``timeout``; a shorter list means the
        files after the last result were not attempted (the worker hung, crashed or ran out of
        memory on the last one) and should be converted again.
        """
        request = {"op": "convert_many", "spec": spec, "max_reports": max_reports,
                   "items": [{"source": str(source), "context": context.to_dict(), "sha256": sha256}
                             for source, context, sha256 in items]}
        return [result if isinstance(result, ConversionFailed) else self._converted(spec, *result)
                for result in await self._run_many(request, len(items), timeout)]

    async def describe(self, spec: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Load ``spec`` in a worker: its name and patterns, or ConversionFailed(kind='load')."""
        answer, _ = await self._run({"op": "describe", "spec": spec}, timeout)
        if not answer.get("ok"):
            raise ConversionFailed("load", answer.get("message", f"converter {spec!r} cannot be loaded"),
                                   traceback_text=answer.get("traceback"))
        return {"name": answer["name"], "patterns": list(answer.get("patterns") or ["*"])}

    async def aclose(self) -> None:
        self._closed = True
        import anyio

        idle, self._idle = self._idle, []
        for worker in idle:
            await anyio.to_thread.run_sync(worker.close)


if __name__ == "__main__":
    sys.exit(main())
