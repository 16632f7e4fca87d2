"""Dialogs and desktop actions behind one small interface, so tests can answer them without blocking.

A failure of an action the person asked for (Save, Test connection, Retry, Start) is shown in a
dialog as well as in the status bar. Modal dialogs run their own event loop and wait for a click,
which a test cannot give; the app therefore takes any object with these methods, and the tests
pass one that records what would have been shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, messagebox
from typing import Protocol


class Dialogs(Protocol):
    def error(self, title: str, message: str) -> None: ...
    def info(self, title: str, message: str) -> None: ...
    def ask_yes_no(self, title: str, message: str) -> bool: ...
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
        return bool(messagebox.askyesno(title, message, parent=self.parent))

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
