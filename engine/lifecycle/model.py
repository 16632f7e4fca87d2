"""The no-loss model check: explore a lifecycle as the engine will run it, and name any path
that loses or strands a model.

The checker treats one report (or one source file) as a token moving through the machine and
explores, breadth first, every sequence of events that can happen to it: each outcome of the
action its state runs, the state's timeout, the end of its wait, a crash in any state that is not
durable (recovery fires the state's ``on_crash``; what the process knew in memory is gone), the
engine starting work or setting a damaged report aside, and a person firing an operator trigger.
A lost acknowledgement needs no event of its own: the server kept the report but the engine saw
a timeout, a transient error or a crash, and every one of those is explored.

Alongside the state the search carries one bit: *proven* — the path has passed an outcome the
registry says proves delivery (``upload: acknowledged``; ``convert: converted``). It then holds:

* **no loss** — a protected step (entering a final state of the report machine, which is pruned
  later; the conversion's ``finish``, which touches the source file) is only ever taken proven.
  Transitions that nothing fires are explored too: they are refused anyway, and the path they
  would open is worth naming.
* **nothing stranded** — from every state a model can reach, some engine or operator path leads
  to a final state; a state that is not durable is left by the engine, not only by a person.

The search space is (states × 2): a few dozen nodes for the shipped machines, at most 512 for the
largest definition the schema admits, so the check is bounded and takes well under a millisecond.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from .invariants import Edge, Violation, edges, expand
from .registry import MachineRules, Registry
from ...schemas.machine import MachineDef

__all__ = ["model_violations", "render_path"]

_Node = tuple[str, bool]


def _step(edge: Edge) -> str:
    quiet = edge.how in ("dispatch", "engine")
    label = edge.trigger if quiet else f"{edge.trigger} [{edge.how}]"
    return f"--{label}--> {edge.dest}"


def render_path(start: str, path: list[Edge]) -> str:
    """``pending --send--> sending --rejected [outcome refused]--> failed``."""
    return " ".join([start, *(_step(e) for e in path)])


def _path_to(node: _Node, parent: dict[_Node, tuple[_Node, Edge] | None]) -> list[Edge]:
    path: list[Edge] = []
    step = parent[node]
    while step is not None:
        node, edge = step
        path.append(edge)
        step = parent[node]
    return path[::-1]


def _protected(rules: MachineRules, defn: MachineDef, edge: Edge, proven: bool) -> bool:
    """Whether taking ``edge`` from a node with this ``proven`` bit loses the model."""
    if rules.protect == "final":
        return defn.states[edge.dest].final and not (proven or edge.proves)
    return edge.trigger in rules.protect and not proven


def model_violations(defn: MachineDef, registry: Registry) -> list[Violation]:
    """Losing and stranding paths of a structurally valid-enough definition (every state named
    by a transition is declared, the initial state exists)."""
    rules = registry.rules.get(defn.name)
    if rules is None or defn.initial not in defn.states:
        return []
    fired = edges(defn, registry)
    seen = {(e.at, e.source) for e in fired}
    unfired = [Edge(i, s, t.trigger, t.dest, "fired by nothing", False) for i, t, s in expand(defn)
               if (i, s) not in seen and s in defn.states and t.dest in defn.states]
    return [*_losses(defn, rules, fired + unfired), *_strandings(defn, fired)]


def _losses(defn: MachineDef, rules: MachineRules, all_edges: list[Edge]) -> Iterator[Violation]:
    out_of: dict[str, list[Edge]] = collections.defaultdict(list)
    for e in all_edges:
        out_of[e.source].append(e)
    start: _Node = (defn.initial, False)
    parent: dict[_Node, tuple[_Node, Edge] | None] = {start: None}
    queue = collections.deque([start])
    reported: set[tuple[int, str]] = set()
    what = ("reaches a final state" if rules.protect == "final"
            else "touches the source file")
    while queue:
        node = queue.popleft()
        state, proven = node
        for e in out_of[state]:
            if _protected(rules, defn, e, proven):
                if (e.at, e.source) not in reported:
                    reported.add((e.at, e.source))
                    path = render_path(defn.initial, [*_path_to(node, parent), e])
                    yield Violation(("transitions", e.at), (
                        f"{path}: {what} without {rules.what} — a model taking this path is lost "
                        f"(never at its destination, yet {'pruned' if rules.protect == 'final' else 'gone from its folder'}); "
                        "lead this transition elsewhere, or go through the proving outcome first"))
                continue
            nxt = (e.dest, False if e.how == "crash" else (proven or e.proves))
            if nxt not in parent:
                parent[nxt] = (node, e)
                queue.append(nxt)


def _strandings(defn: MachineDef, fired: list[Edge]) -> Iterator[Violation]:
    out_of: dict[str, list[Edge]] = collections.defaultdict(list)
    into: dict[str, list[Edge]] = collections.defaultdict(list)
    for e in fired:
        out_of[e.source].append(e)
        into[e.dest].append(e)
    parent: dict[str, Edge | None] = {defn.initial: None}
    queue = collections.deque([defn.initial])
    while queue:
        state = queue.popleft()
        for e in out_of[state]:
            if e.dest not in parent:
                parent[e.dest] = e
                queue.append(e.dest)
    finishing = {name for name, s in defn.states.items() if s.final}
    queue = collections.deque(finishing)
    while queue:
        for e in into[queue.popleft()]:
            if e.source not in finishing:
                finishing.add(e.source)
                queue.append(e.source)

    def path_to(state: str) -> str:
        steps: list[Edge] = []
        edge = parent[state]
        while edge is not None:
            steps.append(edge)
            edge = parent[edge.source]
        return render_path(defn.initial, steps[::-1])

    for name, here in defn.states.items():
        if name not in parent:
            continue  # unreachable: reported by the structural check
        if name not in finishing:
            yield Violation(("states", name), (
                f"{path_to(name)}: rests in '{name}', from which no engine or operator path leads to "
                "a final state — the model would wait there forever; add a transition the engine "
                "fires (an outcome, a wait) or one a person fires (by: operator)"))
        elif not here.durable and not here.final and all(
                e.how in ("operator", "crash") for e in out_of[name]):
            yield Violation(("states", name), (
                f"{path_to(name)}: '{name}' is work in flight that only a person or a crash moves on "
                "— give it an action, a wait, or make it durable"))
