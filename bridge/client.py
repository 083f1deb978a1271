"""A small client of the bridge's HTTP API, for the command line (``bridge processes ...``)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from bridge.asl.errors import BridgeError
from bridge.asl.types import JSON


class ApiError(BridgeError):
    def __init__(self, status: int, body: JSON) -> None:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.body = body


class Client:
    """``BRIDGE_URL`` (default http://127.0.0.1:8080) and ``BRIDGE_TOKEN`` by default."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = (url or os.environ.get("BRIDGE_URL") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token or os.environ.get("BRIDGE_TOKEN")

    def call(
        self, method: str, path: str, body: JSON = None, headers: dict[str, str] | None = None
    ) -> JSON:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=70) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise ApiError(exc.code, payload) from None
