"""Service: its state and each task's, start / stop / reload, intake pause / resume, the tail of the log."""

from __future__ import annotations

import tkinter as tk
from datetime import datetime
from functools import partial
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from .page_base import Page, fix_label
from .widgets import ERROR_FG, HELP_FG, OK_FG

if TYPE_CHECKING:
    from .app import ConfiguratorApp
    from .station_link import Probe

_TASK_COLUMNS = (("task", 140), ("state", 100), ("restarts", 70), ("since", 200), ("last_error", 480))
LOG_LINES = 200


class ServicePage(Page):
    title = "Service"
    refresh_s = 2.0

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        self.configure(padding=10)
        top = ttk.Frame(self)
        top.pack(fill="x")
        self.state_label = ttk.Label(top, text="Service: checking…", font=("TkDefaultFont", 12, "bold"))
        self.state_label.pack(side="left")
        self.detail_label = ttk.Label(top, text="", foreground=HELP_FG)
        self.detail_label.pack(side="left", padx=12)

        buttons = ttk.Frame(self)
        buttons.pack(fill="x", pady=(8, 8))
        self.start_button = ttk.Button(buttons, text="Start", command=self.start)
        self.stop_button = ttk.Button(buttons, text="Stop", command=self.stop)
        self.reload_button = ttk.Button(buttons, text="Reload config", command=self.reload)
        self.pause_button = ttk.Button(buttons, text="Pause intake", command=lambda: self._intake("pause"))
        self.resume_button = ttk.Button(buttons, text="Resume intake", command=lambda: self._intake("resume"))
        for button in (self.start_button, self.stop_button, self.reload_button, self.pause_button, self.resume_button):
            button.pack(side="left", padx=(0, 6))

        self.tasks = ttk.Treeview(self, columns=[c for c, _ in _TASK_COLUMNS], show="headings", height=5)
        for column, width in _TASK_COLUMNS:
            self.tasks.heading(column, text=column.replace("_", " "))
            self.tasks.column(column, width=width, stretch=column == "last_error")
        self.tasks.pack(fill="x")
        self.uploader_label = ttk.Label(self, text="", foreground=HELP_FG, justify="left")
        self.uploader_label.pack(anchor="w", fill="x", pady=(4, 2))
        self.uploader_label.bind("<Configure>", lambda e: self.uploader_label.configure(wraplength=max(300, e.width)))
        health = ttk.LabelFrame(self, text="Health", padding=(8, 4))
        health.pack(fill="x", pady=(4, 8))
        self.health_list = ttk.Frame(health)
        self.health_list.pack(fill="x")
        self._health_rows: list[tuple[str, str]] = []

        log_frame = ttk.LabelFrame(self, text="Log (most recent last)", padding=4)
        log_frame.pack(fill="both", expand=True)
        self.log_source = ttk.Label(log_frame, text="", foreground=HELP_FG)
        self.log_source.pack(anchor="w")
        text_frame = ttk.Frame(log_frame)
        text_frame.pack(fill="both", expand=True)
        self.log = tk.Text(text_frame, height=14, wrap="none", font=("TkFixedFont", 9), state="disabled")
        self.log.tag_configure("warning", foreground="#8a5300")
        self.log.tag_configure("error", foreground=ERROR_FG)
        bar = ttk.Scrollbar(text_frame, orient="vertical", command=self.log.yview)
        xbar = ttk.Scrollbar(text_frame, orient="horizontal", command=self.log.xview)
        self.log.configure(yscrollcommand=bar.set, xscrollcommand=xbar.set)
        self.log.grid(row=0, column=0, sticky="nsew")
        bar.grid(row=0, column=1, sticky="ns")
        xbar.grid(row=1, column=0, sticky="ew")
        text_frame.rowconfigure(0, weight=1)
        text_frame.columnconfigure(0, weight=1)
        self._log_lines: list[str] = []
        self._task_rows: list[tuple[str, ...]] = []
        self._busy = False
        self._apply_buttons(None)

    # ------------------------------------------------------------------ showing

    def on_probe(self, probe: Probe) -> None:
        status = probe.status
        service = status.get("service") or {}
        if probe.running:
            self.state_label.configure(text=f"Service: {probe.state}", foreground=OK_FG if probe.state == "running"
                                       else ERROR_FG)
            uptime = service.get("uptime_s")
            bits = [f"pid {service.get('pid')}"]
            if isinstance(uptime, (int, float)):
                bits.append(f"up {_duration(uptime)}")
            if service.get("reason"):
                bits.append(str(service["reason"]))
            self.detail_label.configure(text=", ".join(bits))
        elif probe.running is False and probe.state == "ended unexpectedly":
            self.state_label.configure(text="Service: ended unexpectedly", foreground=ERROR_FG)
            self.detail_label.configure(text=f"pid {service.get('pid')} is gone without a clean stop (killed or "
                                             "crashed). Its log below says what it did last; Start runs it again.")
        elif probe.running is False:
            self.state_label.configure(text="Service: not running", foreground=ERROR_FG)
            self.detail_label.configure(text="Start it here, or with `stationflow run` / the station's service "
                                             "manager." + (" (a process still holds the spool)" if probe.locked
                                                           else ""))
        else:
            self.state_label.configure(text="Service: not answering", foreground=ERROR_FG)
            self.detail_label.configure(text=probe.reason)
        self._show_tasks(status.get("tasks") if probe.running else None)
        uploader = status.get("uploader") if probe.running else None
        if isinstance(uploader, dict):
            parts = [f"uploader: {uploader.get('mode', '?')}"]
            for key in ("in_flight", "consecutive_failures"):
                if uploader.get(key) not in (None, "", 0):
                    parts.append(f"{key.replace('_', ' ')}: {uploader[key]}")
            intake = status.get("intake")
            if isinstance(intake, dict) and intake.get("paused") is not None:
                parts.append("intake paused" if intake.get("paused") else "intake running")
            self.uploader_label.configure(text=" · ".join(parts))
        else:
            self.uploader_label.configure(text="")
        self._show_health(probe.health)
        if not self._busy:
            self._apply_buttons(probe)

    def _show_health(self, health: dict[str, Any]) -> None:
        """Every reason of the health model, each with a button to the field or page it concerns."""
        reasons = [r for r in health.get("reasons") or [] if isinstance(r, dict)]
        rows = [(str(r.get("level")), str(r.get("text"))) for r in reasons]
        if not reasons:
            rows = [("ok", str(health.get("summary") or "all is well"))]
        if rows == self._health_rows:
            return
        self._health_rows = rows
        for child in self.health_list.winfo_children():
            child.destroy()
        for index, (level, text) in enumerate(rows):
            colour = {"ok": OK_FG, "warning": "#8a5300"}.get(level, ERROR_FG)
            mark = {"ok": "✔", "warning": "⚠"}.get(level, "✖")
            label = ttk.Label(self.health_list, text=f"{mark} {text}", foreground=colour, justify="left")
            label.grid(row=index, column=0, sticky="w")
            label.bind("<Configure>", partial(_wrap_to_width, label))
            if index < len(reasons):
                reason = reasons[index]
                name = fix_label(reason)
                if name != "Open Service":
                    ttk.Button(self.health_list, text=name,
                               command=partial(self.app.open_reason, reason)).grid(row=index, column=1, padx=6)
        self.health_list.columnconfigure(0, weight=1)

    def _show_tasks(self, tasks: Any) -> None:
        rows: list[tuple[str, ...]] = []
        if isinstance(tasks, dict):
            items = list(tasks.items())
        elif isinstance(tasks, list):
            items = [(str(t.get("name", "?")), t) for t in tasks if isinstance(t, dict)]
        else:
            items = []
        for name, info in items:
            info = info if isinstance(info, dict) else {"state": info}
            problem = info.get("last_error") or info.get("given_up_reason") or ""
            rows.append((str(name), str(info.get("state", "")), str(info.get("restarts", "")),
                         _local(info.get("since")), str(problem)))
        if rows != self._task_rows:
            self.tasks.delete(*self.tasks.get_children())
            for row in rows:
                self.tasks.insert("", "end", values=row)
            self._task_rows = rows

    def _apply_buttons(self, probe: Probe | None) -> None:
        running = bool(probe and probe.running)
        stopped = bool(probe and probe.running is False and not probe.locked)
        self.start_button.state(["!disabled" if stopped else "disabled"])
        for button in (self.stop_button, self.reload_button):
            button.state(["!disabled" if running else "disabled"])
        intake = probe.status.get("intake") if probe and running else None
        paused = isinstance(intake, dict) and bool(intake.get("paused"))
        has_intake = isinstance(intake, dict)
        self.pause_button.state(["!disabled" if has_intake and not paused else "disabled"])
        self.resume_button.state(["!disabled" if has_intake and paused else "disabled"])

    # ------------------------------------------------------------------ log

    def refresh(self) -> None:
        running = bool(self.app.probe and self.app.probe.running)
        self.scope.submit(self.app.link.log_tail, running, LOG_LINES, key="log", on_done=self._show_log,
                          on_error=lambda exc: self.app.status(f"log: {exc}", error=True))

    def _show_log(self, answer: tuple[list[str], str]) -> None:
        lines, source = answer
        self.log_source.configure(text="from the running service" if source == "service" else
                                  "from the log file on disk (the service is not running)")
        if lines == self._log_lines:
            return
        at_end = not self._log_lines or self.log.yview()[1] >= 0.999
        self.log.configure(state="normal")
        self.log.delete("1.0", "end")
        for line in lines:
            level = "error" if " ERROR " in line or "ERROR:" in line else \
                "warning" if " WARNING " in line or "WARNING:" in line else ""
            self.log.insert("end", line + "\n", (level,) if level else ())
        self.log.configure(state="disabled")
        if at_end:  # opens at the newest lines, and follows them unless the person scrolled up
            self.log.see("end")
            self.log.xview_moveto(0)
        self._log_lines = lines

    # ------------------------------------------------------------------ actions

    def start(self) -> None:
        if self.app.dirty:
            self.app.status("note: unsaved changes are not used by the service until you save", error=True)
        self._begin("starting the service")
        self.scope.submit(self.app.link.start_service, self.scope.stop_event, key="start",
                          on_done=lambda r: self._done(f"service started (pid {r.get('pid')})"),
                          on_error=lambda exc: self._failed("Start the service", exc))

    def stop(self) -> None:
        self._begin("stopping the service (in-flight uploads finish first)")
        self.scope.submit(self.app.link.stop_service, self.scope.stop_event, key="stop",
                          on_done=lambda r: self._done("service stopped"),
                          on_error=lambda exc: self._failed("Stop the service", exc))

    def reload(self) -> None:
        self._begin("asking the service to read its config again")
        self.scope.submit(self.app.link.command, "reload", key="reload",
                          on_done=lambda r: self._done("service reloaded its config" + _changes(r)),
                          on_error=lambda exc: self._failed("Reload", exc))

    def _intake(self, what: str) -> None:
        self._begin(f"{what} intake")
        self.scope.submit(self.app.link.command, f"intake.{what}", key="intake",
                          on_done=lambda r: self._done(f"intake {what}d"),
                          on_error=lambda exc: self._failed(f"{what.title()} intake", exc))

    def _begin(self, what: str) -> None:
        self._busy = True
        for button in (self.start_button, self.stop_button, self.reload_button, self.pause_button, self.resume_button):
            button.state(["disabled"])
        self.app.status(what + " …")

    def _done(self, message: str) -> None:
        self._busy = False
        self.app.status(message)
        self.app.probe_now()
        self.refresh()

    def _failed(self, action: str, exc: BaseException) -> None:
        self._busy = False
        detail = getattr(exc, "detail", None)
        problems = getattr(exc, "problems", None) or []
        text = str(exc) + ("\n" + "\n".join(problems) if problems else "") + (f"\n\n{detail}" if detail else "")
        self.app.fail(action, text)
        self.app.probe_now()


def _local(value: Any) -> str:
    """An ISO time in local time, to the second: what a person compares with the clock."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _wrap_to_width(label: ttk.Label, event: tk.Event) -> None:
    label.configure(wraplength=max(300, event.width))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _changes(result: Any) -> str:
    if isinstance(result, dict) and isinstance(result.get("changes"), list) and result["changes"]:
        return ": " + "; ".join(str(c) for c in result["changes"][:5])
    if isinstance(result, list) and result:
        return ": " + "; ".join(str(c) for c in result[:5])
    return ""
