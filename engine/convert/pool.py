"""The pool of converter worker processes, as the intake process sees it (see :mod:`.worker`).

Each exchange with a worker (a request, then every file's answer and reports) runs in one thread
that reads the worker's stdout as a blocking stream, so a report arrives in one or two reads; a
watchdog thread keeps the per-file timeouts and kills a worker that overruns one. The protocol, the
limits and why workers are recycled are described in :mod:`.worker`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .worker import _HEADER, DEFAULT_MEMORY_GROWTH, DEFAULT_MEMORY_LIMIT, MAX_FRAME, START_TIMEOUT_S, WORKER_MODULE

__all__ = ["ConversionFailed", "Converted", "WorkerPool"]

log = logging.getLogger("stationflow.engine.convert.worker")  # the pool's lines kept their logger's name



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
