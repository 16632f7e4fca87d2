"""The configurator's window: a banner that says whether the service runs, the pages, Save, a status bar.

The config being edited is staged (``Draft`` + the forms) until Save. Save checks it against the
schema first and refuses, field by field, while anything is wrong; then, in a worker thread, it
hands the data to the running service (``config.apply``: validated, saved atomically with a
backup, reloaded) or, with no service, writes the file itself the same way.

Every few seconds a worker asks the service for its status; the answer decides the banner and
where the Queue and Service pages read from (the service, or the disk). Nothing the window does
waits in the Tk thread: see ``worker.py``; ``busy.py`` times every handler.
"""

from __future__ import annotations

import copy
import logging
import sys
import tkinter as tk
import traceback
from pathlib import Path
from tkinter import ttk
from typing import Any

from ..engine.errors import ConfigError, ServiceNotRunning, StationflowError
from ..schemas.config import StationConfig
from . import busy
from .dialogs import Dialogs, TkDialogs
from .draft import Draft, check, data_dir_of, load_draft, resolved_config, save_locally
from .forms import FormContext, ModelForm, split_problem
from .model_list import ModelListEditor
from .page_base import Page
from .page_connection import ConnectionPage
from .page_forms import IntakePage, SettingsPage, StationPage
from .page_lifecycles import LifecyclesPage
from .page_queue import QueuePage
from .page_service import ServicePage
from .station_link import Probe, StationLink
from .widgets import ERROR_FG
from .worker import Runner

log = logging.getLogger(__name__)

PAGES: tuple[type[Page], ...] = (ConnectionPage, StationPage, IntakePage, SettingsPage, QueuePage, ServicePage,
                                 LifecyclesPage)
_BANNERS = {
    "checking": ("#e0e0e0", "Checking whether the service is running…"),
    "running": ("#d7f0d9", "Service running ({state}, pid {pid}). Save hands the settings to the service, "
                           "which checks them, saves the file and reloads."),
    "other": ("#ffe0b2", "A service is running with another config file ({other}). Save writes this file "
                         "only; that service does not see it."),
    "stopped": ("#fff3c4", "Service not running. Settings are saved to the file; report counts are read from "
                           "disk. Start the service on the Service page."),
    "silent": ("#ffd6cc", "The service does not answer: {reason}"),
}


