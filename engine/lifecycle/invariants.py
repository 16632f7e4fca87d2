"""The lifecycle checker: one function per invariant, each problem as ``problem — fix``.

Every check is a generator of :class:`Violation` (a location in the YAML and a sentence that says
what is wrong and what to write instead); ``load_lifecycle`` turns the location into
``file:line``. The structural checks here run first; the no-loss model check (``model.py``) runs
only on a definition that passes them, so it can rely on every name it meets.

*Who fires a transition* is decided here too (:func:`edges`): a state's action outcome, its
timeout, its wait, its crash recovery, the engine starting work (a transition into a working
state), the engine setting a damaged report aside (a transition into the quarantine state), a
trigger the engine's code fires by name, or a person (``by: operator``). A transition that nothing
fires is a report stranded in its source state, so it is refused.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .registry import Registry
from ...schemas.machine import ANY_STATE, MachineDef, StateDef, TransitionDef

__all__ = ["Edge", "Graph", "Violation", "edges", "expand", "structural_violations"]


class Violation(NamedTuple):
    loc: tuple[Any, ...]
    message: str


def describe(t: TransitionDef) -> str:
    return f"transition '{t.trigger}' ({', '.join(t.source)} → {t.dest})"


def expand(defn: MachineDef) -> list[tuple[int, TransitionDef, str]]:
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


class Edge(NamedTuple):
    """One way a model can move: transition number ``at`` from ``source``, fired ``how``."""

    at: int  # the transition's index in the YAML
    source: str
    trigger: str
    dest: str
    how: str  # "outcome <name>", timeout, wait, crash, dispatch, quarantine, engine, operator
    proves: bool  # fired by an outcome that proves delivery (see ActionSpec.proves)


def edges(defn: MachineDef, registry: Registry) -> list[Edge]:
    """Every (transition, source, firer) of a definition whose states are all declared."""
    required = registry.required.get(defn.name, set())
    out: list[Edge] = []
    for index, t, source in expand(defn):
        state, dest = defn.states.get(source), defn.states.get(t.dest)
        if state is None or dest is None:
            continue
        spec = registry.actions.get(state.action) if state.action else None
        hows: list[tuple[str, bool]] = []
        for outcome, trigger in state.outcomes.items():
            if trigger == t.trigger:
                hows.append((f"outcome {outcome}", spec is not None and outcome in spec.proves))
        if state.on_timeout == t.trigger:
            hows.append(("timeout", False))
        if state.then == t.trigger:
            hows.append(("wait", False))
        if state.on_crash == t.trigger:
            hows.append(("crash", False))
        if dest.action and not state.action:
            hows.append(("dispatch", False))
        if dest.quarantine:
            hows.append(("quarantine", False))
        if t.by == "operator":
            hows.append(("operator", False))
        if t.trigger in required and not any(h.startswith("outcome") for h, _ in hows):
            hows.append(("engine", False))
        out.extend(Edge(index, source, t.trigger, t.dest, how, proves) for how, proves in hows)
    return out


def _registry_name(kind: str, value: str, known: Iterable[str], state: str) -> str | None:
    names = ", ".join(sorted(known)) or "(none)"
    if "." in value or ":" in value or "/" in value:
        return (f"state '{state}': {kind} '{value}' — dotted import paths are never allowed — use a "
                f"name from the engine's registry: {names}")
    if value not in known:
        return (f"state '{state}': {kind} '{value}' is not in the engine's registry — use one of: "
                f"{names}")
    return None


class Graph(NamedTuple):
    """The expanded transitions of a definition, as the checks need them."""

    defn: MachineDef
    pairs: list[tuple[int, TransitionDef, str]]
    outgoing: dict[str, set[str]]  # state -> triggers that leave it
    registry: Registry


def _check_initial(g: Graph) -> Iterator[Violation]:
    """The initial state exists and is at rest: a crash before the first step loses nothing."""
    defn = g.defn
    if defn.initial not in defn.states:
        yield Violation(("initial",), (
            f"initial state '{defn.initial}' is not declared under states — declare it or set "
            f"initial to one of: {', '.join(defn.states)}"))
    elif not defn.states[defn.initial].durable:
        yield Violation(("states", defn.initial), (
            f"initial state '{defn.initial}' must be durable: true — a lifecycle starts at rest, "
            "so that a crash before its first transition loses nothing"))


def _check_references(g: Graph) -> Iterator[Violation]:
    """Transitions name only declared states."""
    for index, t in enumerate(g.defn.transitions):
        for name in [*t.source, t.dest]:
            if name != ANY_STATE and name not in g.defn.states:
                yield Violation(("transitions", index), (
                    f"{describe(t)} names undeclared state '{name}' — declare it under states "
                    "or fix the name"))


def _check_ambiguity(g: Graph) -> Iterator[Violation]:
    """Each (trigger, source) leads to exactly one state."""
    first: dict[tuple[str, str], int] = {}
    for index, t, source in g.pairs:
        key = (t.trigger, source)
        if first.setdefault(key, index) != index:
            other = g.defn.transitions[first[key]]
            yield Violation(("transitions", index), (
                f"{describe(t)} and {describe(other)} both fire '{t.trigger}' from '{source}' — "
                "ambiguous: a trigger must lead to one state from each source; remove or rename one"))


def _check_state(name: str, state: StateDef, g: Graph) -> Iterator[Violation]:
    """Registry names, and the rules that keep a working or waiting state from hanging."""
    where = ("states", name)
    if state.action is not None:
        problem = _registry_name("action", state.action, g.registry.actions, name)
        if problem:
            yield Violation((*where, "action"), problem)
    if state.wait is not None:
        problem = _registry_name("wait", state.wait, g.registry.waits, name)
        if problem:
            yield Violation((*where, "wait"), problem)
    if state.final and (state.action or state.wait):
        yield Violation(where, (
            f"final state '{name}' has an action or wait — nothing runs once a lifecycle is "
            "over; remove it or drop final: true"))
    if state.action and state.wait:
        yield Violation(where, (
            f"state '{name}' has both an action and a wait — a state either works or waits; "
            "split it into two states"))
    if state.action and state.durable:
        yield Violation(where, (
            f"state '{name}' runs action '{state.action}' and is marked durable — work in "
            "flight is not at rest; drop durable: true (enter it from a durable state instead)"))
    if state.action:
        if state.timeout is None:
            yield Violation(where, (
                f"state '{name}' runs action '{state.action}' without a timeout — add "
                "timeout: (e.g. 120s) and on_timeout: <trigger>, so the work cannot hang forever"))
        if state.on_timeout is None:
            yield Violation(where, (
                f"state '{name}' runs action '{state.action}' without on_timeout — name the "
                "trigger the engine fires when the timeout expires"))
    elif state.timeout is not None or state.on_timeout is not None:
        yield Violation(where, (
            f"state '{name}' has timeout/on_timeout but no action — only an action can time "
            "out; remove them or add an action"))
    if state.on_timeout and state.on_timeout not in g.outgoing[name]:
        yield Violation((*where, "on_timeout"), (
            f"state '{name}': on_timeout '{state.on_timeout}' is not a transition out of "
            f"'{name}' — add {{trigger: {state.on_timeout}, source: {name}, dest: ...}}"))
    if state.wait and state.then is None:
        yield Violation(where, (
            f"state '{name}' waits '{state.wait}' without then — name the trigger the engine "
            "fires when the wait is over"))
    if state.then and state.wait is None:
        yield Violation(where, (
            f"state '{name}' has then '{state.then}' but no wait — add wait: <name> or remove then"))
    if state.then and state.then not in g.outgoing[name]:
        yield Violation((*where, "then"), (
            f"state '{name}': then '{state.then}' is not a transition out of '{name}' — add "
            f"{{trigger: {state.then}, source: {name}, dest: ...}}"))


def _check_exits(g: Graph) -> Iterator[Violation]:
    """Final states are final; every other state has a way out."""
    for name, state in g.defn.states.items():
        if state.final:
            for index, t in enumerate(g.defn.transitions):
                if name in t.source:
                    yield Violation(("transitions", index), (
                        f"{describe(t)} leaves final state '{name}' — final means the lifecycle is "
                        "over and the engine may forget the model; drop final: true or the transition"))
        elif not g.outgoing[name]:
            yield Violation(("states", name), (
                f"state '{name}' is a dead end: it is not final and no transition leaves it — add a "
                "transition out of it, or mark it final: true"))


def _check_reachable(g: Graph) -> Iterator[Violation]:
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
            yield Violation(("states", name), (
                f"state '{name}' is unreachable from the initial state '{defn.initial}' — add a "
                "transition into it or remove it"))


def _check_save_before_send(g: Graph) -> Iterator[Violation]:
    """A state whose action sends data is entered only from durable states."""
    states = g.defn.states
    for index, t, source in g.pairs:
        dest = states.get(t.dest)
        spec = g.registry.actions.get(dest.action) if dest and dest.action else None
        if spec and spec.sends_data and source in states and not states[source].durable:
            yield Violation(("transitions", index), (
                f"{describe(t)} enters '{t.dest}', whose action '{spec.name}' sends data, from "
                f"non-durable state '{source}' — data may only be sent from a state saved on disk: "
                "route it through a durable state first"))


def _check_required(g: Graph) -> Iterator[Violation]:
    """The engine's code fires these triggers; a lifecycle without them would break it."""
    defined = {t.trigger for t in g.defn.transitions}
    for trigger in sorted(g.registry.required.get(g.defn.name, set()) - defined):
        yield Violation(("transitions",), (
            f"machine '{g.defn.name}' has no transition for trigger '{trigger}', which the engine "
            f"fires — add a transition with trigger: {trigger}"))



