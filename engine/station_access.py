"""The station as a person asks about it: live through the control protocol, else from the disk.

``stationflow status``/``queue`` and the configurator ask the same questions — the status, the
reports of a state, one report, the log, "send these again" — and must get the same answers
whether the service runs or not. :class:`StationAccess` answers each one once: it asks the
running service (which owns the spool) and, only when the service cannot be reached, reads the
disk itself (the spool opened read-only: no lock, nothing moved; a retry takes the spool's lock
like the service would). Every answer says where it came from (``source``: ``service`` or
``disk``, with ``note`` saying why), and carries the station's ``health`` (engine/health.py).

A refusal from the service (no such report, a bad argument) is raised as it is: only "cannot
reach it" falls back to the disk. All calls block (sockets, directories): the configurator runs
them in worker threads.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .control.client import ControlClient, ControlError
from .errors import ServiceNotRunning, StationflowError
from .health import health_of
from .intake.model import ERROR_SUFFIX
from .layout import DataDir
from .lifecycle import Lifecycle
from .lifecycle.site import in_force_checked_once
from .spool.roles import ReportRoles
from .station import lock_file_held, open_spool
from ..schemas.config import StationConfig

#: Control errors that mean "cannot reach the service" (fall back to the disk), not "it said no".
TRANSPORT_CODES = frozenset({"timeout", "connection", "busy", "protocol", "too_large", "protocol_version",
                             "unauthorized"})
_PAGE = 5000


@dataclass
class Answer:
    """One answer: ``data``, and where it came from (``service`` or ``disk``, ``note`` saying why)."""

    data: Any
    source: str
    note: str = ""

    @property
    def live(self) -> bool:
        return self.source == "service"


@dataclass
class ReportPage:
    """Reports of some states: ``rows`` (at most the limit asked for) of ``total``."""

    rows: list[dict[str, Any]]
    total: int
    source: str
    note: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class StationAccess:
    """One station's status, reports and log, from its service or its disk."""

    def __init__(self, cfg: StationConfig, *, timeout: float = 5.0, client_name: str | None = None) -> None:
        self.cfg = cfg
        self.data = DataDir.of(cfg.data_dir)
        options: dict[str, Any] = {"timeout": timeout}
        if client_name:
            options["client_name"] = client_name
        self.client = ControlClient(cfg.data_dir, **options)

    @property
    def report_lifecycle(self) -> Lifecycle:
        """The report machine in force at this station (the site's file, else the shipped one)."""
        return in_force_checked_once(self.cfg.lifecycles)["report"]

    def problem_states(self) -> tuple[str, ...]:
        """The states whose reports wait for a person, from the report machine in force."""
        return problem_states(self.report_lifecycle)

    # ------------------------------------------------------------------ asking the service

    def ask(self, command: str, /, **args: Any) -> tuple[Any, str | None]:
        """``(answer, None)`` from the running service, or ``(None, why)`` when it cannot be reached."""
        try:
            return self.client.call(command, **args), None
        except ServiceNotRunning:
            return None, "service not running"
        except ControlError as exc:
            if exc.code in TRANSPORT_CODES:
                return None, f"the service does not answer on its control port ({exc.message})"
            raise

    # ------------------------------------------------------------------ reading

    def status(self) -> Answer:
        """The status dict with ``health``; from the disk it has the same keys where the disk knows them."""
        live, why = self.ask("status")
        if isinstance(live, dict):
            if "health" not in live:  # an older service: judge its status here
                live = {**live, "health": health_of(live)}
            return Answer(live, "service")
        return Answer(disk_status(self.cfg, why or ""), "disk", _from_disk(why))

    def reports(self, state: str | None = None, *, offset: int = 0, limit: int | None = None) -> ReportPage:
        """Reports in ``state`` (every state when None), oldest first within a state."""
        rows: list[dict[str, Any]] = []
        want = limit if limit is not None else 10**9
        first = True
        at = offset
        while True:
            page, why = self.ask("queue.list", state=state, offset=at, limit=min(_PAGE, want - len(rows)))
            if page is None:
                if first:
                    return _disk_reports(self.cfg, (state,) if state else None, offset, limit, _from_disk(why))
                raise ServiceNotRunning(f"the service stopped answering while listing reports: {why}",
                                        hint="ask again")
            first = False
            rows += page["reports"]
            at += len(page["reports"])
            if not page["reports"] or at >= page["total"] or len(rows) >= want:
                return ReportPage(rows, int(page["total"]), "service")

    def problems(self, limit: int = 200) -> ReportPage:
        """Reports waiting for a person (at most ``limit``: refused, quarantined, held for approval —
        whatever the machine in force makes wait), with how many there are in all."""
        states = self.problem_states()
        live, why = self.ask("status")
        if not isinstance(live, dict):
            return self._disk_problems(states, limit, why)
        counts = {k: int(v) for k, v in (live.get("reports") or {}).items()}
        rows: list[dict[str, Any]] = []
        total = 0
        for state in states:
            if not counts.get(state):
                continue
            page, why = self.ask("queue.list", state=state, limit=max(1, min(_PAGE, limit - len(rows))))
            if page is None:  # it stopped answering meanwhile (asking again could loop): the disk answers
                return self._disk_problems(states, limit, why)
            total += int(page["total"])
            rows += page["reports"][:max(0, limit - len(rows))]
        return ReportPage([with_identity(r) for r in rows], total, "service", counts=counts)

    def _disk_problems(self, states: tuple[str, ...], limit: int, why: str | None) -> ReportPage:
        page = _disk_reports(self.cfg, states, 0, limit, _from_disk(why))
        page.rows = [with_identity(r) for r in page.rows]
        return page

    def show(self, report_id: str) -> Answer:
        """One report with its history."""
        data, why = self.ask("queue.show", id=report_id)
        if data is not None:
            return Answer(data, "service")
        info = open_spool(self.cfg, readonly=True).info(report_id)
        return Answer({**info.as_dict(), "history": info.history}, "disk", _from_disk(why))

    def log_tail(self, n: int = 200) -> Answer:
        """The service's last ``n`` log lines (its memory when it runs, else the log file)."""
        data, why = self.ask("log.tail", n=n)
        if isinstance(data, dict):
            return Answer([str(line) for line in data.get("lines") or []], "service")
        return Answer(read_log_tail(self.data.log_file, n), "disk", _from_disk(why))

    # ------------------------------------------------------------------ acting

    def retry(self, ids: list[str] | None = None, *, all_failed: bool = False) -> Answer:
        """Send reports again; ``data`` is ``[{"id", "ok", "state" | "error"}]`` — one entry per report."""
        results: list[dict[str, Any]] = []
        try:
            if ids:
                results += self.client.call("queue.retry", ids=list(ids))["results"]
            if all_failed:
                results += self.client.call("queue.retry_failed")["results"]
            return Answer(results, "service")
        except ServiceNotRunning:
            why = "service not running"
        return Answer(_retry_on_disk(self.cfg, list(ids or []), all_failed), "disk", _from_disk(why))

    def fire(self, trigger: str, ids: list[str]) -> Answer:
        """Fire an operator trigger (``by: operator``, e.g. ``approve``) on reports — the same path
        as ``stationflow queue fire``; ``data`` is ``{"fired", "refused", "results": [{"id", "ok",
        "state" | "error"}]}``: each report on its own, a refusal says why."""
        from .control.commands import fire_operator_trigger

        try:
            return Answer(self.client.call("queue.fire", trigger=trigger, ids=list(ids)), "service")
        except ServiceNotRunning:
            why = "service not running"
        with open_spool(self.cfg) as spool:
            return Answer(fire_operator_trigger(spool, trigger, list(ids)), "disk", _from_disk(why))

    def reprocess(self, intake: str, path: Path) -> Path:
        """Take a rejected source file again: staged where its intake picks it up (now, or at the next start)."""
        from .intake.reprocess import Staged, stage

        path = Path(path)
        folder = self.data.rejected(intake)
        if path.parent != folder or not path.is_file():
            raise StationflowError(f"{path} is not a rejected file of intake {intake}",
                                   hint="refresh the list; it may have been reprocessed already")
        item = Staged(intake, "rejected", path)
        stage(self.cfg, [item])
        assert item.staged is not None
        return item.staged


