"""The sandbox worker ("zygote") of ``mentor serve tools --enable-execute``.

Started by the server as ``python -I -c <this file's text>`` with an empty environment and
``/`` as its working directory, so it imports nothing from the server and sees none of its
state. It reads length-prefixed JSON jobs on stdin and, for each, forks a fresh *job process*
that drops privileges (to ``nobody`` when started as root), sets resource limits (address
space, CPU seconds, no new processes, no file writes beyond a few KiB, few open files), runs
the job's ``env`` code and ``call`` with stdout/stderr captured up to a cap, and writes one
JSON result back through a pipe. The worker enforces the wall-clock timeout by killing the
job process; a job that loops, eats memory, forks or crashes dies alone and the worker lives on.

Only the standard library is used, on purpose. Do not import ``mentor`` here.
"""

import builtins
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

# Modules that jobs may import are loaded before the fork: after dropping privileges the job
# process may not be able to read the interpreter's library directory.
PRELOAD = (
    "math cmath decimal fractions statistics numbers random itertools functools operator "
    "collections heapq bisect re string json datetime time copy typing dataclasses enum"
).split()
for _name in PRELOAD:
    try:
        __import__(_name)
    except Exception:  # noqa: BLE001 - a missing optional module is not fatal
        pass

NOBODY = 65534
_HDR = struct.Struct(">I")


def read_frame(stream):
    head = stream.read(_HDR.size)
    if len(head) < _HDR.size:
        return None
    (n,) = _HDR.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return json.loads(data.decode("utf-8"))


def write_frame(stream, obj):
    data = json.dumps(obj).encode("utf-8")
    stream.write(_HDR.pack(len(data)) + data)
    stream.flush()


class CappedOutput(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and drops the rest."""

    def __init__(self, cap):
        self.cap, self.parts, self.size, self.truncated = cap, [], 0, False

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        if len(s) > room:
            self.truncated = True
        return len(s)

    def getvalue(self):
        return "".join(self.parts)


def _jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError, OverflowError, RecursionError):
        try:
            return repr(value)
        except Exception as e:  # noqa: BLE001
            return f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"


def _error_text(exc, limit=2000):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<env>", "<call>")]
    where = f" (line {frames[-1].lineno} of {frames[-1].filename[1:-1]})" if frames else ""
    text = f"{type(exc).__name__}: {exc}{where}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_job(job, wfd):
    """In the job process: lock down, run, report. Never returns."""
    result = {"ok": False, "output": "", "result": None, "error": None, "truncated": False}
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.chdir("/")
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        mem = int(job["memory_mb"]) * 1024 * 1024
        cpu = max(1, int(job["cpu_seconds"]))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wfd + 1, 16), max(wfd + 1, 16)))
    except Exception as e:  # noqa: BLE001 - refuse to run unconfined
        result["error"] = f"sandbox set-up failed: {type(e).__name__}: {e}"
        _report(result, wfd, 1 << 20)
        os._exit(0)

    out = CappedOutput(int(job["output_cap"]))
    sys.stdout = sys.stderr = out
    ns = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(compile(job.get("env") or "", "<env>", "exec"), ns)
        call = (job.get("call") or "").strip()
        value = ns.get("result")  # with no call, the env code may set `result` itself
        if call:
            try:
                code = compile(call, "<call>", "eval")
            except SyntaxError:
                exec(compile(call, "<call>", "exec"), ns)
                value = ns.get("result")
            else:
                value = eval(code, ns)
        result.update(ok=True, result=_jsonable(value))
    except BaseException as e:  # noqa: BLE001 - SystemExit, MemoryError, RecursionError, ...
        ns.clear()
        result["error"] = _error_text(e)
    ns.clear()
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    result["output"], result["truncated"] = out.getvalue(), out.truncated
    _report(result, wfd, int(job["output_cap"]) * 4 + 8192)
    os._exit(0)


def _report(result, wfd, cap):
    try:
        data = json.dumps(result).encode("utf-8")
    except Exception as e:  # noqa: BLE001
        data = json.dumps({"ok": False, "error": f"result not serialisable: {type(e).__name__}"}).encode()
    if len(data) > cap:
        data = json.dumps({"ok": False, "error": f"result too large ({len(data)} bytes)", "truncated": True}).encode()
    view = memoryview(data)
    while view:
        n = os.write(wfd, view)
        view = view[n:]


def supervise(job):
    """In the worker: fork a job process, wait for its report or the deadline."""
    timeout = float(job["timeout"])
    read_cap = int(job["output_cap"]) * 4 + 16384
    r, w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            run_job(job, w)
        finally:
            os._exit(0)
    os.close(w)
    deadline = start + timeout
    data, timed_out, too_big = bytearray(), False, False
    while True:
        remain = deadline - time.monotonic()
        if remain <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], remain)
        if not ready:
            timed_out = True
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
        if len(data) > read_cap:
            too_big = True
            break
    os.close(r)
    status = None
    while not timed_out:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(0.002)
    if status is None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    duration = time.monotonic() - start

    report = None
    if data and not too_big:
        try:
            report = json.loads(data.decode("utf-8"))
        except ValueError:
            report = None
    if report is None or timed_out:
        report = {"ok": False, "output": "", "result": None, "truncated": too_big}
        if timed_out:
            report["error"] = f"timed out after {timeout:g} s (job process killed)"
        elif too_big:
            report["error"] = "job produced more output than the cap (job process killed)"
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)", "SIGSEGV": " (crash)"}.get(name, "")
            report["error"] = f"job process killed by {name}{hint}"
        else:
            report["error"] = f"job process exited with code {os.WEXITSTATUS(status)} without a result"
    report["timed_out"] = timed_out
    report["duration"] = round(duration, 6)
    return report


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        job = read_frame(stdin)
        if job is None:
            return
        try:
            report = supervise(job)
        except Exception as e:  # noqa: BLE001 - the worker reports, never dies on a job
            report = {"ok": False, "output": "", "result": None, "error": f"sandbox error: {type(e).__name__}: {e}",
                      "timed_out": False, "duration": 0.0}
        write_frame(stdout, report)


if __name__ == "__main__":
    main()
