"""Lifecycles as data: the schema, the invariant checker, the built machine and the CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transitions import MachineError

from stationflow.engine.cli.main import main
from stationflow.engine.errors import IllegalTransition, MachineDefinitionError
from stationflow.engine.lifecycle import (
    DEFAULT_REGISTRY,
    Lifecycle,
    check_invariants,
    load_definition,
    load_lifecycle,
    shipped_names,
)
from stationflow.schemas.machine import parse_duration
from tests.conftest import FIXTURES

BAD = FIXTURES / "machines"
SHIPPED = ("report", "conversion", "task", "service", "connection")


def problems_of(path: Path, **kw) -> list[str]:
    with pytest.raises(MachineDefinitionError) as info:
        load_lifecycle(path, **kw)
    assert info.value.problems, "a refusal must list its problems"
    return info.value.problems


@pytest.fixture(scope="module")
def report() -> Lifecycle:
    return load_lifecycle("report")


# --------------------------------------------------------------------------- shipped machines

def test_every_shipped_machine_is_shipped_and_valid() -> None:
    assert set(SHIPPED) <= set(shipped_names())
    for name in shipped_names():
        lifecycle = load_lifecycle(name)
        assert lifecycle.name == name
        assert check_invariants(lifecycle.definition) == []
        assert DEFAULT_REGISTRY.required.get(name, set()) <= {t.trigger for t in lifecycle.definition.transitions}


def test_report_lifecycle_is_the_documented_one(report: Lifecycle) -> None:
    assert report.initial == "pending"
    assert set(report.states) >= {"pending", "sending", "retry_wait", "sent", "failed", "quarantined"}
    expected = {
        ("pending", "send"): "sending",
        ("sending", "accepted"): "sent",
        ("sending", "transient_error"): "retry_wait",
        ("sending", "rejected"): "failed",
        ("sending", "recover"): "pending",
        ("retry_wait", "due"): "pending",
        ("failed", "retry"): "pending",
        ("quarantined", "retry"): "pending",
        ("pending", "quarantine"): "quarantined",
        ("sending", "quarantine"): "quarantined",
        ("retry_wait", "quarantine"): "quarantined",
    }
    for (source, trigger), dest in expected.items():
        assert report.next_state(source, trigger) == dest
    allowed = {(s, t) for s in report.states for t in report.triggers_from(s)}
    assert allowed == set(expected), "the report machine allows exactly the documented moves"
    sending = report.state("sending")
    assert (sending.action, sending.timeout, sending.on_timeout) == ("upload", 120.0, "transient_error")
    assert report.state("retry_wait").wait == "next_attempt"
    assert [s for s in report.states if report.is_durable(s)] == [
        "pending", "retry_wait", "sent", "failed", "quarantined"]
    assert [s for s in report.states if report.is_final(s)] == ["sent"]


def test_conversion_runs_convert_with_a_timeout_from_a_durable_copy() -> None:
    conversion = load_lifecycle("conversion")
    converting = conversion.state("converting")
    assert converting.action == "convert" and converting.timeout and converting.on_timeout
    assert conversion.is_durable(conversion.initial)
    for source in conversion.states:
        if "convert" in conversion.triggers_from(source):
            assert conversion.is_durable(source)


def test_built_machine_has_no_callbacks(report: Lifecycle) -> None:
    machine = report.machine
    assert machine.models == []
    for state in machine.states.values():
        assert state.on_enter == [] and state.on_exit == []
    for event in machine.events.values():
        for transitions in event.transitions.values():
            for t in transitions:
                assert t.prepare == t.before == t.after == t.conditions == []


# --------------------------------------------------------------------------- invariants

def test_sending_reachable_without_a_durable_state_is_refused() -> None:
    problems = problems_of(BAD / "send_from_staging.yaml")
    assert len(problems) == 1
    assert "staging" in problems[0] and "sending" in problems[0] and "non-durable" in problems[0]
    assert problems[0].startswith(f"{BAD / 'send_from_staging.yaml'}:14: "), "names file and line"


def test_star_source_counts_non_durable_states() -> None:
    (problem,) = problems_of(BAD / "send_from_any.yaml")
    assert "(* → sending)" in problem and "non-durable state 'sending'" in problem


# One fixture per rule; each must give exactly one message, with these words in it.
SINGLE_VIOLATIONS = {
    "dotted_action.yaml": ["'busy'", "os.system", "dotted import paths are never allowed", "upload"],
    "dotted_wait.yaml": ["'resting'", "time.sleep", "dotted import paths are never allowed", "backoff"],
    "unknown_action.yaml": ["'busy'", "teleport", "not in the engine's registry"],
    "missing_trigger.yaml": ["'task'", "'recycle'"],
    "unreachable.yaml": ["'orphan'", "unreachable"],
    "dead_end.yaml": ["'stuck'", "dead end"],
    "final_exit.yaml": ["'again'", "final state 'done'"],
    "no_timeout.yaml": ["'busy'", "without a timeout"],
    "no_on_timeout.yaml": ["'busy'", "without on_timeout"],
    "on_timeout_not_out.yaml": ["'busy'", "on_timeout 'give_up' is not a transition out"],
    "timeout_without_action.yaml": ["'busy'", "no action"],
    "wait_without_then.yaml": ["'resting'", "without then"],
    "then_not_out.yaml": ["'resting'", "then 'finish' is not a transition out"],
    "initial_not_durable.yaml": ["'idle'", "must be durable"],
    "initial_undeclared.yaml": ["'idel'", "not declared"],
    "undeclared_state.yaml": ["'vanish'", "'nowhere'"],
    "ambiguous.yaml": ["'finish'", "'idle'", "ambiguous"],
    "durable_action.yaml": ["'busy'", "marked durable"],
    "unknown_key.yaml": ["states.idle.before", "unknown key 'before'"],
    "bad_duration.yaml": ["states.busy.timeout", "'soon' is not a duration"],
    "duplicate_key.yaml": ["duplicate key 'idle'", "first at line 5"],
    "bad_syntax.yaml": ["bad_syntax.yaml:7:12: YAML syntax error"],
    "no_on_crash.yaml": ["'sending'", "no on_crash"],
    "unknown_outcome.yaml": ["'exploded' is not an outcome of action 'upload'"],
    "outcome_unmapped.yaml": ["'sending'", "outcome(s) paused"],
    "unfired.yaml": ["'skip'", "nothing fires", "by: operator"],
    "two_quarantines.yaml": ["2 states marked quarantine", "failed, quarantined"],
    "operator_into_work.yaml": ["'push'", "operator into 'sending'"],
    "aliases.yaml": ["aliases.yaml:5:", "anchors and aliases"],
}


@pytest.mark.parametrize("fixture", sorted(SINGLE_VIOLATIONS))
def test_each_invariant_has_its_own_message(fixture: str) -> None:
    (problem,) = problems_of(BAD / fixture)
    for words in SINGLE_VIOLATIONS[fixture]:
        assert words in problem
    assert problem.startswith(str(BAD / fixture) + ":"), "every problem names its file"


def test_every_bad_fixture_is_covered() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(SINGLE_VIOLATIONS) | {
        "send_from_staging.yaml", "send_from_any.yaml"}


def test_check_invariants_on_a_definition_without_a_file() -> None:
    text = (BAD / "send_from_staging.yaml").read_text()
    defn = load_definition("inline", text=text)
    (message,) = check_invariants(defn)
    assert "'staging'" in message and "'sending'" in message
    fixed = text.replace("{trigger: send,            source: staging,", "{trigger: push, source: staging,")
    fixed = fixed.replace("staging:     {}", "staging:     {durable: true}")
    assert check_invariants(load_definition("inline", text=fixed)) == []


def test_several_violations_are_all_reported() -> None:
    text = (BAD / "no_timeout.yaml").read_text().replace("action: probe", "action: pkg.mod.fn")
    text += "  - {trigger: nothing, source: done, dest: idle}\n"
    messages = check_invariants(load_definition("inline", text=text))
    assert len(messages) == 3
    assert any("dotted import paths" in m for m in messages)
    assert any("without a timeout" in m for m in messages)
    assert any("leaves final state 'done'" in m for m in messages)


def test_schema_problems_name_field_and_line() -> None:
    text = ("name: gadget\ninitial: idle\nstates:\n  Idle: {durable: yes}\n"
            "transitions:\n  - {trigger: to_x, source: Idle, dest: x}\n")
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("inline.yaml", text=text)
    problems = info.value.problems
    assert any(p.startswith("inline.yaml:4: states.Idle (name):") and "not a valid name" in p
               for p in problems)
    assert any(p.startswith("inline.yaml:6: transitions #1.trigger:") and "reserved" in p for p in problems)
    assert any("transitions #1.source #1" in p for p in problems)


def test_not_a_mapping_and_missing_keys() -> None:
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("list.yaml", text="- a\n- b\n")
    assert "must be a YAML mapping" in info.value.problems[0]
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("empty.yaml", text="name: x\n")
    joined = "\n".join(info.value.problems)
    assert "initial: required key is missing" in joined and "states: required key is missing" in joined


@pytest.mark.parametrize(("given_", "seconds"), [
    (3, 3.0), (1.5, 1.5), ("120s", 120.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("45", 45.0)])
def test_durations(given_: object, seconds: float) -> None:
    assert parse_duration(given_) == seconds


@pytest.mark.parametrize("bad", [0, -1, "0s", True, "soon", "5 days", None, float("inf")])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


# --------------------------------------------------------------------------- finding files

def test_site_override_is_used_and_still_checked(tmp_path: Path) -> None:
    shipped = Path(load_lifecycle("report").source).read_text()
    held = shipped.replace(
        "  sending:\n",
        "  held:\n    durable: true\n    description: Waiting for approval.\n  sending:\n",
    ).replace(
        "  - {trigger: send,            source: pending,",
        "  - {trigger: hold, source: pending, dest: held, by: operator}\n"
        "  - {trigger: send,            source: [pending, held],",
    )
    (tmp_path / "report.yaml").write_text(held)
    lifecycle = load_lifecycle("report", override_dirs=[tmp_path])
    assert lifecycle.source == str(tmp_path / "report.yaml")
    assert lifecycle.next_state("held", "send") == "sending"

    (tmp_path / "report.yaml").write_text(held.replace("durable: true\n    description: Waiting",
                                                       "description: Waiting"))
    problems = problems_of("report", override_dirs=[tmp_path])
    assert any("'held'" in p and "'sending'" in p for p in problems)


def test_override_with_the_wrong_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report.yaml").write_text((BAD / "final_exit.yaml").read_text().replace(
        "  - {trigger: again,  source: done, dest: idle}\n", ""))
    (problem,) = problems_of("report", override_dirs=[tmp_path])
    assert "loaded as 'report' but says name: gadget" in problem


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(MachineDefinitionError, match="no lifecycle named 'nope'"):
        load_lifecycle("nope")
    with pytest.raises(MachineDefinitionError, match="does not exist"):
        load_lifecycle(BAD / "absent.yaml")


# --------------------------------------------------------------------------- the built machine

def test_next_state_and_illegal_transitions(report: Lifecycle) -> None:
    assert report.next_state("pending", "send") == "sending"
    with pytest.raises(IllegalTransition,
                       match=r"cannot send a report in state sent — allowed from here: nothing \(sent is final\)"):
        report.next_state("sent", "send")
    with pytest.raises(IllegalTransition,
                       match="cannot send a report in state failed — allowed from here: retry$"):
        report.next_state("failed", "send")
    with pytest.raises(IllegalTransition, match="'limbo' is not a state"):
        report.next_state("limbo", "send")
    with pytest.raises(IllegalTransition, match="allowed from here: send, quarantine"):
        report.next_state("pending", "bogus")
    assert IllegalTransition("x").exit_code == 4
    # A miss must not grow the machine's tables (transitions' event tables are defaultdicts).
    assert "sent" not in report.machine.events["send"].transitions


def test_next_state_from_many_threads(report: Lifecycle) -> None:
    moves = [(s, t) for s in report.states for t in report.triggers_from(s)]
    expected = {move: report.next_state(*move) for move in moves}
    errors: list[str] = []

    def hammer() -> None:
        for _ in range(2000):
            for move in moves:
                if report.next_state(*move) != expected[move]:
                    errors.append(repr(move))
            try:
                report.next_state("sent", "retry")
                errors.append("illegal move allowed")
            except IllegalTransition:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


class _Model:
    state: str


def _oracle(lifecycle: Lifecycle) -> dict[tuple[str, str], str]:
    """The moves read straight from the YAML definition, independently of transitions."""
    table = {}
    for t in lifecycle.definition.transitions:
        sources = t.source
        if "*" in sources:
            sources = [s for s, d in lifecycle.definition.states.items() if not d.final]
        for source in sources:
            table[(source, t.trigger)] = t.dest
    return table


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(sorted({t.trigger for t in load_lifecycle("report").definition.transitions})
                                 + ["bogus"]), max_size=40))
def test_next_state_agrees_with_a_bound_transitions_model(triggers: list[str]) -> None:
    lifecycle = _REPORT
    oracle = _oracle(lifecycle)
    model = _Model()
    lifecycle.bind(model)
    try:
        state = lifecycle.initial
        for trigger in triggers:
            assert model.state == state
            try:
                expected = lifecycle.next_state(state, trigger)
            except IllegalTransition:
                assert (state, trigger) not in oracle
                with pytest.raises((MachineError, AttributeError)):
                    model.trigger(trigger)
                assert model.state == state
                continue
            assert oracle[(state, trigger)] == expected
            assert model.trigger(trigger) is True
            assert model.state == expected
            state = expected
    finally:
        lifecycle.unbind(model)
    assert lifecycle.machine.models == []


_REPORT = load_lifecycle("report")


def test_bind_long_lived_models() -> None:
    service = load_lifecycle("service")
    model = _Model()
    service.bind(model)
    assert model.state == "stopped"
    for trigger, state in [("start", "starting"), ("started", "running"), ("degrade", "degraded"),
                           ("recover", "running"), ("drain", "draining"), ("drained", "stopped")]:
        model.trigger(trigger)
        assert model.state == state
    with pytest.raises(MachineError):
        model.trigger("drained")
    other = _Model()
    service.bind(other, initial="error")
    other.trigger("reset")
    assert other.state == "stopped"
    with pytest.raises(KeyError, match="not a state"):
        service.bind(_Model(), initial="nowhere")


def test_task_backoff_and_give_up() -> None:
    task = load_lifecycle("task")
    path = ["start", "started", "crashed", "restart", "started", "crashed", "give_up", "stop"]
    state = task.initial
    for trigger in path:
        state = task.next_state(state, trigger)
    assert state == "stopped" and task.is_final(state)
    assert task.state("backing_off").wait == "backoff" and task.state("backing_off").then == "restart"


@pytest.mark.parametrize("name", SHIPPED)
def test_mermaid_has_every_state_and_transition(name: str) -> None:
    lifecycle = load_lifecycle(name)
    text = lifecycle.mermaid()
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert f"    [*] --> {lifecycle.initial}" in lines
    for (source, trigger), dest in _oracle(lifecycle).items():
        operator = trigger in lifecycle.operator_triggers_from(source)
        assert f"    {source} --> {dest} : {trigger}" + (" (operator)" if operator else "") in lines
    for state in lifecycle.states:
        assert state in text
        assert (f"    {state} --> [*]" in lines) == lifecycle.is_final(state)
    durable = [s for s in lifecycle.states if lifecycle.is_durable(s)]
    assert f"    class {','.join(durable)} durable" in lines


# --------------------------------------------------------------------------- CLI

def test_cli_validate_all_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machines", "validate"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert f"OK {name} (" in out
    assert "OK report (" in out and "6 states, 8 transitions" in out


def test_cli_validate_bad_files_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    good = load_lifecycle("task").source
    code = main(["machines", "validate", good,
                 str(BAD / "send_from_staging.yaml"), str(BAD / "dotted_action.yaml")])
    assert code == 4
    captured = capsys.readouterr()
    assert "OK task" in captured.out
    assert "2 of 3 lifecycle definition(s) are invalid" in captured.err
    assert "non-durable state 'staging'" in captured.err
    assert "dotted import paths are never allowed" in captured.err


def test_cli_validate_with_override_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "report.yaml").write_text((BAD / "send_from_staging.yaml").read_text())
    assert main(["machines", "validate", "--dir", str(tmp_path)]) == 4
    assert "staging" in capsys.readouterr().err


def test_cli_graph_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machines", "graph", "report"]) == 0
    out = capsys.readouterr().out
    assert out == load_lifecycle("report").mermaid()
    assert main(["machines", "graph", str(BAD / "unreachable.yaml")]) == 4
    assert "orphan" in capsys.readouterr().err
    assert main(["machines", "graph", "nope"]) == 4
    assert main(["machines", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out


# --------------------------------------------------------------------------- connection machine

def test_the_uploader_mode_is_the_connection_lifecycle_found_by_role(tmp_path: Path) -> None:
    from stationflow.engine.upload.uploader import Link

    shipped = Link(load_lifecycle("connection"))
    assert (shipped.online, shipped.offline, shipped.paused, shipped.stopped) == (
        "online", "offline", "paused", "stopped")
    text = Path(load_lifecycle("connection").source).read_text()
    for old, new in (("online", "sending_ok"), ("offline", "no_answer"), ("paused", "refused_us"),
                     ("stopped", "halted")):
        text = text.replace(f"{old}:", f"{new}:").replace(f"initial: {old}", f"initial: {new}")
        text = text.replace(f"source: {old},", f"source: {new},")
        for sep in (",", "]", "}"):
            text = text.replace(f" {old}{sep}", f" {new}{sep}").replace(f"[{old}{sep}", f"[{new}{sep}")
    (tmp_path / "connection.yaml").write_text(text)
    renamed = Link(load_lifecycle("connection", override_dirs=[tmp_path]))
    assert (renamed.online, renamed.offline, renamed.paused, renamed.stopped) == (
        "sending_ok", "no_answer", "refused_us", "halted")
    assert renamed.after(renamed.online, "unreachable") == renamed.offline
    assert renamed.after(renamed.paused, "refused") == renamed.paused, "only the reason changes"
    assert renamed.after(renamed.paused, "reconfigured") == renamed.offline


def test_readme_diagrams_equal_machines_graph() -> None:
    """The README's Mermaid diagram of each shipped machine is what `machines graph` prints."""
    import re

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"#### (\w+)\n\n```mermaid\n(.*?)```", readme, flags=re.S))
    assert set(blocks) == set(shipped_names()), "one diagram per shipped machine"
    for name, diagram in blocks.items():
        assert diagram == load_lifecycle(name).mermaid(), f"README diagram of {name} is stale"
