"""The Lifecycles page: each YAML machine checked and drawn on a canvas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stationflow.engine.lifecycle import load_lifecycle, shipped_names
from tests.tk_fixtures import FIXTURES, RecordingDialogs, dialogs, pump_until, tk_root, write_station
from stationflow.ui_tk.machine_canvas import BOX_H, BOX_W, layout

__all__ = ["dialogs", "tk_root"]


def test_layout_puts_every_state_apart_and_turns_loops_back() -> None:
    for name in shipped_names():
        defn = load_lifecycle(name).definition
        plan = layout(defn)
        assert set(plan.positions) == set(defn.states)
        assert plan.layers[defn.initial] == 0
        boxes = list(plan.positions.values())
        for i, (x1, y1) in enumerate(boxes):
            for x2, y2 in boxes[i + 1:]:
                assert abs(x1 - x2) >= BOX_W or abs(y1 - y2) >= BOX_H, f"{name}: two states overlap"
        for edge in plan.edges:  # every arrow goes down a layer, except those marked as going back
            if edge.source != edge.dest:
                down = plan.layers[edge.dest] > plan.layers[edge.source]
                assert down != edge.back, f"{name}: {edge.source} -> {edge.dest}"
    report = layout(load_lifecycle("report").definition)
    back = {(e.source, e.dest) for e in report.edges if e.back}
    assert ("failed", "pending") in back and ("retry_wait", "pending") in back
    assert report.layers["sent"] > report.layers["sending"] > report.layers["pending"]


def test_page_checks_and_draws_each_machine(tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    from stationflow.ui_tk.app import ConfiguratorApp

    app = ConfiguratorApp(tk_root, write_station(tmp_path, "http://127.0.0.1:9", intake=[]), dialogs=dialogs)
    page = app.pages["Lifecycles"]
    page.extra = [FIXTURES / "machines" / "unreachable.yaml"]
    app.select("Lifecycles")
    pump_until(tk_root, lambda: page.machines, what="the machines to load")
    names = [v.name for v in page.machines]
    assert page.folder_label.cget("text").startswith("The station runs the shipped lifecycles")
    assert names[:len(shipped_names())] == shipped_names()
    assert all(v.valid for v in page.machines[:-1])
    broken = page.machines[-1]
    assert not broken.valid and broken.problems and "unreachable" in " ".join(broken.problems).lower()

    page.show("report")
    canvas = page.canvas
    defn = load_lifecycle("report").definition
    for state_name, state in defn.states.items():
        items = canvas.find_withtag(f"state:{state_name}")
        assert items, f"state {state_name} not drawn"
        assert any(canvas.itemcget(i, "text") == state_name for i in items if canvas.type(i) == "text")
        box = canvas.find_withtag(f"state:{state_name}")[0]
        assert float(canvas.itemcget(box, "width")) == (3.0 if state.durable else 1.0)
    assert set(canvas.find_withtag("durable")) and "sent" in {
        t.split(":", 1)[1] for i in canvas.find_withtag("final") for t in canvas.gettags(i) if t.startswith("state:")}
    for transition in defn.transitions:
        assert canvas.find_withtag(f"trigger:{transition.trigger}"), f"trigger {transition.trigger} has no label"
    assert canvas.find_withtag("edge:failed->pending") and canvas.find_withtag("initial")
    assert page.verdict.cget("text").startswith("✔")

    page.show(len(page.machines) - 1)
    assert page.verdict.cget("text").startswith("✘") and page.problems.cget("text")
    app.close()


# --------------------------------------------------------------------------- operator triggers on Problems

def test_problems_page_fires_approve_through_the_running_service(tk_root: Any, dialogs: RecordingDialogs,
                                                                 tmp_path: Path) -> None:
    """With the hold-for-approval lifecycle, held reports wait on the Problems page with an Approve
    button; pressing it approves the selected reports through the service, the page says how many
    moved and why one was refused, and exactly the approved reports reach the server."""
    import shutil

    from stationflow.engine.devtools.emulator import Emulator
    from stationflow.engine.devtools.samples import make_report_bytes
    from stationflow.engine.spool.store import Spool
    from tests.helpers_service import ServiceRun
    from tests.test_tk_service import UPLOAD, _app
    from tests.tk_fixtures import TOKEN, cli

    folder = tmp_path / "lifecycles"
    shutil.copytree(FIXTURES / "lifecycles" / "hold-for-approval", folder)
    with Emulator(token=TOKEN, seed=6) as emulator:
        path = write_station(tmp_path, emulator.url, intake=[], upload=UPLOAD, shutdown={"grace_s": 5},
                             lifecycles=str(folder))
        with Spool(tmp_path / "stationflow-data", lifecycle=load_lifecycle(folder / "report.yaml"),
                   fsync=False) as spool:
            held = sorted(spool.accept(make_report_bytes(i, seed=40 + i, approx_bytes=800)).key for i in range(4))
            spool.fire(held[3], "quarantine", error="unreadable on purpose")
        first, second, kept, quarantined = held
        service = ServiceRun(path, ready_s=20)
        app = _app(tk_root, path, dialogs)
        try:
            page = app.select("Problems")
            pump_until(tk_root, lambda: page.snapshot and page.snapshot.source == "service"
                       and page.snapshot.counts.get("held") == 3, timeout=20, what="three held reports")
            pump_until(tk_root, lambda: all(page.table.exists(f"report:{k}") for k in held), what="their lines")
            assert page.table.item(f"report:{first}", "values")[0] == "held"
            assert page.table.item(f"report:{quarantined}", "values")[0] == "quarantined"
            assert page.shown_triggers() == [], "no report selected: no trigger to offer"

            page.table.selection_set(f"report:{quarantined}")
            tk_root.update()
            assert page.shown_triggers() == [], "approve is not valid from quarantine (Retry is)"
            assert not page.retry_button.instate(["disabled"])

            page.table.selection_set([f"report:{first}", f"report:{second}"])
            tk_root.update()
            assert page.shown_triggers() == ["approve"]
            button = page.trigger_buttons["approve"]
            assert button.cget("text") == "Approve" and not button.instate(["disabled"])

            # Meanwhile someone approves the second one at the command line: the window's press
            # then moves the first and is refused for the second, saying why.
            done = cli("-c", str(path), "queue", "fire", "approve", second)
            assert done.returncode == 0, done.stderr
            button.invoke()
            pump_until(tk_root, lambda: "Approve: 1 report(s) moved" in page.result_label.cget("text"),
                       timeout=20, what="the result of the approval")
            said = page.result_label.cget("text")
            assert "moved to pending by the service" in said and "1 refused" in said
            assert f"{second}: cannot approve" in said, said
            pump_until(tk_root, lambda: emulator.received_ids() == {first, second}, timeout=20,
                       what="exactly the approved reports at the server")
            pump_until(tk_root, lambda: page.snapshot.counts.get("held") == 1
                       and not page.table.exists(f"report:{first}"), timeout=20, what="the page to refresh")
            assert page.table.exists(f"report:{kept}") and kept not in emulator.received_ids()

            # The site file edited while the service runs: the Lifecycles page shows the file on
            # disk, and that the service keeps the one it started with until a restart.
            site = folder / "report.yaml"
            in_force_sha = load_lifecycle(site).sha256
            site.write_text(site.read_text().replace("until a person approves it", "until QA approves it"))
            lifecycles = app.select("Lifecycles")
            pump_until(tk_root, lambda: lifecycles.machines, timeout=20, what="the machines to load")
            lifecycles.show("report")
            note = lifecycles.in_force.cget("text")
            assert note.startswith(f"On disk: site file {site}\nsha256 {load_lifecycle(site).sha256}")
            assert (f"The running service uses {site} (sha256 {in_force_sha[:16]}…): this file takes effect "
                    "when the service restarts.") in note
            assert dialogs.errors == []
        finally:
            app.close()
            service.stop()


# --------------------------------------------------------------------------- which file is in force

def test_page_says_which_file_is_in_force_and_what_is_wrong_with_a_site_file(
        tk_root: Any, dialogs: RecordingDialogs, tmp_path: Path) -> None:
    import shutil

    from stationflow.engine.lifecycle import in_force
    from stationflow.ui_tk.app import ConfiguratorApp
    from stationflow.ui_tk.page_lifecycles import load_machines

    folder = tmp_path / "lifecycles"
    shutil.copytree(FIXTURES / "lifecycles" / "hold-for-approval", folder)
    shutil.copy(FIXTURES / "machines" / "missing_trigger.yaml", folder / "task.yaml")
    (folder / "reprot.yaml").write_text((folder / "report.yaml").read_text())
    path = write_station(tmp_path / "station", "http://127.0.0.1:9", intake=[], lifecycles=str(folder))
    app = ConfiguratorApp(tk_root, path, dialogs=dialogs)
    page = app.pages["Lifecycles"]
    app.select("Lifecycles")
    pump_until(tk_root, lambda: page.machines, what="the machines to load")
    views = {v.name: v for v in page.machines}
    report_sha = load_lifecycle(folder / "report.yaml").sha256
    assert (views["report"].source, views["report"].shipped, views["report"].sha256) == (
        str(folder / "report.yaml"), False, report_sha)
    assert views["conversion"].shipped and views["conversion"].source == load_lifecycle("conversion").source

    page.show("report")
    assert page.verdict.cget("text").startswith("✔ report")
    assert page.in_force.cget("text") == f"In force: site file {folder / 'report.yaml'}\nsha256 {report_sha}"
    assert page.canvas.find_withtag("state:held"), "the site machine is the one drawn"
    assert "report (site)" in page.listbox.get(0, "end")[shipped_names().index("report")]

    page.show("conversion")
    assert page.in_force.cget("text").startswith(f"In force: shipped file {load_lifecycle('conversion').source}")

    page.show("task")
    assert page.verdict.cget("text") == (f"✘ task: the site file {folder / 'task.yaml'} is not valid — the "
                                         "service would refuse to start with it:")
    assert "machine 'task' has no transition for trigger 'recycle', which the engine fires" in page.problems.cget("text")
    folder_text = page.folder_label.cget("text")
    assert f"Site lifecycles folder: {folder}" in folder_text
    assert f"{folder / 'reprot.yaml'}: no lifecycle the engine runs is called 'reprot'" in folder_text
    app.close()

    (folder / "task.yaml").unlink()
    (folder / "reprot.yaml").unlink()
    loaded = load_machines((), folder)
    assert loaded.folder_problems == []
    forced = in_force(folder)  # what the service runs, and what status shows (uploader.lifecycles)
    assert {v.name: (v.source, v.sha256, v.shipped) for v in loaded.views} == {
        name: (m.source, m.sha256, m.shipped) for name, m in forced.items()}
