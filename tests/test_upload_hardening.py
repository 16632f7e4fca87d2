"""Issue 14, the upload side, in one process: a refused POST holds its pause, answers are read to a
limit, a proxy's page is not an acknowledgement, failures say what broke, URL passwords are masked,
and reports the server cannot store are refused (the end-to-end runs against a service are in
test_upload_hardening_service.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.engine.upload.answers import BODY_LIMIT, classify_exception
from stationflow.engine.upload.connection_test import check_connection
from stationflow.engine.upload.hold import Hold
from stationflow.engine.upload.uploader import PAUSED, Uploader
from stationflow.schemas.config import RetrySection, ServerSection, UploadSection, masked_url
from stationflow.schemas.wsjf import ReportValidationError, load_report, parse_header
from tests.hostile import Hostile


def _server(url: str, token: str = DEFAULT_TOKEN) -> ServerSection:
    return ServerSection(url=url, token=token, timeout_s=5.0, connect_timeout_s=2.0)


def _upload(concurrency: int = 4) -> UploadSection:
    return UploadSection(concurrency=concurrency, retry=RetrySection(initial_s=0.05, max_s=0.3, offline_after=3))


def _fill(spool: Spool, n: int) -> set[str]:
    return {spool.accept(make_report_bytes(i, seed=14)).key for i in range(n)}


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


@pytest.fixture
def emulator():
    with Emulator(port=0, seed=1) as emu:
        yield emu


# ------------------------------------------------------------------ item 5: the 403 loop


async def test_a_refused_post_holds_the_pause_though_the_probe_answers(data_dir: Path, emulator: Emulator) -> None:
    """403 to every POST, 200 to the version probe: before the fix the probe lifted the pause at
    once and the next POST was refused again (~150 POST/s, mode online)."""
    emulator.set_faults(error_rate=1.0, error_status=403)
    with Spool(data_dir) as spool:
        ids = _fill(spool, 10)
        uploader = Uploader(spool, _server(emulator.url), _upload())
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: uploader.mode == PAUSED and spool.counts()["sending"] == 0)
            posts_at_pause = emulator.stats().posts
            await anyio.sleep(2.0)  # an observation window, not a synchronisation
            status = uploader.status()
            assert uploader.mode == PAUSED
            assert emulator.stats().posts == posts_at_pause <= 4  # one round of the 4 workers, then nothing
            assert "403" in status["reason"] and "injected error 403" in status["reason"]  # the server's words
            assert "stationflow queue resume" in status["reason"] and status["held_for_s"] > 500
            assert spool.counts()["pending"] == 10 and spool.counts()["failed"] == 0
            emulator.clear_faults()  # the token is given the right to submit
            assert uploader.resume() is True
            await _until(lambda: spool.counts()["sent"] == 10)
            assert uploader.resume() is False  # not paused any more
            uploader.drain()
        assert emulator.received_ids() == ids
        assert all(spool.info(key).attempts == 0 for key in ids)  # a pause is not an attempt


async def test_a_held_pause_ends_after_its_wait_and_the_next_one_is_twice_as_long(data_dir: Path,
                                                                                 emulator: Emulator) -> None:
    emulator.set_faults(error_rate=1.0, error_status=403)
    with Spool(data_dir) as spool:
        _fill(spool, 5)
        uploader = Uploader(spool, _server(emulator.url), _upload(concurrency=2))
        uploader.hold = Hold(first_s=0.5, max_s=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: uploader.counters["went_paused"] >= 3)  # paused, tried again, twice
            posts = emulator.stats().posts
            assert uploader.hold.length_s == 1.0  # 0.5, then 1.0, capped there
            uploader.drain()
        assert 3 <= posts <= 3 * 2 + 2  # a round of two workers per try, not a loop
        assert spool.counts()["pending"] == 5


async def test_a_changed_server_setting_lifts_a_held_pause(data_dir: Path, emulator: Emulator) -> None:
    with Hostile("forbid") as hostile, Spool(data_dir) as spool:
        ids = _fill(spool, 6)
        uploader = Uploader(spool, _server(hostile.url), _upload())
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: uploader.mode == PAUSED)
            assert "token may not submit reports" in (uploader.reason or "")
            uploader.update_server(_server(emulator.url))
            await _until(lambda: spool.counts()["sent"] == 6)
            uploader.drain()
        assert emulator.received_ids() == ids and hostile.posts <= 4


# ------------------------------------------------------------------ item 6: endless bodies


async def test_an_endless_answer_is_read_to_the_limit_and_the_report_waits(data_dir: Path) -> None:
    with Hostile("endless") as hostile, Spool(data_dir) as spool:
        (key,) = _fill(spool, 1)
        uploader = Uploader(spool, _server(hostile.url), _upload(concurrency=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: len(hostile.endless_bytes) >= 3, timeout=30)
            uploader.drain()
        info = spool.info(key)
        assert info.state in ("pending", "retry_wait") and info.last_error.startswith("server answered 500: xxx")
        # The client hung up after 64 KiB; what the server got out is that plus socket buffers.
        assert max(hostile.endless_bytes) < 64 * 1024 * 1024
        assert len(info.last_error) < 600


def _endless_server(status: bytes) -> tuple[socket.socket, threading.Thread, list[int]]:
    """A raw socket server: one answer with ``status`` and a body that never ends (for the blocking
    connection test)."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent: list[int] = []

    def serve() -> None:
        for _ in range(1):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                total = 0
                try:
                    while total < 4 * 1024**3:
                        conn.sendall(b"y" * 65536)
                        total += 65536
                except OSError:
                    pass
                sent.append(total)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, sent