class ConfiguratorApp:
    """The window. ``dialogs`` may be replaced (tests record them instead of blocking on a click)."""

    def __init__(self, root: tk.Tk, config_path: str | Path, *, dialogs: Dialogs | None = None,
                 probe_ms: int = 2000, validate_ms: int = 250) -> None:
        self.root = root
        self.meter = busy.BusyMeter()
        busy.install(self.meter)  # before any widget: every handler from here on is timed
        self.dialogs: Dialogs = dialogs or TkDialogs(root)
        self.validate_ms = validate_ms
        self.messages: list[tuple[str, bool]] = []
        self.internal_errors: list[str] = []
        self.dirty = False
        self.closed = False
        self.problems: list[str] = []
        self.probe: Probe | None = None
        self._validate_after: str | None = None
        self._saving = False

        root.report_callback_exception = self._callback_failed  # type: ignore[method-assign]
        root.protocol("WM_DELETE_WINDOW", self.request_close)
        root.geometry("1200x820")
        root.minsize(900, 600)
        _style(root)
        self.runner = Runner(root, on_error=self.job_failed)
        self.scope = self.runner.scope("app")

        self.draft: Draft = load_draft(Path(config_path))
        self.saved_data: dict[str, Any] = copy.deepcopy(self.draft.data)
        cfg = resolved_config(self.draft.data, self.draft.path)
        self.link = StationLink(data_dir_of(self.draft.data, self.draft.base_dir), self.draft.path, cfg)
        self.form_context = FormContext(self.dialogs, self.draft.base_dir, self.changed)

        self.banner = tk.Label(root, text="", anchor="w", justify="left", padx=12, pady=6, wraplength=1150)
        self.banner.pack(fill="x")
        self.notebook = ttk.Notebook(root)
        self.notebook.pack(fill="both", expand=True, padx=6, pady=(6, 0))
        self.pages: dict[str, Page] = {}
        for page_class in PAGES:
            page = page_class(self, self.notebook)
            self.notebook.add(page, text=page.title)
            self.pages[page.title] = page
        self._current: Page | None = None
        self.notebook.bind("<<NotebookTabChanged>>", self._tab_changed)

        bottom = ttk.Frame(root, padding=(8, 6))
        bottom.pack(fill="x")
        self.save_button = ttk.Button(bottom, text="Save", command=self.save)
        self.save_button.pack(side="right")
        self.revert_button = ttk.Button(bottom, text="Revert", command=self.revert)
        self.revert_button.pack(side="right", padx=6)
        self.problem_label = ttk.Label(bottom, text="", foreground=ERROR_FG, wraplength=900, justify="left")
        self.problem_label.pack(side="left", fill="x", expand=True)
        self.status_label = ttk.Label(root, text="", anchor="w", relief="sunken", padding=(8, 2))
        self.status_label.pack(fill="x", side="bottom")
        root.bind("<Control-s>", lambda _e: self.save())

        self._load_forms(self.draft.data)
        self._set_banner("checking")
        self.status(self.draft.notice or f"editing {self.draft.path}", error=bool(self.draft.notice))
        self._title()
        self.prober = self.scope.every(probe_ms, self.probe_now)
        self._tab_changed()

    # ------------------------------------------------------------------ forms and data

    @property
    def config_forms(self) -> list[ModelForm]:
        pages = self.pages
        return [pages["Connection"].form, pages["Station"].form, pages["Settings"].form]  # type: ignore[attr-defined]

    @property
    def list_editors(self) -> list[ModelListEditor]:
        editors = [self.pages["Intake"].editor]  # type: ignore[attr-defined]
        for form in self.config_forms:
            editors.extend(form.list_editors())
        return editors

    def form(self, section: str) -> ModelForm:
        """The form of ``station``, ``server`` or ``""`` (the Settings page)."""
        return {f.path: f for f in self.config_forms}[section]

    def _load_forms(self, data: dict[str, Any]) -> None:
        pages = self.pages
        pages["Connection"].form.load(data.get("server"))  # type: ignore[attr-defined]
        pages["Station"].form.load(data.get("station"))  # type: ignore[attr-defined]
        pages["Settings"].form.load(data)  # type: ignore[attr-defined]
        intake = data.get("intake")
        pages["Intake"].editor.load(intake if isinstance(intake, list) else [])  # type: ignore[attr-defined]
        self.dirty = False
        self.validate_now()

    def collect(self) -> dict[str, Any]:
        """The staged config as data, in the schema's key order."""
        pages = self.pages
        parts: dict[str, Any] = dict(pages["Settings"].form.collect())  # type: ignore[attr-defined]
        parts.pop("station", None), parts.pop("server", None), parts.pop("intake", None)
        parts["station"] = pages["Station"].form.collect()  # type: ignore[attr-defined]
        parts["server"] = pages["Connection"].form.collect()  # type: ignore[attr-defined]
        intake = pages["Intake"].editor.collect()  # type: ignore[attr-defined]
        if intake or "intake" in self.saved_data:
            parts["intake"] = intake
        order = [f.alias or n for n, f in StationConfig.model_fields.items()]
        return {k: parts[k] for k in sorted(parts, key=lambda k: order.index(k) if k in order else len(order))}

    def changed(self) -> None:
        """A field was edited: mark the window unsaved and check again shortly (typing stays fluid)."""
        if not self.dirty:
            self.dirty = True
            self._title()
        self.scope.cancel(self._validate_after)
        self._validate_after = self.scope.after(self.validate_ms, self.validate_now)

    def validate_now(self) -> list[str]:
        """Check the staged config and mark every problem at its field; returns the problem lines."""
        self.scope.cancel(self._validate_after)
        self._validate_after = None
        _, problems = check(self.collect())
        self.mark(problems)
        return problems

    def mark(self, problems: list[str]) -> None:
        self.problems = problems
        parsed: dict[str, str] = {}
        unplaced: list[str] = []
        for line in problems:
            path, message = split_problem(line)
            if not path:
                unplaced.append(line)
            else:
                parsed[path] = f"{parsed[path]}; {message}" if path in parsed else message
        placed: set[str] = set()
        for form in self.config_forms:
            placed |= form.mark(parsed)
        for editor in self.list_editors:
            placed |= editor.mark(parsed)
        unplaced += [f"{p}: {m}" for p, m in parsed.items() if p not in placed]
        if problems:
            text = f"{len(problems)} problem(s) — Save is refused until they are fixed (marked in red)."
            if unplaced:
                text += "\n" + "\n".join(unplaced[:5])
        else:
            text = ""
        self.problem_label.configure(text=text)
        self._tab_marks()

    def _tab_marks(self) -> None:
        bad = {"Connection": bool(self.pages["Connection"].form.invalid_fields),  # type: ignore[attr-defined]
               "Station": bool(self.pages["Station"].form.invalid_fields),  # type: ignore[attr-defined]
               "Settings": bool(self.pages["Settings"].form.invalid_fields),  # type: ignore[attr-defined]
               "Intake": bool(self.pages["Intake"].editor.problems)}  # type: ignore[attr-defined]
        for title, wrong in bad.items():
            self.notebook.tab(self.pages[title], text=f"{title} ⚠" if wrong else title)

    # ------------------------------------------------------------------ save and revert

    def save(self) -> None:
        """Save the staged config: refused while a field is wrong; through the service when it runs."""
        if self._saving:
            return
        data = self.collect()
        problems = self.validate_now()
        if problems:
            self.fail("Save", f"Not saved: {len(problems)} problem(s) to fix first:\n" + "\n".join(problems[:12]))
            return
        probe = self.probe
        via_service = bool(probe and probe.running and probe.config_path in (None, str(self.draft.path)))
        self._saving = True
        self.save_button.state(["disabled"])
        self.status("saving through the service …" if via_service else f"saving {self.draft.path} …")
        self.scope.submit(_save, self.link, data, self.draft.path, via_service, key="save",
                          on_done=lambda result: self._saved(data, result), on_error=self._save_failed)

    def _saved(self, data: dict[str, Any], result: tuple[str, StationConfig, Any]) -> None:
        self._saving = False
        self.save_button.state(["!disabled"])
        via, cfg, answer = result
        self.saved_data = copy.deepcopy(data)
        self.dirty = False
        self._title()
        self._relink(data)
        if via == "service":
            self.status(f"saved {self.draft.path} through the service, which reloaded it" + _changes(answer))
        else:
            self.status(f"saved {self.draft.path} (previous version kept as {self.draft.path.name}.bak)")
        self.probe_now()

    def _save_failed(self, exc: BaseException) -> None:
        self._saving = False
        self.save_button.state(["!disabled"])
        problems = list(getattr(exc, "problems", []) or [])
        if isinstance(exc, ConfigError) and problems:
            self.mark(problems)
        self.fail("Save", f"Not saved: {exc}" + ("\n" + "\n".join(problems[:12]) if problems else ""))

    def revert(self) -> None:
        """Throw away unsaved changes: read the file again."""
        if self.dirty and not self.dialogs.ask_yes_no("Revert", "Discard the unsaved changes and read the file "
                                                                "again?"):
            return
        self.scope.submit(load_draft, self.draft.path, key="revert", on_done=self._reverted)

    def _reverted(self, draft: Draft) -> None:
        self.draft = draft
        self.saved_data = copy.deepcopy(draft.data)
        self._load_forms(draft.data)
        self._relink(draft.data)
        self._title()
        self.status(draft.notice or f"read {draft.path} again", error=bool(draft.notice))

    def _relink(self, data: dict[str, Any]) -> None:
        cfg = resolved_config(data, self.draft.path)
        data_dir = data_dir_of(data, self.draft.base_dir)
        if data_dir != self.link.data_dir:
            self.link = StationLink(data_dir, self.draft.path, cfg)
        else:
            self.link.cfg = cfg

    # ------------------------------------------------------------------ the service

    def probe_now(self) -> None:
        self.scope.submit(self.link.probe, key="probe", on_done=self._probed,
                          on_error=lambda exc: self.status(f"cannot check the service: {exc}", error=True))

    def _probed(self, probe: Probe) -> None:
        self.probe = probe
        if probe.running:
            other = probe.config_path
            if other and Path(other) != self.draft.path:
                self._set_banner("other", other=other)
            else:
                service = probe.status.get("service") or {}
                self._set_banner("running", state=probe.state, pid=service.get("pid", "?"))
        elif probe.running is False:
            self._set_banner("stopped")
        else:
            self._set_banner("silent", reason=probe.reason)
        for page in self.pages.values():
            page.on_probe(probe)

    def _set_banner(self, kind: str, **values: Any) -> None:
        colour, text = _BANNERS[kind]
        self.banner_kind = kind
        self.banner.configure(text=text.format(**values), background=colour)

    # ------------------------------------------------------------------ telling the person

    def status(self, message: str, *, error: bool = False) -> None:
        self.messages.append((message, error))
        del self.messages[:-200]
        self.status_label.configure(text=message, foreground=ERROR_FG if error else "")

    def fail(self, action: str, message: str) -> None:
        """A failure of something the person asked for: status bar and a dialog."""
        self.status(f"{action}: {message.splitlines()[0]}", error=True)
        self.dialogs.error(action, message)

    def job_failed(self, exc: BaseException) -> None:
        """A background job failed and nobody asked for it: the status bar says so."""
        if isinstance(exc, ServiceNotRunning):
            self.status(str(exc), error=True)
        elif isinstance(exc, StationflowError):
            self.status(str(exc), error=True)
        else:
            log.error("background job failed", exc_info=exc)
            self.status(f"{type(exc).__name__}: {exc}", error=True)

    def _callback_failed(self, kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(kind, exc, tb))
        self.internal_errors.append(text)
        log.error("error in the window: %s", text)
        try:
            self.status(f"internal error: {type(exc).__name__}: {exc} (please report it)", error=True)
        except tk.TclError:
            pass

    def _title(self) -> None:
        self.root.title(f"{'*' if self.dirty else ''}stationflow configure — {self.draft.path}")

    # ------------------------------------------------------------------ pages and closing

    def select(self, title: str) -> Page:
        page = self.pages[title]
        self.notebook.select(page)
        self._tab_changed()
        return page

    def _tab_changed(self, _event: tk.Event | None = None) -> None:
        if self.closed:
            return
        try:
            page = self.notebook.nametowidget(self.notebook.select())
        except (KeyError, tk.TclError):
            return
        if page is self._current:
            return
        if self._current is not None:
            self._current.on_hide()
        self._current = page  # type: ignore[assignment]
        page.on_show()  # type: ignore[attr-defined]

    def request_close(self) -> None:
        """The window's close button: ask about unsaved changes, then close."""
        if self.dirty and not self.dialogs.ask_yes_no("Unsaved changes", "Close without saving the changes?"):
            return
        self.close()

    def close(self, *, destroy: bool = True) -> list[str]:
        """Stop every timer and worker thread, then destroy the window. Returns threads left running."""
        if self.closed:
            return []
        self.closed = True
        for page in self.pages.values():
            page.close()
        left = self.runner.close()
        busy.uninstall(self.meter)
        if destroy:
            try:
                self.root.destroy()
            except tk.TclError:
                pass
        return left


