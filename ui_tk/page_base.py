"""What every page of the notebook has: its own worker scope, and hooks for show, hide and close."""

from __future__ import annotations

from tkinter import ttk
from typing import TYPE_CHECKING, Any

from .worker import Repeater

if TYPE_CHECKING:
    from .app import ConfiguratorApp
    from .station_link import Probe


#: A health reason about work waiting on these pages opens the page, not a config field.
PAGES_FOR_PEOPLE = ("Problems", "Service")


def fix_label(reason: dict[str, Any]) -> str:
    """The button for a health reason: "Fix…" opens its config field, "Open Problems" a page."""
    page = str(reason.get("page") or "Problems")
    return "Fix…" if reason.get("field") and page not in PAGES_FOR_PEOPLE else f"Open {page}"


class Page(ttk.Frame):
    """A notebook page. Its timers and jobs live in ``self.scope``; hiding it stops its refresh."""

    title = "Page"
    #: Seconds between refreshes while the page is visible (0: no periodic refresh).
    refresh_s = 0.0

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(parent, padding=0)
        self.app = app
        self.scope = app.runner.scope(self.title.lower())
        self.scope.on_error = app.job_failed
        self.visible = False
        self._refresher: Repeater | None = None

    def on_show(self) -> None:
        self.visible = True
        if self.refresh_s and not self.scope.closed:
            if self._refresher is None:
                self._refresher = self.scope.every(int(self.refresh_s * 1000), self.refresh)
            else:
                self._refresher.start()

    def on_hide(self) -> None:
        self.visible = False
        if self._refresher is not None:
            self._refresher.stop()

    def refresh(self) -> None:
        """Fetch what the page shows (in a worker) — pages with live data override this."""

    def on_probe(self, probe: Probe) -> None:
        """The service was looked at (every few seconds): running, stopped or not answering."""

    def close(self) -> None:
        self.on_hide()
        self.scope.close()
