"""``stationflow bench --dir D`` measures the disk D is on: a folder not made yet is made, and one
that cannot be made is one clear line with exit code, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_bench_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = subprocess.run([sys.executable, "-m", "stationflow", "bench", "--dir", str(blocker / "sub"),
                           "-n", "10", "--queued", "0", "--upload-n", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"--dir {blocker / 'sub'}" in done.stderr and "name a folder on the disk" in done.stderr


def test_bench_dir_not_made_yet_is_made(tmp_path: Path) -> None:
    target = tmp_path / "new" / "bench"
    done = subprocess.run([sys.executable, "-m", "stationflow", "bench", "--dir", str(target),
                           "-n", "20", "--queued", "0", "--upload-n", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert target.is_dir()
    assert "spool" in done.stdout
