"""The tool execution server (``mentor serve tools``).

``GET /health``, ``GET /tools`` (OpenAI schemas of every tool in the registry),
``POST /call`` ``{"name", "arguments"}`` -> ``{"ok", "content", "error"}``, ``POST /batch``
(a list of calls -> the list of results, in order) and, only when enabled, ``POST /execute``
(ReCall-compatible: ``{"env", "call", "timeout"}`` -> ``{"ok", "output", "result", "error",
"timed_out", ...}``) run in sandboxed worker processes (``mentor.serve.sandbox``).

``/call`` and ``/batch`` run the registry's tools through a ``mentor.tools.Executor``
(in-process tools, the configured search backend) in the thread pool, never on the event loop:
the registry is the one definition of every tool, so the server and in-process execution answer
identically. An invalid tool call is an answer (``ok: false`` with the executor's message); on
``/call`` its status is 404 (unknown tool) or 422 (invalid arguments or an execution error), so
that plain HTTP clients see it too; ``/batch`` answers 200 with one result per call.

``/execute`` is admitted fairly per client address (``SandboxPool``); a full queue is a 429
with ``Retry-After``; a job whose client disconnects is cancelled and its worker freed.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictStr, ValidationError

from mentor.serve.common import DEFAULT_MAX_BODY, SafeJSONResponse, error_response, harden
from mentor.serve.sandbox import SandboxBusy, SandboxLimits, SandboxPool
from mentor.tools import ALL_TOOLS, Executor, Observation, schemas

#: The most calls one ``/batch`` request may carry.
MAX_BATCH = 4096
#: Cap on a ``/call`` body: one call never needs more (``sum_numbers``' 10,000 numbers fit), and
#: parsing JSON holds the event loop (~25 ms per MiB), so bigger bodies are refused unread.
MAX_CALL_BODY = 512 * 1024
#: Tools that block on I/O run each in its own thread; the others of a batch share one.
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
    cancelled: bool = False
    duration: float = 0.0


def _run_all(executor: Executor, calls: list[CallRequest]) -> list[Observation]:
    return [executor.execute(c.name, c.arguments) for c in calls]


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the request body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _checked(report: dict[str, Any]) -> dict[str, Any]:
    """The worker's report as the response model, or an error result (never a 500)."""
    try:
        return ExecuteResult.model_validate(report).model_dump()
    except ValidationError:
        return ExecuteResult(ok=False, error="the sandbox returned a malformed report").model_dump()


def _health(pool: SandboxPool | None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "ok", "tools": len(ALL_TOOLS), "execute": pool is not None}
    if pool is not None:
        out.update(workers=pool.size, jobs=pool.jobs, worker_restarts=pool.restarts, waiting=pool.waiting,
                   running=pool.running, idle=pool.idle,
                   cancelled=pool.cancelled, refused=pool.refused, per_client_running=pool.per_client_running,
                   isolation=pool.isolation)
    return out


async def _run_batch(executor: Executor, calls: list[CallRequest]) -> list[dict[str, Any]]:
    """Answer ``/batch`` in order: quick tools in one thread-pool job, blocking ones (search) each in its own."""
    results: list[Observation | None] = [None] * len(calls)
    blocking = [i for i, c in enumerate(calls) if c.name in _BLOCKING_TOOLS]
    quick = [i for i, c in enumerate(calls) if c.name not in _BLOCKING_TOOLS]
    jobs = [run_in_threadpool(_run_all, executor, [calls[i] for i in quick])]
    jobs += [run_in_threadpool(executor.execute, calls[i].name, calls[i].arguments) for i in blocking]
    done = await asyncio.gather(*jobs)
    for i, obs in zip(quick, done[0], strict=True):
        results[i] = obs
    for i, obs in zip(blocking, done[1:], strict=True):
        results[i] = obs
    return [r.to_dict() for r in results if r is not None]


async def _execute_job(pool: SandboxPool | None, req: ExecuteRequest, request: Request) -> Any:
    """Run one ``/execute`` job; cancel it when its client goes away."""
    if pool is None:
        return error_response(404, "/execute is disabled; start the server with --enable-execute")
    if len(req.env) + len(req.call) > pool.limits.max_code_chars:
        return error_response(413, f"code too long (the limit is {pool.limits.max_code_chars} characters)")
    client = request.client.host if request.client else "-"
    job = asyncio.ensure_future(pool.run(req.env, req.call, req.timeout, client=client))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not job.done():  # the client went away (or this handler was cancelled): cancel its job
            job.cancel()
        gone.cancel()
    try:
        return SafeJSONResponse(_checked(await job))  # already checked: skip the response model
    except asyncio.CancelledError:
        if not gone.cancelled() and gone.done():
            return error_response(499, "client closed the request; its job was cancelled")
        raise
    except SandboxBusy as e:
        return error_response(429, f"sandbox busy: {e}; retry later",
                              headers={"Retry-After": str(max(1, round(e.retry_after)))})


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
        default_response_class=SafeJSONResponse,
    )
    app.state.pool = pool
    harden(app, max_body=max_body, token=token, path_limits={"/call": min(MAX_CALL_BODY, max_body)})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return _health(pool)

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
        obs = await run_in_threadpool(executor.execute, req.name, req.arguments)
        status = 200 if obs.ok else (404 if req.name not in ALL_TOOLS else 422)
        return SafeJSONResponse(status_code=status, content=obs.to_dict())

    @app.post("/batch", response_model=list[CallResult])
    async def batch(
        calls: Annotated[list[CallRequest], Body(max_length=MAX_BATCH, description="Calls, answered in order.")],
    ) -> list[dict[str, Any]]:
        return await _run_batch(executor, calls)

    @app.post("/execute", response_model=ExecuteResult, responses={404: {}, 429: {}})
    async def execute_code(req: ExecuteRequest, request: Request) -> Any:
        return await _execute_job(pool, req, request)

    return app
