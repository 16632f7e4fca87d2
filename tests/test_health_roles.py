"""Health reads the report machine's roles from the status, not state names.

A site machine may call its refused state anything (the quarantine example has no ``failed``) and
may hold reports for a person (hold-for-approval's ``held``): the banner must count those, and the
"N reports safe in the spool, waiting" figure must not count reports no engine path will send.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.health import health_of
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from stationflow.engine.station import load_station
from stationflow.engine.station_access import disk_status
from tests.conftest import FIXTURES
from tests.test_service import write_config

HOLD = FIXTURES / "lifecycles" / "hold-for-approval"
QUARANTINE_REJECTED = FIXTURES / "lifecycles" / "quarantine-rejected"


def _texts(status: dict[str, object]) -> list[str]:
    return [r["text"] for r in health_of(status)["reasons"]]


def test_reports_held_for_a_person_are_a_warning_and_not_counted_as_waiting_to_send() -> None:
    roles = {"refused": "failed", "quarantine": "quarantined", "person": ["failed", "held"], "final": ["sent"]}
    status = {"reports": {"pending": 2, "held": 3, "failed": 0, "sent": 9}, "report_roles": roles,
              "uploader": {"mode": "offline", "reason": "connection refused"}}
    texts = _texts(status)
    assert any("3 reports wait in 'held' for a person" in t for t in texts), texts
    assert any("2 reports safe in the spool" in t for t in texts), texts  # not 5: held ones wait for a person


def test_a_renamed_refused_state_is_counted_under_its_own_name() -> None:
    roles = {"refused": "rejected_by_server", "quarantine": "parked", "person": ["rejected_by_server"],
             "final": ["done"]}
    status = {"reports": {"queued": 0, "rejected_by_server": 4, "parked": 1, "failed": 7}, "report_roles": roles}
    texts = _texts(status)
    assert any(t.startswith("4 reports were refused by the server") for t in texts), texts
    assert any(t.startswith("1 report is quarantined") for t in texts), texts
    assert not any("7 reports" in t for t in texts), "a state called failed is not this machine's refused state"
    levels = {r["text"].split(" ")[0]: r["level"] for r in health_of(status)["reasons"] if r["page"] == "Problems"}
    assert levels == {"4": "warning", "1": "warning"}


def test_a_status_without_roles_is_read_with_the_shipped_machine() -> None:
    texts = _texts({"reports": {"failed": 2, "quarantined": 1}})
    assert any(t.startswith("2 reports were refused") for t in texts)
    assert any(t.startswith("1 report is quarantined") for t in texts)


def test_the_disk_status_carries_the_roles_of_the_site_machine(tmp_path: Path) -> None:
    folder = tmp_path / "lifecycles"
    shutil.copytree(HOLD, folder)
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=f"lifecycles: {folder}\n")
    _, cfg = load_station(str(config))
    with Spool(tmp_path / "data", lifecycle=load_lifecycle(folder / "report.yaml"), fsync=False) as spool:
        for i in range(2):
            spool.accept(make_report_bytes(i, seed=3))
    status = disk_status(cfg)
    assert "held" in status["report_roles"]["person"]
    assert status["reports"]["held"] == 2
    assert any("2 reports wait in 'held' for a person" in r["text"] for r in status["health"]["reasons"])


def test_the_disk_status_of_the_quarantine_example_names_its_refused_state(tmp_path: Path) -> None:
    folder = tmp_path / "lifecycles"
    shutil.copytree(QUARANTINE_REJECTED, folder)
    config = write_config(tmp_path, "http://127.0.0.1:9", extra=f"lifecycles: {folder}\n")
    _, cfg = load_station(str(config))
    assert disk_status(cfg)["report_roles"] == {"refused": "quarantined", "quarantine": "quarantined",
                                                "person": ["quarantined"], "final": ["sent"]}
    status = {"reports": {"quarantined": 2}, "report_roles": disk_status(cfg)["report_roles"]}
    assert [t for t in _texts(status) if "2 report" in t] == [
        "2 reports were refused by the server — see Problems; fix the cause, then Retry"]
