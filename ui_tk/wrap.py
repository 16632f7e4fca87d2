"""Labels that wrap at the width of the cell they sit in (field rows, the intake page's links note)."""

from __future__ import annotations

from typing import Any


class WrapFollower:
    """Labels that wrap at the width of the cell they sit in, without a resize loop.

    A label's new wrap length changes what it asks for, which can change the width of its grid
    column, which resizes the cell again: two widths taking turns (A, B, A, …) made ``update()``
    spin for minutes under Xvfb (seen in CI). A width that only undoes the last change is answered
    with the wider of the two, once, and then ignored; changes of a few pixels are ignored too.
    """

    MIN_WIDTH = 240
    SLACK_PX = 4

    def __init__(self, *labels: Any) -> None:
        self.labels = labels
        self.width = 0
        self.before = 0  # the width before the last change

    def follow(self, width: int) -> None:
        width = max(self.MIN_WIDTH, width)
        if abs(width - self.width) <= self.SLACK_PX:
            return
        if abs(width - self.before) <= self.SLACK_PX:  # back where the last change came from: a loop
            width = max(width, self.width)
            if width == self.width:
                return
        self.before, self.width = self.width, width
        for label in self.labels:
            label.configure(wraplength=width)
