"""Log lines: JSON for collectors, context fields included, tokens never in full."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from bridge.logs import configure, scrub

TOKEN = "AbCdEf0123456789_-AbCdEf0123456789_-xyz"


def test_scrub_keeps_only_the_start_of_a_token() -> None:
    assert scrub(f"POST /tasks/{TOKEN}/success") == "POST /tasks/AbCdEf…/success"
    assert scrub(f"GET /approve/{TOKEN}") == "GET /approve/AbCdEf…"
    assert TOKEN not in scrub(json.dumps({"taskToken": TOKEN}))
    assert TOKEN not in scrub(repr({"taskToken": TOKEN, "output": {}}))
    assert TOKEN not in scrub(f"task_token={TOKEN}")


def test_json_lines_carry_the_context_and_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    try:
        with structlog.contextvars.bound_contextvars(process_id="p-1", topic="orders"):
            logging.getLogger("bridge.test").warning("callback for /tasks/%s/success", TOKEN)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
    assert line["process_id"] == "p-1" and line["topic"] == "orders"
    assert line["level"] == "warning" and line["logger"] == "bridge.test"
    assert TOKEN not in line["event"] and "/tasks/AbCdEf…/success" in line["event"]
