"""Site lifecycles: the config's ``lifecycles:`` folder replaces shipped machines after the same
checks, and the engine really runs what the YAML says.

The end-to-end tests run the real ``stationflow run`` in a subprocess against the emulator over
loopback: a hold-for-approval machine holds every report until ``queue fire approve``, a report
machine with every state and trigger renamed delivers like the shipped one, and an unsafe machine
or a spool with reports in a state the new machine lacks stops the service before it touches
anything (exit 4, every problem listed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stationflow.engine.cli.main import main
from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.errors import MachineDefinitionError
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from tests.conftest import FIXTURES, ROOT
from tests.helpers_service import wait_until
from tests.test_service import _no_stray_services, start_service, write_config  # noqa: F401 (autouse fixture)

HOLD = FIXTURES / "lifecycles" / "hold-for-approval"
QUARANTINE_REJECTED = FIXTURES / "lifecycles" / "quarantine-rejected"
LOSING = FIXTURES / "machines" / "losing"


@pytest.fixture
def emulator():
    with Emulator(port=0, seed=5) as emu:
        yield emu


def cli(config: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def site_config(tmp_path: Path, url: str, folder: Path | None, *, intake: bool = False) -> Path:
    extra = ""
    if folder is not None:
        extra += f"lifecycles: {folder}\n"
    if intake:
        (tmp_path / "drop").mkdir(exist_ok=True)
        extra += "intake:\n  - {name: drop, watch: ./drop, converter: wsjf, settle_ms: 0, patterns: ['*.json']}\n"
    return write_config(tmp_path, url, extra=extra)


def drop_reports(tmp_path: Path, n: int, seed: int) -> dict[str, bytes]:
    """Write ``n`` WSJF files into the drop folder (tmp name, then rename: whole when seen)."""
    out = {}
    for i in range(n):
        raw = make_report_bytes(i, seed=seed)
        key = json.loads(raw)["id"].lower()
        tmp = tmp_path / f"{key}.part"
        tmp.write_bytes(raw)
        tmp.rename(tmp_path / "drop" / f"{key}.json")
        out[key] = raw
    return out


def queue_states(config: Path) -> dict[str, str]:
    result = cli(config, "queue", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row["state"] for row in json.loads(result.stdout)}


# --------------------------------------------------------------------------- machines validate -c

def test_machines_validate_with_a_config_checks_the_machines_in_force(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    config = site_config(tmp_path, "http://127.0.0.1:9", folder)
    assert main(["-c", str(config), "machines", "validate"]) == 0
    out = capsys.readouterr().out
    site_sha = load_lifecycle(folder / "report.yaml").sha256
    assert f"OK report ({folder / 'report.yaml'}; site, sha256 {site_sha[:16]})" in out
    assert "OK conversion (" in out and "shipped" in out

    shutil.copy(LOSING / "2_failed_final.yaml", folder / "report.yaml")
    assert main(["-c", str(config), "machines", "validate"]) == 4
    err = capsys.readouterr().err
    assert "pending --send--> sending --rejected [outcome refused]--> failed" in err

    assert main(["-c", str(config), "machines", "list"]) == 0
    assert str(folder / "report.yaml") in capsys.readouterr().out


def test_a_misnamed_site_file_is_refused_not_ignored(tmp_path: Path) -> None:
    from stationflow.engine.lifecycle import in_force

    folder = tmp_path / "lifecycles"
    folder.mkdir()
    shutil.copy(HOLD / "report.yaml", folder / "reprot.yaml")
    with pytest.raises(MachineDefinitionError) as info:
        in_force(folder)
    assert any("reprot.yaml: no lifecycle the engine runs is called 'reprot'" in p for p in info.value.problems)
    with pytest.raises(MachineDefinitionError, match="does not exist"):
        in_force(tmp_path / "absent")


# --------------------------------------------------------------------------- run refuses

def test_run_refuses_an_unsafe_site_lifecycle_listing_every_problem_and_touching_nothing(
        tmp_path: Path, emulator: Emulator) -> None:
    folder = tmp_path / "lifecycles"
    folder.mkdir()
    shutil.copy(LOSING / "3_transient_to_sent.yaml", folder / "report.yaml")
    shutil.copy(FIXTURES / "machines" / "missing_trigger.yaml", folder / "task.yaml")
    config = site_config(tmp_path, emulator.url, folder)
    result = cli(config, "run", timeout=60)
    assert result.returncode == 4, result.stderr
    assert "--transient_error [outcome transient]--> sent: reaches a final state" in result.stderr
    assert "nothing fires 'park'" in result.stderr
    assert "machine 'task' has no transition for trigger 'recycle'" in result.stderr, \
        "every file's problems are listed"
    assert not (tmp_path / "data" / "spool").exists(), "nothing in the spool was created or touched"


def test_run_refuses_a_spool_with_reports_in_a_state_the_new_machine_lacks(tmp_path: Path,
                                                                          emulator: Emulator) -> None:
    data = tmp_path / "data"
    with Spool(data, fsync=False) as spool:  # two reports the server refused, under the shipped machine
        keys = [spool.accept(make_report_bytes(i, seed=9)).key for i in range(3)]
        for key in keys[:2]:
            spool.claim_next()
            spool.fire(key, "rejected", error="400 from the server")
    before = sorted(p.name for p in (data / "spool" / "failed").iterdir())
    config = site_config(tmp_path, emulator.url, QUARANTINE_REJECTED)
    result = cli(config, "run", timeout=60)
    assert result.returncode == 4, result.stderr
    assert "2 report(s) in state 'failed'" in result.stderr
    assert sorted(p.name for p in (data / "spool" / "failed").iterdir()) == before, "never moved, never deleted"
    assert emulator.received_ids() == set()


# --------------------------------------------------------------------------- end to end

def test_hold_for_approval_end_to_end(tmp_path: Path, emulator: Emulator) -> None:
    """Dropped files wait in held; nothing reaches the server until `queue fire approve ID...`,
    and then exactly those reports do."""
    config = site_config(tmp_path, emulator.url, HOLD, intake=True)
    proc = start_service(config, tmp_path / "stderr.log")
    reports = drop_reports(tmp_path, 4, seed=21)
    wait_until("every report held", lambda: queue_states(config) == {key: "held" for key in reports})
    assert emulator.received_ids() == set(), "nothing is sent before an approval"

    status = json.loads(cli(config, "status", "--json").stdout)
    in_force = status["uploader"]["lifecycle"]
    assert in_force["file"] == str(HOLD / "report.yaml") and not in_force["shipped"]
    assert in_force["sha256"] == load_lifecycle(HOLD / "report.yaml").sha256
    machines = status["uploader"]["lifecycles"]
    assert machines["report"] == in_force
    assert machines["conversion"]["shipped"] and machines["connection"]["shipped"]

    approved, kept = sorted(reports)[:2], sorted(reports)[2:]
    fired = cli(config, "queue", "fire", "approve", *approved)
    assert fired.returncode == 0, fired.stderr
    wait_until("the approved reports at the server", lambda: emulator.received_ids() == set(approved))
    wait_until("the approved reports sent", lambda: all(queue_states(config)[k] == "sent" for k in approved))
    assert {k: queue_states(config)[k] for k in kept} == {k: "held" for k in kept}

    refused = cli(config, "queue", "fire", "send", kept[0])  # an engine trigger: not for a person
    assert refused.returncode == 4
    assert "an operator may fire from here: approve" in refused.stderr
    again = cli(config, "queue", "fire", "approve", approved[0])  # sent: nothing to approve
    assert again.returncode == 4
    retry = cli(config, "queue", "retry", kept[0])  # retry is an operator trigger, but not from held
    assert retry.returncode == 4
    assert queue_states(config)[kept[0]] == "held"

    proc.terminate()
    assert proc.wait(20) == 0, (tmp_path / "stderr.log").read_text()
    offline = cli(config, "queue", "fire", "approve", kept[0])  # no service: on the spool itself
    assert offline.returncode == 0, offline.stderr
    assert f"{kept[0]}: pending" in offline.stdout
    assert emulator.received_ids() == set(approved)


def _renamed(name: str, folder: Path, *, triggers_too: bool) -> dict[str, str]:
    """Write the shipped ``name`` machine into ``folder`` with every state (and, if the engine
    fires none of them by name, every trigger) renamed; return the map of state names."""
    data = yaml.safe_load(Path(load_lifecycle(name).source).read_text())
    states = {s: f"st_{i}_{s[::-1]}" for i, s in enumerate(data["states"])}
    triggers = {t["trigger"]: (f"tr_{t['trigger'][::-1]}" if triggers_too else t["trigger"])
                for t in data["transitions"]}
    data["initial"] = states[data["initial"]]
    new_states = {}
    for old, state in data["states"].items():
        for key in ("on_timeout", "then", "on_crash"):
            if state.get(key):
                state[key] = triggers[state[key]]
        if state.get("outcomes"):
            state["outcomes"] = {o: triggers[t] for o, t in state["outcomes"].items()}
        new_states[states[old]] = state
    data["states"] = new_states
    for t in data["transitions"]:
        t["trigger"] = triggers[t["trigger"]]
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        t["source"] = [states[x] for x in sources]
        t["dest"] = states[t["dest"]]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return states


def test_renaming_every_state_changes_nothing_in_delivery(tmp_path: Path, emulator: Emulator) -> None:
    """Every state of every machine renamed (and every trigger of the report machine, which the
    engine fires only through roles): the pipeline still delivers, status speaks in roles."""
    folder = tmp_path / "lifecycles"
    folder.mkdir()
    sent = _renamed("report", folder, triggers_too=True)["sent"]
    done = _renamed("conversion", folder, triggers_too=False)["done"]
    _renamed("connection", folder, triggers_too=False)
    service_running = _renamed("service", folder, triggers_too=False)["running"]
    task_running = _renamed("task", folder, triggers_too=False)["running"]
    for name in ("report", "conversion", "connection", "service", "task"):
        shipped = set(load_lifecycle(name).states)
        assert not set(load_lifecycle(name, override_dirs=[folder]).states) & shipped
    config = site_config(tmp_path, emulator.url, folder, intake=True)
    emulator.set_faults(error_rate=0.3, drop_after_rate=0.2)  # the retry path and lost answers run too
    proc = start_service(config, tmp_path / "stderr.log")
    reports = drop_reports(tmp_path, 5, seed=33)
    wait_until("every report at the server", lambda: emulator.received_ids() == set(reports))
    wait_until(f"every report in {sent}", lambda: queue_states(config) == {key: sent for key in reports})
    status = json.loads(cli(config, "status", "--json").stdout)
    assert status["uploader"]["mode"] == "st_0_enilno", "the uploader's mode is the renamed connection state"
    assert (status["service"]["state"], status["service"]["machine_state"]) == ("running", service_running)
    assert {(t["state"], t["machine_state"]) for t in status["tasks"].values()} == {("running", task_running)}
    counts = status["intake"]["intakes"]["drop"]["counts"]
    assert counts[done] == len(reports), f"the intake counts its files in the renamed {done}: {counts}"
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == [], "every source archived"
    proc.terminate()
    assert proc.wait(20) == 0, (tmp_path / "stderr.log").read_text()