def _check_outcomes(name: str, state: StateDef, g: Graph) -> Iterator[Violation]:
    """Each way an action can end leads somewhere: outcomes are the action's, each maps to a
    transition out of the state, and (on a machine the engine drives by outcomes) none is left out."""
    where = ("states", name, "outcomes")
    spec = g.registry.actions.get(state.action) if state.action else None
    if state.outcomes and state.action is None:
        yield Violation(where, (
            f"state '{name}' maps outcomes but runs no action — only an action has outcomes; "
            "remove outcomes or add an action"))
        return
    if spec is None:
        return
    for outcome, trigger in state.outcomes.items():
        if outcome not in spec.outcomes:
            yield Violation(where, (
                f"state '{name}': '{outcome}' is not an outcome of action '{spec.name}' — its outcomes "
                f"are: {', '.join(spec.outcomes)}"))
        elif trigger not in g.outgoing[name]:
            yield Violation(where, (
                f"state '{name}': outcome '{outcome}' fires '{trigger}', which is not a transition out "
                f"of '{name}' — add {{trigger: {trigger}, source: {name}, dest: ...}}"))
    if g.defn.name in g.registry.rules:
        missing = [o for o in spec.outcomes if o not in state.outcomes]
        if missing:
            yield Violation((*where[:2],), (
                f"state '{name}' runs action '{spec.name}' but does not say what its outcome(s) "
                f"{', '.join(missing)} lead to — add outcomes: {{{', '.join(f'{o}: <trigger>' for o in missing)}}}"))


