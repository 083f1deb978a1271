"""The conformance corpus: state machines with the behaviour the public documents give them.

Every file in ``tests/corpus/`` (``*.json``, ``*.yaml``, ``*.yml``) holds one case or a list of
cases::

    {"name": "...", "source": "<the spec section or AWS developer guide page it comes from>",
     "definition": {...}, "input": ..., "mocks": {...},
     "expect": {"status": "SUCCEEDED", "output": ...}
            or {"status": "FAILED" | "TIMED_OUT", "error": "...",
                "cause": "..." | "causeContains": "..."},
     "xfail": "<what the interpreter does differently>"}

Each case runs through ``run_local(..., skip_waits=True)``. ``expect`` may also hold
``retryDelays``: the delays, in seconds, of the retries the run scheduled, in order. A case with
``xfail`` documents a known discrepancy: it must fail (strict), so a fix shows up as XPASS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.local import LocalResult, run_local

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
SUFFIXES = (".json", ".yaml", ".yml")
CASE_KEYS = {"name", "source", "definition", "input", "mocks", "expect", "xfail"}
EXPECT_KEYS = {"status", "output", "error", "cause", "causeContains", "retryDelays"}


def _files() -> list[Path]:
    return sorted(path for path in CORPUS.iterdir() if path.suffix in SUFFIXES)


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in _files():
        data = _read(path)
        for case in data if isinstance(data, list) else [data]:
            yield path.name, case


CASES = list(_cases())


def _param(file: str, case: dict[str, Any]) -> Any:
    marks = []
    if case.get("xfail"):
        marks.append(pytest.mark.xfail(strict=True, reason=str(case["xfail"])))
    return pytest.param(file, case, id=str(case.get("name")), marks=marks)


def test_the_corpus_is_well_formed() -> None:
    assert CASES, f"no cases in {CORPUS}"
    names = [str(case.get("name")) for _, case in CASES]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"case names must be unique: {duplicates}"
    for file, case in CASES:
        where = f"{file}: {case.get('name')!r}"
        assert isinstance(case.get("name"), str) and case["name"], where
        assert not set(case) - CASE_KEYS, f"{where}: unknown keys {set(case) - CASE_KEYS}"
        assert isinstance(case.get("source"), str) and case["source"].strip(), where
        assert isinstance(case.get("definition"), dict), where
        expect = case.get("expect")
        assert isinstance(expect, dict), where
        assert expect.get("status") in ("SUCCEEDED", "FAILED", "TIMED_OUT"), where
        assert not set(expect) - EXPECT_KEYS, f"{where}: unknown keys {set(expect) - EXPECT_KEYS}"


def _retry_delays(result: LocalResult) -> list[float]:
    return [
        float(entry["details"]["delaySeconds"])
        for entry in result.history
        if entry["type"] == "RetryScheduled"
    ]


@pytest.mark.parametrize(("file", "case"), [_param(file, case) for file, case in CASES])
def test_case(file: str, case: dict[str, Any]) -> None:
    expect = case["expect"]
    result = run_local(
        case["definition"],
        case.get("input"),
        mocks=case.get("mocks"),
        skip_waits=True,
        name=case["name"],
        seed=0,
    )
    observed = {"status": result.status.value, "error": result.error, "cause": result.cause}
    if expect["status"] == "SUCCEEDED":
        observed["output"] = result.output
    assert result.status.value == expect["status"], observed
    if "output" in expect:
        assert result.output == expect["output"], observed
    if "error" in expect:
        assert result.error == expect["error"], observed
    if "cause" in expect:
        assert result.cause == expect["cause"], observed
    if "causeContains" in expect:
        assert expect["causeContains"] in (result.cause or ""), observed
    if "retryDelays" in expect:
        assert _retry_delays(result) == [float(d) for d in expect["retryDelays"]], observed
