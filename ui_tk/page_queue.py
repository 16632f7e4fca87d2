"""Queue: reports per state, the failed and quarantined ones with the server's message, retry, spool folder.

From the service when it runs; from the spool on disk when it does not (the counts are then
read from the folders, and Retry moves the reports itself, as ``stationflow queue retry`` does).
"""

from __future__ import annotations

from tkinter import ttk
from typing import TYPE_CHECKING, Any

from .page_base import Page
from .station_link import Snapshot
from .widgets import HELP_FG

if TYPE_CHECKING:
    from .app import ConfiguratorApp

_COLUMNS = (("id", 250), ("state", 90), ("attempts", 70), ("last_error", 520), ("source", 220))


class QueuePage(Page):
    title = "Queue"
    refresh_s = 2.0

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        self.configure(padding=10)
        self.counts_frame = ttk.LabelFrame(self, text="Reports per state", padding=(10, 6))
        self.counts_frame.pack(fill="x")
        self.count_labels: dict[str, ttk.Label] = {}
        self.source_label = ttk.Label(self, text="", foreground=HELP_FG)
        self.source_label.pack(anchor="w", pady=(4, 8))

        ttk.Label(self, text="Reports waiting for a person (failed: the server said no; quarantined: unreadable "
                             "or unexplained). Retry sends them again; nothing is ever deleted.",
                  foreground=HELP_FG, wraplength=1000).pack(anchor="w")
        table_frame = ttk.Frame(self)
        table_frame.pack(fill="both", expand=True, pady=(4, 6))
        self.table = ttk.Treeview(table_frame, columns=[c for c, _ in _COLUMNS], show="headings",
                                  selectmode="extended", height=12)
        for column, width in _COLUMNS:
            self.table.heading(column, text=column.replace("_", " "))
            self.table.column(column, width=width, stretch=column == "last_error")
        bar = ttk.Scrollbar(table_frame, orient="vertical", command=self.table.yview)
        self.table.configure(yscrollcommand=bar.set)
        self.table.pack(side="left", fill="both", expand=True)
        bar.pack(side="right", fill="y")

        buttons = ttk.Frame(self)
        buttons.pack(fill="x")
        self.retry_button = ttk.Button(buttons, text="Retry selected", command=self.retry_selected)
        self.retry_button.pack(side="left")
        self.retry_all_button = ttk.Button(buttons, text="Retry all failed", command=self.retry_all)
        self.retry_all_button.pack(side="left", padx=6)
        self.refresh_button = ttk.Button(buttons, text="Refresh", command=self.refresh)
        self.refresh_button.pack(side="left")
        self.folder_button = ttk.Button(buttons, text="Open spool folder", command=self.open_folder)
        self.folder_button.pack(side="right")
        self.snapshot: Snapshot | None = None
        self._rows: list[tuple[str, ...]] = []

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        running = bool(self.app.probe and self.app.probe.running)
        self.scope.submit(self.app.link.snapshot, running, key="snapshot", on_done=self._show,
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
            "read from the spool on disk (the service is not running)"
        self.source_label.configure(text=f"Counts {where}.")
        rows = [tuple(str(r.get(c) if r.get(c) is not None else "") for c, _ in _COLUMNS) for r in snapshot.problems]
        if rows != self._rows:
            selected = set(self.table.selection())
            self.table.delete(*self.table.get_children())
            for row in rows:
                self.table.insert("", "end", iid=row[0], values=row)
            keep = [iid for iid in selected if self.table.exists(iid)]
            if keep:
                self.table.selection_set(keep)
            self._rows = rows

    def _refresh_failed(self, exc: BaseException) -> None:
        self.source_label.configure(text=f"Could not read the queue: {exc}")
        self.app.status(f"queue: {exc}", error=True)

    # ------------------------------------------------------------------ actions

    def retry_selected(self) -> None:
        ids = list(self.table.selection())
        if not ids:
            self.app.fail("Retry", "Select the reports to retry first.")
            return
        self._retry(ids, all_failed=False)

    def retry_all(self) -> None:
        self._retry(None, all_failed=True)

    def _retry(self, ids: list[str] | None, *, all_failed: bool) -> None:
        self.retry_button.state(["disabled"])
        self.retry_all_button.state(["disabled"])
        self.app.status("retrying " + ("every failed report" if all_failed else f"{len(ids or [])} report(s)"))
        self.scope.submit(self.app.link.retry, ids, all_failed=all_failed, key="retry",
                          on_done=self._retried, on_error=self._retry_failed)

    def _retried(self, result: dict[str, Any]) -> None:
        self._buttons_back()
        count = len(result.get("retried", []))
        errors = result.get("errors", [])
        self.app.status(f"{count} report(s) sent back to pending" + (" by the service" if result.get("via") ==
                                                                      "service" else " (spool on disk)"))
        if errors:
            self.app.fail("Retry", f"{len(errors)} report(s) could not be retried:\n" + "\n".join(errors[:20]))
        self.refresh()

    def _retry_failed(self, exc: BaseException) -> None:
        self._buttons_back()
        self.app.fail("Retry", str(exc))

    def _buttons_back(self) -> None:
        self.retry_button.state(["!disabled"])
        self.retry_all_button.state(["!disabled"])

    def open_folder(self) -> None:
        folder = self.app.link.data_dir / "spool"
        target = folder if folder.is_dir() else self.app.link.data_dir
        try:
            self.app.dialogs.open_folder(target)
        except OSError as exc:
            self.app.fail("Open spool folder", f"cannot open {target}: {exc.strerror or exc}")
            return
        self.app.status(f"opened {target}")

    def on_probe(self, probe: Any) -> None:
        if self.visible and self.snapshot is not None:
            want = "service" if probe.running else "disk"
            if self.snapshot.source != want:
                self.refresh()

