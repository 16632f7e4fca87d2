"""The no-loss model check: the six losing edits are refused with their path named, hostile YAML is
refused fast, every random mutation of the report machine that the checker accepts loses nothing
when a real spool runs it through crashes and lost acknowledgements, and every accepted mutation
of the conversion machine touches no source file before its reports are spooled.
"""

from __future__ import annotations

import copy
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import IllegalTransition, MachineDefinitionError
from stationflow.engine.lifecycle import (
    MAX_BYTES,
    Lifecycle,
    check_invariants,
    load_definition,
    load_lifecycle,
    shipped_names,
)
from stationflow.engine.spool.store import Spool
from stationflow.schemas.machine import MachineDef
from tests.conftest import FIXTURES

LOSING = FIXTURES / "machines" / "losing"


def problems_of(path: Path | str, **kw: Any) -> list[str]:
    with pytest.raises(MachineDefinitionError) as info:
        load_lifecycle(path, **kw)
    return info.value.problems


# --------------------------------------------------------------------------- the six edits

def test_edit_1_send_straight_to_sent_is_refused_naming_the_path() -> None:
    joined = "\n".join(problems_of(LOSING / "1_send_to_sent.yaml"))
    assert "pending --send [fired by nothing]--> sent: reaches a final state without an acknowledged upload" in joined


def test_edit_2_failed_made_final_is_refused_naming_the_path() -> None:
    (problem,) = problems_of(LOSING / "2_failed_final.yaml")
    assert ("pending --send--> sending --rejected [outcome refused]--> failed: reaches a final state "
            "without an acknowledged upload") in problem
    assert problem.startswith(f"{LOSING / '2_failed_final.yaml'}:"), "names the file and line"


def test_edit_3_transient_error_to_sent_is_refused_naming_the_path() -> None:
    joined = "\n".join(problems_of(LOSING / "3_transient_to_sent.yaml"))
    assert ("pending --send--> sending --transient_error [outcome transient]--> sent: reaches a final "
            "state without an acknowledged upload") in joined
    assert "nothing fires 'park' from 'pending'" in joined, "the dummy transition is refused too"


def test_edit_4_a_hold_nobody_can_leave_is_refused() -> None:
    joined = "\n".join(problems_of(LOSING / "4_hold_nobody_fires.yaml"))
    assert "nothing fires 'send' from 'pending'" in joined
    assert "rests in 'pending', from which no engine or operator path leads to a final state" in joined


def test_edit_5_durable_sending_is_refused() -> None:
    joined = "\n".join(problems_of(LOSING / "5_sending_durable.yaml"))
    assert "state 'sending' runs action 'upload' and is marked durable" in joined


def test_edit_6_billion_laughs_is_refused_in_well_under_a_second() -> None:
    started = time.perf_counter()
    (problem,) = problems_of(LOSING / "6_billion_laughs.yaml")
    took = time.perf_counter() - started
    assert "anchors and aliases" in problem
    assert took < 1.0, f"took {took:.3f} s"


def test_the_hold_edit_made_right_is_accepted() -> None:
    """What edit 4 meant, written so nothing is lost: the fixture site lifecycle."""
    lifecycle = load_lifecycle(FIXTURES / "lifecycles" / "hold-for-approval" / "report.yaml")
    assert lifecycle.operator_triggers_from("held") == ["approve"]


# --------------------------------------------------------------------------- hostile YAML, speed

