"""The configurator's forms in a real Tk (under Xvfb): generated from the schema, filled, checked, saved.

No service runs here: the window edits the file and reads the spool from disk.
"""

from __future__ import annotations

import json

import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from stationflow.engine.config_file import load_config, validate_config_data
from stationflow.engine.errors import ConfigError
from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.spool.store import Spool
from stationflow.schemas.config import ByteSize, IntakeSection, ServerSection, StationConfig
from tests.tk_fixtures import FIXTURES, RecordingDialogs, dialogs, pump, pump_until, tk_root, ui_threads, write_station

__all__ = ["dialogs", "tk_root"]  # fixtures used by name


def _app(root: Any, path: Path, dialogs: RecordingDialogs, **kw: Any) -> Any:
    from stationflow.ui_tk.app import ConfiguratorApp

    app = ConfiguratorApp(root, path, dialogs=dialogs, **kw)
    pump(root, 0.05)
    return app


def _schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf field of a model as a dotted path (sections expanded, lists of sections skipped)."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_schema_paths(annotation, f"{prefix}{key}."))
        elif key != "intake":
            paths.append(prefix + key)
    return paths


def test_every_schema_field_has_a_widget(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    app = _app(tk_root, path, dialogs)
    for dotted in _schema_paths(StationConfig):
        section, _, rest = dotted.partition(".")
        if section in ("station", "server"):
            row = app.form(section).field(rest)
        else:
            row = app.form("").field(dotted)
        assert row.spec.description, f"{dotted} has no help text"
        assert row.help.cget("text").startswith(row.spec.description)
    editor = app.pages["Intake"].editor
    for name, field in IntakeSection.model_fields.items():
        assert editor.field(field.alias or name).spec.key == (field.alias or name)
    # Bounds from the schema appear in the help: server.timeout_s is gt=0, le=600.
    assert "more than 0, at most 600" in app.form("server").field("timeout_s").help.cget("text")
    app.close()


class _Future(BaseModel):
    """A section that does not exist yet: the form must handle it with no new widget code."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = Field(default=False, description="Turn it on.")
    mode: Literal["fast", "safe"] = Field(default="safe", description="How.")
    count: int = Field(default=3, ge=1, le=9, description="How many.")
    ratio: float | None = Field(default=None, gt=0, description="A ratio, or empty.")
    secret: SecretStr | None = Field(default=None, description="A password.")
    limit: ByteSize = Field(default=ByteSize.parse("1MB"), description="A size.")
    tags: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["a"], description="Tags.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Anything.")


def test_a_new_section_gets_a_working_form(tk_root: Any, tmp_path: Path) -> None:
    from stationflow.ui_tk.forms import FormContext, ModelForm

    changes: list[int] = []
    form = ModelForm(tk_root, _Future, "future", FormContext(RecordingDialogs(), tmp_path, lambda: changes.append(1)))
    form.frame.pack()
    form.load({})
    kinds = {key: row.spec.kind for key, row in form.rows.items()}
    assert kinds == {"enabled": "bool", "mode": "choice", "count": "int", "ratio": "float", "secret": "secret",
                     "limit": "size", "tags": "strlist", "extra": "mapping"}
    assert form.collect() == {}  # nothing typed, nothing in the file: defaults stay implicit
    assert form.field("limit").var.get() == "1MB" and form.field("tags").var.get() == "a"
    form.field("enabled").set(True)
    form.field("mode").set("fast")
    form.field("count").set("7")
    form.field("ratio").set("0.5")
    form.field("secret").set("s3cret")
    form.field("limit").set("2GiB")
    form.field("tags").set("x, y")
    form.field("extra").set("{depth: 2}")
    data = form.collect()
    assert data == {"enabled": True, "mode": "fast", "count": 7, "ratio": 0.5, "secret": "s3cret", "limit": "2GiB",
                    "tags": ["x", "y"], "extra": {"depth": 2}}
    model = _Future.model_validate(data)
    assert model.limit == 2 * 2**30 and model.secret is not None and model.secret.get_secret_value() == "s3cret"
    assert len(changes) == 8
    form.field("ratio").set("")
    assert "ratio" not in form.collect()  # an optional field emptied is left out


def test_fill_save_and_read_back(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    before = path.read_bytes()
    app = _app(tk_root, path, dialogs)
    station, server, settings = app.form("station"), app.form("server"), app.form("")
    station.field("name").set("LINE2-FCT-07")
    station.field("location").set("Hall B")
    station.field("purpose").set("")
    server.field("url").set("https://wats.example.com/")
    server.field("token").set("bmV3OnRva2Vu")
    server.field("verify_tls").set(False)
    server.field("timeout_s").set("45")
    settings.field("upload.concurrency").set("8")
    settings.field("upload.rate_per_s").set("")  # empty = unlimited
    settings.field("upload.retry.max_s").set("600")
    settings.field("spool.max_bytes").set("20GB")
    settings.field("logging.level").set("DEBUG")
    editor = app.pages["Intake"].editor
    editor.select(1)
    editor.remove()  # fct-csv goes
    editor.add()
    editor.field("name").set("ict-xml")
    editor.field("watch").set("./drop/xml")
    editor.field("patterns").set("*.xml, *.wsxf")
    editor.field("converter").set("wsxf")
    editor.field("after").set("move")
    editor.field("move_to").set("./done/xml")
    editor.field("max_file_bytes").set("5MB")
    assert app.dirty and app.root.title().startswith("*")
    assert app.validate_now() == []

    app.save_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the save to finish")
    assert dialogs.errors == []
    cfg = load_config(path)
    assert cfg.station.name == "LINE2-FCT-07" and cfg.station.location == "Hall B" and cfg.station.purpose is None
    assert cfg.server.url == "https://wats.example.com" and cfg.server.verify_tls is False
    assert cfg.server.token is not None and cfg.server.token.get_secret_value() == "bmV3OnRva2Vu"
    assert cfg.server.timeout_s == 45 and cfg.upload.concurrency == 8 and cfg.upload.rate_per_s is None
    assert cfg.upload.retry.max_s == 600 and cfg.spool.max_bytes == 20 * 10**9 and cfg.logging.level == "DEBUG"
    assert [i.name for i in cfg.intake] == ["ict-json", "ict-xml"]
    xml = cfg.intake[1]
    assert (xml.watch, xml.patterns, xml.converter, xml.after, xml.move_to, int(xml.max_file_bytes)) == \
        ("./drop/xml", ["*.xml", "*.wsxf"], "wsxf", "move", "./done/xml", 5 * 10**6)
    text = path.read_text()
    assert "20GB" in text and "5MB" in text  # sizes stay as written
    assert "recursive" not in text  # untouched defaults stay implicit
    assert (tmp_path / "station.yaml.bak").read_bytes() == before
    assert "saved" in app.messages[-1][0] and not app.messages[-1][1]
    assert app.root.title().startswith("stationflow")
    app.close()


def _problem_for(data: dict[str, Any], path: str) -> str:
    """The schema's own message for ``path`` (what the field must show)."""
    with pytest.raises(ConfigError) as caught:
        validate_config_data(data)
    found = [line.split(": ", 1)[1] for line in caught.value.problems if line.startswith(path + ": ")]
    assert found, f"no problem for {path} in {caught.value.problems}"
    return found[0]


@pytest.mark.parametrize("kind", ["type", "range", "choice", "required_move_to", "url"])
def test_each_validation_error_is_marked_and_save_refused(kind: str, tk_root: Any, dialogs: RecordingDialogs,
                                                          tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    before = path.read_bytes()
    app = _app(tk_root, path, dialogs, validate_ms=10)
    if kind == "type":
        row, page, problem_path, good = app.form("server").field("timeout_s"), "Connection", "server.timeout_s", "30"
        row.set("thirty")
    elif kind == "range":
        row, page, problem_path, good = app.form("").field("upload.concurrency"), "Settings", "upload.concurrency", "4"
        row.set("65")
    elif kind == "choice":
        row, page, problem_path, good = app.form("").field("logging.level"), "Settings", "logging.level", "INFO"
        row.set("LOUD")
    elif kind == "url":
        row, page, problem_path, good = app.form("server").field("url"), "Connection", "server.url", \
            "http://127.0.0.1:9"
        row.set("wats.example.com")
    else:
        editor = app.pages["Intake"].editor
        editor.select(0)
        editor.field("after").set("move")
        row, page, problem_path, good = editor.field("move_to"), "Intake", "intake[0].move_to", "./done"
    pump_until(tk_root, lambda: row.invalid, what=f"{problem_path} to be marked")
    expected = _problem_for(app.collect(), problem_path)
    assert row.error == expected
    assert row.error_label.cget("text") == expected and row.error_label.winfo_ismapped()
    assert row.widget.instate(["invalid"])
    assert app.notebook.tab(app.pages[page], "text").endswith("⚠")
    assert "Save is refused" in app.problem_label.cget("text")
    if kind == "required_move_to":
        assert "required when after is 'move'" in expected
        assert app.pages["Intake"].editor.items_with_problems == [0]

    app.save_button.invoke()
    pump(tk_root, 0.1)
    assert dialogs.errors and dialogs.errors[-1][0] == "Save" and problem_path in dialogs.errors[-1][1]
    assert app.messages[-1][1] is True and "Not saved" in app.messages[-1][0]
    assert path.read_bytes() == before and not (tmp_path / "station.yaml.bak").exists()

    row.set(good)
    pump_until(tk_root, lambda: not row.invalid, what="the mark to clear")
    assert not row.widget.instate(["invalid"]) and not row.error_label.winfo_ismapped()
    assert app.notebook.tab(app.pages[page], "text") == page
    app.save_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the save")
    if kind == "required_move_to":  # after: move with its folder is a real change
        assert "move_to: ./done" in path.read_text() and "after: move" in path.read_text()
    else:  # back as it was: nothing to write, and nothing written
        assert path.read_bytes() == before
        assert app.messages[-1] == ("nothing to save: every field is as in the file", False)
    app.close()


def test_a_broken_file_opens_with_its_problems_marked(tk_root: Any, dialogs: RecordingDialogs,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    shutil.copy(FIXTURES / "configs" / "out_of_range.yaml", path)
    expected = ConfigError  # the CLI refuses this file; the window opens it and shows why
    with pytest.raises(expected):
        load_config(path)
    app = _app(tk_root, path, dialogs)
    assert app.problems
    marked = [p for f in app.config_forms for p, r in f.field_rows() if r.invalid] + \
        [f"intake[{i}]" for i in app.pages["Intake"].editor.items_with_problems]
    assert marked, app.problems
    assert app.messages[0][1] is True and "problem" in app.messages[0][0]
    app.close()


def test_a_missing_file_starts_from_the_starter_and_save_writes_it(tk_root: Any, dialogs: RecordingDialogs,
                                                                   tmp_path: Path) -> None:
    path = tmp_path / "new" / "station.yaml"
    app = _app(tk_root, path, dialogs)
    assert "does not exist yet" in app.messages[0][0]
    assert app.problems == []
    app.form("station").field("name").set("FRESH-01")
    app.save_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the save")
    assert load_config(path).station.name == "FRESH-01"
    app.close()


def test_token_is_masked_until_revealed(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    app = _app(tk_root, path, dialogs)
    token = app.form("server").field("token")
    assert token.widget.cget("show") == "•" and token.var.get() == "dXNlcjpwYXNz"
    assert token.reveal_var is not None
    token.reveal_var.set(True)
    token._reveal()
    assert token.widget.cget("show") == ""
    app.close()


def test_folder_chooser_fills_a_relative_path(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    app = _app(tk_root, path, dialogs)
    row = app.pages["Intake"].editor.field("watch")
    assert row.spec.path_kind == "folder"
    dialogs.next_directory = str(tmp_path / "equipment" / "out")
    row._browse()
    assert row.var.get() == "equipment/out"
    assert app.form("server").field("ca_bundle").spec.path_kind == "file"
    app.close()


def _seed_spool(data_dir: Path) -> tuple[list[str], str]:
    spool = Spool(data_dir, fsync=False)
    keys = [spool.accept(make_report_bytes(i, seed=i)).key for i in range(3)]
    failed = keys[0]
    assert spool.claim_next() is not None  # the oldest goes to sending, as an upload worker would take it
    spool.fire(failed, "rejected", error="server rejected the report (400): serial number missing")
    spool.close()
    return keys, failed


def test_offline_banner_problems_from_disk_and_retry(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    keys, failed = _seed_spool(tmp_path / "stationflow-data")
    app = _app(tk_root, path, dialogs, probe_ms=200)
    pump_until(tk_root, lambda: app.probe is not None, what="the first look at the service")
    assert app.probe.running is False and app.banner_kind == "error"  # never green while nothing is sent
    assert app.banner.cget("text").startswith("✖ The service is not running")
    problems = app.select("Problems")
    pump_until(tk_root, lambda: problems.snapshot is not None, what="the problems")
    snap = problems.snapshot
    assert snap.source == "disk" and snap.counts["pending"] == 2 and snap.counts["failed"] == 1
    assert problems.count_labels["failed"].cget("text") == "1"
    assert "read from the disk" in problems.source_label.cget("text")
    sn = json.loads(make_report_bytes(0, seed=0))["sn"]
    row = problems.table.item(f"report:{failed}", "values")
    assert row[0] == "refused by server" and row[1] == sn and "serial number missing" in row[4]
    assert problems.paging_label.cget("text") == "showing 1 report(s), 0 file(s)"
    # Save and Revert are where there is something to save, not here; the config is never disabled.
    assert not app.save_button.winfo_ismapped()
    app.select("Station")
    tk_root.update()
    assert app.save_button.winfo_ismapped() and not app.save_button.instate(["disabled"])
    assert not app.form("station").field("name").widget.instate(["disabled"])

    app.select("Problems")
    problems.table.selection_set(f"report:{failed}")
    tk_root.update()
    assert f"report {failed}" in problems.details_text() and "serial number missing" in problems.details_text()
    problems.copy_button.invoke()
    assert tk_root.clipboard_get() == problems.details_text()
    problems.retry_button.invoke()
    pump_until(tk_root, lambda: problems.snapshot is not snap and problems.snapshot.counts.get("failed") == 0,
               what="the retried report to leave failed")
    assert Spool(tmp_path / "stationflow-data", readonly=True).state_of(failed) == "pending"
    assert "queued to be sent again (spool on disk)" in " ".join(m for m, _ in app.messages)
    app.close()


def test_retry_with_nothing_selected_is_not_offered(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = _app(tk_root, path, dialogs)
    problems = app.select("Problems")
    assert problems.retry_button.instate(["disabled"]) and problems.reprocess_button.instate(["disabled"])
    problems.retry_selected()
    assert dialogs.errors == [("Retry", "Select the reports to send again first (refused or quarantined).")]
    app.close()


def test_closing_leaves_no_timer_and_no_thread(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = _app(tk_root, path, dialogs, probe_ms=100)
    for title in app.pages:
        app.select(title)
        pump(tk_root, 0.05)
    queue = app.pages["Problems"]
    app.select("Problems")
    assert queue.scope.pending_afters >= 1  # its refresh is scheduled while it is shown
    app.select("Station")
    assert queue.scope.pending_afters == 0  # hidden: its refresh stopped
    results: list[Any] = []
    # Jobs still running at close: a long one that watches the stop event, a short one that does not.
    app.scope.submit(app.runner.stop_event.wait, 30.0, name="long", on_done=results.append)
    app.scope.submit(time.sleep, 0.2, name="short", on_done=results.append)
    app.form("station").field("name").set("X")  # a pending validation timer
    assert len(ui_threads()) >= 2 and tk_root.tk.call("after", "info")
    started = time.monotonic()
    left = app.close(destroy=False)
    assert left == [] and ui_threads() == []
    assert time.monotonic() - started < 3  # the long job ended at the stop event, not after 30 s
    assert not tk_root.tk.call("after", "info")
    pump(tk_root, 0.1)
    assert results == []  # results that arrive after close are dropped, not handled
    tk_root.destroy()


def test_revert_asks_with_cancel_as_default_and_reads_the_file_again(tk_root: Any, dialogs: RecordingDialogs,
                                                                     tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = _app(tk_root, path, dialogs)
    app.form("station").field("name").set("SOMETHING-ELSE")
    assert app.dirty
    app.revert_button.invoke()  # Enter on the question: its default, Cancel
    assert dialogs.choices[-1][0] == "Revert" and dialogs.choices[-1][3] == "Cancel"
    pump(tk_root, 0.1)
    assert app.dirty and app.form("station").field("name").var.get() == "SOMETHING-ELSE"
    dialogs.choices_to_give = ["Discard changes"]
    app.revert_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the file to be read again")
    assert app.form("station").field("name").var.get() == "STATION-01"
    app.close()


def test_closing_with_unsaved_changes_offers_save_dont_save_cancel(tk_root: Any, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    asked = RecordingDialogs()
    app = _app(tk_root, path, asked)
    app.form("station").field("name").set("CHANGED")
    app.request_close()  # Enter: the default, Cancel
    assert asked.choices[-1][2:] == (["Save", "Don't save", "Cancel"], "Cancel") and not app.closed
    asked.choices_to_give = ["Don't save"]
    app.request_close()
    assert app.closed
    assert yaml.safe_load(path.read_text())["station"]["name"] == "STATION-01"


def test_closing_with_save_writes_the_file_then_closes(tk_root: Any, tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    asked = RecordingDialogs()
    asked.choices_to_give = ["Save", "Save"]  # close: Save; the list of changes: Save
    app = _app(tk_root, path, asked)
    app.form("station").field("name").set("CHANGED")
    app.request_close()
    assert asked.choices[-1][0] == "Save" and "station.name: STATION-01 → CHANGED" in asked.choices[-1][1]
    assert not tk_root.winfo_viewable() or app.closed or True
    pump_until(tk_root, lambda: app.closed, what="the window to close after saving")
    assert yaml.safe_load(path.read_text())["station"]["name"] == "CHANGED"


def test_an_edit_made_on_disk_is_never_silently_overwritten(tk_root: Any, dialogs: RecordingDialogs,
                                                            tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9", intake=[])
    app = _app(tk_root, path, dialogs, probe_ms=100)
    text = path.read_text()
    assert "  purpose: Production\n" in text
    by_hand = text.replace("  purpose: Production\n", "  purpose: Engineering  # changed by hand\n", 1)
    path.write_text(by_hand)  # the file changes while the window is open
    pump_until(tk_root, lambda: any("was changed on disk" in m and bad for m, bad in app.messages),
               what="the window to notice the change")
    app.form("station").field("location").set("Line 9")
    app.save_button.invoke()  # Save (list of changes) → refused: changed on disk → Cancel (the default)
    pump_until(tk_root, lambda: any(c[0] == "File changed on disk" for c in dialogs.choices), what="the conflict")
    title, message, choices, default = dialogs.choices[-1]
    assert choices == ["Merge", "Reload", "Cancel"] and default == "Cancel"
    assert "Changed on disk: station.purpose" in message and "Your changes: station.location" in message
    assert path.read_text() == by_hand and app.dirty

    dialogs.choices_to_give = ["Save", "Merge"]
    app.save_button.invoke()
    pump_until(tk_root, lambda: len([c for c in dialogs.choices if c[0] == "File changed on disk"]) == 2,
               what="the second conflict")
    pump(tk_root, 0.05)
    assert app.form("station").field("purpose").var.get() == "Engineering"  # theirs, kept
    assert app.form("station").field("location").var.get() == "Line 9"  # mine, kept
    dialogs.choices_to_give = ["Save"]
    app.save_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the merged save")
    text = path.read_text()
    assert "  purpose: Engineering  # changed by hand" in text and "location: Line 9" in text
    app.close()


def test_server_section_model_matches_connection_page(tk_root: Any, dialogs: RecordingDialogs,
                                                      tmp_path: Path) -> None:
    path = write_station(tmp_path, "http://127.0.0.1:9")
    app = _app(tk_root, path, dialogs)
    assert set(app.form("server").rows) == {f.alias or n for n, f in ServerSection.model_fields.items()}
    assert set(app.collect()) <= {f.alias or n for n, f in StationConfig.model_fields.items()}
    app.close()


def test_follow_links_is_chosen_saved_with_the_comments_and_read_back(tk_root: Any, dialogs: RecordingDialogs,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    original = (FIXTURES / "configs" / "station.yaml").read_text().replace("http://127.0.0.1:8080",
                                                                          "http://127.0.0.1:9")
    path.write_text(original)
    # Every comment, those inside the intake list too (an intake's keys are edited one by one), and
    # the lines of the other intake as they were (`patterns: ["*.csv"]` stays written that way).
    comments = [line.split("#", 1)[1] for line in original.splitlines() if "#" in line]
    assert len(comments) >= 6 and "follow_links" not in original
    assert any("archive | move | delete | keep" in c for c in comments)
    untouched = original[original.index("  - name: fct-csv"):]
    app = _app(tk_root, path, dialogs)
    editor = app.pages["Intake"].editor
    editor.select(0)
    row = editor.field("follow_links")
    # A drop-down of the schema's two values, labelled and explained as the other intake fields are.
    assert row.label.cget("text") == "Follow symbolic links"
    assert tuple(str(v) for v in row.widget.cget("values")) == ("never", "inside")
    assert str(row.widget.cget("state")) == "readonly" and row.var.get() == "never"
    help_text = row.help.cget("text")
    assert help_text.startswith(IntakeSection.model_fields["follow_links"].description or "?")
    assert help_text.endswith("(default never)")
    row.set("inside")
    assert app.dirty and app.validate_now() == []

    app.save_button.invoke()
    pump_until(tk_root, lambda: not app.dirty, what="the save to finish")
    assert dialogs.errors == []
    text = path.read_text()
    assert all(comment in text for comment in comments), text  # the person's comments stay
    assert text.count("follow_links") == 1
    assert untouched in text, text  # the other intake and everything after it, line for line
    first, second = text.index("- name: ict-json"), text.index("- name: fct-csv")
    assert first < text.index("follow_links: inside") < second  # in the intake it was set on
    cfg = load_config(path)
    assert [i.follow_links for i in cfg.intake] == ["inside", "never"]

    # Read again: Revert (nothing unsaved: no question) and a new window both show the saved value.
    editor.select(1)
    assert editor.field("follow_links").var.get() == "never"
    app.revert_button.invoke()
    pump_until(tk_root, lambda: any(m.startswith("read ") for m, _ in app.messages), what="the file read again")
    editor.select(0)
    assert editor.field("follow_links").var.get() == "inside" and not app.dirty
    app.close()  # destroys the window: the next one is a new Tk, as when the configurator is opened again
    import tkinter as tk

    root = tk.Tk()
    again = _app(root, path, dialogs)
    editor = again.pages["Intake"].editor
    editor.select(0)
    assert editor.field("follow_links").var.get() == "inside"
    editor.field("follow_links").set("never")  # and back: written as chosen
    again.save_button.invoke()
    pump_until(root, lambda: not again.dirty, what="the second save")
    assert [i.follow_links for i in load_config(path).intake] == ["never", "never"]
    assert all(comment in path.read_text() for comment in comments)
    again.close()
