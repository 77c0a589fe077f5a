"""A pool of sandbox workers that run posted Python code (``POST /execute``).

Each worker is a separate interpreter started from ``_zygote.py`` (stdlib only, empty
environment, ``/`` as working directory) that owns one *slot* of the pool: its own uid, and,
where the kernel allows it, its own mount, PID, network, IPC and UTS namespaces with a
read-only view of the file system. Every job runs in a process forked from its worker for
that job alone, with a fresh ``tmpfs`` scratch directory (removed after the job), a seccomp
filter (no ``execve``, no sockets), resource limits and a wall-clock timeout; see
``_zygote.py`` for the details and ``SandboxPool.isolation`` for what this machine granted.

Admission is fair: each client (by its address) has at most ``per_client_running`` jobs on
workers, so other clients always find a free one, and at most ``per_client_queue`` waiting;
waiting clients are served round-robin; no job waits longer than ``max_queue_wait`` for a
worker. A full queue or a wait that runs out raise ``SandboxBusy`` (the server answers 429 with
``Retry-After``). Cancelling ``run`` (the client went away) removes a waiting job or kills a
running one, and the worker is free again right after.
"""

from __future__ import annotations

import asyncio
import collections
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
#: The largest frame a worker may send (a report carries at most ~4 x output_cap + result_cap).
_MAX_FRAME = 64 << 20


@dataclass(frozen=True)
class SandboxLimits:
    """Per-job limits and admission rules. ``timeout`` is the default wall-clock limit;
    requests may ask for less or more, up to ``max_timeout``."""

    timeout: float = 5.0
    max_timeout: float = 30.0
    memory_mb: int = 512
    output_cap: int = 64 * 1024  # characters of captured stdout/stderr
    result_cap: int = 1 << 20  # bytes of the JSON of the job's result value
    max_code_chars: int = 256 * 1024
    file_bytes: int = 1 << 20  # RLIMIT_FSIZE: the largest file a job may write
    scratch_bytes: int = 4 << 20  # total bytes a job may keep in its scratch tmpfs (/tmp)
    scratch_inodes: int = 256  # files and directories in it
    max_queue: int = 256  # jobs waiting for a worker, all clients together
    per_client_queue: int = 64  # jobs of one client waiting for a worker
    per_client_running: int | None = None  # None: workers - max(1, workers // 4)
    max_queue_wait: float = 20.0  # seconds a job may wait for a worker before a 429
    namespaces: bool = True  # use Linux namespaces when running as root and the kernel allows
    require_seccomp: bool = True  # refuse to start when the seccomp filter cannot be installed


class SandboxBusy(RuntimeError):
    """The job cannot be admitted now; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class WorkerFailed(RuntimeError):
    pass


class _Worker:
    def __init__(self, slot: int, proc: asyncio.subprocess.Process):
        self.slot, self.proc = slot, proc
        self.jobs = 0
        self.busy = False
        self.sent = False  # the current job was handed to the worker process
        self.cancel_requested = False
        self.isolation: dict[str, Any] = {}

    @property
    def alive(self) -> bool:
        out = self.proc.stdout
        return self.proc.returncode is None and out is not None and not out.at_eof() and out.exception() is None

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode("utf-8")
        assert self.proc.stdin is not None
        if self.proc.stdin.is_closing():
            raise ConnectionResetError("worker stdin closed")
        self.proc.stdin.write(_HDR.pack(len(data)) + data)

    async def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        head = await asyncio.wait_for(self.proc.stdout.readexactly(_HDR.size), timeout)
        (n,) = _HDR.unpack(head)
        if n > _MAX_FRAME:
            raise WorkerFailed(f"frame of {n} bytes")
        body = await asyncio.wait_for(self.proc.stdout.readexactly(n), timeout)
        obj = json.loads(body.decode("utf-8"))
        if not isinstance(obj, dict):
            raise WorkerFailed("frame is not an object")
        return obj

    def cancel(self) -> None:
        """Ask the worker to kill the running job now (its client went away); a job not yet
        handed over is never sent."""
        self.cancel_requested = True
        if self.sent:
            with contextlib.suppress(Exception):
                self.send({"cancel": True})

    async def stop(self) -> None:
        """Close stdin (the worker exits on EOF); kill it if it does not within a second."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 1.0)
        await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)


def _failure(error: str, start: float, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "output": "", "result": None, "error": error, "timed_out": False, "truncated": False,
            "duration": round(time.monotonic() - start, 6), **extra}