@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,                               # 100,000 deep: over the size limit
    "x: " + "[" * 30_000 + "]" * 30_000,                         # under the size limit: the depth limit
    "x: [" + ",".join(["1"] * 30_000) + "]",                     # many small nodes
    "x: " + "{a: " * 10_000 + "1" + "}" * 10_000,                # deep mappings
], ids=["deep-100k", "deep-30k", "many-nodes", "deep-mappings"])
def test_hostile_yaml_is_refused_in_under_a_second(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("hostile.yaml", text=text)
    took = time.perf_counter() - started
    assert took < 1.0, f"took {took:.3f} s"
    problem = info.value.problems[0]
    assert problem.startswith("hostile.yaml")
    assert any(words in problem for words in ("levels deep", "YAML nodes", f"the {MAX_BYTES}"))


def test_every_shipped_machine_is_checked_in_well_under_a_second() -> None:
    started = time.perf_counter()
    for name in shipped_names():
        load_lifecycle(name)
    took = time.perf_counter() - started
    assert took < 1.0, f"took {took:.3f} s"


# --------------------------------------------------------------------------- the simulation

class Lost(AssertionError):
    """A report left the spool, or became final, without the engine seeing an acknowledgement."""


def simulate(lifecycle: Lifecycle, folder: Path, steps: list[int], reports: int = 3) -> dict[str, str]:
    """Run ``lifecycle`` on a real spool (on disk; fsync off for speed) through a schedule drawn from
    ``steps``: claims, every upload outcome, timeouts, lost acknowledgements (the server keeps the
    report, the engine hears a transient error or a timeout), crashes (the spool is abandoned
    without closing and opened again: start-up recovery), due waits, operator triggers, and
    pruning of final states. After every step: each report is in the spool, or was acknowledged to
    the engine and is at the server; a report in a final state was acknowledged. Returns the final
    state of each report still in the spool."""
    rng = random.Random(steps[0] if steps else 0)
    server: set[str] = set()
    acked: set[str] = set()

    def open_spool() -> Spool:
        return Spool(folder, lifecycle=lifecycle, fsync=False, keep_sent_days=0.0, sent_sync_every=1)

    spool = open_spool()
    keys = [spool.accept(make_report_bytes(i, seed=5)).key for i in range(reports)]
    roles = spool.roles
    in_flight: list[str] = []
    abandoned: list[Spool] = []
    try:
        for step in steps:
            kind = step % 7
            if kind == 0:
                claim = spool.claim_next()
                if claim is not None:
                    in_flight.append(claim.key)
            elif kind in (1, 2) and in_flight:
                key = in_flight.pop(rng.randrange(len(in_flight)))
                outcome = rng.choice([*roles.outcomes, "timeout", "lost_ack", "lost_ack_timeout"])
                if outcome == "acknowledged":
                    server.add(key)
                    acked.add(key)
                    spool.fire(key, roles.outcomes["acknowledged"])
                elif outcome == "timeout":
                    spool.fire(key, roles.on_timeout, error="timeout", next_attempt_s=0.0)
                elif outcome.startswith("lost_ack"):
                    server.add(key)  # the server has it; the answer never arrived
                    trigger = roles.on_timeout if outcome.endswith("timeout") else roles.outcomes["transient"]
                    spool.fire(key, trigger, error="lost answer", next_attempt_s=0.0)
                else:
                    spool.fire(key, roles.outcomes[outcome], error=outcome, next_attempt_s=0.0)
            elif kind == 3:
                # A crash: the process dies with whatever is in flight; the next one recovers.
                abandoned.append(spool)
                assert spool._filelock is not None
                spool._filelock.release()  # what the OS does when the process dies
                spool._filelock = None
                spool = open_spool()
                in_flight.clear()
            elif kind == 4:
                spool.release_due()
            elif kind == 5:
                key = rng.choice(keys)
                if key in spool.keys() and key not in in_flight:
                    state = spool.state_of(key)
                    triggers = lifecycle.operator_triggers_from(state)
                    if triggers:
                        spool.fire_operator(key, rng.choice(triggers))
            else:
                spool.prune_sent()
            present = set(spool.keys())
            for key in keys:
                if key not in present and not (key in acked and key in server):
                    raise Lost(f"report {key} left the spool without an acknowledged upload")
                if key in present and spool.state_of(key) in roles.final and key not in acked:
                    raise Lost(f"report {key} is final ({spool.state_of(key)}) without an acknowledged upload")
        return {key: spool.state_of(key) for key in spool.keys()}
    finally:
        spool.close()


def test_the_simulation_finds_the_loss_the_checker_refuses(tmp_path: Path) -> None:
    """Without the checker, edit 3 loses reports in the very simulation the mutants pass."""
    defn = load_definition(LOSING / "3_transient_to_sent.yaml")
    unchecked = Lifecycle(defn, check=False)
    losses = 0
    for seed in range(30):
        steps = [random.Random(seed).randrange(7) for _ in range(60)]
        steps = [seed, *steps]
        try:
            simulate(unchecked, tmp_path / f"run{seed}", steps)
        except Lost:
            losses += 1
    assert losses > 0


def test_the_shipped_machine_delivers_everything_in_the_simulation(tmp_path: Path) -> None:
    lifecycle = load_lifecycle("report")
    # claim, acknowledge, prune, over and over: every report ends acknowledged and pruned
    left = simulate(lifecycle, tmp_path / "a", [0, 1, 0, 1, 0, 1, 6, 6] + [0, 1, 4, 5, 6] * 30)
    assert all(state not in ("pending", "sending") for state in left.values())


# --------------------------------------------------------------------------- random mutations

_REPORT = load_lifecycle("report").definition.model_dump(mode="json")


def _mutate(data: dict[str, Any], kind: str, a: int, b: int, c: int) -> dict[str, Any]:
    states: dict[str, Any] = data["states"]
    names = list(states)
    transitions: list[dict[str, Any]] = data["transitions"]
    triggers = sorted({t["trigger"] for t in transitions}) + ["jump"]
    if kind == "retarget" and transitions:
        transitions[a % len(transitions)]["dest"] = names[b % len(names)]
    elif kind in ("durable", "final", "quarantine"):
        state = states[names[a % len(names)]]
        state[kind] = not state.get(kind, False)
    elif kind == "drop":
        gone = names[a % len(names)]
        if gone == data["initial"]:
            return data
        del states[gone]
        kept = []
        for t in transitions:
            t["source"] = [s for s in t["source"] if s != gone]
            if t["source"] and t["dest"] != gone:
                kept.append(t)
        data["transitions"] = kept
        for s in states.values():
            s["outcomes"] = {o: trig for o, trig in s.get("outcomes", {}).items()}
    elif kind == "shortcut":
        transitions.append({"trigger": triggers[c % len(triggers)], "source": [names[a % len(names)]],
                            "dest": names[b % len(names)], "by": "operator" if c % 2 else "engine"})
    elif kind == "operator" and transitions:
        t = transitions[a % len(transitions)]
        t["by"] = "engine" if t.get("by") == "operator" else "operator"
    elif kind == "outcome":
        sender = next(n for n, s in states.items() if s.get("action") == "upload") if any(
            s.get("action") == "upload" for s in states.values()) else None
        if sender is not None:
            outcomes = states[sender]["outcomes"]
            keys = sorted(outcomes)
            if keys:
                outcomes[keys[a % len(keys)]] = triggers[b % len(triggers)]
    elif kind == "on_timeout":
        for s in states.values():
            if s.get("action"):
                s["on_timeout"] = triggers[a % len(triggers)]
    return data


_KINDS = ["retarget", "durable", "final", "quarantine", "drop", "shortcut", "operator", "outcome", "on_timeout"]
_mutation = st.tuples(st.sampled_from(_KINDS), st.integers(0, 63), st.integers(0, 63), st.integers(0, 63))
_ACCEPTED: list[str] = []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(mutations=st.lists(_mutation, min_size=1, max_size=3),
       steps=st.lists(st.integers(0, 6), min_size=20, max_size=80), seed=st.integers(0, 2**16))
def test_every_mutant_the_checker_accepts_loses_nothing(tmp_path_factory: pytest.TempPathFactory,
                                                        mutations: list[tuple[str, int, int, int]],
                                                        steps: list[int], seed: int) -> None:
    data = copy.deepcopy(_REPORT)
    for mutation in mutations:
        data = _mutate(data, *mutation)
    try:
        defn = MachineDef.model_validate(data)
    except ValidationError:
        assume(False)
        return
    if check_invariants(defn):
        return  # refused: nothing to run
    note(f"accepted mutant: {mutations}")
    _ACCEPTED.append(repr(mutations))
    lifecycle = Lifecycle(defn)
    simulate(lifecycle, tmp_path_factory.mktemp("mutant"), [seed, *steps])


def test_some_mutants_are_accepted_and_run() -> None:
    """The property above is not vacuous: safe mutations (an extra operator shortcut between rest
    states, a retargeted retry) are accepted and exercised."""
    safe = [
        [("shortcut", 4, 5, 1)],  # failed -> quarantined, by an operator (c odd)
    ]
    names = list(_REPORT["states"])
    assert names[4] == "failed" and names[5] == "quarantined"
    for mutations in safe:
        data = copy.deepcopy(_REPORT)
        for mutation in mutations:
            data = _mutate(data, *mutation)
        assert check_invariants(MachineDef.model_validate(data)) == [], mutations


def test_operator_fire_refuses_an_engine_trigger(tmp_path: Path) -> None:
    with Spool(tmp_path, fsync=False) as spool:
        key = spool.accept(make_report_bytes(1, seed=5)).key
        with pytest.raises(IllegalTransition, match="an operator may fire from here: nothing"):
            spool.fire_operator(key, "send")
        assert spool.state_of(key) == "pending"


def test_model_paths_are_rendered_for_every_kind_of_step() -> None:
    text = (LOSING / "2_failed_final.yaml").read_text()
    (message,) = check_invariants(load_definition("inline", text=text))
    assert message.count("-->") == 2
    assert list(itertools.islice(iter(message.split(":")), 1))[0].startswith("pending --send--> sending")


# --------------------------------------------------------------------------- the conversion machine

class Touched(AssertionError):
    """The source file was touched (``finish``, the post-action) before its reports were spooled."""


def walk_conversion(lifecycle: Lifecycle, rng: random.Random, steps: int = 60) -> None:
    """A random life of one source file as the intake may drive it: any outcome of the state's
    action, its timeout, the end of its wait, a crash (work in flight falls back through
    ``on_crash``; what was known in memory is gone), an operator trigger, and — conservatively —
    any trigger the intake's code fires by name that is legal from the state. ``finish`` touches
    the source, so it must come after a ``converted`` outcome since the last crash."""
    required = sorted(lifecycle.registry.required.get(lifecycle.name, set()))
    state, converted = lifecycle.initial, False
    for _ in range(steps):
        spec = lifecycle.state(state)
        if spec.final:
            return
        options: list[tuple[str, str]] = []
        if spec.action:
            options += [("outcome", o) for o in spec.outcomes] + [("timeout", spec.on_timeout or "")]
        if spec.then:
            options.append(("wait", spec.then))
        if not spec.durable and spec.on_crash:
            options.append(("crash", spec.on_crash))
        options += [("operator", t) for t in lifecycle.operator_triggers_from(state)]
        # a named trigger that the state maps as an outcome is that outcome (the intake fires
        # `converted` exactly when every report is accepted), so it is not offered twice
        options += [("engine", t) for t in required
                    if t in lifecycle.triggers_from(state) and t not in spec.outcomes.values()]
        if not options:
            return
        kind, value = rng.choice(options)
        trigger = spec.outcomes[value] if kind == "outcome" else value
        if trigger == "finish" and not converted:
            raise Touched(f"finish fired from {state} before converted")
        if kind == "crash":
            converted = False
        elif kind == "outcome" and spec.action == "convert" and value == "converted":
            converted = True
        state = lifecycle.next_state(state, trigger)


_CONVERSION = load_lifecycle("conversion").definition.model_dump(mode="json")


def test_the_walk_finds_a_source_touched_too_early_when_unchecked() -> None:
    data = copy.deepcopy(_CONVERSION)
    data["transitions"].append({"trigger": "finish", "source": ["copied"], "dest": "done"})
    defn = MachineDef.model_validate(data)
    assert any("touches the source file without every report of the file accepted" in m
               for m in check_invariants(defn))
    unchecked = Lifecycle(defn, check=False)
    found = 0
    for seed in range(200):
        try:
            walk_conversion(unchecked, random.Random(seed))
        except Touched:
            found += 1
    assert found > 0


@settings(max_examples=300, deadline=None)
@given(mutations=st.lists(_mutation, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_every_conversion_mutant_the_checker_accepts_touches_no_source_early(
        mutations: list[tuple[str, int, int, int]], seed: int) -> None:
    data = copy.deepcopy(_CONVERSION)
    for mutation in mutations:
        data = _mutate(data, *mutation)
    try:
        defn = MachineDef.model_validate(data)
    except ValidationError:
        assume(False)
        return
    if check_invariants(defn):
        return
    lifecycle = Lifecycle(defn)
    rng = random.Random(seed)
    for _ in range(20):
        walk_conversion(lifecycle, rng)
