"""``bridge run`` as users run it: a subprocess, JSON on stdout, exit status 0, 1 or 2.

No broker or database is needed: the command runs the definition in memory with mocked answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAGA = ROOT / "examples" / "order-saga.asl.yaml"
ORDER = {"orderId": "o-1", "customerId": "c-7", "amount": 120, "items": []}
MOCKS = """
ReserveInventory:
  Return: {reservationId: r-1}
ChargePayment:
  Return: {paymentId: p-1}
ApproveOrder:
  Return: {outcome: REJECTED, decidedBy: ann}
"""


def bridge_run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return bridge_cli("run", *args)


def bridge_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def mocks(tmp_path: Path) -> Path:
    path = tmp_path / "mocks.yaml"
    path.write_text(MOCKS)
    return path


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_process_that_succeeds_prints_its_result_and_exits_0(mocks: Path) -> None:
    result = bridge_run(SAGA, "--input", json.dumps(ORDER), "--mocks", mocks, "--skip-waits")

    assert result.returncode == 0, result.stderr
    document = printed(result)
    assert document["status"] == "SUCCEEDED"
    assert document["output"]["inventory"] == {"reservationId": "r-1"}
    assert document["error"] is None and document["cause"] is None
    assert document["history"][0]["type"] == "ProcessStarted"
    assert document["history"][-1]["type"] == "ProcessSucceeded"
    assert [m["topic"] for m in document["messages"]][-1] == "orders.done"


def test_a_process_that_fails_exits_1(mocks: Path, tmp_path: Path) -> None:
    order = tmp_path / "order.json"
    order.write_text(json.dumps({**ORDER, "amount": 950}))
    result = bridge_run(SAGA, "--input-file", order, "--mocks", mocks)

    assert result.returncode == 1, result.stderr
    document = printed(result)
    assert (document["status"], document["error"]) == ("FAILED", "Approval.Rejected")


def test_a_missing_mock_exits_1_with_local_no_mock() -> None:
    result = bridge_run(SAGA, "--input", json.dumps(ORDER))

    assert result.returncode == 1, result.stderr
    document = printed(result)
    assert document["error"] == "Local.NoMock"
    assert "ReserveInventory" in document["cause"]


def test_an_invalid_definition_exits_2_naming_the_state(tmp_path: Path) -> None:
    broken = tmp_path / "broken.asl.json"
    broken.write_text(
        json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})
    )
    result = bridge_run(broken, "--input", "{}")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "broken.asl.json: States.A.Next: state 'Nowhere' does not exist" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "{not json"], "the input is not valid JSON"),
        (["--input", "{}", "--input-file", str(SAGA)], "--input and --input-file are exclusive"),
    ],
)
def test_an_invalid_input_exits_2(args: list[str], expected: str) -> None:
    result = bridge_run(SAGA, *args)

    assert result.returncode == 2
    assert expected in result.stderr


def test_invalid_mocks_exit_2_naming_the_state(tmp_path: Path) -> None:
    path = tmp_path / "mocks.json"
    path.write_text(json.dumps({"ReserveInventory": {"Throw": {"Cause": "no error name"}}}))
    result = bridge_run(SAGA, "--input", json.dumps(ORDER), "--mocks", path)

    assert result.returncode == 2
    assert "mocks.json: ReserveInventory.Throw.Error" in result.stderr


def test_a_step_functions_local_mock_configuration_runs_a_test_case(tmp_path: Path) -> None:
    config = tmp_path / "MockConfigFile.json"
    config.write_text(
        json.dumps(
            {
                "StateMachines": {
                    "order-saga": {
                        "TestCases": {
                            "PaymentDeclined": {
                                "ReserveInventory": "Reserved",
                                "ChargePayment": "Declined",
                            }
                        }
                    }
                },
                "MockedResponses": {
                    "Reserved": {"0": {"Return": {"reservationId": "r-1"}}},
                    "Declined": {"0-9": {"Throw": {"Error": "Payment.Declined"}}},
                },
            }
        )
    )
    result = bridge_run(
        SAGA, "--input", json.dumps(ORDER), "--mocks", config, "--test-case", "PaymentDeclined"
    )

    document = printed(result)
    assert document["history"][0]["type"] == "ProcessStarted", result.stderr
    charged = [e for e in document["history"] if e["type"] == "TaskFailed"]
    assert charged and charged[0]["details"]["error"] == "Payment.Declined"

    unknown = bridge_run(SAGA, "--mocks", config, "--test-case", "Nope")
    assert unknown.returncode == 2
    assert "name a test case (one of PaymentDeclined)" in unknown.stderr


def test_test_state_runs_one_state_of_a_definition() -> None:
    result = bridge_cli(
        "test-state",
        SAGA,
        "--state",
        "ChargePayment",
        "--input",
        json.dumps({**ORDER, "inventory": {"reservationId": "r-1"}}),
        "--mock-result",
        '{"paymentId": "p-1"}',
        "--inspection-level",
        "DEBUG",
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "SUCCEEDED"
    assert answer["nextState"]
    assert json.loads(answer["inspectionData"]["result"]) == {"paymentId": "p-1"}

    refused = bridge_cli("test-state", SAGA, "--state", "Nope")
    assert refused.returncode == 2
    assert "no state 'Nope'" in refused.stderr
