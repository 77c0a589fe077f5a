"""HTTP client of the tool execution server (``mentor serve tools``), pooled with httpx."""

from __future__ import annotations

import threading
from typing import Any

from mentor.tools.executor import Observation

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def _client(url: str):
    import httpx

    with _lock:
        if url not in _clients:
            _clients[url] = httpx.Client(
                base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
            )
        return _clients[url]


def call_remote(url: str, name: Any, arguments: Any) -> Observation:
    """One call through the server; transport failures become ``ok=False`` observations."""
    import httpx

    try:
        r = _client(url).post("/call", json={"name": name, "arguments": arguments})
    except httpx.HTTPError as e:
        return Observation.failure(f"tool server at {url} unreachable: {type(e).__name__}: {e}")
    try:
        body = r.json()
    except ValueError:
        return Observation.failure(f"tool server at {url} answered {r.status_code} with a non-JSON body")
    if r.status_code != 200:
        return Observation.failure(str(body.get("error") or body.get("detail") or body))
    return Observation(ok=bool(body["ok"]), content=str(body.get("content", "")), error=body.get("error"))
