"""Everything the window asks of the station, as blocking calls for worker threads.

The questions themselves (status, reports, log, retry — live through the control protocol when
the service runs, else from the disk) are answered by the engine's station access
(``engine/station_access.py``), the same code ``stationflow status`` and ``queue`` use. This
module adds what only the window needs: starting and stopping the service as a child process.
Nothing here touches a widget: results go back to the Tk thread through the worker's queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.children import child_env
from ..engine.control.client import ControlClient
from ..engine.errors import StationflowError
from ..engine.station_access import ReportRoles, StationAccess, problem_states, rejected_files
from ..schemas.config import StationConfig

CLIENT_NAME = "stationflow-configure"
CONSOLE_LOG = Path("logs") / "service-console.log"


@dataclass
class Probe:
    """What the last look at the service found. ``running`` None: something answers, but not properly."""

    running: bool | None
    status: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    locked: bool = False  # the spool's lock is held (a service is there, answering or not)

    @property
    def state(self) -> str:
        if self.running:
            return str((self.status.get("service") or {}).get("state") or "running")
        if self.running is None:
            return "not answering"
        state = (self.status.get("service") or {}).get("state")
        return "ended unexpectedly" if state == "ended unexpectedly" else "not running"

    @property
    def config_path(self) -> str | None:
        value = (self.status.get("service") or {}).get("config") if self.running else None
        return str(value) if value else None

    @property
    def health(self) -> dict[str, Any]:
        """``{"state": ok|warning|error, "summary", "reasons"}`` (engine/health.py)."""
        health = self.status.get("health")
        if isinstance(health, dict):
            return health
        return {"state": "error", "summary": self.reason or "the station's state is not known", "reasons": []}


@dataclass
class Snapshot:
    """The Problems page's view: counts per state, the reports and source files waiting for a person."""

    counts: dict[str, int]
    problems: list[dict[str, Any]]
    source: str  # "service" or "disk"
    total: int = 0  # reports waiting for a person in all (``problems`` holds at most the limit)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: from the report machine in force: the operator triggers (``by: operator``) of each state
    #: shown, where refused reports rest and where quarantined ones do
    operator: dict[str, list[str]] = field(default_factory=dict)
    refused: str = ""
    quarantine: str = ""


