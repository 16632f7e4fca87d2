"""The lean upload path: each worker claims, posts and records its own report.

What must hold without a feeder or settler between them: a drain claims nothing more, even from a
worker waiting on the rate limit; a report claimed while the uploader started draining goes back
to pending unsent; a 2xx is recorded without a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Claim, Spool
from stationflow.engine.upload.uploader import Uploader
from stationflow.schemas.config import RetrySection, ServerSection, UploadSection


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0, seed=1) as emu:
        yield emu


def _uploader(spool: Spool, url: str, *, concurrency: int = 2, rate: float | None = None) -> Uploader:
    return Uploader(spool, ServerSection(url=url, token=DEFAULT_TOKEN, timeout_s=5.0, connect_timeout_s=2.0),
                    UploadSection(concurrency=concurrency, rate_per_s=rate,
                                  retry=RetrySection(initial_s=0.05, max_s=0.3, offline_after=3)))


def _fill(spool: Spool, n: int) -> set[str]:
    return {spool.accept(make_report_bytes(i, seed=21)).key for i in range(n)}


async def _wait(check: object, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not check():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_a_drain_during_a_rate_limit_wait_claims_nothing_more(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        keys = _fill(spool, 4)
        uploader = _uploader(spool, emulator.url, concurrency=2, rate=0.5)  # one report, then 2 s per token
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _wait(lambda: spool.counts()["sent"] == 1)
            uploader.drain()  # the workers wait for the next token right now
        assert spool.counts()["sent"] == 1 and spool.counts()["pending"] == 3
        assert len(emulator.received_ids()) == 1 and emulator.received_ids() <= keys
        assert uploader.in_flight == 0


async def test_a_report_claimed_as_the_drain_began_goes_back_unsent(data_dir: Path, emulator: Emulator) -> None:
    """Spool work in threads (a slow disk): the drain begins while a thread claims a report."""
    with Spool(data_dir) as spool:
        [key] = _fill(spool, 1)
        uploader = _uploader(spool, emulator.url, concurrency=1)
        uploader._inline_io = False  # as after a slow spool operation on the event loop
        claimed_in = []

        def claim_then_drain(_: None) -> Claim | None:
            claim = spool.claim_next()
            claimed_in.append(threading.current_thread() is not threading.main_thread())
            uploader._draining = True  # the stop request arrives while this thread holds the report
            return claim

        uploader._claim_one = claim_then_drain  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _wait(lambda: bool(claimed_in) and spool.state_of(key) == "pending")
            uploader.drain()
        assert claimed_in == [True]
        assert spool.state_of(key) == "pending" and emulator.received_ids() == set()


async def test_a_2xx_is_recorded_on_the_event_loop_and_an_error_in_a_thread(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        keys = _fill(spool, 6)
        uploader = _uploader(spool, emulator.url, concurrency=3)
        loop_thread = threading.get_ident()
        fired_in: list[tuple[str, bool, bool]] = []  # trigger, on the loop, quick spool work on the loop
        fire = spool.fire

        def watched_fire(key: str, trigger: str, **kwargs: object) -> str:
            fired_in.append((trigger, threading.get_ident() == loop_thread, uploader._inline_io))
            return fire(key, trigger, **kwargs)  # type: ignore[arg-type]

        spool.fire = watched_fire  # type: ignore[method-assign]
        emulator.set_faults(error_status=503, error_rate=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _wait(lambda: spool.counts()["retry_wait"] + spool.counts()["pending"] == 6
                        and any(t == "transient_error" for t, _, _ in fired_in))
            emulator.clear_faults()
            await _wait(lambda: spool.counts()["sent"] == 6)
            uploader.drain()
        assert emulator.received_ids() == keys
        # A 2xx is recorded on the event loop unless a slow disk moved quick spool work to threads
        # (then in a thread); an error, which writes a sidecar, always in a thread.
        accepted = [(on_loop, inline) for trigger, on_loop, inline in fired_in if trigger == "accepted"]
        assert len(accepted) == 6 and all(on_loop == inline for on_loop, inline in accepted), accepted
        assert {on_loop for trigger, on_loop, _ in fired_in if trigger == "transient_error"} == {False}