def _check_crash_recovery(g: Graph) -> Iterator[Violation]:
    """On a machine whose models outlive the process, every state that is not at rest names the
    transition that recovery fires when a model is found there after a crash, into a durable state."""
    if g.defn.name not in g.registry.rules:
        return
    states = g.defn.states
    for name, state in states.items():
        where = ("states", name)
        if state.durable:
            if state.on_crash is not None:
                yield Violation((*where, "on_crash"), (
                    f"state '{name}' is durable and names on_crash '{state.on_crash}' — a crash leaves a "
                    "durable state as it is; remove on_crash"))
            continue
        if state.on_crash is None:
            yield Violation(where, (
                f"state '{name}' is not durable and has no on_crash — a model found here after a crash "
                f"(kill -9, power loss) would be stuck: add on_crash: <trigger> with a transition from "
                f"'{name}' back to a durable state"))
            continue
        dest = next((t.dest for _, t, s in g.pairs if s == name and t.trigger == state.on_crash), None)
        if dest is None:
            yield Violation((*where, "on_crash"), (
                f"state '{name}': on_crash '{state.on_crash}' is not a transition out of '{name}' — add "
                f"{{trigger: {state.on_crash}, source: {name}, dest: <a durable state>}}"))
        elif dest in states and not states[dest].durable:
            yield Violation((*where, "on_crash"), (
                f"state '{name}': on_crash '{state.on_crash}' leads to '{dest}', which is not durable — "
                "recovery must put the model back at rest; lead it to a durable state"))


