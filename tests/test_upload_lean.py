"""The lean upload path (issue 18 item 3): each worker claims, posts and records its own report.

What the lean path promises beyond the uploader's other tests: no report waits claimed in
``sending`` (a claim is taken only when its post starts), an acknowledged report costs no thread
hand-off, cautious mode still lets one post out at a time, and a refusal that answers the settings
in force before a change does not pause the new ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.engine.upload import stall as stall_module
from stationflow.engine.upload import uploader as uploader_module
from stationflow.engine.upload.uploader import OFFLINE, PAUSED, Uploader
from stationflow.schemas.config import RetrySection, ServerSection, UploadSection


def _server(url: str) -> ServerSection:
    return ServerSection(url=url, token=DEFAULT_TOKEN, timeout_s=10.0, connect_timeout_s=2.0)


def _upload(concurrency: int = 4, **retry: float) -> UploadSection:
    defaults = {"initial_s": 0.05, "max_s": 0.3, "offline_after": 3}
    return UploadSection(concurrency=concurrency, retry=RetrySection(**{**defaults, **retry}))


def _fill(spool: Spool, n: int) -> set[str]:
    return {spool.accept(make_report_bytes(i, seed=18)).key for i in range(n)}


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0, seed=1) as emu:
        yield emu


async def test_no_report_waits_claimed_beyond_the_posts_under_way(data_dir: Path, emulator: Emulator) -> None:
    """A slow server: at every moment at most ``concurrency`` reports are in ``sending`` (the feeder
    of the old path kept up to eight more claimed ahead, each a report a crash sends again)."""
    emulator.set_faults(latency_s=0.1)
    with Spool(data_dir) as spool:
        ids = _fill(spool, 24)
        uploader = Uploader(spool, _server(emulator.url), _upload(concurrency=2))
        most = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            with anyio.fail_after(60):
                while spool.counts()["sent"] < 24:
                    most = max(most, spool.counts()["sending"])
                    await anyio.sleep(0.005)
            uploader.drain()
        assert 1 <= most <= 2, most
        assert emulator.received_ids() == ids


async def test_an_acknowledged_report_costs_no_thread_hand_off(data_dir: Path, emulator: Emulator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims and the record of a 2xx run on the event loop; only the scheduler's periodic work
    (release of due reports, the batched fsync of sent/) goes to threads."""
    monkeypatch.setattr(stall_module, "INLINE_LIMIT_S", 60.0)  # a busy test machine is not a slow disk
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    with Spool(data_dir) as spool:
        ids = _fill(spool, 200)
        uploader = Uploader(spool, _server(emulator.url), _upload())
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: spool.counts()["sent"] == 200)
            uploader.drain()
        assert emulator.received_ids() == ids
    assert hops, "the counter saw nothing: the test would prove nothing"
    per_report = {"claim_next", "_claim_next", "_settle_many", "_record", "_fire"}
    assert not per_report & set(hops), sorted(set(hops))
    assert set(hops) <= {"_tick", "sync_final", "prune_sent"}, sorted(set(hops))


async def test_after_an_outage_one_post_at_a_time_until_one_is_acknowledged(data_dir: Path,
                                                                           emulator: Emulator) -> None:
    emulator.set_faults(down=True)
    with Spool(data_dir) as spool:
        ids = _fill(spool, 12)
        uploader = Uploader(spool, _server(emulator.url), _upload(concurrency=4))
        most_before_ack = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: uploader.mode == OFFLINE)
            await _until(lambda: uploader.in_flight == 0 and spool.counts()["sending"] == 0)
            emulator.set_faults(down=False, latency_s=0.3)  # back, and slow: a second post would overlap
            with anyio.fail_after(60):
                while uploader.counters["sent"] == 0:
                    most_before_ack = max(most_before_ack, uploader.in_flight)
                    await anyio.sleep(0.005)
            await _until(lambda: spool.counts()["sent"] == 12)
            uploader.drain()
        assert most_before_ack == 1, most_before_ack
        assert emulator.received_ids() == ids


class _LateRefusal:
    """A server that refuses every POST with 403, the second one only when told to: the answer of a
    post made under the old settings, arriving after they changed."""

    def __init__(self) -> None:
        self.arrived = 0
        self.release = threading.Event()
        self._lock = threading.Condition()
        late = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(200, b'{"version": "late/1"}')

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with late._lock:
                    late.arrived += 1
                    number = late.arrived
                    late._lock.notify_all()
                    late._lock.wait_for(lambda: late.arrived >= 2, timeout=10)  # both posts under way
                if number >= 2:
                    late.release.wait(20)
                self._answer(403, json.dumps({"message": "token may not submit reports"}).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> _LateRefusal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


async def test_a_late_refusal_of_the_old_settings_does_not_pause_the_new_ones(data_dir: Path,
                                                                              emulator: Emulator) -> None:
    with _LateRefusal() as late, Spool(data_dir) as spool:
        ids = _fill(spool, 6)
        uploader = Uploader(spool, _server(late.url), _upload(concurrency=2))
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: uploader.mode == PAUSED and uploader.in_flight == 1)
            uploader.update_server(_server(emulator.url))  # the fix: a server that takes the reports
            late.release.set()  # the refusal of the post made before the change arrives now
            await _until(lambda: spool.counts()["sent"] == 6)
            status = uploader.status()
            uploader.drain()
        assert status["held_for_s"] is None and uploader.counters["went_paused"] == 1
        assert emulator.received_ids() == ids and late.arrived == 2
        assert spool.counts()["pending"] == spool.counts()["sending"] == 0
