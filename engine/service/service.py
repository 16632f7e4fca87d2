"""The station service: one per data dir, supervised tasks, reloads, a two-phase stop.

``Service(config_path).run()`` takes the data dir's lock, opens the spool (which runs start-up
recovery), starts the supervised tasks and serves until SIGTERM/SIGINT, the control protocol's
stop, or :meth:`Service.request_stop`. Its state is the ``service`` lifecycle
(``machines/service.yaml``): stopped → starting → running ⇄ degraded → draining → stopped, or error.

Supervised tasks:

==============  =============================================================  ===================
task            does                                                           on stop
==============  =============================================================  ===================
uploader        upload workers, retry scheduler, server probe, and retention   drains
                (its scheduler prunes sent reports hourly: the one owner)
intake          watch folders → conversion → spool (only with ``intake:``);    drains
                or in a process of its own (``intake_process.py``)
config_watch    polls the config file (mtime, size, inode) → :meth:`reload`    cancelled
control         the control protocol server (when this build has one)          cancelled last
==============  =============================================================  ===================

Stopping: ``draining`` — intake and uploader stop taking new work, in-flight conversions and
uploads get ``shutdown.grace_s`` — then whatever still runs is cancelled (an upload cut off goes
back to ``pending/`` and is resumed at the next start), the spool is closed, and the log says what
finished and what is left, per state.

One instance per data dir: ``<data_dir>/stationflow.lock`` (an OS lock, released by the kernel
when the process dies, even by ``kill -9``) and ``<data_dir>/stationflow.pid`` naming the holder.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from filelock import FileLock, Timeout

from ... import __version__
from ..clock import now_iso
from ..layout import PID_FILE, DataDir
from ..config_file import config_dict, load_config, resolved
from ..errors import AlreadyRunning, ConfigError, ServiceNotRunning, StationflowError
from ..lifecycle import in_force, restart_note
from ..lifecycle.roles import ServiceRoles
from .logs import LogRing, ServiceLogging
from .reload import diff_settings, log_secrets, secret_of
from ..spool.store import Spool
from ..station import lock_file_held, open_spool
from .intake_process import IntakeProcess, separate_by_default, started_early
from .supervisor import MachineModel, RestartPolicy, SupervisedTask, Supervisor
from ..upload.uploader import PAUSED, Uploader
from ...schemas.config import StationConfig

if TYPE_CHECKING:
    from ..intake import Intake

log = logging.getLogger(__name__)

_LOCK_WAIT_S = 0.3  # rides over a health check that holds the lock for a moment; still "at once"
_RELOAD_STATES = ("running", "degraded")  # roles (Service.state), not the machine's state names



def read_pid(data_dir: Path) -> int | None:
    """The pid recorded by the service that holds (or last held) this data dir, if readable."""
    try:
        return int(DataDir.of(data_dir).pid_file.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def lock_is_held(data_dir: Path) -> bool:
    """True while a service holds the data dir's lock (probing takes the lock for an instant)."""
    return lock_file_held(DataDir.of(data_dir).lock_file)


