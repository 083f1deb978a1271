"""The OpenAPI 3.1 document of the HTTP API, generated from the pydantic models in
approvals/schemas.py, and the docs page rendered from that document.

The operations it describes are declared once, in approvals/openapi_operations.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import version
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from approvals import schemas as s
from approvals.openapi_operations import (
    HTML,
    JSON,
    OPERATIONS,
    PATTERNS,
    STRUCTURED_EVENT,
    Access,
    Answer,
    Operation,
    answers_of,
)
from approvals.pages import PAGE_HEADERS

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or has a value: drop ``null`` from its schema."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    rest = [option for option in options if option.get("type") != "null"]
    kept = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**kept, **rest[0]} if len(rest) == 1 else {**kept, "anyOf": rest}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in OPERATIONS:
        if isinstance(op.body, type):
            found[(op.body, "validation")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                found[(answer.model, "serialization")] = None
    return list(found)


def _content(answer: Answer, refs: Mapping[Any, Any]) -> dict[str, Any]:
    if not answer.media:
        return {}
    if answer.model is None:
        schema: dict[str, Any] = {"type": "string"}
    else:
        schema = refs[(answer.model, "serialization")]
    content = {answer.media: {"schema": schema}}
    if answer.also_html:
        content[HTML] = {"schema": {"type": "string"}}
    for media in answer.more_media:
        content[media] = {"schema": {"type": "string"}}
    return {"content": content}


def _request_body(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any] | None:
    if op.body is None:
        return None
    if op.body == "any":
        return {"required": False, "content": {JSON: {"schema": {}}}}
    if op.body == "definition":
        schema = {
            "type": "object",
            "description": "An Amazon States Language document with the bridge's extensions",
            "required": ["StartAt", "States"],
            "properties": {
                "StartAt": {"type": "string"},
                "States": {"type": "object"},
                "Comment": {"type": "string"},
            },
        }
        return {"required": True, "content": {JSON: {"schema": schema}}}
    if op.body == "event":
        envelope = {
            "type": "object",
            "description": "A CloudEvent 1.0 in structured mode, its data JSON",
            "required": ["specversion", "id", "source", "type"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": {"type": "string", "minLength": 1},
                "data": {},
            },
        }
        plain = {"type": "object", "description": "The event, or a binary-mode CloudEvent's data"}
        return {
            "required": True,
            "content": {JSON: {"schema": plain}, STRUCTURED_EVENT: {"schema": envelope}},
        }
    if op.body == "form-or-json":
        return {
            "required": False,
            "content": {JSON: {"schema": refs[(s.DecisionBody, "validation")]}},
        }
    assert isinstance(op.body, type)
    required = any(field.is_required() for field in op.body.model_fields.values())
    return {"required": required, "content": {JSON: {"schema": refs[(op.body, "validation")]}}}


_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    "public": [],
    "token": [],
    "read": [{"apiToken": []}],
    "admin": [{"apiToken": []}],
}


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once: it depends on the code only)."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *_models(),
        (s.DecisionBody, "validation"),
    ]
    refs, definitions = models_json_schema(list(dict.fromkeys(pairs)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        parameters = [
            {"name": name, "in": "path", "required": True, "description": text,
             "schema": {"type": "string", "minLength": 1}
             | ({"pattern": PATTERNS[name]} if name in PATTERNS else {})}
            for name, text in op.params.items()
        ]  # fmt: skip
        if op.query is not None:
            parameters += _query_parameters(op.query)
        operation: dict[str, Any] = {
            "operationId": op.id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": _SECURITY[op.access],
            "responses": {
                str(status): {"description": answer.description, **_content(answer, refs)}
                for status, answer in sorted(answers_of(op).items())
            },
        }
        if op.description:
            operation["description"] = op.description
        if op.access == "admin":
            operation["x-bridge-access"] = "admin token"
        if parameters:
            operation["parameters"] = parameters
        if (body := _request_body(op, refs)) is not None:
            operation["requestBody"] = body
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bridge",
            "version": version("bridge"),
            "description": (
                "Start, follow, stop and redrive processes; answer task callbacks and approval "
                "links; deploy definitions. Errors are RFC 9457 problem details."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "BRIDGE_API_READ_TOKENS may read, BRIDGE_API_ADMIN_TOKENS may also act; "
                        "with neither set, the API is open"
                    ),
                }
            },
        },
    }


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(), headers={"Cache-Control": "no-cache"})


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    spec = document()
    schemas = spec["components"]["schemas"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            groups.setdefault(operation["tags"][0], []).append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": operation["operationId"],
                    "op": operation,
                    "body": _body_fields(operation, schemas),
                    "answers": [
                        (status, answer["description"], _response_model(answer))
                        for status, answer in operation["responses"].items()
                    ],
                }
            )
    response = aiohttp_jinja2.render_template(
        "docs.html",
        request,
        {
            "groups": groups,
            "info": spec["info"],
            "models": _model_tables(schemas),
            "models_by_name": set(schemas),
        },
    )
    response.headers.update(PAGE_HEADERS)
    return response


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _response_model(answer: Mapping[str, Any]) -> str | None:
    for media in answer.get("content", {}).values():
        if name := _ref_name(media["schema"]):
            return name
    return None


def _body_fields(operation: Mapping[str, Any], schemas: Mapping[str, Any]) -> str | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    schema = body["content"][JSON]["schema"]
    return _ref_name(schema) or "any JSON value"


def type_text(schema: Mapping[str, Any]) -> str:
    """A short human reading of a JSON schema: ``string``, ``integer | null``, ``list of X``."""
    if name := _ref_name(schema):
        return name
    if "anyOf" in schema:
        return " | ".join(type_text(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(str(value) for value in schema["enum"])
    if "const" in schema:
        return str(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {type_text(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return "object"
    if isinstance(kind, str):
        return f"{kind} ({schema['format']})" if "format" in schema else kind
    return "any JSON"


def _model_tables(schemas: Mapping[str, Any]) -> list[dict[str, Any]]:
    tables = []
    for name, schema in sorted(schemas.items()):
        required = set(schema.get("required", ()))
        fields: Sequence[tuple[str, str, bool, str]] = [
            (field_name, type_text(prop), field_name in required, prop.get("description", ""))
            for field_name, prop in schema.get("properties", {}).items()
        ]
        tables.append({"name": name, "doc": schema.get("description", ""), "fields": fields})
    return tables
