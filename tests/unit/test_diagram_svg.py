"""The diagram drawn in Python (for machines without Graphviz): well-formed SVG, every state and
transition in it, marks as classes, user text escaped."""

from __future__ import annotations

from typing import Any
from xml.dom import minidom

from bridge.asl import diagram
from bridge.asl.diagram_svg import to_svg
from bridge.asl.loading import parse_definition


def drawn(document: dict[str, Any], marks: dict[str, diagram.Mark] | None = None) -> str:
    svg = to_svg(diagram.graph_of(parse_definition(document, "d")), marks)
    minidom.parseString(svg)  # well-formed, or this raises
    return svg


def test_states_transitions_and_marks() -> None:
    document = {
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}],
                "Default": "Done",
            },
            "Big": {"Type": "Pass", "Next": "Check"},
            "Done": {"Type": "Succeed"},
        },
    }
    svg = drawn(document, {"Check": diagram.Mark.VISITED, "Big": diagram.Mark.CURRENT})
    for name in ("Check", "Big", "Done"):
        assert f">{name}</text>" in svg
    assert 'class="node state visited"' in svg and 'class="node state current"' in svg
    # Three transitions (one going back up) and the start and end.
    assert svg.count('marker-end="url(#arrow)"') >= 4
    assert 'class="start"' in svg and 'class="end"' in svg


def test_user_text_is_escaped() -> None:
    name = '<script>alert("x")</script> & more'
    svg = drawn({"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}})
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_parallel_and_map_are_drawn_inside_their_state() -> None:
    inner = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    document = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}},
                ],
                "Next": "Each",
            },
            "Each": {"Type": "Map", "ItemProcessor": inner, "End": True},
        },
    }
    svg = drawn(document)
    for name in ("Both", "A", "B", "Each", "P"):
        assert f">{name}</text>" in svg


def test_a_long_chain_is_drawn() -> None:
    states: dict[str, Any] = {f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(1500)}
    states["S1500"] = {"Type": "Succeed"}
    svg = drawn({"StartAt": "S0", "States": states})
    assert ">S1500</text>" in svg
