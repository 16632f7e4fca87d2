"""Problems: everything that waits for a person, in one list — reports the server refused, reports in
quarantine, reports a site's lifecycle holds for a person (``held`` until approved), source files
that could not be converted.

Each line says what a person knows the item by (serial and part number, or the file's name), when,
and why; the details pane shows the whole message with a Copy button. Retry sends reports again,
Reprocess takes a rejected file again once its cause is fixed, Open file shows it. Every other
operator trigger (``by: operator``) of the report machine in force gets a button of its own
(Approve, …), shown while it is valid for a selected report; pressing it fires the trigger the way
``stationflow queue fire`` does, and the page says how many reports moved and why any was refused.
The rows come from the station access (the service when it runs, else the disk); the page says
which, and how many of how many it shows.
"""

from __future__ import annotations

import tkinter as tk
from functools import partial
from datetime import datetime
from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from .page_base import Page
from .station_link import Snapshot
from .widgets import ERROR_FG, HELP_FG, OK_FG

if TYPE_CHECKING:
    from .app import ConfiguratorApp

#: (column, heading, width, stretches)
_COLUMNS = (("kind", "What", 150, False), ("sn", "Serial number", 140, False), ("pn", "Part number", 130, False),
            ("time", "Time", 160, False), ("reason", "Reason", 420, True))
_REFUSED, _QUARANTINED, _NOT_CONVERTED = "refused by server", "quarantined", "file not converted"
LIMIT = 200


