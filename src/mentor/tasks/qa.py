"""Retrieval QA: only ``wikipedia_search``, top-``top_k`` passages from an in-process BM25 index
over the file's context paragraphs (HotpotQA) or from a retriever server; exact match after
SQuAD normalisation against every gold answer.

Named sets (``hotpotqa``, ``2wikimultihopqa``, ``bamboogle``) come from the shared local copy or
FlashRAG's Hub datasets (``question``, ``golden_answers``; those need a retriever server).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mentor.answers import qa_exact_match
from mentor.data.datasets import Question
from mentor.serve.corpus import hotpotqa_passages
from mentor.tasks.base import Benchmark, Item, Task, local_or_hub, register
from mentor.tools.executor import Executor
from mentor.tools.search import HTTPSearch, InMemoryBM25, TopK


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


QA_SETS: dict[str, tuple[str | None, Callable[[int | None], Benchmark] | None]] = {
    "hotpotqa": ("qa/hotpotqa_distractor_500.jsonl", hub_flashrag("hotpotqa", "dev")),
    "2wikimultihopqa": (None, hub_flashrag("2wikimultihopqa", "dev")),
    "bamboogle": (None, hub_flashrag("bamboogle", "test")),
}


class QATask(Task):
    name = "qa"
    label = "RAG"
    toolset = "search"
    domain = "out-of-domain"
    aliases = {"2wiki": "2wikimultihopqa"}

    def detect(self, record: Mapping[str, Any]) -> bool:
        return "question" in record and isinstance(record.get("question"), str)

    def names(self) -> list[str]:
        return list(QA_SETS)

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        return local_or_hub(key, *QA_SETS[key], limit) if key in QA_SETS else None

    def from_file(self, path: Path, rows: list[tuple[int, dict[str, Any]]], name: str | None, limit: int | None) -> Benchmark:
        """HotpotQA ``context`` paragraphs of the whole file become the retrieval corpus (the
        same corpus ``mentor serve retriever`` builds from this file)."""
        bench = super().from_file(path, rows, name, limit)
        if any(obj.get("context") is not None for _, obj in rows):
            bench.corpus = hotpotqa_passages(path)
        return bench

    def gold(self, question: Question) -> Any:
        return question.golds

    def score(self, prediction: str | None, gold: Any) -> bool:
        return qa_exact_match(prediction, gold)

    def executor(self, bench: Benchmark, base: Executor, retriever_url: str | None, top_k: int) -> tuple[Executor, dict[str, Any]]:
        """``wikipedia_search`` answered by a retriever server, or BM25 over the benchmark's contexts."""
        if retriever_url:
            backend, desc = TopK(HTTPSearch(retriever_url), top_k), f"server:{retriever_url}"
        elif bench.corpus:
            backend, desc = TopK(InMemoryBM25(bench.corpus), top_k), f"bm25:in-process:{len(bench.corpus)} passages"
        else:
            raise ValueError(
                f"benchmark {bench.name!r} has no context paragraphs to index: start a retriever "
                "(`mentor serve retriever`) and pass --retriever-url"
            )
        return Executor(tool_server=base.tool_server, search=backend, tools=base.tools), {"retriever": desc, "top_k": top_k}


QA = register(QATask())
