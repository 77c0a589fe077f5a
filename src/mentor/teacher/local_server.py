"""Start a local OpenAI-compatible server for one model and stop it afterwards:
``with serve_model("vllm", "runs/x/models/mentor/final") as base_url: ...``.

Used by the pipeline's evaluation on GPUs (``eval.server: vllm`` serves each trained model with
vLLM in turn), by the tests and benchmarks (``transformers serve`` on CPU) and by anyone with
another server: the command is a template with ``{model}`` and ``{port}``."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: named server commands; any other string is a template with {model} and {port}
SERVER_COMMANDS = {
    "vllm": "vllm serve {model} --host 127.0.0.1 --port {port} --enable-auto-tool-choice --tool-call-parser hermes",
    "transformers": "transformers serve {model} --host 127.0.0.1 --port {port} --device cpu",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    stop the process group afterwards. The served model name is the resolved path."""
    import httpx

    from mentor.models import resolve_model

    path = resolve_model(model)
    port = port or free_port()
    argv = server_command(server, path, port)
    logf = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        argv, stdout=logf, stderr=logf, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
        start_new_session=True,
    )
    name = Path(argv[0]).name
    try:
        deadline = time.time() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} (log: {log})")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"{name} did not start within {startup_timeout:.0f}s (log: {log})")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if log:
            logf.close()


def transformers_serve(
    model: str | None = None, port: int | None = None, startup_timeout: float = 180.0, log: str | os.PathLike | None = None
) -> contextlib.AbstractContextManager[str]:
    """``transformers serve MODEL`` on CPU (tests, benchmarks, the CPU demo)."""
    return serve_model("transformers", model, port=port, startup_timeout=startup_timeout, log=log)
