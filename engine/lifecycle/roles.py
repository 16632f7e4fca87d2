"""The roles of the machines the engine runs, found in the definitions instead of named in code.

The conversion machine (for the intake):

The intake works in steps (settle, copy, convert and accept, post-action); which state each step
starts from and leads to is read here from ``conversion.yaml``, so a site may rename every state:

* ``detected`` — the initial state (a file seen, untouched), which waits ``settle_time`` and then
  fires its ``then`` into ``settled``;
* ``copying`` / ``copied`` — the state running ``copy_source`` and where its ``copied`` outcome
  leads; ``gone`` — where its ``vanished`` outcome leads;
* ``converting`` / ``spooled`` / ``rejected`` — the state running ``convert``, and where its
  ``converted`` and ``rejected`` outcomes lead;
* ``done`` — where ``finish`` (the post-action, which touches the source) leads from ``spooled``;
* ``recover`` — each non-durable state's ``on_crash``: also what the intake fires to put a file
  back at rest after an unexpected error.

:func:`conversion_role_problems` is run by the checker, so a definition whose roles cannot be
found is refused at load time, never at the first file.

The task machine (for the supervisor) and the service machine (for the service) are walked from
their initial state along the triggers their code fires (``start``, ``started``, ``crashed`` …):
each state reached is a role (``TaskRoles.running``, ``ServiceRoles.degraded`` …), and every other
trigger the code fires must lead to the role it expects. A site may rename every state; status
still speaks in roles (``running``), so ``stationflow status``, the health and the configurator
read the same words whatever the states are called.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

from ..errors import IllegalTransition
from ...schemas.machine import MachineDef

__all__ = ["ConversionRoles", "ServiceRoles", "TaskRoles", "conversion_role_problems", "engine_role_problems"]


def _next(defn: MachineDef, source: str, trigger: str | None) -> str:
    for t in defn.transitions:
        if t.trigger == trigger and (source in t.source or ("*" in t.source and not defn.states[source].final)):
            return t.dest
    raise IllegalTransition(f"no transition '{trigger}' from '{source}'")


def _running(defn: MachineDef, action: str) -> str:
    found = [name for name, s in defn.states.items() if s.action == action]
    if len(found) != 1:
        raise IllegalTransition(f"{len(found)} states run action '{action}' ({', '.join(found) or 'none'}) — "
                                "the intake needs exactly one")
    return found[0]


@dataclass(frozen=True)
class ConversionRoles:
    detected: str
    settled: str
    copying: str
    copied: str
    gone: str
    converting: str
    spooled: str
    rejected: str
    done: str
    recover: dict[str, str]

    @classmethod
    def of(cls, defn: MachineDef) -> ConversionRoles:
        """The roles of a definition; IllegalTransition naming what is missing."""
        detected = defn.initial
        settled = _next(defn, detected, defn.states[detected].then)
        copying = _running(defn, "copy_source")
        converting = _running(defn, "convert")
        copy_out, convert_out = defn.states[copying].outcomes, defn.states[converting].outcomes
        spooled = _next(defn, converting, convert_out.get("converted"))
        return cls(
            detected=detected, settled=settled, copying=copying,
            copied=_next(defn, copying, copy_out.get("copied")),
            gone=_next(defn, copying, copy_out.get("vanished")),
            converting=converting, spooled=spooled,
            rejected=_next(defn, converting, convert_out.get("rejected")),
            done=_next(defn, spooled, "finish"),
            recover={name: s.on_crash for name, s in defn.states.items() if not s.durable and s.on_crash},
        )


def conversion_role_problems(defn: MachineDef) -> list[str]:
    """Why the intake could not find its roles in ``defn`` (empty when it can)."""
    if defn.initial not in defn.states:
        return []  # reported by the structural checks
    try:
        ConversionRoles.of(defn)
    except (IllegalTransition, KeyError) as exc:
        return [f"the intake cannot find its steps in this conversion machine: {exc} — the initial state "
                "waits then settles; one state runs copy_source and one convert, each outcome mapped; "
                "finish leads on from where converted leads"]
    return []


#: (from role, trigger the supervisor fires, to role): the first edge into a role names it.
_TASK_WALK = (
    ("created", "start", "starting"), ("starting", "started", "running"), ("running", "crashed", "backing_off"),
    ("running", "give_up", "given_up"), ("running", "stop", "stopping"), ("stopping", "stopped", "stopped"),
    ("starting", "crashed", "backing_off"), ("backing_off", "restart", "starting"),
    ("running", "recycle", "starting"), ("starting", "give_up", "given_up"), ("backing_off", "give_up", "given_up"),
    ("given_up", "reset", "created"), ("starting", "stop", "stopping"), ("created", "stop", "stopped"),
    ("backing_off", "stop", "stopped"), ("given_up", "stop", "stopped"),
)
#: (from role, trigger the service fires, to role), likewise.
_SERVICE_WALK = (
    ("stopped", "start", "starting"), ("starting", "started", "running"), ("running", "degrade", "degraded"),
    ("running", "drain", "draining"), ("starting", "fail", "error"), ("degraded", "recover", "running"),
    ("starting", "drain", "draining"), ("degraded", "drain", "draining"), ("draining", "drained", "stopped"),
    ("running", "fail", "error"), ("degraded", "fail", "error"), ("draining", "fail", "error"),
    ("error", "reset", "stopped"),
)

_R = TypeVar("_R", bound="_WalkedRoles")


@dataclass(frozen=True)
class _WalkedRoles:
    """Roles found by walking the engine's triggers from the initial state (see the module doc)."""

    @classmethod
    def _walk(cls: type[_R], defn: MachineDef, start: str, walk: tuple[tuple[str, str, str], ...]) -> _R:
        found = {start: defn.initial}
        for role, trigger, dest_role in walk:
            dest = _next(defn, found[role], trigger)
            if dest_role not in found:
                found[dest_role] = dest
            elif found[dest_role] != dest:
                raise IllegalTransition(
                    f"'{trigger}' from '{found[role]}' (the {role} state) leads to '{dest}', but the engine "
                    f"expects '{found[dest_role]}' (the {dest_role} state)")
        twins = {state for state in found.values() if list(found.values()).count(state) > 1}
        if twins:
            raise IllegalTransition(f"'{sorted(twins)[0]}' plays more than one role "
                                    f"({', '.join(r for r, s in found.items() if s in twins)})")
        return cls(**found)

    def role_of(self, state: str) -> str:
        """The role a state plays (the word status shows); the state itself when it plays none."""
        for f in fields(self):
            if getattr(self, f.name) == state:
                return f.name
        return state


