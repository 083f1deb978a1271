"""``bridge test-state``: run one state on its own, like Step Functions' TestState."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


@click.command("test-state")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--state", "state_name", help="The state to run, when FILE is a state machine.")
@click.option("--input", "input_text", help="The state's input as JSON (default: {}).")
@click.option("--variables", "variables_text", help="Workflow variables as a JSON object.")
@click.option("--mock-result", help="A Task's mocked result, as JSON.")
@click.option("--mock-error", help="The error a Task's mock fails with.")
@click.option("--mock-cause", help="The cause that error comes with.")
@click.option("--context", "context_text", help="Context object fields ($$) as a JSON object.")
@click.option(
    "--retrier-retry-count",
    type=click.IntRange(min=0),
    default=0,
    help="Retries the state's retriers made already.",
)
@click.option(
    "--inspection-level",
    type=click.Choice(["INFO", "DEBUG", "TRACE"]),
    default="INFO",
    show_default=True,
    help="DEBUG and TRACE add what each stage of the data flow made of the input.",
)
def test_state_command(
    file: Path,
    state_name: str | None,
    input_text: str | None,
    variables_text: str | None,
    mock_result: str | None,
    mock_error: str | None,
    mock_cause: str | None,
    context_text: str | None,
    retrier_retry_count: int,
    inspection_level: str,
) -> None:
    """Run one state on its own, like Step Functions' TestState; print the answer as JSON.

    FILE holds a state (with Type) or a state machine (then --state names the state). Exit
    status: 0 when the state succeeded or a Catcher took its error, 1 when it failed or would be
    retried, 2 when the request is invalid.
    """
    from typing import NoReturn, cast

    from bridge.test_state import InspectionLevel, Mock, StateTestError, run_test_state

    def invalid(problems: list[str]) -> NoReturn:
        click.echo("\n".join(problems), err=True)
        sys.exit(2)

    if mock_result is not None and mock_error is not None:
        invalid(["--mock-result and --mock-error are exclusive"])
    values: dict[str, Any] = {}
    for option, text in (
        ("--input", input_text),
        ("--variables", variables_text),
        ("--mock-result", mock_result),
        ("--context", context_text),
    ):
        try:
            values[option] = None if text is None else json.loads(text)
        except ValueError as exc:
            invalid([f"{option} is not valid JSON: {exc}"])
    for option in ("--variables", "--context"):
        if values[option] is not None and not isinstance(values[option], dict):
            invalid([f"{option} must be a JSON object"])
    mock = None
    if mock_error is not None:
        mock = Mock(error=mock_error, cause=mock_cause)
    elif mock_result is not None:
        mock = Mock(result=values["--mock-result"])
    try:
        definition = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        invalid([f"cannot be read: {exc}"])
    try:
        answer = run_test_state(
            definition,
            state_name=state_name,
            input=values["--input"],
            variables=values["--variables"],
            mock=mock,
            inspection_level=cast(InspectionLevel, inspection_level),
            context=values["--context"],
            retrier_retry_count=retrier_retry_count,
        )
    except StateTestError as exc:
        invalid([f"{file.name}: {problem}" for problem in exc.problems])
    click.echo(json.dumps(answer.to_dict(), indent=2))
    sys.exit(0 if answer.status in ("SUCCEEDED", "CAUGHT_ERROR") else 1)
