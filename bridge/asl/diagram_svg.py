"""The diagram drawn in Python, as SVG: for machines without Graphviz (a fresh install, an
offline laptop), so that a page always shows a picture, never raw text.

A layered drawing of ``diagram.graph_of``: each state on the layer of its longest path from
the start (transitions that go back are drawn around the side), states of a layer side by side
in definition order, and a Parallel's branches or a Map's item processor drawn inside their
state's frame. Marks colour the states as in the Graphviz drawing. Pure: text in, text out;
every label is escaped (names are user input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape

from bridge.asl.diagram import Edge, Graph, Mark, Node

CHAR = 6.6  # width of a character of the 11 px sans-serif labels, on average
NODE_HEIGHT = 38.0
CHOICE_HEIGHT = 50.0
GAP_X = 22.0
GAP_Y = 34.0
PAD = 12.0
LABEL = 14.0  # a branch's label line
SIDE = 36.0  # how far transitions that skip or go back swing out

FILL = {
    None: ("#ffffff", "#6b7280", "#111827", 1.0),
    Mark.VISITED: ("#dcfce7", "#15803d", "#14532d", 1.0),
    Mark.CURRENT: ("#dbeafe", "#1d4ed8", "#1e3a8a", 2.5),
    Mark.FAILED: ("#fee2e2", "#b91c1c", "#7f1d1d", 2.5),
}
EDGE = {
    "next": ("#6b7280", ""),
    "choice": ("#7c3aed", ""),
    "default": ("#7c3aed", ' stroke-dasharray="5 3"'),
    "catch": ("#b45309", ' stroke-dasharray="5 3"'),
}


@dataclass
class _Box:
    """A laid-out node: its size, and for a Parallel or Map the machines inside it."""

    node: Node
    width: float
    height: float
    header: float
    inner: list[_Layout] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0


@dataclass
class _Layout:
    graph: Graph
    boxes: dict[str, _Box]
    layers: list[list[str]]
    width: float
    height: float


def to_svg(graph: Graph, state_marks: Mapping[str, Mark] | None = None) -> str:
    """An ``<svg>`` element of the whole definition, start and end points included."""
    marks = state_marks or {}
    layout = _layout(graph)
    top = 30.0
    margin = PAD + SIDE + _longest_label(graph) * 5.6
    width = max(layout.width, 60.0) + 2 * margin
    height = top + layout.height + 40.0
    out: list[str] = []
    _draw(layout, margin + (width - 2 * margin - layout.width) / 2, top, marks, out)
    if graph.start in layout.boxes:
        first = layout.boxes[graph.start]
        cx = first.x + first.width / 2
        out.insert(0, f'<circle class="start" cx="{cx:.1f}" cy="10" r="6" fill="#374151"/>')
        out.append(_path(cx, 16, cx, first.y - 2, "next"))
    end_y = top + layout.height + 22
    end_x = width / 2
    for ident in graph.ends:
        box = layout.boxes.get(ident)
        if box is not None:
            out.append(_path(box.x + box.width / 2, box.y + box.height, end_x, end_y - 8, "next"))
    out.append(
        f'<circle class="end" cx="{end_x:.1f}" cy="{end_y:.1f}" r="7" fill="none" '
        f'stroke="#374151"/><circle cx="{end_x:.1f}" cy="{end_y:.1f}" r="4" fill="#374151"/>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'font-family="sans-serif" font-size="11">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>' + "".join(out) + "</svg>"
    )


def _longest_label(graph: Graph) -> int:
    longest = max((len(edge.label) for edge in graph.edges), default=0)
    for node in graph.nodes:
        for machine in node.machines:
            longest = max(longest, _longest_label(machine))
    return min(longest, 40)


# --------------------------------------------------------------------------- layout


def _layout(graph: Graph) -> _Layout:
    boxes = {node.id: _box(node) for node in graph.nodes}
    layers = _layers(graph)
    height = 0.0
    width = 0.0
    for layer in layers:
        row = sum(boxes[i].width for i in layer) + GAP_X * (len(layer) - 1)
        width = max(width, row)
        height += max(boxes[i].height for i in layer) + GAP_Y
    return _Layout(graph, boxes, layers, width, max(height - GAP_Y, 0.0))


def _box(node: Node) -> _Box:
    text = max(len(node.name), len(node.kind)) * CHAR + 2 * PAD
    if node.type == "Choice":
        header_width, header = max(text * 1.35, 100.0), CHOICE_HEIGHT
    else:
        header_width, header = max(text, 90.0), NODE_HEIGHT
    if not node.machines:
        return _Box(node, header_width, header, header)
    inner = [_layout(machine) for machine in node.machines]
    inside = sum(part.width for part in inner) + 2 * PAD * len(inner) + GAP_X * (len(inner) - 1)
    tallest = max(part.height for part in inner) + LABEL + 2 * PAD
    width = max(header_width, inside) + 2 * PAD
    return _Box(node, width, PAD + header + GAP_Y + tallest + PAD, header, inner)


def _layers(graph: Graph) -> list[list[str]]:
    """Layer of each node: its longest path from the start over the transitions that go
    forward (a transition back to a state on the current path does not count)."""
    order = [node.id for node in graph.nodes]
    following: dict[str, list[str]] = {ident: [] for ident in order}
    for edge in graph.edges:
        if edge.source in following and edge.target in following:
            following[edge.source].append(edge.target)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(ident: str) -> None:
        # Iterative depth-first search: a long chain of states must not exhaust the stack.
        stack = [(ident, iter(following[ident]))]
        state[ident] = 1
        while stack:
            current, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[current] = 2
                stack.pop()
            elif state.get(target) == 1:
                back.add((current, target))
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(following[target])))

    for ident in [graph.start, *order]:
        if ident in following and ident not in state:
            visit(ident)
    layer = {ident: 0 for ident in order}
    # Longest paths over the forward transitions, relaxed in a topological order.
    incoming = {ident: 0 for ident in order}
    for source, targets in following.items():
        for target in targets:
            if (source, target) not in back:
                incoming[target] += 1
    ready = [ident for ident in order if incoming[ident] == 0]
    while ready:
        current = ready.pop(0)
        for target in following[current]:
            if (current, target) in back:
                continue
            layer[target] = max(layer[target], layer[current] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    rows: dict[int, list[str]] = {}
    for ident in order:
        rows.setdefault(layer[ident], []).append(ident)
    return [rows[index] for index in sorted(rows)]


# --------------------------------------------------------------------------- drawing


def _draw(
    layout: _Layout, left: float, top: float, marks: Mapping[str, Mark], out: list[str]
) -> None:
    y = top
    for layer in layout.layers:
        row = sum(layout.boxes[i].width for i in layer) + GAP_X * (len(layer) - 1)
        x = left + (layout.width - row) / 2
        tallest = max(layout.boxes[i].height for i in layer)
        for ident in layer:
            box = layout.boxes[ident]
            box.x, box.y = x, y
            x += box.width + GAP_X
        y += tallest + GAP_Y
    for box in layout.boxes.values():
        _node(box, marks, out)
    index = {ident: n for n, layer in enumerate(layout.layers) for ident in layer}
    for edge in layout.graph.edges:
        _edge(edge, layout.boxes, index, out)


def _node(box: _Box, marks: Mapping[str, Mark], out: list[str]) -> None:
    node = box.node
    mark = marks.get(node.name)
    fill, stroke, ink, weight = FILL[mark]
    classes = "node state" + (f" {mark.value}" if mark else "")
    if box.inner:
        out.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="10" fill="none" stroke="#9ca3af" '
            'stroke-dasharray="5 3"/>'
        )
    head_width = _box(Node(node.id, node.name, node.type, node.kind)).width
    hx = box.x + (box.width - head_width) / 2
    hy = box.y + (PAD if box.inner else 0)
    out.append(f'<g class="{classes}">')
    if node.type == "Choice":
        cx, cy = hx + head_width / 2, hy + box.header / 2
        points = f"{hx:.1f},{cy:.1f} {cx:.1f},{hy:.1f} {hx + head_width:.1f},{cy:.1f} "
        points += f"{cx:.1f},{hy + box.header:.1f}"
        out.append(
            f'<polygon points="{points}" fill="{fill}" stroke="{stroke}" stroke-width="{weight}"/>'
        )
    else:
        out.append(
            f'<rect x="{hx:.1f}" y="{hy:.1f}" width="{head_width:.1f}" height="{box.header:.1f}" '
            f'rx="12" fill="{fill}" stroke="{stroke}" stroke-width="{weight}"/>'
        )
        if node.type in ("Succeed", "Fail"):
            out.append(
                f'<rect x="{hx + 3:.1f}" y="{hy + 3:.1f}" width="{head_width - 6:.1f}" '
                f'height="{box.header - 6:.1f}" rx="10" fill="none" stroke="{stroke}"/>'
            )
    cx = hx + head_width / 2
    out.append(
        f'<text x="{cx:.1f}" y="{hy + box.header / 2 - 2:.1f}" text-anchor="middle" '
        f'fill="{ink}">{escape(node.name)}</text>'
        f'<text x="{cx:.1f}" y="{hy + box.header / 2 + 11:.1f}" text-anchor="middle" '
        f'fill="{ink}" font-size="10">{escape(node.kind)}</text></g>'
    )
    if box.inner:
        x = box.x + PAD
        y = hy + box.header + GAP_Y
        spare = box.width - 2 * PAD - sum(p.width + 2 * PAD for p in box.inner)
        x += max(spare - GAP_X * (len(box.inner) - 1), 0) / 2
        for part in box.inner:
            frame_width = part.width + 2 * PAD
            frame_height = part.height + LABEL + 2 * PAD
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{frame_width:.1f}" '
                f'height="{frame_height:.1f}" rx="8" fill="none" stroke="#d1d5db"/>'
                f'<text x="{x + 6:.1f}" y="{y + 11:.1f}" fill="#6b7280" font-size="9">'
                f"{escape(part.graph.label)}</text>"
            )
            _draw(part, x + PAD, y + LABEL + PAD, marks, out)
            first = part.boxes.get(part.graph.start)
            if first is not None:
                out.append(
                    f'<line x1="{cx:.1f}" y1="{hy + box.header:.1f}" '
                    f'x2="{first.x + first.width / 2:.1f}" y2="{first.y:.1f}" '
                    'stroke="#9ca3af" stroke-dasharray="4 3"/>'
                )
            x += frame_width + GAP_X


def _edge(edge: Edge, boxes: Mapping[str, _Box], layer: Mapping[str, int], out: list[str]) -> None:
    source, target = boxes.get(edge.source), boxes.get(edge.target)
    if source is None or target is None:
        return
    span = layer[edge.target] - layer[edge.source]
    if span == 1:
        x1, y1 = source.x + source.width / 2, source.y + source.height
        x2, y2 = target.x + target.width / 2, target.y
        out.append(_path(x1, y1, x2, y2 - 2, edge.kind))
        # Just above the target: edges that leave one state for several keep them apart.
        lx, ly = x2, y2 - 8
    elif span > 1:
        # Past the states in between: around the left-hand side.
        x1, y1 = source.x, source.y + source.height / 2
        x2, y2 = target.x, target.y + target.height / 2
        bend = min(x1, x2) - SIDE
        color, dash = EDGE[edge.kind]
        out.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} '
            f'{x2 - 2:.1f},{y2:.1f}" fill="none" stroke="{color}"{dash} '
            'marker-end="url(#arrow)"/>'
        )
        lx, ly = bend - 4, y1 + (y2 - y1) * 0.5
        if edge.label:
            out.append(
                f'<text x="{lx:.1f}" y="{ly:.1f}" fill="{color}" font-size="9" '
                f'text-anchor="end">{escape(edge.label)}</text>'
            )
        return
    else:
        # Back (or sideways): around the right-hand side.
        x1, y1 = source.x + source.width, source.y + source.height / 2
        x2, y2 = target.x + target.width, target.y + target.height / 2
        bend = max(x1, x2) + SIDE
        color, dash = EDGE[edge.kind]
        out.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} '
            f'{x2 + 2:.1f},{y2:.1f}" fill="none" stroke="{color}"{dash} '
            'marker-end="url(#arrow)"/>'
        )
        lx, ly = bend - 10, (y1 + y2) / 2
    if edge.label:
        color = EDGE[edge.kind][0]
        out.append(
            f'<text x="{lx + 4:.1f}" y="{ly:.1f}" fill="{color}" font-size="9">'
            f"{escape(edge.label)}</text>"
        )


def _path(x1: float, y1: float, x2: float, y2: float, kind: str) -> str:
    color, dash = EDGE[kind]
    middle = (y1 + y2) / 2
    return (
        f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} {x2:.1f},{middle:.1f} '
        f'{x2:.1f},{y2:.1f}" fill="none" stroke="{color}"{dash} marker-end="url(#arrow)"/>'
    )
