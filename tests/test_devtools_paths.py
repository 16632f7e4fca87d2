"""The emulator's rarer answers and lifecycle (fault checks, bad Content-Length, other methods, the
control endpoint's refusals, an outage whose port was taken meanwhile, stored reports read back from
disk), the station benchmark's full-spool figures run small, and the demo's progress line on a
terminal and its summary when a report is lost."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.cli.main import main
from stationflow.engine.devtools import bench, demo
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, Emulator, Faults, is_loopback_host
from stationflow.engine.devtools.samples import make_report_bytes

AUTH = {"Authorization": f"Basic {DEFAULT_TOKEN}"}


def _request(emulator: Emulator, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any], dict[str, str]]:
    """One request on its own connection: status, reason, JSON body ({} when empty), headers."""
    conn = http.client.HTTPConnection(emulator.host, emulator.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = dict(headers or {})
        if body is not None and "Content-Length" not in sent:
            sent["Content-Length"] = str(len(body))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
        return response.status, response.reason, (json.loads(raw) if raw else {}), dict(response.getheaders())
    finally:
        conn.close()


def _wait_for(condition: Any, what: str, bound_s: float = 30.0) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------------- the emulator

@pytest.mark.parametrize("fault, words", [
    ({"retry_after": -1}, "fault retry_after: -1"),
    ({"latency_s": -0.5}, "fault latency_s: -0.5 — must be seconds, 0 or more"),
    ({"down": "yes"}, "fault down: 'yes' — must be true or false"),
])
def test_impossible_faults_are_refused_by_name(fault: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Faults(**fault)


def test_faults_set_through_the_control_endpoint_are_checked(tmp_path: Path) -> None:
    with Emulator() as emulator:
        status, _, body, _ = _request(emulator, "POST", "/_emulator/faults", b"[1, 2]")
        assert status == 400 and body["message"] == "send a JSON object of fault names and values"
        for bad in (b'{"seconds": 0}', b'{"seconds": 3601}', b'[]', b'{"seconds": "soon"}'):
            status, _, body, _ = _request(emulator, "POST", "/_emulator/outage", bad)
            assert status == 400 and body["message"] == 'send {"seconds": S} with 0 < S <= 3600', bad
        assert emulator.is_up


def test_a_bad_content_length_is_a_400_and_other_methods_are_405_or_404() -> None:
    with Emulator() as emulator:
        for length in ("-5", "ten"):
            status, _, body, _ = _request(emulator, "POST", "/api/Report/WSJF", b"",
                                          {**AUTH, "Content-Length": length})
            assert status == 400 and body["message"] == f"bad Content-Length: {length!r}"
        status, _, body, _ = _request(emulator, "PUT", "/api/Report/WSJF", b"{}", AUTH)
        assert status == 405 and body["message"] == "PUT is not allowed on /api/Report/WSJF"
        # A body of unknown length cannot be skipped: answered, then the connection is closed.
        with socket.create_connection((emulator.host, emulator.port), timeout=30) as raw:
            raw.sendall(b"DELETE /api/App/Version HTTP/1.1\r\nHost: x\r\nContent-Length: junk\r\n\r\n")
            received = b""
            while chunk := raw.recv(4096):
                received += chunk
        assert received.startswith(b"HTTP/1.1 405 ") and b"DELETE is not allowed on /api/App/Version" in received
        status, _, body, _ = _request(emulator, "DELETE", "/nowhere")
        assert status == 404 and body["message"] == "no such endpoint: /nowhere"
        assert emulator.stats().requests == 5


def test_an_unassigned_status_chosen_for_a_fault_is_sent_with_a_plain_reason() -> None:
    with Emulator(faults=Faults(error_rate=1.0, error_status=599)) as emulator:
        status, reason, body, _ = _request(emulator, "POST", "/api/Report/WSJF", b"{}", AUTH)
        assert (status, reason) == (599, "Error") and body["message"] == "injected error 599"


def test_latency_applies_to_the_version_endpoint_too() -> None:
    with Emulator(faults=Faults(latency_s=0.2)) as emulator:
        started = time.monotonic()
        status, _, body, _ = _request(emulator, "GET", "/api/App/Version", headers=AUTH)
        assert status == 200 and body == {"version": "stationflow-emulator/1"}
        assert time.monotonic() - started >= 0.2


def test_starting_twice_is_harmless_and_stopping_ends_an_outage(tmp_path: Path) -> None:
    emulator = Emulator(store_dir=tmp_path / "store")
    emulator.start()
    port = emulator.port
    emulator.start()  # already listening: nothing changes
    assert emulator.port == port and (tmp_path / "store").is_dir()
    emulator.outage(3600)
    emulator.outage(3600)  # a second outage replaces the first timer
    assert not emulator.is_up
    emulator.stop()  # cancels the outage: the emulator does not come back on its own
    assert emulator._outage is None and not emulator.is_up
    emulator.start()
    assert emulator.is_up and emulator.port == port
    emulator.stop()


def test_an_outage_ending_on_a_taken_port_leaves_the_emulator_down_and_says_why(
        caplog: pytest.LogCaptureFixture) -> None:
    emulator = Emulator()
    emulator.start()
    port = emulator.port
    try:
        emulator.go_down()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with caplog.at_level(logging.ERROR, logger="stationflow.engine.devtools.emulator"):
                emulator.outage(0.01)
                _wait_for(lambda: emulator._outage is None, "the outage timer to fire")
                _wait_for(lambda: "could not listen again" in caplog.text, "the error to be logged")
            assert not emulator.is_up
            assert f"emulator could not listen again on 127.0.0.1:{port}" in caplog.text
        emulator.come_back()
        assert emulator.is_up and emulator.port == port
    finally:
        emulator.stop()


def test_reports_kept_on_disk_only_are_read_back_and_odd_ids_find_nothing(tmp_path: Path) -> None:
    raw = make_report_bytes(1, seed=3)
    report_id = json.loads(raw)["id"]
    with Emulator(store_dir=tmp_path, keep_in_memory=False) as emulator:
        status, _, body, _ = _request(emulator, "POST", "/api/Report/WSJF", raw,
                                      {**AUTH, "Content-Type": "application/json"})
        assert status == 200, body
        assert emulator.report(report_id) == raw  # from the store folder, not memory
        (tmp_path / f"{report_id.lower()}.json").unlink()
        assert emulator.report(report_id) is None  # removed behind its back: nothing, no exception
        assert emulator.report("not an id") is None
        assert emulator.times_stored("not an id") == 0
        assert emulator.times_stored(report_id) == 1


def test_the_control_endpoint_refuses_a_client_that_is_not_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine.devtools import emulator as module

    with Emulator() as emulator:
        monkeypatch.setattr(module, "_is_loopback", lambda host: False)  # as a client from another machine
        status, _, body, _ = _request(emulator, "POST", "/_emulator/faults", b'{"down": true}')
        assert status == 403 and body["message"] == "the emulator's control endpoint answers loopback clients only"
        assert emulator.faults.down is False
        status, _, body, _ = _request(emulator, "GET", "/api/internal/Client/Ping")
        assert status == 200  # the API itself answers everyone


def test_a_handler_that_fails_is_counted_and_logged_and_the_client_gets_no_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    with Emulator() as emulator:
        def broken(key: str, raw: bytes) -> None:
            raise RuntimeError("a bug in the emulator")

        emulator._store = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="stationflow.engine.devtools.emulator"):
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                _request(emulator, "POST", "/api/Report/WSJF", make_report_bytes(2, seed=3), AUTH)
            _wait_for(lambda: emulator.stats().handler_errors == 1, "the failure to be counted")
        assert "emulator request handler failed" in caplog.text and "a bug in the emulator" in caplog.text


def test_loopback_hosts_by_name_and_address() -> None:
    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.2") and is_loopback_host("::1")
    assert not is_loopback_host("wats.example.com") and not is_loopback_host("10.0.0.1")


# ------------------------------------------------------------------------- the benchmark

def test_the_station_benchmark_measures_a_full_spool_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--dir", str(tmp_path), "-n", "20", "--queued", "30", "--upload-n", "0"]) == 0
    out = capsys.readouterr().out
    assert "filling a spool with 30 pending reports" in out
    assert "start-up recovery of 30 pending reports:" in out
    assert "spool cycle with 30 queued:" in out and "of empty; target ≥ 80%" in out
    assert out.rstrip().endswith(("targets met", "see above)"))  # the verdict's last line
    assert list(tmp_path.iterdir()) == []  # its spools are removed


def test_peak_memory_is_zero_where_resource_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench._peak_rss_mb() > 0
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows
    assert bench._peak_rss_mb() == 0.0


# ------------------------------------------------------------------------------ the demo

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_demo_progress_redraws_one_line_on_a_terminal() -> None:
    screen = _Terminal()
    progress = demo.Progress(screen)
    progress.show("sent 10 of 300")
    progress.show("sent 20 of 300")
    progress.done()
    text = screen.getvalue()
    assert text.startswith("\rsent 10 of 300") and "\rsent 20 of 300" in text and text.endswith("\n")
    assert text.count("\n") == 1  # one line, redrawn


def test_the_demo_progress_prints_lines_when_not_a_terminal() -> None:
    log = io.StringIO()
    progress = demo.Progress(log)
    progress.show("sent 10 of 300")
    progress.show("sent 11 of 300")  # within a second: skipped
    progress.show("sent 12 of 300", force=True)
    progress.done()
    assert log.getvalue() == "sent 10 of 300\nsent 12 of 300\n"


def test_the_demo_summary_names_lost_reports() -> None:
    result = demo.DemoResult(generated=3, accepted=3, sent=1, lost=2, lost_ids=["a1", "b2"], seconds=1.0)
    lines: list[str] = []
    demo._summary(result, lines.append)
    text = "".join(lines)
    assert "  lost                     2\n" in text
    assert text.endswith("LOST REPORTS: a1, b2\n")


def test_an_upload_benchmark_whose_emulator_cannot_listen_fails_at_once_saying_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stationflow.engine.devtools import bench_upload

    with socket.socket() as taken:  # the free port was taken between finding it and binding it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(bench_upload, "_free_port", lambda: port)
        with pytest.raises(RuntimeError, match=rf"the emulator did not start on port {port} \(it exited with code 1\)"):
            bench_upload.start_emulator_process()
