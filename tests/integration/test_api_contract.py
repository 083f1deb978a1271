"""The HTTP API as documented: aliases with weights, filters, problem+json for every error, the
OpenAPI document covering every route, the docs page, and CORS left off."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from approvals.openapi_operations import OPERATIONS
from tests.integration.harness import running_bridge

pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]
CANARY_V1 = {"version": 1, "weight": 80}
CANARY_V2 = {"version": 2, "weight": 20}


def echo(tag: str) -> dict[str, Any]:
    return {
        "StartAt": "Shape",
        "States": {"Shape": {"Type": "Pass", "Result": {"tag": tag}, "End": True}},
    }


async def test_aliases_route_starts_to_versions_by_weight(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(echo("v1")))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        status, deployed = await bridge.http_put("/definitions/echo", echo("v2"))
        assert status == 201 and deployed["version"] == 2

        status, alias = await bridge.http_put(
            "/definitions/echo/aliases/live",
            {"description": "canary", "routes": [CANARY_V1, CANARY_V2]},
        )
        assert status == 200, alias
        assert alias["routes"] == [CANARY_V1, CANARY_V2]

        outputs: Counter[str] = Counter()
        for _ in range(60):
            status, body = await bridge.post("/processes?wait=5", {"definition": "echo:live"})
            assert status == 200, body
            outputs[body["output"]["tag"]] += 1
            assert body["output"]["tag"] == f"v{body['version']}"
        assert outputs["v1"] > outputs["v2"] > 0, outputs

        # The same idempotent name lands on the same version, whatever the draw.
        first = await bridge.post("/processes", {"definition": "echo:live", "name": "n-1"})
        again = await bridge.post("/processes", {"definition": "echo:live", "name": "n-1"})
        assert first[0] == 201 and again[0] == 200
        assert first[1]["id"] == again[1]["id"] and first[1]["version"] == again[1]["version"]

        # A whole shift to version 2, then NAME:VERSION pins one explicitly.
        await bridge.http_put(
            "/definitions/echo/aliases/live", {"routes": [{"version": 2, "weight": 100}]}
        )
        for _ in range(5):
            _, body = await bridge.post("/processes?wait=5", {"definition": "echo:live"})
            assert body["version"] == 2
        _, pinned = await bridge.post("/processes?wait=5", {"definition": "echo:1"})
        assert pinned["version"] == 1 and pinned["output"] == {"tag": "v1"}

        _, history = await bridge.get(f"/processes/{body['id']}/history")
        started = history["items"][0]
        assert started["details"]["alias"] == "live", started

        status, problem = await bridge.http_put(
            "/definitions/echo/aliases/live",
            {"routes": [{"version": 1, "weight": 50}, {"version": 9, "weight": 40}]},
        )
        assert status == 422
        assert "the weights must add up to 100" in problem["problems"]
        assert "version 9 is not deployed" in problem["problems"]
        assert (await bridge.http_put("/definitions/echo/aliases/7up", {"routes": []}))[0] == 400
        only_v1 = {"routes": [{"version": 1, "weight": 100}]}
        assert (await bridge.http_put("/definitions/nope/aliases/live", only_v1))[0] == 404

        status, listed = await bridge.get("/definitions/echo/aliases")
        assert status == 200 and [a["name"] for a in listed["items"]] == ["live"]
        assert (await bridge.post("/processes", {"definition": "echo:gone"}))[0] == 404
        async with bridge.http.delete(bridge.url + "/definitions/echo/aliases/live") as response:
            assert response.status == 204
        assert (await bridge.get("/definitions/echo/aliases/live"))[0] == 404
        assert (await bridge.post("/processes", {"definition": "echo:live"}))[0] == 404
        status, problem = await bridge.post("/processes", {"definition": "echo:1", "version": 2})
        assert status == 400, problem


async def test_list_filters_errors_docs_and_no_cors(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "echo.asl.json").write_text(json.dumps(echo("v1")))
    async with running_bridge(database_url, kafka, tmp_path, definitions=folder) as bridge:
        await bridge.http_put("/definitions/echo", echo("v2"))
        key = uuid.uuid4().hex
        ids = []
        for version in (1, 2, 2):
            _, body = await bridge.post(
                "/processes?wait=5",
                {"definition": f"echo:{version}", "correlationKey": key},
            )
            ids.append(body["id"])

        _, page = await bridge.get(f"/processes?correlationKey={key}&version=2")
        assert {p["id"] for p in page["items"]} == set(ids[1:])
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        _, page = await bridge.get(f"/processes?correlationKey={key}&startedAfter={tomorrow}")
        assert page["items"] == []
        _, page = await bridge.get(f"/processes?correlationKey={key}&startedBefore={tomorrow}")
        assert len(page["items"]) == 3
        _, first = await bridge.get(f"/processes?correlationKey={key}&limit=2")
        _, rest = await bridge.get(
            f"/processes?correlationKey={key}&limit=2&cursor={first['nextCursor']}"
        )
        pages = [p["id"] for p in first["items"] + rest["items"]]
        assert len(pages) == 3 and set(pages) == set(ids) and rest["nextCursor"] is None

        _, history = await bridge.get(f"/processes/{ids[0]}/history?limit=1")
        assert len(history["items"]) == 1 and history["nextAfter"] == history["items"][0]["seq"]

        # Every error, ours or the framework's, is problem+json.
        for method, path in (
            ("GET", "/processes?limit=0"),
            ("GET", "/processes?status=SLEEPING"),
            ("GET", "/processes?startedAfter=yesterday"),
            ("GET", "/no/such/path"),
            ("DELETE", "/processes"),
            ("GET", "/approvals?minAgeMinutes=-1"),
        ):
            async with bridge.http.request(method, bridge.url + path) as response:
                assert response.status in (400, 404, 405), (path, response.status)
                assert response.content_type == "application/problem+json", path
                problem = await response.json()
                assert problem["status"] == response.status and problem["title"]

        # CORS stays off: no Access-Control-* headers, preflights are not answered.
        origin = {"Origin": "https://evil.example"}
        async with bridge.http.get(bridge.url + "/processes", headers=origin) as response:
            assert not any(h.lower().startswith("access-control-") for h in response.headers)
        async with bridge.http.options(
            bridge.url + "/processes",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        ) as response:
            assert response.status == 405
            assert "Access-Control-Allow-Origin" not in response.headers

        status, served = await bridge.get("/openapi.json")
        assert status == 200 and served["openapi"] == "3.1.0"
        async with bridge.http.get(bridge.url + "/docs") as response:
            page = await response.text()
            assert response.status == 200 and response.content_type == "text/html"
        for operation in OPERATIONS:
            assert f'id="{operation.id}"' in page
