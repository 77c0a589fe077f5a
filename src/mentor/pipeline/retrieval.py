"""The evaluation stages' retriever: ``eval.retriever`` started as a ``mentor serve retriever``
child process on 127.0.0.1 (``mentor.generation.server.ServerProcess``, as ``eval.server``
starts the model server) before a stage's evaluations, handed to them as the search backend
of the ``Executor`` they run tool calls with, and stopped when they are done. What it served
goes into the stage's marker (``stages/<stage>.json``: ``retriever``); its log is
``logs/retriever-<name>.log``, one per evaluation (``eval-<methods>``, ``teacher``): two evaluations of
one run directory at once (``benchmarks/repro_study.py --jobs``) do not write one log. They share
the index directory (default ``<run>/retriever``): an index built there (not a prebuilt
``faiss_index``) is built once, under a lock (``build_or_load_index``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mentor.generation.server import ServerProcess
from mentor.pipeline.config import PipelineError, RetrieverSection
from mentor.tools.executor import Executor
from mentor.tools.search import HTTPSearch


def _check_files(section: RetrieverSection) -> None:
    for key in ("corpus", "faiss_index"):
        value = getattr(section, key)
        if value and not Path(value).expanduser().is_file():
            raise PipelineError(
                f"eval.retriever.{key}: {value} not found (relative paths are read from {Path.cwd()}); "
                "docs/evaluation.md and the comments of configs/pipeline/gpu-qwen2.5-1.5b.yaml say how to get "
                "FlashRAG's wiki-18 corpus and E5 index"
            )


def _health(url: str) -> dict[str, Any]:
    import httpx

    try:
        return httpx.get(url + "/health", timeout=10).json()
    except (httpx.HTTPError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


@contextlib.contextmanager
def eval_retriever(section: RetrieverSection | None, run_dir: Path,
                   announce: Callable[[str], None] = print, name: str = "eval",
                   ) -> Iterator[tuple[Executor | None, dict[str, Any]]]:
    """``(executor, record)``: an ``Executor`` whose search backend is the started server (``None``
    without ``section``) and the record of the server (url, what it serves, queries answered,
    stopped), complete once the block is left."""
    record: dict[str, Any] = {}
    if section is None:
        yield None, record
        return
    _check_files(section)
    log = run_dir / "logs" / f"retriever-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    announce(f"starting the retriever {section.label} (log: {log})")
    t0 = time.perf_counter()
    try:
        srv = ServerProcess.start(section.args(run_dir / "retriever"), timeout=float(section.startup_timeout), log=log)
    except (RuntimeError, TimeoutError) as e:
        raise PipelineError(f"the retriever (eval.retriever) did not start: {e}") from None
    record.update(label=section.label, url=srv.url, pid=srv.proc.pid, startup_seconds=round(time.perf_counter() - t0, 2),
                  log=str(log), serving=_health(srv.url))
    try:
        yield Executor(search=HTTPSearch(srv.url, label=section.label)), record
    finally:
        record["queries"] = _health(srv.url).get("queries")
        srv.stop()
        record.update(stopped=not srv.alive(), exit_code=srv.proc.returncode)
        announce(f"stopped the retriever ({record['queries']} queries answered)")
