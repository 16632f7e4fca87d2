"""The spool's roles, found in the report lifecycle instead of named in code.

The spool and the uploader never name a state of the report machine. Everything they need is read
here from the definition (which the checker has already proven safe, so each role exists):

* ``accept`` — the initial state: where ``accept`` puts a new report;
* ``sender`` — the state that runs the ``upload`` action; ``ready`` — the durable states with a
  transition into it, each with its trigger (the uploader claims reports from these, and only
  through that trigger: save-before-send is structural);
* ``outcomes`` — the sender's outcome → trigger map, its ``timeout`` and ``on_timeout``;
* ``recover`` — every non-durable state's ``on_crash`` trigger (start-up recovery, and the
  uploader putting back what it claimed but did not send);
* ``waits`` — waiting states and the ``then`` trigger fired when the wait is over;
* ``final`` — states that may be pruned; ``quarantine`` — where unreadable files go, and the
  trigger that takes a damaged report there from the sender;
* ``person`` — durable states that only an operator trigger leaves (the reason a person reads is
  fsynced before a report moves there); ``refused`` — where a report the server refused rests
  (``queue retry --all-failed`` takes the reports there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lifecycle import Lifecycle

__all__ = ["ReportRoles"]


@dataclass(frozen=True)
class ReportRoles:
    accept: str
    sender: str
    ready: dict[str, str]
    outcomes: dict[str, str]
    timeout: float
    on_timeout: str
    recover: dict[str, str]
    waits: dict[str, str]
    final: frozenset[str]
    durable: frozenset[str]
    quarantine: str
    quarantine_trigger: str
    person: frozenset[str]
    refused: str

    @classmethod
    def of(cls, lifecycle: Lifecycle) -> ReportRoles:
        defn = lifecycle.definition
        states = defn.states
        sends = {name for name, spec in lifecycle.registry.actions.items() if spec.sends_data}
        sender = next(name for name, s in states.items() if s.action in sends)
        quarantine = next(name for name, s in states.items() if s.quarantine)
        ready: dict[str, str] = {}
        quarantine_trigger = ""
        engine_exits: dict[str, bool] = {name: False for name in states}
        for name in states:
            for trigger in lifecycle.triggers_from(name):
                dest = lifecycle.next_state(name, trigger)
                if dest == sender and name != sender:
                    ready.setdefault(name, trigger)
                if name == sender and dest == quarantine:
                    quarantine_trigger = quarantine_trigger or trigger
                if trigger not in lifecycle.operator_triggers_from(name) and dest != quarantine:
                    engine_exits[name] = True
        s = states[sender]
        return cls(
            accept=defn.initial,
            sender=sender,
            ready=ready,
            outcomes=dict(s.outcomes),
            timeout=s.timeout or 120.0,
            on_timeout=s.on_timeout or "",
            recover={name: st.on_crash for name, st in states.items() if not st.durable and st.on_crash},
            waits={name: st.then for name, st in states.items() if st.wait and st.then},
            final=frozenset(name for name, st in states.items() if st.final),
            durable=frozenset(name for name, st in states.items() if st.durable),
            quarantine=quarantine,
            quarantine_trigger=quarantine_trigger,
            person=frozenset(name for name, st in states.items()
                             if st.durable and not st.final and not engine_exits[name]),
            refused=lifecycle.next_state(sender, s.outcomes["refused"]),
        )

    def summary(self) -> dict[str, Any]:
        """The roles a status reader needs (health, the configurator), as plain JSON: which states
        hold refused and quarantined reports, which wait for a person, which are done."""
        return {"refused": self.refused, "quarantine": self.quarantine,
                "person": sorted(self.person), "final": sorted(self.final)}
