"""A station whose disk is full must still start and upload what it holds (review finding: the
service wrote its pid file first, died with ENOSPC, and left a temp file at every try)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.chaos.harness import fill_disk, mount_tmpfs, unmount
from tests.helpers_service import ServiceRun


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
            with ServiceRun(config, ready_s=None) as service:  # waited for: the uploads, not the control port
                service.wait("every report at the server", lambda: emulator.stats().unique_ids >= len(keys), 60,
                             interval=0.1)
        assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")]
        assert "pid file" in (tmp_path / "service.log").read_text()
    finally:
        unmount(data)