class StationLink:
    """The service of one data folder, and the disk behind it when the service is down."""

    def __init__(self, data_dir: Path, config_path: Path, cfg: StationConfig | None) -> None:
        self.data_dir = Path(data_dir)
        self.config_path = Path(config_path)
        self.cfg = cfg
        self.client = ControlClient(self.data_dir, timeout=5.0, client_name=CLIENT_NAME)
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def access(self, what: str) -> StationAccess:
        """The station access of the saved config (the data folder it names)."""
        return StationAccess(self._need_cfg(what), timeout=5.0, client_name=CLIENT_NAME)

    # ------------------------------------------------------------------ reading

    def probe(self) -> Probe:
        self._reap()
        if self.cfg is None:  # the saved file is not valid: only the control port can say anything
            try:
                status = self.client.call("status")
            except StationflowError as exc:
                return Probe(False, reason=str(exc))
            return Probe(True, status=status if isinstance(status, dict) else {}, locked=True)
        answer = self.access("look at the service").status()
        status = answer.data
        if answer.live:
            return Probe(True, status=status, locked=True)
        service = status.get("service") or {}
        not_answering = service.get("state") == "not answering" and "service not running" not in answer.note
        return Probe(None if not_answering else False, status=status, reason=answer.note,
                     locked=bool(service.get("spool_locked")))

    def snapshot(self, running: bool, limit: int = 200) -> Snapshot:
        """Reports waiting for a person (at most ``limit``), the files that could not be converted,
        and what a person may do with each report (the operator triggers of the machine in force)."""
        access = self.access("read the spool")
        lifecycle = access.report_lifecycle
        roles = ReportRoles.of(lifecycle)
        page = access.problems(limit=limit)
        operator = {state: lifecycle.operator_triggers_from(state) for state in problem_states(lifecycle)}
        return Snapshot(dict(page.counts), page.rows, page.source, page.total, rejected_files(access.cfg, limit),
                        operator=operator, refused=roles.refused, quarantine=roles.quarantine)

    def show(self, report_id: str) -> dict[str, Any]:
        return dict(self.access("read the report").show(report_id).data)

    def log_tail(self, running: bool, n: int = 200) -> tuple[list[str], str]:
        if self.cfg is None:
            return [], "disk"
        answer = self.access("read the log").log_tail(n)
        lines = list(answer.data)
        console = self.data_dir / CONSOLE_LOG
        if not answer.live and not lines and console.exists():
            lines = _last_lines(console, n)
        return lines, answer.source

    # ------------------------------------------------------------------ acting

    def retry(self, ids: list[str] | None, *, all_failed: bool = False) -> dict[str, Any]:
        """Send reports again: through the service when it runs, else on the spool directly."""
        answer = self.access("retry reports").retry(ids, all_failed=all_failed)
        rows = [r for r in answer.data if isinstance(r, dict)]
        return {"via": answer.source, "retried": [str(r.get("id")) for r in rows if r.get("ok")],
                "errors": [f"{r.get('id')}: {r.get('error')}" for r in rows if not r.get("ok")]}

    def fire(self, trigger: str, ids: list[str]) -> dict[str, Any]:
        """Fire an operator trigger on reports (through the service when it runs, else on the spool)."""
        answer = self.access(f"{trigger} reports").fire(trigger, ids)
        rows = [r for r in answer.data.get("results") or [] if isinstance(r, dict)]
        return {"via": answer.source, "trigger": trigger,
                "moved": [(str(r.get("id")), str(r.get("state"))) for r in rows if r.get("ok")],
                "refused": [(str(r.get("id")), str(r.get("error"))) for r in rows if not r.get("ok")]}

    def reprocess(self, intake: str, path: str) -> str:
        """Take a rejected file again (its intake converts it now, or at the service's next start)."""
        return str(self.access("reprocess files").reprocess(intake, Path(path)))

    def apply_config(self, data: dict[str, Any]) -> Any:
        """Validate, save and reload through the running service (``config.apply``)."""
        return self.client.call("config.apply", data=data)

    def command(self, name: str, **args: Any) -> Any:
        return self.client.call(name, **args)

    def start_service(self, stop: threading.Event, *, wait_s: float = 30.0) -> dict[str, Any]:
        """Start ``stationflow run`` detached and wait until it answers (or says why it could not)."""
        console = self.data_dir / CONSOLE_LOG
        console.parent.mkdir(parents=True, exist_ok=True)
        offset = console.stat().st_size if console.exists() else 0
        command = [sys.executable, "-m", "stationflow", "-c", str(self.config_path), "run"]
        options: dict[str, Any] = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
        else:
            options["start_new_session"] = True
        with open(console, "ab") as out:
            out.write(f"--- started by the configurator at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            out.flush()
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=str(self.config_path.parent), env=child_env(), **options)
        with self._lock:
            self._children.append(proc)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not stop.is_set():
            code = proc.poll()
            if code is not None:
                said = _last_lines(console, 8, offset=offset)
                raise StationflowError(f"the service stopped at once (exit code {code})",
                                       hint="see the details below and the Service page's log",
                                       detail="\n".join(said) or None)
            if self.client.is_running():
                return {"pid": proc.pid}
            time.sleep(0.1)
        if stop.is_set():
            return {"pid": proc.pid}
        raise StationflowError(f"the service (pid {proc.pid}) did not answer within {wait_s:.0f} s",
                               hint=f"it may still be starting; see {console}")

    def stop_service(self, stop: threading.Event, *, wait_s: float = 90.0) -> dict[str, Any]:
        """Ask the service to stop and wait until its control port is gone."""
        result = self.client.call("stop")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not stop.is_set():
            if not self.client.is_running():
                self._reap()
                return result if isinstance(result, dict) else {}
            time.sleep(0.1)
        if stop.is_set():
            return {}
        raise StationflowError(f"the service is still stopping after {wait_s:.0f} s",
                               hint="in-flight uploads finish within shutdown.grace_s; see the log")

    # ------------------------------------------------------------------ inside

    def _need_cfg(self, what: str) -> StationConfig:
        if self.cfg is None:
            raise StationflowError(f"cannot {what}: the saved config is not valid",
                                   hint="fix the marked fields and save")
        return self.cfg

    def _reap(self) -> None:
        """Collect exit codes of services we started that ended (no zombies)."""
        with self._lock:
            self._children = [p for p in self._children if p.poll() is None]

    @property
    def children(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return list(self._children)


def _last_lines(path: Path, n: int, *, offset: int = 0) -> list[str]:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return list(deque(text.splitlines(), maxlen=n))


