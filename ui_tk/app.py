"""The configurator's window: a banner that says whether the service runs, the pages, Save, a status bar.

The config being edited is staged (``Draft`` + the forms) until Save. Save checks it against the
schema first and refuses, field by field, while anything is wrong; then, in a worker thread, it
hands the data to the running service (``config.apply``: validated, saved atomically with a
backup, reloaded) or, with no service, writes the file itself the same way.

Save never loses an edit made elsewhere: the file's text is remembered when it is read, and a
save (local or through the service) is refused when the file is no longer that text; the person
then chooses to merge (their changes on top of the file's new version, field by field) or reload.

Every few seconds a worker asks the station access for the status and its health
(engine/health.py); the banner shows it — green only when the service runs, uploads flow and
every intake is healthy, amber or red otherwise with the reason and a Fix button that opens the
field concerned. Nothing the window does waits in the Tk thread: see ``worker.py``; ``busy.py``
times every handler.
"""

from __future__ import annotations

import copy
import logging
import os
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
from ..engine.config_file import ConfigChangedOnDisk, parse_config_text, read_config_text
from .draft import (
    Draft,
    check,
    data_dir_of,
    describe_changes,
    load_draft,
    merge,
    resolved_config,
    save_locally,
    unchanged_on_disk,
)
from .forms import FormContext, ModelForm, split_problem
from .model_list import ModelListEditor
from .page_base import PAGES_FOR_PEOPLE, Page, fix_label
from .page_connection import ConnectionPage
from .page_forms import IntakePage, SettingsPage, StationPage
from .page_lifecycles import LifecyclesPage
from .page_problems import ProblemsPage
from .page_service import ServicePage
from .station_link import Probe, StationLink
from .widgets import ERROR_FG
from .worker import Runner

log = logging.getLogger(__name__)

PAGES: tuple[type[Page], ...] = (ConnectionPage, StationPage, IntakePage, SettingsPage, ProblemsPage, ServicePage,
                                 LifecyclesPage)
