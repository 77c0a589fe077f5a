"""Evaluation: run a model on a benchmark with its task and score every item.

``evaluate(model, benchmark, ...)`` returns (and with ``out=`` writes) one result dict per
(model, benchmark): ``benchmark``, ``model``, ``n``, ``accuracy`` (0-1), ``settings``,
``timings``, tool statistics and ``records`` (per item: id, prediction, gold, correct, the full
trajectory, the tool names called and the number of invalid calls). Scores are computed from
the records by the benchmark's task (``mentor.tasks``): the prompts and tools it offers, how it
generates (the multi-turn tool loop, or one turn for BFCL) and its metric (``math_equal`` for
math, exact match for QA, BFCL's AST checker; BFCL with several categories: the macro average).

Tool calls go through the ``executor`` passed in (default: in-process; ``tool_server=`` builds
one for a ``mentor serve tools`` server); a QA task puts its search backend in it (BM25 over the
file's own context paragraphs, else ``retriever_url``, else the executor's own search backend,
e.g. the pipeline's retriever). ``tools=False`` runs the same prompts without tools (the
tool-effect analysis, Fig. 1). A sampled benchmark (the paper's 2,000 questions of a dev set)
adds ``sample`` (population, size, seed, ids) to the result.

Item-level resume: with ``out=`` (or ``partial=``) the items run in batches and each finished
record is appended to ``<out>.partial.jsonl``; a re-run with the same benchmark, model and
settings reads it back and runs only the items not in it. The file is removed once the result
is complete.

Decoding (``settings["decoding"]``): ``temperature=None`` (and ``top_p=None``) is the model's
recommended sampling, read from the ``generation_config.json`` of the model the generator runs
(``mentor.generation.decoding.model_source``; a bare scripted generator without ``model`` has
none: greedy); ``temperature=0`` is greedy; other values are explicit
(``mentor.generation.decoding``). ``sampling`` (a ``mentor.generation.Sampling``), when given,
replaces ``temperature``, ``top_p``, ``max_new_tokens`` and ``seed``. ``scorers`` picks a task's
named scorer by kind, e.g. ``{"math": "exact"}`` (default: each task's own; ``settings["scorer"]``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mentor.analysis.metrics import tool_counts, tool_stats
from mentor.eval.benchmarks import Benchmark, load_benchmark
from mentor.eval.partial import PartialRecords, partial_key
from mentor.generation import Sampling, make_generator
from mentor.generation.decoding import describe, model_source, resolve_sampling
from mentor.io import run_metadata, write_json
from mentor.models import DEFAULT_MODEL
from mentor.progress import ProgressBar
from mentor.tasks import RunOptions, Task, get_task
from mentor.tools.executor import Executor

SCHEMA_VERSION = 1


def _resolve(benchmark: str | os.PathLike | Benchmark, limit: int | None) -> Benchmark:
    # (a loaded benchmark is cut here; names/files are cut while loading: BFCL's limit is per category)
    if not isinstance(benchmark, Benchmark):
        bench = load_benchmark(benchmark, limit=limit)
    elif limit is not None and benchmark.meta.get("limit") != limit:
        bench = benchmark.limit(limit)
    else:
        bench = benchmark
    if not bench.items:
        raise ValueError(f"benchmark {bench.name!r} has no items")
    return bench


def evaluate(
    model: str | None = None,
    benchmark: str | os.PathLike | Benchmark = "aime24",
    *,
    generator: Any = None,
    limit: int | None = None,
    tools: bool = True,
    max_turns: int = 4,
    max_new_tokens: int = 1024,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int = 0,
    sampling: Sampling | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    retriever_url: str | None = None,
    tool_server: str | None = None,
    executor: Executor | None = None,
    top_k: int = 5,
    base_url: str | None = None,
    progress: bool | Callable[[int], None] = True,
    out: str | os.PathLike | None = None,
    label: str | None = None,
    partial: str | os.PathLike | None = None,
    on_record: Callable[[Mapping[str, Any]], None] | None = None,
    scorers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (or an already-built ``generator``) on ``benchmark``; see the module doc
    (decoding, ``sampling`` and ``scorers`` included). ``on_record(record)`` is called for every
    finished item (records read back from an interrupted run first), e.g. for a live accuracy."""
    t_start = time.perf_counter()
    bench = _resolve(benchmark, limit)
    task = get_task(bench.kind).with_scorer((scorers or {}).get(bench.kind))
    limit = limit if limit is not None else bench.meta.get("limit")
    t_loaded = time.perf_counter()
    generator_given = generator is not None
    if generator is None:
        generator = make_generator(model, base_url=base_url, batch_size=batch_size, dtype=dtype)
    model_name = label or (str(model) if model is not None else getattr(generator, "name", None) or "smollm2-135m")
    t_model = time.perf_counter()
    source = model_source(generator, model if model is not None or generator_given else DEFAULT_MODEL)
    sampling, decoding = _decoding(source, sampling, temperature, top_p, max_new_tokens, seed)
    seed = sampling.seed if sampling.seed is not None else seed
    executor = executor or Executor(tool_server=tool_server)
    settings: dict[str, Any] = {
        "tools": bool(tools),
        **task.settings(tools, max_turns),
        "max_new_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "decoding": decoding,
        "scorer": task.scorer_name,
        "seed": seed,
        "batch_size": getattr(generator, "batch_size", batch_size),
        "limit": limit,
        "generator": type(generator).__name__,
        "base_url": base_url or getattr(getattr(generator, "config", None), "base_url", None),
        "tool_server": executor.tool_server,
    }
    t0 = time.perf_counter()
    if tools:
        executor, described = task.executor(bench, executor, retriever_url, top_k)
        settings.update(described)
    index_seconds = time.perf_counter() - t0 if tools and settings.get("retriever") else 0.0
    resume = PartialRecords.at(partial, out, partial_key(bench, model_name, settings))
    opts = RunOptions(tools, max_turns, sampling, executor, progress)
    records, gen_seconds, score_seconds = _run_items(task, bench, generator, opts, resume, settings, on_record)
    result = _result(task, bench, model_name, records, settings)
    result["timings"] = _timings(records, t_start, (t_loaded, t_model), index_seconds, gen_seconds, score_seconds)
    result["metadata"] = run_metadata(settings, seed=seed, benchmark=bench.name, model=model_name)
    result["records"] = records
    if out is not None:
        write_json(out, result)
    if resume is not None:
        resume.remove()
    return result


