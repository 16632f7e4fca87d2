"""The shape of a lifecycle definition (``machines/*.yaml``), as pydantic models.

This module checks *form* only: known keys, names that are plain identifiers, durations that
parse. Whether the states and transitions make a safe lifecycle (reachability, durable states
before sending, timeouts on working states, ...) is checked by ``engine.lifecycle``, which has the
engine's registry of action names. Unknown keys are refused rather than ignored: a key such as
``before: os.system`` must never be silently dropped, nor silently honoured.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

ANY_STATE = "*"
"""A transition source meaning every non-final state of the machine."""

_NAME = r"^[a-z][a-z0-9_]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# transitions puts these on a bound model; a trigger with such a name would shadow them.
_RESERVED_TRIGGERS = frozenset({"trigger", "state", "machine"})
_RESERVED_TRIGGER_PREFIXES = ("to_", "is_", "may_")

Name = Annotated[str, Field(pattern=_NAME, max_length=64)]


def parse_duration(value: Any) -> float:
    """Seconds from ``120``, ``1.5``, ``"120s"``, ``"2m"``, ``"1h"`` or ``"500ms"``; always > 0."""
    if isinstance(value, bool):  # YAML's yes/no/true are bools, and bool is an int
        raise ValueError("a duration must be a number of seconds or a string like '120s', '2m', '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration — write seconds as a number, "
                             "or a string like '500ms', '120s', '2m', '1h'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("a duration must be a number of seconds or a string like '120s', '2m', '1h'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be more than zero seconds, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class StateDef(_Strict):
    """One state. ``durable``: at rest on disk (or otherwise safe across a crash); nothing is in
    flight. ``action``: work the engine runs on entering, bounded by ``timeout``; when the timeout
    expires the engine fires ``on_timeout``; each way the action can end (its *outcomes*, declared
    by the engine's registry) fires the trigger ``outcomes`` maps it to. ``wait``: a registry-named
    delay after which the engine fires ``then``. ``on_crash``: the trigger the engine fires for a
    model found in this (non-durable) state after a crash — the recovery transition.
    ``quarantine``: where the engine puts what it cannot read (one such state per spool).
    ``final``: the lifecycle is over; nothing leaves this state and the engine may forget it."""

    durable: bool = False
    final: bool = False
    action: str | None = None
    outcomes: dict[Name, Name] = Field(default_factory=dict, max_length=32)
    timeout: Duration | None = None
    on_timeout: Name | None = None
    wait: str | None = None
    then: Name | None = None
    on_crash: Name | None = None
    quarantine: bool = False
    description: str = Field(default="", max_length=2000)


def _as_source_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class TransitionDef(_Strict):
    """``trigger`` moves a model from any state in ``source`` (a name, a list, or ``"*"`` for every
    non-final state) to ``dest``. ``by: operator`` marks a transition a person fires
    (``stationflow queue fire``); every other one must be fired by the engine (an outcome, a
    timeout, a wait, a crash recovery, starting work, quarantine, or a trigger its code names)."""

    trigger: Name
    source: Annotated[list[Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]*)$")]],
                      BeforeValidator(_as_source_list), Field(min_length=1, max_length=256)]
    dest: Name
    by: Literal["engine", "operator"] = "engine"
    description: str = Field(default="", max_length=2000)

    @field_validator("trigger")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in _RESERVED_TRIGGERS or value.startswith(_RESERVED_TRIGGER_PREFIXES):
            raise ValueError(f"trigger name {value!r} is reserved (it would shadow the model's "
                             "trigger/state methods) — choose another name")
        return value


class MachineDef(_Strict):
    """A whole lifecycle: states keyed by name, the initial state, and the transitions."""

    name: Name
    description: str = Field(default="", max_length=2000)
    initial: Name
    states: Annotated[dict[Name, StateDef], Field(min_length=1, max_length=256)]
    transitions: list[TransitionDef] = Field(default_factory=list, max_length=1024)
