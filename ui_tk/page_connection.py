"""Connection: the server's address, token, TLS and timeouts, and a "Test connection" button.

The test uses the values on screen (saved or not) and runs in a worker thread; it shows the
server's version and round trip, or which of DNS, refused, TLS, timeout, 401, 403, 404 failed.
"""

from __future__ import annotations

from tkinter import ttk
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..engine.upload.connection_test import ConnectionResult, check_connection
from ..schemas.config import ServerSection
from .forms import ModelForm
from .page_base import Page
from .widgets import ERROR_FG, HELP_FG, OK_FG, ScrollFrame

if TYPE_CHECKING:
    from .app import ConfiguratorApp


class ConnectionPage(Page):
    title = "Connection"

    def __init__(self, app: ConfiguratorApp, parent: Any) -> None:
        super().__init__(app, parent)
        scroll = ScrollFrame(self)
        scroll.pack(fill="both", expand=True)
        ttk.Label(scroll.body, text="The WATS server this station uploads to.", foreground=HELP_FG).pack(
            anchor="w", pady=(0, 6))
        self.form = ModelForm(scroll.body, ServerSection, "server", app.form_context)
        self.form.frame.pack(fill="x", expand=True)
        bar = ttk.Frame(scroll.body)
        bar.pack(fill="x", pady=(14, 0))
        self.test_button = ttk.Button(bar, text="Test connection", command=self.test)
        self.test_button.pack(side="left")
        self.result = ttk.Label(bar, text="Checks the address, the certificate and the token with the values above "
                                          "(saved or not).", foreground=HELP_FG, wraplength=760, justify="left")
        self.result.pack(side="left", padx=(12, 0), fill="x", expand=True)
        self.result.bind("<Configure>", lambda e: self.result.configure(wraplength=max(300, e.width)))
        self.last_result: ConnectionResult | None = None
        self._tested_values: dict[str, Any] | None = None
        for _, row in self.form.field_rows():
            row.var.trace_add("write", self._values_changed)

    def _values_changed(self, *_args: Any) -> None:
        """A "✔ connected" for values no longer on screen would be a lie: say the test is out of date."""
        if self._tested_values is not None and self.app.collect().get("server") != self._tested_values:
            self._tested_values = None
            self.last_result = None
            self.result.configure(text="The connection settings changed since the last test — test again.",
                                  foreground=HELP_FG)

    def test(self) -> None:
        data = self.app.collect().get("server")
        try:
            server = ServerSection.model_validate(data)
        except ValidationError:
            self.app.validate_now()
            message = "Fix the marked fields of the connection first."
            self.result.configure(text=message, foreground=ERROR_FG)
            self.app.fail("Test connection", message)
            return
        self.test_button.state(["disabled"])
        self._tested_values = data if isinstance(data, dict) else None
        self.result.configure(text=f"Testing {server.url} …", foreground=HELP_FG)
        self.app.status(f"testing the connection to {server.url}")
        self.scope.submit(check_connection, server, base_dir=self.app.draft.base_dir, key="test",
                          on_done=self._tested, on_error=self._broke)

    def _tested(self, result: ConnectionResult) -> None:
        self.test_button.state(["!disabled"])
        self.last_result = result
        if result.ok:
            self.result.configure(text=f"✔ {result.message}", foreground=OK_FG)
            self.app.status(result.message)
        else:
            kind = result.error_kind.upper() if result.error_kind in ("dns", "tls") else result.error_kind
            self.result.configure(text=f"✘ {kind}: {result.message}", foreground=ERROR_FG)
            self.app.fail("Test connection", f"{kind}: {result.message}")

    def _broke(self, exc: BaseException) -> None:
        self.test_button.state(["!disabled"])
        self.result.configure(text=f"✘ {exc}", foreground=ERROR_FG)
        self.app.fail("Test connection", f"the test itself failed: {exc}")
