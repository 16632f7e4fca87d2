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