class SandboxPool:
    """``size`` workers; ``await pool.run(env, call, timeout, client=...)`` -> result dict
    (never raises for anything the job does; raises ``SandboxBusy`` when it cannot be admitted)."""

    def __init__(self, size: int | None = None, limits: SandboxLimits | None = None):
        # More workers than cores: one client may hold only some of them (fair admission),
        # and an idle worker costs only memory.
        self.size = max(2, size or max(4, min(16, 2 * (os.cpu_count() or 1))))
        self.limits = limits or SandboxLimits()
        cap = self.limits.per_client_running
        self.per_client_running = max(1, cap if cap else self.size - max(1, self.size // 4))
        # One uid per slot; a range per server process so two servers on one host differ too.
        self.uid_base = 1_000_000 + (os.getpid() % 30_000) * 64
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._queues: dict[str, collections.deque[asyncio.Future]] = {}
        self._rr: collections.deque[str] = collections.deque()
        self._running: collections.Counter[str] = collections.Counter()
        self._waiting = 0
        self._namespaces = self.limits.namespaces
        self._started = False
        self._closing = False
        self._respawns: set[asyncio.Task] = set()
        self.isolation: dict[str, Any] = {}
        self.restarts = 0
        self.jobs = 0
        self.cancelled = 0
        self.refused = 0

    # ---------------------------------------------------------------- workers

    async def _spawn_once(self, slot: int, namespaces: bool) -> _Worker:
        config = {"uid": self.uid_base + slot, "namespaces": namespaces,
                  "scratch_bytes": self.limits.scratch_bytes, "scratch_inodes": self.limits.scratch_inodes}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", _ZYGOTE_SOURCE, json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"},
            cwd="/",
            start_new_session=True,
            limit=_MAX_FRAME,
        )
        worker = _Worker(slot, proc)
        try:
            ready = await worker.recv(30.0)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, OSError, WorkerFailed) as e:
            await worker.kill()
            raise WorkerFailed(f"worker did not start ({type(e).__name__})") from None
        worker.isolation = ready.get("isolation") or {}
        return worker

    async def _spawn(self, slot: int) -> _Worker:
        try:
            worker = await self._spawn_once(slot, self._namespaces)
        except WorkerFailed:
            if not self._namespaces:
                raise
            # Namespaces were granted but setting them up failed: run without them.
            self._namespaces = False
            worker = await self._spawn_once(slot, False)
        self._all.add(worker)
        if not self.isolation:
            self.isolation = dict(worker.isolation)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker`` and start another in its slot, in the background."""
        self._all.discard(worker)
        self.restarts += 1

        async def respawn():
            await worker.kill()
            for attempt in range(5):
                if self._closing:
                    return
                try:
                    new = await self._spawn(worker.slot)
                    break
                except WorkerFailed:
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                return
            if self._closing:
                await new.stop()
                return
            self._idle.append(new)
            self._dispatch()

        task = asyncio.ensure_future(respawn())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def start(self) -> None:
        first = await self._spawn(0)
        if self.limits.require_seccomp and not first.isolation.get("seccomp"):
            await first.stop()
            raise RuntimeError("the /execute sandbox cannot install its seccomp filter on this machine "
                               f"({'; '.join(first.isolation.get('notes') or []) or 'unknown reason'}); "
                               "install libseccomp2 and pyseccomp, or pass SandboxLimits(require_seccomp=False)")
        rest = await asyncio.gather(*(self._spawn(i) for i in range(1, self.size)))
        self._idle = [first, *rest]
        self._started = True

    async def close(self) -> None:
        self._closing = True
        for task in list(self._respawns):
            task.cancel()
        for q in self._queues.values():
            for fut in q:
                fut.cancel()
        await asyncio.gather(*(w.stop() for w in list(self._all)), return_exceptions=True)
        self._idle.clear()

    # ---------------------------------------------------------------- admission

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return sum(self._running.values())

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _dispatch(self) -> None:
        """Hand idle workers to waiting jobs: clients in round-robin order, each below its cap."""
        while self._idle and self._rr:
            for _ in range(len(self._rr)):
                client = self._rr[0]
                queue = self._queues.get(client)
                while queue and queue[0].done():
                    queue.popleft()
                if not queue:
                    self._rr.popleft()
                    self._queues.pop(client, None)
                    break
                self._rr.rotate(-1)
                if self._running[client] >= self.per_client_running:
                    continue
                worker = self._take_idle()
                if worker is None:
                    return
                fut = queue.popleft()
                self._waiting -= 1
                self._running[client] += 1
                worker.busy = True
                fut.set_result(worker)
                break
            else:
                return  # every waiting client is at its cap

    def _take_idle(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
            self._replace(worker)  # died while idle: never hand it a job
        return None

    def _release(self, worker: _Worker, client: str) -> None:
        worker.busy = worker.sent = worker.cancel_requested = False
        self._running[client] -= 1
        if self._running[client] <= 0:
            del self._running[client]
        if worker.alive and not self._closing:
            self._idle.append(worker)
        elif not self._closing:
            self._replace(worker)
        self._dispatch()

    async def _acquire(self, client: str) -> _Worker:
        lim = self.limits
        queue = self._queues.get(client)
        if self._waiting >= lim.max_queue:
            self.refused += 1
            raise SandboxBusy(f"{self._waiting} jobs are already waiting for a sandbox worker", lim.timeout)
        if queue is not None and len(queue) >= lim.per_client_queue:
            self.refused += 1
            raise SandboxBusy(f"this client already has {len(queue)} jobs waiting (the limit is "
                              f"{lim.per_client_queue})", lim.timeout)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if queue is None:
            queue = self._queues[client] = collections.deque()
            self._rr.append(client)
        queue.append(fut)
        self._waiting += 1
        self._dispatch()
        try:
            await asyncio.wait({fut}, timeout=lim.max_queue_wait)
        except asyncio.CancelledError:
            self._abandon(fut, client)
            raise
        if not fut.done():
            self._abandon(fut, client)
            self.refused += 1
            raise SandboxBusy(f"no sandbox worker became free within {lim.max_queue_wait:g} s", lim.timeout)
        return fut.result()

    def _abandon(self, fut: asyncio.Future, client: str) -> None:
        if fut.done() and not fut.cancelled():
            self._release(fut.result(), client)  # it got a worker just now: give it back
            return
        fut.cancel()
        queue = self._queues.get(client)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(fut)
                self._waiting -= 1
        self._dispatch()

    # ---------------------------------------------------------------- jobs

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
            "result_cap": lim.result_cap,
            "file_bytes": lim.file_bytes,
            "require_seccomp": lim.require_seccomp,
        }

    async def run(self, env: str, call: str = "", timeout: float | None = None, *, client: str = "-") -> dict[str, Any]:
        if not self._started:
            raise RuntimeError("SandboxPool.start() was not awaited")
        job = self.job(env, call, timeout)
        worker = await self._acquire(client)
        task = asyncio.ensure_future(self._run_on(worker, job, client))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The client went away: the worker kills the job and reports; _run_on then frees
            # the worker. Nothing waits for that here.
            self.cancelled += 1
            worker.cancel()
            raise

    async def _run_on(self, worker: _Worker, job: dict[str, Any], client: str) -> dict[str, Any]:
        start = time.monotonic()
        holder = [worker]
        try:
            return await self._run_with_retry(holder, job, start)
        finally:
            self._release(holder[0], client)

    async def _run_with_retry(self, holder: list[_Worker], job: dict[str, Any], start: float) -> dict[str, Any]:
        for attempt in (0, 1):
            worker = holder[0]
            if worker.cancel_requested:
                return _failure("cancelled: the client went away before the job started", start, cancelled=True)
            try:
                worker.send(job)
                worker.sent = True
                report = await worker.recv(job["timeout"] + 5.0)
            except asyncio.TimeoutError:
                await worker.kill()  # _release starts a new worker in its slot
                return _failure("sandbox worker stopped answering; it was replaced", start, timed_out=True)
            except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, WorkerFailed) as e:
                # The worker died (it never does for anything a job does): replace it and, once,
                # run the job on a fresh worker.
                self._all.discard(worker)
                await worker.kill()
                self.restarts += 1
                if attempt == 0 and not self._closing:
                    try:
                        holder[0] = await self._spawn(worker.slot)
                        holder[0].busy = True
                        holder[0].cancel_requested = worker.cancel_requested
                        continue
                    except WorkerFailed:
                        pass
                return _failure(f"sandbox worker failed ({type(e).__name__}); it was replaced", start)
            worker.jobs += 1
            self.jobs += 1
            return report
        raise AssertionError("unreachable")  # pragma: no cover