# ---------------------------------------------------------------------- the disk

def disk_status(cfg: StationConfig, why: str = "") -> dict[str, Any]:
    """A status dict read from the disk: service state from its lock and pid file, counts from the
    spool, each intake's watch folder checked, rejected files counted; ``health`` judged from it."""
    data = DataDir.of(cfg.data_dir)
    held = lock_file_held(data.lock_file)
    spool_held = held or lock_file_held(data.spool_lock)
    pid = _read_pid(data.pid_file)
    if held:
        state = "not answering"
    elif pid is not None and not _alive(pid):
        state = "ended unexpectedly"  # a clean stop removes the pid file; kill -9 or a crash does not
    else:
        state = "stopped"
    status: dict[str, Any] = {
        "service": {"state": state, "pid": pid, "note": _from_disk(why), "data_dir": str(cfg.data_dir),
                    "spool_locked": spool_held},
        "reports": spool_counts(cfg),
        "report_roles": ReportRoles.of(in_force_checked_once(cfg.lifecycles)["report"]).summary(),
        "uploader": None,
        "intake": {"paused": False, "intakes": {
            intake.name: {"watch": intake.watch, "converter": intake.converter,
                          "problem": None if Path(intake.watch).is_dir()
                          else f"the watch folder {intake.watch} does not exist"}
            for intake in cfg.intake}},
        "rejected_files": rejected_counts(cfg),
    }
    status["health"] = health_of(status)
    return status


