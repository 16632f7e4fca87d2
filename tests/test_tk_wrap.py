"""Labels that follow their cell's width must not feed a resize loop (seen as update() spinning)."""

from __future__ import annotations

from typing import Any

from stationflow.ui_tk.wrap import WrapFollower


class _Label:
    def __init__(self) -> None:
        self.set: list[int] = []

    def configure(self, **options: Any) -> None:
        self.set.append(options["wraplength"])


def test_two_widths_taking_turns_settle_on_the_wider_after_one_round() -> None:
    label = _Label()
    wrap = WrapFollower(label)
    for width in [600, 520, 600, 520, 600, 520] * 50:  # a cell that flips between two widths
        wrap.follow(width)
    assert label.set == [600, 520, 600]  # then nothing more: the loop is broken


def test_real_resizes_are_followed_and_tiny_ones_ignored() -> None:
    label = _Label()
    wrap = WrapFollower(label)
    for width in (800, 802, 700, 100, 900):
        wrap.follow(width)
    assert label.set == [800, 700, WrapFollower.MIN_WIDTH, 900]
    wrap.follow(900 - WrapFollower.SLACK_PX)
    assert label.set[-1] == 900 and len(label.set) == 4
