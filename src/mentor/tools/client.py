"""HTTP client of the tool execution server (``mentor serve tools``), pooled with httpx.

``call_remote(url, name, arguments)`` makes one call (``POST /call``); ``call_remote_batch(url,
calls)`` sends many in one request (``POST /batch``) and returns their observations in order.
``mentor.tools.Executor(tool_server=url)`` is the usual way in. A bearer token (for a server started with ``--token-file`` or ``$MENTOR_TOOL_TOKEN``) is read from ``$MENTOR_TOOL_TOKEN``.
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
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        return Observation.failure(_error_of(url, r))
    return _observation(body)


#: Bytes of JSON per ``/batch`` request: below the server's 2 MiB body cap with room to spare.
BATCH_BYTES = 1536 * 1024


def _observation(item: Any) -> Observation:
    """One result of a ``/batch`` answer; anything but ``{"ok": bool, ...}`` is a failure."""
    if not isinstance(item, dict) or not isinstance(item.get("ok"), bool):
        return Observation.failure(f"tool server answered with a malformed result ({str(item)[:100]})")
    error = item.get("error")
    return Observation(ok=item["ok"], content=str(item.get("content", "")),
                       error=error if isinstance(error, str) or error is None else str(error))


def _chunks(payloads: list[bytes], chunk: int, max_bytes: int) -> list[list[int]]:
    """Indices of ``payloads`` grouped so that each group has at most ``chunk`` calls and its
    JSON list at most ``max_bytes`` bytes (a call larger than that on its own is a group of one)."""
    groups: list[list[int]] = []
    size = 0
    for i, p in enumerate(payloads):
        if not groups or len(groups[-1]) >= chunk or size + len(p) + 1 > max_bytes:
            groups.append([])
            size = 1
        groups[-1].append(i)
        size += len(p) + 1
    return groups


def call_remote_batch(url: str, calls: Sequence[tuple[Any, Any]], chunk: int = 1024,
                      max_bytes: int = BATCH_BYTES) -> list[Observation]:
    """Many ``(name, arguments)`` calls through ``POST /batch``; observations in order. Requests
    are split by size (at most ``max_bytes`` of JSON) and count (``chunk``); malformed answers
    become ``ok=False`` observations, never exceptions."""
    import json

    import httpx

    out: list[Observation | None] = [None] * len(calls)
    send = [i for i, (n, a) in enumerate(calls) if _sendable(n, a)]
    for i, (n, a) in enumerate(calls):
        if not _sendable(n, a):
            out[i] = execute_local(n, a)
    payloads: list[bytes] = []
    for i in list(send):
        try:
            payloads.append(json.dumps({"name": calls[i][0], "arguments": calls[i][1]}).encode("utf-8"))
        except (TypeError, ValueError, UnicodeEncodeError):  # not JSON-able: answered in-process
            out[i] = execute_local(*calls[i])
            send.remove(i)
    for group in _chunks(payloads, chunk, max_bytes):
        part = [send[g] for g in group]
        content = b"[" + b",".join(payloads[g] for g in group) + b"]"
        try:
            r = _client(url).post("/batch", content=content, headers={"content-type": "application/json"})
            body = r.json() if r.status_code == 200 else None
            error = None if isinstance(body, list) and len(body) == len(part) else _error_of(url, r)
        except httpx.HTTPError as e:
            body, error = None, f"tool server at {url} unreachable: {type(e).__name__}: {e}"
        except ValueError:
            body, error = None, f"tool server at {url} answered with a non-JSON body"
        for j, i in enumerate(part):
            out[i] = Observation.failure(error) if error is not None else _observation(body[j])
    return [o if o is not None else Observation.failure("no result") for o in out]
