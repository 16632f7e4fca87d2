"""A checked lifecycle and its ``transitions.Machine``; loading one by name or path.

The built ``transitions.Machine`` carries no callbacks at all: YAML strings are never handed to
it. One machine serves every model; the spool asks :meth:`Lifecycle.next_state` (a lookup in a
table precomputed from the machine) instead of registering thousands of report models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transitions import Machine, State

from ..errors import IllegalTransition, MachineDefinitionError
from .invariants import Violation, expand, structural_violations
from .load import FIX_HINT, Located, Source, line_of, parse, resolve_source
from .model import model_violations
from .registry import DEFAULT_REGISTRY, Registry
from ...schemas.machine import MachineDef, StateDef

__all__ = ["Lifecycle", "check_invariants", "load_lifecycle", "violations"]


def violations(defn: MachineDef, registry: Registry = DEFAULT_REGISTRY) -> list[Violation]:
    """The structural invariants, then — when every name they rely on is declared — the no-loss
    model check (``model.py``)."""
    found = structural_violations(defn, registry)
    names_ok = defn.initial in defn.states and all(
        name in defn.states for t in defn.transitions for name in [*t.source, t.dest] if name != "*")
    if names_ok:
        found.extend(model_violations(defn, registry))
    return found


def check_invariants(defn: MachineDef, registry: Registry = DEFAULT_REGISTRY) -> list[str]:
    """One message per violated invariant, naming the state or transition and the fix."""
    return [v.message for v in violations(defn, registry)]


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
    ``check=False`` skips the checks — only for tests that show what the checker prevents.
    """

    def __init__(self, definition: MachineDef, *, registry: Registry = DEFAULT_REGISTRY,
                 source: str = "<definition>", sha256: str | None = None, shipped: bool = False,
                 check: bool = True) -> None:
        problems = check_invariants(definition, registry) if check else []
        if problems:
            raise MachineDefinitionError(f"lifecycle {source} is invalid ({len(problems)} problem(s))",
                                         problems=problems, hint=FIX_HINT)
        self.definition = definition
        self.name = definition.name
        self.initial = definition.initial
        self.source = source
        self.sha256: str | None = sha256
        self.shipped = shipped
        self.registry = registry
        self.states: tuple[str, ...] = tuple(definition.states)
        self._pairs = expand(definition)
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
            for state_name, found in event.transitions.items():
                if found and found[0].dest is not None:  # every YAML transition names its dest
                    table[(state_name, trigger)] = found[0].dest
                    allowed[state_name].append(trigger)
        self._table = table
        self._allowed = {name: tuple(triggers) for name, triggers in allowed.items()}
        operator: dict[str, list[str]] = {name: [] for name in self.states}
        for _, t, state_name in self._pairs:
            if t.by == "operator" and t.trigger not in operator[state_name]:
                operator[state_name].append(t.trigger)
        self._operator = {name: tuple(triggers) for name, triggers in operator.items()}

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

    def operator_triggers_from(self, state: str) -> list[str]:
        """Triggers a person may fire from ``state`` (``by: operator``)."""
        if state not in self._operator:
            raise KeyError(f"'{state}' is not a state of the {self.name} lifecycle")
        return list(self._operator[state])

    def operator_triggers(self) -> list[str]:
        """Every operator trigger of the machine, in the order the YAML declares them."""
        seen: list[str] = []
        for t in self.definition.transitions:
            if t.by == "operator" and t.trigger not in seen:
                seen.append(t.trigger)
        return seen

    def next_state_by_operator(self, source: str, trigger: str) -> str:
        """Like :meth:`next_state`, for a person: only ``by: operator`` transitions are allowed."""
        if source in self._operator and trigger in self._operator[source]:
            return self.next_state(source, trigger)
        allowed = ", ".join(self._operator.get(source, ())) or "nothing"
        raise IllegalTransition(
            f"cannot {trigger} a {self.name} in state {source} — an operator may fire from here: "
            f"{allowed}",
            hint=f"operator triggers of this lifecycle: {', '.join(self.operator_triggers()) or 'none'}")

    def bind(self, model: object, *, initial: str | None = None) -> None:
        """Attach a long-lived model (the service, a task): ``model.trigger("x")`` then works and
        ``model.state`` is its state. Not for reports: ``add_model`` is linear in models."""
        start = initial or self.initial
        self.state(start)  # a clear error for an unknown state
        self.machine.add_model(model, initial=start)

    def unbind(self, model: object) -> None:
        self.machine.remove_model(model)

    def mermaid(self) -> str:
        """A Mermaid ``stateDiagram-v2``: durable states marked, final states lead to ``[*]``,
        operator triggers marked ``(operator)``."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        for name, state in self.definition.states.items():
            notes = []
            if state.durable:
                notes.append("durable")
            if state.quarantine:
                notes.append("quarantine")
            if state.action:
                notes.append(f"action {state.action} (timeout {_seconds(state.timeout or 0)}"
                             f" → {state.on_timeout})")
            if state.wait:
                notes.append(f"wait {state.wait} (→ {state.then})")
            if state.on_crash:
                notes.append(f"on crash → {state.on_crash}")
            if notes:
                lines.append(f"    {name} : {', '.join(notes)}")
        for _, t, source in self._pairs:
            lines.append(f"    {source} --> {t.dest} : {t.trigger}" + (" (operator)" if t.by == "operator" else ""))
        for name, state in self.definition.states.items():
            if state.final:
                lines.append(f"    {name} --> [*]")
        durable = [name for name, state in self.definition.states.items() if state.durable]
        if durable:
            lines.append("    classDef durable stroke-width:3px")
            lines.append(f"    class {','.join(durable)} durable")
        return "\n".join(lines) + "\n"


def _problems(located: Located, expected: str | None, registry: Registry) -> list[str]:
    defn, label = located.definition, located.label
    problems = []
    if expected is not None and defn.name != expected:
        problems.append(f"{label}:{line_of(located.root, ('name',))}: the file is loaded as "
                        f"'{expected}' but says name: {defn.name} — set name: {expected}")
    for violation in violations(defn, registry):
        line = line_of(located.root, violation.loc)
        problems.append(f"{label}:{line}: {violation.message}" if line else f"{label}: {violation.message}")
    return problems


def load_lifecycle(name_or_path: str | Path, *, registry: Registry = DEFAULT_REGISTRY,
                   override_dirs: Sequence[Path | str] = ()) -> Lifecycle:
    """Load, check and build a lifecycle. Raises MachineDefinitionError listing every problem,
    each as ``file:line: message``."""
    source: Source = resolve_source(name_or_path, override_dirs)
    located = parse(source.text, source.label)
    problems = _problems(located, source.expected, registry)
    if problems:
        raise MachineDefinitionError(
            f"lifecycle {source.label} is invalid ({len(problems)} problem(s))", problems=problems,
            hint=FIX_HINT)
    return Lifecycle(located.definition, registry=registry, source=source.label, sha256=source.sha256,
                     shipped=source.shipped, check=False)
