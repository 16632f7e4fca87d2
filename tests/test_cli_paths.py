"""Command-line paths and the lifecycle checker's rarer messages: an interrupted command (exit 130),
a closed pipe (exit 0), ``python -m`` on the CLI module, a config naming a lifecycles folder that
is not there, ``demo``/``emulator`` option errors, a spool format marker that is unreadable or not a
number (exit 9), and lifecycle definitions each breaking one rule."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stationflow import __version__
from stationflow.engine.cli import config as config_cli
from stationflow.engine.cli.main import main
from stationflow.engine.config_file import write_starter
from stationflow.engine.errors import IncompatibleSpool, MachineDefinitionError
from stationflow.engine.lifecycle import Lifecycle, check_invariants, in_force, load_definition, load_lifecycle
from stationflow.engine.lifecycle.load import read_source
from stationflow.engine.lifecycle.site import site_lifecycle
from stationflow.engine.spool.store import Spool
from tests.conftest import ROOT

# --------------------------------------------------------------------------------- the CLI


def test_an_interrupted_command_exits_130_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cli, "cmd_schema", interrupted)
    assert main(["config", "schema"]) == 130
    assert capsys.readouterr().err == "stationflow: interrupted\n"


def test_output_into_a_closed_pipe_is_no_error(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def closed(args: object) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(config_cli, "cmd_schema", closed)
    assert main(["config", "schema"]) == 0  # `stationflow config schema | head` ends quietly
    assert capsys.readouterr().err == ""


def test_the_cli_module_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, "-m", "stationflow.engine.cli.main", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == f"stationflow {__version__}\n"


def test_a_config_naming_a_missing_lifecycles_folder_is_refused_by_machines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    write_starter(config, station_name="S")
    config.write_text(config.read_text() + "lifecycles: ./site-machines\n")
    assert main(["-c", str(config), "machines", "list"]) == 4
    err = capsys.readouterr().err
    assert f"the lifecycles folder {tmp_path / 'site-machines'} does not exist" in err
    assert f"{config}: lifecycles: {tmp_path / 'site-machines'} is not a folder — create it or remove the key" in err


def test_demo_needs_at_least_one_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--reports must be at least 1"):
        main(["demo", "--reports", "0"])


def test_a_demo_that_lost_a_report_exits_10(monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine.cli import demo as demo_cli
    from stationflow.engine.devtools.demo import DemoResult

    asked: dict[str, object] = {}

    def lossy(**options: object) -> DemoResult:
        asked.update(options)
        return DemoResult(generated=5, lost=1, lost_ids=["x"])

    monkeypatch.setattr(demo_cli, "run_demo", lossy)
    assert main(["demo", "--reports", "5", "--outage", "0"]) == 10
    assert asked["reports"] == 5 and asked["outage_s"] == 0


def test_the_emulator_on_a_port_in_use_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["emulator", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err


# ------------------------------------------------------------------------- spool format

def _spool_with_marker(tmp_path: Path, marker: bytes) -> Path:
    root = tmp_path / "data" / "spool"
    Spool(root).close()
    found = [p for p in root.parent.rglob("format") if p.is_file()]
    assert len(found) == 1, found
    found[0].write_bytes(marker)
    return root


def test_a_spool_whose_format_marker_is_not_a_number_is_refused(tmp_path: Path) -> None:
    root = _spool_with_marker(tmp_path, b"one\n")
    with pytest.raises(IncompatibleSpool, match=r"does not hold a version number \('one'\)") as info:
        Spool(root)
    assert info.value.exit_code == 9 and "from a backup" in str(info.value)
    root = _spool_with_marker(tmp_path / "empty", b"\n")
    with pytest.raises(IncompatibleSpool, match=r"does not hold a version number \(''\)"):
        Spool(root)


def test_a_spool_whose_format_marker_cannot_be_read_is_refused(tmp_path: Path) -> None:
    root = _spool_with_marker(tmp_path, b"\xff\xfe1\n")
    with pytest.raises(IncompatibleSpool, match="cannot read the spool's format marker"):
        Spool(root)


# --------------------------------------------------------------------------- lifecycles

GADGET = """name: gadget
initial: idle
states:
  idle:    {durable: true}
  resting: {durable: true, wait: backoff, then: wake}
  done:    {durable: true, final: true}