async def test_the_probe_reads_no_more_than_the_limit(data_dir: Path) -> None:
    listener, thread, sent = _endless_server(b"200 OK")
    try:
        with Spool(data_dir) as spool:
            uploader = Uploader(spool, _server(f"http://127.0.0.1:{listener.getsockname()[1]}"), _upload())
            ok, message = await uploader.probe()
            await uploader.client.aclose()
    finally:
        listener.close()
        await anyio.to_thread.run_sync(thread.join, 10)
    assert ok and message == "y" * 200
    assert sent and max(sent) < 64 * 1024 * 1024
    assert BODY_LIMIT == 64 * 1024


def test_the_connection_test_reads_no_more_than_the_limit() -> None:
    listener, thread, sent = _endless_server(b"500 Internal Server Error")
    try:
        port = listener.getsockname()[1]
        result = check_connection(_server(f"http://127.0.0.1:{port}"), max_wait_s=10)
        assert not result.ok and result.status == 500 and "500" in result.message
        assert len(result.message) < 600
    finally:
        listener.close()
        thread.join(10)
    assert sent and max(sent) < 64 * 1024 * 1024


# ------------------------------------------------------------------ item 14: the rest


async def test_a_web_page_with_200_is_not_an_acknowledgement(data_dir: Path) -> None:
    with Hostile("html") as hostile, Spool(data_dir) as spool:
        (key,) = _fill(spool, 1)
        uploader = Uploader(spool, _server(hostile.url), _upload(concurrency=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: hostile.posts >= 2)
            uploader.drain()
        info = spool.info(key)
        assert info.state in ("pending", "retry_wait") and spool.counts()["sent"] == 0
        assert "web page, not WATS: a proxy?" in info.last_error


def test_the_connection_test_calls_a_login_page_a_web_page() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    page = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 27\r\n\r\n"
            b"<html>proxy login</html>\r\n\r\n")

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(page)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = check_connection(_server(f"http://127.0.0.1:{listener.getsockname()[1]}"), max_wait_s=10)
    finally:
        listener.close()
        thread.join(10)
    assert not result.ok and "web page, not WATS: a proxy?" in result.message


def test_a_broken_connection_says_what_broke() -> None:
    for exc in (httpx.ReadError(""), httpx.RemoteProtocolError("")):
        message = classify_exception(exc).message
        assert message == f"the connection broke before the answer: {type(exc).__name__}"
    cause = ConnectionResetError(104, "Connection reset by peer")
    try:
        try:
            raise cause
        except ConnectionResetError as inner:
            raise httpx.ReadError("") from inner
    except httpx.ReadError as exc:
        message = classify_exception(exc).message
    assert "ReadError" in message and "Connection reset by peer" in message


async def test_a_server_that_hangs_up_is_named_in_the_error(data_dir: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)  # read the request, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Spool(data_dir) as spool:
            (key,) = _fill(spool, 1)
            uploader = Uploader(spool, _server(f"http://127.0.0.1:{listener.getsockname()[1]}"),
                                _upload(concurrency=1))
            async with anyio.create_task_group() as tg:
                tg.start_soon(uploader.run)
                await _until(lambda: bool(spool.info(key).last_error))
                uploader.drain()
            error = spool.info(key).last_error
    finally:
        stop.set()
        thread.join(10)
        listener.close()
    said = error.removeprefix("the connection broke before the answer: ")
    assert said != error and said.split(":")[0] in ("RemoteProtocolError", "ReadError"), error  # named, not blank


