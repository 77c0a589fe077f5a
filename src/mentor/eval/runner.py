"""Evaluation: run a model on a benchmark with the project's rollout runner and score every item.

``evaluate(model, benchmark, ...)`` returns (and with ``out=`` writes) one result dict per
(model, benchmark): ``benchmark``, ``model``, ``n``, ``accuracy`` (0-1), ``settings``,
``timings``, tool statistics and ``records`` (per item: id, prediction, gold, correct, the full
trajectory, the tool names called and the number of invalid calls). Scores are computed from
the records: ``accuracy`` is the mean of ``correct`` (BFCL with several categories: the macro
average over categories, as the per-category numbers in ``subsets``).

- math (and the synthetic splits): the 12 math tools; ``math_equal`` (math-verify) on the final
  ``\\boxed{}``.
- retrieval QA: only ``wikipedia_search``, top-``top_k`` passages from an in-process BM25 index
  over the file's context paragraphs or from a retriever server; exact match after SQuAD
  normalisation against every gold answer.
- BFCL: each item's own functions as tools, one assistant turn, BFCL's AST checker.

``tools=False`` runs the same prompts without tools (the tool-effect analysis, Fig. 1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.eval.benchmarks import Benchmark, Item, load_benchmark

SCHEMA_VERSION = 1


class TopK:
    """A search backend that always returns ``k`` passages (the paper's top-5 per query)."""

    def __init__(self, backend: Any, k: int = 5):
        self.backend, self.k = backend, k

    def search(self, query: str, top_n: int = 5) -> list[Any]:
        return self.backend.search(query, self.k)


def make_generator(
    model: str | None = None,
    base_url: str | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    api_key: str | None = None,
) -> Any:
    """A generator for the rollout runner: transformers (``HFGenerator``) by default, or an
    OpenAI-compatible server (vLLM, SGLang, ``transformers serve``) when ``base_url`` is given."""
    if base_url:
        from mentor.teacher.openai_backend import OpenAIConfig, OpenAIGenerator

        cfg = OpenAIConfig(base_url=base_url, model=str(model or "default"), concurrency=batch_size)
        if api_key:
            os.environ.setdefault(cfg.api_key_env, api_key)
        gen = OpenAIGenerator(cfg)
        gen.name = str(model)
        gen.batch_size = batch_size
        return gen
    from mentor.rollout import HFGenerator

    return HFGenerator.from_name(model, batch_size=batch_size, dtype=dtype)


def _search_backend(bench: Benchmark, retriever_url: str | None, top_k: int) -> tuple[Any, str]:
    from mentor.tools import InMemoryBM25
    from mentor.tools.search import HTTPSearch

    if retriever_url:
        return TopK(HTTPSearch(retriever_url), top_k), f"server:{retriever_url}"
    if bench.corpus:
        return TopK(InMemoryBM25(bench.corpus), top_k), f"bm25:in-process:{len(bench.corpus)} passages"
    raise ValueError(
        f"benchmark {bench.name!r} has no context paragraphs to index: start a retriever "
        "(`mentor serve retriever`) and pass --retriever-url"
    )


def _score(kind: str, prediction: str | None, gold: Any) -> bool:
    from mentor.answers import math_equal, qa_exact_match

    if kind == "math":
        return math_equal(prediction, gold)
    return qa_exact_match(prediction, gold)


def _bfcl_generate(generator: Any, items: Sequence[Item], tools: bool, sampling: Any, progress: bool) -> list[Any]:
    """One assistant turn per item, each with its own tools (batched when the generator can)."""
    from mentor.progress import ProgressBar

    bar = ProgressBar(len(items), "bfcl", progress, unit="items")
    out = []
    try:
        if hasattr(generator, "generate_rendered"):
            bs = max(1, getattr(generator, "batch_size", 8))
            texts = [generator.render(it.messages, it.tools if tools else None) for it in items]
            for s in range(0, len(texts), bs):
                gens = generator.generate_rendered(texts[s : s + bs], sampling)
                out.extend(gens)
                for _ in gens:
                    bar.advance()
        else:
            for it in items:
                out.extend(generator.generate([it.messages], it.tools if tools else None, sampling))
                bar.advance()
    finally:
        bar.close()
    return out


def evaluate(
    model: str | None = None,
    benchmark: str | os.PathLike | Benchmark = "aime24",
    *,
    generator: Any = None,
    limit: int | None = None,
    tools: bool = True,
    max_turns: int = 4,
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    dtype: str = "float32",
    retriever_url: str | None = None,
    tool_server: str | None = None,
    top_k: int = 5,
    base_url: str | None = None,
    progress: bool | Callable[[int], None] = True,
    out: str | os.PathLike | None = None,
    label: str | None = None,
    partial: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (or an already-built ``generator``) on ``benchmark``; see the module doc.

    Item-level resume: with ``partial`` (default ``<out>.partial.jsonl`` when ``out`` is given)
    the items run in batches and each finished record is appended to that file; a re-run with the
    same benchmark, model and settings reads it back and runs only the items not in it. The file
    is removed once the result is complete."""
    from mentor.analysis.metrics import tool_counts, tool_stats
    from mentor.io import run_metadata, write_json
    from mentor.progress import ProgressBar
    from mentor.prompts import TASK_TOOLS
    from mentor.rollout import Sampling
    from mentor.tools import search as search_mod
    from mentor.tools.executor import get_tool_server, set_tool_server

    t_start = time.perf_counter()
    # (a loaded benchmark is cut here; names/files are cut while loading: BFCL's limit is per category)
    if not isinstance(benchmark, Benchmark):
        bench = load_benchmark(benchmark, limit=limit)
    elif limit is not None and benchmark.meta.get("limit") != limit:
        bench = benchmark.limit(limit)
    else:
        bench = benchmark
    limit = limit if limit is not None else bench.meta.get("limit")
    if not bench.items:
        raise ValueError(f"benchmark {bench.name!r} has no items")
    t_loaded = time.perf_counter()
    if generator is None:
        generator = make_generator(model, base_url=base_url, batch_size=batch_size, dtype=dtype)
    model_name = label or (str(model) if model is not None else getattr(generator, "name", None) or "smollm2-135m")
    t_model = time.perf_counter()

    sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    toolset = TASK_TOOLS["qa" if bench.kind == "qa" else "math"] if tools and bench.kind != "bfcl" else None
    settings: dict[str, Any] = {
        "tools": bool(tools),
        "toolset": toolset if bench.kind != "bfcl" else ("per-item BFCL functions" if tools else None),
        "max_turns": max_turns if bench.kind != "bfcl" else 1,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "batch_size": getattr(generator, "batch_size", batch_size),
        "limit": limit,
        "generator": type(generator).__name__,
        "base_url": base_url or getattr(getattr(generator, "config", None), "base_url", None),
        "tool_server": tool_server,
    }

    old_backend, old_server = search_mod._BACKEND, get_tool_server()
    index_seconds = 0.0
    records: list[dict[str, Any]] = []
    try:
        if tool_server:
            set_tool_server(tool_server)
        if bench.kind == "qa" and tools:
            t0 = time.perf_counter()
            backend, desc = _search_backend(bench, retriever_url, top_k)
            search_mod.set_search_backend(backend)
            index_seconds = time.perf_counter() - t0
            settings.update(retriever=desc, top_k=top_k)
        partial_file = PartialRecords.at(partial, out, _partial_key(bench, model_name, settings))
        done = partial_file.load(bench.items) if partial_file else {}
        if partial_file:
            settings["resumed_items"] = len(done)  # records read back from an interrupted run
        pending = [i for i in range(len(bench.items)) if i not in done]
        step = max(1, int(settings["batch_size"] or 8)) if partial_file else max(1, len(pending))
        gen_seconds = score_seconds = 0.0
        # one bar over the whole benchmark (resumed items count as done), advanced by each batch
        bar = ProgressBar(len(bench.items), bench.name, progress, completed=len(done), unit="items")
        tick = (lambda _n: bar.advance()) if progress else False
        try:
            for start in range(0, len(pending), step):
                idx = pending[start : start + step]
                new, g, sc = _run_items(bench, [bench.items[i] for i in idx], generator, toolset, tools, max_turns, sampling, tick)
                gen_seconds, score_seconds = gen_seconds + g, score_seconds + sc
                for i, rec in zip(idx, new, strict=True):
                    done[i] = rec
                    if partial_file:
                        partial_file.append(i, rec)
        finally:
            bar.close()
        records = [done[i] for i in range(len(bench.items))]
    finally:
        search_mod._BACKEND = old_backend
        set_tool_server(old_server)

    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": bench.name,
        "kind": bench.kind,
        "domain": bench.domain,
        "source": bench.source,
        "model": model_name,
    }
    result.update(summarize(records, bench.kind))
    tokens = sum(r["generated_tokens"] for r in records)
    total = time.perf_counter() - t_start
    result["settings"] = settings
    result["timings"] = {
        "load_benchmark_seconds": round(t_loaded - t_start, 4),
        "load_model_seconds": round(t_model - t_loaded, 4),
        "index_seconds": round(index_seconds, 4),
        "generate_seconds": round(gen_seconds, 4),
        "score_seconds": round(score_seconds, 4),
        "total_seconds": round(total, 4),
        "items_per_second": len(records) / gen_seconds if gen_seconds else None,
        "generated_tokens": tokens,
        "tokens_per_second": tokens / gen_seconds if gen_seconds else None,
    }
    if bench.kind != "bfcl":
        trajs = [r["trajectory"]["messages"] for r in records]
        result["tool_stats"] = tool_stats(trajs).to_dict()
        result["tool_counts"] = dict(tool_counts(trajs))
    result["metadata"] = run_metadata(settings, seed=seed, benchmark=bench.name, model=model_name)
    result["records"] = records
    if out is not None:
        write_json(out, result)
    if partial_file:
        partial_file.remove()
    return result


def _run_items(bench: Benchmark, items: Sequence[Item], generator: Any, toolset: str | None, tools: bool,
               max_turns: int, sampling: Any, progress: Any) -> tuple[list[dict[str, Any]], float, float]:
    """Generate and score ``items``; ``(records, generate seconds, score seconds)``."""
    from mentor.prompts import build_messages
    from mentor.rollout import rollout

    records: list[dict[str, Any]] = []
    t_gen = time.perf_counter()
    if bench.kind == "bfcl":
        from mentor.eval import bfcl

        gens = _bfcl_generate(generator, items, tools, sampling, progress)
        gen_seconds = time.perf_counter() - t_gen
        t_score = time.perf_counter()
        for item, gen in zip(items, gens, strict=True):
            verdict = bfcl.check(item, gen.message)
            calls = gen.message.get("tool_calls") or []
            records.append(
                {
                    "id": item.id,
                    "category": item.meta["category"],
                    "question": item.question,
                    "prediction": verdict["decoded"],
                    "gold": item.gold,
                    "correct": verdict["valid"],
                    "error": verdict["error"],
                    "tool_names": [c["function"]["name"] for c in calls],
                    "num_tool_calls": len(calls) + (gen.message.get("content") or "").count("<tool_call>"),
                    "invalid_calls": (gen.message.get("content") or "").count("<tool_call>"),
                    "generated_tokens": gen.tokens,
                    "turns": 1,
                    "completion": [gen.message],
                }
            )
    else:
        prompts = [build_messages(it.question) for it in items]
        rolls = rollout(generator, prompts, tools=toolset, max_turns=max_turns, sampling=sampling, progress=progress, description=bench.name)
        gen_seconds = time.perf_counter() - t_gen
        t_score = time.perf_counter()
        for item, r in zip(items, rolls, strict=True):
            traj = r.trajectory
            records.append(
                {
                    "id": item.id,
                    "question": item.question,
                    "prediction": traj.final_answer,
                    "gold": item.gold,
                    "correct": _score(bench.kind, traj.final_answer, item.gold),
                    "tool_names": traj.tool_names,
                    "num_tool_calls": traj.num_tool_calls,
                    "invalid_calls": traj.num_invalid_calls,
                    "generated_tokens": r.generated_tokens,
                    "turns": r.turns,
                    "truncated": r.truncated,
                    "trajectory": traj.to_dict(),
                    "completion": r.completion,
                }
            )
    return records, gen_seconds, time.perf_counter() - t_score


def _partial_key(bench: Benchmark, model: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("tools", "max_turns", "max_new_tokens", "temperature", "top_p", "seed", "limit", "retriever", "top_k")
    return {"benchmark": bench.name, "source": bench.source, "model": model, "n": len(bench.items),
            **{k: settings.get(k) for k in keep}}


class PartialRecords:
    """An append-only JSONL of finished records (``{"index", "id", "record"}`` per line) after a
    header line with the run's key; a file with another key is started afresh."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path, self.key = path, key

    @classmethod
    def at(cls, partial: str | os.PathLike | None, out: str | os.PathLike | None, key: dict[str, Any]) -> PartialRecords | None:
        if partial is None and out is None:
            return None
        return cls(Path(partial) if partial is not None else Path(str(out) + ".partial.jsonl"), key)

    def load(self, items: Sequence[Item]) -> dict[int, dict[str, Any]]:
        import json

        from mentor.io import append_jsonl, repair_jsonl

        done: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            repair_jsonl(self.path)
            lines = [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
            if lines and lines[0].get("partial_of") == json.loads(json.dumps(self.key, default=str)):
                for row in lines[1:]:
                    i = row["index"]
                    if 0 <= i < len(items) and items[i].id == row["id"]:
                        done[i] = row["record"]
                return done
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        append_jsonl(self.path, {"partial_of": self.key})
        return done

    def append(self, index: int, record: dict[str, Any]) -> None:
        from mentor.io import append_jsonl

        append_jsonl(self.path, {"index": index, "id": record["id"], "record": record})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def summarize(records: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """``n``, ``correct``, ``accuracy`` (and BFCL per-category ``subsets``) from the records."""
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    out: dict[str, Any] = {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}
    if kind == "bfcl":
        cats: dict[str, list[bool]] = {}
        for r in records:
            cats.setdefault(r["category"], []).append(bool(r["correct"]))
        out["subsets"] = {c: {"n": len(v), "accuracy": sum(v) / len(v)} for c, v in cats.items()}
        if len(cats) > 1:
            out["accuracy"] = sum(s["accuracy"] for s in out["subsets"].values()) / len(cats)
            out["accuracy_method"] = "macro average over BFCL categories"
    return out


def evaluate_many(
    model: str | None,
    benchmarks: Sequence[str | os.PathLike | Benchmark],
    out_dir: str | os.PathLike | None = None,
    generator: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Several benchmarks with one loaded model; per-benchmark JSONs in ``out_dir`` (named
    ``<benchmark>[.no_tools].json``) and a summary with the macro average per task kind."""
    if generator is None:
        generator = make_generator(
            model, base_url=kwargs.get("base_url"), batch_size=kwargs.get("batch_size", 8), dtype=kwargs.get("dtype", "float32")
        )
    results = []
    for b in benchmarks:
        res = evaluate(model, b, generator=generator, **kwargs)
        if out_dir is not None:
            from mentor.io import write_json

            write_json(Path(out_dir) / result_filename(res), res)
        results.append(res)
    return {"results": results, "summary": macro_summary(results)}


def result_filename(result: Mapping[str, Any]) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(result["benchmark"]))
    return f"{safe}{'' if result['settings']['tools'] else '.no_tools'}.json"


def macro_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per task kind (math / qa / bfcl): the macro average of the benchmarks' accuracies."""
    by_kind: dict[str, dict[str, float]] = {}
    for r in results:
        key = r["kind"] if r["settings"]["tools"] else f"{r['kind']} (no tools)"
        by_kind.setdefault(key, {})[r["benchmark"]] = r["accuracy"]
    return {k: {"benchmarks": v, "macro_average": sum(v.values()) / len(v)} for k, v in by_kind.items()}
