"""Retrieval QA: only ``wikipedia_search``, top-``top_k`` passages per query; exact match after
SQuAD normalisation against every gold answer.

Named sets:

- ``hotpotqa``, ``2wikimultihopqa``, ``bamboogle``: the paper's (Table 2's RAG columns), read
  from FlashRAG's files (``{"id", "question", "golden_answers"}``): HotpotQA and 2Wiki are 2,000
  questions sampled from the dev sets, Bamboogle all 125 test questions (``FLASHRAG_SETS``;
  fixed seed ``SAMPLE_SEED``; the sampled ids go into ``Benchmark.meta["sample"]`` and so into
  the result file). They come from ``$MENTOR_FLASHRAG_DATA`` (a local copy of
  ``RUC-NLPIR/FlashRAG_datasets``: ``<set>/<split>.jsonl``) or, when it is unset, from the Hub
  with ``datasets``. They carry no passages: a retriever searches Wikipedia for them (a
  ``mentor serve retriever`` URL, or the search backend of the ``Executor`` passed in).
- ``hotpotqa-distractor``: the shared 500-question HotpotQA distractor file, searched with BM25
  over its own context paragraphs (gold paragraphs included) -- an easier, offline stand-in,
  never reported as ``hotpotqa``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mentor.answers import qa_exact_match
from mentor.data.datasets import Question, records_to_questions
from mentor.io import DataError, read_jsonl
from mentor.serve.corpus import hotpotqa_passages
from mentor.tasks.base import Benchmark, Task, local_or_hub, register
from mentor.tools.executor import Executor
from mentor.tools.search import HTTPSearch, InMemoryBM25, TopK

FLASHRAG_HUB = "RUC-NLPIR/FlashRAG_datasets"
#: the environment variable naming a local copy of FLASHRAG_HUB (``<set>/<split>.jsonl``)
FLASHRAG_ENV = "MENTOR_FLASHRAG_DATA"
#: the seed of the paper-size samples (the paper does not publish its sample; ours is recorded)
SAMPLE_SEED = 0


@dataclass(frozen=True)
class FlashRAGSet:
    """One of FlashRAG's QA files and how many of its questions the paper evaluates (None: all)."""

    folder: str  # FlashRAG's config / folder name
    split: str
    sample: int | None

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.split}.jsonl"


FLASHRAG_SETS: dict[str, FlashRAGSet] = {
    "hotpotqa": FlashRAGSet("hotpotqa", "dev", 2000),
    "2wikimultihopqa": FlashRAGSet("2wikimultihopqa", "dev", 2000),
    "bamboogle": FlashRAGSet("bamboogle", "test", None),
}
#: sets searched over their own context paragraphs (a file under the shared benchmarks)
CONTEXT_SETS: dict[str, str] = {"hotpotqa-distractor": "qa/hotpotqa_distractor_500.jsonl"}


def sample_indices(n: int, size: int | None, seed: int = SAMPLE_SEED) -> list[int]:
    """``size`` of ``range(n)`` drawn with ``random.Random(seed)``, in file order (all of them
    when ``size`` is None or not below ``n``)."""
    if size is None or size >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), size))


def flashrag_rows(key: str, spec: FlashRAGSet) -> tuple[str, Any]:
    """``(source, (line, record) pairs)`` of a FlashRAG set: ``$MENTOR_FLASHRAG_DATA/<rel>`` when
    the variable is set (no fallback: a missing file is an error), else the Hub."""
    root = os.environ.get(FLASHRAG_ENV)
    if root:
        path = Path(root).expanduser() / spec.rel
        if not path.is_file():
            raise DataError(path, None, f"file not found: ${FLASHRAG_ENV} is set, so benchmark {key!r} is read from "
                            f"there (FlashRAG's layout, <set>/<split>.jsonl). {_provide(spec)}")
        return str(path), list(read_jsonl(path))
    from datasets import load_dataset

    try:
        ds = load_dataset(FLASHRAG_HUB, spec.folder, split=spec.split)
    except Exception as e:  # noqa: BLE001 - offline, no cache, no such config: say what to provide
        raise ValueError(f"benchmark {key!r} is FlashRAG's {spec.folder} {spec.split} set, which could not be read "
                         f"from the Hub ({type(e).__name__}: {str(e)[:200]}). {_provide(spec)}") from None
    return f"hf://{FLASHRAG_HUB}/{spec.folder}:{spec.split}", [(i, dict(row)) for i, row in enumerate(ds, 1)]


