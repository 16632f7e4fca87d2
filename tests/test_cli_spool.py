"""The spool from the command line (no service running): submit, queue, status, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stationflow.engine.cli.main import main
from stationflow.engine.devtools.samples import make_report, make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.conftest import REPORTS, assert_whole_once


@pytest.fixture
def station(tmp_path: Path) -> Path:
    config = tmp_path / "station.yaml"
    config.write_text("station: {name: TEST-01}\nserver: {url: 'http://127.0.0.1:9'}\ndata_dir: ./data\n")
    return config


def _cli(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def test_submit_accepts_good_files_and_refuses_bad_ones_without_touching_the_spool(
        station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(make_report_bytes(1, seed=2))
    assert _cli(station, "submit", str(good)) == 0
    key = make_report(1, seed=2)["id"]
    assert f"accepted: {key}" in capsys.readouterr().out

    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(make_report_bytes(2, seed=2)[:300])
    missing_pn = tmp_path / "missing_pn.json"
    doc = make_report(3, seed=2)
    del doc["pn"]
    missing_pn.write_text(json.dumps(doc))
    code = _cli(station, "submit", str(truncated), str(missing_pn), str(tmp_path / "nope.json"))
    err = capsys.readouterr().err
    assert code == 4
    assert "truncated.json" in err and "missing_pn.json" in err and "pn" in err and "nope.json" in err
    assert_whole_once(tmp_path / "data", {key: good.read_bytes()})
    # the same file again is a no-op, not an error
    assert _cli(station, "submit", str(good)) == 0
    assert "already in the spool" in capsys.readouterr().out


def test_queue_list_show_and_retry(station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with Spool(data) as spool:
        ok = spool.accept((REPORTS / "uur_example.json").read_bytes(), source="/drop/uur.json").key
        bad = spool.accept(make_report_bytes(5, seed=2)).key
        spool.claim_next()
        claim = spool.claim_next()
        spool.fire(claim.key, "rejected", error="400: serial number blocked", count_attempt=True)
    assert _cli(station, "queue", "list", "--json") == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {ok, bad}
    assert {"id", "state", "attempts", "last_error", "source"} <= set(rows[ok])
    assert rows[ok]["source"] == "/drop/uur.json"
    assert rows[bad]["state"] == "failed" and rows[bad]["last_error"] == "400: serial number blocked"

    assert _cli(station, "queue", "show", bad) == 0
    out = capsys.readouterr().out
    assert "serial number blocked" in out and "rejected" in out

    assert _cli(station, "queue", "show", "00000000-0000-4000-8000-000000000000") == 6
    assert _cli(station, "queue", "retry", ok) == 4  # a report in 'sending' cannot be retried
    assert "cannot retry" in capsys.readouterr().err
    assert _cli(station, "queue", "retry", "--all-failed") == 0
    with Spool(data) as spool:
        assert spool.state_of(bad) == "pending"


def test_status_json_reads_the_spool_when_the_service_is_down(station: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with Spool(tmp_path / "data") as spool:
        spool.accept(make_report_bytes(1, seed=2))
    assert _cli(station, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["service"]["state"] in ("stopped", "not running")
    assert status["reports"]["pending"] == 1 and status["reports"]["sent"] == 0


def test_a_missing_or_broken_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(tmp_path / "none.yaml"), "status"]) == 3
    assert "config init" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("station: {name: X}\nserver: {url: 'http://x', timeout_s: -1}\n")
    assert main(["-c", str(broken), "queue", "list"]) == 3
    assert "server.timeout_s" in capsys.readouterr().err
