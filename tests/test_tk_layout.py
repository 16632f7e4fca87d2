"""Layout, keys and wording of the configurator, in a real Tk under Xvfb.

The window fits the screen at any DPI with Save and the status bar visible; Ctrl+Tab moves between
pages; a focused field is scrolled into view; labels are titles with units; fields that do not
apply are hidden; closing hides the window at once while background work finishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tk_fixtures import RecordingDialogs, dialogs, pump, pump_until, tk_root, write_station

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


def test_at_192_dpi_the_window_fits_the_screen_with_save_and_the_status_bar(tk_root: Any, dialogs: RecordingDialogs,
                                                                            tmp_path: Path) -> None:
    tk_root.tk.call("tk", "scaling", 192 / 72)
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    pump(tk_root, 0.2)
    screen_w, screen_h = tk_root.winfo_screenwidth(), tk_root.winfo_screenheight()
    assert tk_root.winfo_width() <= screen_w and tk_root.winfo_height() <= screen_h
    app.select("Connection")
    pump(tk_root, 0.1)
    for widget in (app.save_button, app.revert_button, app.status_label):
        assert widget.winfo_ismapped() and widget.winfo_height() > 10
        assert _inside(widget, tk_root), widget
    app.close()


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
    tk_root.focus_force()
    app.form("server").field("url").widget.focus_set()
    tk_root.update()
    tabs = app.notebook.tabs()
    app.form("server").field("url").widget.event_generate("<Control-Tab>")
    tk_root.update()
    assert app.notebook.select() == tabs[1]
    app.notebook.event_generate("<Control-Shift-Tab>" if tk_root._windowingsystem != "x11" else "<Control-ISO_Left_Tab>")
    tk_root.update()
    assert app.notebook.select() == tabs[0]
    app.close()


def test_a_field_reached_with_tab_is_scrolled_into_view(tk_root: Any, dialogs: RecordingDialogs,
                                                        tmp_path: Path) -> None:
    app = _app(tk_root, write_station(tmp_path, "http://127.0.0.1:9"), dialogs)
    tk_root.geometry("900x500")
    app.select("Settings")
    pump(tk_root, 0.2)
    last = app.form("").field("logging.file_backups").widget
    canvas = last.master
    while not hasattr(canvas, "canvasy"):
        canvas = canvas.master
    assert not _inside(last, canvas)  # below the fold to begin with
    tk_root.focus_force()
    last.focus_set()
    pump_until(tk_root, lambda: _inside(last, canvas), what="the focused field to be scrolled into view")
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