#: The pages that edit the config: Save and Revert are shown only on these.
CONFIG_PAGES = ("Connection", "Station", "Intake", "Settings")
_COLOURS = {"checking": "#e0e0e0", "ok": "#d7f0d9", "warning": "#ffe0b2", "error": "#ffd6cc", "other": "#ffe0b2"}


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
        self._after_save: Any = None
        self._noticed_text: str | None = None

        root.report_callback_exception = self._callback_failed
        root.protocol("WM_DELETE_WINDOW", self.request_close)
        _style(root)
        self.runner = Runner(root, on_error=self.job_failed)
        self.scope = self.runner.scope("app")

        self.draft: Draft = load_draft(Path(config_path))
        self.saved_data: dict[str, Any] = copy.deepcopy(self.draft.data)
        cfg = resolved_config(self.draft.data, self.draft.path)
        self.link = StationLink(data_dir_of(self.draft.data, self.draft.base_dir), self.draft.path, cfg)
        self.form_context = FormContext(self.dialogs, self.draft.base_dir, self.changed)

        # Packed in this order so that, however small the window, the banner, the Save bar and the
        # status bar keep their room and only the pages shrink (they scroll).
        top = tk.Frame(root)
        top.pack(fill="x", side="top")
        self.banner_frame = top
        self.fix_button = ttk.Button(top, text="Fix…", command=self.fix)
        self.banner = tk.Label(top, text="", anchor="w", justify="left", padx=12, pady=6)
        self.banner.pack(side="left", fill="x", expand=True)
        self.banner_kind = "checking"
        self.banner_reason: dict[str, Any] | None = None
        top.bind("<Configure>", self._banner_resized)
        self.status_label = ttk.Label(root, text="", anchor="w", relief="sunken", padding=(8, 2))
        self.status_label.pack(fill="x", side="bottom")
        bottom = ttk.Frame(root, padding=(8, 6))
        bottom.pack(fill="x", side="bottom")
        self.save_button = ttk.Button(bottom, text="Save", command=self.save)
        self.revert_button = ttk.Button(bottom, text="Revert", command=self.revert)
        self.problem_label = ttk.Label(bottom, text="", foreground=ERROR_FG, justify="left")
        self.problem_label.pack(side="left", fill="x", expand=True)
        bottom.bind("<Configure>", lambda e: self.problem_label.configure(wraplength=max(200, e.width - 220)))
        self.notebook = ttk.Notebook(root)
        self.notebook.pack(fill="both", expand=True, padx=6, pady=(6, 0))
        self.notebook.enable_traversal()  # Ctrl+Tab / Ctrl+Shift+Tab between pages
        self.pages: dict[str, Page] = {}
        for page_class in PAGES:
            page = page_class(self, self.notebook)
            self.notebook.add(page, text=page.title)
            self.pages[page.title] = page
        self._current: Page | None = None
        self.notebook.bind("<<NotebookTabChanged>>", self._tab_changed)
        root.bind("<Control-s>", lambda _e: self.save())

        self._load_forms(self.draft.data)
        self._set_banner("checking", "Checking whether the service is running…")
        self.status(self.draft.notice or f"editing {self.draft.path}", error=bool(self.draft.notice))
        self._title()
        _size_window(root)
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
            self.notebook.tab(self.pages[title], text=f"{title} ⚠" if wrong else title)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ save and revert

    def save(self, *, then: Any = None) -> None:
        """Save the staged config: refused while a field is wrong; the changes listed first; through
        the service when it runs; never over a file that changed on disk since it was read."""
        if self._saving:
            return
        data = self.collect()
        problems = self.validate_now()
        if problems:
            self.fail("Save", f"Not saved: {len(problems)} problem(s) to fix first:\n" + "\n".join(problems[:12]))
            return
        changes = describe_changes(self.saved_data, data)
        if self.draft.text is not None and not changes:
            self.dirty = False
            self._title()
            self.status("nothing to save: every field is as in the file")
            return
        listed = "\n".join(f"• {c}" for c in changes[:15]) + (f"\n… and {len(changes) - 15} more"
                                                             if len(changes) > 15 else "")
        if changes and self.dialogs.ask_choice("Save", f"Save {len(changes)} change(s) to {self.draft.path}?\n\n"
                                                       f"{listed}", ["Save", "Cancel"], "Save") != "Save":
            return
        probe = self.probe
        via_service = bool(probe and probe.running and probe.config_path in (None, str(self.draft.path)))
        self._saving = True
        self._after_save = then
        self.save_button.state(["disabled"])
        self.status("saving through the service …" if via_service else f"saving {self.draft.path} …")
        self.scope.submit(_save, self.link, data, self.draft.path, self.draft.text, via_service, key="save",
                          on_done=lambda result: self._saved(data, result), on_error=self._save_failed)

    def _saved(self, data: dict[str, Any], result: tuple[str, StationConfig, Any, str | None]) -> None:
        self._saving = False
        self.save_button.state(["!disabled"])
        via, cfg, answer, text = result
        self.saved_data = copy.deepcopy(data)
        self.draft.text = text
        self.draft.is_new = False
        self.dirty = False
        self._title()
        self._relink(data)
        if via == "service":
            self.status(f"saved {self.draft.path} through the service, which reloaded it" + _changes(answer))
        else:
            self.status(f"saved {self.draft.path} (previous version kept as {self.draft.path.name}.bak)")
        self.probe_now()
        then, self._after_save = self._after_save, None
        if then is not None:
            then()

    def _save_failed(self, exc: BaseException) -> None:
        self._saving = False
        self._after_save = None
        self.save_button.state(["!disabled"])
        if isinstance(exc, ConfigChangedOnDisk):
            self._changed_on_disk(exc.current)
            return
        problems = list(getattr(exc, "problems", []) or [])
        if isinstance(exc, ConfigError) and problems:
            self.mark(problems)
        self.fail("Save", f"Not saved: {exc}" + ("\n" + "\n".join(problems[:12]) if problems else ""))

    def _changed_on_disk(self, current: str | None) -> None:
        """The file changed since it was read: merge the edits into it, reload it, or leave it be."""
        try:
            theirs = parse_config_text(current, source=str(self.draft.path)) if current else {}
        except ConfigError as exc:
            self.fail("Save", f"Not saved: {self.draft.path} was changed on disk and can no longer be read "
                              f"({exc}). Fix the file, then Revert to read it again.")
            return
        merged = merge(self.saved_data, self.collect(), theirs)
        mine = describe_changes(self.saved_data, self.collect())
        parts = [f"{self.draft.path.name} was changed on disk after this window read it (by hand, by the "
                 "service or by another window). Nothing was saved."]
        if merged.theirs:
            parts.append("Changed on disk: " + ", ".join(merged.theirs[:10]))
        if mine:
            parts.append("Your changes: " + ", ".join(c.split(":", 1)[0] for c in mine[:10]))
        if merged.conflicts:
            parts.append("Changed in both places (yours would win): " + ", ".join(merged.conflicts))
        parts.append("Merge keeps your changes on top of the file's new version; you then review and Save. "
                     "Reload discards your changes.")
        choice = self.dialogs.ask_choice("File changed on disk", "\n\n".join(parts),
                                         ["Merge", "Reload", "Cancel"], "Cancel")
        if choice == "Reload":
            self.scope.submit(load_draft, self.draft.path, key="revert", on_done=self._reverted)
        elif choice == "Merge":
            self.draft.text = current
            self.saved_data = copy.deepcopy(theirs)
            self._load_forms(merged.data)
            self.dirty = bool(describe_changes(theirs, self.collect()))
            self._title()
            self.status(f"merged your changes into the file's new version ({len(merged.theirs)} field(s) changed on "
                        "disk kept) — review and Save", error=bool(merged.conflicts))

    def revert(self) -> None:
        """Throw away unsaved changes: read the file again."""
        if self.dirty and self.dialogs.ask_choice("Revert", "Discard the unsaved changes and read the file again?",
                                                  ["Discard changes", "Cancel"], "Cancel") != "Discard changes":
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

    # ------------------------------------------------------------------ the service and the banner

    def probe_now(self) -> None:
        self.scope.submit(self.link.probe, key="probe", on_done=self._probed,
                          on_error=lambda exc: self.status(f"cannot check the service: {exc}", error=True))
        self.scope.submit(read_config_text, self.draft.path, key="file", on_done=self._file_read)

    def _file_read(self, text: str | None) -> None:
        """Say so as soon as the file changes on disk while the window is open (once per change)."""
        if self._saving or text == self.draft.text or text == self._noticed_text:
            return
        self._noticed_text = text
        self.status(f"{self.draft.path.name} was changed on disk since this window read it — Revert reads it "
                    "again; Save offers to merge your changes into it", error=True)

    def _probed(self, probe: Probe) -> None:
        self.probe = probe
        other = probe.config_path
        if probe.running and other and Path(other) != self.draft.path:
            self._set_banner("other", f"A service is running with another config file ({other}). Save writes this "
                                      "file only; that service does not see it.")
        else:
            health = probe.health
            reasons = list(health.get("reasons") or [])
            state = str(health.get("state") or "error")
            if state == "ok" and probe.running:
                service = probe.status.get("service") or {}
                text = (f"✔ Service running (pid {service.get('pid', '?')}): {health.get('summary')}. Save hands the "
                        "settings to the service, which checks them, saves the file and reloads.")
                self._set_banner("ok", text)
            else:
                kind = "warning" if state == "warning" else "error"
                mark = "⚠" if kind == "warning" else "✖"
                more = f"  (+{len(reasons) - 1} more: see the Service page)" if len(reasons) > 1 else ""
                first = reasons[0]["text"] if reasons else str(health.get("summary") or probe.reason)
                self._set_banner(kind, f"{mark} {first[:1].upper()}{first[1:]}{more}", reasons[0] if reasons else None)
        for page in self.pages.values():
            page.on_probe(probe)

    def _set_banner(self, kind: str, text: str, reason: dict[str, Any] | None = None) -> None:
        self.banner_kind = kind
        self.banner_reason = reason
        self.banner.configure(text=text, background=_COLOURS[kind])
        self.banner_frame.configure(background=_COLOURS[kind])
        if reason is not None:
            self.fix_button.configure(text=fix_label(reason))
            self.fix_button.pack(side="right", padx=8, before=self.banner)
        else:
            self.fix_button.pack_forget()

    def _banner_resized(self, event: tk.Event) -> None:
        room = event.width - (self.fix_button.winfo_reqwidth() + 40 if self.fix_button.winfo_ismapped() else 24)
        self.banner.configure(wraplength=max(200, room))

    def fix(self) -> None:
        """The banner's Fix button: open the field (or page) the first reason names."""
        if self.banner_reason is not None:
            self.open_reason(self.banner_reason)

    def open_reason(self, reason: dict[str, Any]) -> None:
        field = reason.get("field")
        page = str(reason.get("page") or "Problems")
        if field and page not in PAGES_FOR_PEOPLE:
            self.open_field(str(field))
            if str(field).endswith(".watch") and "does not exist" in str(reason.get("text")):
                self._offer_to_create(str(field))
        else:
            self.select(page if page in self.pages else "Problems")

    def _offer_to_create(self, dotted: str) -> None:
        """A missing watch folder: offer to create it (the equipment may simply not have run yet)."""
        try:
            index = int(dotted.removeprefix("intake[").partition("]")[0])
            watch = self.collect()["intake"][index]["watch"]
        except (ValueError, KeyError, IndexError, TypeError):
            return
        folder = Path(os.path.normpath(self.draft.base_dir / os.path.expanduser(str(watch))))
        if folder.is_dir():
            return
        if self.dialogs.ask_choice("Watch folder missing", f"The watch folder {folder} does not exist. Create it "
                                                           "now? (Or choose another folder with Browse…)",
                                   ["Create folder", "Cancel"], "Cancel") != "Create folder":
            return
        def created(_result: object) -> None:
            self.status(f"created {folder}")
            self.probe_now()

        self.scope.submit(folder.mkdir, parents=True, exist_ok=True, key="mkdir", on_done=created,
                          on_error=lambda exc: self.fail("Create folder", f"cannot create {folder}: {exc}"))

    def open_field(self, dotted: str) -> None:
        """Show the page of a config field (``server.token``, ``intake[1].watch``) and put the cursor in it."""
        row: Any = None
        if dotted.startswith("intake"):
            self.select("Intake")
            editor = self.pages["Intake"].editor  # type: ignore[attr-defined]
            index, _, rest = dotted.partition("]")
            try:
                editor.select(int(index.removeprefix("intake[")))
                row = editor.field(rest.lstrip(".")) if rest.lstrip(".") else None
            except (ValueError, KeyError, IndexError, AssertionError):
                row = None
        else:
            section, _, key = dotted.partition(".")
            title = {"server": "Connection", "station": "Station"}.get(section, "Settings")
            self.select(title)
            try:
                row = self.form(section if title != "Settings" else "").field(key if title != "Settings" else dotted)
            except (KeyError, AssertionError):
                row = None
        if row is not None:
            row.widget.focus_set()
            self.status(f"{row.label.cget('text')}: {str(self.banner_reason.get('text')) if self.banner_reason else ''}")

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
        self.notebook.select(page)  # type: ignore[no-untyped-call]
        self._tab_changed()
        return page

    def _tab_changed(self, _event: tk.Event | None = None) -> None:
        if self.closed:
            return
        try:
            page = self.notebook.nametowidget(self.notebook.select())  # type: ignore[no-untyped-call]
        except (KeyError, tk.TclError):
            return
        if not isinstance(page, Page):
            return
        if page is self._current:
            return
        if self._current is not None:
            self._current.on_hide()
        self._current = page
        editing = page.title in CONFIG_PAGES
        for button in (self.save_button, self.revert_button):
            if editing and not button.winfo_ismapped():
                button.pack(side="right", padx=(6, 0))
            elif not editing:
                button.pack_forget()
        page.on_show()

    def request_close(self) -> None:
        """The window's close button: Save / Don't save / Cancel when there are unsaved changes."""
        if self.dirty:
            choice = self.dialogs.ask_choice("Unsaved changes", f"Save the changes to {self.draft.path.name} "
                                                                "before closing?", ["Save", "Don't save", "Cancel"],
                                             "Cancel")
            if choice == "Cancel":
                return
            if choice == "Save":
                self.save(then=self.close)
                return
        self.close()

    def close(self, *, destroy: bool = True) -> list[str]:
        """Hide the window at once, then stop every timer and worker thread and destroy it.
        Returns the threads left running (network calls stuck past their timeout)."""
        if self.closed:
            return []
        self.closed = True
        if destroy:
            try:
                self.root.withdraw()  # gone for the person now; background work finishes unseen
                self.root.update_idletasks()
            except tk.TclError:
                pass
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


