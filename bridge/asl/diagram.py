"""Definitions as diagrams: Mermaid ``stateDiagram-v2`` text and Graphviz DOT, with marks.

Pure, no I/O. ``graph_of(definition)`` turns a definition into a small graph: its states in
definition order, the transitions between them (Next, Choice rules and Default, Catch), and for
Parallel and Map states the machines nested inside (branches, the item processor). ``to_mermaid``
and ``to_dot`` render that graph; ``marks`` says which states a process visited, is in now, or
failed in, so that the status page can colour them. Running ``dot`` on the DOT text is the shell's
business.

State names, Choice comments and rules are user input. They only ever appear as labels, escaped for
the format they go into; node ids are generated (``n0``, ``n1``, ...), never taken from names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from bridge.asl.model import (
    APPROVAL,
    EVENT_WAIT,
    HTTP_INVOKE,
    PROCESS_START,
    PROCESS_START_SYNC,
    SEND,
    SEND_WAIT,
    ChoiceState,
    Definition,
    FailState,
    Machine,
    MapState,
    ParallelState,
    State,
    SucceedState,
    TaskState,
)
from bridge.asl.process import Position, Process, ProcessStatus


class Mark(StrEnum):
    """How a state figures in one process; a state has at most one (current > failed > visited)."""

    VISITED = "visited"
    CURRENT = "current"
    FAILED = "failed"


EdgeKind = Literal["next", "choice", "default", "catch"]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind = "next"
    label: str = ""


@dataclass(frozen=True)
class Node:
    """One state. ``machines`` are a Parallel state's branches or a Map state's item processor."""

    id: str
    name: str
    type: str
    kind: str
    machines: tuple[Graph, ...] = ()
    container: Literal["", "parallel", "map"] = ""


@dataclass(frozen=True)
class Graph:
    """A state machine: the whole definition, one Parallel branch or a Map item processor.

    ``start`` and ``ends`` are node ids: where the machine begins and the states that end it
    (End, Succeed, Fail).
    """

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    start: str
    ends: tuple[str, ...]
    label: str = ""

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """Every state, nested ones right after their Parallel or Map, with its depth."""
        for node in self.nodes:
            yield depth, node
            for machine in node.machines:
                yield from machine.walk(depth + 1)


# --------------------------------------------------------------------------- building


@dataclass
class _Ids:
    count: int = 0
    by_name: dict[str, str] = field(default_factory=dict)

    def new(self, name: str) -> str:
        ident = f"n{self.count}"
        self.count += 1
        self.by_name.setdefault(name, ident)
        return ident


def graph_of(definition: Definition) -> Graph:
    """The diagram's graph of ``definition`` (which is valid: every transition has a target)."""
    return _machine(definition, _Ids(), "")


def _machine(machine: Definition | Machine, ids: _Ids, label: str) -> Graph:
    local: dict[str, str] = {name: ids.new(name) for name in machine.states}
    nodes: list[Node] = []
    edges: list[Edge] = []
    ends: list[str] = []
    for name, state in machine.states.items():
        ident = local[name]
        nested: tuple[Graph, ...] = ()
        container: Literal["", "parallel", "map"] = ""
        if isinstance(state, ParallelState):
            container = "parallel"
            nested = tuple(
                _machine(branch, ids, f"Branch {index + 1}")
                for index, branch in enumerate(state.branches)
            )
        elif isinstance(state, MapState):
            container = "map"
            nested = (_machine(state.processor, ids, "Each item"),)
        nodes.append(Node(ident, name, state.type, _kind(state), nested, container))
        for kind, target, text in _transitions(state):
            if target in local:
                edges.append(Edge(ident, local[target], kind, text))
        if isinstance(state, SucceedState | FailState) or getattr(state, "end", False):
            ends.append(ident)
    return Graph(
        tuple(nodes), tuple(edges), local.get(machine.start_at, ""), tuple(ends), label=label
    )


def _kind(state: State) -> str:
    if isinstance(state, TaskState):
        return {
            APPROVAL: "Approval",
            EVENT_WAIT: "Event wait",
            SEND_WAIT: "Command, waits for callback",
            SEND: "Command",
            HTTP_INVOKE: "HTTP call",
            PROCESS_START: "Child process",
            PROCESS_START_SYNC: "Child process, waits for its end",
        }.get(state.resource, "Task")
    return state.type


