"""``stationflow configure``: opens the window on a display, says plainly when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.tk_fixtures import ROOT, ensure_display, stop_process, write_station


def _env(display: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = display
    return env


def test_configure_without_a_display_says_so(tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-m", "stationflow", "configure", "-c", str(path)], cwd=ROOT,
                          env=_env(None), capture_output=True, text=True, timeout=60)
    if sys.platform.startswith("linux"):
        assert done.returncode == 1
        assert "no display" in done.stderr and "DISPLAY" in done.stderr


def test_configure_opens_the_window(tmp_path: Path) -> None:
    display = ensure_display()
    path = write_station(tmp_path, "http://127.0.0.1:9")
    proc = subprocess.Popen([sys.executable, "-m", "stationflow", "configure", "-c", str(path)], cwd=ROOT,
                            env=_env(display), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        stop_process(proc)
