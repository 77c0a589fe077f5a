"""Benchmarks: resolve a benchmark argument to a ``Benchmark`` through the task registry.

A benchmark argument is one of

- a JSONL file, its task recognised by its fields: ``problem``/``answer`` -> math; ``question``
  with ``answer`` or ``golden_answers`` (FlashRAG format), optionally ``context`` (HotpotQA) -> QA;
- a name a registered task knows: the paper's math sets (``aime24``, ``aime25``, ``amc23``,
  ``minervamath``, ``omni-math-512``, ``math-forge-hard``, plus ``math500``/``olympiadbench``),
  the retrieval-QA sets (``hotpotqa``, ``2wikimultihopqa``, ``bamboogle``: the paper's samples
  of FlashRAG's files, see ``mentor.tasks.qa``; ``hotpotqa-distractor``), the bundled
  synthetic task (``synthetic:test`` in-domain, ``synthetic:ood`` out-of-domain) and BFCL
  categories and groups (``bfcl`` = ``bfcl:v4``: every offline category; ``bfcl:simple_python``,
  ``bfcl:live_simple,multiple``, ``bfcl:ast``, ``bfcl:multi_turn``).

Named sets are read from the shared local copy when there is one (``$MENTOR_SHARED_BENCHMARKS``,
default ``../shared/benchmarks``), else from the Hugging Face Hub with ``datasets`` (FlashRAG's QA
sets: ``$MENTOR_FLASHRAG_DATA``, else the Hub).
"""

from __future__ import annotations

import os
from pathlib import Path

from mentor.tasks import Benchmark, Item, all_tasks, load_jsonl_benchmark, shared_benchmarks_dir

__all__ = ["Benchmark", "Item", "benchmark_names", "load_benchmark", "load_jsonl_benchmark", "shared_benchmarks_dir"]


def benchmark_names() -> list[str]:
    return [name for task in all_tasks() for name in task.names()]


def load_benchmark(spec: str | os.PathLike, limit: int | None = None) -> Benchmark:
    """Resolve a benchmark argument (file or name) to items; ``limit`` keeps the first N (per
    category for BFCL)."""
    bench = _load_benchmark(spec, limit)
    bench.meta["limit"] = limit
    return bench


def _load_benchmark(spec: str | os.PathLike, limit: int | None) -> Benchmark:
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file() or text.endswith((".jsonl", ".json")):
        return load_jsonl_benchmark(path, limit=limit)
    for task in all_tasks():
        key = task.aliases.get(text.lower(), text.lower())
        bench = task.load(key, limit)
        if bench is not None:
            return bench
    raise ValueError(f"unknown benchmark {text!r}: not a file, and not one of {', '.join(benchmark_names())}")