def _transitions(state: State) -> Iterator[tuple[EdgeKind, str, str]]:
    if isinstance(state, ChoiceState):
        for rule in state.choices:
            target = rule.get("Next")
            if isinstance(target, str):
                yield "choice", target, rule_label(rule)
        if state.default is not None:
            yield "default", state.default, "Default"
        return
    if isinstance(state, FailState | SucceedState):
        return
    if state.next is not None:
        yield "next", state.next, ""
    if isinstance(state, TaskState | ParallelState | MapState):
        for catcher in state.catch:
            yield "catch", catcher.next, "Catch " + ", ".join(catcher.error_equals)


_COMPARISONS = (
    ("GreaterThanEquals", ">="),
    ("LessThanEquals", "<="),
    ("GreaterThan", ">"),
    ("LessThan", "<"),
    ("Equals", "=="),
    ("Matches", "matches"),
)
_TESTS = ("IsPresent", "IsNull", "IsString", "IsNumeric", "IsBoolean", "IsTimestamp")
LABEL_LIMIT = 60


def rule_label(rule: Mapping[str, Any]) -> str:
    """A short text for a Choice rule: its Comment, else the condition in brief."""
    comment = rule.get("Comment")
    if isinstance(comment, str) and comment.strip():
        return _shorten(comment)
    return _shorten(_condition(rule))


def _condition(rule: Mapping[str, Any]) -> str:
    condition = rule.get("Condition")
    if isinstance(condition, str):
        return condition.removeprefix("{%").removesuffix("%}").strip()
    for joiner in ("And", "Or"):
        parts = rule.get(joiner)
        if isinstance(parts, list):
            inner = [_condition(part) for part in parts if isinstance(part, Mapping)]
            return f" {joiner.lower()} ".join(inner)
    negated = rule.get("Not")
    if isinstance(negated, Mapping):
        return f"not ({_condition(negated)})"
    variable = str(rule.get("Variable", "?"))
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        if key in _TESTS:
            test = key.removeprefix("Is").lower()
            return f"{variable} is {'' if value is True else 'not '}{test}"
        operator, is_path = key.removesuffix("Path"), key.endswith("Path")
        for suffix, symbol in _COMPARISONS:
            if operator.endswith(suffix):
                shown = str(value) if is_path else json.dumps(value, ensure_ascii=False)
                return f"{variable} {symbol} {shown}"
        return f"{variable} {key} {json.dumps(value, ensure_ascii=False)}"
    return variable


# --------------------------------------------------------------------------- marks


#: History entries that say a state failed (for a Parallel or Map: one of its branches).
_FAILURES = frozenset(
    {"TaskFailed", "TaskTimedOut", "BranchFailed", "ProcessFailed", "ProcessTimedOut"}
)


def marks(
    definition: Definition, process: Process, history: Iterable[tuple[str, str | None]]
) -> dict[str, Mark]:
    """State name -> mark, from the process and its history as ``(entry type, state)`` pairs.

    Visited: the state was entered. Failed: its last outcome was a failure (a failing task, a
    timeout, a failed branch, a Fail state, the state a failed process ended in); a later exit, as
    after a retry or a Catch, clears it, and a redrive starts afresh. Current: where a running
    process stands, inside Parallel branches and Map iterations too.
    """
    fail_states = {name for name, state in _all_states(definition) if isinstance(state, FailState)}
    visited: set[str] = set()
    failed: set[str] = set()
    for kind, state in history:
        if kind == "ProcessRedriven":
            failed.clear()
        if state is None:
            continue
        if kind == "StateEntered":
            visited.add(state)
            if state in fail_states:
                failed.add(state)
        elif kind in _FAILURES:
            failed.add(state)
        elif kind == "StateExited":
            failed.discard(state)
    ended_badly = process.status in (ProcessStatus.FAILED, ProcessStatus.TIMED_OUT)
    if ended_badly and process.current_state is not None:
        failed.add(process.current_state)
    current: set[str] = set()
    if process.status is ProcessStatus.RUNNING and process.position is not None:
        current = set(_positions(process.position))
    found: dict[str, Mark] = dict.fromkeys(visited, Mark.VISITED)
    found.update(dict.fromkeys(failed, Mark.FAILED))
    found.update(dict.fromkeys(current, Mark.CURRENT))
    return found


