"""The OpenAPI document: valid OpenAPI 3.1, and it covers every route the app serves."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from openapi_spec_validator import validate

from approvals.app import build_app
from approvals.openapi import document, type_text
from approvals.openapi_operations import OPERATIONS
from bridge.engine import Engine

#: Served but not part of the API: the document itself, its page, and static files; the status
#: pages' sign-in and form posts (under /ui/).
NOT_API = {"/openapi.json", "/docs", "/"}


def test_document_is_valid_openapi_3_1() -> None:
    spec = document()
    validate(cast(Any, spec))
    assert spec["openapi"] == "3.1.0"
    ids = {op["operationId"] for methods in spec["paths"].values() for op in methods.values()}
    assert ids == {op.id for op in OPERATIONS}


def test_every_served_route_is_documented() -> None:
    engine = cast(Engine, SimpleNamespace(base_url="http://bridge.test"))
    app = build_app(engine, "secret")
    served = {
        (route.method.lower(), route.resource.canonical.replace("{id:.+}", "{id}"))
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    documented = {
        (method, path) for path, methods in document()["paths"].items() for method in methods
    }
    # Some routes take a fixed set of values in one path segment; the document lists each.
    choices = {"{action}": ("approve", "reject"), "{outcome}": ("success", "failure", "heartbeat")}
    for segment, values in choices.items():
        served = {
            (method, path.replace(segment, value))
            for method, path in served
            for value in (values if segment in path else (segment,))
        }
    missing = {
        (method, path)
        for method, path in served - documented
        if not path.startswith(("/static", "/ui/")) and path not in NOT_API
    }
    assert not missing, f"routes without an OpenAPI operation: {sorted(missing)}"
    assert not documented - served, "documented operations nothing serves"


def test_admin_operations_need_a_token_and_callbacks_do_not() -> None:
    spec = document()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if path.startswith(("/tasks/", "/approve/", "/reject/", "/healthz")):
                assert operation["security"] == [], (method, path)
            else:
                assert operation["security"] == [{"apiToken": []}], (method, path)
            if method in ("post", "put", "delete") and operation["security"]:
                assert "403" in operation["responses"], (method, path)


def test_error_answers_are_problem_details() -> None:
    for methods in document()["paths"].values():
        for operation in methods.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and "application/json" in answer.get("content", {}):
                    raise AssertionError(f"{operation['operationId']} {status} is plain JSON")


def test_type_text_reads_schemas() -> None:
    assert type_text({"type": "string", "format": "date-time"}) == "string (date-time)"
    assert type_text({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "integer | null"
    assert type_text({"type": "array", "items": {"$ref": "#/components/schemas/X"}}) == "list of X"
    assert type_text({"enum": ["A", "B"]}) == "A | B"
    assert type_text({}) == "any JSON"
