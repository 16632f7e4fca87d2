"""A pause that only a person, a config change or a long wait lifts.

The uploader pauses when the server refuses a POST in a way no retry fixes: 401, 403 (a token
without the right to submit), 404, a redirect. It used to probe ``GET /api/App/Version`` and resume
as soon as that answered 200 — but a token may read the version and still not submit, so the pause
was lifted at once and the next POST refused again: ~150 POSTs a second, status ``online``. The
probe cannot tell that the cause is gone; so such a pause is *held*: it ends when the server part of
the config changes, when an operator resumes (``stationflow queue resume``), or after a long wait
(10 minutes, doubling at each refusal in a row up to an hour) — then one round of posts tells.
"""

from __future__ import annotations

import time

#: The first hold, and the longest: a station nobody looks at still tries again now and then.
HOLD_FIRST_S = 600.0
HOLD_MAX_S = 3600.0


class Hold:
    """When a held pause ends (monotonic time) and how long the next one lasts."""

    def __init__(self, first_s: float = HOLD_FIRST_S, max_s: float = HOLD_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self.next_s = first_s
        self.length_s = 0.0  # of the hold in force (or the last one)
        self.until: float | None = None

    @property
    def active(self) -> bool:
        return self.until is not None

    def start(self) -> float:
        """A POST was refused: hold (unless a hold is already in force — several posts in flight
        are refused together); the next refusal in a row holds twice as long. Returns the length."""
        if self.until is None:
            self.length_s = self.next_s
            self.until = time.monotonic() + self.length_s
            self.next_s = min(self.next_s * 2, self.max_s)
        return self.length_s

    def remaining(self) -> float:
        return 0.0 if self.until is None else max(0.0, self.until - time.monotonic())

    def expire(self) -> None:
        """The wait is over: the server is tried again; a refusal then holds longer."""
        self.until = None

    def lift(self) -> None:
        """A person acted (config change, resume): lifted, and the next hold is short again."""
        self.until = None
        self.next_s = self.first_s

    def acknowledged(self) -> None:
        """A report went through: whatever was wrong is fixed."""
        self.next_s = self.first_s


def describe(seconds: float) -> str:
    """``600`` → ``10 min``, ``3600`` → ``60 min``, ``2.5`` → ``2.5 s``."""
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
