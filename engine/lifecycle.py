"""Lifecycles as data: load a ``machines/*.yaml`` file, check it is safe, build a state machine.

A site may edit or override a lifecycle (add a hold-for-approval state, say). What keeps such an
edit from losing reports is :func:`check_invariants`: every state reachable, no dead ends, actions
and waits only by name from the engine's :class:`Registry` (never a dotted import path — the
``transitions`` library would import and run whatever callable a string names), a state whose
action sends data entered only from durable states, a timeout on every working state.

The built ``transitions.Machine`` carries no callbacks at all: YAML strings are never handed to
it. One machine serves every model; the spool asks :meth:`Lifecycle.next_state` (a lookup in a
table precomputed from the machine) instead of registering thousands of report models.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from transitions import Machine, State

from .errors import IllegalTransition, MachineDefinitionError
from ..schemas.machine import ANY_STATE, MachineDef, StateDef, TransitionDef

__all__ = [
    "DEFAULT_REGISTRY",
    "ActionSpec",
    "Lifecycle",
    "Registry",
    "check_invariants",
    "load_definition",
    "load_lifecycle",
    "resolve",
    "shipped_names",
]


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class ActionSpec:
    """An action the engine knows how to run. ``sends_data`` marks actions that put a report on
    the wire: the state running one may only be entered from durable states."""

    name: str
    sends_data: bool
    doc: str


@dataclass(frozen=True)
class Registry:
    """The names a lifecycle YAML may use, and the triggers the engine's code fires per machine.

    ``required[name]`` lists the triggers the engine fires on a machine called ``name``; a
    definition lacking one would make the engine fail at run time, so it is refused at load time.
    """

    actions: dict[str, ActionSpec] = field(default_factory=dict)
    waits: dict[str, str] = field(default_factory=dict)
    required: dict[str, set[str]] = field(default_factory=dict)


def _actions(*specs: ActionSpec) -> dict[str, ActionSpec]:
    return {spec.name: spec for spec in specs}


DEFAULT_REGISTRY = Registry(
    actions=_actions(
        ActionSpec("upload", True, "POST the report to the WATS server"),
        ActionSpec("convert", False, "run the intake's converter on the copied source file"),
        ActionSpec("copy_source", False, "copy the source file into the data folder and fsync it"),
        ActionSpec("settle", False, "wait until the source file has stopped changing"),
        ActionSpec("probe", False, "check that the WATS server answers"),
    ),
    waits={
        "next_attempt": "until the report's next attempt time (retry backoff)",
        "backoff": "the supervisor's capped, jittered restart backoff",
        "settle_time": "the intake's settle time (settle_ms) for a new source file",
    },
    required={
        "report": {"send", "accepted", "rejected", "transient_error", "due", "retry",
                   "recover", "quarantine"},
        "conversion": {"settle", "changed", "copy", "copied", "convert", "converted", "reject", "defer", "vanished",
                       "finish", "timeout"},
        "task": {"start", "started", "crashed", "restart", "give_up", "stop", "stopped", "recycle"},
        "service": {"start", "started", "degrade", "recover", "drain", "drained", "fail", "reset"},
    },
)


# --------------------------------------------------------------------------- YAML + schema

_MACHINES_PACKAGE = __package__.rpartition(".")[0] + ".machines"  # stationflow.machines, shipped YAML
_FIX_HINT = "fix each problem listed; `stationflow machines validate` re-checks"


class _Located(NamedTuple):
    """A parsed definition plus a way to find the line of any part of it."""

    definition: MachineDef
    label: str
    root: yaml.Node | None


def _line_of(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
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
    """PyYAML keeps the last of two equal keys without a word; a lost state must not go unseen."""
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
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _parse(text: str, label: str) -> _Located:
    loader = yaml.SafeLoader(text)
    try:
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
                                     problems=[f"{label}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()

    problems = [f"{label}:{p}" for p in _duplicate_keys(root)]
    if not isinstance(data, dict):
        problems.append(f"{label}: the file must be a YAML mapping with the keys "
                        "name, initial, states and transitions")
        raise MachineDefinitionError(f"lifecycle {label} is invalid", problems=problems)
    try:
        definition = MachineDef.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            line = _line_of(root, error["loc"])
            where = f"{label}:{line}" if line else label
            problems.append(f"{where}: {_field_path(error['loc'])}: {_explain(error)}")
        definition = None
    if problems:
        raise MachineDefinitionError(f"lifecycle {label} is invalid ({len(problems)} problem(s))",
                                     problems=problems, hint=_FIX_HINT)
    return _Located(definition, label, root)


def _read(source: Path | str, text: str | None) -> tuple[str, str]:
    label = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MachineDefinitionError(f"lifecycle file {label} does not exist",
                                         hint="check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MachineDefinitionError(f"cannot read lifecycle file {label}: {exc}") from None
    return label, text


def load_definition(source: Path | str, *, text: str | None = None) -> MachineDef:
    """Parse and schema-check one definition. ``text`` overrides reading ``source`` (which then
    only labels the messages). Invariants are *not* checked here — see :func:`check_invariants`."""
    label, text = _read(source, text)
    return _parse(text, label).definition


# --------------------------------------------------------------------------- invariants

class _Violation(NamedTuple):
    loc: tuple[Any, ...]
    message: str


def _describe(t: TransitionDef) -> str:
    return f"transition '{t.trigger}' ({', '.join(t.source)} → {t.dest})"


def _expand(defn: MachineDef) -> list[tuple[int, TransitionDef, str]]:
    """(index, transition, source) for every declared source; ``*`` means every non-final state."""
    every = [name for name, state in defn.states.items() if not state.final]
    pairs: list[tuple[int, TransitionDef, str]] = []
    for index, t in enumerate(defn.transitions):
        seen: set[str] = set()
        for source in t.source:
            for name in (every if source == ANY_STATE else [source]):
                if name not in seen:
                    seen.add(name)
                    pairs.append((index, t, name))
    return pairs


def _registry_name(kind: str, value: str, known: Iterable[str], state: str) -> str | None:
    names = ", ".join(sorted(known)) or "(none)"
    if "." in value or ":" in value or "/" in value:
        return (f"state '{state}': {kind} '{value}' — dotted import paths are never allowed — use a "
                f"name from the engine's registry: {names}")
    if value not in known:
        return (f"state '{state}': {kind} '{value}' is not in the engine's registry — use one of: "
                f"{names}")
    return None


class _Graph(NamedTuple):
    """The expanded transitions of a definition, as the checks need them."""

    defn: MachineDef
    pairs: list[tuple[int, TransitionDef, str]]
    outgoing: dict[str, set[str]]  # state -> triggers that leave it


def _check_initial(g: _Graph) -> Iterator[_Violation]:
    """The initial state exists and is at rest: a crash before the first step loses nothing."""
    defn = g.defn
    if defn.initial not in defn.states:
        yield _Violation(("initial",), (
            f"initial state '{defn.initial}' is not declared under states — declare it or set "
            f"initial to one of: {', '.join(defn.states)}"))
    elif not defn.states[defn.initial].durable:
        yield _Violation(("states", defn.initial), (
            f"initial state '{defn.initial}' must be durable: true — a lifecycle starts at rest, "
            "so that a crash before its first transition loses nothing"))


def _check_references(g: _Graph) -> Iterator[_Violation]:
    """Transitions name only declared states."""
    for index, t in enumerate(g.defn.transitions):
        for name in [*t.source, t.dest]:
            if name != ANY_STATE and name not in g.defn.states:
                yield _Violation(("transitions", index), (
                    f"{_describe(t)} names undeclared state '{name}' — declare it under states "
                    "or fix the name"))


def _check_ambiguity(g: _Graph) -> Iterator[_Violation]:
    """Each (trigger, source) leads to exactly one state."""
    first: dict[tuple[str, str], int] = {}
    for index, t, source in g.pairs:
        key = (t.trigger, source)
        if first.setdefault(key, index) != index:
            other = g.defn.transitions[first[key]]
            yield _Violation(("transitions", index), (
                f"{_describe(t)} and {_describe(other)} both fire '{t.trigger}' from '{source}' — "
                "ambiguous: a trigger must lead to one state from each source; remove or rename one"))


def _check_state(name: str, state: StateDef, g: _Graph, registry: Registry) -> Iterator[_Violation]:
    """Registry names, and the rules that keep a working or waiting state from hanging."""
    where = ("states", name)
    if state.action is not None:
        problem = _registry_name("action", state.action, registry.actions, name)
        if problem:
            yield _Violation((*where, "action"), problem)
    if state.wait is not None:
        problem = _registry_name("wait", state.wait, registry.waits, name)
        if problem:
            yield _Violation((*where, "wait"), problem)
    if state.final and (state.action or state.wait):
        yield _Violation(where, (
            f"final state '{name}' has an action or wait — nothing runs once a lifecycle is "
            "over; remove it or drop final: true"))
    if state.action and state.wait:
        yield _Violation(where, (
            f"state '{name}' has both an action and a wait — a state either works or waits; "
            "split it into two states"))
    if state.action and state.durable:
        yield _Violation(where, (
            f"state '{name}' runs action '{state.action}' and is marked durable — work in "
            "flight is not at rest; drop durable: true (enter it from a durable state instead)"))
    if state.action:
        if state.timeout is None:
            yield _Violation(where, (
                f"state '{name}' runs action '{state.action}' without a timeout — add "
                "timeout: (e.g. 120s) and on_timeout: <trigger>, so the work cannot hang forever"))
        if state.on_timeout is None:
            yield _Violation(where, (
                f"state '{name}' runs action '{state.action}' without on_timeout — name the "
                "trigger the engine fires when the timeout expires"))
    elif state.timeout is not None or state.on_timeout is not None:
        yield _Violation(where, (
            f"state '{name}' has timeout/on_timeout but no action — only an action can time "
            "out; remove them or add an action"))
    if state.on_timeout and state.on_timeout not in g.outgoing[name]:
        yield _Violation((*where, "on_timeout"), (
            f"state '{name}': on_timeout '{state.on_timeout}' is not a transition out of "
            f"'{name}' — add {{trigger: {state.on_timeout}, source: {name}, dest: ...}}"))
    if state.wait and state.then is None:
        yield _Violation(where, (
            f"state '{name}' waits '{state.wait}' without then — name the trigger the engine "
            "fires when the wait is over"))
    if state.then and state.wait is None:
        yield _Violation(where, (
            f"state '{name}' has then '{state.then}' but no wait — add wait: <name> or remove then"))
    if state.then and state.then not in g.outgoing[name]:
        yield _Violation((*where, "then"), (
            f"state '{name}': then '{state.then}' is not a transition out of '{name}' — add "
            f"{{trigger: {state.then}, source: {name}, dest: ...}}"))


def _check_exits(g: _Graph) -> Iterator[_Violation]:
    """Final states are final; every other state has a way out."""
    for name, state in g.defn.states.items():
        if state.final:
            for index, t in enumerate(g.defn.transitions):
                if name in t.source:
                    yield _Violation(("transitions", index), (
                        f"{_describe(t)} leaves final state '{name}' — final means the lifecycle is "
                        "over and the engine may forget the model; drop final: true or the transition"))
        elif not g.outgoing[name]:
            yield _Violation(("states", name), (
                f"state '{name}' is a dead end: it is not final and no transition leaves it — add a "
                "transition out of it, or mark it final: true"))


def _check_reachable(g: _Graph) -> Iterator[_Violation]:
    """Every state can be reached from the initial state."""
    defn = g.defn
    if defn.initial not in defn.states:
        return
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for _, t, source in g.pairs:
        edges[source].add(t.dest)
    reached, todo = {defn.initial}, [defn.initial]
    while todo:
        for dest in edges[todo.pop()]:
            if dest not in reached:
                reached.add(dest)
                todo.append(dest)
    for name in defn.states:
        if name not in reached:
            yield _Violation(("states", name), (
                f"state '{name}' is unreachable from the initial state '{defn.initial}' — add a "
                "transition into it or remove it"))


def _check_save_before_send(g: _Graph, registry: Registry) -> Iterator[_Violation]:
    """A state whose action sends data is entered only from durable states."""
    states = g.defn.states
    for index, t, source in g.pairs:
        dest = states.get(t.dest)
        spec = registry.actions.get(dest.action) if dest and dest.action else None
        if spec and spec.sends_data and source in states and not states[source].durable:
            yield _Violation(("transitions", index), (
                f"{_describe(t)} enters '{t.dest}', whose action '{spec.name}' sends data, from "
                f"non-durable state '{source}' — data may only be sent from a state saved on disk: "
                "route it through a durable state first"))


def _check_required(g: _Graph, registry: Registry) -> Iterator[_Violation]:
    """The engine's code fires these triggers; a lifecycle without them would break it."""
    defined = {t.trigger for t in g.defn.transitions}
    for trigger in sorted(registry.required.get(g.defn.name, set()) - defined):
        yield _Violation(("transitions",), (
            f"machine '{g.defn.name}' has no transition for trigger '{trigger}', which the engine "
            f"fires — add a transition with trigger: {trigger}"))


