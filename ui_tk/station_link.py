"""Everything the window asks of the station, as blocking calls for worker threads.

With the service running the answers come from it, through the control client; when it is not
running (``ServiceNotRunning``) they come from the disk through ``engine/offline_view.py``, so
the window keeps working offline. Nothing here touches a widget: results go back to the Tk thread
through the worker's queue.
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

from ..engine import offline_view
from ..engine.children import child_env
from ..engine.control.client import ControlClient
from ..engine.errors import ServiceNotRunning, StationflowError
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
        return "not running" if self.running is False else "not answering"

    @property
    def config_path(self) -> str | None:
        value = (self.status.get("service") or {}).get("config")
        return str(value) if value else None


@dataclass
class Snapshot:
    """The Queue page's view: counts per state and the reports waiting for a person."""

    counts: dict[str, int]
    problems: list[dict[str, Any]]
    source: str  # "service" or "disk"


class StationLink:
    """The service of one data folder, and the disk behind it when the service is down."""

    def __init__(self, data_dir: Path, config_path: Path, cfg: StationConfig | None) -> None:
        self.data_dir = Path(data_dir)
        self.config_path = Path(config_path)
        self.cfg = cfg
        self.client = ControlClient(self.data_dir, timeout=5.0, client_name=CLIENT_NAME)
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading

    def probe(self) -> Probe:
        self._reap()
        try:
            status = self.client.call("status")
        except ServiceNotRunning as exc:
            locked = bool(self.cfg and offline_view.spool_locked(self.cfg))
            return Probe(False, reason=exc.message, locked=locked)
        except StationflowError as exc:
            return Probe(None, reason=str(exc), locked=True)
        return Probe(True, status=status if isinstance(status, dict) else {}, locked=True)

    def snapshot(self, running: bool, limit: int = 200) -> Snapshot:
        if running:
            try:
                status = self.client.call("status")
                problems: list[dict[str, Any]] = []
                for state in offline_view.PROBLEM_STATES:
                    problems.extend(_rows(self.client.call("queue.list", state=state, limit=limit)))
                return Snapshot(dict((status or {}).get("reports") or {}), problems[:limit], "service")
            except ServiceNotRunning:
                pass
        cfg = self._need_cfg("read the spool")
        return Snapshot(offline_view.spool_counts(cfg), offline_view.problem_reports(cfg, limit=limit), "disk")

    def log_tail(self, running: bool, n: int = 200) -> tuple[list[str], str]:
        if running:
            try:
                return _lines(self.client.call("log.tail", n=n)), "service"
            except ServiceNotRunning:
                pass
        if self.cfg is None:
            return [], "disk"
        lines = offline_view.log_tail(self.cfg, n)
        console = self.data_dir / CONSOLE_LOG
        if not lines and console.exists():
            lines = _last_lines(console, n)
        return lines, "disk"

    # ------------------------------------------------------------------ acting

    def retry(self, ids: list[str] | None, *, all_failed: bool = False) -> dict[str, Any]:
        """Send reports again: through the service when it runs, else on the spool directly."""
        try:
            if all_failed:
                result = self.client.call("queue.retry_failed")
            else:
                result = self.client.call("queue.retry", ids=list(ids or []))
            return {"via": "service", **_retried(result)}
        except ServiceNotRunning:
            cfg = self._need_cfg("retry reports")
            return {"via": "disk", **offline_view.retry_reports(cfg, ids, all_failed=all_failed)}

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


def _rows(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        for key in ("reports", "items", "rows"):
            if isinstance(result.get(key), list):
                result = result[key]
                break
    return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


def _lines(result: Any) -> list[str]:
    if isinstance(result, dict):
        result = result.get("lines", [])
    return [str(line) for line in result] if isinstance(result, list) else []


def _retried(result: Any) -> dict[str, Any]:
    """The service's answer as {"retried": [ids], "errors": ["id: why"]}."""
    if isinstance(result, dict) and isinstance(result.get("results"), list):
        rows = [r for r in result["results"] if isinstance(r, dict)]
        return {"retried": [str(r.get("id")) for r in rows if r.get("ok")],
                "errors": [f"{r.get('id')}: {r.get('error')}" for r in rows if not r.get("ok")]}
    if isinstance(result, dict):
        retried = result.get("retried", [])
        errors = result.get("errors", [])
        if isinstance(retried, int):
            retried = [""] * retried
        return {"retried": list(retried) if isinstance(retried, list) else [],
                "errors": [str(e) for e in errors] if isinstance(errors, list) else []}
    if isinstance(result, list):
        return {"retried": result, "errors": []}
    return {"retried": [], "errors": []}


def _last_lines(path: Path, n: int, *, offset: int = 0) -> list[str]:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return list(deque(text.splitlines(), maxlen=n))


