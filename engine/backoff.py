"""Capped exponential backoff with jitter: one formula for every retry in the service.

Used by the uploader (between attempts of a report, and while probing a server that is down) and
by the supervisor (between restarts of a task). The exponent is capped before it is raised, so
the millionth attempt costs what the twentieth does instead of an OverflowError — an overflow
here once killed the uploader with reports claimed, at every restart.
"""

from __future__ import annotations

import math
import random


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, multiplier: float, jitter: float,
                  rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure (from 1): ``initial_s * multiplier**(attempt-1)``
    capped at ``max_s``, spread by ±``jitter`` (a fraction), never below ``retry_after`` (the
    server's own ask) nor above ``max_s``."""
    steps = max(0, attempt - 1)
    if multiplier > 1.0 and initial_s > 0.0:
        # Past this many steps the cap is reached anyway; stop before the power overflows. In logs:
        # max_s / initial_s itself is infinite for a subnormal initial_s.
        to_cap = math.log(max_s) - math.log(initial_s) if max_s > initial_s else 0.0
        steps = min(steps, max(0, math.ceil(to_cap / math.log(multiplier))) + 1)
    else:
        steps = min(steps, 1)
    try:
        grown = initial_s * multiplier ** steps
    except OverflowError:  # the power alone overflows when initial_s is tiny; the product does not
        grown = math.exp(math.log(initial_s) + steps * math.log(multiplier))
    base = min(grown, max_s)
    spread = base * jitter
    value = base + rng.uniform(-spread, spread)
    if retry_after is not None:
        value = max(value, retry_after)
    return max(0.0, min(value, max_s))
