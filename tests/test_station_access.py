"""The station access answers the same questions live (a real ``stationflow run``) and from the disk.

One failed report and one rejected source file are put on a station; then status, the problems,
one report, the log and retry are asked with the service stopped, with it running (the answers
must come from it: it holds the spool's lock), and after it stopped again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.layout import DataDir
from stationflow.engine.spool.store import Spool
from stationflow.engine.station_access import StationAccess, rejected_files
from tests.conftest import ROOT


def _station(folder: Path, url: str) -> Path:
    path = folder / "station.yaml"
    (folder / "drop").mkdir()
    path.write_text(
        "station: {name: ACCESS-01}\n"
        f"server: {{url: '{url}', token: {DEFAULT_TOKEN}, timeout_s: 5}}\n"
        "data_dir: ./data\n"
        "intake:\n  - {name: ict, watch: ./drop, converter: wsjf}\n"
        "shutdown: {grace_s: 3}\nspool: {min_free_disk: 0}\n", encoding="utf-8")
    return path


def _failed_report(data_dir: Path) -> tuple[str, bytes]:
    raw = make_report_bytes(7, seed=5)
    with Spool(data_dir) as spool:
        key = spool.accept(raw).key
        claim = spool.claim_next()
        assert claim is not None and claim.key == key
        spool.fire(key, "rejected", error="400: serial number missing")
    return key, raw


def _rejected_file(data_dir: Path) -> Path:
    folder = DataDir.of(data_dir).rejected("ict")
    folder.mkdir(parents=True)
    source = folder / "bad.json"
    source.write_text("{nope", encoding="utf-8")
    source.with_name("bad.json.error.txt").write_text(
        "file:      /x/bad.json\nintake:    ict\nconverter: wsjf\ntime:      2026-11-30T10:45:00.000+00:00\n"
        "kind:      invalid\nreason:    not valid JSON at line 1\n\ntraceback (last lines):\n  ...\n",
        encoding="utf-8")
    return source


def test_the_same_answers_from_the_disk_and_from_the_running_service(tmp_path: Path) -> None:
    with Emulator(port=0, seed=3) as emulator:
        path = _station(tmp_path, emulator.url)
        cfg = resolved(load_config(path), path)
        data_dir = tmp_path / "data"
        key, raw = _failed_report(data_dir)
        source = _rejected_file(data_dir)
        access = StationAccess(cfg)
        sn = json.loads(raw)["sn"]

        # Stopped: everything from the disk, and it says so.
        status = access.status()
        assert status.source == "disk" and status.note == "service not running — read from the spool on disk"
        assert status.data["reports"]["failed"] == 1 and status.data["rejected_files"] == {"ict": 1}
        assert status.data["health"]["state"] == "error"
        problems = access.problems()
        assert problems.source == "disk" and problems.total == 1
        assert [(r["id"], r["sn"], r["last_error"]) for r in problems.rows] == [(key, sn, "400: serial number missing")]
        assert access.show(key).data["history"][-1]["to"] == "failed"
        files = rejected_files(cfg)
        assert [(f["intake"], f["file"], f["reason"]) for f in files] == [("ict", "bad.json", "not valid JSON at line 1")]
        assert "traceback (last lines)" in files[0]["detail"]

        proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(path), "run"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = ControlClient(data_dir)
            deadline = time.monotonic() + 30
            while not client.is_running():
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.05)
            live = access.status()
            assert live.source == "service" and live.data["service"]["state"] == "running"
            assert live.data["rejected_files"] == {"ict": 1}
            assert live.data["health"]["state"] == "warning"  # nothing is wrong but what waits for a person
            problems = access.problems()
            assert problems.source == "service" and [r["sn"] for r in problems.rows] == [sn]
            assert access.show(key).source == "service"
            log = access.log_tail(50)
            assert log.source == "service" and any("service" in line for line in log.data)
            # The service holds the spool's lock: this retry can only have gone through it.
            retried = access.retry([key])
            assert retried.source == "service" and retried.data == [{"id": key, "ok": True, "state": "pending"}]
            deadline = time.monotonic() + 30
            while access.status().data["reports"].get("sent") != 1:
                assert time.monotonic() < deadline, "the retried report was not sent"
                time.sleep(0.05)
            staged = access.reprocess("ict", source)
            assert not source.exists() and staged.parent == DataDir.of(data_dir).reprocess_inbox("ict", "rejected")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0

        after = access.status()
        assert after.source == "disk" and after.data["service"]["state"] == "stopped"
        assert after.data["reports"]["sent"] == 1 and after.data["reports"]["failed"] == 0
        log = access.log_tail(500)
        assert log.source == "disk" and any("stopped" in line for line in log.data)
        assert access.retry([key]).data[0]["ok"] is False  # sent: nothing to retry; said per report
