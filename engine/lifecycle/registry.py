"""The engine's registry: the only names a lifecycle YAML may use, and what each one means.

A YAML file names actions and waits; it never names code. What an action does, which ways it can
end (its *outcomes*) and which of those prove that the work reached its destination is declared
here, by the engine, so that the model checker (``model.py``) can reason about an edited lifecycle
without trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ActionSpec", "DEFAULT_REGISTRY", "MachineRules", "Registry"]


@dataclass(frozen=True)
class ActionSpec:
    """An action the engine knows how to run.

    ``sends_data`` marks actions that put a report on the wire: the state running one may only be
    entered from durable states. ``outcomes`` are the ways the action ends, each mapped by the YAML
    to a trigger; ``proves`` are the outcomes that prove the payload reached its destination (the
    server acknowledged the report; every report of a file is accepted by the spool) — the only
    way into a state that the machine's rules protect.
    """

    name: str
    sends_data: bool
    doc: str
    outcomes: tuple[str, ...] = ()
    proves: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MachineRules:
    """What the engine needs of a machine whose models outlive the process (reports, source files).

    ``protect``: ``"final"`` — a final state may only be reached through a proving outcome (a final
    report is pruned after ``keep_sent_days``); or a set of triggers that may only fire after one
    (the conversion's ``finish`` applies the post-action to the source file). ``quarantine``: the
    machine needs exactly one ``quarantine: true`` state, and ``sender``: exactly one state running
    a data-sending action, with a transition from it into quarantine (a damaged report found when
    claimed goes there). ``what`` names the proof in messages.
    """

    protect: str | frozenset[str]
    what: str
    summary: str = ""  # what the model check proved, for ``machines validate``
    quarantine: bool = False
    sender: bool = False


@dataclass(frozen=True)
class Registry:
    """The names a lifecycle YAML may use, and the triggers the engine's code fires per machine.

    ``required[name]`` lists the triggers code fires *by name* on a machine called ``name``
    (parts of the engine not yet driven by outcomes and roles); a definition lacking one would
    make the engine fail at run time, so it is refused at load time. ``rules[name]`` marks a
    machine whose models persist across restarts: it gets the crash-recovery rules and the
    no-loss model check.
    """

    actions: dict[str, ActionSpec] = field(default_factory=dict)
    waits: dict[str, str] = field(default_factory=dict)
    required: dict[str, set[str]] = field(default_factory=dict)
    rules: dict[str, MachineRules] = field(default_factory=dict)

    def engine_runs(self, machine: str) -> bool:
        """Whether the engine runs a machine of this name (and so fires its transitions)."""
        return machine in self.required or machine in self.rules


def _actions(*specs: ActionSpec) -> dict[str, ActionSpec]:
    return {spec.name: spec for spec in specs}


DEFAULT_REGISTRY = Registry(
    actions=_actions(
        ActionSpec("upload", True, "POST the report to the WATS server",
                   outcomes=("acknowledged", "transient", "refused", "paused"),
                   proves=frozenset({"acknowledged"})),
        ActionSpec("convert", False, "run the intake's converter on the copied source file and "
                                     "accept every report it returns into the spool",
                   outcomes=("converted", "rejected", "deferred"), proves=frozenset({"converted"})),
        ActionSpec("copy_source", False, "copy the source file into the data folder and fsync it",
                   outcomes=("copied", "changed", "vanished", "rejected")),
        ActionSpec("settle", False, "wait until the source file has stopped changing",
                   outcomes=("settled", "changed", "vanished")),
        ActionSpec("probe", False, "check that the WATS server answers",
                   outcomes=("answers", "fails")),
    ),
    waits={
        "next_attempt": "until the report's next attempt time (retry backoff)",
        "backoff": "the supervisor's capped, jittered restart backoff",
        "settle_time": "the intake's settle time (settle_ms) for a new source file",
    },
    required={
        "conversion": {"settle", "changed", "copy", "copied", "convert", "converted", "reject", "defer",
                       "vanished", "finish", "timeout"},
        "task": {"start", "started", "crashed", "restart", "give_up", "stop", "stopped", "recycle", "reset"},
        "service": {"start", "started", "degrade", "recover", "drain", "drained", "fail", "reset"},
        "connection": {"unreachable", "refused", "answered", "reconfigured", "stop"},
    },
    rules={
        "report": MachineRules(protect="final", what="an acknowledged upload", quarantine=True, sender=True,
                               summary="no report is final without an acknowledged upload, none is stranded"),
        "conversion": MachineRules(protect=frozenset({"finish"}),
                                   what="every report of the file accepted by the spool",
                                   summary="no source file is touched before its reports are spooled"),
    },
)