def problem_states(lifecycle: Lifecycle) -> tuple[str, ...]:
    """States whose reports wait for a person, in the order the YAML declares them: the spool's
    roles (durable states only an operator trigger leaves, where refused reports rest, quarantine),
    so a site machine that quarantines refusals or holds reports for approval is asked about its own
    states — never about a ``failed`` it does not have."""
    roles = ReportRoles.of(lifecycle)
    waiting = roles.person | {roles.refused, roles.quarantine}
    return tuple(state for state in lifecycle.states if state in waiting and state not in roles.final)


def report_states(cfg: StationConfig | None = None) -> list[str]:
    """Every state of the report lifecycle in force (shipped without a config), in YAML order."""
    return list(in_force_checked_once(cfg.lifecycles if cfg else None)["report"].states)


def spool_counts(cfg: StationConfig) -> dict[str, int]:
    """Reports per state, read from the spool's folders (zeros when the spool does not exist yet)."""
    if not DataDir.of(cfg.data_dir).spool.is_dir():
        return {state: 0 for state in report_states(cfg)}
    return open_spool(cfg, readonly=True).counts()


def rejected_counts(cfg: StationConfig) -> dict[str, int]:
    """Source files waiting in each intake's error folder (files that could not be converted)."""
    return {intake.name: len(_rejected_in(DataDir.of(cfg.data_dir).rejected(intake.name))) for intake in cfg.intake}


def rejected_files(cfg: StationConfig, limit: int = 500) -> list[dict[str, Any]]:
    """The rejected source files, newest first: intake, file, path, time, reason and the full note."""
    rows: list[dict[str, Any]] = []
    for intake in cfg.intake:
        for path in _rejected_in(DataDir.of(cfg.data_dir).rejected(intake.name)):
            note_path = path.with_name(path.name + ERROR_SUFFIX)
            try:
                note = note_path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                note = ""
            fields = dict(_note_fields(note))
            try:
                mtime = (note_path if note else path).stat().st_mtime
            except OSError:
                continue
            rows.append({"intake": intake.name, "file": path.name, "path": str(path),
                         "time": fields.get("time") or datetime.fromtimestamp(mtime, timezone.utc).isoformat(),
                         "reason": fields.get("reason") or "could not be converted (no note found)",
                         "detail": note or None, "mtime": mtime})
    rows.sort(key=lambda r: -float(r["mtime"]))
    return rows[:limit]