class ProblemsPage(Page):
    title = "Problems"
    refresh_s = 2.0

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        self.configure(padding=10)
        self.counts_frame = ttk.LabelFrame(self, text="Reports per state", padding=(10, 6))
        self.counts_frame.pack(fill="x")
        self.count_labels: dict[str, ttk.Label] = {}
        self.source_label = ttk.Label(self, text="", foreground=HELP_FG)
        self.source_label.pack(anchor="w", pady=(4, 4))
        self.help = ttk.Label(self, text="Refused by server: fix the cause (the reason says it), then Retry. "
                                         "Quarantined: unreadable or unexplained; Retry once understood. File not "
                                         "converted: fix the file or the converter, then Reprocess. Nothing here "
                                         "is ever deleted.", foreground=HELP_FG, justify="left")
        self.help.pack(anchor="w", fill="x")
        self.help.bind("<Configure>", lambda e: self.help.configure(wraplength=max(300, e.width - 10)))

        panes = ttk.PanedWindow(self, orient="vertical")
        panes.pack(fill="both", expand=True, pady=(4, 6))
        table_frame = ttk.Frame(panes)
        self.table = ttk.Treeview(table_frame, columns=[c[0] for c in _COLUMNS], show="headings",
                                  selectmode="extended", height=10)
        for column, heading, width, stretch in _COLUMNS:
            self.table.heading(column, text=heading, command=partial(self.sort_by, column))
            self.table.column(column, width=width, minwidth=60, stretch=stretch)
        ybar = ttk.Scrollbar(table_frame, orient="vertical", command=self.table.yview)
        xbar = ttk.Scrollbar(table_frame, orient="horizontal", command=self.table.xview)
        self.table.configure(yscrollcommand=ybar.set, xscrollcommand=xbar.set)
        self.table.grid(row=0, column=0, sticky="nsew")
        ybar.grid(row=0, column=1, sticky="ns")
        xbar.grid(row=1, column=0, sticky="ew")
        table_frame.rowconfigure(0, weight=1)
        table_frame.columnconfigure(0, weight=1)
        panes.add(table_frame, weight=3)
        self.table.bind("<<TreeviewSelect>>", self._selected)

        details = ttk.LabelFrame(panes, text="Details", padding=4)
        self.details = tk.Text(details, height=7, wrap="word", font=("TkFixedFont", 9), state="disabled")
        self.details.pack(side="left", fill="both", expand=True)
        panes.add(details, weight=1)

        buttons = ttk.Frame(self)
        buttons.pack(fill="x")
        self.retry_button = ttk.Button(buttons, text="Retry", command=self.retry_selected)
        self.retry_all_button = ttk.Button(buttons, text="Retry all refused", command=self.retry_all)
        self.reprocess_button = ttk.Button(buttons, text="Reprocess", command=self.reprocess_selected)
        self.open_button = ttk.Button(buttons, text="Open file", command=self.open_file)
        self.copy_button = ttk.Button(buttons, text="Copy details", command=self.copy_details)
        for button in (self.retry_button, self.retry_all_button, self.reprocess_button, self.open_button,
                       self.copy_button):
            button.pack(side="left", padx=(0, 6))
        self.trigger_frame = ttk.Frame(buttons)  # one button per operator trigger valid for the selection
        self.trigger_frame.pack(side="left")
        self.trigger_buttons: dict[str, ttk.Button] = {}
        self.refresh_button = ttk.Button(buttons, text="Refresh", command=self.refresh)
        self.refresh_button.pack(side="right")
        self.paging_label = ttk.Label(buttons, text="", foreground=HELP_FG)
        self.paging_label.pack(side="right", padx=12)
        self.result_label = ttk.Label(self, text="", justify="left")  # what the last trigger did
        self.result_label.pack(anchor="w", fill="x", pady=(4, 0))
        self.result_label.bind("<Configure>", lambda e: self.result_label.configure(wraplength=max(300, e.width - 10)))

        self.snapshot: Snapshot | None = None
        self.items: dict[str, dict[str, Any]] = {}
        self._rows: list[tuple[str, ...]] = []
        self.sort_column = "time"
        self.sort_reverse = True
        self._buttons()

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        running = bool(self.app.probe and self.app.probe.running)
        self.scope.submit(self.app.link.snapshot, running, LIMIT, key="snapshot", on_done=self._show,
                          on_error=self._refresh_failed)

    def _show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for state, count in snapshot.counts.items():
            label = self.count_labels.get(state)
            if label is None:
                column = len(self.count_labels)
                ttk.Label(self.counts_frame, text=state.replace("_", " ")).grid(row=0, column=column, padx=12)
                label = ttk.Label(self.counts_frame, text="", font=("TkDefaultFont", 14, "bold"))
                label.grid(row=1, column=column, padx=12)
                self.count_labels[state] = label
            label.configure(text=str(count))
        where = "from the running service" if snapshot.source == "service" else \
            "read from the disk (the service is not running)"
        self.source_label.configure(text=f"Counts and reports {where}.")
        items: dict[str, dict[str, Any]] = {}
        for report in snapshot.problems:
            items[f"report:{report['id']}"] = {"kind": report.get("state", ""), **report}
        for rejected in snapshot.rejected:
            items[f"file:{rejected['path']}"] = {"kind": "rejected", **rejected}
        self.items = items
        reports_shown, files = len(snapshot.problems), len(snapshot.rejected)
        paging = f"{reports_shown} of {snapshot.total} report(s)" if snapshot.total > reports_shown else \
            f"{reports_shown} report(s)"
        self.paging_label.configure(text=f"showing {paging}, {files} file(s)")
        self._fill()

    def _fill(self) -> None:
        rows = sorted((self._row(key, item, self.snapshot) for key, item in self.items.items()),
                      key=lambda r: _sort_key(r[1 + [c[0] for c in _COLUMNS].index(self.sort_column)]),
                      reverse=self.sort_reverse)
        if rows == self._rows:
            return
        selected = set(self.table.selection())
        self.table.delete(*self.table.get_children())
        for row in rows:
            self.table.insert("", "end", iid=row[0], values=row[1:])
        keep = [iid for iid in selected if self.table.exists(iid)]
        if keep:
            self.table.selection_set(keep)
        self._rows = rows
        self._buttons()

    @staticmethod
    def _row(key: str, item: dict[str, Any], snapshot: Snapshot | None) -> tuple[str, ...]:
        if item["kind"] == "rejected":
            return (key, _NOT_CONVERTED, item.get("file", ""), f"intake {item.get('intake', '')}",
                    _when(item.get("time")), str(item.get("reason") or ""))
        return (key, _kind(item, snapshot), str(item.get("sn") or "(unreadable)"),
                str(item.get("pn") or ""), _when(_last_time(item)), str(item.get("last_error") or ""))

    def sort_by(self, column: str) -> None:
        """A heading was clicked: sort by it; clicked again, the other way round."""
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self._rows = []
        self._fill()

    def _refresh_failed(self, exc: BaseException) -> None:
        self.source_label.configure(text=f"Could not read the problems: {exc}")
        self.app.status(f"problems: {exc}", error=True)

    # ------------------------------------------------------------------ details

    def _selected(self, _event: tk.Event | None = None) -> None:
        chosen = [self.items[iid] for iid in self.table.selection() if iid in self.items]
        self._set_details("\n\n".join(_details(item, self.snapshot) for item in chosen[:5]))
        self._buttons()

    def _set_details(self, text: str) -> None:
        self.details.configure(state="normal")
        self.details.delete("1.0", "end")
        self.details.insert("end", text)
        self.details.configure(state="disabled")

    def details_text(self) -> str:
        return self.details.get("1.0", "end").strip()

    def copy_details(self) -> None:
        text = self.details_text()
        if not text:
            self.app.status("select a line first: its details are copied", error=True)
            return
        self.clipboard_clear()
        self.clipboard_append(text)
        self.app.status("details copied to the clipboard")

    def _buttons(self) -> None:
        chosen = [self.items[iid] for iid in self.table.selection() if iid in self.items]
        reports = any(c["kind"] != "rejected" for c in chosen)
        files = any(c["kind"] == "rejected" for c in chosen)
        self.retry_button.state(["!disabled" if reports else "disabled"])
        self.reprocess_button.state(["!disabled" if files else "disabled"])
        self.open_button.state(["!disabled" if len(chosen) == 1 else "disabled"])
        self.copy_button.state(["!disabled" if chosen else "disabled"])
        refused = bool(self.snapshot and self.snapshot.counts.get(self.snapshot.refused))
        self.retry_all_button.state(["!disabled" if refused else "disabled"])
        self._trigger_buttons(chosen)

    def valid_triggers(self, chosen: list[dict[str, Any]]) -> list[str]:
        """Operator triggers valid from the state of at least one chosen report (Retry has its own
        button), in the order the lifecycle declares them."""
        operator = self.snapshot.operator if self.snapshot else {}
        found: list[str] = []
        for item in chosen:
            for trigger in operator.get(item["kind"], []):
                if trigger != "retry" and trigger not in found:
                    found.append(trigger)
        return found

    def _trigger_buttons(self, chosen: list[dict[str, Any]]) -> None:
        valid = self.valid_triggers(chosen)
        for trigger, button in self.trigger_buttons.items():
            if trigger not in valid:
                button.pack_forget()
        for trigger in valid:
            if trigger not in self.trigger_buttons:
                self.trigger_buttons[trigger] = ttk.Button(
                    self.trigger_frame, text=trigger.replace("_", " ").capitalize(),
                    command=partial(self.fire_selected, trigger))
            button = self.trigger_buttons[trigger]
            button.pack_forget()
            button.pack(side="left", padx=(0, 6))
            button.state(["!disabled"])

    def shown_triggers(self) -> list[str]:
        """The operator-trigger buttons on show, left to right."""
        return [t for t, b in self.trigger_buttons.items() if b.winfo_manager()]

    # ------------------------------------------------------------------ actions

    def retry_selected(self) -> None:
        ids = [str(self.items[iid]["id"]) for iid in self.table.selection()
               if iid in self.items and self.items[iid]["kind"] != "rejected"]
        if not ids:
            self.app.fail("Retry", "Select the reports to send again first (refused or quarantined).")
            return
        self._retry(ids, all_failed=False)

    def retry_all(self) -> None:
        self._retry(None, all_failed=True)

    def _retry(self, ids: list[str] | None, *, all_failed: bool) -> None:
        self.retry_button.state(["disabled"])
        self.retry_all_button.state(["disabled"])
        self.app.status("sending again: " + ("every refused report" if all_failed else f"{len(ids or [])} report(s)"))
        self.scope.submit(self.app.link.retry, ids, all_failed=all_failed, key="retry",
                          on_done=self._retried, on_error=lambda exc: self._action_failed("Retry", exc))

    def _retried(self, result: dict[str, Any]) -> None:
        count = len(result.get("retried", []))
        errors = result.get("errors", [])
        self.app.status(f"{count} report(s) queued to be sent again" + (" by the service" if result.get("via") ==
                                                                         "service" else " (spool on disk)"))
        if errors:
            self.app.fail("Retry", f"{len(errors)} report(s) could not be sent again:\n" + "\n".join(errors[:20]))
        self.refresh()

    def fire_selected(self, trigger: str) -> None:
        """Fire ``trigger`` on every selected report; the engine refuses it (with the reason) for a
        report in a state it is not valid from, and moves the others."""
        ids = [str(self.items[iid]["id"]) for iid in self.table.selection()
               if iid in self.items and self.items[iid]["kind"] != "rejected"]
        if not ids:
            self.app.fail(trigger.capitalize(), "Select the reports first.")
            return
        for button in self.trigger_buttons.values():
            button.state(["disabled"])
        self.app.status(f"{trigger}: {len(ids)} report(s)")
        self.scope.submit(self.app.link.fire, trigger, ids, key="fire", on_done=self._fired,
                          on_error=lambda exc: self._action_failed(trigger.capitalize(), exc))

    def _fired(self, result: dict[str, Any]) -> None:
        trigger, moved, refused = result["trigger"], result["moved"], result["refused"]
        where = " by the service" if result.get("via") == "service" else " (spool on disk)"
        states = sorted({state for _, state in moved})
        text = (f"{trigger.capitalize()}: {len(moved)} report(s) moved"
                + (f" to {', '.join(states)}" if states else "") + where)
        if refused:
            text += f"; {len(refused)} refused:\n" + "\n".join(f"{key}: {why}" for key, why in refused[:10])
        self.result_label.configure(text=text, foreground=ERROR_FG if refused else OK_FG)
        self.app.status(text.splitlines()[0], error=bool(refused))
        self.refresh()

    def reprocess_selected(self) -> None:
        files = [self.items[iid] for iid in self.table.selection()
                 if iid in self.items and self.items[iid]["kind"] == "rejected"]
        if not files:
            self.app.fail("Reprocess", "Select the files that could not be converted first.")
            return
        self.reprocess_button.state(["disabled"])
        self.scope.submit(_reprocess_all, self.app.link, [(f["intake"], f["path"]) for f in files], key="reprocess",
                          on_done=self._reprocessed, on_error=lambda exc: self._action_failed("Reprocess", exc))

    def _reprocessed(self, staged: list[str]) -> None:
        running = bool(self.app.probe and self.app.probe.running)
        self.app.status(f"{len(staged)} file(s) handed to their intake again"
                        + ("" if running else " — converted when the service starts"))
        self.refresh()

    def open_file(self) -> None:
        chosen = [self.items[iid] for iid in self.table.selection() if iid in self.items]
        if len(chosen) != 1:
            self.app.fail("Open file", "Select one line first.")
            return
        target = Path(str(chosen[0].get("path") or ""))
        if not target.exists():
            self.app.fail("Open file", f"{target} is no longer there (sent, retried or reprocessed meanwhile); "
                                       "press Refresh.")
            return
        try:
            self.app.dialogs.open_folder(target.parent)
        except OSError as exc:
            self.app.fail("Open file", f"No file manager could be started to show {target.parent} "
                                       f"({exc.strerror or exc}). The file is at:\n{target}")
            return
        self.app.status(f"opened {target.parent}")

    def _action_failed(self, action: str, exc: BaseException) -> None:
        self._buttons()
        self.app.fail(action, str(exc))

    def on_probe(self, probe: Any) -> None:
        if self.visible and self.snapshot is not None:
            want = "service" if probe.running else "disk"
            if self.snapshot.source != want:
                self.refresh()


