"""The spool's due times: the start-up's reports kept flat and the running ones in a heap give the
earliest first, as one heap of everything would."""

from __future__ import annotations

import array
from pathlib import Path

from hypothesis import given, strategies as st

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.due import DueTimes
from stationflow.engine.spool.store import Spool

times = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@given(found=st.lists(times, max_size=40), later=st.lists(st.tuples(times, st.booleans()), max_size=60))
def test_the_earliest_comes_first_whichever_holds_it(found: list[float], later: list[tuple[float, bool]]) -> None:
    due = DueTimes()
    keys = [f"f{i}" for i in range(len(found))]
    due.add_found(array.array("d", found), keys)
    model = {key: at for key, at in zip(keys, found)}
    popped: list[float] = []
    for n, (at, pop_first) in enumerate(later):
        if pop_first and len(due):
            first = due.first()
            assert first == min(model.values())
            key = due.pop()
            assert model.pop(key) == first
            popped.append(first)
        due.push(at, f"h{n}")
        model[f"h{n}"] = at
        assert len(due) == len(model)
    while len(due):
        first = due.first()
        assert first is not None and first == min(model.values())
        assert model.pop(due.pop()) == first
    assert due.first() is None and not model


def test_a_second_start_up_batch_joins_the_first() -> None:
    due = DueTimes()
    due.add_found([5.0, 1.0], ["a", "b"])
    due.add_found([3.0], ["c"])
    assert [due.pop() for _ in range(len(due))] == ["b", "c", "a"]


def test_reports_found_waiting_are_released_when_due_and_not_before(data_dir: Path) -> None:
    """End to end: reports parked in retry_wait for a minute and one for no time; after a restart
    the overdue one is released at once and the others stay until their time."""
    with Spool(data_dir) as spool:
        keys = [spool.accept(make_report_bytes(i, seed=5)).key for i in range(4)]
        for i, key in enumerate(keys):
            claim = spool.claim_next()
            assert claim is not None
            spool.fire(claim.key, "transient_error", error="down", next_attempt_s=0.0 if i == 2 else 60.0)
    with Spool(data_dir) as spool:
        assert len(spool._waiting) == 4
        due_in = spool.next_due_in()
        assert due_in is not None and due_in < 1.0
        assert spool.release_due() == 1
        assert spool.counts()["pending"] == 1 and spool.counts()["retry_wait"] == 3
        later = spool.next_due_in()
        assert later is not None and 50.0 < later <= 60.0
        assert spool.release_due() == 0