def _positions(position: Position) -> Iterator[str]:
    yield position.state
    for branch in position.branches:
        if branch.position is not None and not branch.done:
            yield from _positions(branch.position)


def _all_states(machine: Definition | Machine) -> Iterator[tuple[str, State]]:
    for name, state in machine.states.items():
        yield name, state
        if isinstance(state, ParallelState):
            for branch in state.branches:
                yield from _all_states(branch)
        elif isinstance(state, MapState):
            yield from _all_states(state.processor)


# --------------------------------------------------------------------------- labels

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _shorten(text: str, limit: int = LABEL_LIMIT) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dot_label(text: str) -> str:
    """``text`` as a DOT quoted string that Graphviz shows literally.

    Backslashes would start escapes (``\\N`` is the node's id, ``\\n`` a new line), quotes would
    end the string, and Graphviz reads ``&...;`` as an entity: all three are escaped. Control
    characters become spaces. Graphviz escapes ``<`` and ``>`` itself when it writes SVG.
    """
    cleaned = _shorten(text, 200)
    escaped = cleaned.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{escaped}"'


_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,/()$=!?@*+'"
)


def mermaid_label(text: str) -> str:
    """``text`` for a Mermaid label: anything but letters, digits and a few harmless marks as a
    Mermaid entity code (``#34;``), so that no quote, colon, brace, ``%%`` or markup can change
    the diagram. Mermaid turns the codes back into the characters when it draws."""
    return "".join(c if c in _MERMAID_SAFE else f"#{ord(c)};" for c in _shorten(text, 200))


# --------------------------------------------------------------------------- Mermaid

_MERMAID_CLASSES = {
    Mark.VISITED: "fill:#dcfce7,stroke:#15803d,color:#14532d",
    Mark.CURRENT: "fill:#dbeafe,stroke:#1d4ed8,stroke-width:3px,color:#1e3a8a",
    Mark.FAILED: "fill:#fee2e2,stroke:#b91c1c,stroke-width:3px,color:#7f1d1d",
}


def to_mermaid(graph: Graph, state_marks: Mapping[str, Mark] | None = None) -> str:
    """Mermaid ``stateDiagram-v2`` text; Parallel and Map states are composite states (a
    Parallel's branches are its concurrent regions)."""
    lines = ["stateDiagram-v2"]
    _mermaid_machine(graph, lines, "    ")
    state_marks = state_marks or {}
    ids = {node.name: node.id for _, node in graph.walk()}
    for mark, style in _MERMAID_CLASSES.items():
        marked = [ids[name] for name, given in state_marks.items() if given is mark and name in ids]
        if marked:
            lines.append(f"    classDef {mark.value} {style}")
            lines.append(f"    class {','.join(sorted(marked, key=_id_order))} {mark.value}")
    return "\n".join(lines) + "\n"


def _id_order(ident: str) -> int:
    return int(ident[1:])


def _mermaid_machine(graph: Graph, lines: list[str], indent: str) -> None:
    for node in graph.nodes:
        lines.append(f'{indent}state "{mermaid_label(node.name)}" as {node.id}')
        if node.machines:
            lines.append(f"{indent}state {node.id} {{")
            for index, machine in enumerate(node.machines):
                if index:
                    lines.append(f"{indent}    --")
                _mermaid_machine(machine, lines, indent + "    ")
            lines.append(f"{indent}}}")
    if graph.start:
        lines.append(f"{indent}[*] --> {graph.start}")
    for edge in graph.edges:
        label = f" : {mermaid_label(edge.label)}" if edge.label else ""
        lines.append(f"{indent}{edge.source} --> {edge.target}{label}")
    for end in graph.ends:
        lines.append(f"{indent}{end} --> [*]")


# --------------------------------------------------------------------------- DOT

_DOT_STYLE = {
    None: 'fillcolor="#ffffff" color="#6b7280" fontcolor="#111827"',
    Mark.VISITED: 'fillcolor="#dcfce7" color="#15803d" fontcolor="#14532d"',
    Mark.CURRENT: 'fillcolor="#dbeafe" color="#1d4ed8" fontcolor="#1e3a8a" penwidth=2.5',
    Mark.FAILED: 'fillcolor="#fee2e2" color="#b91c1c" fontcolor="#7f1d1d" penwidth=2.5',
}
_DOT_EDGE = {
    "next": "",
    "choice": 'color="#7c3aed" fontcolor="#5b21b6"',
    "default": 'color="#7c3aed" fontcolor="#5b21b6" style=dashed',
    "catch": 'color="#b45309" fontcolor="#92400e" style=dashed',
}
_DOT_SHAPE = {"Choice": "diamond", "Succeed": "box", "Fail": "box"}


