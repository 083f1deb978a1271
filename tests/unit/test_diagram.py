"""Definition diagrams (bridge.asl.diagram): the graph, Mermaid and DOT text, marks. No I/O."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge.asl import diagram
from bridge.asl.diagram import Mark, graph_of, marks, to_dot, to_mermaid
from bridge.asl.inputs import Redrive, Stop, TaskFailed, TaskSucceeded
from bridge.asl.loading import parse_definition
from bridge.asl.model import Definition
from bridge.asl.process import ProcessStatus
from tests.unit.driver import Driver
from tests.unit.test_parallel_map import send_wait, tokens


def machine(states: dict[str, Any], start: str) -> dict[str, Any]:
    return {"StartAt": start, "States": states}


def load(document: dict[str, Any]) -> Definition:
    return parse_definition(document, "test")


EVERY_TYPE = machine(
    {
        "Prepare": {"Type": "Pass", "Next": "Send"},
        "Send": {
            "Type": "Task",
            "Resource": "bridge:kafka:send",
            "Parameters": {"Topic": "t", "Message": {}},
            "Next": "Call",
        },
        "Call": {
            **send_wait("calls", end=False),
            "Next": "Route",
            "Catch": [{"ErrorEquals": ["States.Timeout", "Custom"], "Next": "Broken"}],
        },
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.amount", "NumericGreaterThanEquals": 900, "Next": "Approve"},
                {"Variable": "$.kind", "StringEquals": "slow", "Next": "Pause"},
                {
                    "And": [
                        {"Variable": "$.a", "IsPresent": True},
                        {"Not": {"Variable": "$.b", "BooleanEquals": True}},
                    ],
                    "Next": "Listen",
                },
                {
                    "Comment": "items to fan out",
                    "Variable": "$.items",
                    "IsPresent": True,
                    "Next": "Fan",
                },
            ],
            "Default": "Each",
        },
        "Approve": {
            "Type": "Task",
            "Resource": "bridge:approval",
            "Parameters": {"Title": "ok?"},
            "Next": "Done",
        },
        "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Done"},
        "Listen": {
            "Type": "Task",
            "Resource": "bridge:event:waitFor",
            "Parameters": {
                "Topic": "t",
                "EventType": "E",
                "KeyPath": "$.k",
                "CorrelationKey.$": "$.k",
            },
            "Next": "Done",
        },
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                machine(
                    {"Left": {"Type": "Pass", "Next": "LeftEnd"}, "LeftEnd": {"Type": "Succeed"}},
                    "Left",
                ),
                machine({"Right": {"Type": "Fail", "Error": "Nope"}}, "Right"),
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}],
            "Next": "Done",
        },
        "Each": {
            "Type": "Map",
            "ItemProcessor": machine(
                {
                    "Item": {"Type": "Pass", "Next": "Inner"},
                    "Inner": {
                        "Type": "Parallel",
                        "Branches": [machine({"Deep": {"Type": "Pass", "End": True}}, "Deep")],
                        "End": True,
                    },
                },
                "Item",
            ),
            "End": True,
        },
        "Broken": {"Type": "Fail", "Error": "Broken"},
        "Done": {"Type": "Succeed"},
    },
    "Prepare",
)


def by_name(graph: diagram.Graph) -> dict[str, diagram.Node]:
    return {node.name: node for _, node in graph.walk()}


def edges_of(graph: diagram.Graph) -> set[tuple[str, str, str, str]]:
    """(source name, target name, kind, label) of every edge, nested machines included."""
    names = {node.id: node.name for _, node in graph.walk()}

    def collect(machine: diagram.Graph) -> set[tuple[str, str, str, str]]:
        found: set[tuple[str, str, str, str]] = {
            (names[e.source], names[e.target], e.kind, e.label) for e in machine.edges
        }
        for node in machine.nodes:
            for inner in node.machines:
                found |= collect(inner)
        return found

    return collect(graph)


# --------------------------------------------------------------------------- the graph


def test_every_state_type_becomes_a_node_with_its_kind() -> None:
    nodes = by_name(graph_of(load(EVERY_TYPE)))
    kinds = {name: (node.type, node.kind) for name, node in nodes.items()}
    assert kinds["Prepare"] == ("Pass", "Pass")
    assert kinds["Send"] == ("Task", "Command")
    assert kinds["Call"] == ("Task", "Command, waits for callback")
    assert kinds["Route"] == ("Choice", "Choice")
    assert kinds["Approve"] == ("Task", "Approval")
    assert kinds["Pause"] == ("Wait", "Wait")
    assert kinds["Listen"] == ("Task", "Event wait")
    assert kinds["Fan"] == ("Parallel", "Parallel")
    assert kinds["Each"] == ("Map", "Map")
    assert kinds["Broken"] == ("Fail", "Fail")
    assert kinds["Done"] == ("Succeed", "Succeed")
    # Ids are generated and unique; names never serve as ids.
    ids = [node.id for node in nodes.values()]
    assert len(set(ids)) == len(ids) == 17
    assert all(re.fullmatch(r"n\d+", ident) for ident in ids)


def test_parallel_branches_and_map_processors_nest() -> None:
    graph = graph_of(load(EVERY_TYPE))
    depths = {node.name: depth for depth, node in graph.walk()}
    assert depths == {
        **dict.fromkeys(
            ["Prepare", "Send", "Call", "Route", "Approve", "Pause", "Listen", "Fan", "Each"], 0
        ),
        **dict.fromkeys(["Broken", "Done"], 0),
        **dict.fromkeys(["Left", "LeftEnd", "Right", "Item", "Inner"], 1),
        "Deep": 2,
    }
    nodes = by_name(graph)
    fan, each = nodes["Fan"], nodes["Each"]
    assert fan.container == "parallel" and [m.label for m in fan.machines] == [
        "Branch 1",
        "Branch 2",
    ]
    assert each.container == "map" and [m.label for m in each.machines] == ["Each item"]
    left, right = fan.machines
    assert left.start == nodes["Left"].id and left.ends == (nodes["LeftEnd"].id,)
    assert right.ends == (nodes["Right"].id,)  # a Fail state ends its machine too
    assert graph.start == nodes["Prepare"].id
    assert set(graph.ends) == {nodes[n].id for n in ("Each", "Broken", "Done")}


def test_choice_rules_default_and_catch_become_labelled_edges() -> None:
    edges = edges_of(graph_of(load(EVERY_TYPE)))
    assert ("Route", "Approve", "choice", "$.amount >= 900") in edges
    assert ("Route", "Pause", "choice", '$.kind == "slow"') in edges
    assert ("Route", "Listen", "choice", "$.a is present and not ($.b == true)") in edges
    assert ("Route", "Fan", "choice", "items to fan out") in edges  # the Comment wins
    assert ("Route", "Each", "default", "Default") in edges
    assert ("Call", "Broken", "catch", "Catch States.Timeout, Custom") in edges
    assert ("Fan", "Broken", "catch", "Catch States.ALL") in edges
    assert ("Call", "Route", "next", "") in edges
    assert ("Left", "LeftEnd", "next", "") in edges
    assert ("Item", "Inner", "next", "") in edges
    # Nothing leaves a Choice but its rules and Default, nothing leaves Succeed or Fail.
    assert {(s, k) for s, _, k, _ in edges if s == "Route"} == {
        ("Route", "choice"),
        ("Route", "default"),
    }
    assert not [e for e in edges if e[0] in ("Done", "Broken", "Right", "LeftEnd")]


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        ({"Variable": "$.n", "NumericLessThan": 3}, "$.n < 3"),
        ({"Variable": "$.n", "NumericLessThanEqualsPath": "$.max"}, "$.n <= $.max"),
        (
            {"Variable": "$.t", "TimestampGreaterThan": "2026-01-01T00:00:00Z"},
            '$.t > "2026-01-01T00:00:00Z"',
        ),
        ({"Variable": "$.s", "StringMatches": "log-*"}, '$.s matches "log-*"'),
        ({"Variable": "$.x", "IsNull": False}, "$.x is not null"),
        (
            {"Or": [{"Variable": "$.a", "IsString": True}, {"Variable": "$.b", "IsNumeric": True}]},
            "$.a is string or $.b is numeric",
        ),
        ({"Condition": "{% $states.input.n > 1 %}"}, "$states.input.n > 1"),
        ({"Variable": "$.long", "StringEquals": "x" * 100}, '$.long == "' + "x" * 48 + "…"),
    ],
)
def test_rule_labels(rule: dict[str, Any], label: str) -> None:
    assert diagram.rule_label({**rule, "Next": "X"}) == label


# --------------------------------------------------------------------------- Mermaid


def test_mermaid_text_has_composites_regions_and_transitions() -> None:
    graph = graph_of(load(EVERY_TYPE))
    nodes = by_name(graph)
    text = to_mermaid(graph)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "stateDiagram-v2"
    ident = {name: node.id for name, node in nodes.items()}
    assert f'state "Prepare" as {ident["Prepare"]}' in lines
    assert f"[*] --> {ident['Prepare']}" in lines
    assert f"{ident['Route']} --> {ident['Approve']} : $.amount #62;= 900" in lines
    assert f"{ident['Route']} --> {ident['Each']} : Default" in lines
    assert f"{ident['Call']} --> {ident['Broken']} : Catch States.Timeout, Custom" in lines
    assert f"{ident['Done']} --> [*]" in lines
    # The Parallel is a composite state with one region per branch, separated by "--".
    start = lines.index(f"state {ident['Fan']} {{")
    block = lines[start : lines.index("}", start) + 1]
    assert block.count("--") == 1
    assert f"[*] --> {ident['Left']}" in block and f"[*] --> {ident['Right']}" in block
    assert f"{ident['Right']} --> [*]" in block
    # The Map holds its item processor, which holds a nested Parallel.
    assert f"state {ident['Each']} {{" in lines and f"state {ident['Inner']} {{" in lines
    assert text.count("{") == text.count("}")


def test_mermaid_marks_are_classes() -> None:
    graph = graph_of(load(EVERY_TYPE))
    ident = {name: node.id for name, node in by_name(graph).items()}
    text = to_mermaid(
        graph,
        {"Prepare": Mark.VISITED, "Call": Mark.VISITED, "Right": Mark.FAILED, "Deep": Mark.CURRENT},
    )
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("classDef failed ") for line in lines)
    assert f"class {ident['Prepare']},{ident['Call']} visited" in lines
    assert f"class {ident['Right']} failed" in lines
    assert f"class {ident['Deep']} current" in lines
    # Unmarked: no class lines at all.
    assert "class " not in to_mermaid(graph)


# --------------------------------------------------------------------------- DOT


def test_dot_text_has_clusters_joins_and_styled_edges() -> None:
    graph = graph_of(load(EVERY_TYPE))
    ident = {name: node.id for name, node in by_name(graph).items()}
    text = to_dot(graph)
    assert text.startswith("digraph definition {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert f"start -> {ident['Prepare']};" in text
    fan = ident["Fan"]
    assert f"subgraph cluster_{fan} {{" in text
    assert f"subgraph cluster_{fan}_0 {{" in text and f"subgraph cluster_{fan}_1 {{" in text
    # Transitions out of a Parallel leave from its join point, clipped at the cluster.
    assert re.search(
        rf"{fan}_join -> {ident['Broken']} \[label=\"Catch States.ALL\" "
        rf"ltail=cluster_{fan}",
        text,
    )
    # Branch ends lead to the join, top-level ends to the end point.
    assert f"{ident['LeftEnd']} -> {fan}_join [];" in text
    assert f"{ident['Done']} -> end [];" in text
    assert f"{ident['Each']}_join -> end [ltail=cluster_{ident['Each']}];" in text
    assert re.search(rf"{ident['Route']} -> {ident['Each']} \[label=\"Default\".*dashed", text)
    assert f'{ident["Route"]} [label="Route\\nChoice" shape=diamond' in text


def test_dot_marks_colour_nodes_and_set_their_class() -> None:
    graph = graph_of(load(EVERY_TYPE))
    ident = {name: node.id for name, node in by_name(graph).items()}
    text = to_dot(graph, {"Right": Mark.FAILED, "Left": Mark.VISITED, "Deep": Mark.CURRENT})

    def line_of(name: str) -> str:
        return next(line for line in text.splitlines() if line.strip().startswith(ident[name]))

    assert 'class="state failed"' in line_of("Right") and "#b91c1c" in line_of("Right")
    assert 'class="state visited"' in line_of("Left")
    assert 'class="state current"' in line_of("Deep")
    assert 'class="state"' in line_of("Prepare")


# --------------------------------------------------------------------------- hostile names

HOSTILE = [
    'say "hi"',
    "two\nlines\r\nand\ttab",
    "<script>alert(1)</script>",
    "back\\slash \\N \\G \\n",
    "&amp; &lt;b&gt; &#60;",
    "%%{init: {'theme':'dark'}}%%",
    "a --> b : c ; d {e} [*]",
    "é — ✓ 漢字",
    "end",
    "start",
]


def hostile_definition() -> Definition:
    names = HOSTILE
    states: dict[str, Any] = {
        name: {"Type": "Pass", "Next": names[i + 1]} for i, name in enumerate(names[:-1])
    }
    states[names[-1]] = {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.x", "StringEquals": 'a"b\n}%%<i>', "Next": names[0]},
            {
                "Comment": "</text><script>x</script>",
                "Variable": "$.y",
                "IsNull": True,
                "Next": names[1],
            },
        ],
        "Default": names[2],
    }
    return load(machine(states, names[0]))


def dot_strings(text: str) -> list[str]:
    """Every double-quoted DOT string, unescaped as Graphviz reads it."""
    found = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"', text):
        found.append(re.sub(r"\\(.)", r"\1", match.group(1)))
    return found


def test_hostile_names_cannot_break_out_of_dot_strings() -> None:
    text = to_dot(graph_of(hostile_definition()))
    # Outside quoted strings only our own syntax remains: ids, keywords, attributes, punctuation.
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    assert re.fullmatch(r'[\w\s\[\]{}=;,.\->"]*', outside), outside
    for line in text.splitlines()[1:-1]:
        assert line.rstrip().endswith(("{", "}", ";")), line  # no name made a line of its own
    strings = dot_strings(text)
    labels = "\n".join(strings)
    assert 'say "hi"' in labels and "two lines and tab" in labels
    # Backslashes are doubled, so \N (the node id) and \n stay literal text.
    assert "back\\slash \\N \\G \\n" in labels
    # & is escaped so that Graphviz shows entity-looking text literally.
    assert "&amp;amp; &amp;lt;b&amp;gt; &amp;#60;" in labels
    # Node ids are generated: "start" and "end" as names do not collide with the end points.
    assert "end [shape=doublecircle" in text and text.count("end [shape") == 1


def test_hostile_names_are_entity_codes_in_mermaid() -> None:
    text = to_mermaid(graph_of(hostile_definition()), {"end": Mark.FAILED})
    for line in text.splitlines():
        stripped = line.strip()
        # Every line is one of our statements; labels hold no quote, colon, brace or percent.
        assert re.fullmatch(
            r'stateDiagram-v2|state "[^"]*" as n\d+|(\[\*\]|n\d+) --> (\[\*\]|n\d+)( : .*)?'
            r"|classDef \w+ [\w:#,\-]+|class [n\d,]+ \w+",
            stripped,
        ), stripped
        if " : " in stripped:
            label = re.sub(r"#\d+;", "", stripped.split(" : ", 1)[1])
            assert not set(label) & set(':;"{}%<>[]\n\\'), label
        if stripped.startswith("state "):
            inner = re.sub(r"#\d+;", "", stripped.split('"')[1])
            assert not set(inner) & set(':;"{}%<>[]\\'), inner
    assert "#34;hi#34;" in text and "#60;script#62;" in text and "#37;#37;#123;init" in text
    assert "#233; #8212; #10003; #28450;#23383;" in text  # non-ASCII as codes as well


def test_labels_are_shortened_and_single_line() -> None:
    assert diagram.dot_label("a\nb") == '"a b"'
    assert len(diagram.mermaid_label("x" * 500)) == 200 - 1 + len("#8230;")


# --------------------------------------------------------------------------- marks

SAGA = machine(
    {
        "Reserve": {**send_wait("inventory", end=False), "Next": "Both"},
        "Both": {
            "Type": "Parallel",
            "Branches": [
                machine({"Ship": send_wait("ship")}, "Ship"),
                machine({"Bill": send_wait("bill")}, "Bill"),
            ],
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
    "Reserve",
)


def history_of(run: Driver) -> list[tuple[str, str | None]]:
    return [(entry.type, entry.state) for applied in run.log for entry in applied.result.history]


def test_marks_follow_a_process_into_parallel_branches() -> None:
    run = Driver(load(SAGA))
    run.start({})
    assert marks(run.definition, run.running, history_of(run)) == {"Reserve": Mark.CURRENT}
    run.apply(TaskSucceeded(run.wait.id, {}))
    assert marks(run.definition, run.running, history_of(run)) == {
        "Reserve": Mark.VISITED,
        "Both": Mark.CURRENT,
        "Ship": Mark.CURRENT,
        "Bill": Mark.CURRENT,
    }


def test_a_failed_branch_marks_its_state_and_the_parallel() -> None:
    run = Driver(load(SAGA))
    run.start({})
    waits = tokens(run.apply(TaskSucceeded(run.wait.id, {})).effects)
    run.apply(TaskSucceeded(waits["ship"], {}))
    run.apply(TaskFailed(waits["bill"], "Card.Declined", "no money"))
    assert run.running.status is ProcessStatus.FAILED
    assert marks(run.definition, run.running, history_of(run)) == {
        "Reserve": Mark.VISITED,
        "Both": Mark.FAILED,
        "Ship": Mark.VISITED,
        "Bill": Mark.FAILED,
    }
    # Redriven: the failure is history; the Parallel runs again.
    run.apply(Redrive())
    after = marks(run.definition, run.running, history_of(run))
    assert after["Both"] is Mark.CURRENT and after["Bill"] is Mark.CURRENT
    assert Mark.FAILED not in after.values()


def test_a_retried_or_caught_failure_is_not_a_failed_state() -> None:
    document = machine(
        {
            "Try": {
                **send_wait("t", end=False),
                "Next": "Done",
                "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                "Catch": [{"ErrorEquals": ["Fatal"], "Next": "Cleanup"}],
            },
            "Cleanup": {"Type": "Fail", "Error": "Cleaned"},
            "Done": {"Type": "Succeed"},
        },
        "Try",
    )
    run = Driver(load(document))
    run.start({})
    run.apply(TaskFailed(run.wait.id, "Flaky"))
    # Waiting for the retry: current wins over the failure.
    assert marks(run.definition, run.running, history_of(run)) == {"Try": Mark.CURRENT}
    from bridge.asl.inputs import TimerFired

    run.apply(TimerFired(run.wait.id), after=2)
    run.apply(TaskFailed(run.wait.id, "Fatal"))
    assert run.running.status is ProcessStatus.FAILED
    assert marks(run.definition, run.running, history_of(run)) == {
        "Try": Mark.VISITED,  # caught: it exited through its Catch
        "Cleanup": Mark.FAILED,  # a Fail state entered
    }


def test_a_stopped_process_has_no_current_state() -> None:
    run = Driver(load(SAGA))
    run.start({})
    run.apply(Stop())
    assert run.running.status is ProcessStatus.ABORTED
    assert marks(run.definition, run.running, history_of(run)) == {"Reserve": Mark.VISITED}
