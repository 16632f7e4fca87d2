"""The health rules for the states the common tests do not reach, and one of them for real.

``health_of`` is pure by design (the same answer from a live status and from the disk), so its
rules are checked on status dicts: a service in a state of its own, degraded for a reason that is
not a task, paused uploads for a reason that is not a token, intake that cannot report, parts
of an unexpected shape (an older or newer service), and times from another day. The last test
runs a real ``stationflow run`` whose server URL points at a path the emulator does not serve.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.health import health_of
from tests.test_health import _cli, _config, _running, _seed, _wait_health, service_of

__all__ = ["service_of"]


def texts(status: dict[str, Any]) -> list[str]:
    return [r["text"] for r in health_of(status)["reasons"]]


def test_a_service_in_a_state_of_its_own_is_an_error_with_its_reason() -> None:
    health = health_of(_running(service={"state": "error", "reason": "could not start: the spool is locked"}))
    assert health["state"] == "error"
    assert health["summary"] == "the service is error: could not start: the spool is locked"
    assert texts(_running(service={"state": "failed"})) == ["the service is failed"]


def test_degraded_by_paused_uploads_without_the_uploaders_word_names_the_url() -> None:
    status = _running(service={"state": "degraded", "degraded_because": {"uploader": "uploads paused: 404"}},
                      uploader=None)
    [reason] = health_of(status)["reasons"]
    assert reason["field"] == "server.url" and reason["page"] == "Connection"
    assert reason["text"] == "the service is degraded: uploads paused: 404"


def test_a_task_given_up_but_not_yet_in_degraded_because_is_still_named() -> None:
    status = _running(service={"state": "degraded", "degraded_because": {}},
                      tasks={"intake": {"state": "given_up", "last_error": "OSError: disk gone"},
                             "uploader": {"state": "running"}, "legacy": "running"})
    assert texts(status) == ["the service is degraded: intake gave up (OSError: disk gone) — see the log, fix the "
                             "cause, then Reload"]
    # tasks of another shape (a list) are not read as tasks: the generic line stands
    assert texts(_running(service={"state": "degraded"}, tasks=["intake"])) == [
        "the service is degraded — see its log"]


def test_paused_uploads_say_why_404_points_at_the_url_anything_else_is_quoted() -> None:
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    local = datetime.fromisoformat(yesterday).astimezone().strftime("%Y-%m-%d %H:%M")
    status = _running(reports={"pending": 1},
                      uploader={"mode": "paused", "reason": "server answered 404: no such API", "since": yesterday})
    [reason] = health_of(status)["reasons"]
    assert reason["field"] == "server.url"
    assert reason["text"] == (f"the server does not know this address (404) since {local} — 1 report safe in the "
                              "spool, waiting; check the URL")
    status = _running(reports=["odd"], uploader={"mode": "paused", "reason": "the server redirects to https://x/ "
                                                                           "(301)", "since": "not a time"})
    assert texts(status) == ["uploads are paused since not a time: the server redirects to https://x/ (301) — 0 "
                             "reports safe in the spool, waiting"]
    assert texts(_running(uploader={"mode": "paused"})) == [
        "uploads are paused: no reason given — 0 reports safe in the spool, waiting"]


def test_intake_that_cannot_report_and_intakes_of_another_shape() -> None:
    status = _running(intake={"error": "RuntimeError: index is corrupt",
                              "intakes": {"ict": "running", "fct": {"problem": None}}})
    [reason] = health_of(status)["reasons"]
    assert reason == {"level": "error", "field": "intake", "page": "Service",
                      "text": "intake cannot report its state: RuntimeError: index is corrupt"}


def test_reports_of_another_shape_are_not_counted() -> None:
    assert health_of(_running(reports=[("failed", 3)]))["state"] == "ok"


# ---------------------------------------------------------------------- for real

@pytest.mark.slow
def test_a_server_url_with_a_wrong_path_is_reported_at_server_url(tmp_path: Path, service_of: Any) -> None:
    with Emulator(port=0) as emu:
        config = _config(tmp_path, emu.url + "/wats")
        _seed(tmp_path / "data", 2)
        service_of(config)
        _wait_health(config, lambda s: (s.get("uploader") or {}).get("mode") == "paused", "uploads paused")
        check = _cli(config, "healthcheck")
        health = json.loads(_cli(config, "status", "--json").stdout)["health"]
    assert check.returncode == 1, check.stderr
    assert check.stderr.startswith("unhealthy: health error: the server does not know this address (404)")
    assert "2 reports safe in the spool, waiting; check the URL" in check.stderr
    assert [r["field"] for r in health["reasons"]] == ["server.url"]
