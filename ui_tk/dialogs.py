"""Dialogs and desktop actions behind one small interface, so tests can answer them without blocking.

A failure of an action the person asked for (Save, Test connection, Retry, Start) is shown in a
dialog as well as in the status bar. Modal dialogs run their own event loop and wait for a click,
which a test cannot give; the app therefore takes any object with these methods, and the tests
pass one that records what would have been shown.
"""

from __future__ import annotations

import os
from functools import partial
import subprocess
import sys
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, messagebox, ttk
from typing import Protocol


class Dialogs(Protocol):
    def error(self, title: str, message: str) -> None: ...
    def info(self, title: str, message: str) -> None: ...
    def ask_yes_no(self, title: str, message: str) -> bool: ...
    def ask_choice(self, title: str, message: str, choices: list[str], default: str) -> str: ...
    def ask_directory(self, title: str, initial: str | None) -> str | None: ...
    def ask_file(self, title: str, initial: str | None) -> str | None: ...
    def open_folder(self, path: Path) -> None: ...


class TkDialogs:
    """The real thing: tkinter's message boxes and file choosers, the desktop's file manager."""

    def __init__(self, parent: tk.Misc) -> None:
        self.parent = parent

    def error(self, title: str, message: str) -> None:
        messagebox.showerror(title, message, parent=self.parent)

    def info(self, title: str, message: str) -> None:
        messagebox.showinfo(title, message, parent=self.parent)

    def ask_yes_no(self, title: str, message: str) -> bool:
        """Yes/No with **No** as the default button: Enter never confirms by accident."""
        return bool(messagebox.askyesno(title, message, parent=self.parent, default=messagebox.NO))

    def ask_choice(self, title: str, message: str, choices: list[str], default: str) -> str:
        """Buttons named for what they do ("Save", "Don't save", "Cancel"); Enter takes ``default``,
        Escape and the close button take the last choice (Cancel by convention)."""
        top = tk.Toplevel(self.parent)
        top.title(title)
        top.transient(self.parent.winfo_toplevel())
        top.resizable(False, False)
        answer = {"value": choices[-1]}
        ttk.Label(top, text=message, wraplength=520, justify="left", padding=(16, 14)).pack(fill="x")
        row = ttk.Frame(top, padding=(12, 0, 12, 12))
        row.pack(fill="x")

        def pick(value: str) -> None:
            answer["value"] = value
            top.destroy()

        buttons: dict[str, ttk.Button] = {}
        for choice in reversed(choices):
            button = ttk.Button(row, text=choice, command=partial(pick, choice),
                                default="active" if choice == default else "normal")
            button.pack(side="right", padx=(6, 0))
            buttons[choice] = button
        def enter(_event: tk.Event) -> None:
            focused = top.focus_get()
            for choice, button in buttons.items():
                if focused is button:
                    pick(choice)
                    return
            pick(default)

        top.bind("<Return>", enter)
        top.bind("<Escape>", lambda _e: pick(choices[-1]))
        top.protocol("WM_DELETE_WINDOW", lambda: pick(choices[-1]))
        buttons[default].focus_set()
        top.grab_set()
        top.wait_window()
        return answer["value"]

    def ask_directory(self, title: str, initial: str | None) -> str | None:
        chosen = filedialog.askdirectory(title=title, initialdir=initial or os.getcwd(), parent=self.parent,
                                         mustexist=False)
        return chosen or None

    def ask_file(self, title: str, initial: str | None) -> str | None:
        chosen = filedialog.askopenfilename(title=title, initialdir=initial or os.getcwd(), parent=self.parent,
                                            filetypes=[("PEM certificates", "*.pem *.crt *.cer"), ("All files", "*")])
        return chosen or None

    def open_folder(self, path: Path) -> None:
        """Show ``path`` in the desktop's file manager; raises OSError when there is none."""
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606 - a folder, not a program
            return
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        subprocess.Popen([opener, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
