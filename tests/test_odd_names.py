"""File names that are not UTF-8 (bytes equipment wrote under another code page) survive every
path: spool, error folder, control protocol, CLI, log (review finding: ``caf\\xe9.json`` broke
``queue list``; ``x\\xff.json`` broke ``status``, got no .error.txt and was retried forever)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from tests.helpers_service import ServiceRun

CONFIG = """\
station: {name: NAMES-01}
server: {url: "http://127.0.0.1:9", token: x}
data_dir: ./data
shutdown: {grace_s: 2}
intake:
  - {name: drop, watch: ./drop, converter: wsjf, settle_ms: 0, after: delete}
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(tmp_path / "station.yaml"), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows file names are always Unicode")
def test_names_that_are_not_utf8_survive_every_path(tmp_path: Path) -> None:
    (tmp_path / "station.yaml").write_text(CONFIG)
    drop = tmp_path / "drop"
    drop.mkdir()
    good_raw = make_report_bytes(1, seed=4)
    with open(os.path.join(os.fsencode(drop), b"caf\xe9.json"), "wb") as fh:
        fh.write(good_raw)
    with open(os.path.join(os.fsencode(drop), b"x\xff.json"), "wb") as fh:
        fh.write(b"{bad")
    with ServiceRun(tmp_path / "station.yaml", ready_s=None) as service:
        service.wait("the control port and the watch folder emptied",
                     lambda: service.client.is_running() and not os.listdir(os.fsencode(drop)), 30)
        listed = _cli(tmp_path, "queue", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["id"] == json.loads(good_raw)["id"]
        assert os.fsencode(row["source"]).endswith(b"/caf\xe9.json")  # the very bytes of the name
        status = _cli(tmp_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert _cli(tmp_path, "healthcheck").returncode in (0, 1)  # answers (the server is down on purpose)
        rejected = sorted(os.listdir(os.fsencode(tmp_path / "data" / "rejected" / "drop")))
        assert rejected == [b"x\xff.json", b"x\xff.json.error.txt"]
        assert _cli(tmp_path, "stop").returncode == 0
        assert service.proc.wait(20) == 0
    text = (tmp_path / "service.log").read_text(errors="replace")
    assert "Logging error" not in text and "Traceback" not in text, text[-2000:]
