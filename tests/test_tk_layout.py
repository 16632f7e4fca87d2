"""Layout, keys and wording of the configurator, in a real Tk under Xvfb.

The window fits the screen at any DPI with Save and the status bar visible; Ctrl+Tab moves between
pages; a focused field is scrolled into view; labels are titles with units; fields that do not
apply are hidden; closing hides the window at once while background work finishes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.tk_fixtures import ROOT, RecordingDialogs, dialogs, pump, pump_until, tk_root, write_station

__all__ = ["dialogs", "tk_root"]


def _app(root: Any, path: Path, dialogs: RecordingDialogs) -> Any:
    from stationflow.ui_tk.app import ConfiguratorApp

    return ConfiguratorApp(root, path, dialogs=dialogs)


def _inside(widget: Any, outer: Any) -> bool:
    """The widget is drawn wholly inside ``outer`` (screen coordinates)."""
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    ox, oy = outer.winfo_rootx(), outer.winfo_rooty()
    return (ox <= x and oy <= y and x + widget.winfo_width() <= ox + outer.winfo_width()
            and y + widget.winfo_height() <= oy + outer.winfo_height())


_AT_192_DPI = """
import json, sys, tkinter as tk
sys.path.insert(0, sys.argv[2])
from tests.tk_fixtures import RecordingDialogs, pump
from stationflow.ui_tk.app import ConfiguratorApp
root = tk.Tk()
root.tk.call("tk", "scaling", 192 / 72)
app = ConfiguratorApp(root, sys.argv[1], dialogs=RecordingDialogs())
app.select("Connection")
pump(root, 0.3)
def inside(w):
    return (w.winfo_ismapped() and w.winfo_height() > 10 and w.winfo_rootx() >= root.winfo_rootx()
            and w.winfo_rooty() + w.winfo_height() <= root.winfo_rooty() + root.winfo_height()
            and w.winfo_rooty() + w.winfo_height() <= root.winfo_screenheight())
print(json.dumps({"window": [root.winfo_width(), root.winfo_height()],
                  "screen": [root.winfo_screenwidth(), root.winfo_screenheight()],
                  "visible": [inside(w) for w in (app.save_button, app.revert_button, app.status_label)]}))