def _provide(spec: FlashRAGSet) -> str:
    return (f"Provide it: `hf download {FLASHRAG_HUB} {spec.rel} --repo-type dataset --local-dir DIR` "
            f"and export {FLASHRAG_ENV}=DIR (or allow Hub access). For HotpotQA searched over its own distractor "
            "paragraphs (no Wikipedia needed) use the benchmark 'hotpotqa-distractor'.")


class QATask(Task):
    name = "qa"
    label = "RAG"
    toolset = "search"
    domain = "out-of-domain"
    aliases = {"2wiki": "2wikimultihopqa"}

    def detect(self, record: Mapping[str, Any]) -> bool:
        return "question" in record and isinstance(record.get("question"), str)

    def names(self) -> list[str]:
        return [*FLASHRAG_SETS, *CONTEXT_SETS]

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        if key in CONTEXT_SETS:
            return local_or_hub(key, CONTEXT_SETS[key], None, limit)
        if key in FLASHRAG_SETS:
            return self.load_flashrag(key, FLASHRAG_SETS[key]).limit(limit)
        return None

    def load_flashrag(self, key: str, spec: FlashRAGSet, seed: int = SAMPLE_SEED) -> Benchmark:
        """The paper's sample of a FlashRAG set (``Benchmark.meta["sample"]``: population, size,
        seed and the sampled ids, in evaluation order)."""
        source, rows = flashrag_rows(key, spec)
        questions = records_to_questions(rows, source, "question", "golden_answers", "qa", id_prefix=spec.folder)
        picked = [questions[i] for i in sample_indices(len(questions), spec.sample, seed)]
        sample = {"population": len(questions), "size": len(picked), "seed": seed if spec.sample else None,
                  "ids": [q.id for q in picked]}
        return Benchmark(key, self.name, self.items(picked), source=source, domain=self.domain, meta={"sample": sample})

    def from_file(self, path: Path, rows: list[tuple[int, dict[str, Any]]], name: str | None, limit: int | None) -> Benchmark:
        """HotpotQA ``context`` paragraphs of the whole file become the retrieval corpus (the
        same corpus ``mentor serve retriever`` builds from this file)."""
        bench = super().from_file(path, rows, name, limit)
        if any(obj.get("context") is not None for _, obj in rows):
            bench.corpus = hotpotqa_passages(path)
        return bench

    def gold(self, question: Question) -> Any:
        return question.golds

    def group_label(self, result: Mapping[str, Any]) -> str:
        """Table 2's "RAG"; a benchmark searched over its own context paragraphs (gold included:
        ``hotpotqa-distractor``) averages apart, as "RAG (own context)", never into "RAG"."""
        retriever = str((result.get("settings") or {}).get("retriever") or "")
        return f"{self.label} (own context)" if retriever.startswith("bm25:in-process") else self.label

    def score(self, prediction: str | None, gold: Any) -> bool:
        return qa_exact_match(prediction, gold)

    def needs_retriever(self, bench: Benchmark) -> bool:
        return not bench.corpus  # a FlashRAG set searches a Wikipedia corpus; HotpotQA distractor its own paragraphs

    def executor(self, bench: Benchmark, base: Executor, retriever_url: str | None, top_k: int) -> tuple[Executor, dict[str, Any]]:
        """``wikipedia_search`` answered by BM25 over the benchmark's own paragraphs when it has
        some (``hotpotqa-distractor``), else by the retriever server at ``retriever_url``, else by
        the search backend of ``base`` (e.g. the pipeline's retriever)."""
        if bench.corpus:
            backend: Any = InMemoryBM25(bench.corpus)
            desc = f"bm25:in-process:{len(bench.corpus)} passages"
        elif retriever_url:
            backend = HTTPSearch(retriever_url)
            desc = backend.label
        elif base.search is not None:
            backend, desc = base.search, getattr(base.search, "label", type(base.search).__name__)
        else:
            raise ValueError(
                f"benchmark {bench.name!r} has no passages of its own: it is searched with a retriever over a "
                "Wikipedia corpus. Start one (`mentor serve retriever --corpus ... --index dense --model "
                "intfloat/e5-base-v2`) and pass --retriever-url, or configure eval.retriever in the pipeline"
            )
        described = {"retriever": desc, "top_k": top_k}
        if isinstance(backend, HTTPSearch):
            described["retriever_url"] = backend.url
        return Executor(tool_server=base.tool_server, search=TopK(backend, top_k), tools=base.tools), described


QA = register(QATask())
