"""The service's side of the intake process: start it, accept its reports into the spool, relay it.

The process model, on by default: the intake runs in a process of its own;
``STATIONFLOW_INTAKE_PROCESS=0`` in the service's environment (or ``Service(intake_process=False)``)
keeps it in the service's own process, as before. Measured, the split raised the pipeline's rate
and lowered its file → acknowledged latency (README, "Processes"); the price is a second Python
start-up, so the first file after a start is acknowledged ~0.5–0.9 s later on a loaded machine::

    service process: supervisor, control server, config watch, spool (lock, index), uploader
        └─ intake process (intake_child.py): watch, settle, copy, convert, post-actions
              └─ converter workers

One process owns the spool: the service. It holds the spool's lock and index, so ``status``,
``queue`` commands, operator triggers and the uploads see one truth, as before. The intake process
hands each batch of converted reports over and waits for ``Spool.accept_many``'s answer.

Costs per report kept low (issue 18): a thread reads the intake process's frames with blocking reads
(not the event loop, 64 KB at a time) into one buffer kept from frame to frame, the reports copied
out of it once (frames.py); each message is still handled on the event loop, in order. An accept batch goes to ``accept_many`` in a worker thread; its
answer is sent after it returns. Log records come several to a frame, and a frame's records reach
the log file and the console in one write each (``logs.one_write``).

Durability argument: the reports are in the spool — written, fsynced, renamed into ``pending/``,
directory fsynced — when ``accept_many`` returns, which is before the uploader can claim them and
before the intake process is answered (the answer is sent only by ``_accept``, after
``accept_many`` has returned; how the frames are read changes nothing of this); the intake
process touches a source only after that answer.
A ``kill -9`` of the intake process loses nothing: a batch the service accepted is in the spool; the
sources are where they were (or their copies and job records are) and are converted again to the
same ids, which the spool answers as "already present". The supervisor sees the pipe end and starts
a new intake process. A ``kill -9`` of the service takes the intake process with it (end of its
stdin); the next start recovers the spool as it always did.

This object stands where :class:`~stationflow.engine.intake.Intake` stood in the service:
``run``, ``drain``, ``aclose``, ``status``, ``pause``, ``resume``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import Process, TaskGroup

from ..children import child_env
from ..errors import StationflowError
from ..layout import DataDir
from ..lifecycle import Lifecycle
from ..spool.store import Spool
from ...schemas.config import StationConfig
from .frames import FrameReader, encode, widen_pipe
from .logs import one_write

log = logging.getLogger(__name__)

ENV = "STATIONFLOW_INTAKE_PROCESS"
_EXIT_WAIT_S = 10.0  # after its stdin is closed, the intake process unwinds (kept.json, workers)


def separate_by_default() -> bool:
    """Intake in its own process unless ``STATIONFLOW_INTAKE_PROCESS`` is 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _poster() -> Callable[..., object]:
    """How a thread hands a call to the running event loop, in order: on asyncio without waiting for
    it (each wait was a thread wake-up more per message), elsewhere through anyio (waiting)."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # not asyncio (trio)
        token = anyio.lowlevel.current_token()
        return lambda fn, *args: anyio.from_thread.run_sync(fn, *args, token=token)


def _starting_status(config: StationConfig, data_dir: Path) -> dict[str, Any]:
    """What status shows until the intake process sends its own: the same keys, nothing counted yet."""
    return {"paused": False, "paused_reason": None, "draining": False, "in_flight": 0, "process": "starting",
            "workers": {"size": 0, "started": 0},
            "intakes": {s.name: {"watch": str(s.watch), "converter": s.converter, "patterns": list(s.patterns),
                                 "after": s.after, "counts": {}, "reports_accepted": 0, "problem": None,
                                 "last_error": None, "waiting": [], "error_folder": str(DataDir(data_dir).rejected(s.name)),
                                 "links_ignored": 0, "notifications": "starting", "note": None}
                        for s in config.intake}}


@asynccontextmanager
async def started_early(intake: object) -> AsyncIterator[None]:
    """Start ``intake``'s process (if it is an IntakeProcess) before the body — the service opens its
    spool meanwhile — and end it again if the body fails (the service does not start)."""
    if isinstance(intake, IntakeProcess):
        await intake.start()
    try:
        yield
    except BaseException:
        if isinstance(intake, IntakeProcess):
            await intake.aclose()
        raise


class IntakeProcessExited(StationflowError):
    """The intake process ended without being asked to; the supervisor starts a new one."""


class IntakeProcess:
    """The intake, run in a process of its own; the reports it converts are accepted here."""

    def __init__(self, config: StationConfig, spool: Spool | None, data_dir: Path,
                 machines: dict[str, Lifecycle] | None = None) -> None:
        self.config = config
        self.spool = spool  # may be set later: the service starts the process before the spool is open
        self.data_dir = data_dir
        self.machines = machines if machines is not None else getattr(spool, "machines", {})
        self.pid: int | None = None
        self._status: dict[str, Any] = _starting_status(config, data_dir)
        self._proc: Process | None = None
        self._draining = False
        self._drained = anyio.Event()
        self._sendable = anyio.Lock()
        self._pause: str | None = None  # a pause asked before the process was up is sent when it is
        self._tg: TaskGroup | None = None
        self._out_fd: int | None = None  # the intake process's stdout, until its reader thread takes it
        self._read_ended: anyio.Event | None = None  # set when that thread saw the end of it

    # ------------------------------------------------------------------ control (from the event loop)

    def pause(self, reason: str) -> None:
        self._pause = reason or "paused"
        self._status.update(paused=True, paused_reason=self._pause)
        self._post(("pause", self._pause))

    def resume(self) -> None:
        self._pause = None
        self._status.update(paused=False, paused_reason=None)
        self._post(("resume",))

    def status(self) -> dict[str, Any]:
        """The intake process's last status (at most ~0.2 s old) and its pid."""
        return {**self._status, "pid": self.pid}

    async def drain(self) -> None:
        """No new files; returns once the files in flight are finished (or the process is gone)."""
        self._draining = True
        self._status["draining"] = True
        if self._proc is None or self._proc.returncode is not None:
            return
        await self._send(("drain",))
        await self._drained.wait()

    async def aclose(self) -> None:
        """End the process: close its stdin (it unwinds and exits), kill it if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with anyio.CancelScope(shield=True):
            if proc.stdin is not None:
                try:
                    await proc.stdin.aclose()
                except (anyio.BrokenResourceError, OSError):
                    pass
            # Keep reading while it unwinds: a full pipe would block its last log lines (and it).
            ended = self._read_frames()
            with anyio.move_on_after(_EXIT_WAIT_S):
                await proc.wait()
                await ended.wait()  # its last log lines are in the log before this returns
            if proc.returncode is None:
                log.warning("the intake process (pid %s) did not exit in %g s; killing it", proc.pid, _EXIT_WAIT_S)
                proc.kill()
                await proc.wait()
            await proc.aclose()

    def _read_frames(self) -> anyio.Event:
        """Start the thread that reads the intake process's frames (once); the event it sets at their end.

        Why a thread and not the event loop: an accept batch is ~1.6 MB, which the event loop's pipe
        reader took in 64 KB pieces, each a wake-up and two or three copies; the thread reads each
        frame with a few blocking reads into one kept buffer. Every message is then handled on the
        event loop, in order (``_handle``), as before; only the reading moved."""
        if self._read_ended is not None:
            return self._read_ended
        ended = self._read_ended = anyio.Event()
        fd, self._out_fd = self._out_fd, None
        if fd is None:
            ended.set()
            return ended
        threading.Thread(target=self._reader, args=(io.FileIO(fd, "rb"), ended, _poster()),
                         name="intake-process-frames", daemon=True).start()
        return ended

    def _reader(self, pipe: io.FileIO, ended: anyio.Event, post: Callable[..., object]) -> None:
        """The reader thread: each frame to ``_handle`` on the event loop, until the end of the pipe.
        Once the event loop is gone it reads on to the end, so the process is never stuck writing."""
        loop_gone = False
        frames = FrameReader(pipe)  # one buffer for every frame (frames.py says why)
        try:
            while True:
                try:
                    message = frames.read()
                except EOFError:
                    return
                except Exception:  # noqa: BLE001 - out of step (or the pipe failed): stop reading
                    log.debug("the intake process's output was not readable", exc_info=True)
                    return
                if loop_gone:
                    continue
                try:
                    post(self._handle_read, message)
                except RuntimeError:  # the event loop is closed (anyio.RunFinishedError is one too)
                    loop_gone = True
        finally:
            pipe.close()  # the process then gets a broken pipe if it writes on: it is being ended
            try:
                post(ended.set)
            except RuntimeError:
                pass

    def _handle_read(self, message: tuple[Any, ...]) -> None:
        self._handle(message, self._tg)  # no task group (run() is over): accepts are not answered

    # ------------------------------------------------------------------ running

    async def start(self) -> None:
        """Start the process and send it its settings; once. ``run`` calls it; the service calls it
        before it opens the spool, so that the two start-ups overlap (a station's first file is
        converted sooner after a start)."""
        if self._proc is not None:
            return
        cmd = [sys.executable, "-m", "stationflow.engine.service.intake_child"]
        # Its stdout is a pipe of our own, read by a thread (_read_frames); the process holds the
        # only write end, so its exit is the end of the pipe.
        read_fd, write_fd = os.pipe()
        try:
            widen_pipe(write_fd)  # an accept batch crosses in a few reads (frames.PIPE_BYTES)
            self._proc = proc = await anyio.open_process(cmd, stdin=subprocess.PIPE, stdout=write_fd,
                                                         stderr=None, env=child_env())  # this very stationflow
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._out_fd, self._read_ended = read_fd, None  # a new process: a new reader (run, aclose)
        self.pid = proc.pid
        self._status["process"] = "running"
        await self._send(("init", {
            "sections": self.config.intake, "station": self.config.station, "data_dir": str(self.data_dir),
            # the conversion machine the service has in force for this run (not re-read from disk)
            "machines": {"conversion": self.machines["conversion"]},
            "log_level": logging.getLogger().getEffectiveLevel(), "switch_interval_s": sys.getswitchinterval(),
        }))
        if self._pause is not None:
            await self._send(("pause", self._pause))
        if self._draining:
            await self._send(("drain",))

    async def run(self) -> None:
        """Start the intake process (if not yet) and serve it until cancelled; raise if it ends by itself."""
        try:
            await self.start()
            proc = self._proc
            assert proc is not None
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._read_frames().wait()
                # Its stdout closed: the process ended. Accepts under way still finish (the tasks).
                self._tg = None
            with anyio.move_on_after(_EXIT_WAIT_S):
                await proc.wait()
            self._status["process"] = f"exited ({proc.returncode})"
            self._drained.set()
            raise IntakeProcessExited(f"the intake process (pid {proc.pid}) exited with code {proc.returncode}",
                                      hint="its files are taken again by a new one; see the log for why")
        finally:
            self._tg = None
            await self.aclose()

    def _handle(self, message: tuple[Any, ...], tg: TaskGroup | None) -> None:
        kind = message[0]
        if kind == "accept" and tg is not None:
            tg.start_soon(self._accept, message[1], message[2], message[3])
        elif kind == "status":
            status = message[1]
            if self._pause is not None:  # a pause asked a moment ago shows at once
                status = {**status, "paused": True, "paused_reason": status.get("paused_reason") or self._pause}
            self._status = {**status, "process": "running"}
        elif kind == "logs":  # several records at once (intake_child.py says why), one write for all
            with one_write():
                for level, name, text in message[1]:
                    logger = logging.getLogger(name)
                    if logger.isEnabledFor(level):  # a record as the intake made it: no caller to look up here
                        logger.handle(logger.makeRecord(name, level, "(intake process)", 0, text, (), None))
        elif kind == "log":
            _, level, name, text = message
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "drained":
            self._drained.set()
        elif kind == "ready":
            log.debug("intake process %s is ready", self.pid)

    async def _accept(self, rid: int, items: list[tuple[bytes, str | None]], keys: list[str | None] | None) -> None:
        """One batch into the spool (durable when accept_many returns), then the answer. ``keys``: the
        ids the converter worker validated (the spool trusts only canonical ones, as in one process)."""
        spool = self.spool
        assert spool is not None, "run() serves the process once the service's spool is open"
        results = await anyio.to_thread.run_sync(  # not abandoned on cancel: the answer always follows
            lambda: spool.accept_many(items, validated_keys=keys))
        with anyio.CancelScope(shield=True):
            await self._send(("accepted", rid, results))

    def _post(self, message: tuple[Any, ...]) -> None:
        """Send from synchronous code on the event loop (pause, resume from a control command); before
        the process is up there is nothing to send to: ``run`` sends the pause with the init."""
        if self._tg is not None:
            self._tg.start_soon(self._send, message)

    async def _send(self, message: tuple[Any, ...]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        async with self._sendable:
            try:
                await proc.stdin.send(encode(message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the process is gone: run() sees its end and raises
