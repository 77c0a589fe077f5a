"""The one way to start a local server as a child process, wait for it and stop it.

- ``ServerProcess.start(args)``: a ``mentor`` server (``serve tools``, ``serve retriever``) or
  any ``command``; ``--port`` is appended with a free loopback port when absent;
- ``serve_model(server, model)``: an OpenAI-compatible model server (``vllm``, ``transformers``
  or a command template with ``{model}`` and ``{port}``) as a context manager yielding its
  ``/v1`` base URL -- what the pipeline's evaluation uses with ``eval.server``.

    with ServerProcess.start(["serve", "tools", "--enable-execute"]) as srv:
        httpx.get(srv.url + "/health")
    with serve_model("transformers", "smollm2-135m") as base_url:
        ...

Each server runs in its own session; stopping sends SIGTERM (to the whole process group for
model servers, whose workers are children), then SIGKILL to the group.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mentor.models import resolve_model

#: named model-server commands; any other string is a template with {model} and {port}
SERVER_COMMANDS = {
    "vllm": "vllm serve {model} --host 127.0.0.1 --port {port} --enable-auto-tool-choice --tool-call-parser hermes",
    "transformers": "transformers serve {model} --host 127.0.0.1 --port {port} --device cpu",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    log_path: str
    _log: object = field(repr=False, default=None)
    #: a temporary log, deleted on stop (a log file the caller named is kept)
    _own_log: bool = field(repr=False, default=True)
    #: SIGTERM goes to the whole process group (model servers with worker processes)
    group: bool = False

    @classmethod
    def start(
        cls,
        args: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout: float = 60.0,
        health: str = "/health",
        headers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        log: str | os.PathLike | None = None,
        group: bool = False,
    ) -> ServerProcess:
        """Start ``mentor <args> --port P`` (or ``command + args``) and wait for ``health``."""
        args = list(args)
        if "--port" not in args:
            port = port or free_port(host)
            args += ["--port", str(port)]
        else:
            port = int(args[args.index("--port") + 1])
        cmd = list(command) if command else [sys.executable, "-m", "mentor.cli"]
        return cls.launch(cmd + args, f"http://{host}:{port}", timeout=timeout, health=health, headers=headers,
                          env=env, log=log, group=group)

    @classmethod
    def launch(
        cls,
        argv: Sequence[str],
        url: str,
        *,
        timeout: float = 60.0,
        health: str = "/health",
        headers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        log: str | os.PathLike | None = None,
        group: bool = False,
    ) -> ServerProcess:
        """Run ``argv`` (which serves ``url``) and wait until ``url + health`` answers 200."""
        import httpx

        logf = open(log, "a+b") if log else tempfile.NamedTemporaryFile("w+b", prefix="mentor-server-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            list(argv), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        srv = cls(proc=proc, url=url, log_path=str(logf.name), _log=logf, _own_log=log is None, group=group)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{Path(argv[0]).name} exited with code {proc.returncode} (log: {srv.log_path}):\n{srv.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + health, timeout=2.0, headers=headers).status_code == 200:
                    return srv
            time.sleep(0.1)
        tail = srv.log()
        srv.stop()
        raise TimeoutError(f"{Path(argv[0]).name} did not answer {health} within {timeout:.0f} s (log: {log}):\n{tail}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL to the process group if needed."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self.group:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                else:
                    self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        if self._own_log:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def server_command(server: str, model: str, port: int) -> list[str]:
    """The argv for ``server`` (a name in :data:`SERVER_COMMANDS` or a template) serving
    ``model`` on ``port``; the executable is looked up next to this Python first (a venv)."""
    template = SERVER_COMMANDS.get(server, server)
    if "{model}" not in template or "{port}" not in template:
        raise ValueError(
            f"server {server!r}: expected one of {', '.join(SERVER_COMMANDS)} or a command template with {{model}} and {{port}}"
        )
    argv = [part.format(model=model, port=port) for part in shlex.split(template)]
    exe = shutil.which(argv[0], path=str(Path(sys.executable).parent)) or shutil.which(argv[0])
    if exe is None:
        hint = {"vllm": "pip install vllm (GPU machines)", "transformers": "pip install 'transformers[serving]'"}
        raise RuntimeError(f"the `{argv[0]}` command is not installed ({hint.get(argv[0], 'not on PATH')})")
    return [exe, *argv[1:]]


@contextlib.contextmanager
def serve_model(
    server: str,
    model: str | None = None,
    port: int | None = None,
    startup_timeout: float = 180.0,
    log: str | os.PathLike | None = None,
) -> Iterator[str]:
    """Run ``server`` for ``model`` (resolved by ``mentor.models.resolve_model``: Hub id, local
    dir or a bundled name) on 127.0.0.1, wait for ``/health``, yield the ``/v1`` base URL, and
    stop the process group afterwards. The served model name is the resolved path. A local
    directory is served offline (``HF_HUB_OFFLINE=1`` unless set: nothing to fetch); a Hub id
    with the caller's environment, so that the server downloads a model not cached yet (the GPU
    pipeline's first evaluation of ``Qwen/Qwen2.5-7B-Instruct``)."""
    port = port or free_port()
    resolved = resolve_model(model)
    argv = server_command(server, resolved, port)
    local = Path(resolved).expanduser().is_dir()
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")} if local else {}
    with ServerProcess.launch(argv, f"http://127.0.0.1:{port}", timeout=startup_timeout, env=env, log=log, group=True):
        yield f"http://127.0.0.1:{port}/v1"


def transformers_serve(
    model: str | None = None, port: int | None = None, startup_timeout: float = 180.0, log: str | os.PathLike | None = None
) -> contextlib.AbstractContextManager[str]:
    """``transformers serve MODEL`` on CPU (tests, benchmarks, the CPU demo)."""
    return serve_model("transformers", model, port=port, startup_timeout=startup_timeout, log=log)