def _check_roles(g: Graph) -> Iterator[Violation]:
    """The spool finds its roles in the definition: exactly one quarantine state (durable, not
    final), exactly one state that sends data, and a way from it into quarantine."""
    rules = g.registry.rules.get(g.defn.name)
    if rules is None:
        return
    states = g.defn.states
    if rules.quarantine:
        marked = [n for n, s in states.items() if s.quarantine]
        if len(marked) != 1:
            yield Violation(("states",), (
                f"machine '{g.defn.name}' has {len(marked)} states marked quarantine: true "
                f"({', '.join(marked) or 'none'}) — mark exactly one durable state where the engine "
                "sets aside what it cannot read"))
        for n in marked:
            if not states[n].durable or states[n].final:
                yield Violation(("states", n), (
                    f"quarantine state '{n}' must be durable and not final — what is set aside is kept, "
                    "whole, until a person looks"))
    if rules.sender:
        senders = [n for n, s in states.items()
                   if s.action in g.registry.actions and g.registry.actions[s.action].sends_data]
        if len(senders) != 1:
            yield Violation(("states",), (
                f"machine '{g.defn.name}' has {len(senders)} states that send data "
                f"({', '.join(senders) or 'none'}) — the uploader works from exactly one "
                "(action: upload)"))
        elif rules.quarantine:
            sender = senders[0]
            if not any(s == sender and states.get(t.dest, StateDef()).quarantine for _, t, s in g.pairs):
                yield Violation(("states", sender), (
                    f"state '{sender}' has no transition into the quarantine state — a report found "
                    f"damaged when it is taken for sending goes there: add {{trigger: quarantine, "
                    f"source: {sender}, dest: <quarantine state>}}"))


def _check_operator(g: Graph) -> Iterator[Violation]:
    """A person acts on reports at rest, and hands work to the engine through a durable state."""
    states = g.defn.states
    for index, t, source in g.pairs:
        if t.by != "operator" or source not in states or t.dest not in states:
            continue
        if not states[source].durable:
            yield Violation(("transitions", index), (
                f"{describe(t)} is fired by an operator from '{source}', which is not durable — a "
                "person acts on reports at rest; fire it from a durable state"))
        if states[t.dest].action:
            yield Violation(("transitions", index), (
                f"{describe(t)} is fired by an operator into '{t.dest}', where the engine runs "
                f"'{states[t.dest].action}' — lead it to a durable state the engine starts work from"))


def _check_fired(g: Graph, fired: set[tuple[int, str]]) -> Iterator[Violation]:
    """Every transition of a machine the engine runs is fired by something (see :func:`edges`)."""
    if not g.registry.engine_runs(g.defn.name):
        return
    for index, t, source in g.pairs:
        if source in g.defn.states and t.dest in g.defn.states and (index, source) not in fired:
            yield Violation(("transitions", index), (
                f"{describe(t)}: nothing fires '{t.trigger}' from '{source}' — it is no outcome, "
                "timeout, wait or crash recovery of that state, does not start work or quarantine, "
                "and the engine does not fire it by name: map an outcome to it, or add by: operator "
                "so a person fires it with `stationflow queue fire`"))


def _check_engine_roles(g: Graph) -> Iterator[Violation]:
    """The engine finds its roles: the intake its steps in the conversion machine, the supervisor
    and the service their states in the task and service machines (``roles.py``)."""
    from .roles import engine_role_problems

    for problem in engine_role_problems(g.defn):
        yield Violation(("states",), problem)


def structural_violations(defn: MachineDef, registry: Registry) -> list[Violation]:
    """Every structural invariant; the model check runs only when this is empty."""
    pairs = expand(defn)
    outgoing: dict[str, set[str]] = collections.defaultdict(set)
    for _, t, source in pairs:
        outgoing[source].add(t.trigger)
    g = Graph(defn, pairs, outgoing, registry)
    out = [*_check_initial(g), *_check_references(g), *_check_ambiguity(g)]
    for name, state in defn.states.items():
        out.extend(_check_state(name, state, g))
        out.extend(_check_outcomes(name, state, g))
    out.extend(_check_exits(g))
    out.extend(_check_reachable(g))
    out.extend(_check_save_before_send(g))
    out.extend(_check_required(g))
    out.extend(_check_crash_recovery(g))
    out.extend(_check_roles(g))
    out.extend(_check_operator(g))
    if not out:
        out.extend(_check_engine_roles(g))
    out.extend(_check_fired(g, {(e.at, e.source) for e in edges(defn, registry)}))
    return out