app.close()
"""


def test_at_192_dpi_the_window_fits_the_screen_with_save_and_the_status_bar(tk_root: Any, tmp_path: Path) -> None:
    # In a process of its own: Tk keeps the scaling for the display, and changing it back is not safe.
    path = write_station(tmp_path, "http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-c", _AT_192_DPI, str(path), str(ROOT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["window"][0] <= seen["screen"][0] and seen["window"][1] <= seen["screen"][1]
    assert seen["visible"] == [True, True, True]


def test_at_the_smallest_size_save_revert_and_the_status_bar_keep_their_room(tk_root: Any, dialogs: RecordingDialogs,
                                                                             tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    width, height = (int(v) for v in tk_root.wm_minsize())
    tk_root.geometry(f"{width}x{height}")
    app.select("Settings")
    pump(tk_root, 0.2)
    for widget in (app.save_button, app.revert_button):
        assert widget.winfo_ismapped() and _inside(widget, tk_root)
        assert widget.winfo_width() >= widget.winfo_reqwidth()  # not a sliver
    assert _inside(app.status_label, tk_root) and app.status_label.winfo_height() >= app.status_label.winfo_reqheight()
    app.close()


def test_ctrl_tab_moves_between_pages_both_ways(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    app.select("Connection")
    url = app.form("server").field("url").widget
    url.focus_set()
    pump_until(tk_root, lambda: tk_root.focus_get() is url, what="the focus")
    tabs = app.notebook.tabs()
    url.event_generate("<Control-Tab>")
    tk_root.update()
    assert app.notebook.select() == tabs[1]
    app.notebook.event_generate("<Control-Shift-Tab>" if tk_root._windowingsystem != "x11" else "<Control-ISO_Left_Tab>")
    tk_root.update()
    assert app.notebook.select() == tabs[0]
    app.close()


def test_a_field_reached_with_tab_is_scrolled_into_view(tk_root: Any, dialogs: RecordingDialogs,
                                                        tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    tk_root.geometry("900x500+0+0")
    app.select("Settings")
    pump(tk_root, 0.2)
    # No window manager under Xvfb: the keyboard focus follows the pointer, so put it on the window.
    tk_root.event_generate("<Motion>", warp=True, x=450, y=250)
    form = app.form("")
    first = form.field("data_dir").widget
    canvas = first.master
    while not hasattr(canvas, "canvasy"):
        canvas = canvas.master
    below = [row.widget for _, row in form.field_rows() if not _inside(row.widget, canvas)]
    assert below  # the form is taller than the window
    first.focus_set()
    pump_until(tk_root, lambda: tk_root.focus_get() is first, what="the focus")
    reached = set()
    for _ in range(60):  # Tab through the whole form, as a person would
        tk_root.focus_get().event_generate("<Tab>")
        tk_root.update()
        focused = tk_root.focus_get()
        if focused is None or not str(focused).startswith(str(canvas)):
            continue
        pump_until(tk_root, lambda f=focused: _inside(f, canvas), what=f"{focused} to be scrolled into view")
        reached.add(str(focused))
    assert {str(w) for w in below} & reached  # fields below the fold were reached, each one visible
    app.close()


def test_labels_are_titles_with_units_and_move_to_shows_only_for_move(tk_root: Any, dialogs: RecordingDialogs,
                                                                      tmp_path: Path) -> None:
    intake = [{"name": "ict", "watch": "./drop", "converter": "wsjf", "after": "archive"}]
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9", intake=intake), dialogs)
    server = app.form("server")
    assert server.field("timeout_s").label.cget("text") == "Read timeout (s)"
    assert server.field("connect_timeout_s").label.cget("text") == "Connect timeout (s)"
    assert app.form("").field("upload.rate_per_s").label.cget("text") == "Most reports per second"
    assert app.form("").field("shutdown.grace_s").label.cget("text") == "Time to finish when stopping (s)"
    app.select("Intake")
    editor = app.pages["Intake"].editor
    editor.select(0)
    tk_root.update()
    assert editor.field("settle_ms").label.cget("text") == "Wait until unchanged (ms)"
    move_to = editor.field("move_to")
    assert not move_to.label.winfo_ismapped() and not move_to.widget.winfo_ismapped()
    editor.field("after").set("move")
    pump_until(tk_root, lambda: move_to.label.winfo_ismapped() and move_to.widget.winfo_ismapped(),
               what="move_to to be shown")
    app.close()


def test_close_hides_the_window_before_waiting_for_background_work(tk_root: Any, dialogs: RecordingDialogs,
                                                                   tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    pump(tk_root, 0.1)
    app.scope.submit(app.runner.stop_event.wait, 30.0, name="a network call")
    seen: list[str] = []
    close = app.runner.close

    def recording_close(timeout: float = 5.0) -> list[str]:
        seen.append(tk_root.state())  # what the person sees while the threads are joined
        return close(timeout)

    app.runner.close = recording_close
    app.request_close()
    assert seen == ["withdrawn"] and app.closed


def test_patterns_left_out_say_what_the_converter_uses(tk_root: Any, dialogs: RecordingDialogs,
                                                       tmp_path: Path) -> None:
    intake = [{"name": "ict", "watch": "./drop", "converter": "wsjf"},
              {"name": "fct", "watch": "./csv", "converter": "csv", "patterns": ["*.txt"]}]
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9", intake=intake), dialogs)
    editor = app.pages["Intake"].editor
    editor.select(0)
    patterns = editor.field("patterns")
    assert patterns.var.get() == "" and "default *.json, from the wsjf converter" in patterns.help.cget("text")
    editor.field("converter").set("csv")
    assert "default *.csv, from the csv converter" in patterns.help.cget("text")
    editor.field("converter").set("wsjf")
    editor.select(1)
    assert editor.field("patterns").var.get() == "*.txt"
    assert app.collect()["intake"][0].get("patterns") is None  # still left out: the converter decides
    app.close()


def test_a_yes_no_field_says_yes_or_no_and_its_label_toggles_it(tk_root: Any, dialogs: RecordingDialogs,
                                                                tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    app.select("Connection")
    pump(tk_root, 0.2)
    row = app.form("server").field("verify_tls")
    assert row.raw() is True and row.widget.cget("text") == "yes"
    row.label.event_generate("<Button-1>", x=2, y=2)
    tk_root.update()
    assert row.raw() is False and row.widget.cget("text") == "no" and app.dirty
    assert app.collect()["server"]["verify_tls"] is False
    app.close()


def test_error_lines_do_not_come_and_go_while_typing(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    from stationflow.ui_tk.app import ConfiguratorApp

    app = ConfiguratorApp(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs=dialogs, validate_ms=10)
    tk_root.geometry("1000x700+0+0")
    app.select("Connection")
    pump(tk_root, 0.2)
    tk_root.event_generate("<Motion>", warp=True, x=500, y=300)  # no window manager: focus follows the pointer
    timeout, url = app.form("server").field("timeout_s"), app.form("server").field("url")
    timeout.widget.focus_set()
    pump_until(tk_root, lambda: tk_root.focus_get() is timeout.widget, what="the focus")
    timeout.set("thirty")  # typing: the field turns red at once, the line below waits
    pump_until(tk_root, lambda: timeout.invalid, what="the mark")
    assert timeout.widget.instate(["invalid"]) and not timeout.error_label.winfo_ismapped()
    url.widget.focus_set()  # leaving the field shows its message
    pump_until(tk_root, lambda: timeout.error_label.winfo_ismapped(), what="the error line")
    timeout.widget.focus_set()
    pump_until(tk_root, lambda: tk_root.focus_get() is timeout.widget, what="the focus back")
    timeout.set("30")  # fixed while typing: the line keeps its place until the field is left
    pump_until(tk_root, lambda: not timeout.invalid, what="the mark to clear")
    pump(tk_root, 0.1)
    assert timeout.error_label.winfo_ismapped() and timeout.error_label.cget("text") == ""
    url.widget.focus_set()
    pump_until(tk_root, lambda: not timeout.error_label.winfo_ismapped(), what="the empty line to go")
    app.close()
