"""How long the Tk thread is busy in one handler: every Tcl→Python callback is timed.

Tk runs Python code only through callbacks — ``command=``, ``bind``, ``after``, variable traces,
validation — and tkinter wraps each one in ``tkinter.CallWrapper`` when it is registered. Timing
that wrapper times every handler of the window, ours or a library's, with no decorator to forget.
The configurator promises that no handler holds the Tk thread for more than ``LIMIT_MS``; a
slower one is logged as a warning (a bug to fix), and the tests fail on it.

Install the meter *before* creating widgets: callbacks registered earlier are not wrapped.
"""

from __future__ import annotations

import logging
import threading
import time
import tkinter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: The longest a handler may hold the Tk thread.
LIMIT_MS = 50.0


@dataclass
class BusyMeter:
    """The longest handler seen, by name, and how many handlers ran."""

    longest_ms: float = 0.0
    longest_name: str = ""
    calls: int = 0
    slow: list[tuple[str, float]] = field(default_factory=list)

    def record(self, name: str, ms: float) -> None:
        self.calls += 1
        if ms > self.longest_ms:
            self.longest_ms = ms
            self.longest_name = name
        if ms > LIMIT_MS:
            self.slow.append((name, ms))
            del self.slow[:-50]
            log.warning("the window was busy %.0f ms in %s (limit %.0f ms)", ms, name, LIMIT_MS)

    def reset(self) -> None:
        self.longest_ms = 0.0
        self.longest_name = ""
        self.calls = 0
        self.slow.clear()


_original = tkinter.CallWrapper
_meters: list[BusyMeter] = []
_lock = threading.Lock()


def _name(func: Any) -> str:
    if getattr(func, "__qualname__", "").endswith("after.<locals>.callit") and func.__closure__:
        cells = dict(zip(func.__code__.co_freevars, func.__closure__, strict=False))  # after(): what it calls
        if "func" in cells:
            func = cells["func"].cell_contents
    func = getattr(func, "__wrapped__", func)
    target = getattr(func, "__func__", func)
    name = getattr(target, "__qualname__", None) or repr(func)
    owner = getattr(func, "__self__", None)
    return f"{type(owner).__name__}.{name.rsplit('.', 1)[-1]}" if owner is not None else name


class _TimedCallWrapper(_original):
    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return super().__call__(*args)  # type: ignore[no-untyped-call]
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            for meter in _meters:
                meter.record(_name(self.func), elapsed)


def install(meter: BusyMeter) -> None:
    """Start timing every callback registered from now on, into ``meter``."""
    with _lock:
        if meter not in _meters:
            _meters.append(meter)
        tkinter.CallWrapper = _TimedCallWrapper  # type: ignore[misc]


def uninstall(meter: BusyMeter) -> None:
    """Stop feeding ``meter``; the plain wrapper comes back when no meter is left."""
    with _lock:
        if meter in _meters:
            _meters.remove(meter)
        if not _meters:
            tkinter.CallWrapper = _original  # type: ignore[misc]
