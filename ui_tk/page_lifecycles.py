"""Lifecycles: the YAML state machines in force at the station, whether each passes the invariant
checks, and each one drawn.

For each machine the page says which file is in force — shipped, or the site's file from the
config's ``lifecycles:`` folder — with its path and sha256 (what ``status`` shows), and, while the
service runs, whether the service still uses another file (lifecycle changes wait for a restart).
A site file that does not pass the checks is shown with every problem in words: the service
would refuse to start with it.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from ..engine.errors import MachineDefinitionError
from ..engine.lifecycle import folder_problems, load_definition, load_lifecycle, shipped_names
from ..engine.lifecycle.load import resolve_source
from ..schemas.machine import MachineDef
from . import machine_canvas
from .page_base import Page
from .widgets import ERROR_FG, HELP_FG, OK_FG

if TYPE_CHECKING:
    from .app import ConfiguratorApp


@dataclass
class MachineView:
    name: str
    source: str
    definition: MachineDef | None
    problems: list[str] = field(default_factory=list)
    shipped: bool = True
    sha256: str = ""

    @property
    def valid(self) -> bool:
        return self.definition is not None and not self.problems

    @property
    def in_force(self) -> str:
        """Which file: ``shipped file PATH`` or ``site file PATH``, and its sha256."""
        return f"{'shipped' if self.shipped else 'site'} file {self.source}\nsha256 {self.sha256}"


@dataclass
class Machines:
    """What the page shows: each machine, and what is wrong with the site folder itself."""

    views: list[MachineView]
    folder: str | None = None
    folder_problems: list[str] = field(default_factory=list)


def load_machines(extra: Sequence[Path] = (), lifecycles: str | Path | None = None) -> Machines:
    """Every lifecycle in force (the site folder ``lifecycles`` over the shipped files) and each file
    in ``extra``, checked (blocking: YAML and the model check; run in a worker)."""
    dirs = [Path(lifecycles)] if lifecycles is not None and Path(lifecycles).is_dir() else []
    views: list[MachineView] = []
    names: list[str | Path] = [*shipped_names(), *extra]
    for name in names:
        source = resolve_source(name, dirs)
        try:
            lifecycle = load_lifecycle(name, override_dirs=dirs)
            views.append(MachineView(lifecycle.definition.name, source.label, lifecycle.definition,
                                     shipped=source.shipped, sha256=source.sha256))
        except MachineDefinitionError as exc:
            try:
                definition: MachineDef | None = load_definition(source.label, text=source.text)
            except MachineDefinitionError:
                definition = None
            shown = definition.name if definition is not None else Path(str(name)).stem
            views.append(MachineView(shown, source.label, definition, exc.problems or [str(exc)],
                                     shipped=source.shipped, sha256=source.sha256))
    return Machines(views, str(lifecycles) if lifecycles is not None else None, folder_problems(lifecycles))


class LifecyclesPage(Page):
    title = "Lifecycles"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        self.configure(padding=10)
        left = ttk.Frame(self)
        left.pack(side="left", fill="y")
        ttk.Label(left, text="Machines", font=("TkDefaultFont", 10, "bold")).pack(anchor="w")
        self.listbox = tk.Listbox(left, width=24, height=12, exportselection=False)
        self.listbox.pack(fill="y", expand=True)
        self.listbox.bind("<<ListboxSelect>>", self._picked)
        ttk.Label(left, text="Check all with\n`stationflow machines validate`", foreground=HELP_FG).pack(
            anchor="w", pady=(6, 0))

        right = ttk.Frame(self)
        right.pack(side="left", fill="both", expand=True, padx=(10, 0))
        self.folder_label = ttk.Label(right, text="", wraplength=900, justify="left")
        self.folder_label.pack(anchor="w", pady=(0, 4))
        self.verdict = ttk.Label(right, text="Loading the lifecycles…", wraplength=900, justify="left")
        self.verdict.pack(anchor="w")
        self.in_force = ttk.Label(right, text="", foreground=HELP_FG, wraplength=900, justify="left")
        self.in_force.pack(anchor="w")
        self.problems = ttk.Label(right, text="", foreground=ERROR_FG, wraplength=900, justify="left")
        self.problems.pack(anchor="w")
        holder = ttk.Frame(right)
        holder.pack(fill="both", expand=True, pady=(6, 0))
        self.canvas = tk.Canvas(holder, background="white", highlightthickness=1, highlightbackground="#cccccc")
        xbar = ttk.Scrollbar(holder, orient="horizontal", command=self.canvas.xview)
        ybar = ttk.Scrollbar(holder, orient="vertical", command=self.canvas.yview)
        self.canvas.configure(xscrollcommand=xbar.set, yscrollcommand=ybar.set)
        self.canvas.grid(row=0, column=0, sticky="nsew")
        ybar.grid(row=0, column=1, sticky="ns")
        xbar.grid(row=1, column=0, sticky="ew")
        holder.rowconfigure(0, weight=1)
        holder.columnconfigure(0, weight=1)
        self.machines: list[MachineView] = []
        self.folder_problems: list[str] = []
        self.extra: list[Path] = []  # more lifecycle files to check and draw (site overrides)
        self.shown: str | None = None
        self._requested = False

    def on_show(self) -> None:
        super().on_show()
        if not self._requested:
            self._requested = True
            cfg = self.app.link.cfg
            self.scope.submit(load_machines, list(self.extra), cfg.lifecycles if cfg else None, key="load",
                              on_done=self._loaded, on_error=self._failed)

    def _loaded(self, loaded: Machines) -> None:
        self.machines = machines = loaded.views
        self.folder_problems = loaded.folder_problems
        if loaded.folder is None:
            folder_text = "The station runs the shipped lifecycles (no lifecycles: folder in the config)."
        else:
            folder_text = f"Site lifecycles folder: {loaded.folder} — a file there replaces the shipped one."
        if loaded.folder_problems:
            folder_text += "\nThe service would refuse to start:\n" + "\n".join(loaded.folder_problems)
        self.folder_label.configure(text=folder_text, foreground=ERROR_FG if loaded.folder_problems else HELP_FG)
        self.listbox.delete(0, "end")
        for view in machines:
            site = "" if view.shipped else " (site)"
            self.listbox.insert("end", f"{'✔' if view.valid else '✘'} {view.name}{site}")
            self.listbox.itemconfigure("end", foreground=OK_FG if view.valid else ERROR_FG)
        if machines:
            self.show(0)
        bad = [v.name for v in machines if not v.valid] + (["the lifecycles folder"] if loaded.folder_problems else [])
        self.app.status(f"{len(machines)} lifecycles loaded" + (f"; invalid: {', '.join(bad)}" if bad else
                                                                ", all valid"), error=bool(bad))

    def _failed(self, exc: BaseException) -> None:
        self._requested = False
        self.verdict.configure(text=f"Could not load the lifecycles: {exc}", foreground=ERROR_FG)
        self.app.status(f"lifecycles: {exc}", error=True)

    def _picked(self, _event: tk.Event) -> None:
        chosen = self.listbox.curselection()  # type: ignore[no-untyped-call]
        if chosen:
            self.show(chosen[0])

    def show(self, which: str | int) -> None:
        """Show a machine by its place in the list, or by name (the first one of that name)."""
        index = which if isinstance(which, int) else [v.name for v in self.machines].index(which)
        view = self.machines[index]
        self.listbox.selection_clear(0, "end")
        self.listbox.selection_set(index)
        self.shown = view.name
        if view.valid:
            self.verdict.configure(text=f"✔ {view.name} ({view.source}) passes every invariant check.",
                                   foreground=OK_FG)
        elif not view.shipped:
            self.verdict.configure(text=f"✘ {view.name}: the site file {view.source} is not valid — the service "
                                        "would refuse to start with it:", foreground=ERROR_FG)
        else:
            self.verdict.configure(text=f"✘ {view.name} ({view.source}) is not valid:", foreground=ERROR_FG)
        running = self._running_note(view)
        self.in_force.configure(text=f"{'On disk' if running else 'In force'}: {view.in_force}{running}")
        self.problems.configure(text="\n".join(view.problems))
        if view.definition is not None:
            machine_canvas.draw(self.canvas, view.definition)
        else:
            self.canvas.delete("all")
            self.canvas.create_text(20, 20, anchor="nw", text="(cannot be drawn: the file does not parse)")

    def _running_note(self, view: MachineView) -> str:
        """While the service runs: the file it uses, when that is not the one on disk (status
        ``uploader.lifecycles``; lifecycle changes take effect at a restart)."""
        probe = self.app.probe
        uploader = (probe.status.get("uploader") or {}) if probe and probe.running and probe.status else {}
        running = (uploader.get("lifecycles") or {}).get(view.name) if isinstance(uploader, dict) else None
        if not isinstance(running, dict) or (running.get("file"), running.get("sha256")) == (view.source, view.sha256):
            return ""
        return (f"\nThe running service uses {running.get('file')} (sha256 {str(running.get('sha256'))[:16]}…): "
                "this file takes effect when the service restarts.")
