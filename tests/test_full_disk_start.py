"""A station whose disk is full must still start and upload what it holds (review finding: the
service wrote its pid file first, died with ENOSPC, and left a temp file at every try)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.chaos.harness import fill_disk, mount_tmpfs, unmount


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_the_service_starts_and_uploads_on_a_full_disk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert mount_tmpfs(data, "2m"), "mounting a small tmpfs failed"
    try:
        with Spool(data) as spool:
            keys = {spool.accept(make_report_bytes(i, seed=13, approx_bytes=2000)).key for i in range(10)}
        fill_disk(data / "ballast", leave_free=0)
        with Emulator(port=0, seed=1) as emulator:
            config = tmp_path / "station.yaml"
            config.write_text(f"station: {{name: FULL-01}}\nserver: {{url: '{emulator.url}', token: '{DEFAULT_TOKEN}'}}\n"
                              f"data_dir: {data}\nshutdown: {{grace_s: 2}}\n")
            log = (tmp_path / "service.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(config), "run"],
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while emulator.stats().unique_ids < len(keys):
                    assert proc.poll() is None, (tmp_path / "service.log").read_text()
                    assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
                    time.sleep(0.1)
            finally:
                proc.terminate()
                proc.wait(30)
                log.close()
        assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
        assert "pid file" in (tmp_path / "service.log").read_text()
    finally:
        unmount(data)