class Service:
    """The whole service. Build it with the config file's path; ``await run()`` serves until stopped.

    ``task_overrides`` replace (or add) supervised tasks by name — tests inject crashing tasks
    with it. An overridden task has no drain hook: it is cancelled when the service stops.
    """

    def __init__(self, config_path: Path, *,
                 task_overrides: dict[str, Callable[[], Awaitable[None]]] | None = None,
                 restart_policy: RestartPolicy | None = None, watch_interval_s: float = 2.0,
                 log_level: str | None = None, log_stream: Any = None, intake_process: bool | None = None) -> None:
        self.config_path = Path(os.path.abspath(config_path))
        self.config: StationConfig = resolved(load_config(self.config_path), self.config_path)
        self.data_dir = Path(self.config.data_dir)
        self.spool: Spool | None = None
        self.uploader: Uploader | None = None
        self.intake: Intake | IntakeProcess | None = None
        self._intake_process = separate_by_default() if intake_process is None else intake_process
        self.supervisor: Supervisor | None = None
        self.log_ring = LogRing()
        self.reason: str | None = None
        self.since = now_iso()
        self.stop_reason: str | None = None
        self.last_reload: dict[str, Any] | None = None
        self._overrides = dict(task_overrides or {})
        self._policy = restart_policy
        self._watch_interval_s = watch_interval_s
        self._log_level = log_level
        self._log_stream = log_stream
        # Every machine in force, checked together (an unsafe site file refuses the start, exit 4);
        # kept for the whole run: a reload says what changed but never swaps them (restart_note).
        self.machines = in_force(self.config.lifecycles)
        self._lifecycle = self.machines["service"]
        self._roles = ServiceRoles.of(self._lifecycle.definition)
        self._model = MachineModel()
        self._lifecycle.bind(self._model)
        self._degraded: dict[str, str] = {}
        self._stop_event = anyio.Event()
        self._reload_lock = anyio.Lock()
        self._started_mono: float | None = None
        self._config_sig = self._file_signature()
        self._lock: FileLock | None = None
        self._logging: ServiceLogging | None = None
        self._token: Any = None
        self._loop_thread: int | None = None
        self._uploader_used = False
        self._intake_used = False
        self._ran = False

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> str:
        """The role of the machine's state (``running``, ``degraded`` …; lifecycle/roles.py): what
        this code compares and status shows, whatever a site's service.yaml calls its states."""
        return self._roles.role_of(self._model.state)

    def _fire(self, trigger: str, reason: str | None = None) -> None:
        before = self.state
        self._model.trigger(trigger)
        self.since = now_iso()
        self.reason = reason
        level = {"degraded": logging.WARNING, "error": logging.ERROR}.get(self.state, logging.INFO)
        log.log(level, "service %s -> %s%s", before, self.state, f": {reason}" if reason else "")

    def _degrade(self, key: str, reason: str) -> None:
        self._degraded[key] = reason
        text = "; ".join(self._degraded.values())
        if self.state == "running":
            self._fire("degrade", text)
        elif self.state == "degraded":
            self.reason = text

    def _undegrade(self, key: str) -> None:
        if self._degraded.pop(key, None) is None:
            return
        if self.state == "degraded":
            if self._degraded:
                self.reason = "; ".join(self._degraded.values())
            else:
                self._fire("recover", None)

    def _task_event(self, task: SupervisedTask, event: str) -> None:
        if event == "given_up":
            self._degrade(f"task:{task.name}", task.given_up_reason or f"task {task.name} was given up")
        elif event == "reset":
            self._undegrade(f"task:{task.name}")

    def _uploader_event(self, kind: str, data: dict[str, Any]) -> None:
        """Paused uploads need a person (token, URL): degraded. Offline is a passing condition: the
        service is fine and reports wait safely, so it stays running (``uploader.mode`` says offline)."""
        if kind != "uploader_mode":
            return
        if data.get("to") == PAUSED:
            self._degrade("uploader", f"uploads paused: {data.get('reason')}")
        else:
            self._undegrade("uploader")

    # ------------------------------------------------------------------ one instance per data dir

    def _take_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(DataDir.of(self.data_dir).lock_file), thread_local=False)
        try:
            lock.acquire(timeout=_LOCK_WAIT_S)
        except Timeout:
            pid = read_pid(self.data_dir)
            who = f"pid {pid}" if pid else "pid unknown"
            raise AlreadyRunning(
                f"another stationflow service ({who}) is already running on data dir {self.data_dir}",
                hint="stop it first (`stationflow stop`), or give this one its own data_dir") from None
        self._lock = lock
        self._write_pid()

    def _write_pid(self) -> None:
        """Record our pid for people and `stop`. Only informative (the lock is what counts), so a
        full disk must not keep the service from starting and uploading: warn, leave no temp file."""
        pid_path = DataDir.of(self.data_dir).pid_file
        tmp = self.data_dir / f".{PID_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
            os.replace(tmp, pid_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("the pid file %s was not written (%s); the service runs without it", pid_path,
                        exc.strerror or exc)

    def _release_lock(self) -> None:
        if self._lock is None:
            return
        if read_pid(self.data_dir) == os.getpid():
            try:
                DataDir.of(self.data_dir).pid_file.unlink()
            except OSError:
                pass
        self._lock.release()
        self._lock = None

    # ------------------------------------------------------------------ running

    async def run(self) -> int:
        """Serve until stopped; 0 after a clean stop. Start-up failures (another instance, a spool
        that cannot be opened) raise their StationflowError after the state went to ``error``."""
        if self._ran:
            raise RuntimeError("a Service runs once; build a new one to run again")
        self._ran = True
        self._take_lock()
        try:
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
            self._logging = ServiceLogging(self.data_dir, self.config.logging, self.log_ring,
                                           level_override=self._log_level, secrets=log_secrets(self.config),
                                           stream=self._log_stream)
            try:
                return await self._serve()
            finally:
                self._logging.close()
        finally:
            self._release_lock()

    async def _serve(self) -> int:
        self._started_mono = time.monotonic()
        self._fire("start", "recovering the spool")
        log.info("stationflow starting: pid %d, config %s, data dir %s", os.getpid(), self.config_path,
                 self.data_dir)
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                # Signals first: a SIGTERM during a long recovery still stops the service cleanly.
                tg.start_soon(self._signals, tg, name="signals")
                try:
                    await self._open()
                except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                    failure = exc
                    self._fire("fail", f"could not start: {exc}")
                    tg.cancel_scope.cancel()
                else:
                    assert self.supervisor is not None
                    await tg.start(self.supervisor.run, name="supervisor")
                    self._fire("started", None)
                    if self._degraded:
                        self._fire("degrade", "; ".join(self._degraded.values()))
                    log.info("service running: tasks %s", ", ".join(self.supervisor.tasks))
                    await self._stop_event.wait()
                    await self._shutdown()
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            if self.state not in ("stopped", "error"):
                self._fire("fail", f"{type(exc).__name__}: {exc}")
                log.exception("the service failed as a whole")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_spool()
            if self.supervisor is not None:
                self.supervisor.close()
        if failure is not None:
            raise failure
        return 0

    async def _open(self) -> None:
        """Open the spool (recovery), build the uploader, intake and supervisor."""
        early = self._new_intake(self.config) if "intake" not in self._overrides else None
        async with started_early(early):  # an intake process's start-up overlaps the spool's
            self.spool = await anyio.to_thread.run_sync(lambda: open_spool(self.config, machines=self.machines))
        for note in self.spool.recovery_notes:
            log.warning("recovery: %s", note)
        log.info("spool open: %s", _counts_text(self.spool.counts()) or "empty")
        self.uploader = self._new_uploader()
        self.supervisor = Supervisor(policy=self._policy, on_event=self._task_event, lifecycle=self.machines["task"])
        self.intake = early or self._new_intake(self.config)
        if isinstance(self.intake, IntakeProcess):
            self.intake.spool = self.spool
        self._add_tasks()

    def _add_tasks(self) -> None:
        sup = self.supervisor
        assert sup is not None
        overrides = self._overrides

        def add(name: str, body: Callable[[], Awaitable[None]], drain: Any = None) -> None:
            if name in overrides:
                sup.add(name, overrides[name])
            else:
                sup.add(name, body, drain=drain)

        add("uploader", self._run_uploader, self._drain_uploader)
        if self.intake is not None:
            add("intake", self._run_intake, self._drain_intake)
        add("config_watch", self._watch_config)
        add("control", self._serve_control)
        for name, body in overrides.items():
            if name not in sup.tasks:
                sup.add(name, body)

    # ------------------------------------------------------------------ the tasks

    def _new_uploader(self, previous: Uploader | None = None) -> Uploader:
        assert self.spool is not None
        uploader = Uploader(self.spool, self.config.server, self.config.upload, on_event=self._uploader_event)
        if previous is not None:  # counters and latencies survive a restart of the task
            uploader.counters.update(previous.counters)
            uploader.latencies = previous.latencies
            self._undegrade("uploader")  # a fresh uploader starts online; a pause is re-found if real
        return uploader

    async def _run_uploader(self) -> None:
        if self._uploader_used:  # run() closed its client when it ended: a restart gets a fresh one
            assert self.uploader is not None
            self.uploader = self._new_uploader(self.uploader)
        self._uploader_used = True
        assert self.uploader is not None
        await self.uploader.run()

    def _drain_uploader(self) -> None:
        if self.uploader is not None:
            self.uploader.drain()

    def _new_intake(self, config: StationConfig) -> Intake | IntakeProcess | None:
        if not config.intake:
            return None
        if self._intake_process:  # in a process of its own (intake_process.py says why, and how it is safe)
            return IntakeProcess(config, self.spool, self.data_dir, self.machines)
        if self.spool is None:
            return None  # an intake in this process is built once the spool is open
        from ..intake import Intake

        return Intake(config.intake, self.spool, self.data_dir, config.station)

    async def _run_intake(self) -> None:
        if self._intake_used:  # a restart after a crash gets a fresh intake (and worker pool)
            self.intake = self._new_intake(self.config)
        self._intake_used = True
        intake = self.intake
        assert intake is not None
        try:
            await intake.run()
        finally:
            # The converter worker pool goes with the run; bounded, so a stuck worker cannot hang a stop.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await intake.aclose()

    async def _drain_intake(self) -> None:
        """Intake's ``run()`` polls until cancelled; its ``drain()`` returns once no file is in flight.
        So: drain, then cancel the polling loop (nothing is left for it to do)."""
        if self.intake is not None:
            await self.intake.drain()
        if self.supervisor is not None and "intake" in self.supervisor.tasks:
            self.supervisor.cancel("intake")

    async def _serve_control(self) -> None:
        from ..control.commands import build_handlers
        from ..control.server import ControlServer

        server = ControlServer(self.data_dir, build_handlers(self), port=self.config.control.port)
        await server.serve()

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.config_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def _watch_config(self) -> None:
        """Reload when the file changes. A vanished file (an editor mid-save) keeps the settings."""
        said_missing = False
        while True:
            await anyio.sleep(self._watch_interval_s)
            sig = await anyio.to_thread.run_sync(self._file_signature)
            if sig is None:
                if not said_missing:
                    log.warning("config file %s is missing; the current settings stay in force", self.config_path)
                    said_missing = True
                continue
            said_missing = False
            if sig == self._config_sig or self.state not in _RELOAD_STATES:
                continue
            try:
                await self.reload("file", if_changed=True)
            except ConfigError:
                pass  # logged at ERROR with every problem and recorded in status by reload()

    # ------------------------------------------------------------------ signals and stop

    async def _signals(self, tg: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            # Embedded in a thread (a Windows service wrapper, a test harness): signals belong to
            # the main thread; stopping goes through request_stop() or the control protocol.
            log.debug("not in the main thread: no signal handlers; stop with request_stop()")
            await anyio.sleep_forever()
        if sys.platform == "win32":
            await self._windows_console_signals()
            return
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    tg.start_soon(self._reload_logged, name)
                else:
                    self.request_stop(name)

    async def _windows_console_signals(self) -> None:
        """Windows has no anyio signal receivers: Ctrl+C and Ctrl+Break call a plain handler that
        hands the stop to the event loop (a service manager uses ``stationflow stop`` instead)."""
        import asyncio

        loop = asyncio.get_running_loop()

        def handler(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(self.request_stop, signal.Signals(signum).name)

        wanted = [signal.SIGINT] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])
        previous = {sig: signal.signal(sig, handler) for sig in wanted}
        try:
            await anyio.sleep_forever()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    async def _reload_logged(self, source: str) -> None:
        try:
            await self.reload(source)
        except ConfigError:
            pass  # reload() logged every problem at ERROR and recorded them in status
        except StationflowError as exc:
            log.warning("reload (%s) ignored: %s", source, exc)

    def request_stop(self, reason: str) -> None:
        """Begin the two-phase stop. Safe from the event loop and from other threads. A second
        request while draining skips what is left of the grace period."""
        if self._token is not None and self._loop_thread is not None \
                and threading.get_ident() != self._loop_thread:
            anyio.from_thread.run_sync(self._request_stop, reason, token=self._token)
        else:
            self._request_stop(reason)

    def _request_stop(self, reason: str) -> None:
        if self._stop_event.is_set():
            if self.supervisor is not None and self.state == "draining":
                log.warning("second stop request (%s): cancelling in-flight work now", reason)
                self.supervisor.hurry()
            return
        self.stop_reason = reason
        log.info("stop requested (%s)", reason)
        self._stop_event.set()

    async def _shutdown(self) -> None:
        """Phase one: no new work, in-flight work finishes within the grace; phase two: cancel."""
        assert self.supervisor is not None and self.spool is not None
        grace = self.config.shutdown.grace_s
        uploader = self.uploader
        in_flight = uploader.in_flight if uploader else 0
        sent_before = uploader.counters["sent"] if uploader else 0
        self._fire("drain", f"stopping ({self.stop_reason}); taking no new work")
        log.info("stopping: %d upload(s) in flight get up to %g s to finish", in_flight, grace)
        outcome = await self.supervisor.stop(grace)
        uploader = self.uploader
        sent = (uploader.counters["sent"] - sent_before) if uploader else 0
        if outcome.cut:
            log.warning("grace period of %g s ran out: cancelled %s; whatever they had in flight is back "
                        "in the spool and is resumed at the next start", grace, ", ".join(outcome.cut))
        await self._close_spool()
        left = _counts_text({s: n for s, n in self.spool.counts().items()
                             if not self.spool.lifecycle.is_final(s)})
        log.info("stopped in %.2f s: %d upload(s) finished during the stop (%d were in flight); "
                 "left in the spool: %s", outcome.elapsed_s, sent, in_flight,
                 (left + " (resumed at the next start)") if left else "nothing")
        self._fire("drained", f"stopped ({self.stop_reason})")

    async def _close_spool(self) -> None:
        if self.spool is not None:
            await anyio.to_thread.run_sync(self.spool.close)

    # ------------------------------------------------------------------ reload

    async def reload(self, source: str = "signal", *, if_changed: bool = False) -> list[str]:
        """Re-read the config file. The new file is validated first: an invalid one raises
        ConfigError (every problem listed, logged at ERROR, kept in status) and nothing changes.
        Returns one note per change applied (or deferred to the next start). ``if_changed`` (the
        file watcher): nothing to do if another reload already read this version of the file while
        this one waited for the lock."""
        async with self._reload_lock:
            if self.state not in _RELOAD_STATES:
                raise ServiceNotRunning(f"cannot reload: the service is {self.state}",
                                        hint="start it with `stationflow run`")
            sig = await anyio.to_thread.run_sync(self._file_signature)
            if if_changed:
                if sig == self._config_sig:
                    return []
                log.info("config file %s changed; reloading", self.config_path)
            try:
                new = await anyio.to_thread.run_sync(lambda: resolved(load_config(self.config_path),
                                                                      self.config_path))
            except ConfigError as exc:
                self._config_sig = sig  # the watcher does not retry the same broken file
                self.last_reload = {"at": now_iso(), "source": source, "ok": False, "error": str(exc),
                                    "problems": list(exc.problems)}
                log.error("config reload (%s) refused, the old settings stay in force: %s", source, exc)
                for problem in exc.problems:
                    log.error("  %s", problem)
                raise
            self._config_sig = sig
            notes = await self._apply(new)
            self.last_reload = {"at": now_iso(), "source": source, "ok": True, "changes": notes}
            log.info("config reloaded (%s): %s", source, "; ".join(notes) if notes else "no changes")
            return notes

    async def _apply(self, new: StationConfig) -> list[str]:
        old = self.config
        notes = list(diff_settings(config_dict(old), config_dict(new)))
        note = await anyio.to_thread.run_sync(restart_note, self.machines, new.lifecycles)  # before any change
        lifecycle_notes = [note] if note else []
        for note in lifecycle_notes:
            log.warning("%s", note)
        if secret_of(old.server.token) != secret_of(new.server.token):
            notes.append("server.token: changed")
        if self._logging is not None:
            for secret in log_secrets(new):
                self._logging.secrets.add(secret)
        keep: dict[str, Any] = {}
        if new.data_dir != old.data_dir:
            keep["data_dir"] = old.data_dir
            notes.append(f"data_dir: takes effect at the next start; this service keeps {old.data_dir}")
        if new.control.port != old.control.port:
            keep["control"] = old.control
            notes.append("control.port: takes effect at the next start")
        if new.lifecycles != old.lifecycles:
            keep["lifecycles"] = old.lifecycles  # the machines in force stay until a restart (below)
        self.config = new.model_copy(update=keep)
        grace = new.shutdown.grace_s

        if self._logging is not None:
            notes.extend(self._logging.apply(new.logging))
        if self.spool is not None and new.spool != old.spool:
            self.spool.max_reports = new.spool.max_reports
            self.spool.max_bytes = int(new.spool.max_bytes)
            self.spool.min_free_bytes = int(new.spool.min_free_disk)
            self.spool.keep_sent_s = new.spool.keep_sent_days * 86400.0
        if self.spool is not None:
            self.spool.max_wait_s = new.upload.retry.max_s  # a waiting report never waits past the cap
        assert self.supervisor is not None, "reload runs while the service runs"
        if self.uploader is not None and (new.server != old.server or new.upload != old.upload):
            if new.upload.concurrency != old.upload.concurrency and "uploader" in self.supervisor.tasks \
                    and "uploader" not in self._overrides:
                # The number of workers is fixed per run: drain and restart with the new settings.
                def swap() -> None:
                    self.uploader = self._new_uploader(self.uploader)
                    self._uploader_used = False
                await self.supervisor.recycle("uploader", timeout_s=grace, swap=swap)
            else:
                self.uploader.update_server(new.server, new.upload)
        if new.intake != old.intake or (new.intake and new.station != old.station):
            await self._apply_intake(new, grace)
        restarted = self.supervisor.reset_given_up() if self.supervisor else []
        if restarted:
            notes.append(f"given-up task(s) started again: {', '.join(restarted)}")
        return notes + lifecycle_notes

    async def _apply_intake(self, new: StationConfig, grace: float) -> None:
        sup = self.supervisor
        assert sup is not None
        if "intake" in self._overrides:
            return
        self._undegrade("intake")
        if not new.intake:
            if "intake" in sup.tasks:
                await sup.retire("intake", timeout_s=grace)
            self.intake = None
            return
        fresh = self._new_intake(new)
        if fresh is None:
            return
        if "intake" not in sup.tasks:
            self.intake = fresh
            self._intake_used = False
            sup.add("intake", self._run_intake, drain=self._drain_intake)
            return

        def swap() -> None:
            self.intake = fresh
            self._intake_used = False
        await sup.recycle("intake", timeout_s=grace, swap=swap)

    # ------------------------------------------------------------------ status

    def _file_notes(self) -> list[str]:
        """Files another program held (Windows: antivirus, a log viewer): retried, but worth a look."""
        from datetime import datetime, timezone

        from .. import durable

        held = durable.last_held()
        recent = held is not None and (datetime.now(timezone.utc) - held.at).total_seconds() < 3600
        notes = [str(held)] if recent else []
        if self._logging is not None and self._logging.problem:
            notes.append(self._logging.problem)
        return notes

    def status(self) -> dict[str, Any]:
        """Everything ``status --json`` shows; plain JSON types only."""
        uploader = self.uploader
        intake_status = _safe_status(self.intake)
        counters = uploader.counters if uploader else {}
        return {
            "service": {
                "state": self.state, "machine_state": self._model.state, "reason": self.reason,
                "since": self.since, "pid": os.getpid(),
                "version": __version__,
                "uptime_s": round(time.monotonic() - self._started_mono, 3) if self._started_mono else None,
                "data_dir": str(self.data_dir), "config": str(self.config_path),
                "stop_reason": self.stop_reason, "last_reload": self.last_reload,
                "degraded_because": dict(self._degraded),
                "file_notes": self._file_notes(),
            },
            "tasks": self.supervisor.status() if self.supervisor else {},
            "reports": self.spool.counts() if self.spool else {},
            "report_roles": self.spool.roles.summary() if self.spool else None,
            "uploader": uploader.status() if uploader else None,
            "intake": intake_status,
            "metrics": {
                "converted": _metric(intake_status, "converted"),
                "sent": counters.get("sent", 0),
                "retried": counters.get("retried", 0),
                "failed": counters.get("failed", 0),
                "upload_latency": uploader.latencies.percentiles() if uploader else
                {"p50_ms": None, "p95_ms": None, "p99_ms": None},
            },
        }


# ---------------------------------------------------------------------- helpers

def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n)


def _safe_status(part: Any) -> dict[str, Any] | None:
    if part is None:
        return None
    try:
        status: dict[str, Any] = part.status()
        return status
    except Exception as exc:  # noqa: BLE001 - status must answer even when a part is broken; say so
        log.exception("status of %s failed", type(part).__name__)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _metric(status: dict[str, Any] | None, name: str) -> int:
    """A counter from a part's status: top level, ``counters`` or ``metrics``; for ``converted``,
    else the sum of the reports each intake accepted into the spool."""
    if not status:
        return 0
    for place in (status, status.get("counters") or {}, status.get("metrics") or {}):
        value = place.get(name) if isinstance(place, dict) else None
        if isinstance(value, int):
            return value
    if name == "converted" and isinstance(status.get("intakes"), dict):
        return sum(int(i.get("reports_accepted") or 0) for i in status["intakes"].values() if isinstance(i, dict))
    return 0