@dataclass(frozen=True)
class TaskRoles(_WalkedRoles):
    created: str
    starting: str
    running: str
    backing_off: str
    given_up: str
    stopping: str
    stopped: str

    @classmethod
    def of(cls, defn: MachineDef) -> TaskRoles:
        return cls._walk(defn, "created", _TASK_WALK)


@dataclass(frozen=True)
class ServiceRoles(_WalkedRoles):
    stopped: str
    starting: str
    running: str
    degraded: str
    draining: str
    error: str

    @classmethod
    def of(cls, defn: MachineDef) -> ServiceRoles:
        return cls._walk(defn, "stopped", _SERVICE_WALK)


_WALKS: dict[str, tuple[type[TaskRoles] | type[ServiceRoles], tuple[tuple[str, str, str], ...], str]] = {
    "task": (TaskRoles, _TASK_WALK, "the supervisor"), "service": (ServiceRoles, _SERVICE_WALK, "the service")}


def engine_role_problems(defn: MachineDef) -> list[str]:
    """Why the engine could not find its roles in a conversion, task or service machine (empty
    when it can, or when the machine is none of those)."""
    if defn.name == "conversion":
        return conversion_role_problems(defn)
    if defn.name not in _WALKS or defn.initial not in defn.states:
        return []
    roles, walk, who = _WALKS[defn.name]
    try:
        roles.of(defn)
    except IllegalTransition as exc:
        expected = ", ".join(f"{a} --{t}--> {b}" for a, t, b in walk)
        return [f"{who} cannot find its states in this {defn.name} machine: {exc} — a site may rename the "
                f"states, but the engine fires these triggers between them: {expected}"]
    return []