def _save(link: StationLink, data: dict[str, Any], path: Path, expected: str | None,
          via_service: bool) -> tuple[str, StationConfig, Any, str | None]:
    """Worker: hand the data to the service, or write the file when there is none (blocking).
    Either way, refused (``ConfigChangedOnDisk``) when the file is not what the window read."""
    cfg, problems = check(data)
    if cfg is None:
        raise ConfigError("the config is not valid", problems=problems)
    if via_service:
        unchanged_on_disk(path, expected)
        try:
            answer = link.apply_config(data)
            return "service", cfg, answer, read_config_text(path)
        except ServiceNotRunning:
            pass  # it stopped meanwhile: save the file ourselves
    save_locally(data, path, expected)
    return "file", cfg, None, read_config_text(path)


def _changes(answer: Any) -> str:
    changes = answer.get("changes") if isinstance(answer, dict) else None
    if isinstance(changes, list) and changes:
        return ": " + "; ".join(str(c) for c in changes[:4])
    return ""


def _size_window(root: tk.Tk) -> None:
    """A size from the content and the screen's DPI, never larger than the screen: at 192 DPI the
    same layout is twice as many pixels, and a fixed 1200×820 put Save off-screen."""
    root.update_idletasks()
    scale = float(root.tk.call("tk", "scaling")) / (96 / 72)  # 1.0 at 96 DPI
    screen_w, screen_h = root.winfo_screenwidth(), root.winfo_screenheight()
    width = min(max(int(1100 * scale), root.winfo_reqwidth()), screen_w - 40)
    height = min(max(int(760 * scale), root.winfo_reqheight()), screen_h - 80)
    root.geometry(f"{width}x{height}")
    root.minsize(min(int(760 * scale), screen_w - 40), min(int(480 * scale), screen_h - 80))


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
