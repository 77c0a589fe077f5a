"""Start a server as a child process and wait until it answers (tests, benchmarks, pipelines).

    with ServerProcess.start(["serve", "tools", "--enable-execute"]) as srv:
        httpx.get(srv.url + "/health")

``args`` are ``mentor`` CLI arguments (run as ``python -m mentor.cli ...``) unless ``module``
is given; ``--port`` is appended with a free loopback port when absent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


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
    ) -> ServerProcess:
        """Start ``mentor <args> --port P`` (or ``command + args``) and wait for ``health``."""
        import httpx

        args = list(args)
        if "--port" not in args:
            port = port or free_port(host)
            args += ["--port", str(port)]
        else:
            port = int(args[args.index("--port") + 1])
        cmd = list(command) if command else [sys.executable, "-m", "mentor.cli"]
        log = tempfile.NamedTemporaryFile("w+", prefix="mentor-server-", suffix=".log", delete=False)
        proc = subprocess.Popen(
            cmd + args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        srv = cls(proc=proc, url=f"http://{host}:{port}", log_path=log.name, _log=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}:\n{srv.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(srv.url + health, timeout=2.0, headers=headers).status_code == 200:
                    return srv
            time.sleep(0.1)
        tail = srv.log()
        srv.stop()
        raise TimeoutError(f"server did not answer {health} within {timeout} s:\n{tail}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL to the process group if needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