def _decoding(model: str | None, sampling: Sampling | None, temperature: float | None, top_p: float | None,
              max_new_tokens: int, seed: int) -> tuple[Sampling, dict[str, Any]]:
    if sampling is not None:
        return sampling, describe(sampling)
    return resolve_sampling(model, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)


def _run_items(task: Task, bench: Benchmark, generator: Any, opts: RunOptions, resume: PartialRecords | None,
               settings: dict[str, Any], on_record: Callable[[Mapping[str, Any]], None] | None = None,
               ) -> tuple[list[dict[str, Any]], float, float]:
    """Generate and score every item: ``(records, generate seconds, score seconds)``. With
    ``resume`` the items run in batches of the generator's batch size, each finished record is
    appended to it, and records it holds from an interrupted run are not redone."""
    done = resume.load(bench.items) if resume is not None else {}
    if resume is not None:
        settings["resumed_items"] = len(done)
    for i in sorted(done) if on_record else ():
        on_record(done[i])
    pending = [i for i in range(len(bench.items)) if i not in done]
    step = max(1, int(settings.get("batch_size") or 8)) if resume is not None else max(1, len(pending))
    gen_seconds = score_seconds = 0.0
    # one bar over the whole benchmark (resumed items count as done), advanced by each batch
    bar = ProgressBar(len(bench.items), bench.name, opts.progress, completed=len(done), unit="items")
    tick = (lambda _n: bar.advance()) if opts.progress else False
    try:
        for start in range(0, len(pending), step):
            idx = pending[start : start + step]
            sub = bench.subset(idx)
            t_gen = time.perf_counter()
            outputs = task.generate(generator, sub, replace(opts, progress=tick))
            t_score = time.perf_counter()
            new = task.records(sub, outputs)
            gen_seconds += t_score - t_gen
            score_seconds += time.perf_counter() - t_score
            for i, rec in zip(idx, new, strict=True):
                done[i] = rec
                if resume is not None:
                    resume.append(i, rec)
                if on_record is not None:
                    on_record(rec)
    finally:
        bar.close()
    return [done[i] for i in range(len(bench.items))], gen_seconds, score_seconds


def _result(task: Task, bench: Benchmark, model_name: str, records: list[dict[str, Any]],
            settings: dict[str, Any]) -> dict[str, Any]:
    """The result's head: what was evaluated, the task's summary, the settings and tool statistics."""
    out = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": bench.name,
        "kind": bench.kind,
        "domain": bench.domain,
        "source": bench.source,
        "model": model_name,
        **task.summarize(records),
        "settings": settings,
    }
    if bench.meta.get("sample"):  # a sampled benchmark (the paper's 2,000 of a dev set): which items, how drawn
        out["sample"] = bench.meta["sample"]
    if task.trajectories:
        trajs = [r["trajectory"]["messages"] for r in records]
        out["tool_stats"] = tool_stats(trajs).to_dict()
        out["tool_counts"] = dict(tool_counts(trajs))
    return out


def _timings(records: Sequence[Mapping[str, Any]], t_start: float, loaded: tuple[float, float],
             index_seconds: float, gen_seconds: float, score_seconds: float) -> dict[str, Any]:
    tokens = sum(r["generated_tokens"] for r in records)
    t_loaded, t_model = loaded
    return {
        "load_benchmark_seconds": round(t_loaded - t_start, 4),
        "load_model_seconds": round(t_model - t_loaded, 4),
        "index_seconds": round(index_seconds, 4),
        "generate_seconds": round(gen_seconds, 4),
        "score_seconds": round(score_seconds, 4),
        "total_seconds": round(time.perf_counter() - t_start, 4),
        "items_per_second": len(records) / gen_seconds if gen_seconds else None,
        "generated_tokens": tokens,
        "tokens_per_second": tokens / gen_seconds if gen_seconds else None,
    }


def result_name(benchmark: str, tools: bool) -> str:
    """The file a result is written to: ``<benchmark>[.no_tools].json`` (unsafe characters -> ``_``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(benchmark))
    return f"{safe}{'' if tools else '.no_tools'}.json"


def result_filename(result: Mapping[str, Any]) -> str:
    return result_name(result["benchmark"], result["settings"]["tools"])


def macro_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per task kind (math / qa / bfcl): the macro average of the benchmarks' accuracies."""
    by_kind: dict[str, dict[str, float]] = {}
    for r in results:
        key = r["kind"] if r["settings"]["tools"] else f"{r['kind']} (no tools)"
        by_kind.setdefault(key, {})[r["benchmark"]] = r["accuracy"]
    return {k: {"benchmarks": v, "macro_average": sum(v.values()) / len(v)} for k, v in by_kind.items()}
