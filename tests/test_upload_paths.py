"""The upload side's error paths: what the connection test and the uploader say about each failure.

The connection test ("Test connection" on the Connection page) is a blocking call, run here as
the configurator runs it, against the real emulator (TLS included) or, for answers the emulator
never gives (a redirect, a proxy's HTML page, a 403, a JSON body of another shape, an answer
that never comes), a scripted HTTP server on loopback (tests/stub_server.py). The uploader runs
against the same servers through a real spool on disk: whatever the answer, no report is lost.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from stationflow.engine.cli.main import main as cli_main
from stationflow.engine.errors import ConfigError
from stationflow.engine.devtools.emulator import DEFAULT_TOKEN, VERSION, Emulator, Faults
from stationflow.engine.lifecycle import load_lifecycle
from stationflow.engine.spool.store import Spool
from stationflow.engine.upload.connection_test import check_connection
from stationflow.engine.upload.uploader import PAUSED, Uploader
from stationflow.schemas.config import ServerSection
from tests.conftest import FIXTURES
from tests.stub_server import Reply, stub_server
from tests.test_uploader import _all_sent, _fill, _run, _upload

TLS = FIXTURES / "tls"


def _server(url: str, **kw: object) -> ServerSection:
    return ServerSection(url=url, **{"token": DEFAULT_TOKEN, "timeout_s": 5.0, "connect_timeout_s": 2.0, **kw})


# ---------------------------------------------------------------------- the connection test

@pytest.mark.parametrize("reply, kind, words", [
    (Reply(403, {"message": "token lacks the report:write right"}), "403",
     "the token is not allowed to do this (403) (server said: token lacks the report:write right)"),
    (Reply(302, b"", {"Location": "https://wats.example.com/"}), "http",
     "the server redirects to https://wats.example.com/ (302) — set server.url to that address"),
    (Reply(502, "<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"}), "http",
     "the server answered 502 (server said: <html><body>Bad Gateway</body></html>)"),
    (Reply(500, ["not", "a", "message"]), "http", 'the server answered 500 (server said: ["not", "a", "message"])'),
])
def test_each_refusal_is_named_with_what_the_server_said(reply: Reply, kind: str, words: str) -> None:
    with stub_server(reply) as stub:
        result = check_connection(_server(stub.url))
    assert not result.ok and result.error_kind == kind and result.status == reply.status
    assert result.message.startswith(words)


def test_a_refusal_of_the_second_probe_is_reported_too() -> None:
    with stub_server(Reply(200, {"version": "1.2"}), Reply(401, {"message": "token expired"})) as stub:
        result = check_connection(_server(stub.url))
    assert not result.ok and result.error_kind == "401" and "token expired" in result.message
    assert len(stub.requests) == 2


@pytest.mark.parametrize("body, version", [
    ("WATS 2025.1 \n", "WATS 2025.1"),          # plain text
    ('"2025.2"', "2025.2"),                        # a JSON string
    ([2025, 3], "[2025, 3]"),                      # JSON of another shape
    ({"build": 7}, "{'build': 7}"),                # a JSON object without a version field
])
def test_the_servers_version_is_read_from_any_kind_of_answer(body: object, version: str) -> None:
    with stub_server(Reply(200, body)) as stub:
        result = check_connection(_server(stub.url))
    assert result.ok, result.message
    assert result.version == version and result.message.startswith(f"connected: server version {version}, ")


def test_a_server_that_accepts_but_never_answers_is_a_timeout_within_the_bound() -> None:
    with stub_server(Reply(hang=True)) as stub:
        started = time.monotonic()
        result = check_connection(_server(stub.url, timeout_s=30.0), max_wait_s=0.5)
        took = time.monotonic() - started
    assert not result.ok and result.error_kind == "timeout"
    assert result.message.startswith("127.0.0.1 did not answer in time (ReadTimeout)")
    assert took < 10


def test_a_server_that_hangs_up_without_answering_is_a_network_failure() -> None:
    with stub_server(Reply(close=True)) as stub:
        result = check_connection(_server(stub.url))
    assert not result.ok and result.error_kind == "network"
    assert result.message.startswith(f"cannot talk to {stub.url}: ")


def test_ca_bundle_problems_are_settings_problems_named_with_the_file(tmp_path: Path) -> None:
    missing = check_connection(_server("https://127.0.0.1:9", ca_bundle="nowhere.pem"), base_dir=tmp_path)
    assert not missing.ok and missing.error_kind == "config"
    assert missing.message.startswith(f"server.ca_bundle: {tmp_path / 'nowhere.pem'} does not exist")
    (tmp_path / "junk.pem").write_text("this is not a certificate\n")
    junk = check_connection(_server("https://127.0.0.1:9", ca_bundle="junk.pem"), base_dir=tmp_path)
    assert not junk.ok and junk.error_kind == "config"
    assert "is not a usable PEM certificate file" in junk.message


def test_with_tls_checks_off_a_private_certificate_connects() -> None:
    with Emulator(port=0, tls=(TLS / "server.pem", TLS / "server.key")) as emu:
        checked = check_connection(_server(emu.url))
        unchecked = check_connection(_server(emu.url, verify_tls=False))
    assert not checked.ok and checked.error_kind == "tls"
    assert unchecked.ok and unchecked.version == VERSION


# ---------------------------------------------------------------------- the uploader

@pytest.mark.slow
def test_a_redirect_pauses_uploads_and_keeps_every_report(data_dir: Path) -> None:
    with stub_server(Reply(301, b"", {"Location": "https://wats.example.com/api/"})) as stub, \
            Spool(data_dir) as spool:
        _fill(spool, 3)
        uploader = Uploader(spool, _server(stub.url), _upload())
        _run(uploader, lambda: uploader.mode == PAUSED)
        assert uploader.reason == ("the server redirects to https://wats.example.com/api/ (301) — set server.url "
                                   "to the final address")
        assert spool.counts()["pending"] + spool.counts()["retry_wait"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("retry_after, at_least, at_most", [
    ("in 40 s", 25.0, 41.0),      # as an HTTP date, written when the test runs: honoured
    ("after lunch", 0.0, 5.0),    # unreadable: the backoff decides
])
def test_retry_after_as_a_date_is_honoured_and_nonsense_is_ignored(
        data_dir: Path, retry_after: str, at_least: float, at_most: float) -> None:
    if retry_after == "in 40 s":
        retry_after = formatdate(time.time() + 40, usegmt=True)
    with stub_server(Reply(503, "busy", {"Retry-After": retry_after})) as stub, Spool(data_dir) as spool:
        _fill(spool, 1)
        uploader = Uploader(spool, _server(stub.url), _upload(concurrency=1, initial_s=0.05, max_s=60.0,
                                                               offline_after=100))
        _run(uploader, lambda: spool.counts()["retry_wait"] == 1)
        due = spool.next_due_in()
    assert due is not None and at_least <= due <= at_most, due


@pytest.mark.slow
def test_with_tls_checks_off_uploads_go_through_and_the_log_warns(data_dir: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(port=0, tls=(TLS / "server.pem", TLS / "server.key")) as emu, Spool(data_dir) as spool:
        ids = _fill(spool, 3)
        with caplog.at_level(logging.WARNING, logger="stationflow.engine.upload.uploader"):
            uploader = Uploader(spool, _server(emu.url, verify_tls=False), _upload())
            _run(uploader, _all_sent(spool, 3))
        assert emu.received_ids() == ids
    assert "TLS certificate checks are off (server.verify_tls: false)" in caplog.text


@pytest.mark.slow
def test_sent_reports_past_keep_sent_days_are_pruned_when_the_uploader_starts(
        data_dir: Path, emulator_plain: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(data_dir) as spool:  # kept 7 days: nothing is pruned while they are sent
        _fill(spool, 3)
        _run(Uploader(spool, _server(emulator_plain.url), _upload()), _all_sent(spool, 3))
    assert len(list((data_dir / "spool" / "sent").glob("*.json"))) == 3
    with Spool(data_dir, keep_sent_days=0.0) as spool, \
            caplog.at_level(logging.INFO, logger="stationflow.engine.upload.uploader"):
        _run(Uploader(spool, _server(emulator_plain.url), _upload()), lambda: spool.counts()["sent"] == 0)
    assert not list((data_dir / "spool" / "sent").glob("*.json"))
    assert "pruned 3 sent reports older than keep_sent_days" in caplog.text


@pytest.fixture
def emulator_plain() -> object:
    with Emulator(port=0, seed=4) as emu:
        yield emu


def test_a_token_pasted_with_a_typographic_quote_is_a_config_error_not_an_upload_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It goes into the Authorization header: before the check, the uploader could not even be
    built (UnicodeEncodeError) and the service failed to start with an encoding traceback."""
    config = tmp_path / "station.yaml"
    config.write_text("station: {name: TOK-01}\nserver: {url: 'http://127.0.0.1:9', token: 'dG9r\u201dZW4='}\n"
                      "data_dir: ./data\n", encoding="utf-8")
    rc = cli_main(["-c", str(config), "status"])
    err = capsys.readouterr().err
    assert rc == ConfigError.exit_code
    assert "server.token: " in err and "plain ASCII" in err and "character 5 is not" in err
    assert "dG9r" not in err
    with pytest.raises(ValueError, match="plain ASCII"):
        _server("http://127.0.0.1:9", token="abc\tdef")


