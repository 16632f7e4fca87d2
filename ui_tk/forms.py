"""Forms generated from the pydantic config schema: a new config field appears without new widget code.

Each field of a section model becomes one row: a label, an input chosen from the field's type
(check box for bool, drop-down for a ``Literal``, masked entry with a reveal toggle for a
``SecretStr``, entry for text, numbers, sizes and lists, a nested frame for a sub-section, a list
editor for a list of sections), a folder or file chooser for path fields, the field's description
with its bounds and default as help, and an error line.

The form does not judge values: it hands what was typed to the schema (``"abc"`` for a number
stays ``"abc"``) and shows the schema's own message at the field it names. Keys the person never
touched and the file never had stay out of the collected data, so a saved file keeps its
defaults implicit.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import tkinter as tk
from tkinter import ttk

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from ..engine.convert.api import BUILTIN, converter_patterns, load_converter
from ..schemas.config import ByteSize
from .dialogs import Dialogs
from .wrap import WrapFollower
from .wording import label
from .widgets import ERROR_FG, HELP_FG, Tooltip

_REQUIRED = object()


@dataclass
class FormContext:
    """What every form needs from the window: dialogs for the choosers, the config's folder, a change hook."""

    dialogs: Dialogs
    base_dir: Path
    on_change: Callable[[], None]


@dataclass
class FieldSpec:
    """What the schema says about one field, in the terms a form needs."""

    name: str
    key: str
    kind: str  # bool|choice|int|float|str|secret|size|strlist|mapping|section|modellist|yaml
    optional: bool
    required: bool
    default: Any
    description: str
    bounds: str
    choices: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    model: type[BaseModel] | None = None
    path_kind: str | None = None  # folder|file
    title: str | None = None  # the schema's own title, when it has one


# ------------------------------------------------------------------------------------------ schema → specs

def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return _strip_annotated(args[0]), True
    return tp, False


