"""Small widgets the pages share: a scrollable frame and a tooltip. No timers, nothing to clean up."""

from __future__ import annotations

import sys
import tkinter as tk
from tkinter import ttk
from typing import Any

ERROR_FG = "#b00020"
HELP_FG = "#555555"
OK_FG = "#1b6e20"
WARN_FG = "#8a5300"


class ScrollFrame(ttk.Frame):
    """A frame whose ``body`` scrolls vertically (forms are taller than the window)."""

    def __init__(self, parent: tk.Misc, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.canvas = tk.Canvas(self, highlightthickness=0, borderwidth=0)
        self.bar = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.canvas.configure(yscrollcommand=self.bar.set)
        self.body = ttk.Frame(self.canvas, padding=(10, 8))
        self._window = self.canvas.create_window(0, 0, window=self.body, anchor="nw")
        self.canvas.grid(row=0, column=0, sticky="nsew")
        self.bar.grid(row=0, column=1, sticky="ns")
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self.body.bind("<Configure>", self._body_resized)
        self.canvas.bind("<Configure>", self._canvas_resized)
        for widget in (self.canvas, self.body):
            widget.bind("<Enter>", self._wheel_on, add="+")
            widget.bind("<Leave>", self._wheel_off, add="+")
        # Tab moves the focus to fields below the fold: scroll them into view, so a person never
        # types into a field they cannot see. Bound on the toplevel: every widget's FocusIn passes it.
        self.winfo_toplevel().bind("<FocusIn>", self._focused, add="+")

    def _focused(self, event: tk.Event) -> None:
        widget = event.widget
        if not isinstance(widget, tk.Misc) or not str(widget).startswith(str(self.body) + "."):
            return
        self.see(widget)

    def see(self, widget: tk.Misc) -> None:
        """Scroll so that ``widget`` (inside ``body``) is fully visible."""
        self.update_idletasks()
        total = self.body.winfo_height()
        view = self.canvas.winfo_height()
        if total <= view or total <= 1:
            return
        top = widget.winfo_rooty() - self.body.winfo_rooty()
        bottom = top + widget.winfo_height()
        first = self.canvas.canvasy(0)
        if top < first:
            self.canvas.yview_moveto(max(0.0, (top - 8) / total))
        elif bottom > first + view:
            self.canvas.yview_moveto(min(1.0, (bottom + 8 - view) / total))

    def _body_resized(self, _event: tk.Event) -> None:
        self.canvas.configure(scrollregion=self.canvas.bbox("all"))

    def _canvas_resized(self, event: tk.Event) -> None:
        self.canvas.itemconfigure(self._window, width=event.width)

    def _wheel_on(self, _event: tk.Event) -> None:
        if sys.platform.startswith("linux"):
            self.canvas.bind_all("<Button-4>", self._wheel_up)
            self.canvas.bind_all("<Button-5>", self._wheel_down)
        else:
            self.canvas.bind_all("<MouseWheel>", self._wheel)

    def _wheel_off(self, _event: tk.Event) -> None:
        for sequence in ("<Button-4>", "<Button-5>", "<MouseWheel>"):
            self.canvas.unbind_all(sequence)

    def _wheel(self, event: tk.Event) -> None:
        self.canvas.yview_scroll(-1 if event.delta > 0 else 1, "units")

    def _wheel_up(self, _event: tk.Event) -> None:
        self.canvas.yview_scroll(-1, "units")

    def _wheel_down(self, _event: tk.Event) -> None:
        self.canvas.yview_scroll(1, "units")


class Tooltip:
    """Help text shown while the pointer is over a widget (shown at once: no timer to cancel)."""

    def __init__(self, widget: tk.Misc, text: str) -> None:
        self.widget = widget
        self.text = text
        self._tip: tk.Toplevel | None = None
        widget.bind("<Enter>", self._show, add="+")
        widget.bind("<Leave>", self._hide, add="+")
        widget.bind("<Destroy>", self._hide, add="+")

    def _show(self, _event: tk.Event) -> None:
        if self._tip is not None or not self.text:
            return
        x = self.widget.winfo_rootx() + 16
        y = self.widget.winfo_rooty() + self.widget.winfo_height() + 4
        tip = tk.Toplevel(self.widget)
        tip.wm_overrideredirect(True)
        tip.wm_geometry(f"+{x}+{y}")
        tk.Label(tip, text=self.text, justify="left", background="#ffffe0", relief="solid", borderwidth=1,
                 wraplength=420, padx=6, pady=4).pack()
        self._tip = tip

    def _hide(self, _event: tk.Event | None = None) -> None:
        if self._tip is not None:
            try:
                self._tip.destroy()
            except tk.TclError:
                pass
            self._tip = None
