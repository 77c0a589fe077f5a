"""The tool execution server (``mentor serve tools``).

``GET /health``, ``GET /tools`` (OpenAI schemas of every tool in the registry),
``POST /call`` ``{"name", "arguments"}`` -> ``{"ok", "content", "error"}``, ``POST /batch``
(a list of calls -> the list of results, in order) and, only when enabled, ``POST /execute``
(ReCall-compatible: ``{"env", "call", "timeout"}`` -> ``{"ok", "output", "result", "error",
"timed_out", ...}``) run in sandboxed worker processes (``mentor.serve.sandbox``).

``/call`` and ``/batch`` run the registry's tools in-process (a ``mentor.tools.Executor``): the registry is the one
definition of every tool, so the server and in-process execution answer identically. An
invalid tool call is an answer (``ok: false`` with the executor's message); on ``/call`` its
status is 404 (unknown tool) or 422 (invalid arguments or an execution error), so that plain
HTTP clients see it too; ``/batch`` answers 200 with one result per call.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr

from mentor.serve.common import DEFAULT_MAX_BODY, error_response, harden
from mentor.serve.sandbox import SandboxBusy, SandboxLimits, SandboxPool
from mentor.tools import ALL_TOOLS, Executor, Observation, schemas

#: The most calls one ``/batch`` request may carry.
MAX_BATCH = 4096
#: Tools that block on I/O run in the thread pool; the math tools run on the event loop.
_BLOCKING_TOOLS = frozenset({"wikipedia_search"})


class CallRequest(BaseModel):
    name: StrictStr = Field(min_length=1, max_length=256, description="Tool name, e.g. 'add'.")
    arguments: dict[str, Any] | StrictStr | None = Field(
        default=None, description="Arguments as a JSON object (or a string holding one)."
    )


class CallResult(BaseModel):
    ok: bool
    content: str
    error: str | None = None


class ExecuteRequest(BaseModel):
    env: StrictStr = Field(default="", description="Python code run first (the tool's definition).")
    call: StrictStr = Field(default="", description="An expression to evaluate (or statements setting `result`).")
    timeout: float | None = Field(default=None, gt=0, description="Wall-clock seconds (capped by the server).")


class ExecuteResult(BaseModel):
    ok: bool
    output: str = ""
    result: Any = None
    error: str | None = None
    timed_out: bool = False
    truncated: bool = False
    duration: float = 0.0


async def _execute(executor: Executor, name: str, arguments: Any) -> Observation:
    if name in _BLOCKING_TOOLS:
        return await run_in_threadpool(executor.execute, name, arguments)
    return executor.execute(name, arguments)


def create_tools_app(
    *,
    token: str | None = None,
    enable_execute: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    workers: int | None = None,
    limits: SandboxLimits | None = None,
    retriever_url: str | None = None,
) -> FastAPI:
    """The FastAPI app of the tool server. ``retriever_url`` (or ``$MENTOR_RETRIEVER_URL``)
    points ``wikipedia_search`` at a ``mentor serve retriever``."""
    executor = Executor(search=retriever_url or os.environ.get("MENTOR_RETRIEVER_URL") or None)  # in-process tools
    pool = SandboxPool(workers, limits) if enable_execute else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if pool is not None:
            await pool.start()
        try:
            yield
        finally:
            if pool is not None:
                await pool.close()

    app = FastAPI(
        title="mentor tool server",
        description="Executes the registry's tools over HTTP (and, when enabled, sandboxed Python).",
        version="1",
        lifespan=lifespan,
    )
    app.state.pool = pool
    harden(app, max_body=max_body, token=token)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "tools": len(ALL_TOOLS), "execute": pool is not None}
        if pool is not None:
            out.update(workers=pool.size, jobs=pool.jobs, worker_restarts=pool.restarts)
        return out

    @app.get("/tools")
    async def tools() -> list[dict[str, Any]]:
        return schemas(list(ALL_TOOLS))

    @app.post(
        "/call",
        response_model=CallResult,
        responses={404: {"model": CallResult, "description": "unknown tool"},
                   422: {"model": CallResult, "description": "invalid call"}},
    )
    async def call(req: CallRequest) -> JSONResponse:
        obs = await _execute(executor, req.name, req.arguments)
        status = 200 if obs.ok else (404 if req.name not in ALL_TOOLS else 422)
        return JSONResponse(status_code=status, content=obs.to_dict())

    @app.post("/batch", response_model=list[CallResult])
    async def batch(
        calls: Annotated[list[CallRequest], Body(max_length=MAX_BATCH, description="Calls, answered in order.")],
    ) -> list[dict[str, Any]]:
        results = await asyncio.gather(*(_execute(executor, c.name, c.arguments) for c in calls))
        return [r.to_dict() for r in results]

    @app.post("/execute", response_model=ExecuteResult, responses={404: {}, 429: {}})
    async def execute_code(req: ExecuteRequest) -> Any:
        if pool is None:
            return error_response(404, "/execute is disabled; start the server with --enable-execute")
        if len(req.env) + len(req.call) > pool.limits.max_code_chars:
            return error_response(413, f"code too long (the limit is {pool.limits.max_code_chars} characters)")
        try:
            return await pool.run(req.env, req.call, req.timeout)
        except SandboxBusy as e:
            return error_response(429, f"sandbox busy: {e}; retry later")

    return app
