"""The pages that edit the config: Station, Intake and Settings (every section no other page shows).

Each is a generated form over one part of the schema; the Connection page adds its test button.
"""

from __future__ import annotations

from tkinter import ttk
from typing import TYPE_CHECKING, Any

from ..schemas.config import IntakeSection, StationConfig, StationSection
from .forms import ModelForm
from .model_list import ModelListEditor
from .page_base import Page
from .widgets import HELP_FG, ScrollFrame

if TYPE_CHECKING:
    from .app import ConfiguratorApp

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


class SettingsPage(Page):
    """Data folder, upload, spool limits, shutdown, control port, logging — and any future section."""

    title = "Settings"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        scroll = ScrollFrame(self)
        scroll.pack(fill="both", expand=True)
        self.form = ModelForm(scroll.body, StationConfig, "", app.form_context, exclude=OWN_PAGES)
        self.form.frame.pack(fill="x", expand=True)
