"""The configurator with a real running service (``stationflow run`` in a subprocess) and the emulator.

Start and stop from the Service page, Save through the control protocol, retry a failed report from
the Queue page, and the promise that the window never freezes: while the service uploads at full
speed, no handler holds the Tk thread for more than 50 ms.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stationflow.engine.config_file import load_config
from stationflow.engine.devtools.emulator import Emulator
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from tests.helpers_service import ServiceRun
from tests.tk_fixtures import (
    ROOT,
    TOKEN,
    RecordingDialogs,
    dialogs,
    free_port,
    pump,
    pump_until,
    stop_process,
    tk_root,
    write_station,
)

__all__ = ["dialogs", "tk_root"]

UPLOAD = {"concurrency": 8, "rate_per_s": None, "retry": {"initial_s": 0.2, "max_s": 1}}


def _station(folder: Path, url: str) -> Path:
    return write_station(folder, url, intake=[], upload=UPLOAD, shutdown={"grace_s": 5})


def _seed(data_dir: Path, count: int) -> list[str]:
    spool = Spool(data_dir, fsync=False)
    keys = [spool.accept(make_report_bytes(i, seed=i, approx_bytes=800)).key for i in range(count)]
    spool.close()
    return keys


def _app(root: Any, path: Path, dialogs: RecordingDialogs) -> Any:
    from stationflow.ui_tk.app import ConfiguratorApp

    return ConfiguratorApp(root, path, dialogs=dialogs, probe_ms=200)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(token=TOKEN, seed=3) as emu:
        yield emu


def test_service_page_starts_saves_through_and_stops_the_service(emulator: Emulator, tk_root: Any,
                                                                 dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = _station(tmp_path, emulator.url)
    app = _app(tk_root, path, dialogs)
    try:
        page = app.select("Service")
        pump_until(tk_root, lambda: app.probe is not None and app.probe.running is False, what="service: stopped")
        assert not page.start_button.instate(["disabled"]) and page.stop_button.instate(["disabled"])
        page.start_button.invoke()
        pump_until(tk_root, lambda: app.probe and app.probe.running, timeout=30, what="the service to run")
        pump_until(tk_root, lambda: app.banner_kind == "ok", what="the banner to turn green")
        assert app.banner.cget("text").startswith("✔ Service running") and not app.fix_button.winfo_ismapped()
        pump_until(tk_root, lambda: page.tasks.get_children(), what="the task table")
        tasks = {page.tasks.item(i, "values")[0]: page.tasks.item(i, "values")[1] for i in page.tasks.get_children()}
        assert tasks.get("uploader") == "running", tasks
        assert page.state_label.cget("text") == "Service: running"
        pump_until(tk_root, lambda: "running service" in page.log_source.cget("text"), what="the service's log")
        assert not page.stop_button.instate(["disabled"]) and page.start_button.instate(["disabled"])

        app.form("").field("upload.concurrency").set("6")
        app.save_button.invoke()
        pump_until(tk_root, lambda: not app.dirty, timeout=30, what="the save through the service")
        assert dialogs.errors == [], dialogs.errors
        assert "through the service" in app.messages[-1][0] or any("through the service" in m for m, _ in
                                                                   app.messages[-3:])
        assert load_config(path).upload.concurrency == 6
        backup = tmp_path / "station.yaml.bak"
        assert backup.exists() and stat.S_IMODE(backup.stat().st_mode) == stat.S_IMODE(path.stat().st_mode)

        page.stop_button.invoke()
        # Stopped means gone: not answering *and* its lock released. In between (the process is still
        # exiting) the banner rightly says a service holds the data folder but does not answer.
        pump_until(tk_root, lambda: app.probe and app.probe.running is False and not app.probe.locked, timeout=30,
                   what="the service to stop and release its lock")
        pump_until(tk_root, lambda: "not running" in app.banner.cget("text"), timeout=10,
                   what="the banner to say the service is not running")
        assert app.banner_kind == "error"
        pump_until(tk_root, lambda: not app.link.children, what="the stopped service to be reaped")
    finally:
        for child in app.link.children:
            stop_process(child)
        app.close()


def test_a_service_that_cannot_start_says_why(emulator: Emulator, tk_root: Any, dialogs: RecordingDialogs,
                                              tmp_path: Path) -> None:
    path = _station(tmp_path, emulator.url)
    app = _app(tk_root, path, dialogs)
    holder = Spool(tmp_path / "stationflow-data", fsync=False)  # another process would hold the spool like this
    try:
        page = app.select("Service")
        pump_until(tk_root, lambda: app.probe is not None, what="the first look at the service")
        assert app.probe.running is False and app.probe.locked
        assert page.start_button.instate(["disabled"])  # a process holds the spool: Start would fail
        page.start()
        pump_until(tk_root, lambda: dialogs.errors, timeout=30, what="the start to fail")
        title, message = dialogs.errors[-1]
        assert title == "Start the service" and "exit code 8" in message and "in use" in message
        assert app.messages[-1][1] is True
    finally:
        holder.close()
        for child in app.link.children:
            stop_process(child)
        app.close()


def test_retry_a_failed_report_against_the_running_service(emulator: Emulator, tk_root: Any,
                                                           dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = _station(tmp_path, emulator.url)
    [key] = _seed(tmp_path / "stationflow-data", 1)
    emulator.set_faults(reject_rate=1.0)
    service = ServiceRun(path, ready_s=20)
    app = _app(tk_root, path, dialogs)
    try:
        queue = app.select("Problems")
        pump_until(tk_root, lambda: queue.snapshot and queue.snapshot.source == "service"
                   and queue.snapshot.counts.get("failed") == 1, timeout=20, what="the report to fail")
        pump_until(tk_root, lambda: queue.table.exists(f"report:{key}"), what="the report's line")
        values = queue.table.item(f"report:{key}", "values")
        assert values[0] == "refused by server" and "injected rejection" in values[4]
        assert key not in emulator.received_ids()
        # The banner is not green while a report waits for a person; Fix opens this page.
        pump_until(tk_root, lambda: app.banner_kind == "warning", what="the amber banner")
        assert "refused by the server" in app.banner.cget("text") and app.fix_button.cget("text") == "Open Problems"

        emulator.clear_faults()
        queue.table.selection_set(f"report:{key}")
        tk_root.update()  # the selection event enables Retry, as it does before a person's click
        assert not queue.retry_button.instate(["disabled"])
        queue.retry_button.invoke()
        pump_until(tk_root, lambda: key in emulator.received_ids(), timeout=20, what="the report to reach the server")
        pump_until(tk_root, lambda: queue.snapshot.counts.get("sent") == 1 and queue.snapshot.counts.get("failed") == 0,
                   what="the queue to show it sent")
        assert any("by the service" in m for m, _ in app.messages)
        assert dialogs.errors == []
    finally:
        app.close()
        service.stop()


def _stats(port: int) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=5).json()


def test_the_window_is_never_busy_over_50ms_while_the_service_uploads(tk_root: Any, dialogs: RecordingDialogs,
                                                                       tmp_path: Path) -> None:
    # The emulator runs in its own process: its threads must not share this process's GIL with Tk.
    port = free_port()
    emu = subprocess.Popen([sys.executable, "-m", "stationflow", "emulator", "--port", str(port), "--stats-every",
                            "3600"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = None
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _stats(port)
                break
            except httpx.HTTPError:
                assert emu.poll() is None and time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.05)
        total = 3000
        path = _station(tmp_path, f"http://127.0.0.1:{port}")
        _seed(tmp_path / "stationflow-data", total)
        app = _app(tk_root, path, dialogs)
        service_page = app.select("Service")
        pump_until(tk_root, lambda: app.probe and app.probe.running is False, what="service: stopped")
        service_page.start_button.invoke()
        pump_until(tk_root, lambda: _stats(port)["posts"] > 0, timeout=30, what="the first uploads")

        app.meter.reset()
        before = _stats(port)["posts"]
        titles = list(app.pages)
        end = time.monotonic() + 3.0
        step = 0
        while time.monotonic() < end:
            page = app.select(titles[step % len(titles)])
            if page.title == "Connection":
                app.form("server").field("timeout_s").set(str(30 + step % 5))
            elif page.title == "Queue":
                page.refresh_button.invoke()
            elif page.title == "Intake":
                page.editor.add_button.invoke()
                page.editor.remove_button.invoke()
            pump(tk_root, 0.15)
            step += 1
        after = _stats(port)["posts"]
        meter = app.meter
        assert before < total, "the uploads were over before the measurement started"
        assert after - before >= 100, f"only {after - before} uploads during the measurement"
        assert meter.calls > 100
        assert meter.longest_ms < 50, f"the Tk thread was busy {meter.longest_ms:.1f} ms in {meter.longest_name}"
        assert app.internal_errors == []
        print(f"\nlongest handler {meter.longest_ms:.1f} ms ({meter.longest_name}) over {meter.calls} handlers; "
              f"{after - before} uploads meanwhile")

        service_page = app.select("Service")
        service_page.stop_button.invoke()
        pump_until(tk_root, lambda: app.probe and app.probe.running is False, timeout=30, what="the service to stop")
    finally:
        if app is not None:
            for child in app.link.children:
                stop_process(child)
            app.close()
        stop_process(emu)


def test_a_refused_token_turns_the_banner_red_and_fix_opens_the_token(emulator: Emulator, tk_root: Any,
                                                                       dialogs: RecordingDialogs,
                                                                       tmp_path: Path) -> None:
    path = write_station(tmp_path, emulator.url, intake=[], upload=UPLOAD, shutdown={"grace_s": 5},
                         server={"url": emulator.url, "token": "d3Jvbmc6dG9rZW4x", "timeout_s": 5})
    _seed(tmp_path / "stationflow-data", 4)
    service = ServiceRun(path, ready_s=20)
    app = _app(tk_root, path, dialogs)
    try:
        pump_until(tk_root, lambda: app.banner_kind == "error", timeout=20, what="the red banner")
        text = app.banner.cget("text")
        assert text.startswith("✖ The server refuses the token (401) since ") and "4 reports safe" in text
        assert app.fix_button.winfo_ismapped() and app.fix_button.cget("text") == "Fix…"
        app.fix_button.invoke()
        tk_root.update()
        assert app.notebook.select() == str(app.pages["Connection"])
        assert tk_root.focus_get() is app.form("server").field("token").widget
        service_page = app.select("Service")
        pump_until(tk_root, lambda: any("refuses the token" in t for _, t in service_page._health_rows),
                   what="the reason on the Service page")
    finally:
        app.close()
        service.stop()


def test_a_missing_watch_folder_is_not_green_and_fix_opens_the_folder_field(tk_root: Any, dialogs: RecordingDialogs,
                                                                            tmp_path: Path) -> None:
    intake = [{"name": "ict", "watch": "./nowhere", "converter": "wsjf"}]
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=intake)
    app = _app(tk_root, path, dialogs)
    try:
        pump_until(tk_root, lambda: app.probe is not None, what="the first look")
        assert app.banner_kind == "error" and "(+1 more" in app.banner.cget("text")
        reasons = app.probe.health["reasons"]
        watch = next(r for r in reasons if r["field"] == "intake[0].watch")
        assert "nowhere does not exist" in watch["text"]
        app.open_reason(watch)
        tk_root.update()
        editor = app.pages["Intake"].editor
        assert app.notebook.select() == str(app.pages["Intake"]) and editor.selected == 0
        assert tk_root.focus_get() is editor.field("watch").widget
        title, message, choices, default = dialogs.choices[-1]  # Fix offers to create it; Enter: Cancel
        assert title == "Watch folder missing" and default == "Cancel" and not (tmp_path / "nowhere").exists()
        dialogs.choices_to_give = ["Create folder"]
        app.open_reason(watch)
        pump_until(tk_root, lambda: (tmp_path / "nowhere").is_dir(), what="the folder to be created")
        pump_until(tk_root, lambda: app.probe and not any(r["field"] == "intake[0].watch"
                                                          for r in app.probe.health["reasons"]),
                   what="the reason to go away")
    finally:
        app.close()


def test_the_intake_page_says_how_many_links_the_running_service_ignores(tk_root: Any, dialogs: RecordingDialogs,
                                                                          tmp_path: Path) -> None:
    """Under "Follow symbolic links": the count and note of ``status`` for the intake on screen, what
    to do about it, and after Save (through the service, which reloads) the count of links it still
    ignores; nothing once the service is stopped."""
    intake = [{"name": "drop", "watch": "./drop", "converter": "wsjf", "settle_ms": 0, "after": "keep"},
              {"name": "other", "watch": "./other", "converter": "wsjf"}]
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=intake, shutdown={"grace_s": 2})
    drop, other, outside = tmp_path / "drop", tmp_path / "other", tmp_path / "outside"
    for folder in (drop, other, outside):
        folder.mkdir()
    (drop / "real.json").write_bytes(make_report_bytes(1, seed=5))
    (outside / "secret.json").write_bytes(make_report_bytes(2, seed=5))
    (drop / "via.json").symlink_to(drop / "real.json")  # inside
    (drop / "out.json").symlink_to(outside / "secret.json")  # out of the folder
    (drop / "gone.json").symlink_to(drop / "nothing.json")  # dangling
    service = ServiceRun(path, ready_s=20)
    app = _app(tk_root, path, dialogs)
    try:
        app.select("Intake")
        page = app.pages["Intake"]
        editor = page.editor
        editor.select(0)
        note = page.links_note
        pump_until(tk_root, lambda: "3 symbolic link(s)" in note.cget("text"), timeout=30,
                   what="the note on the three links the service ignores")
        assert note.winfo_ismapped() and "or choose inside to follow" in note.cget("text"), note.cget("text")
        editor.select(1)  # the other intake has no links: no note
        assert note.cget("text") == "" and not note.winfo_ismapped()
        editor.select(0)
        assert "3 symbolic link(s)" in note.cget("text")
        editor.field("follow_links").set("inside")  # on screen only: the service still ignores them
        assert "Save to have the service follow" in note.cget("text"), note.cget("text")

        app.save_button.invoke()  # through the service: it saves, reloads and follows the link inside
        pump_until(tk_root, lambda: not app.dirty, timeout=30, what="the save through the service")
        assert dialogs.errors == [], dialogs.errors
        pump_until(tk_root, lambda: "2 symbolic link(s)" in note.cget("text"), timeout=30,
                   what="the note on the two links out and dangling")
        assert "never followed" in note.cget("text"), note.cget("text")
        assert load_config(path).intake[0].follow_links == "inside"

        assert service.stop() == 0
        pump_until(tk_root, lambda: app.probe is not None and app.probe.running is False, timeout=30,
                   what="the service seen stopped")
        assert note.cget("text") == "" and not note.winfo_ismapped()
    finally:
        app.close()
        service.stop()
