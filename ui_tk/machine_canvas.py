"""A lifecycle drawn on a Tk canvas: layered from the initial state down, arrows labelled with triggers.

A small version of the usual layered ("Sugiyama") drawing, deterministic and pure until the
last step: arrows that close a loop (retry, recover, changed) are turned around for the layout
only; each state goes to the layer of its longest path from the initial state; an arrow that
skips layers passes through invisible waypoints so it bends around the boxes in between; a few
sweeps order each layer by the mean position of its neighbours to untangle the arrows.

Durable states have a thick border and say so, final states a double border, working states show
their action and timeout. Arrows that go back up are dashed.
"""

from __future__ import annotations

import tkinter as tk
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from ..schemas.machine import ANY_STATE, MachineDef

BOX_W, BOX_H = 180, 46
GAP_X, ROW_H = 36, 92
WAY_W = 16  # width a waypoint takes in its layer
MARGIN, TOP = 30, 60
DURABLE_FILL, WORKING_FILL, FINAL_FILL = "#e6f0fa", "#fff4e0", "#e8f5e9"
EDGE_COLOUR, BACK_COLOUR, LABEL_COLOUR = "#444444", "#7b1fa2", "#1a237e"


@dataclass
class Edge:
    source: str
    dest: str
    triggers: list[str]
    back: bool = False  # drawn against the layering (the arrow goes up)
    points: list[tuple[float, float]] | None = None  # centre of source, waypoints, centre of dest


@dataclass
class Layout:
    positions: dict[str, tuple[float, float]]  # centre of each state's box
    layers: dict[str, int]
    edges: list[Edge]
    width: float
    height: float


def _edges(defn: MachineDef) -> list[Edge]:
    every = [name for name, state in defn.states.items() if not state.final]
    grouped: dict[tuple[str, str], list[str]] = {}
    for t in defn.transitions:
        for source in t.source:
            for name in (every if source == ANY_STATE else [source]):
                if name in defn.states and t.dest in defn.states:
                    triggers = grouped.setdefault((name, t.dest), [])
                    if t.trigger not in triggers:
                        triggers.append(t.trigger)
    return [Edge(s, d, triggers) for (s, d), triggers in grouped.items()]


def _back_edges(defn: MachineDef, edges: list[Edge]) -> None:
    """Mark the edges that close a cycle, found by depth-first search from the initial state."""
    out: dict[str, list[Edge]] = defaultdict(list)
    for edge in edges:
        out[edge.source].append(edge)
    colour: dict[str, int] = {}  # 1 on the stack, 2 done
    roots = [defn.initial] + [s for s in defn.states if s != defn.initial]
    for root in roots:
        if root in colour or root not in defn.states:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        colour[root] = 1
        while stack:
            node, index = stack.pop()
            if index < len(out[node]):
                stack.append((node, index + 1))
                edge = out[node][index]
                if edge.dest == node:
                    continue
                state = colour.get(edge.dest)
                if state == 1:
                    edge.back = True
                elif state is None:
                    colour[edge.dest] = 1
                    stack.append((edge.dest, 0))
            else:
                colour[node] = 2