transitions:
  - {trigger: rest,   source: idle,    dest: resting}
  - {trigger: wake,   source: resting, dest: idle}
  - {trigger: finish, source: idle,    dest: done}
"""
CONVERSION = (ROOT / "machines" / "conversion.yaml").read_text()


def _invariants(text: str) -> list[str]:
    return check_invariants(load_definition("inline.yaml", text=text))


def _refused(text: str) -> list[str]:
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("inline.yaml", text=text)
    return info.value.problems


def test_the_base_gadget_is_valid() -> None:
    assert _invariants(GADGET) == []


def test_a_state_that_both_works_and_waits_is_refused() -> None:
    text = GADGET.replace("resting: {durable: true, wait: backoff, then: wake}",
                          "resting: {action: probe, wait: backoff, then: wake, timeout: 5s, on_timeout: wake, "
                          "on_crash: wake}")
    assert _invariants(text) == ["state 'resting' has both an action and a wait — a state either works or waits; "
                                 "split it into two states"]


def test_then_without_a_wait_and_outcomes_without_an_action_are_refused() -> None:
    assert _invariants(GADGET.replace("idle:    {durable: true}", "idle:    {durable: true, then: finish}")) == [
        "state 'idle' has then 'finish' but no wait — add wait: <name> or remove then"]
    assert _invariants(GADGET.replace("idle:    {durable: true}", "idle:    {durable: true, outcomes: {ok: finish}}")) == [
        "state 'idle' maps outcomes but runs no action — only an action has outcomes; remove outcomes or add an action"]


def test_on_crash_must_lead_out_of_its_state() -> None:
    text = CONVERSION.replace("    on_crash: changed\n    description: Stopped", "    on_crash: finish\n    description: Stopped")
    assert _invariants(text) == ["state 'settled': on_crash 'finish' is not a transition out of 'settled' — add "
                                 "{trigger: finish, source: settled, dest: <a durable state>}"]


def test_a_conversion_machine_whose_steps_the_intake_cannot_find_is_refused() -> None:
    text = CONVERSION.replace("  spooled:\n    durable: true\n",
                              "  spooled:\n    action: convert\n    outcomes: {converted: finish, rejected: finish, "
                              "deferred: finish}\n    timeout: 1h\n    on_timeout: finish\n    on_crash: finish\n")
    (problem,) = _invariants(text)
    assert problem.startswith("the intake cannot find its steps in this conversion machine: 2 states run action "
                              "'convert' (converting, spooled) — the intake needs exactly one")
    # finish leaves from rejected only, not from spooled: the post-action step cannot be found
    text = CONVERSION.replace("{trigger: finish,    source: spooled,    dest: done}",
                              "{trigger: done_it,   source: spooled,    dest: done}\n"
                              "  - {trigger: finish, source: rejected, dest: gone}")
    assert any(p.startswith("the intake cannot find its steps in this conversion machine: no transition 'finish' "
                            "from 'spooled'") for p in _invariants(text))
    # An undeclared initial state is reported once, by the structural check, not again by the roles.
    (problem,) = _invariants(CONVERSION.replace("initial: detected", "initial: nowhere"))
    assert problem.startswith("initial state 'nowhere' is not declared under states")


@pytest.mark.parametrize("change, problem", [
    (("  done:", "  '*': {durable: true}\n  done:"), "inline.yaml:6: states.* (name): '*' may only be used as a "
                                                      "transition source"),
    (("trigger: finish", "trigger: yes"), "inline.yaml:10: transitions #3.trigger: YAML read this as true/false"),
    (("dest: done}", "dest: done, by: robot}"), "inline.yaml:10: transitions #3.by: by is engine (the default) or "
                                                "operator"),
    (("dest: done}", "dest: done, when: later}"), "inline.yaml:10: transitions #3.when: unknown key 'when' — lifecycle "
                                                  "YAML has no callbacks or other keys; allowed keys for a transition: "
                                                  "trigger, source, dest, by, description"),
    (("transitions:", "colour: red\ntransitions:"), "inline.yaml:7: colour: unknown key 'colour' — lifecycle YAML has "
                                                    "no callbacks or other keys; allowed keys for a lifecycle: name"),
])
def test_each_schema_problem_is_named_with_its_line(change: tuple[str, str], problem: str) -> None:
    problems = _refused(GADGET.replace(*change))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_lifecycle_nested_too_deep_is_refused_with_its_line() -> None:
    deep = "x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)) + "  " * 41 + "v: 1\n"
    (problem,) = _refused(GADGET + deep)
    assert problem.startswith("inline.yaml:27: nested more than 16 levels deep")


def test_a_lifecycle_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gadget.yaml").mkdir()
    with pytest.raises(MachineDefinitionError, match="cannot read lifecycle file .*gadget.yaml"):
        read_source(tmp_path / "gadget.yaml")


def test_a_lifecycle_that_breaks_a_rule_cannot_be_built() -> None:
    defn = load_definition("inline.yaml", text=GADGET.replace("idle:    {durable: true}",
                                                              "idle:    {durable: true, then: finish}"))
    with pytest.raises(MachineDefinitionError, match=r"is invalid \(1 problem\(s\)\)") as info:
        Lifecycle(defn)
    assert info.value.problems == ["state 'idle' has then 'finish' but no wait — add wait: <name> or remove then"]


def test_a_lifecycle_names_its_states_and_refuses_others() -> None:
    report = load_lifecycle("report")
    assert repr(report) == f"<Lifecycle report from {report.source}: {len(report.states)} states>"
    for ask in (report.triggers_from, report.operator_triggers_from):
        with pytest.raises(KeyError, match="'nowhere' is not a state of the report lifecycle"):
            ask("nowhere")
    assert "sending : action upload (timeout 2m → transient_error)" in report.mermaid()


def test_a_site_folder_with_other_files_uses_only_its_yaml(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("notes for the site")
    (tmp_path / "report.yaml").write_text((ROOT / "machines" / "report.yaml").read_text())
    machines = in_force(tmp_path)
    assert not machines["report"].shipped and machines["conversion"].shipped
    assert site_lifecycle(tmp_path, "report").source == str(tmp_path / "report.yaml")


def test_a_timeout_that_is_no_whole_minute_is_shown_in_seconds() -> None:
    text = GADGET.replace("resting: {durable: true, wait: backoff, then: wake}",
                          "resting: {durable: true, wait: backoff, then: wake}\n"
                          "  busy:    {action: probe, timeout: 90s, on_timeout: wake, on_crash: wake,\n"
                          "            outcomes: {answers: wake, fails: wake}}").replace(
        "  - {trigger: finish", "  - {trigger: work,   source: idle,    dest: busy}\n"
                                "  - {trigger: wake,   source: busy,    dest: idle}\n  - {trigger: finish")
    lifecycle = Lifecycle(load_definition("inline.yaml", text=text))
    assert "busy : action probe (timeout 90s → wake)" in lifecycle.mermaid()


# ------------------------------------------------------------------------------ schemas

def test_a_whole_reports_key_is_its_canonical_id() -> None:
    from stationflow.engine.devtools.samples import make_report_bytes
    from stationflow.schemas.wsjf import load_report

    doc = json.loads(make_report_bytes(1, seed=3))
    doc["id"] = "{" + doc["id"].upper() + "}"  # as some testers write it
    report = load_report(json.dumps(doc))
    assert report.key == report.id.strip("{}").lower()


def test_a_control_response_has_an_error_exactly_when_it_failed() -> None:
    from pydantic import ValidationError

    from stationflow.schemas.control import ErrorInfo, Response

    assert Response(ok=False, error=ErrorInfo(code="busy", message="try again")).error is not None
    for ok, error in ((True, ErrorInfo(code="x", message="y")), (False, None)):
        with pytest.raises(ValidationError, match="a response has an error exactly when ok is false"):
            Response(ok=ok, error=error)


def test_a_control_character_in_a_lifecycle_is_a_refusal_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug found here: PyYAML's reader refuses control characters while the loader is made, which
    happened outside the error handling — `machines validate` died with a ReaderError traceback."""
    (problem,) = _refused(GADGET.replace("name: gadget", "name: gad\x07get"))
    assert problem.startswith("inline.yaml: YAML error: unacceptable character #x0007") and "\n" not in problem
    (tmp_path / "gadget.yaml").write_text(GADGET.replace("name: gadget", "name: gad\x07get"))
    assert main(["machines", "validate", str(tmp_path / "gadget.yaml")]) == 4
    assert "unacceptable character #x0007" in capsys.readouterr().err
