"""When the spool's waiting reports are due: a heap for the ones scheduled while running, and the ones
found at start-up kept flat and sorted.

Why two: 100,000 reports found waiting at start-up as heap items cost a tuple and a float object
each (~100 bytes, ~9 MB at 100,000: most of the way past the service's memory target); an array
of doubles and a list of the keys already in the index cost 16 bytes each. The next due report is
whichever of the two comes first. Not thread-safe: the spool calls it under its lock. An item may
be stale (the report left its wait by another trigger, or was scheduled again): the spool checks
the report's state when it pops one, as it always did with the heap alone.
"""

from __future__ import annotations

import array
import heapq
from collections.abc import Sequence


class DueTimes:
    """Monotonic due times of waiting reports; the earliest first."""

    __slots__ = ("_heap", "_found_at", "_found_keys", "_next")

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []  # (monotonic due time, key); keys break ties
        self._found_at = array.array("d")  # start-up's, ascending ...
        self._found_keys: list[str] = []  # ... and their keys
        self._next = 0  # the first of those not popped yet

    def push(self, due: float, key: str) -> None:
        heapq.heappush(self._heap, (due, key))

    def add_found(self, dues: Sequence[float], keys: Sequence[str]) -> None:
        """The reports found waiting at start-up (``dues[i]`` is ``keys[i]``'s), in any order."""
        if self._next < len(self._found_keys):  # not the first call (the spool makes one): heap items
            for due, key in zip(dues, keys):
                self.push(due, key)
            return
        order = sorted(range(len(keys)), key=dues.__getitem__)
        self._found_at = array.array("d", (dues[i] for i in order))
        self._found_keys = [keys[i] for i in order]
        self._next = 0

    def first(self) -> float | None:
        """The earliest due time, or None when nothing waits."""
        found = self._found_at[self._next] if self._next < len(self._found_keys) else None
        if not self._heap:
            return found
        return self._heap[0][0] if found is None or self._heap[0][0] < found else found

    def pop(self) -> str:
        """The key of the earliest; only after ``first()`` said there is one."""
        if self._next < len(self._found_keys) and (not self._heap or self._found_at[self._next] <= self._heap[0][0]):
            key = self._found_keys[self._next]
            self._next += 1
            if self._next == len(self._found_keys):  # used up: give the memory back
                self._found_at, self._found_keys, self._next = array.array("d"), [], 0
            return key
        return heapq.heappop(self._heap)[1]

    def __len__(self) -> int:
        return len(self._heap) + len(self._found_keys) - self._next