def test_url_passwords_are_masked_where_a_person_reads_them(tmp_path: Path) -> None:
    url = "http://admin:pa55word@127.0.0.1:9"
    assert masked_url(url) == "http://admin:********@127.0.0.1:9"
    assert masked_url("https://wats.example.com") == "https://wats.example.com"
    config = tmp_path / "station.yaml"
    config.write_text(f'station: {{name: MASK-01}}\nserver: {{url: "{url}", token: s3cret-token-value}}\n'
                      "data_dir: ./data\n")
    for extra in ([], ["--json"]):
        shown = subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), "config", "show", *extra],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "pa55word" not in shown.stdout and "admin:********@127.0.0.1:9" in shown.stdout
    changed = subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), "config", "set",
                              "upload.concurrency=2"], capture_output=True, text=True, timeout=60)
    assert changed.returncode == 0, changed.stderr
    assert "pa55word" in config.read_text()  # saving keeps the real address
    result = check_connection(_server(url), max_wait_s=5)
    assert not result.ok and "pa55word" not in result.message and "admin:********@" in result.message


def test_the_uploaders_status_masks_the_url_password(data_dir: Path) -> None:
    with Spool(data_dir) as spool:
        uploader = Uploader(spool, _server("http://admin:pa55word@127.0.0.1:9"), _upload())
        assert uploader.status()["server"] == "http://admin:********@127.0.0.1:9"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1E+400"])
def test_numbers_the_server_cannot_store_are_refused(value: str, emulator: Emulator) -> None:
    raw = make_report_bytes(1, seed=3).replace(b'"pn"', b'"level": ' + value.encode() + b', "pn"', 1)
    for parse in (parse_header, load_report):
        with pytest.raises(ReportValidationError, match="not a finite number|a number is"):
            parse(raw)
    answer = httpx.post(emulator.url + "/api/Report/WSJF", content=raw,
                        headers={"Authorization": f"Basic {DEFAULT_TOKEN}"}, timeout=10)
    assert answer.status_code == 400 and value in answer.json()["message"]


def test_a_process_code_beyond_32_bits_is_refused(emulator: Emulator) -> None:
    report = json.loads(make_report_bytes(1, seed=3))
    report["processCode"] = 99999999999999999999999
    raw = json.dumps(report).encode()
    with pytest.raises(ReportValidationError, match="processCode: 99999999999999999999999 — must be a whole number"):
        parse_header(raw)
    answer = httpx.post(emulator.url + "/api/Report/WSJF", content=raw,
                        headers={"Authorization": f"Basic {DEFAULT_TOKEN}"}, timeout=10)
    assert answer.status_code == 400 and "processCode" in answer.json()["message"]
    report["processCode"] = 2**31 - 1
    assert parse_header(json.dumps(report)).processCode == 2**31 - 1
    # a step named like a constant is still a good report (the slow check runs, and passes)
    named = make_report_bytes(1, seed=3).replace(b'"pn"', b'"note": "NaN check 1e999", "pn"', 1)
    assert parse_header(named).processCode == 10


# ------------------------------------------------------------------ item 15: a busy server


async def test_a_busy_servers_retry_after_holds_the_whole_station(data_dir: Path, emulator: Emulator) -> None:
    """503 with Retry-After to every post: the station waits that long (spread over as long again),
    one post at a time — not each of its reports in turn at full speed — and does not call a server
    that answers 'offline'."""
    emulator.set_faults(error_rate=1.0, error_status=503, retry_after=0.5)
    with Spool(data_dir) as spool:
        ids = _fill(spool, 20)
        uploader = Uploader(spool, _server(emulator.url), _upload())
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            await _until(lambda: emulator.stats().errors_injected >= 2)
            started, posts = anyio.current_time(), emulator.stats().posts
            await anyio.sleep(3.0)  # an observation window, not a synchronisation
            posts = emulator.stats().posts - posts
            assert posts <= 3.0 / 0.5 + 4, posts  # at most one post per Retry-After (and one round in flight)
            assert uploader.counters["went_offline"] == 0 and uploader.status()["pace_rps"] is not None
            assert anyio.current_time() - started >= 3.0
            emulator.clear_faults()
            await _until(lambda: spool.counts()["sent"] == 20)
            uploader.drain()
        assert emulator.received_ids() == ids