@pytest.mark.slow
def test_a_site_lifecycle_with_a_short_sending_timeout_cuts_a_slow_answer(tmp_path: Path, data_dir: Path) -> None:
    """The report lifecycle's ``sending`` timeout bounds an upload even when server.timeout_s is
    longer: the answer that has not come is a transient error and the report waits to be retried."""
    site = tmp_path / "report.yaml"
    shipped = Path(load_lifecycle("report").source).read_text()
    assert "    timeout: 120s\n" in shipped
    site.write_text(shipped.replace("    timeout: 120s\n", "    timeout: 1s\n", 1))
    with Emulator(port=0, faults=Faults(latency_s=30.0)) as slow, \
            Spool(data_dir, lifecycle=load_lifecycle(site)) as spool:
        [key] = _fill(spool, 1)
        uploader = Uploader(spool, _server(slow.url, timeout_s=60.0), _upload(concurrency=1, offline_after=100,
                                                                               max_s=60.0, initial_s=30.0))
        took = _run(uploader, lambda: spool.counts()["retry_wait"] == 1, timeout=30)
        info = spool.info(key)
    assert took < 20
    assert info.last_error == "no answer within the 1 s limit of the 'sending' state"
    assert info.attempts == 1


@pytest.mark.slow
def test_an_answer_that_cannot_be_decoded_is_retried_not_taken_as_accepted(data_dir: Path) -> None:
    with stub_server(Reply(200, b"this is not gzip", {"Content-Encoding": "gzip"})) as stub, \
            Spool(data_dir) as spool:
        [key] = _fill(spool, 1)
        uploader = Uploader(spool, _server(stub.url), _upload(concurrency=1, offline_after=100, initial_s=30.0,
                                                               max_s=60.0))
        _run(uploader, lambda: spool.counts()["retry_wait"] == 1)
        info = spool.info(key)
        assert spool.counts()["sent"] == 0
    assert info.last_error is not None and info.last_error.startswith("DecodingError: ")
