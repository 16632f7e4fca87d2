"""The one backoff formula: capped, jittered, and safe at any attempt count."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from stationflow.engine.backoff import backoff_delay
from stationflow.engine.service.supervisor import RestartPolicy


def test_doubles_then_stays_at_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.0, rng=rng) for a in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_million_attempts_do_not_overflow() -> None:
    """``multiplier ** (attempt - 1)`` overflowed a float at attempt 1025 (310 with a multiplier
    of 10) and killed the uploader with its reports claimed."""
    rng = random.Random(2)
    for multiplier in (2.0, 10.0, 1e6):
        value = backoff_delay(10**6, initial_s=0.5, max_s=300.0, multiplier=multiplier, jitter=0.2, rng=rng)
        assert 240.0 <= value <= 300.0
    assert RestartPolicy(multiplier=10.0).delay(10**6, rng) <= 30.0


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    rng = random.Random(3)
    assert backoff_delay(1, initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.0, rng=rng, retry_after=20.0) == 20.0
    assert backoff_delay(1, initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.0, rng=rng, retry_after=600.0) == 60.0


@given(attempt=st.integers(min_value=-5, max_value=10**9),
       initial=st.floats(min_value=0.0, max_value=1e4), cap=st.floats(min_value=0.0, max_value=1e6),
       multiplier=st.floats(min_value=0.5, max_value=1e3), jitter=st.floats(min_value=0.0, max_value=1.0))
def test_always_between_zero_and_the_cap(attempt: int, initial: float, cap: float, multiplier: float,
                                         jitter: float) -> None:
    value = backoff_delay(attempt, initial_s=initial, max_s=cap, multiplier=multiplier, jitter=jitter,
                          rng=random.Random(attempt))
    assert 0.0 <= value <= cap
