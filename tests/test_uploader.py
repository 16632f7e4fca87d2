"""The uploader against the real emulator over loopback, through the real spool on disk."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.engine.upload.uploader import OFFLINE, ONLINE, PAUSED, Backoff, TokenBucket, Uploader
from stationflow.schemas.config import RetrySection, ServerSection, UploadSection


def _server(url: str, token: str = DEFAULT_TOKEN, timeout_s: float = 5.0) -> ServerSection:
    return ServerSection(url=url, token=token, timeout_s=timeout_s, connect_timeout_s=2.0)


def _upload(concurrency: int = 4, rate: float | None = None, **retry: float) -> UploadSection:
    defaults = {"initial_s": 0.05, "max_s": 0.3, "offline_after": 3}
    return UploadSection(concurrency=concurrency, rate_per_s=rate, retry=RetrySection(**{**defaults, **retry}))


@pytest.fixture
def emulator():
    with Emulator(port=0, seed=1) as emu:
        yield emu


def _fill(spool: Spool, n: int, start: int = 0) -> set[str]:
    return {spool.accept(make_report_bytes(i, seed=5)).key for i in range(start, start + n)}


async def _serve(uploader: Uploader, until: Callable[[], bool], *, timeout: float = 20.0,
                 during: Callable[[float], None] | None = None) -> float:
    """Serve until ``until()`` holds (then drain), failing after ``timeout`` seconds."""
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(uploader.run)
        with anyio.fail_after(timeout):
            while not until():
                if during:
                    await anyio.to_thread.run_sync(during, time.monotonic() - started)
                await anyio.sleep(0.02)
        uploader.drain()
    return time.monotonic() - started


def _run(uploader: Uploader, until: Callable[[], bool], *, timeout: float = 20.0,
         during: Callable[[float], None] | None = None) -> float:
    """``_serve`` for synchronous tests (tests/test_upload_paths.py imports it); the tests here are
    ``async def`` and await ``_serve``."""
    return anyio.run(lambda: _serve(uploader, until, timeout=timeout, during=during))


def _all_sent(spool: Spool, n: int) -> Callable[[], bool]:
    return lambda: spool.counts()["sent"] == n


async def test_every_report_reaches_the_server_once(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 60)
        uploader = Uploader(spool, _server(emulator.url), _upload())
        await _serve(uploader, _all_sent(spool, 60))
        assert emulator.received_ids() == ids
        stats = emulator.stats()
        assert stats.posts == 60 and stats.duplicates == 0
        assert uploader.counters["sent"] == 60 and uploader.mode == "stopped"
        assert uploader.status()["latency"]["p50_ms"] > 0
        for key in ids:  # byte for byte what was accepted
            assert emulator.report(key) == spool.read(key)


async def test_rejected_reports_go_to_failed_with_the_servers_message(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        good = _fill(spool, 5)
        emulator.set_faults(reject_rate=1.0)  # the server refuses every report with 400 and a message
        uploader = Uploader(spool, _server(emulator.url), _upload())
        await _serve(uploader, lambda: spool.counts()["failed"] == 5)
        for key in good:
            info = spool.info(key)
            assert info.state == "failed" and "400" in info.last_error and info.attempts == 1
        assert uploader.mode == "stopped" and uploader.counters["failed"] == 5


async def test_bad_token_pauses_sending_until_the_config_is_fixed(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 10)
        uploader = Uploader(spool, _server(emulator.url, token="d3Jvbmc6dG9rZW4="), _upload())
        seen: dict[str, object] = {}

        def fix_token(elapsed: float) -> None:
            # Paused, and the reports the feeder had claimed ahead are back in pending (a pause puts
            # them back, it is not an attempt): that is the state to check, not the first instant
            # of the pause, when some may still be on their way back.
            if uploader.mode == PAUSED and "paused" not in seen and spool.counts()["sending"] == 0:
                seen["paused"] = uploader.status()["reason"]
                seen["pending"] = spool.counts()["pending"]
                seen["failed"] = spool.counts()["failed"]
                uploader.update_server(_server(emulator.url))

        await _serve(uploader, _all_sent(spool, 10), during=fix_token)
        assert "token" in str(seen["paused"]) and "401" in str(seen["paused"])
        assert seen["pending"] == 10 and seen["failed"] == 0  # nothing was burned while paused
        assert emulator.received_ids() == ids
        for key in ids:
            assert spool.info(key).attempts == 0  # a pause is not an attempt


async def test_wrong_url_pauses_with_a_clear_reason(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        _fill(spool, 3)
        uploader = Uploader(spool, _server(emulator.url + "/wats"), _upload())
        await _serve(uploader, lambda: uploader.mode == PAUSED)
        assert "404" in uploader.reason and "server.url" in uploader.reason
        assert spool.counts()["pending"] == 3


async def test_server_errors_back_off_go_offline_and_recover(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 20)
        # 503 without Retry-After: a server in trouble (with one, a busy server: test_upload_hardening)
        emulator.set_faults(error_rate=1.0, error_status=503)
        uploader = Uploader(spool, _server(emulator.url), _upload(concurrency=2))
        modes: list[str] = []
        waits: list[float] = []

        def watch(elapsed: float) -> None:
            modes.append(uploader.mode)
            for key in spool.keys("retry_wait"):
                due = spool.next_due_in()
                if due is not None:
                    waits.append(due)
            if uploader.counters["went_offline"] and emulator.faults.error_rate:
                emulator.clear_faults()  # the state that matters was reached: the server recovers

        await _serve(uploader, _all_sent(spool, 20), during=watch)
        # several failures in a row: offline, one probe at a time instead of a stampede (the probe
        # answers at once here, so the offline spell is too short to sample: the counter says it)
        assert uploader.counters["went_offline"] >= 1 and ONLINE in modes
        assert max(waits) <= 0.3 + 0.05  # never beyond the cap
        assert emulator.received_ids() == ids
        retried = [k for k in ids if spool.info(k).attempts > 0]
        assert retried and all("503" in (spool.info(k).last_error or "") for k in retried)
        assert uploader.counters["went_online"] >= 1


async def test_server_down_then_back_loses_nothing(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 30)
        emulator.go_down()
        uploader = Uploader(spool, _server(emulator.url), _upload())
        modes: list[str] = []

        def outage(elapsed: float) -> None:
            modes.append(uploader.mode)
            if elapsed > 1.0 and not emulator.is_up:
                emulator.come_back()

        await _serve(uploader, _all_sent(spool, 30), during=outage)
        assert OFFLINE in modes and uploader.counters["went_online"] >= 1
        assert emulator.received_ids() == ids


async def test_lost_acknowledgements_resend_the_same_id(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 40)
        emulator.set_faults(drop_after_rate=0.3)
        uploader = Uploader(spool, _server(emulator.url), _upload(offline_after=1000))
        await _serve(uploader, _all_sent(spool, 40))
        stats = emulator.stats()
        assert stats.dropped_after > 0
        assert emulator.received_ids() == ids  # no new ids, ever
        assert stats.duplicates == stats.dropped_after  # each lost ack costs exactly one resend of the same id


async def test_a_hung_server_is_a_timeout_not_a_hang(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        key = next(iter(_fill(spool, 1)))
        emulator.set_faults(latency_s=1.5)
        uploader = Uploader(spool, _server(emulator.url, timeout_s=0.3), _upload(offline_after=1000))
        await _serve(uploader, lambda: spool.info(key).attempts >= 1, timeout=10)
        assert "did not answer in time" in spool.info(key).last_error


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(RetrySection(initial_s=1, max_s=300, multiplier=2, jitter=0.2), random.Random(3))
    delays = [backoff.delay(n) for n in range(1, 30)]
    assert all(d <= 300 for d in delays)
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert max(delays) > 250  # it does grow to the cap
    assert backoff.delay(1, retry_after=30) >= 30
    assert backoff.delay(1, retry_after=10_000) == 300  # Retry-After honoured, but never beyond the cap


async def test_token_bucket_limits_the_rate_without_blocking_the_loop() -> None:
    bucket = TokenBucket(20.0, burst=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        started = time.monotonic()
        for _ in range(11):
            await bucket.acquire()
        elapsed = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert elapsed >= 0.45  # 10 tokens after the first, at 20/s
    assert ticks >= 20  # the loop kept running while the bucket waited


async def test_cancelled_uploads_go_back_to_pending(data_dir: Path, emulator: Emulator) -> None:
    with Spool(data_dir) as spool:
        _fill(spool, 4)
        emulator.set_faults(latency_s=5)
        uploader = Uploader(spool, _server(emulator.url, timeout_s=30), _upload())

        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            with anyio.fail_after(20):
                while uploader.in_flight < 4:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        assert spool.counts()["sending"] == 0 and spool.counts()["pending"] == 4


TLS = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


@pytest.mark.parametrize("cert, ca_bundle, expect", [
    ("server.pem", None, "CA that signed it"),          # a private CA the station does not know
    ("expired.pem", "ca.pem", "expired"),                # known CA, expired certificate
    ("server.pem", "ca.pem", None),                      # the station trusts the internal CA: sent
])
async def test_tls_failures_pause_with_the_reason_and_a_ca_bundle_fixes_them(
        data_dir: Path, cert: str, ca_bundle: str | None, expect: str | None) -> None:
    with Emulator(port=0, tls=(TLS / cert, TLS / "server.key")) as emu, Spool(data_dir) as spool:
        ids = _fill(spool, 3)
        server = ServerSection(url=emu.url, token=DEFAULT_TOKEN, timeout_s=5,
                               ca_bundle=str(TLS / ca_bundle) if ca_bundle else None)
        uploader = Uploader(spool, server, _upload())
        if expect is None:
            await _serve(uploader, _all_sent(spool, 3))
            assert emu.received_ids() == ids
        else:
            await _serve(uploader, lambda: uploader.mode == PAUSED)
            assert expect in uploader.reason and "TLS" in uploader.reason
            assert spool.counts()["pending"] == 3 and not emu.received_ids()


async def test_thirty_percent_faults_over_two_thousand_reports(data_dir: Path) -> None:
    """5xx, 429 with Retry-After, resets before reading, lost acknowledgements: all sent, none lost."""
    with Emulator(port=0, seed=11, keep_in_memory=False) as emu, Spool(data_dir) as spool:
        ids = _fill(spool, 2000)
        emu.set_faults(error_rate=0.1, error_status=503, drop_before_rate=0.1, drop_after_rate=0.1)
        uploader = Uploader(spool, _server(emu.url), _upload(concurrency=8, offline_after=1000, max_s=0.2))

        def alternate(elapsed: float) -> None:
            # half the time the injected errors are 429 with Retry-After, half the time 503
            if int(elapsed * 2) % 2:
                emu.set_faults(error_status=429, retry_after=0.1)
            else:
                emu.set_faults(error_status=503, retry_after=None)

        await _serve(uploader, _all_sent(spool, 2000), timeout=120, during=alternate)
        stats = emu.stats()
        assert emu.received_ids() == ids
        assert stats.unique_ids == 2000
        assert stats.errors_injected > 100 and stats.dropped_before > 100 and stats.dropped_after > 100
        assert stats.duplicates == stats.dropped_after  # repeated ids only where an ack was lost
        assert spool.counts()["failed"] == 0 and spool.counts()["quarantined"] == 0


async def test_a_slow_disk_moves_spool_work_off_the_event_loop(data_dir: Path, emulator: Emulator,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with Spool(data_dir) as spool:
        ids = _fill(spool, 20)
        real_claim = spool.claim_next
        slow = {"left": 1}

        def slow_claim():
            if slow["left"]:
                slow["left"] -= 1
                time.sleep(0.05)  # one claim stalls like a disk that hangs
            return real_claim()

        spool.claim_next = slow_claim  # type: ignore[method-assign]
        uploader = Uploader(spool, _server(emulator.url), _upload())
        assert uploader._gate.inline
        seen: dict[str, object] = {}

        def later(_elapsed: float) -> None:
            if "more" not in seen and spool.counts()["sent"] == 20:
                seen["inline after the stall"] = uploader._gate.inline
                seen["next wait"] = uploader._gate.retry_s
                uploader._gate.retry_at = time.monotonic()  # the while is over: the loop is tried again
                seen["more"] = _fill(spool, 5, start=20)

        await _serve(uploader, lambda: spool.counts()["sent"] == 25, during=later)
        assert seen["inline after the stall"] is False  # after the stall, spool work ran in threads
        assert seen["next wait"] == 120  # a second stall would wait twice as long
        assert "disk is slow" in caplog.text and "again in 60 s" in caplog.text
        assert uploader._gate.inline and "on the event loop again" in caplog.text
        assert emulator.received_ids() == ids | seen["more"]  # type: ignore[operator]
        assert not spool._unsynced_final  # the batched fsync of sent/ happened before run() returned


async def test_a_pending_report_that_cannot_be_claimed_does_not_spin_the_loop(data_dir: Path, emulator: Emulator) -> None:
    """Found by the disk-full chaos scenario: pending > 0 but nothing claimable must not busy-loop."""
    with Spool(data_dir) as spool:
        key = next(iter(_fill(spool, 1)))
        spool._entries[key].busy = True  # being moved by another thread, as far as claims can tell
        uploader = Uploader(spool, _server(emulator.url), _upload())
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            tg.start_soon(ticker)
            await anyio.sleep(0.5)
            spool._entries[key].busy = False  # the other move finished
            with anyio.fail_after(5):
                while spool.counts()["sent"] < 1:
                    await anyio.sleep(0.02)
            uploader.drain()
            tg.cancel_scope.cancel()
        assert ticks >= 20  # the loop kept running while the report could not be claimed
        assert emulator.received_ids() == {key}
