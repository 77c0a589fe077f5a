"""What both servers share: JSON errors (4xx with a clear message, never a traceback, also for
malformed HTTP and slow clients), a request-body size cap, header and body read timeouts,
optional bearer-token auth (the token comes from an environment variable or a file, never from
the command line), the loopback rule, and running uvicorn."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Default cap on a request body (bytes). ``/batch`` of ~4,000 math calls fits.
DEFAULT_MAX_BODY = 2 * 1024 * 1024
#: Seconds a client may take to send a request's headers, and then between two body chunks
#: ($MENTOR_HTTP_HEADER_TIMEOUT, $MENTOR_HTTP_BODY_TIMEOUT).
HEADER_TIMEOUT = float(os.environ.get("MENTOR_HTTP_HEADER_TIMEOUT") or 10.0)
BODY_TIMEOUT = float(os.environ.get("MENTOR_HTTP_BODY_TIMEOUT") or 10.0)


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


class BodyTimeout(Exception):
    def __init__(self, seconds: float):
        self.seconds = seconds


class SafeJSONResponse(JSONResponse):
    """``JSONResponse`` that never fails on text: UTF-8 as usual, and content holding lone
    surrogates (which UTF-8 cannot carry) goes out ASCII-escaped (``"\\ud800"``), still valid JSON."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return SafeJSONResponse(status_code=status, content={"error": message, **extra}, headers=headers)


class TokenError(ValueError):
    pass


def read_token(token_file: str | os.PathLike | None, env_var: str) -> str | None:
    """The bearer token: the first line of ``token_file`` if given (it must not be readable by
    other users), else ``$env_var``, else ``None``. The variable is removed from this process's
    environment once read, so child processes never inherit it."""
    token = None
    if token_file:
        path = Path(token_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise TokenError(f"cannot read the token file {path}: {e.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenError(f"the token file {path} is readable by other users (chmod 600 it)")
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise TokenError(f"the token file {path} is empty")
    env = os.environ.pop(env_var, None)
    if token is None and env:
        token = env.strip() or None
    return token


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (what needs no token)."""
    if host.strip().lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BodyLimitMiddleware:
    """Refuse bodies above ``max_body`` bytes with 413: by ``Content-Length`` before reading,
    and by counting while reading (chunked uploads)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY, body_timeout: float = BODY_TIMEOUT,
                 path_limits: dict[str, int] | None = None):
        self.app, self.default_max, self.body_timeout = app, max_body, body_timeout
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body = self.path_limits.get(scope.get("path", ""), self.default_max)
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > max_body:
                    msg = (
                        f"request body too large ({length} bytes; the limit is {max_body} for {scope.get('path')})"
                        if length >= 0
                        else "invalid Content-Length header"
                    )
                    await error_response(413 if length >= 0 else 400, msg)(scope, receive, send)
                    return
        seen = 0
        complete = scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE")

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # after the body: waiting for a disconnect needs no timeout
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):  # no extra task, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:
                    raise BodyTooLarge(max_body)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        await self.app(scope, limited, send)


class BearerAuthMiddleware:
    """Refuse every request but ``open_paths`` without ``Authorization: Bearer <token>`` (401),
    compared in constant time. Plain ASGI: the request's ``receive`` is passed through untouched."""

    def __init__(self, app: ASGIApp, token: str, open_paths: tuple[str, ...] = ("/health",)):
        self.app, self.expected, self.open_paths = app, f"Bearer {token}".encode(), open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in self.open_paths:
            given = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
            if not secrets.compare_digest(given, self.expected):
                what = "missing" if not given else "wrong"
                await error_response(401, f"{what} bearer token (send 'Authorization: Bearer <token>')",
                                     headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
        return 400, f"request body is not valid JSON ({ctx.get('error', 'parse error')})"
    merged: dict[str, list[str]] = {}
    for e in errors[:20]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        # Union members show up as a trailing type tag ("arguments.dict[str,any]"): merge them.
        while loc and (loc[-1] in _TYPE_TAGS or "[" in loc[-1]):
            loc.pop()
        if e.get("type") == "missing" and not loc:
            merged.setdefault("", []).append("request body is required")
            continue
        msg = e.get("msg", "invalid")
        where = merged.setdefault(".".join(loc) if loc else "body", [])
        if msg not in where:
            where.append(msg)
    parts = [m[0] if not k else f"{k}: {' or '.join(m)}" for k, m in merged.items()]
    if len(errors) > 20:
        parts.append(f"... and {len(errors) - 20} more")
    return 422, "invalid request: " + "; ".join(parts)


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "function-after", "constrained-str"}


def harden(app: FastAPI, *, max_body: int = DEFAULT_MAX_BODY, token: str | None = None,
           open_paths: tuple[str, ...] = ("/health",), path_limits: dict[str, int] | None = None) -> FastAPI:
    """Install JSON error handlers, the body cap and (with ``token``) bearer auth on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe_validation(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # raised while FastAPI read the body
            return error_response(413, f"request body too large (the limit is {exc.__cause__.limit} bytes)")
        if isinstance(exc.__cause__, BodyTimeout):
            return error_response(408, f"request body not received in time (more than {exc.__cause__.seconds:g} s "
                                       "between chunks)", headers={"Connection": "close"})
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return SafeJSONResponse(status_code=exc.status_code, content={"error": message}, headers=exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, f"request body too large (the limit is {exc.limit} bytes)")

    @app.exception_handler(BodyTimeout)
    async def _body_timeout(request: Request, exc: BodyTimeout) -> JSONResponse:
        return error_response(408, f"request body not received in time (more than {exc.seconds:g} s "
                                   "between chunks)", headers={"Connection": "close"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # a bug of ours, not the client's
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, open_paths=open_paths)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body, path_limits=path_limits)
    return app


def _json_http_error(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def json_h11_protocol(header_timeout: float = HEADER_TIMEOUT):
    """uvicorn's h11 protocol, with JSON answers to malformed HTTP (400) and a deadline for a
    request's headers (408 and close): a client that sends half a request line holds nothing."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
                if self.conn.trailing_data[0]:  # a request was started but its headers never finished
                    self.transport.write(_json_http_error(
                        408, "Request Timeout", f"request headers not received within {header_timeout:g} s"))
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                self._arm_header_timer()  # part of a request line or headers is buffered
            elif self.conn.their_state is not h11.IDLE:
                self._disarm_header_timer()

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm_header_timer()  # the keep-alive timeout takes over

        def send_400_response(self, msg: str) -> None:
            self._disarm_header_timer()
            self.transport.write(_json_http_error(400, "Bad Request", "malformed HTTP request"))
            self.transport.close()

    return JSONH11Protocol


def run_server(app: Any, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn (one process; the event loop handles concurrency)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=15,
                http=json_h11_protocol(), h11_max_incomplete_event_size=64 * 1024)