def layout(defn: MachineDef) -> Layout:
    """Where each state and arrow goes; pure (no Tk), so it is cheap to test."""
    edges = _edges(defn)
    _back_edges(defn, edges)
    forward = [(e.dest, e.source) if e.back else (e.source, e.dest) for e in edges if e.source != e.dest]
    # Longest-path layering over the acyclic graph.
    layers = {name: 0 for name in defn.states}
    for _ in range(len(defn.states)):
        changed = False
        for a, b in forward:
            if layers[b] < layers[a] + 1:
                layers[b] = layers[a] + 1
                changed = True
        if not changed:
            break
    # Waypoints for arrows that skip layers.
    rows: dict[int, list[str]] = defaultdict(list)
    for name in defn.states:
        rows[layers[name]].append(name)
    chains: dict[int, list[str]] = {}
    links: list[tuple[str, str]] = []
    for index, edge in enumerate(edges):
        if edge.source == edge.dest:
            continue
        a, b = (edge.dest, edge.source) if edge.back else (edge.source, edge.dest)
        chain = [a]
        for layer in range(layers[a] + 1, layers[b]):
            way = f"~{index}~{layer}"
            layers[way] = layer
            rows[layer].append(way)
            chain.append(way)
        chain.append(b)
        chains[index] = chain
        links.extend(zip(chain, chain[1:]))
    # Order each layer by the mean position of its neighbours (a few sweeps down and up).
    up: dict[str, list[str]] = defaultdict(list)
    down: dict[str, list[str]] = defaultdict(list)
    for a, b in links:
        down[a].append(b)
        up[b].append(a)
    order = {name: i for layer in rows.values() for i, name in enumerate(layer)}
    depth = max(rows) if rows else 0
    for sweep in range(6):
        span = range(1, depth + 1) if sweep % 2 == 0 else range(depth - 1, -1, -1)
        for layer in span:
            near = up if sweep % 2 == 0 else down
            def key(name: str, near: dict[str, list[str]] = near) -> float:
                others = near.get(name)
                return sum(order[o] for o in others) / len(others) if others else order[name]
            rows[layer].sort(key=key)
            for i, name in enumerate(rows[layer]):
                order[name] = i
    # Coordinates: each layer centred on the widest one.
    def width_of(name: str) -> float:
        return WAY_W if name.startswith("~") else BOX_W

    widths = {layer: sum(width_of(n) for n in names) + GAP_X * (len(names) - 1) for layer, names in rows.items()}
    widest = max(widths.values(), default=BOX_W)
    centre: dict[str, tuple[float, float]] = {}
    for layer, names in rows.items():
        x = MARGIN + 40 + (widest - widths[layer]) / 2
        y = TOP + BOX_H / 2 + layer * ROW_H
        for name in names:
            centre[name] = (x + width_of(name) / 2, y)
            x += width_of(name) + GAP_X
    for index, edge in enumerate(edges):
        if edge.source == edge.dest:
            edge.points = [centre[edge.source]]
            continue
        points = [centre[n] for n in chains[index]]
        edge.points = points[::-1] if edge.back else points
    positions = {name: centre[name] for name in defn.states}
    state_layers = {name: layers[name] for name in defn.states}
    return Layout(positions, state_layers, edges, MARGIN * 2 + 80 + widest, TOP + (depth + 1) * ROW_H + MARGIN)


def draw(canvas: tk.Canvas, defn: MachineDef) -> Layout:
    """Draw ``defn`` on ``canvas`` (cleared first); items are tagged ``state:<name>``, ``edge:<a>-><b>``,
    ``trigger:<name>``, and ``durable``/``final`` for the boxes that are."""
    canvas.delete("all")
    plan = layout(defn)
    canvas.create_text(MARGIN, 10, anchor="nw", text=f"{defn.name}: {defn.description}".strip(": "),
                       font=("TkDefaultFont", 10, "bold"), width=max(400, plan.width - 2 * MARGIN))
    legend = ("thick border = durable (at rest on disk) · double border = final · orange = working state · "
              "dashed = goes back")
    canvas.create_text(MARGIN, 30, anchor="nw", text=legend, fill="#666666", font=("TkDefaultFont", 8))
    pairs = {(e.source, e.dest) for e in plan.edges}
    for edge in plan.edges:
        _draw_edge(canvas, edge, (edge.dest, edge.source) in pairs)
    for name, (x, y) in plan.positions.items():
        _draw_state(canvas, defn, name, x, y)
    if defn.initial in plan.positions:
        x, y = plan.positions[defn.initial]
        left = x - BOX_W / 2
        canvas.create_oval(left - 34, y - 6, left - 22, y + 6, fill="black", tags=("initial",))
        canvas.create_line(left - 22, y, left, y, arrow="last", width=1.5)
    canvas.tag_raise("label_bg")
    canvas.tag_raise("label")
    box = canvas.bbox("all")
    if box:
        canvas.configure(scrollregion=(0, 0, max(box[2] + MARGIN, plan.width), max(box[3] + MARGIN, plan.height)))
    canvas.xview_moveto(0)
    canvas.yview_moveto(0)
    return plan


def _rounded(canvas: tk.Canvas, x0: float, y0: float, x1: float, y1: float, r: float, **kw: Any) -> int:
    points = [x0 + r, y0, x1 - r, y0, x1, y0, x1, y0 + r, x1, y1 - r, x1, y1, x1 - r, y1, x0 + r, y1,
              x0, y1, x0, y1 - r, x0, y0 + r, x0, y0]
    return int(canvas.create_polygon(points, smooth=True, **kw))


