"""The conversion machine's roles, found in the definition instead of named in the intake's code.

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
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import IllegalTransition
from ...schemas.machine import MachineDef

__all__ = ["ConversionRoles", "conversion_role_problems"]


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
