"""A list of config sections (the watched folders): a table to pick one, a generated form to edit it.

The items are kept as data (one dict per item, as in the file); the form shows the selected one
and writes every change straight back, so switching items loses nothing and the list is always
ready to be collected. Problems for items that are not on screen mark their line in the table.
"""

from __future__ import annotations

import copy
import tkinter as tk
from tkinter import ttk
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .forms import FieldRow, FormContext, ModelForm, field_specs
from .widgets import ERROR_FG, HELP_FG


class ModelListEditor(ttk.Frame):
    """Add, duplicate, remove and edit the items of ``path`` (``"intake"``), each a ``model``."""

    def __init__(self, parent: tk.Misc, model: type[BaseModel], path: str, ctx: FormContext) -> None:
        super().__init__(parent)
        self.model = model
        self.path = path
        self.ctx = ctx
        self.items: list[dict[str, Any]] = []
        self.selected: int | None = None
        self.problems: dict[str, str] = {}
        #: Called with the index shown (None: none) after every selection: a page that adds live
        #: information about the item on screen (the Intake page's links note) follows it.
        self.on_select: list[Callable[[int | None], None]] = []
        specs = field_specs(model)
        # The table shows the required plain fields (for a watched folder: name, watch, converter).
        self.columns = [s.key for s in specs if s.required and s.kind in ("str", "choice")][:4] or \
            [s.key for s in specs if s.kind in ("str", "choice")][:3]
        self._specs = {s.key: s for s in specs}

        left = ttk.Frame(self)
        left.grid(row=0, column=0, sticky="nsew", padx=(0, 10))
        self.table = ttk.Treeview(left, columns=self.columns, show="headings", height=8, selectmode="browse")
        for key in self.columns:
            self.table.heading(key, text=key.replace("_", " "))
            self.table.column(key, width=130, stretch=True)
        self.table.tag_configure("problem", foreground=ERROR_FG)
        self.table.grid(row=0, column=0, columnspan=3, sticky="nsew")
        self.table.bind("<<TreeviewSelect>>", self._picked)
        self.add_button = ttk.Button(left, text="Add", command=self.add)
        self.add_button.grid(row=1, column=0, sticky="ew", pady=(6, 0))
        self.copy_button = ttk.Button(left, text="Duplicate", command=self.duplicate)
        self.copy_button.grid(row=1, column=1, sticky="ew", pady=(6, 0), padx=4)
        self.remove_button = ttk.Button(left, text="Remove", command=self.remove)
        self.remove_button.grid(row=1, column=2, sticky="ew", pady=(6, 0))
        self.empty_note = ttk.Label(left, text="", foreground=HELP_FG, wraplength=380)
        self.empty_note.grid(row=2, column=0, columnspan=3, sticky="w", pady=(6, 0))
        left.rowconfigure(0, weight=1)

        self.editor = ttk.LabelFrame(self, text="", padding=(10, 4))
        self.editor.grid(row=0, column=1, sticky="nsew")
        self.editor.columnconfigure(1, weight=1)
        inner_ctx = FormContext(ctx.dialogs, ctx.base_dir, self._form_changed)
        self.form = ModelForm(self.editor, model, f"{path}[0]", inner_ctx, embed=True)
        self.columnconfigure(1, weight=1)
        self.rowconfigure(0, weight=1)
        self._show_editor(False)

    # ------------------------------------------------------------------ data

    def load(self, items: list[Any]) -> None:
        self.items = [copy.deepcopy(i) if isinstance(i, dict) else {} for i in items]
        self.selected = None
        self._refresh_table()
        self.select(0 if self.items else None)

    def collect(self) -> list[dict[str, Any]]:
        self._store()
        return copy.deepcopy(self.items)

    def _store(self) -> None:
        if self.selected is not None and self.selected < len(self.items):
            self.items[self.selected] = self.form.collect()

    # ------------------------------------------------------------------ actions

    def select(self, index: int | None) -> None:
        """Show item ``index`` in the form (None: no item)."""
        self._store()
        self.selected = index
        if index is None:
            self._show_editor(False)
            if self.table.selection():
                self.table.selection_remove(*self.table.selection())
            self._selected_hooks()
            return
        self.form.set_path(f"{self.path}[{index}]")
        self.form.load(self.items[index])
        self._mark_form()
        self._show_editor(True)
        iid = str(index)
        if self.table.selection() != (iid,):
            self.table.selection_set(iid)
        self.table.see(iid)
        self._selected_hooks()

    def _selected_hooks(self) -> None:
        for hook in self.on_select:
            hook(self.selected)

    def add(self) -> None:
        """A new item: required fields with examples get the first one; a ``name`` is made unique."""
        item: dict[str, Any] = {}
        for key, spec in self._specs.items():
            field = self.model.model_fields[spec.name]
            if spec.required and field.examples:
                item[key] = field.examples[0]
        if "name" in self._specs:
            taken = {str(i.get("name")) for i in self.collect()}
            base = str(item.get("name") or self.path.rsplit(".", 1)[-1] or "item")
            n = len(self.items) + 1
            while f"{base}-{n}" in taken:
                n += 1
            item["name"] = f"{base}-{n}"
        self._store()
        self.items.append(item)
        self._refresh_table()
        self.select(len(self.items) - 1)
        self.ctx.on_change()

    def duplicate(self) -> None:
        if self.selected is None:
            return
        self._store()
        item = copy.deepcopy(self.items[self.selected])
        if "name" in item:
            taken = {str(i.get("name")) for i in self.items}
            n = 2
            while f"{item['name']}-{n}" in taken:
                n += 1
            item["name"] = f"{item['name']}-{n}"
        self.items.append(item)
        self._refresh_table()
        self.select(len(self.items) - 1)
        self.ctx.on_change()

    def remove(self) -> None:
        if self.selected is None:
            return
        index = self.selected
        self.selected = None  # nothing to store: the item goes
        del self.items[index]
        self._refresh_table()
        self.select(min(index, len(self.items) - 1) if self.items else None)
        self.ctx.on_change()

    def field(self, dotted: str) -> FieldRow:
        return self.form.field(dotted)

    # ------------------------------------------------------------------ problems

    def mark(self, problems: dict[str, str]) -> set[str]:
        """Problems under this list (full path → message): lines in the table, fields in the form.

        Returns the paths it placed (every one under an item of this list)."""
        self.problems = {p: m for p, m in problems.items() if p.startswith(self.path + "[")}
        for index in range(len(self.items)):
            prefix = f"{self.path}[{index}]"
            bad = any(p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "[")
                      for p in self.problems)
            self.table.item(str(index), tags=("problem",) if bad else ())
        self._mark_form()
        return set(self.problems)

    @property
    def items_with_problems(self) -> list[int]:
        return [i for i in range(len(self.items)) if "problem" in self.table.item(str(i), "tags")]

    def _mark_form(self) -> None:
        if self.selected is None:
            return
        self.form.mark(self.problems)

    # ------------------------------------------------------------------ inside

    def _picked(self, _event: tk.Event) -> None:
        chosen = self.table.selection()
        if not chosen:
            return
        index = int(chosen[0])
        if index != self.selected:
            self.select(index)

    def _form_changed(self) -> None:
        self._store()
        if self.selected is not None:
            self._update_line(self.selected)
        self.ctx.on_change()

    def _refresh_table(self) -> None:
        self.table.delete(*self.table.get_children())
        for index in range(len(self.items)):
            self.table.insert("", "end", iid=str(index), values=self._line(index))
        self.empty_note.configure(text="" if self.items else f"No {self.path} yet — press Add.")

    def _update_line(self, index: int) -> None:
        self.table.item(str(index), values=self._line(index))

    def _line(self, index: int) -> list[str]:
        item = self.items[index]
        return [str(item.get(key, "")) for key in self.columns]

    def _show_editor(self, visible: bool) -> None:
        if visible:
            self.editor.configure(text=f"{self.path}[{self.selected}]")
            self.editor.grid()
        else:
            self.editor.grid_remove()