def _kind(tp: Any) -> tuple[str, tuple[str, ...], type[BaseModel] | None]:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "bool", (), None
    if origin is Literal:
        return "choice", tuple(str(a) for a in typing.get_args(tp)), None
    if isinstance(tp, type):
        if issubclass(tp, ByteSize):
            return "size", (), None
        if issubclass(tp, SecretStr):
            return "secret", (), None
        if issubclass(tp, BaseModel):
            return "section", (), tp
        if tp is int:
            return "int", (), None
        if tp is float:
            return "float", (), None
        if tp is str:
            return "str", (), None
    if origin is list:
        item = _strip_annotated((typing.get_args(tp) or (Any,))[0])
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "modellist", (), item
        if item is str:
            return "strlist", (), None
    if origin is dict or tp is dict:
        return "mapping", (), None
    return "yaml", (), None


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bounds(field: FieldInfo) -> str:
    parts: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f"more than {_number(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f"at least {_number(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"less than {_number(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"at most {_number(item.le)}")
        elif isinstance(item, annotated_types.MaxLen) and item.max_length < 1000:
            parts.append(f"at most {item.max_length} characters")
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "minimum" in extra and not parts:
        parts.append(f"at least {extra['minimum']}")
    return ", ".join(parts)


def _path_kind(field: FieldInfo) -> str | None:
    """Folder or file chooser: ``json_schema_extra={"ui": "folder"|"file"}``, else the description says."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if extra.get("ui") in ("folder", "file"):
        return str(extra["ui"])
    text = (field.description or "").lower()
    if text.startswith("folder"):
        return "folder"
    if re.search(r"\b(pem|certificate) file\b|\bfile of\b", text):
        return "file"
    return None


def field_specs(model: type[BaseModel]) -> list[FieldSpec]:
    """One spec per field of ``model``, in declaration (file) order."""
    specs: list[FieldSpec] = []
    for name, field in model.model_fields.items():
        tp, optional = _unwrap_optional(field.annotation)
        kind, choices, sub = _kind(tp)
        required = field.is_required()
        default = _REQUIRED if required else field.get_default(call_default_factory=True)
        examples = tuple(str(e) for e in (field.examples or []) if isinstance(e, (str, int, float)))
        specs.append(FieldSpec(
            name=name, key=field.alias or name, kind=kind, optional=optional, required=required,
            default=default, description=(field.description or "").strip(), bounds=_bounds(field),
            choices=choices, suggestions=examples if kind == "str" and len(examples) >= 3 else (),
            model=sub, path_kind=_path_kind(field) if kind == "str" else None, title=field.title,
        ))
    return specs


# ------------------------------------------------------------------------------------------ value ↔ text

def to_text(kind: str, value: Any) -> str:
    """How a value (from the file, or a default) reads in an entry."""
    if value is None or value is _REQUIRED:
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "size":
        return value.human() if isinstance(value, ByteSize) else str(value)
    if kind == "secret":
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if kind in ("int", "float"):
        return _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    if kind == "strlist":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind in ("mapping", "yaml"):
        if isinstance(value, str) and kind == "yaml":
            return value
        return str(yaml.safe_dump(value, default_flow_style=True, width=10_000)).strip().removesuffix("...").strip()
    return str(value)


def from_text(kind: str, text: str, optional: bool) -> Any:
    """What was typed, as the value to hand to the schema (which has the last word and the message)."""
    stripped = text.strip()
    if kind == "secret":
        return text if text.strip() else None
    if kind in ("int", "float"):
        if not stripped:
            return None
        for convert in (int, float):
            try:
                return convert(stripped)
            except ValueError:
                continue
        return stripped
    if kind == "size":
        if not stripped:
            return None
        return int(stripped) if stripped.isdigit() else stripped
    if kind == "strlist":
        return [part.strip() for part in stripped.split(",") if part.strip()]
    if kind in ("mapping", "yaml"):
        if not stripped:
            return None if optional else ({} if kind == "mapping" else None)
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            return stripped
    if kind == "str":
        return stripped if stripped or not optional else None
    return stripped


# ------------------------------------------------------------------------------------------ rows

class FieldRow:
    """One field on screen: input, help and error line. ``value()`` is what goes into the data."""

    def __init__(self, form: ModelForm, spec: FieldSpec, row: int) -> None:
        self.form = form
        self.spec = spec
        self.touched = False
        self.present = False
        self.original: Any = None
        self._loading = False
        self.error: str | None = None
        parent = form.grid_parent
        self.label = ttk.Label(parent, text=label(form.full_path(spec.key), spec.key, spec.title))
        self.label.grid(row=row, column=0, sticky="nw", padx=(0, 10), pady=(6, 0))
        self.cell = ttk.Frame(parent)
        self.cell.grid(row=row, column=1, sticky="ew", pady=(4, 0))
        self.cell.columnconfigure(0, weight=1)
        self.var: tk.Variable
        self.widget: ttk.Entry | ttk.Checkbutton  # a Combobox is an Entry
        self.reveal_var: tk.BooleanVar | None = None
        self.default_note: str | None = None  # the effective default, when another field decides it
        self._build()
        help_text = self.help_text()
        self.help = ttk.Label(parent, text=help_text, foreground=HELP_FG, wraplength=560, justify="left",
                              font=("TkDefaultFont", 8))
        self.help.grid(row=row + 1, column=1, sticky="w")
        self.error_label = ttk.Label(parent, text="", foreground=ERROR_FG, wraplength=560, justify="left")
        self.error_label.grid(row=row + 2, column=1, sticky="w")
        self.error_label.grid_remove()
        self.error_label.grid_configure(pady=(0, 2))
        # Help and error lines wrap at the width the column has, not at a fixed 560 px (clipped or ragged).
        self._wrap = WrapFollower(self.help, self.error_label)
        self.cell.bind("<Configure>", self._resized, add="+")
        self.widget.bind("<FocusOut>", self._place_error_line, add="+")
        self.shown = True
        Tooltip(self.label, f"{form.full_path(spec.key)}\n{help_text}")
        self.var.trace_add("write", self._changed)

    def _resized(self, event: tk.Event) -> None:
        self._wrap.follow(int(event.width))

    def show(self, visible: bool) -> None:
        """Show or hide the whole row (a field that does not apply: move_to unless after is move)."""
        if visible == self.shown:
            return
        self.shown = visible
        for widget in (self.label, self.cell, self.help):
            if visible:
                widget.grid()
            else:
                widget.grid_remove()
        if not visible:
            self.error_label.grid_remove()
        elif self.error:
            self.error_label.grid()

    # -------------------------------------------------------------- building

    def _build(self) -> None:
        spec = self.spec
        if spec.kind == "bool":
            self.var = tk.BooleanVar(self.cell, value=False)
            checkbox = ttk.Checkbutton(self.cell, variable=self.var, text="yes")
            checkbox.grid(row=0, column=0, sticky="w")
            self.widget = checkbox
            # Clicking the field's label toggles it too, as in every settings dialog.
            self.label.bind("<Button-1>", lambda _e: checkbox.invoke())
            self.var.trace_add("write", lambda *_a: checkbox.configure(text="yes" if self.raw() else "no"))
            return
        self.var = tk.StringVar(self.cell, value="")
        if spec.kind == "choice":
            values = ("", *spec.choices) if spec.optional else spec.choices
            self.widget = ttk.Combobox(self.cell, textvariable=self.var, values=values, state="readonly", width=20)
            self.widget.grid(row=0, column=0, sticky="w")
            return
        if spec.suggestions:
            self.widget = ttk.Combobox(self.cell, textvariable=self.var, values=spec.suggestions, width=48)
        else:
            width = 14 if spec.kind in ("int", "float", "size") else 50
            self.widget = ttk.Entry(self.cell, textvariable=self.var, width=width)
        sticky = "w" if spec.kind in ("int", "float", "size") else "ew"
        self.widget.grid(row=0, column=0, sticky=sticky)
        if spec.kind == "secret" and isinstance(self.widget, ttk.Entry):
            self.widget.configure(show="•")
            self.reveal_var = tk.BooleanVar(self.cell, value=False)
            ttk.Checkbutton(self.cell, text="show", variable=self.reveal_var,
                            command=self._reveal).grid(row=0, column=1, padx=(6, 0))
        if spec.path_kind:
            ttk.Button(self.cell, text="Browse…", command=self._browse).grid(row=0, column=2, padx=(6, 0))

    def help_text(self) -> str:
        spec = self.spec
        notes = [spec.bounds] if spec.bounds else []
        if spec.kind == "strlist":
            notes.append("separate several with commas")
        if spec.kind in ("mapping", "yaml"):
            notes.append("YAML, e.g. {key: value}")
        if spec.required:
            notes.append("required")
        elif self.default_note:
            notes.append(f"default {self.default_note}")
        elif spec.default is not None and spec.kind not in ("section", "modellist"):
            default = ("yes" if spec.default else "no") if spec.kind == "bool" else to_text(spec.kind, spec.default)
            if default and spec.kind != "secret":
                notes.append(f"default {default}")
        elif spec.optional:
            notes.append("may be left empty")
        text = spec.description
        return f"{text} ({'; '.join(notes)})" if notes else text

    def set_default_note(self, note: str | None) -> None:
        """Say what applies when the field is left as it is ("*.json, from the wsjf converter")."""
        if note != self.default_note:
            self.default_note = note
            self.help.configure(text=self.help_text())

    def raw(self) -> Any:
        """What the input holds right now (text, or True/False for a checkbox)."""
        return self.var.get()  # type: ignore[no-untyped-call]  # tkinter's Variable.get is untyped

    def _reveal(self) -> None:
        assert self.reveal_var is not None and isinstance(self.widget, ttk.Entry)
        self.widget.configure(show="" if self.reveal_var.get() else "•")

    def _browse(self) -> None:
        base = self.form.ctx.base_dir
        current = str(self.raw()).strip()
        initial = str((base / current).resolve()) if current else str(base)
        title = f"Choose: {self.label.cget('text')}"
        if self.spec.path_kind == "folder":
            chosen = self.form.ctx.dialogs.ask_directory(title, initial)
        else:
            chosen = self.form.ctx.dialogs.ask_file(title, str(Path(initial).parent))
        if chosen:
            self.var.set(relative_to(chosen, base))

    # -------------------------------------------------------------- values

    def load(self, present: bool, value: Any) -> None:
        self._loading = True
        try:
            self.present = present
            self.original = value
            self.touched = False
            # Left out, with an effective default decided elsewhere (patterns: the converter's), the
            # entry stays empty and the help says what applies — never a "*" the service will not use.
            shown = value if present else (None if self.default_note else self.spec.default)
            if self.spec.kind == "bool":
                self.var.set(bool(shown) if isinstance(shown, bool) else False)
            else:
                self.var.set(to_text(self.spec.kind, shown))
            if self.reveal_var is not None:
                self.reveal_var.set(False)
                self._reveal()
        finally:
            self._loading = False

    def value(self) -> Any:
        """The value for the data: as loaded when untouched (nothing lost in a round trip), else as typed."""
        if not self.touched and self.present:
            return self.original
        if self.spec.kind == "bool":
            return bool(self.raw())
        return from_text(self.spec.kind, str(self.raw()), self.spec.optional)

    def include(self) -> bool:
        """Whether the key belongs in the data: written in the file, typed by the person, or required."""
        if self.spec.optional and self.spec.default is None and self.value() is None:
            return False
        return self.present or self.touched or self.spec.required

    def set(self, value: Any) -> None:
        """Set as if typed (tests and choosers): bool for check boxes, text otherwise."""
        self.var.set(value)

    def _changed(self, *_args: Any) -> None:
        if self._loading:
            return
        self.touched = True
        self.form.ctx.on_change()

    # -------------------------------------------------------------- errors

    def mark(self, message: str | None) -> None:
        """Show or clear the field's problem. While the person types in it, the error line keeps its
        place (shown or not) until they leave the field: lines that come and go with each key would
        move the fields under the mouse. The field and its label turn red or back at once."""
        self.error = message
        self.error_label.configure(text=message or "")
        self.label.configure(foreground=ERROR_FG if message else "")
        self.widget.state(["invalid" if message else "!invalid"])
        if not self._has_focus():
            self._place_error_line()

    def _has_focus(self) -> bool:
        try:
            return self.widget.focus_get() is self.widget
        except (KeyError, tk.TclError):  # focus in a dialog or a destroyed widget
            return False

    def _place_error_line(self, _event: tk.Event | None = None) -> None:
        if self.error and self.shown:
            self.error_label.grid()
        else:
            self.error_label.grid_remove()

    @property
    def invalid(self) -> bool:
        return self.error is not None


def _nested_frame(form: ModelForm, spec: FieldSpec, row: int, *, stretch_column: int) -> ttk.LabelFrame:
    """The titled frame a nested section or list of sections sits in, spanning the form's width."""
    assert spec.model is not None
    frame = ttk.LabelFrame(form.grid_parent, text=spec.key.replace("_", " "), padding=(10, 4))
    frame.grid(row=row, column=0, columnspan=2, sticky="ew", pady=(10, 0))
    frame.columnconfigure(stretch_column, weight=1)
    return frame


class SectionRow:
    """A sub-section (``upload.retry``): a framed nested form."""

    def __init__(self, form: ModelForm, spec: FieldSpec, row: int) -> None:
        self.form, self.spec, self.present = form, spec, False
        frame = _nested_frame(form, spec, row, stretch_column=1)
        assert spec.model is not None  # checked by _nested_frame; narrows the type here
        if spec.description:
            ttk.Label(frame, text=spec.description, foreground=HELP_FG, wraplength=640).grid(
                row=0, column=0, columnspan=2, sticky="w")
        self.sub = ModelForm(frame, spec.model, form.full_path(spec.key), form.ctx, first_row=1, embed=True)

    def load(self, present: bool, value: Any) -> None:
        self.present = present
        self.sub.load(value if present and isinstance(value, dict) else None)

    def value(self) -> dict[str, Any]:
        return self.sub.collect()

    def include(self) -> bool:
        return self.present or bool(self.value())


class ListRow:
    """A list of sections inside a form (none today besides ``intake``, which has its own page)."""

    def __init__(self, form: ModelForm, spec: FieldSpec, row: int) -> None:
        from .model_list import ModelListEditor

        self.form, self.spec, self.present = form, spec, False
        frame = _nested_frame(form, spec, row, stretch_column=0)
        assert spec.model is not None  # checked by _nested_frame; narrows the type here
        self.editor = ModelListEditor(frame, spec.model, form.full_path(spec.key), form.ctx)
        self.editor.grid(row=0, column=0, sticky="nsew")

    def load(self, present: bool, value: Any) -> None:
        self.present = present
        self.editor.load(value if present and isinstance(value, list) else [])

    def value(self) -> list[dict[str, Any]]:
        return self.editor.collect()

    def include(self) -> bool:
        return self.present or bool(self.value())


Row = FieldRow | SectionRow | ListRow


# ------------------------------------------------------------------------------------------ the form

class ModelForm:
    """The rows of one section model at ``path`` (``"server"``, ``"upload.retry"``, ``"intake[2]"``).

    ``exclude`` leaves fields out (shown on other pages); the form lays itself out in ``parent``'s
    grid, two columns (label, input), starting at ``first_row``.
    """

    def __init__(self, parent: tk.Misc, model: type[BaseModel], path: str, ctx: FormContext, *,
                 exclude: tuple[str, ...] = (), first_row: int = 0, embed: bool = False) -> None:
        self.model = model
        self.path = path
        self.ctx = ctx
        self.grid_parent: tk.Widget
        if embed:
            assert isinstance(parent, tk.Widget)
            self.grid_parent = parent
        else:
            self.grid_parent = ttk.Frame(parent)
            self.grid_parent.columnconfigure(1, weight=1)
        self.frame = self.grid_parent
        self.rows: dict[str, Row] = {}
        self.extra: dict[str, Any] = {}
        row = first_row
        for spec in field_specs(model):
            if spec.key in exclude or spec.name in exclude:
                continue
            if spec.kind == "section":
                self.rows[spec.key] = SectionRow(self, spec, row)
                row += 1
            elif spec.kind == "modellist":
                self.rows[spec.key] = ListRow(self, spec, row)
                row += 1
            else:
                self.rows[spec.key] = FieldRow(self, spec, row)
                row += 3
        self._conditions()

    def _conditions(self) -> None:
        """Fields that apply only with a certain value of another: shown only then."""
        converter, patterns = self.rows.get("converter"), self.rows.get("patterns")
        if isinstance(converter, FieldRow) and isinstance(patterns, FieldRow):
            def effective(*_args: Any) -> None:
                patterns.set_default_note(converter_default_patterns(str(converter.raw()).strip()))

            converter.var.trace_add("write", effective)
            effective()
        after, move_to = self.rows.get("after"), self.rows.get("move_to")
        if isinstance(after, FieldRow) and isinstance(move_to, FieldRow):
            def update(*_args: Any) -> None:
                move_to.show(after.raw() == "move" or bool(str(move_to.raw()).strip()))

            after.var.trace_add("write", update)
            update()

    def full_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def set_path(self, path: str) -> None:
        """The form now edits another list item (``intake[3]``)."""
        self.path = path
        for row in self.rows.values():
            if isinstance(row, SectionRow):
                row.sub.set_path(self.full_path(row.spec.key))
            elif isinstance(row, ListRow):
                row.editor.path = self.full_path(row.spec.key)

    def load(self, data: dict[str, Any] | None) -> None:
        """Show ``data`` (the section as in the file); missing keys show their defaults."""
        data = data if isinstance(data, dict) else {}
        for key, row in self.rows.items():
            row.load(key in data, data.get(key))
        self.extra = {k: v for k, v in data.items() if k not in self.rows}
        self.mark({})

    def collect(self) -> dict[str, Any]:
        """The section as data for the schema: keys written, typed or required; unknown keys kept."""
        out: dict[str, Any] = dict(self.extra)
        for key, row in self.rows.items():
            if row.include():
                out[key] = row.value()
        return out

    def field(self, dotted: str) -> FieldRow:
        """The row of ``key`` or ``sub.key`` (tests and pages use it)."""
        head, _, rest = dotted.partition(".")
        row = self.rows[head]
        if rest:
            assert isinstance(row, SectionRow), f"{head} is not a section"
            return row.sub.field(rest)
        assert isinstance(row, FieldRow), f"{head} is a section"
        return row

    def field_rows(self) -> Iterator[tuple[str, FieldRow]]:
        """(full path, row) for every field on screen, nested sections included."""
        for key, row in self.rows.items():
            if isinstance(row, FieldRow):
                yield self.full_path(key), row
            elif isinstance(row, SectionRow):
                yield from row.sub.field_rows()

    def list_editors(self) -> Iterator[Any]:
        for row in self.rows.values():
            if isinstance(row, ListRow):
                yield row.editor
            elif isinstance(row, SectionRow):
                yield from row.sub.list_editors()

    def mark(self, problems: dict[str, str]) -> set[str]:
        """Show ``problems`` (full path → message) at their fields, clear the others; return the paths placed.

        A problem inside a field (``intake[0].patterns[1]``) is shown at that field, with the part
        of the path it adds.
        """
        rows = dict(self.field_rows())
        known = set(rows)
        found: dict[str, list[str]] = {}
        placed: set[str] = set()
        for path, message in problems.items():
            owner = owner_path(path, known)
            if owner is None:
                continue
            inner = path[len(owner):].lstrip(".")
            found.setdefault(owner, []).append(f"{inner}: {message}" if inner else message)
            placed.add(path)
        for path, row in rows.items():
            row.mark("\n".join(found[path]) if path in found else None)
        return placed

    @property
    def invalid_fields(self) -> list[str]:
        return [path for path, row in self.field_rows() if row.invalid]


def converter_default_patterns(spec: str) -> str:
    """The patterns the service uses when ``patterns`` is left out: the converter's own. Only a built-in
    is looked at here (importing a custom converter would run its code in the window)."""
    if spec in BUILTIN:
        try:
            return f"{', '.join(converter_patterns(load_converter(spec)))}, from the {spec} converter"
        except Exception:  # noqa: BLE001 - the help text must not break the form
            return "the converter's own patterns"
    return "the converter's own patterns (or * when it names none)"


def relative_to(chosen: str, base: Path) -> str:
    """A chosen path as the file should hold it: relative to the config's folder when inside it."""
    try:
        rel = os.path.relpath(chosen, base)
    except ValueError:  # another drive on Windows
        return chosen
    if rel == ".":
        return "."
    return rel if not rel.startswith("..") else chosen


# ------------------------------------------------------------------------------------------ problems

_PROBLEM = re.compile(r"^(?P<path>[^\s:]+(?:\[\d+\])*[^\s:]*): (?P<message>.*)$", re.DOTALL)


def split_problem(line: str) -> tuple[str, str]:
    """``"server.timeout_s: -1 is not allowed — must be greater than 0"`` → (path, message)."""
    match = _PROBLEM.match(line)
    if not match:
        return "", line
    return match["path"], match["message"]


def owner_path(path: str, known: set[str]) -> str | None:
    """The longest known path that ``path`` is inside (``intake[0].patterns[1]`` → ``intake[0].patterns``)."""
    candidate = path
    while candidate:
        if candidate in known:
            return candidate
        cut = max(candidate.rfind("."), candidate.rfind("["))
        if cut <= 0:
            return None
        candidate = candidate[:cut]
    return None
