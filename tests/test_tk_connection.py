"""The Connection page's "Test connection" against the real emulator: success and each failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.upload.connection_test import check_connection
from stationflow.engine.devtools.emulator import VERSION, Emulator
from stationflow.schemas.config import ServerSection
from tests.tk_fixtures import FIXTURES, TOKEN, RecordingDialogs, dialogs, pump_until, tk_root, write_station

__all__ = ["dialogs", "tk_root"]

TLS = FIXTURES / "tls"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(token=TOKEN) as emu:
        yield emu


@pytest.fixture
def tls_emulator() -> Iterator[Emulator]:
    with Emulator(token=TOKEN, tls=(TLS / "server.pem", TLS / "server.key")) as emu:
        yield emu


def _test(root: Any, dialogs: RecordingDialogs, tmp_path: Path, url: str, **server: str) -> tuple[Any, Any]:
    from stationflow.ui_tk.app import ConfiguratorApp

    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = ConfiguratorApp(root, path, dialogs=dialogs)
    page = app.select("Connection")
    form = app.form("server")
    form.field("url").set(url)
    for key, value in server.items():
        form.field(key).set(value)
    page.test_button.invoke()
    assert page.test_button.instate(["disabled"])  # the test runs in a worker; the button waits for it
    result = pump_until(root, lambda: page.last_result, timeout=20, what="the connection test")
    assert not page.test_button.instate(["disabled"])
    return app, result


def test_success_shows_version_and_round_trip(emulator: Emulator, tk_root: Any, dialogs: RecordingDialogs,
                                              tmp_path: Path) -> None:
    app, result = _test(tk_root, dialogs, tmp_path, emulator.url, token=TOKEN)
    page = app.pages["Connection"]
    assert result.ok and result.version == VERSION and 0 < result.rtt_ms < 1000
    text = page.result.cget("text")
    assert VERSION in text and "ms" in text and text.startswith("✔")
    assert dialogs.errors == []
    app.form("server").field("token").set("c29tZXRoaW5nOmVsc2U=")  # the tested token is no longer on screen
    assert not page.result.cget("text").startswith("✔") and "test again" in page.result.cget("text")
    assert page.last_result is None
    app.close()


@pytest.mark.parametrize("case", ["refused", "401", "404", "dns"])
def test_each_failure_says_what_failed(case: str, emulator: Emulator, tk_root: Any, dialogs: RecordingDialogs,
                                       tmp_path: Path) -> None:
    url, token = emulator.url, TOKEN
    if case == "refused":
        emulator.go_down()
    elif case == "401":
        token = "d3Jvbmc6dG9rZW4="
    elif case == "404":
        url = emulator.url + "/wats"
    else:
        url = "http://no-such-station-server.invalid:8080"
    app, result = _test(tk_root, dialogs, tmp_path, url, token=token)
    assert not result.ok and result.error_kind == case
    label = app.pages["Connection"].result.cget("text")
    assert label.startswith("✘") and case.upper() in label.upper()
    assert dialogs.errors and dialogs.errors[-1][0] == "Test connection"
    assert case.upper() in dialogs.errors[-1][1].upper()
    assert app.messages[-1][1] is True  # the status bar says it too
    app.close()


def test_tls_failure_and_fix_with_ca_bundle(tls_emulator: Emulator, tk_root: Any, dialogs: RecordingDialogs,
                                            tmp_path: Path) -> None:
    app, result = _test(tk_root, dialogs, tmp_path, tls_emulator.url, token=TOKEN)
    assert result.error_kind == "tls" and "ca_bundle" in result.message
    app.close()
    ok = check_connection(ServerSection(url=tls_emulator.url, token=TOKEN, ca_bundle="ca.pem"), base_dir=TLS)
    assert ok.ok and ok.version == VERSION


def test_invalid_fields_are_not_tested(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    from stationflow.ui_tk.app import ConfiguratorApp

    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = ConfiguratorApp(tk_root, path, dialogs=dialogs)
    page = app.select("Connection")
    app.form("server").field("timeout_s").set("0")
    page.test_button.invoke()
    assert page.last_result is None and not page.scope.busy("test")
    assert dialogs.errors[-1][0] == "Test connection" and "marked fields" in dialogs.errors[-1][1]
    assert app.form("server").field("timeout_s").invalid
    app.close()