def _violations(defn: MachineDef, registry: Registry) -> list[_Violation]:
    pairs = _expand(defn)
    outgoing: dict[str, set[str]] = collections.defaultdict(set)
    for _, t, source in pairs:
        outgoing[source].add(t.trigger)
    g = _Graph(defn, pairs, outgoing)
    out = [*_check_initial(g), *_check_references(g), *_check_ambiguity(g)]
    for name, state in defn.states.items():
        out.extend(_check_state(name, state, g, registry))
    out.extend(_check_exits(g))
    out.extend(_check_reachable(g))
    out.extend(_check_save_before_send(g, registry))
    out.extend(_check_required(g, registry))
    return out


def check_invariants(defn: MachineDef, registry: Registry = DEFAULT_REGISTRY) -> list[str]:
    """One message per violated invariant, naming the state or transition and the fix."""
    return [v.message for v in _violations(defn, registry)]


# --------------------------------------------------------------------------- the built machine

def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


class Lifecycle:
    """A checked definition and its ``transitions.Machine`` (no models, no callbacks).

    :meth:`next_state` is safe to call from many threads: it reads a table built once from the
    machine's events and never changed afterwards. :meth:`bind` attaches a long-lived model; the
    ``transitions`` machine itself is not thread-safe, so trigger bound models from one thread.
    """

    def __init__(self, definition: MachineDef, *, registry: Registry = DEFAULT_REGISTRY,
                 source: str = "<definition>") -> None:
        problems = check_invariants(definition, registry)
        if problems:
            raise MachineDefinitionError(f"lifecycle {source} is invalid ({len(problems)} problem(s))",
                                         problems=problems)
        self.definition = definition
        self.name = definition.name
        self.initial = definition.initial
        self.source = source
        self.registry = registry
        self.states: tuple[str, ...] = tuple(definition.states)
        self._pairs = _expand(definition)
        self.machine = Machine(
            model=None,
            states=[State(name, final=state.final) for name, state in definition.states.items()],
            transitions=[{"trigger": t.trigger, "source": source, "dest": t.dest}
                         for _, t, source in self._pairs],
            initial=definition.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            name=definition.name,
        )
        table: dict[tuple[str, str], str] = {}
        allowed: dict[str, list[str]] = {name: [] for name in self.states}
        for trigger, event in self.machine.events.items():
            for source, found in event.transitions.items():
                if found:
                    table[(source, trigger)] = found[0].dest
                    allowed[source].append(trigger)
        self._table = table
        self._allowed = {name: tuple(triggers) for name, triggers in allowed.items()}

    def __repr__(self) -> str:
        return f"<Lifecycle {self.name} from {self.source}: {len(self.states)} states>"

    def state(self, name: str) -> StateDef:
        try:
            return self.definition.states[name]
        except KeyError:
            raise KeyError(f"'{name}' is not a state of the {self.name} lifecycle "
                           f"(states: {', '.join(self.states)})") from None

    def is_durable(self, state: str) -> bool:
        return self.state(state).durable

    def is_final(self, state: str) -> bool:
        return self.state(state).final

    def next_state(self, source: str, trigger: str) -> str:
        """The state ``trigger`` leads to from ``source``; IllegalTransition if it is not allowed."""
        try:
            return self._table[(source, trigger)]
        except KeyError:
            raise self._illegal(source, trigger) from None

    def _illegal(self, source: str, trigger: str) -> IllegalTransition:
        if source not in self._allowed:
            return IllegalTransition(
                f"cannot {trigger} a {self.name} in state {source} — '{source}' is not a state of "
                f"the {self.name} lifecycle (states: {', '.join(self.states)})")
        allowed = ", ".join(self._allowed[source]) or f"nothing ({source} is final)"
        return IllegalTransition(
            f"cannot {trigger} a {self.name} in state {source} — allowed from here: {allowed}")

    def triggers_from(self, state: str) -> list[str]:
        if state not in self._allowed:
            raise KeyError(f"'{state}' is not a state of the {self.name} lifecycle")
        return list(self._allowed[state])

    def bind(self, model: object, *, initial: str | None = None) -> None:
        """Attach a long-lived model (the service, a task): ``model.trigger("x")`` then works and
        ``model.state`` is its state. Not for reports: ``add_model`` is linear in models."""
        start = initial or self.initial
        self.state(start)  # a clear error for an unknown state
        self.machine.add_model(model, initial=start)

    def unbind(self, model: object) -> None:
        self.machine.remove_model(model)

    def mermaid(self) -> str:
        """A Mermaid ``stateDiagram-v2``: durable states marked, final states lead to ``[*]``."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        for name, state in self.definition.states.items():
            notes = []
            if state.durable:
                notes.append("durable")
            if state.action:
                notes.append(f"action {state.action} (timeout {_seconds(state.timeout or 0)}"
                             f" → {state.on_timeout})")
            if state.wait:
                notes.append(f"wait {state.wait} (→ {state.then})")
            if notes:
                lines.append(f"    {name} : {', '.join(notes)}")
        for _, t, source in self._pairs:
            lines.append(f"    {source} --> {t.dest} : {t.trigger}")
        for name, state in self.definition.states.items():
            if state.final:
                lines.append(f"    {name} --> [*]")
        durable = [name for name, state in self.definition.states.items() if state.durable]
        if durable:
            lines.append("    classDef durable stroke-width:3px")
            lines.append(f"    class {','.join(durable)} durable")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- finding files

def shipped_names() -> list[str]:
    """Names of the lifecycles shipped in the ``machines`` package."""
    root = resources.files(_MACHINES_PACKAGE)
    return sorted(entry.name[:-5] for entry in root.iterdir() if entry.name.endswith(".yaml"))


def _is_path(value: str | Path) -> bool:
    if isinstance(value, Path):
        return True
    return any(sep in value for sep in ("/", "\\")) or value.endswith((".yaml", ".yml"))


def resolve(name_or_path: str | Path, override_dirs: Sequence[Path] = ()) -> tuple[str, str, str | None]:
    """(label, text, expected name) for a definition: a path as given, or a bare name looked up
    in each override folder as ``<name>.yaml`` and then among the shipped definitions."""
    if _is_path(name_or_path):
        label, text = _read(name_or_path, None)
        return label, text, None
    name = str(name_or_path)
    for folder in override_dirs:
        candidate = Path(folder) / f"{name}.yaml"
        if candidate.is_file():
            label, text = _read(candidate, None)
            return label, text, name
    entry = resources.files(_MACHINES_PACKAGE).joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise MachineDefinitionError(
            f"no lifecycle named '{name}'",
            hint=f"use one of: {', '.join(shipped_names())}, or give a path to a .yaml file")
    return str(entry), entry.read_text(encoding="utf-8"), name


def load_lifecycle(name_or_path: str | Path, *, registry: Registry = DEFAULT_REGISTRY,
                   override_dirs: Sequence[Path] = ()) -> Lifecycle:
    """Load, check and build a lifecycle. Raises MachineDefinitionError listing every problem,
    each as ``file:line: message``."""
    label, text, expected = resolve(name_or_path, override_dirs)
    located = _parse(text, label)
    defn = located.definition
    problems = []
    if expected is not None and defn.name != expected:
        problems.append(f"{label}:{_line_of(located.root, ('name',))}: the file is loaded as "
                        f"'{expected}' but says name: {defn.name} — set name: {expected}")
    for violation in _violations(defn, registry):
        line = _line_of(located.root, violation.loc)
        problems.append(f"{label}:{line}: {violation.message}" if line else f"{label}: {violation.message}")
    if problems:
        raise MachineDefinitionError(
            f"lifecycle {label} is invalid ({len(problems)} problem(s))", problems=problems,
            hint=_FIX_HINT)
    return Lifecycle(defn, registry=registry, source=label)
