"""HTTP client of the tool execution server (``mentor serve tools``), pooled with httpx.

``call_remote(url, name, arguments)`` makes one call (``POST /call``); ``call_remote_batch(url,
calls)`` sends many in one request (``POST /batch``) and returns their observations in order.
``mentor.tools.Executor(tool_server=url)`` is the usual way in. A token for a server started with ``--token`` is read from ``$MENTOR_TOOL_TOKEN``.
Transport failures become ``ok=False`` observations: nothing raises out of these functions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from mentor.tools.local import Observation, execute_local

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def _client(url: str):
    import httpx

    with _lock:
        if url not in _clients:
            token = os.environ.get("MENTOR_TOOL_TOKEN")
            _clients[url] = httpx.Client(
                base_url=url,
                timeout=30.0,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                transport=httpx.HTTPTransport(retries=2),  # retries failed connects only
                headers={"Authorization": f"Bearer {token}"} if token else None,
            )
        return _clients[url]


def _sendable(name: Any, arguments: Any) -> bool:
    """Whether the server's request model accepts this call; other calls are invalid anyway
    and are answered in-process, with the very message the server would compute."""
    return isinstance(name, str) and bool(name) and (arguments is None or isinstance(arguments, dict | str))


def _error_of(url: str, r) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"tool server at {url} answered {r.status_code} with a non-JSON body"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)
    return str(body)


def call_remote(url: str, name: Any, arguments: Any) -> Observation:
    """One call through the server; transport failures become ``ok=False`` observations."""
    import httpx

    if not _sendable(name, arguments):
        return execute_local(name, arguments)
    try:
        r = _client(url).post("/call", json={"name": name, "arguments": arguments})
    except httpx.HTTPError as e:
        return Observation.failure(f"tool server at {url} unreachable: {type(e).__name__}: {e}")
    try:
        body = r.json()
    except ValueError:
        return Observation.failure(f"tool server at {url} answered {r.status_code} with a non-JSON body")
    if not isinstance(body, dict) or "ok" not in body:
        return Observation.failure(_error_of(url, r))
    return Observation(ok=bool(body["ok"]), content=str(body.get("content", "")), error=body.get("error"))


def call_remote_batch(url: str, calls: Sequence[tuple[Any, Any]], chunk: int = 1024) -> list[Observation]:
    """Many ``(name, arguments)`` calls through ``POST /batch``; observations in order."""
    import httpx

    out: list[Observation | None] = [None] * len(calls)
    send = [i for i, (n, a) in enumerate(calls) if _sendable(n, a)]
    for i, (n, a) in enumerate(calls):
        if not _sendable(n, a):
            out[i] = execute_local(n, a)
    for start in range(0, len(send), chunk):
        part = send[start : start + chunk]
        payload = [{"name": calls[i][0], "arguments": calls[i][1]} for i in part]
        try:
            r = _client(url).post("/batch", json=payload)
            body = r.json() if r.status_code == 200 else None
            error = None if isinstance(body, list) and len(body) == len(part) else _error_of(url, r)
        except httpx.HTTPError as e:
            body, error = None, f"tool server at {url} unreachable: {type(e).__name__}: {e}"
        except ValueError:
            body, error = None, f"tool server at {url} answered with a non-JSON body"
        for j, i in enumerate(part):
            if error is not None:
                out[i] = Observation.failure(error)
            else:
                item = body[j]
                out[i] = Observation(ok=bool(item["ok"]), content=str(item.get("content", "")),
                                     error=item.get("error"))
    return [o if o is not None else Observation.failure("no result") for o in out]
