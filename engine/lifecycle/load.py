"""Reading a lifecycle file: bounded YAML, the schema, and a line number for every problem.

A site's lifecycle file is input from outside the engine, so it is read like hostile input: a
size limit, a nesting limit, a node limit, and no anchors or aliases (a lifecycle never needs
them, and they are what a "billion laughs" file multiplies). The limits are checked on the
text's event stream before anything is composed (``engine/yaml_limits.py``, shared with the
config), so a hostile file is refused after reading at most ``MAX_BYTES`` — in milliseconds, not
after building what it describes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import MachineDefinitionError
from ..yaml_limits import YamlBounds, YamlTooComplex, check_yaml_limits
from ...schemas.machine import ANY_STATE, MachineDef, StateDef, TransitionDef

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Located", "Source", "line_of", "load_definition",
           "parse", "read_source", "resolve", "resolve_source", "shipped_names"]

# stationflow.engine.lifecycle -> stationflow.machines, where the shipped YAML lives
MACHINES_PACKAGE = __package__.split(".")[0] + ".machines"
FIX_HINT = "fix each problem listed; `stationflow machines validate` re-checks"

#: The shipped files are 2-5 KB; a lifecycle of 256 states still fits. Anything larger is refused
#: before it is parsed.
MAX_BYTES = 64 * 1024
#: A lifecycle nests four levels (states → state → outcomes → value); 16 leaves room for comments
#: and flow style while refusing a 100,000-deep file at the 17th level.
MAX_DEPTH = 16
#: Scalars, sequences and mappings together; the shipped files have 100-250. Composing is pure
#: Python (50-100 µs a node measured on a busy 2-core station), so this also bounds the time an
#: accepted file takes to compose: 2,000 nodes in about 0.25 s (counting them is libyaml's, faster).
MAX_NODES = 2_000


@dataclass(frozen=True)
class Source:
    """Where a definition came from: a label for messages, the text, and its sha256 (shown by
    ``status`` and ``machines list`` so a person can tell which file is in force)."""

    label: str
    text: str
    expected: str | None  # the name it was asked for (a site file must carry that name)
    shipped: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Located:
    """A parsed definition plus a way to find the line of any part of it."""

    definition: MachineDef
    label: str
    root: yaml.Node | None


#: The bounds of a lifecycle file (engine/yaml_limits.py does the checking for configs and lifecycles).
BOUNDS = YamlBounds(max_bytes=MAX_BYTES, max_depth=MAX_DEPTH, max_nodes=MAX_NODES, max_aliases=0, anchors=False)
_DEEP = f"nested more than {MAX_DEPTH} levels deep — a lifecycle nests four (states, a state, its outcomes, a value)"


def _bound_problem(exc: YamlTooComplex) -> str:
    """A broken bound in a lifecycle's words: what it is, and what to do."""
    where = f"{exc.line}: " if exc.line else " "
    if exc.bound == "bytes":
        return (f" {exc.found} bytes, more than the {MAX_BYTES} a lifecycle file may have — a lifecycle is "
                "a few KB; check that this is the right file")
    if exc.bound == "nodes":
        return f"{where}more than {MAX_NODES} YAML nodes — a lifecycle is a few hundred; this file is not one"
    if exc.bound in ("anchors", "aliases"):
        return (f"{where}anchors and aliases (&name / *name) are not allowed in lifecycle YAML — write each "
                "state and transition out in full")
    return f"{where}{_DEEP}"


def line_of(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the YAML node at ``loc`` (a pydantic-style path), or of its nearest parent."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            if part == "[key]":
                return line
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> Iterable[str]:
    """PyYAML keeps the last of two equal keys without a word; a lost state must not go unseen.
    (Linear in the file: aliases, which could make this walk exponential, are refused earlier.)"""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            here = key.start_mark.line + 1
            if name in seen:
                yield (f"{here}: {path + name}: duplicate key '{name}' (first at line {seen[name]}) "
                       "— YAML would silently keep only the last one; merge or rename them")
            else:
                seen[name] = here
            yield from _duplicate_keys(value, f"{path}{name}.")
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path.rstrip('.')}#{index + 1}.")


def _field_path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            out += " (name)"
        elif isinstance(part, int):
            out += f" #{part + 1}"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(loc: Sequence[Any]) -> type[BaseModel]:
    if len(loc) >= 2 and loc[0] == "states":
        return StateDef
    if len(loc) >= 2 and loc[0] == "transitions":
        return TransitionDef
    return MachineDef


