"""How fast a station posts: the config's rate limit, and its own pace after a busy server.

``TokenBucket`` is ``upload.rate_per_s``. ``Pace`` is what a station learns from a server that
answers "busy" (429/503 with Retry-After): many stations back from an outage together must not
keep it saturated with refused posts. Additive increase, multiplicative decrease, as TCP does: each
busy answer halves the station's rate (from what it was acknowledged at over the last second),
each acknowledgement adds one report a second; once the rate has grown past any limit that
matters, the pace is dropped. After an outage a station starts slowly (``PACE_START_RPS``).
"""

from __future__ import annotations

import collections
import time

import anyio

#: Above this the pace no longer limits anything worth limiting: dropped.
PACE_FREE_RPS = 1000.0
#: Where a station starts when the server answers again after an outage ("slow start": doubling
#: about every second while acknowledgements come), so a fleet does not return at full speed at once.
PACE_START_RPS = 4.0
#: What a busy answer leaves of the rate: gentler than TCP's half, so a fleet keeps the server busier.
DECREASE = 0.7


class TokenBucket:
    """A rate limit that waits with ``anyio.sleep`` (never blocks the event loop)."""

    def __init__(self, rate_per_s: float | None, burst: float | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, (rate_per_s or 0) / 10)
        self._tokens = self.capacity
        self._last = time.monotonic()

    def try_acquire(self) -> bool:
        """Take a token if one is there now; never waits."""
        if not self.rate:
            return True
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        if not self.rate:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await anyio.sleep((1 - self._tokens) / self.rate)


class Pace:
    """A station's own rate after busy answers; ``None`` (no limit) until the first one."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self._acks: collections.deque[float] = collections.deque(maxlen=4096)
        self._bucket = TokenBucket(None, burst=1.0)

    def busy(self) -> None:
        """The server said it is busy: half the rate acknowledged over the last second (or of the
        pace in force, whichever is lower), at least one report a second."""
        now = time.monotonic()
        recent = sum(1 for t in self._acks if now - t <= 1.0)
        current = min(self.rate, float(recent)) if self.rate is not None else float(recent)
        self._set(max(1.0, current * DECREASE))

    def start(self) -> None:
        """The server answers again after an outage: begin slowly, grow with each acknowledgement."""
        self._set(PACE_START_RPS)  # what was learned before the outage is stale

    def acknowledged(self) -> None:
        self._acks.append(time.monotonic())
        if self.rate is not None:
            self._set(self.rate + 1.0)

    def _set(self, rate: float) -> None:
        self.rate = None if rate > PACE_FREE_RPS else rate
        self._bucket.rate = self.rate

    async def acquire(self) -> None:
        await self._bucket.acquire()

    def try_acquire(self) -> bool:
        return self._bucket.try_acquire()