def _save(link: StationLink, data: dict[str, Any], path: Path, via_service: bool) -> tuple[str, StationConfig, Any]:
    """Worker: hand the data to the service, or write the file when there is none (blocking)."""
    cfg, problems = check(data)
    if cfg is None:
        raise ConfigError("the config is not valid", problems=problems)
    if via_service:
        try:
            return "service", cfg, link.apply_config(data)
        except ServiceNotRunning:
            pass  # it stopped meanwhile: save the file ourselves
    return "file", save_locally(data, path), None


def _changes(answer: Any) -> str:
    changes = answer.get("changes") if isinstance(answer, dict) else None
    if isinstance(changes, list) and changes:
        return ": " + "; ".join(str(c) for c in changes[:4])
    return ""


def _style(root: tk.Tk) -> None:
    style = ttk.Style(root)
    if sys.platform.startswith("linux") and "clam" in style.theme_names():
        style.theme_use("clam")
    style.map("TEntry", fieldbackground=[("invalid", "#ffe3e3")])
    style.map("TCombobox", fieldbackground=[("invalid", "#ffe3e3"), ("readonly", "white")])


def run(config_path: str | Path) -> int:
    """``stationflow configure``: open the window and wait until it is closed."""
    root = tk.Tk(className="stationflow")
    app = ConfiguratorApp(root, config_path)
    try:
        root.mainloop()
    finally:
        app.close()
    return 0