def _reprocess_all(link: Any, files: list[tuple[str, str]]) -> list[str]:
    return [link.reprocess(intake, path) for intake, path in files]


def _last_time(item: dict[str, Any]) -> str:
    history = item.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return str(history[-1].get("at") or "")
    return str(item.get("start") or "")


def _when(value: Any) -> str:
    """An ISO time as a person reads it, in local time: ``2026-11-30 10:45:03``."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _sort_key(value: str) -> tuple[int, Any]:
    try:
        return 0, float(value)
    except ValueError:
        return 1, value.lower()


def _kind(item: dict[str, Any], snapshot: Snapshot | None) -> str:
    """What a person reads for a report's state: the role's words for refused and quarantined
    reports (whatever the machine in force calls those states), else the state's own name."""
    state = str(item["kind"])
    if snapshot is not None and state == snapshot.refused:
        return _REFUSED
    if snapshot is not None and state == snapshot.quarantine:
        return _QUARANTINED
    return state.replace("_", " ")


def _details(item: dict[str, Any], snapshot: Snapshot | None) -> str:
    if item["kind"] == "rejected":
        return item.get("detail") or f"{item.get('path')}\n{item.get('reason')}"
    lines = [f"{_kind(item, snapshot)}: report {item.get('id')}",
             f"serial number {item.get('sn') or '?'}, part number {item.get('pn') or '?'}, "
             f"attempts {item.get('attempts')}",
             f"reason: {item.get('last_error') or '(none recorded)'}",
             f"file: {item.get('path') or ''}"]
    if item.get("source"):
        lines.append(f"source: {item['source']}")
    return "\n".join(lines)
