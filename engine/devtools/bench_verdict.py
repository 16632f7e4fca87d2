"""A benchmark's verdict: every figure it prints, each against its target, and one summary line.

A verdict that looks at some figures only says "targets met" while others are far off (the old
``bench`` did, with an upload ratio of 0.70–0.77× against a 0.8× target). Every figure that has a
target in issue 18 goes through here; a figure that was not measured is said so, never passed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One figure against its target: ``value`` ``op`` ``target`` (op is ">=", "<=" or "<")."""

    figure: str
    value: float | None
    op: str
    target: float
    unit: str = ""

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        if self.op == ">=":
            return self.value >= self.target
        if self.op == "<=":
            return self.value <= self.target
        return self.value < self.target

    def line(self) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        if self.value is None:
            return f"  {self.figure}: not measured here (target {op} {self.target:g}{self.unit}): NOT met"
        return (f"  {self.figure}: {self._shown()}{self.unit} (target {op} {self.target:g}{self.unit}): "
                f"{'met' if self.met else 'NOT met'}")

    def _shown(self) -> str:
        """The value with two decimals, or more where two would read as the target itself (0.497
        shown as "0.50× … NOT met" looked like a wrong verdict)."""
        assert self.value is not None
        for digits in (2, 3, 4):
            shown = f"{self.value:.{digits}f}"
            if float(shown) != self.target or self.value == self.target:
                return shown
        return shown


def verdict(checks: Sequence[Check], out: Callable[[str], None] = print) -> bool:
    """Print every check and the summary; True when every target is met."""
    out("verdict (every figure with a target):")
    for check in checks:
        out(check.line())
    ok = bool(checks) and all(c.met for c in checks)
    missed = sum(1 for c in checks if not c.met)
    out("targets met" if ok else f"some targets not met on this station ({missed} of {len(checks)}; see above)")
    return ok


def spread(values: Sequence[float], fmt: str = ".0f") -> str:
    """``median (min–max)`` of the rounds, or the one value."""
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{med:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