def _draw_state(canvas: tk.Canvas, defn: MachineDef, name: str, x: float, y: float) -> None:
    state = defn.states[name]
    tags = ["state", f"state:{name}"]
    if state.durable:
        tags.append("durable")
    if state.final:
        tags.append("final")
    fill = FINAL_FILL if state.final else (DURABLE_FILL if state.durable else WORKING_FILL)
    x0, y0, x1, y1 = x - BOX_W / 2, y - BOX_H / 2, x + BOX_W / 2, y + BOX_H / 2
    _rounded(canvas, x0, y0, x1, y1, 12, fill=fill, outline="#333333", width=3 if state.durable else 1,
             tags=tuple(tags))
    if state.final:
        _rounded(canvas, x0 + 4, y0 + 4, x1 - 4, y1 - 4, 9, fill="", outline="#333333", width=1,
                 tags=(f"state:{name}",))
    notes: list[str] = []
    if state.durable:
        notes.append("durable")
    if state.action:
        notes.append(f"{state.action} · {state.timeout:g}s" if state.timeout else state.action)
    if state.wait:
        notes.append(f"wait {state.wait}")
    canvas.create_text(x, y - (7 if notes else 0), text=name, font=("TkDefaultFont", 10, "bold"),
                       tags=(f"state:{name}", "state_name"))
    if notes:
        canvas.create_text(x, y + 10, text=", ".join(notes), font=("TkDefaultFont", 8), fill="#444444",
                           tags=(f"state:{name}",))


def _border(centre: tuple[float, float], towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre towards ``towards`` leaves the box."""
    (cx, cy), (tx, ty) = centre, towards
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min((BOX_W / 2) / abs(dx) if dx else float("inf"), (BOX_H / 2) / abs(dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def _draw_edge(canvas: tk.Canvas, edge: Edge, has_reverse: bool) -> None:
    assert edge.points
    tags = ("edge", f"edge:{edge.source}->{edge.dest}")
    label = ", ".join(edge.triggers)
    colour = BACK_COLOUR if edge.back else EDGE_COLOUR
    if edge.source == edge.dest:
        (x, y) = edge.points[0]
        right = x + BOX_W / 2
        canvas.create_line([right, y - 10, right + 34, y - 22, right + 34, y + 22, right, y + 10], smooth=True,
                           arrow="last", fill=colour, width=1.3, tags=tags)
        _label(canvas, right + 38, y, label, edge.triggers, anchor="w")
        return
    points = list(edge.points)
    if has_reverse and len(points) == 2:
        # A pair of opposite arrows (settle / changed): bow each to its own side.
        (ax, ay), (bx, by) = points
        side = 1 if edge.back else -1
        mid = ((ax + bx) / 2 + side * 26, (ay + by) / 2)
        points = [points[0], mid, points[1]]
    start = _border(points[0], points[1])
    end = _border(points[-1], points[-2])
    path = [start, *points[1:-1], end]
    flat = [c for p in path for c in p]
    canvas.create_line(*flat, smooth=len(path) > 2, arrow="last", fill=colour, width=1.3,
                       dash=(5, 3) if edge.back else (), tags=tags)
    # A smoothed Tk line passes through the middle of each segment: the label goes on one.
    k = (len(path) - 2) // 2
    lx, ly = (path[k][0] + path[k + 1][0]) / 2, (path[k][1] + path[k + 1][1]) / 2
    _label(canvas, lx + 4, ly, label, edge.triggers, anchor="w")


Anchor = Literal["nw", "n", "ne", "w", "center", "e", "sw", "s", "se"]


def _label(canvas: tk.Canvas, x: float, y: float, text: str, triggers: list[str], anchor: Anchor = "center") -> None:
    tags = ("label", *(f"trigger:{t}" for t in triggers))
    item = canvas.create_text(x, y, text=text, fill=LABEL_COLOUR, font=("TkDefaultFont", 8), anchor=anchor,
                              tags=tags)
    box = canvas.bbox(item)
    for _ in range(8):  # another label is there: move down a line until free
        if not box or not any("label_bg" in canvas.gettags(other) for other in canvas.find_overlapping(*box)):
            break
        canvas.move(item, 0, 12)
        box = canvas.bbox(item)
    if box:
        canvas.create_rectangle(box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1, fill="white", outline="",
                                tags=("label_bg",))