def to_dot(graph: Graph, state_marks: Mapping[str, Mark] | None = None) -> str:
    """Graphviz DOT, top to bottom. A Parallel or Map state is a cluster: the state on top, its
    branches (or the item processor) inside, and a join point at the bottom that its outgoing
    transitions leave from. SVG nodes carry the class ``state`` and their mark, if any."""
    lines = [
        "digraph definition {",
        '  graph [rankdir=TB compound=true fontname="sans-serif" fontsize=11 nodesep=0.35 '
        'ranksep=0.4 bgcolor="transparent"];',
        '  node [shape=box style="rounded,filled" fontname="sans-serif" fontsize=11 '
        'margin="0.15,0.06"];',
        '  edge [color="#6b7280" fontname="sans-serif" fontsize=9 arrowsize=0.7];',
        '  start [shape=circle label="" width=0.18 style=filled fillcolor="#374151" '
        'color="#374151" class="start"];',
        '  end [shape=doublecircle label="" width=0.14 style=filled fillcolor="#374151" '
        'color="#374151" class="end"];',
    ]
    _dot_machine(graph, lines, "  ", "end", state_marks or {})
    if graph.start:
        lines.append(f"  start -> {graph.start};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_machine(
    graph: Graph, lines: list[str], indent: str, exit_id: str, state_marks: Mapping[str, Mark]
) -> None:
    containers = {node.id for node in graph.nodes if node.machines}
    for node in graph.nodes:
        if node.machines:
            _dot_container(node, lines, indent, state_marks)
        else:
            lines.append(f"{indent}{_dot_node(node, state_marks)}")

    def tail(ident: str) -> tuple[str, str]:
        if ident in containers:
            return f"{ident}_join", f"ltail=cluster_{ident}"
        return ident, ""

    for edge in graph.edges:
        source, clip = tail(edge.source)
        label = f"label={dot_label(edge.label)}" if edge.label else ""
        attributes = " ".join(part for part in (label, clip, _DOT_EDGE[edge.kind]) if part)
        lines.append(f"{indent}{source} -> {edge.target} [{attributes}];")
    for end in graph.ends:
        source, clip = tail(end)
        lines.append(f"{indent}{source} -> {exit_id} [{clip}];")


def _dot_node(node: Node, state_marks: Mapping[str, Mark]) -> str:
    mark = state_marks.get(node.name)
    shape = _DOT_SHAPE.get(node.type, "box")
    extra = " peripheries=2" if node.type in ("Succeed", "Fail") else ""
    classes = "state" + (f" {mark.value}" if mark else "")
    label = dot_label(node.name)[:-1] + "\\n" + dot_label(node.kind)[1:]
    return f'{node.id} [label={label} shape={shape}{extra} {_DOT_STYLE[mark]} class="{classes}"];'


def _dot_container(
    node: Node, lines: list[str], indent: str, state_marks: Mapping[str, Mark]
) -> None:
    inner = indent + "  "
    lines.append(f"{indent}subgraph cluster_{node.id} {{")
    lines.append(f'{inner}label="" style="rounded,dashed" color="#9ca3af";')
    lines.append(f"{inner}{_dot_node(node, state_marks)}")
    lines.append(f'{inner}{node.id}_join [shape=point width=0.08 color="#6b7280"];')
    for index, machine in enumerate(node.machines):
        lines.append(f"{inner}subgraph cluster_{node.id}_{index} {{")
        lines.append(
            f'{inner}  label={dot_label(machine.label)} style="rounded" color="#d1d5db" '
            'fontcolor="#6b7280" fontsize=9;'
        )
        _dot_machine(machine, lines, inner + "  ", f"{node.id}_join", state_marks)
        lines.append(f"{inner}}}")
        if machine.start:
            lines.append(f"{inner}{node.id} -> {machine.start} [style=dashed arrowhead=none];")
    lines.append(f"{indent}}}")
