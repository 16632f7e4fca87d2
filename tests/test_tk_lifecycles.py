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
    from tests.test_tk_service import UPLOAD, _app, _run_service
    from tests.tk_fixtures import TOKEN, cli, stop_process

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
        service = _run_service(path)
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
            assert dialogs.errors == []
        finally:
            app.close()
            stop_process(service)
