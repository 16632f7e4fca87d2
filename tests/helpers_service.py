"""A real ``stationflow run`` for a test, and waiting for what it does.

Many tests need the service itself (a subprocess, as an operator starts it): the watch-link tests,
submit through the service, odd file names, a full disk at start-up, upload hardening, health, the
configurator's Service page. Each had its own copy of "start it with its output in a log file, wait
for the control port while checking it did not exit, terminate and reap it"; this is that copy,
once. (The chaos suite's kill -9 loops have their own driver: tests/chaos/harness.py.)

Import it like the other shared test pieces: ``from tests.helpers_service import ServiceRun, wait_until``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from stationflow.engine.config_file import load_config, resolved
from stationflow.engine.control.client import ControlClient
from stationflow.engine.layout import DataDir

ROOT = Path(__file__).resolve().parents[1]


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it is truthy (and return that); fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


class ServiceRun:
    """``stationflow -c CONFIG run`` in a subprocess, its output in ``log`` (``service.log`` beside
    the config). Use it as a context manager, or call :meth:`stop`: the process is always reaped.

    The data folder is the config's (resolved as the service resolves it); ``client`` talks to the
    service's control port there. Made, it waits ``ready_s`` for that port (None: not at all); a
    service that does not get there is reaped before the failure is raised.
    """

    def __init__(self, config: Path, *, log: Path | None = None, client_timeout: float = 10.0,
                 ready_s: float | None = 60.0) -> None:
        self.config = Path(config)
        self.log_path = log or self.config.parent / "service.log"
        self.data = DataDir.of(resolved(load_config(self.config), self.config).data_dir)
        self.client = ControlClient(self.data.root, timeout=client_timeout)
        self._log = self.log_path.open("wb")
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            [sys.executable, "-m", "stationflow", "-c", str(self.config), "run"], cwd=ROOT,
            stdout=self._log, stderr=subprocess.STDOUT)
        if ready_s is not None:
            try:
                self.wait("the control port", self.client.is_running, ready_s)
            except BaseException:
                self.__exit__(AssertionError, None, None)
                raise

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
        """Like :func:`wait_until`, and fail at once (with the log) if the service exits meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert self.proc.poll() is None, \
                f"the service exited with {self.proc.returncode} while waiting for {what}:\n{self.log_text()[-3000:]}"
            assert time.monotonic() < deadline, \
                f"timed out after {timeout:g} s waiting for {what}:\n{self.log_text()[-3000:]}"
            time.sleep(interval)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the graceful stop) unless it has ended already; reaped. A service that does not
        end within ``timeout`` is killed and the test fails: stopping is part of what is tested."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                    raise AssertionError(f"the service did not stop within {timeout:g} s of SIGTERM") from None
            return self.proc.returncode
        finally:
            self._log.close()

    def __enter__(self) -> ServiceRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.stop()
            return
        try:  # the test failed already: reap the service, without hiding that failure behind another
            self.stop()
        except AssertionError:
            pass
