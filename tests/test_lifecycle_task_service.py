"""Site task and service machines: the supervisor and the service find their states by role.

Every state of both machines renamed in a site folder changes nothing: the service starts, delivers,
reloads, restarts a crashed task and stops; status still speaks in roles (``running``) and says
the machine's own state name beside it. A site file that breaks what the engine fires between its
states is refused at load time, naming the trigger and the role.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.errors import MachineDefinitionError
from stationflow.engine.lifecycle import in_force, load_lifecycle
from stationflow.engine.lifecycle.roles import ServiceRoles, TaskRoles
from stationflow.engine.service.service import Service
from tests.test_service import FAST, fill_spool, serve, wait_for, write_config
from tests.test_site_lifecycles import _renamed


@pytest.fixture
def emulator():
    with Emulator(port=0, seed=8) as emu:
        yield emu


def test_roles_are_found_whatever_the_states_are_called(tmp_path: Path) -> None:
    task = _renamed("task", tmp_path, triggers_too=False)
    service = _renamed("service", tmp_path, triggers_too=False)
    machines = in_force(tmp_path)
    assert not set(machines["task"].states) & set(load_lifecycle("task").states)
    roles = TaskRoles.of(machines["task"].definition)
    assert (roles.running, roles.given_up, roles.created) == (task["running"], task["given_up"], task["created"])
    assert roles.role_of(task["backing_off"]) == "backing_off"
    sroles = ServiceRoles.of(machines["service"].definition)
    assert (sroles.stopped, sroles.degraded, sroles.error) == (service["stopped"], service["degraded"], service["error"])


def test_a_site_task_machine_that_breaks_what_the_supervisor_fires_is_refused(tmp_path: Path) -> None:
    task = _renamed("task", tmp_path, triggers_too=False)
    text = (tmp_path / "task.yaml").read_text()
    text = text.replace(f"- trigger: recycle\n  source:\n  - {task['running']}\n  dest: {task['starting']}",
                        f"- trigger: recycle\n  source:\n  - {task['running']}\n  dest: {task['backing_off']}")
    (tmp_path / "task.yaml").write_text(text)
    with pytest.raises(MachineDefinitionError) as info:
        in_force(tmp_path)
    (problem,) = info.value.problems
    assert (f"the supervisor cannot find its states in this task machine: 'recycle' from '{task['running']}' "
            f"(the running state) leads to '{task['backing_off']}', but the engine expects "
            f"'{task['starting']}' (the starting state)") in problem


async def test_renaming_every_task_and_service_state_changes_nothing(tmp_path: Path, emulator: Emulator) -> None:
    folder = tmp_path / "lifecycles"
    folder.mkdir()
    task = _renamed("task", folder, triggers_too=False)
    service_states = _renamed("service", folder, triggers_too=False)
    config = write_config(tmp_path, emulator.url, extra=f"lifecycles: {folder}\n")
    reports = fill_spool(tmp_path / "data", 6)
    calls: list[int] = []

    async def crashes_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the first run of this task crashes")
        await anyio.sleep_forever()

    service = Service(config, restart_policy=FAST, log_stream=io.StringIO(), task_overrides={"flaky": crashes_once})

    async def scenario(svc: Service) -> dict[str, Any]:
        await wait_for(lambda: emulator.received_ids() == set(reports), 30,
                       lambda: f"at the server: {len(emulator.received_ids())} of {len(reports)}")
        flaky = svc.supervisor.tasks["flaky"] if svc.supervisor else None
        await wait_for(lambda: flaky is not None and flaky.restarts == 1 and flaky.state == task["running"], 20,
                       lambda: flaky.status() if flaky else "no task")
        running = svc.status()
        notes = await svc.reload("test")
        return {"running": running, "notes": notes, "after_reload": svc.status()}

    rc, seen = await serve(service, scenario)
    assert rc == 0
    status = seen["running"]
    assert status["service"]["state"] == "running"
    assert status["service"]["machine_state"] == service_states["running"]
    flaky = status["tasks"]["flaky"]
    assert flaky["state"] == "running" and flaky["machine_state"] == task["running"] and flaky["restarts"] == 1
    assert "injected" in flaky["last_error"]
    assert all(t["state"] == "running" for t in status["tasks"].values()), status["tasks"]
    assert status["uploader"]["lifecycles"]["task"]["file"] == str(folder / "task.yaml")
    assert not any("restart" in note for note in seen["notes"]), seen["notes"]
    assert seen["after_reload"]["service"]["last_reload"]["ok"] is True
    assert service.state == "stopped" and service.status()["service"]["machine_state"] == service_states["stopped"]
    assert service.supervisor is not None
    assert {t.state for t in service.supervisor.tasks.values()} == {task["stopped"]}



def test_a_site_service_machine_where_one_state_plays_two_roles_is_refused(tmp_path: Path) -> None:
    """Without an error state (fail leads to stopped), a failed service would look stopped: refused."""
    import yaml

    data = yaml.safe_load(Path(load_lifecycle("service").source).read_text())
    del data["states"]["error"]
    for t in data["transitions"]:
        if t["dest"] == "error":
            t["dest"] = "stopped"
        if t["source"] == "error":
            t["source"] = "stopped"
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(MachineDefinitionError) as info:
        in_force(tmp_path)
    assert any("the service cannot find its states in this service machine: 'stopped' plays more than one "
               "role (stopped, error)" in p for p in info.value.problems), info.value.problems
