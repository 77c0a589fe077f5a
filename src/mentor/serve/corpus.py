"""Retrieval corpora: FlashRAG-style JSONL and HotpotQA-style files, as ``Passage`` lists.

* FlashRAG (``wiki18_100w.jsonl`` and friends): one ``{"id", "contents"}`` per line, where
  ``contents`` is ``"Title"\\ntext``.
* Plain: ``{"id"?, "title", "text"}`` per line (what ``save_passages`` writes).
* HotpotQA (``hotpotqa_distractor_500.jsonl``): questions whose ``context`` holds the
  paragraphs (``{"title": [...], "sentences": [[...]]}``, or the original ``[[title,
  [sentences]], ...]``); the union of the paragraphs, de-duplicated, is the corpus.

``load_corpus(path)`` accepts all three (decided per line). ``hotpotqa_passages(records)``
turns HotpotQA questions into passages for in-process retrieval (e.g. ``InMemoryBM25``);
``supporting_titles(record)`` gives a question's gold titles and ``recall_at_k`` scores them.

``MappedCorpus(path)`` reads a FlashRAG corpus with ``datasets`` (Arrow, memory-mapped, as
FlashRAG itself does): passage ``i`` is line ``i``, nothing de-duplicated, so it lines up with
a prebuilt faiss index over the same file (wiki18_100w: 21M passages, 14 GB, which a Python
list would hold in tens of GB of memory).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.io import DataError, read_jsonl
from mentor.tools.search import Passage

__all__ = [
    "MappedCorpus",
    "hotpotqa_passages",
    "load_corpus",
    "parse_contents",
    "recall_at_k",
    "supporting_titles",
    "write_flashrag",
]


def parse_contents(contents: str) -> tuple[str, str]:
    """Split FlashRAG ``contents`` (``"Title"\\ntext``) into ``(title, text)``."""
    title, sep, text = contents.partition("\n")
    if not sep:
        return "", contents.strip()
    title = title.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return title, text.strip()


def _context_paragraphs(context: Any, path: str | os.PathLike, line: int | None) -> list[tuple[str, str]]:
    if isinstance(context, Mapping):
        titles, sentences = context.get("title"), context.get("sentences")
        if not isinstance(titles, list) or not isinstance(sentences, list) or len(titles) != len(sentences):
            raise DataError(path, line, "expected {'title': [...], 'sentences': [[...], ...]} of equal length",
                            "context")
        pairs = zip(titles, sentences, strict=True)
    elif isinstance(context, list):
        if not all(isinstance(p, list | tuple) and len(p) == 2 for p in context):
            raise DataError(path, line, "expected a list of [title, sentences] pairs", "context")
        pairs = (tuple(p) for p in context)
    else:
        raise DataError(path, line, f"expected an object or a list, got {type(context).__name__}", "context")
    out = []
    for k, (title, sents) in enumerate(pairs):
        if not isinstance(title, str) or not isinstance(sents, list) or not all(isinstance(x, str) for x in sents):
            raise DataError(path, line, f"paragraph {k}: expected a title string and a list of sentence strings",
                            "context")
        out.append((title, "".join(sents).strip()))
    return out


class _Collector:
    """De-duplicates passages by (title, text), keeping first-seen order."""

    def __init__(self) -> None:
        self.passages: list[Passage] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, title: str, text: str, pid: str | None = None) -> None:
        key = (title, text)
        if key in self._seen:
            return
        self._seen.add(key)
        self.passages.append(Passage(title=title, text=text, id=pid or str(len(self.passages))))


def hotpotqa_passages(source: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[Passage]:
    """The de-duplicated paragraphs of HotpotQA-style questions (a file path or records)."""
    if isinstance(source, str | os.PathLike):
        path: str | os.PathLike = source
        rows: Iterable[tuple[int | None, Mapping[str, Any]]] = read_jsonl(source)
    else:
        path = "<records>"
        rows = ((i, r) for i, r in enumerate(source, 1))
    out = _Collector()
    for line, rec in rows:
        if "context" not in rec:
            raise DataError(path, line, "missing required field", "context")
        for title, text in _context_paragraphs(rec["context"], path, line):
            out.add(title, text)
    return out.passages


def load_corpus(path: str | os.PathLike) -> list[Passage]:
    """Passages from a FlashRAG (``contents``), plain (``title``/``text``) or HotpotQA
    (``context``) JSONL file. Bad lines raise ``DataError`` naming the file, line and field."""
    path = Path(path)
    out = _Collector()
    for line, rec in read_jsonl(path):
        if "contents" in rec:
            contents = rec["contents"]
            if not isinstance(contents, str):
                raise DataError(path, line, f"expected str, got {type(contents).__name__}", "contents")
            title, text = parse_contents(contents)
            out.add(title, text, str(rec["id"]) if rec.get("id") is not None else None)
        elif "context" in rec:
            for title, text in _context_paragraphs(rec["context"], path, line):
                out.add(title, text)
        elif "text" in rec:
            text, title = rec["text"], rec.get("title", "")
            if not isinstance(text, str):
                raise DataError(path, line, f"expected str, got {type(text).__name__}", "text")
            if not isinstance(title, str):
                raise DataError(path, line, f"expected str, got {type(title).__name__}", "title")
            out.add(title, text, str(rec["id"]) if rec.get("id") is not None else None)
        else:
            raise DataError(path, line, "a corpus line needs 'contents' (FlashRAG), 'text' (+ 'title') "
                            "or 'context' (HotpotQA)", "contents")
    if not out.passages:
        raise DataError(path, None, "the corpus has no passages")
    return out.passages


class MappedCorpus(Sequence[Passage]):
    """A FlashRAG JSONL corpus (``{"id", "contents"}`` per line) as a read-only sequence of
    passages, row ``i`` = line ``i``, backed by a memory-mapped Arrow table built once by
    ``datasets`` (in ``cache_dir``, default the ``datasets`` cache)."""

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        import datasets

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, None, "corpus file not found")
        try:
            self._rows = datasets.load_dataset("json", data_files=str(self.path), split="train",
                                               cache_dir=str(cache_dir) if cache_dir else None)
        except Exception as e:  # noqa: BLE001 - any reader failure is a data error on this file
            raise DataError(self.path, None, f"cannot read as JSON lines ({type(e).__name__}: {str(e)[:300]})") from None
        if "contents" not in self._rows.column_names:
            raise DataError(self.path, 1, "a FlashRAG corpus line needs 'contents' (\"Title\"\\ntext)", "contents")
        if not len(self._rows):
            raise DataError(self.path, None, "the corpus has no passages")

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self._rows[int(i)]
        contents = row["contents"]
        if not isinstance(contents, str):
            raise DataError(self.path, int(i) + 1, f"expected str, got {type(contents).__name__}", "contents")
        title, text = parse_contents(contents)
        pid = row.get("id")
        return Passage(title=title, text=text, id=str(pid) if pid is not None else str(i))


def write_flashrag(passages: Iterable[Passage], path: str | os.PathLike) -> None:
    """Write passages as FlashRAG JSONL (``{"id", "contents": "\\"Title\\"\\ntext"}``)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, p in enumerate(passages):
            f.write(json.dumps({"id": p.id or str(i), "contents": f'"{p.title}"\n{p.text}'}, ensure_ascii=False) + "\n")


def supporting_titles(record: Mapping[str, Any]) -> set[str]:
    """The gold supporting-paragraph titles of a HotpotQA question."""
    facts = record.get("supporting_facts") or {}
    if isinstance(facts, Mapping):
        return {str(t) for t in facts.get("title", [])}
    return {str(f[0]) for f in facts if isinstance(f, list | tuple) and f}


def recall_at_k(retrieved: Sequence[Passage | str], gold: Iterable[str], k: int = 5) -> float:
    """Fraction of ``gold`` titles among the first ``k`` retrieved titles (1.0 when no gold)."""
    gold = set(gold)
    if not gold:
        return 1.0
    titles = {r.title if isinstance(r, Passage) else r for r in list(retrieved)[:k]}
    return len(gold & titles) / len(gold)