def with_identity(row: dict[str, Any]) -> dict[str, Any]:
    """A report row with the serial number, part number and start time a person knows it by, read
    from its file in the spool (blank when the file is unreadable — quarantined reports may be)."""
    out = {**row, "sn": "", "pn": "", "start": ""}
    try:
        with open(row.get("path") or "", "rb") as fh:
            data = json.loads(fh.read(4 * 1024 * 1024))
    except (OSError, ValueError):
        return out
    if isinstance(data, dict):
        for key in ("sn", "pn", "start"):
            if isinstance(data.get(key), (str, int)):
                out[key] = str(data[key])
    return out


def read_log_tail(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of a log file (empty when it does not exist); never reads a whole big log."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 256 * 1024))
            return list(deque(fh.read().decode("utf-8", errors="replace").splitlines(), maxlen=n))
    except FileNotFoundError:
        return []


def _disk_reports(cfg: StationConfig, states: tuple[str, ...] | None, offset: int, limit: int | None,
                  note: str) -> ReportPage:
    if not DataDir.of(cfg.data_dir).spool.is_dir():
        return ReportPage([], 0, "disk", note, counts=spool_counts(cfg))
    spool = open_spool(cfg, readonly=True)
    counts = spool.counts()
    for state in states or ():
        if state not in spool.lifecycle.states:
            from .errors import InvalidInput

            raise InvalidInput(f"unknown state {state!r}", hint=f"one of {', '.join(spool.lifecycle.states)}")
    wanted = [s for s in (states or tuple(spool.lifecycle.states))]
    total = sum(counts.get(s, 0) for s in wanted)
    rows: list[dict[str, Any]] = []
    skip = offset
    for state in wanted:
        for info in spool.iter_info(state):
            if skip:
                skip -= 1
                continue
            if limit is not None and len(rows) >= limit:
                return ReportPage(rows, total, "disk", note, counts=counts)
            rows.append(info.as_dict())
    return ReportPage(rows, total, "disk", note, counts=counts)


def _retry_on_disk(cfg: StationConfig, ids: list[str], all_failed: bool) -> list[dict[str, Any]]:
    """No service: take the spool's lock (refused plainly while a service holds it) and move them."""
    results: list[dict[str, Any]] = []
    with open_spool(cfg) as spool:
        for key in ids + (spool.keys(spool.roles.refused) if all_failed else []):
            try:
                state = spool.fire_operator(key, "retry", note="retried by an operator")
                results.append({"id": key, "ok": True, "state": state})
            except StationflowError as exc:
                results.append({"id": key, "ok": False, "error": str(exc)})
    return results


def _rejected_in(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(Path(e.path) for e in entries
                  if e.is_file() and not e.name.endswith(ERROR_SUFFIX) and not e.name.startswith("."))


def _note_fields(note: str) -> list[tuple[str, str]]:
    out = []
    for line in note.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.isalpha() and key == key.lower():
            out.append((key, value.strip()))
        elif not line.strip():
            break
    return out


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    if os.name == "nt":  # no cheap probe without a handle; an unheld lock already says it is gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _from_disk(why: str | None) -> str:
    return f"{why or 'service not running'} — read from the spool on disk"


__all__ = ["Answer", "ReportPage", "ReportRoles", "StationAccess", "disk_status", "problem_states", "read_log_tail",
           "rejected_counts", "rejected_files", "report_states", "spool_counts", "with_identity"]