def _explain(error: dict[str, Any]) -> str:
    """Turn a pydantic error into a sentence that says what to write instead."""
    loc, kind = error["loc"], error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        what = {StateDef: "a state", TransitionDef: "a transition"}.get(model, "a lifecycle")
        return (f"unknown key '{loc[-1]}' — lifecycle YAML has no callbacks or other keys; "
                f"allowed keys for {what}: {', '.join(model.model_fields)}")
    if kind == "string_pattern_mismatch":
        if error.get("input") == ANY_STATE:
            return "'*' may only be used as a transition source"
        return (f"{error.get('input')!r} is not a valid name — use lowercase letters, digits and _, "
                "starting with a letter")
    if kind == "missing":
        return "required key is missing — add it"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return ("YAML read this as true/false (on/off/yes/no are booleans in YAML) — "
                "quote it or choose another name")
    if kind == "literal_error" and loc and loc[-1] == "by":
        return "by is engine (the default) or operator (fired with `stationflow queue fire`)"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _compose(text: str, label: str) -> tuple[yaml.Node | None, Any]:
    try:
        check_yaml_limits(text, BOUNDS)
    except YamlTooComplex as exc:
        what = "too large for a lifecycle" if exc.bound == "bytes" else "refused"
        raise MachineDefinitionError(f"{label} is {what}", problems=[f"{label}:{_bound_problem(exc)}"],
                                     hint=FIX_HINT) from None
    loader: yaml.SafeLoader | None = None
    try:
        # within the bounds just checked: small, shallow, no aliases; its reader refuses control
        # characters already, so it is made inside the error handling
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise MachineDefinitionError(
            f"{label} is not valid YAML", problems=[f"{where}: YAML syntax error: {what}"],
            hint="fix the YAML syntax at the line shown") from None
    except yaml.YAMLError as exc:
        raise MachineDefinitionError(f"{label} is not valid YAML",
                                     problems=[f"{label}: YAML error: {' '.join(str(exc).split())}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return root, data


def parse(text: str, label: str) -> Located:
    """Bounded YAML, then the schema; every problem as ``file:line: problem — fix``."""
    root, data = _compose(text, label)
    problems = [f"{label}:{p}" for p in _duplicate_keys(root)]
    if not isinstance(data, dict):
        problems.append(f"{label}: the file must be a YAML mapping with the keys "
                        "name, initial, states and transitions")
        raise MachineDefinitionError(f"lifecycle {label} is invalid", problems=problems)
    definition: MachineDef | None = None
    try:
        definition = MachineDef.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            line = line_of(root, error["loc"])
            where = f"{label}:{line}" if line else label
            problems.append(f"{where}: {_field_path(error['loc'])}: {_explain(dict(error))}")
    if problems or definition is None:
        raise MachineDefinitionError(f"lifecycle {label} is invalid ({len(problems)} problem(s))",
                                     problems=problems, hint=FIX_HINT)
    return Located(definition, label, root)


def read_source(source: Path | str, text: str | None = None) -> tuple[str, str]:
    """(label, text) of a file, refusing one larger than a lifecycle can be before reading it all."""
    label = str(source)
    if text is None:
        try:
            with open(source, "rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise MachineDefinitionError(f"lifecycle file {label} does not exist",
                                         hint="check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MachineDefinitionError(f"cannot read lifecycle file {label}: {exc}") from None
    return label, text


def load_definition(source: Path | str, *, text: str | None = None) -> MachineDef:
    """Parse and schema-check one definition. ``text`` overrides reading ``source`` (which then
    only labels the messages). Invariants are *not* checked here — see ``check_invariants``."""
    label, text = read_source(source, text)
    return parse(text, label).definition


def shipped_names() -> list[str]:
    """Names of the lifecycles shipped in the ``machines`` package."""
    root = resources.files(MACHINES_PACKAGE)
    return sorted(entry.name[:-5] for entry in root.iterdir() if entry.name.endswith(".yaml"))


def _is_path(value: str | Path) -> bool:
    if isinstance(value, Path):
        return True
    return any(sep in value for sep in ("/", "\\")) or value.endswith((".yaml", ".yml"))


def resolve(name_or_path: str | Path, override_dirs: Sequence[Path | str] = ()) -> tuple[str, str, str | None]:
    """(label, text, expected name) of a definition — see :func:`resolve_source`."""
    source = resolve_source(name_or_path, override_dirs)
    return source.label, source.text, source.expected


def resolve_source(name_or_path: str | Path, override_dirs: Sequence[Path | str] = ()) -> Source:
    """The file a definition comes from: a path as given, or a bare name looked up in each
    override folder as ``<name>.yaml`` and then among the shipped definitions."""
    if _is_path(name_or_path):
        label, text = read_source(name_or_path)
        return Source(label, text, None, shipped=False)
    name = str(name_or_path)
    for folder in override_dirs:
        candidate = Path(folder) / f"{name}.yaml"
        if candidate.is_file():
            label, text = read_source(candidate)
            return Source(label, text, name, shipped=False)
    entry = resources.files(MACHINES_PACKAGE).joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise MachineDefinitionError(
            f"no lifecycle named '{name}'",
            hint=f"use one of: {', '.join(shipped_names())}, or give a path to a .yaml file")
    return Source(str(entry), entry.read_text(encoding="utf-8"), name, shipped=True)
