"""The pages that edit the config: Station, Intake and Settings (every section no other page shows).

Each is a generated form over one part of the schema; the Connection page adds its test button.
The Intake page also says, under "Follow symbolic links", how many links the running service
ignores in the watch folder on screen (``links_ignored`` in its status): the field that changes it
is where a person looks for why files behind links are not taken.
"""

from __future__ import annotations

from pathlib import Path
from tkinter import ttk
from typing import TYPE_CHECKING, Any

from ..schemas.config import IntakeSection, StationConfig, StationSection
from .forms import ModelForm
from .wrap import WrapFollower
from .model_list import ModelListEditor
from .page_base import Page
from .widgets import HELP_FG, WARN_FG, ScrollFrame

if TYPE_CHECKING:
    from .app import ConfiguratorApp
    from .station_link import Probe

#: Top-level keys that have a page of their own; every other one is on the Settings page.
OWN_PAGES = ("station", "server", "intake")


class StationPage(Page):
    title = "Station"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        scroll = ScrollFrame(self)
        scroll.pack(fill="both", expand=True)
        ttk.Label(scroll.body, text="Who this station is. The name is stamped into reports that do not carry one.",
                  foreground=HELP_FG).pack(anchor="w", pady=(0, 6))
        self.form = ModelForm(scroll.body, StationSection, "station", app.form_context)
        self.form.frame.pack(fill="x", expand=True)


class IntakePage(Page):
    title = "Intake"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        scroll = ScrollFrame(self)
        scroll.pack(fill="both", expand=True)
        ttk.Label(scroll.body, text="Watched folders: each file that appears is converted into reports, which are "
                                    "safely in the spool before the file is archived, moved or deleted.",
                  foreground=HELP_FG, wraplength=900).pack(anchor="w", pady=(0, 6))
        self.editor = ModelListEditor(scroll.body, IntakeSection, "intake", app.form_context)
        self.editor.pack(fill="both", expand=True)
        follow = self.editor.field("follow_links")
        self.links_note = ttk.Label(follow.cell, text="", foreground=WARN_FG, wraplength=560, justify="left")
        self.links_note.grid(row=1, column=0, columnspan=3, sticky="w", pady=(2, 0))
        self.links_note.grid_remove()
        wrap = WrapFollower(self.links_note)
        follow.cell.bind("<Configure>", lambda e: wrap.follow(int(e.width)), add="+")
        #: intake name → its status, as the running service of this config last reported it
        self.live: dict[str, dict[str, Any]] = {}
        self.editor.on_select.append(lambda _index: self.show_links_note())
        follow.var.trace_add("write", lambda *_args: self.show_links_note())

    def on_probe(self, probe: Probe) -> None:
        live: dict[str, dict[str, Any]] = {}
        other = probe.config_path
        if probe.running and not (other and Path(other) != self.app.draft.path):  # another file's intakes: not these
            intake = probe.status.get("intake")
            intakes = intake.get("intakes") if isinstance(intake, dict) else None
            if isinstance(intakes, dict):
                live = {str(name): info for name, info in intakes.items() if isinstance(info, dict)}
        if live != self.live:
            self.live = live
            self.show_links_note()

    def show_links_note(self) -> None:
        """The note under "Follow symbolic links" for the intake on screen (hidden when none are ignored)."""
        text = ""
        index = self.editor.selected
        if index is not None:
            name = str(self.editor.field("name").raw()).strip()
            shown = str(self.editor.field("follow_links").raw())
            text = links_note(self.live.get(name), shown, self._saved_follow(name))
        self.links_note.configure(text=text)
        if text:
            self.links_note.grid()
        else:
            self.links_note.grid_remove()

    def _saved_follow(self, name: str) -> str:
        """The intake's ``follow_links`` in the saved file (what the running service uses)."""
        items = self.app.saved_data.get("intake")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and str(item.get("name")) == name:
                return str(item.get("follow_links") or "never")
        return "never"


class SettingsPage(Page):
    """Data folder, upload, spool limits, shutdown, control port, logging — and any future section."""

    title = "Settings"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        scroll = ScrollFrame(self)
        scroll.pack(fill="both", expand=True)
        self.form = ModelForm(scroll.body, StationConfig, "", app.form_context, exclude=OWN_PAGES)
        self.form.frame.pack(fill="x", expand=True)


def links_note(info: dict[str, Any] | None, shown: str, saved: str) -> str:
    """What the running service says of the links in an intake's watch folder, and what to do about them.

    ``shown`` is the value on screen, ``saved`` the one in the file (what the service uses)."""
    count = info.get("links_ignored") if isinstance(info, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
        return ""
    note = info.get("note") if isinstance(info, dict) else None
    said = (str(note) if note else f"{count} symbolic link(s) in the watch folder are ignored").rstrip(".")
    if shown == "never":
        advice = (" — or choose inside to follow the links that stay inside the folder (a link out of it is never "
                  "followed).")
    elif saved != "inside":
        advice = ". Save to have the service follow the links that stay inside the folder."
    else:
        advice = ". These lead out of the folder or to nothing: they are never followed."
    return f"Now, in the running service: {said}{advice}"
