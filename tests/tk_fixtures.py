"""Shared pieces of the Tk tests: a display (Xvfb started here when there is none), dialogs that
record instead of blocking, event pumping, a station folder, and processes to clean up.

Imported by the ``test_tk_*`` modules (``from tests.tk_fixtures import ...``). The display is
started once per test process and stopped at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
TOKEN = "dXNlcjpwYXNz"

_display: str | None = None
_xvfb: subprocess.Popen[bytes] | None = None


def ensure_display() -> str:
    """The X display to use: $DISPLAY, else an Xvfb started now; skip (the one allowed skip) if neither."""
    global _display, _xvfb
    if _display is not None:
        return _display
    if os.environ.get("DISPLAY"):
        _display = os.environ["DISPLAY"]
        return _display
    if shutil.which("Xvfb") is None:
        pytest.skip("no display: DISPLAY is not set and Xvfb is not installed (Debian/Ubuntu: apt install xvfb)")
    for number in range(99, 400):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    display = f":{number}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"Xvfb {display} exited at once: {err.strip()[-500:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Xvfb {display} did not start within 15 s")
        time.sleep(0.02)
    _xvfb = proc
    atexit.register(_stop_xvfb)
    os.environ["DISPLAY"] = display
    _display = display
    return display


def _stop_xvfb() -> None:
    if _xvfb is not None and _xvfb.poll() is None:
        _xvfb.terminate()
        try:
            _xvfb.wait(5)
        except subprocess.TimeoutExpired:
            _xvfb.kill()


class RecordingDialogs:
    """Answers dialogs at once and remembers them (``errors``, ``infos``, ``questions``, ``opened``)."""

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.errors: list[tuple[str, str]] = []
        self.infos: list[tuple[str, str]] = []
        self.questions: list[tuple[str, str]] = []
        self.opened: list[Path] = []
        self.next_directory: str | None = None
        self.next_file: str | None = None
        self.choices: list[tuple[str, str, list[str], str]] = []
        self.choices_to_give: list[str] = []

    def error(self, title: str, message: str) -> None:
        self.errors.append((title, message))

    def info(self, title: str, message: str) -> None:
        self.infos.append((title, message))

    def ask_yes_no(self, title: str, message: str) -> bool:
        self.questions.append((title, message))
        return self.answer

    def ask_choice(self, title: str, message: str, choices: list[str], default: str) -> str:
        """The next of ``choices_to_give`` (by name) if any, else the default button (what Enter does)."""
        self.choices.append((title, message, list(choices), default))
        if self.choices_to_give:
            picked = self.choices_to_give.pop(0)
            assert picked in choices, f"{picked!r} is not one of {choices}"
            return picked
        return default

    def ask_directory(self, title: str, initial: str | None) -> str | None:
        return self.next_directory

    def ask_file(self, title: str, initial: str | None) -> str | None:
        return self.next_file

    def open_folder(self, path: Path) -> None:
        self.opened.append(Path(path))


def pump(root: Any, seconds: float) -> None:
    """Let the window run (events, timers, worker results) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        root.update()
        time.sleep(0.005)


def pump_until(root: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Run the window until ``predicate()`` is true; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        root.update()
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def write_station(folder: Path, url: str, **changes: Any) -> Path:
    """A copy of the sample station config pointing at ``url``; ``changes`` replace top-level sections."""
    data = yaml.safe_load((FIXTURES / "configs" / "station.yaml").read_text())
    data["server"]["url"] = url
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ui_threads() -> list[str]:
    from stationflow.ui_tk.worker import THREAD_PREFIX

    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Terminate a process we started (by its own handle) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture
def tk_root() -> Iterator[Any]:
    """A fresh Tk root on the test display (destroyed afterwards if the test did not)."""
    ensure_display()
    import tkinter as tk

    root = tk.Tk()
    try:
        yield root
    finally:
        try:
            root.destroy()
        except tk.TclError:
            pass


@pytest.fixture
def dialogs() -> RecordingDialogs:
    return RecordingDialogs()
