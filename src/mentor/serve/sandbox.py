"""A pool of sandbox workers that run posted Python code (``POST /execute``).

Each worker is a separate interpreter started from ``_zygote.py`` (stdlib only, empty
environment, ``/`` as working directory), so it has no access to the server's memory, modules,
token or files it could not read anyway. Every job runs in a process forked from a worker for
that job alone, under ``nobody`` when the server runs as root, with ``setrlimit`` limits on
address space, CPU seconds, process creation (none), file size and open files; its output is
captured up to a cap. The worker kills it at the wall-clock timeout. A job that crashes or is
killed takes only its own process down; a worker that dies or stops answering is killed and
replaced, and the request gets an ``ok: false`` result saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HDR = struct.Struct(">I")
_ZYGOTE_SOURCE = (Path(__file__).with_name("_zygote.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-job limits. ``timeout`` is the default wall-clock limit; requests may ask for less
    or more, up to ``max_timeout``."""

    timeout: float = 5.0
    max_timeout: float = 30.0
    memory_mb: int = 512
    output_cap: int = 64 * 1024  # characters of captured stdout/stderr
    max_code_chars: int = 256 * 1024
    max_queue: int = 256  # jobs waiting for a worker before new ones are refused (429)


class SandboxBusy(RuntimeError):
    """Too many jobs are waiting for a worker."""


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.jobs = 0

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def run(self, job: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = json.dumps(job).encode("utf-8")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_HDR.pack(len(data)) + data)
        await self.proc.stdin.drain()
        head = await asyncio.wait_for(self.proc.stdout.readexactly(_HDR.size), deadline)
        (n,) = _HDR.unpack(head)
        body = await asyncio.wait_for(self.proc.stdout.readexactly(n), deadline)
        self.jobs += 1
        return json.loads(body.decode("utf-8"))

    async def stop(self) -> None:
        """Close stdin (the worker exits on EOF); kill it if it does not within a second."""
        if self.alive and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 1.0)
        await self.kill()

    async def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)


class SandboxPool:
    """``size`` workers; ``await pool.run(env, call, timeout)`` -> result dict (never raises
    for anything the job does; raises ``SandboxBusy`` when the queue is full)."""

    def __init__(self, size: int | None = None, limits: SandboxLimits | None = None):
        self.size = max(1, size or min(4, os.cpu_count() or 1))
        self.limits = limits or SandboxLimits()
        self._idle: asyncio.Queue[_Worker] | None = None
        self._waiting = 0
        self.restarts = 0
        self.jobs = 0

    async def _spawn(self) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _ZYGOTE_SOURCE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"},
            cwd="/",
            start_new_session=True,
        )
        return _Worker(proc)

    async def start(self) -> None:
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._idle.put_nowait(await self._spawn())

    async def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            await self._idle.get_nowait().stop()

    def job(self, env: str, call: str, timeout: float | None) -> dict[str, Any]:
        lim = self.limits
        t = lim.timeout if timeout is None else min(max(float(timeout), 0.05), lim.max_timeout)
        return {
            "env": env,
            "call": call,
            "timeout": t,
            "cpu_seconds": int(t) + 1,
            "memory_mb": lim.memory_mb,
            "output_cap": lim.output_cap,
        }

    async def run(self, env: str, call: str = "", timeout: float | None = None) -> dict[str, Any]:
        if self._idle is None:
            raise RuntimeError("SandboxPool.start() was not awaited")
        if self._waiting >= self.limits.max_queue:
            raise SandboxBusy(f"{self._waiting} jobs are already waiting for a sandbox worker")
        job = self.job(env, call, timeout)
        self._waiting += 1
        try:
            worker = await self._idle.get()
        finally:
            self._waiting -= 1
        start = time.monotonic()
        try:
            result = await worker.run(job, job["timeout"] + 5.0)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
            # The worker itself misbehaved (it should always answer): replace it.
            await worker.kill()
            self.restarts += 1
            worker = await self._spawn()
            result = {
                "ok": False,
                "output": "",
                "result": None,
                "error": f"sandbox worker failed ({type(e).__name__}); it was replaced",
                "timed_out": isinstance(e, asyncio.TimeoutError),
                "duration": round(time.monotonic() - start, 6),
            }
        except BaseException:
            await worker.kill()
            self.restarts += 1
            self._idle.put_nowait(await self._spawn())
            raise
        if not worker.alive:
            self.restarts += 1
            worker = await self._spawn()
        self.jobs += 1
        self._idle.put_nowait(worker)
        return result
