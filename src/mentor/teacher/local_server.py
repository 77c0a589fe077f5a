"""Start a local OpenAI-compatible server (``transformers serve``) for tests, benchmarks and
the CPU demo: ``with transformers_serve("smollm2-135m") as base_url: ...``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(
    model: str | None = None, port: int | None = None, startup_timeout: float = 180.0, log: str | os.PathLike | None = None
) -> Iterator[str]:
    """Run ``transformers serve MODEL --host 127.0.0.1`` (the model resolved by
    ``mentor.models.resolve_model``: Hub id, local dir or ``smollm2-135m``), wait for
    ``/health``, yield the ``/v1`` base URL, and stop the process (its group) afterwards."""
    import httpx

    from mentor.models import resolve_model

    path = resolve_model(model)
    port = port or free_port()
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        raise RuntimeError("the `transformers` command is not installed (pip install 'transformers[serving]')")
    logf = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, "serve", path, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=logf, stderr=logf, env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
        start_new_session=True,
    )
    try:
        deadline = time.time() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with code {proc.returncode} (log: {log})")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"transformers serve did not start within {startup_timeout:.0f}s")
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
