"""Lifecycles: the YAML state machines, whether each passes the invariant checks, and each one drawn."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from ..engine.errors import MachineDefinitionError
from ..engine.lifecycle import load_definition, load_lifecycle, resolve, shipped_names
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

    @property
    def valid(self) -> bool:
        return self.definition is not None and not self.problems


def load_machines(extra: Sequence[Path] = ()) -> list[MachineView]:
    """Every shipped lifecycle and each file in ``extra``, checked (blocking: YAML; run in a worker)."""
    views: list[MachineView] = []
    names: list[str | Path] = [*shipped_names(), *extra]
    for name in names:
        label, text, _ = resolve(name)
        try:
            lifecycle = load_lifecycle(name)
            views.append(MachineView(lifecycle.definition.name, label, lifecycle.definition))
        except MachineDefinitionError as exc:
            try:
                definition: MachineDef | None = load_definition(label, text=text)
            except MachineDefinitionError:
                definition = None
            shown = definition.name if definition is not None else Path(str(name)).stem
            views.append(MachineView(shown, label, definition, exc.problems or [str(exc)]))
    return views


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
        self.verdict = ttk.Label(right, text="Loading the lifecycles…", wraplength=900, justify="left")
        self.verdict.pack(anchor="w")
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
        self.extra: list[Path] = []  # more lifecycle files to check and draw (site overrides)
        self.shown: str | None = None
        self._requested = False

    def on_show(self) -> None:
        super().on_show()
        if not self._requested:
            self._requested = True
            self.scope.submit(load_machines, list(self.extra), key="load", on_done=self._loaded, on_error=self._failed)

    def _loaded(self, machines: list[MachineView]) -> None:
        self.machines = machines
        self.listbox.delete(0, "end")
        for view in machines:
            self.listbox.insert("end", f"{'✔' if view.valid else '✘'} {view.name}")
            self.listbox.itemconfigure("end", foreground=OK_FG if view.valid else ERROR_FG)
        if machines:
            self.show(0)
        bad = [v.name for v in machines if not v.valid]
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
        else:
            self.verdict.configure(text=f"✘ {view.name} ({view.source}) is not valid:", foreground=ERROR_FG)
        self.problems.configure(text="\n".join(view.problems))
        if view.definition is not None:
            machine_canvas.draw(self.canvas, view.definition)
        else:
            self.canvas.delete("all")
            self.canvas.create_text(20, 20, anchor="nw", text="(cannot be drawn: the file does not parse)")
