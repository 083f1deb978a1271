"""Nothing from a definition is ever executed as Python: no eval, exec or compile anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridge import run_local

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"eval", "exec", "compile", "__import__"}


def test_no_dynamic_code_execution_in_the_product() -> None:
    calls = []
    for package in ("bridge", "processors", "approvals"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in FORBIDDEN
                ):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert calls == []


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "$.a + 1", "States.Format('{}', __class__)"],
)
def test_code_in_paths_is_refused_not_run(expression: str) -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Parameters": {"x.$": expression}, "End": True}},
    }
    from bridge.asl.errors import DefinitionError

    with pytest.raises(DefinitionError):
        run_local(definition, {"a": 1})


def test_state_output_over_256_kib_fails_with_data_limit_exceeded() -> None:
    result = run_local(
        {
            "StartAt": "Big",
            "States": {"Big": {"Type": "Pass", "Result": "x" * (300 * 1024), "End": True}},
        },
        {},
    )
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
