"""The watchdog notifier (Windows and other systems; on Linux intake reads inotify itself): a
writer's close is noted, a new file wakes intake, intake's own kind of work does not."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path


from stationflow.engine.intake.notify import ChangeNotifier


def _wait(predicate: object, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_watchdog_notes_a_close_and_wakes_for_a_new_file_but_not_for_hidden_names_or_removals(tmp_path: Path) -> None:
    wakes: list[float] = []
    lock = threading.Lock()

    def woke() -> None:
        with lock:
            wakes.append(time.monotonic())

    notifier = ChangeNotifier(woke)
    notifier.start([(tmp_path, False, [])])
    try:
        assert notifier.watching == {str(tmp_path): "notify"}
        assert "watchdog" in sys.modules  # imported when a notifier starts, not before
        hidden = tmp_path / ".r.json.part"
        hidden.write_bytes(b"{}")
        time.sleep(0.3)
        os.unlink(hidden)
        time.sleep(0.6)  # watchdog pairs moves for up to 0.5 s
        assert wakes == [], "a hidden name or a removal woke intake"
        target = tmp_path / "r.json"
        target.write_bytes(b'{"a": 1}')
        assert _wait(lambda: wakes), "a new file did not wake intake"
        st = target.stat()
        if sys.platform.startswith("linux"):  # close-after-write is inotify's
            assert _wait(lambda: notifier.closed_as(str(target), st.st_size, st.st_mtime_ns))
    finally:
        notifier.stop()


def test_the_intake_module_does_not_import_watchdog_on_linux() -> None:
    """The service's memory at 100,000 queued is close to its 100 MB bound; watchdog is 5 MB."""
    import subprocess

    code = ("import sys, stationflow.engine.cli.main, stationflow.engine.intake.intake; "
            "print('watchdog' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
