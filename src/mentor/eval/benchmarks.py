"""Benchmarks: a task is data + a prompt + a metric, registered by name (as in lm-evaluation-harness).

A benchmark argument is one of

- a JSONL file, recognised by its fields: ``problem``/``answer`` -> math; ``question`` with
  ``answer`` or ``golden_answers`` (FlashRAG format), optionally ``context`` (HotpotQA) -> QA;
- a registered name: the paper's math sets (``aime24``, ``aime25``, ``amc23``, ``minervamath``,
  ``omni-math-512``, ``math-forge-hard``, plus ``math500``/``olympiadbench``), the retrieval-QA
  sets (``hotpotqa``, ``2wikimultihopqa``, ``bamboogle``), the bundled synthetic task
  (``synthetic:test`` in-domain, ``synthetic:ood`` out-of-domain) and BFCL categories
  (``bfcl:simple_python``, ``bfcl:live_simple,multiple``, ``bfcl:ast`` for all AST categories).

Named sets are read from the shared local copy when there is one (``$MENTOR_SHARED_BENCHMARKS``,
default ``../shared/benchmarks``), else from the Hugging Face Hub with ``datasets``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentor.io import DataError, read_jsonl

#: Task kinds: which tools, which metric.
KINDS = ("math", "qa", "bfcl")


@dataclass
class Item:
    """One evaluation item. ``messages`` overrides the default prompt (BFCL); ``tools`` are
    per-item OpenAI function schemas (BFCL)."""

    id: str
    question: str
    gold: Any  # str (math), list[str] (QA), BFCL ground truth (list of {func: {arg: [values]}})
    meta: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


@dataclass
class Benchmark:
    name: str
    kind: str  # math | qa | bfcl
    items: list[Item]
    source: str = ""
    domain: str = "in-domain"  # in-domain | out-of-domain (Fig. 5)
    #: passages for the in-process retriever (HotpotQA contexts); None = needs a retriever URL
    corpus: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def limit(self, n: int | None) -> Benchmark:
        if n is None or n >= len(self.items):
            return self
        return Benchmark(self.name, self.kind, self.items[:n], self.source, self.domain, self.corpus, {**self.meta, "limit": n})


# --------------------------------------------------------------------------- local files


def shared_benchmarks_dir() -> Path | None:
    env = os.environ.get("MENTOR_SHARED_BENCHMARKS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [Path.cwd() / ".." / "shared" / "benchmarks", here.parents[3] / ".." / "shared" / "benchmarks"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def _detect_kind(obj: Mapping[str, Any], path: Path, line: int) -> str:
    if "problem" in obj:
        return "math"
    if "question" in obj and isinstance(obj.get("question"), str):
        return "qa"
    raise DataError(
        path,
        line,
        "cannot tell the benchmark kind: a math item needs 'problem' and 'answer', "
        "a QA item needs 'question' and 'answer' (or 'golden_answers')",
        "problem" if "answer" in obj else None,
    )


def _items(questions: Iterable[Any], kind: str) -> list[Item]:
    """``mentor.data.datasets.Question`` objects -> items (QA golds: every accepted answer)."""
    return [
        Item(
            id=q.id,
            question=q.question,
            gold=q.golds if kind == "qa" else q.answer,
            meta={k: v for k, v in q.meta.items() if k not in ("golds",)},
        )
        for q in questions
    ]


def load_jsonl_benchmark(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> Benchmark:
    """A local JSONL benchmark, its kind recognised from the first record's fields (``problem``
    -> math, ``question`` -> QA); the questions are read with ``mentor.data.load_questions`` (a
    bad line raises ``DataError`` naming file, line and field). HotpotQA ``context`` paragraphs of
    the whole file become the retrieval corpus."""
    from mentor.data.datasets import load_questions

    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    rows = list(read_jsonl(path))
    if not rows:
        raise DataError(path, None, "no records in this file")
    kind = _detect_kind(rows[0][1], path, rows[0][0])
    questions = load_questions(path, n=limit, task=kind, question_field="problem" if kind == "math" else "question")
    corpus = None
    if kind == "qa" and any(obj.get("context") is not None for _, obj in rows):
        # the same corpus `mentor serve retriever` builds from this file (validates every context)
        from mentor.serve.corpus import hotpotqa_passages

        corpus = hotpotqa_passages(path)
    return Benchmark(
        name=name or path.stem,
        kind=kind,
        items=_items(questions, kind),
        source=str(path),
        domain="in-domain" if kind == "math" else "out-of-domain",
        corpus=corpus,
    )


# --------------------------------------------------------------------------- Hub loaders


def hub_math(repo: str, split: str = "test") -> Callable[[int | None], Benchmark]:
    """A math set on the Hub, read with ``mentor.data.load_questions`` (field names detected)."""

    def load(limit: int | None = None) -> Benchmark:
        from mentor.data.datasets import load_questions

        qs = load_questions(repo, split=split, n=limit, task="math")
        return Benchmark(repo.split("/")[-1].lower(), "math", _items(qs, "math"), source=f"hf://{repo}:{split}")

    return load


def hub_flashrag(config: str, split: str) -> Callable[[int | None], Benchmark]:
    """A retrieval-QA set in FlashRAG's format (``RUC-NLPIR/FlashRAG_datasets``: question,
    golden_answers). No context: it needs a retriever (``--retriever-url``) over a Wikipedia index."""

    def load(limit: int | None = None) -> Benchmark:
        from datasets import load_dataset

        ds = load_dataset("RUC-NLPIR/FlashRAG_datasets", config, split=split)
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        items = [
            Item(id=str(row.get("id", i)), question=str(row["question"]), gold=[str(a) for a in row["golden_answers"]])
            for i, row in enumerate(ds)
        ]
        return Benchmark(config, "qa", items, source=f"hf://RUC-NLPIR/FlashRAG_datasets/{config}:{split}", domain="out-of-domain")

    return load


# name -> (shared relative file or None, Hub loader or None)
MATH_SETS: dict[str, tuple[str | None, Callable[[int | None], Benchmark] | None]] = {
    "aime24": ("math/aime24.jsonl", hub_math("math-ai/aime24")),
    "aime25": (None, hub_math("math-ai/aime25")),
    "amc23": ("math/amc2023.jsonl", hub_math("math-ai/amc23")),
    "minervamath": ("math/minervamath.jsonl", hub_math("math-ai/minervamath")),
    "omni-math-512": (None, hub_math("Heng1999/Omni-MATH-512")),
    "math-forge-hard": (None, hub_math("prithivMLmods/Math-Forge-Hard", split="train")),
    "math500": ("math/math500.jsonl", None),
    "olympiadbench": ("math/olympiadbench.jsonl", None),
}
QA_SETS: dict[str, tuple[str | None, Callable[[int | None], Benchmark] | None]] = {
    "hotpotqa": ("qa/hotpotqa_distractor_500.jsonl", hub_flashrag("hotpotqa", "dev")),
    "2wikimultihopqa": (None, hub_flashrag("2wikimultihopqa", "dev")),
    "bamboogle": (None, hub_flashrag("bamboogle", "test")),
}
ALIASES = {"amc2023": "amc23", "omni-math": "omni-math-512", "2wiki": "2wikimultihopqa", "math-forge": "math-forge-hard"}


def benchmark_names() -> list[str]:
    from mentor.eval.bfcl import AST_CATEGORIES

    return [*MATH_SETS, *QA_SETS, "synthetic:test", "synthetic:ood", *(f"bfcl:{c}" for c in AST_CATEGORIES), "bfcl:ast"]


def load_synthetic(split: str, n: int | None = None, seed: int = 0) -> Benchmark:
    """The bundled synthetic task: ``test`` (in-domain) or ``ood`` (held-out tools/compositions)."""
    from mentor.data.datasets import load_questions

    qs = load_questions("synthetic", split=split, n=n, seed=seed)
    domain = "out-of-domain" if split == "ood" else "in-domain"
    return Benchmark(f"synthetic:{split}", "math", _items(qs, "math"), source=f"synthetic:{split}:seed={seed}", domain=domain)


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
    key = ALIASES.get(text.lower(), text.lower())
    if key.startswith("synthetic"):
        split = key.split(":", 1)[1] if ":" in key else "test"
        return load_synthetic(split, n=limit).limit(limit)
    if key.startswith("bfcl"):
        from mentor.eval.bfcl import load_bfcl

        return load_bfcl(key.split(":", 1)[1] if ":" in key else "ast", limit=limit)
    table = MATH_SETS if key in MATH_SETS else QA_SETS if key in QA_SETS else None
    if table is None:
        raise ValueError(f"unknown benchmark {text!r}: not a file, and not one of {', '.join(benchmark_names())}")
    rel, hub = table[key]
    root = shared_benchmarks_dir()
    if rel and root and (root / rel).is_file():
        return load_jsonl_benchmark(root / rel, name=key, limit=limit)
    if hub is None:
        raise ValueError(f"benchmark {key!r} is only available as a local file ({rel}); set MENTOR_SHARED_BENCHMARKS")
    bench = hub(limit)
    bench.name = key
    return bench.limit(limit)
