"""What both servers share: JSON errors (4xx with a clear message, never a traceback), a
request-body size cap, optional bearer-token auth, the loopback rule, and running uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Default cap on a request body (bytes). ``/batch`` of ~4,000 math calls fits.
DEFAULT_MAX_BODY = 2 * 1024 * 1024


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, **extra})


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

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > self.max_body:
                    msg = (
                        f"request body too large ({length} bytes; the limit is {self.max_body})"
                        if length >= 0
                        else "invalid Content-Length header"
                    )
                    await error_response(413 if length >= 0 else 400, msg)(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        await self.app(scope, limited, send)


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
           open_paths: tuple[str, ...] = ("/health",)) -> FastAPI:
    """Install JSON error handlers, the body cap and (with ``token``) bearer auth on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe_validation(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # raised while FastAPI read the body
            return error_response(413, f"request body too large (the limit is {exc.__cause__.limit} bytes)")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(status_code=exc.status_code, content={"error": message}, headers=exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, f"request body too large (the limit is {exc.limit} bytes)")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:  # a bug of ours, not the client's
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")

    if token:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def _auth(request: Request, call_next):
            if request.url.path not in open_paths:
                given = request.headers.get("authorization", "").encode()
                if not secrets.compare_digest(given, expected):
                    what = "missing" if not given else "wrong"
                    return JSONResponse(
                        status_code=401,
                        content={"error": f"{what} bearer token (send 'Authorization: Bearer <token>')"},
                        headers={"WWW-Authenticate": "Bearer"},
                    )
            return await call_next(request)

    app.add_middleware(BodyLimitMiddleware, max_body=max_body)
    return app


def run_server(app: Any, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn (one process; the event loop handles concurrency)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=30)
