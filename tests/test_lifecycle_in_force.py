"""What the station access and the engine's helpers read from the machines in force (not literals).

The problems a person is asked about are the states the report machine in force makes wait for a
person: with the quarantine example (refusals go to quarantine, there is no ``failed``) they are
the quarantined reports, and nothing asks about a ``failed`` state the machine does not have.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stationflow.engine.cli.main import main
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from stationflow.engine.station import load_station
from stationflow.engine.station_access import StationAccess, problem_states, report_states
from tests.conftest import FIXTURES
from tests.test_service import write_config

HOLD = FIXTURES / "lifecycles" / "hold-for-approval"
QUARANTINE_REJECTED = FIXTURES / "lifecycles" / "quarantine-rejected"


def test_problem_states_come_from_the_roles_of_the_machine_in_force() -> None:
    assert problem_states(load_lifecycle("report")) == ("failed", "quarantined")
    assert problem_states(load_lifecycle(QUARANTINE_REJECTED / "report.yaml")) == ("quarantined",)
    assert problem_states(load_lifecycle(HOLD / "report.yaml")) == ("held", "failed", "quarantined")


def test_problems_with_the_quarantine_example_are_the_quarantined_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "lifecycles"
    shutil.copytree(QUARANTINE_REJECTED, folder)
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=f"lifecycles: {folder}\n")
    _, cfg = load_station(str(config))
    assert report_states(cfg) == ["pending", "sending", "retry_wait", "sent", "quarantined"]
    assert StationAccess(cfg).problems().rows == [], "no spool yet: nothing waits, and nothing fails"

    with Spool(tmp_path / "data", lifecycle=load_lifecycle(folder / "report.yaml"), fsync=False) as spool:
        keys = [spool.accept(make_report_bytes(i, seed=4)).key for i in range(3)]
        refused = spool.claim_next()
        assert refused is not None
        spool.fire(refused.key, "quarantine", error="400 from the server: bad part number")

    access = StationAccess(cfg)
    assert access.problem_states() == ("quarantined",)
    page = access.problems()
    assert page.source == "disk" and page.total == 1
    assert [(r["id"], r["state"]) for r in page.rows] == [(refused.key, "quarantined")]
    assert page.rows[0]["sn"], "the row carries what a person knows the report by"
    assert set(keys) - {refused.key}, "the other reports are not problems"

    assert main(["-c", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert f"quarantined: {refused.key} — 400 from the server: bad part number" in out


# --------------------------------------------------------------------------- reload keeps the machines


def test_reload_keeps_the_machines_in_force_and_says_which_files_wait_for_a_restart(tmp_path: Path) -> None:
    import json

    from stationflow.engine.devtools.emulator import Emulator
    from tests.test_service import _no_stray_services, start_service  # noqa: F401 (autouse fixture)
    from tests.test_site_lifecycles import cli

    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    in_force_sha = load_lifecycle(folder / "report.yaml").sha256
    with Emulator(port=0, seed=3) as emulator:
        config = write_config(tmp_path, emulator.url, extra=f"lifecycles: {folder}\n")
        proc = start_service(config, tmp_path / "stderr.log")
        try:
            unchanged = cli(config, "reload")
            assert unchanged.returncode == 0 and "restart" not in unchanged.stdout, unchanged.stdout

            site = folder / "report.yaml"
            site.write_text(site.read_text().replace("nothing is sent until a person approves it",
                                                     "waits for the quality engineer"))
            edited = cli(config, "reload")
            assert edited.returncode == 0, edited.stderr
            said = f"lifecycle changes take effect at restart: {site} (edited)"
            assert said in edited.stdout
            status = json.loads(cli(config, "status", "--json").stdout)
            assert said in status["service"]["last_reload"]["changes"]
            assert status["uploader"]["lifecycle"]["sha256"] == in_force_sha, "the machine in force stays"

            other = tmp_path / "other"
            shutil.copytree(QUARANTINE_REJECTED, other)
            (other / "task.yaml").write_text("name: task\n")
            config.write_text(config.read_text().replace(f"lifecycles: {folder}", f"lifecycles: {other}"))
            moved = cli(config, "reload")
            assert moved.returncode == 0, moved.stderr
            assert f"{other / 'report.yaml'} (instead of {site})" in moved.stdout
            assert "a restart would refuse them" in moved.stdout and "task.yaml" in moved.stdout
            status = json.loads(cli(config, "status", "--json").stdout)
            assert status["uploader"]["lifecycle"]["file"] == str(site)
            assert status["service"]["state"] == "running"
        finally:
            proc.terminate()
            assert proc.wait(20) == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "WARNING" in log and f"lifecycle changes take effect at restart: {site} (edited)" in log


def test_readers_get_the_checked_machines_again_until_a_file_changes(tmp_path: Path) -> None:
    from stationflow.engine.errors import MachineDefinitionError
    from stationflow.engine.lifecycle.site import in_force_checked_once

    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    first = in_force_checked_once(folder)
    assert in_force_checked_once(folder) is first, "nothing changed: not checked again"
    site = folder / "report.yaml"
    site.write_text(site.read_text().replace("until a person approves it", "until QA approves it"))
    edited = in_force_checked_once(folder)
    assert edited is not first and edited["report"].sha256 == load_lifecycle(site).sha256
    site.write_text(site.read_text().replace("dest: pending, by: operator", "dest: sent, by: operator", 1))
    with pytest.raises(MachineDefinitionError):
        in_force_checked_once(folder)
    (folder / "extra.yaml").write_text("name: extra\n")
    with pytest.raises(MachineDefinitionError, match="unsafe"):
        in_force_checked_once(folder)
    with pytest.raises(MachineDefinitionError, match="does not exist"):
        in_force_checked_once(tmp_path / "absent")


def test_an_operator_trigger_is_fired_on_the_spool_when_no_service_runs(tmp_path: Path) -> None:
    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=f"lifecycles: {folder}\n")
    _, cfg = load_station(str(config))
    with Spool(tmp_path / "data", lifecycle=load_lifecycle(folder / "report.yaml"), fsync=False) as spool:
        held = [spool.accept(make_report_bytes(i, seed=7)).key for i in range(2)]
    access = StationAccess(cfg)
    assert access.problem_states() == ("held", "failed", "quarantined")
    answer = access.fire("approve", [held[0], "no-such-report"])
    assert answer.source == "disk" and "service not running" in answer.note
    assert answer.data["fired"] == 1 and answer.data["refused"] == 1
    ok, refused = answer.data["results"]
    assert ok == {"id": held[0], "ok": True, "state": "pending"}
    assert not refused["ok"] and "no-such-report" in refused["error"]
    again = access.fire("retry", [held[1]])  # an operator trigger, but not from held
    assert again.data["refused"] == 1 and "approve" in again.data["results"][0]["error"]
    assert {r["id"]: r["state"] for r in access.problems().rows} == {held[1]: "held"}


def test_restart_note_names_what_a_restart_would_change_or_refuse(tmp_path: Path) -> None:
    from stationflow.engine.lifecycle import folder_problems, in_force, restart_note

    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    running = in_force(folder)
    assert restart_note(running, folder) is None
    assert restart_note(running, None) == (f"lifecycle changes take effect at restart: "
                                           f"{load_lifecycle('report').source} (instead of {folder / 'report.yaml'})")
    (folder / "reprot.yaml").write_text("name: report\n")
    (folder / "notes.txt").write_text("not a lifecycle: ignored\n")
    note = restart_note(running, folder)
    assert note is not None and note.startswith(
        "the lifecycles folder has problems; the machines in force stay, but a restart would refuse them "
        f"(1 problem(s), the first: {folder / 'reprot.yaml'}: no lifecycle the engine runs is called 'reprot'")
    (folder / "reprot.yaml").unlink()
    (folder / "report.yaml").write_bytes(b"\xff\xfe not utf-8")
    note = restart_note(running, folder)
    assert note is not None and note.startswith("lifecycle changes take effect at restart: report: cannot read "
                                                f"lifecycle file {folder / 'report.yaml'}")
    assert folder_problems(tmp_path / "absent") == [
        f"{tmp_path / 'absent'}: config key lifecycles names a folder that does not exist — create it or remove the key"]
