"""The ``wikipedia_search`` backend: pluggable (in-memory BM25 here, HTTP retriever server)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mentor.io import atomic_writer, read_jsonl, require
from mentor.tools.errors import ToolError


@dataclass(frozen=True)
class Passage:
    title: str
    text: str
    score: float = 0.0
    id: str = ""


class SearchBackend(Protocol):
    def search(self, query: str, top_n: int = 5) -> list[Passage]: ...


class InMemoryBM25:
    """BM25 (``bm25s``) over a list of passages held in memory.

    ``search_many`` answers a batch of queries in one ``bm25s`` call; passages that share no
    term with the query (score 0) are not returned. ``save(dir)`` / ``InMemoryBM25.load(dir)``
    keep a built index on disk (the ``bm25s`` arrays plus ``passages.jsonl``).
    """

    def __init__(self, passages: Iterable[Passage], *, _retriever=None, show_progress: bool = False):
        import bm25s

        self.passages: list[Passage] = list(passages)
        if not self.passages:
            raise ValueError("InMemoryBM25 needs at least one passage")
        if _retriever is not None:
            self._retriever = _retriever
            return
        corpus = [f"{p.title}\n{p.text}" for p in self.passages]
        self._retriever = bm25s.BM25()
        self._retriever.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=show_progress), show_progress=show_progress
        )

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        return self.search_many([query], top_n)[0]

    def search_many(self, queries: Sequence[str], top_n: int = 5) -> list[list[Passage]]:
        import bm25s

        k = max(1, min(top_n, len(self.passages)))
        tokens = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
        asked = [i for i, t in enumerate(tokens) if t]
        out: list[list[Passage]] = [[] for _ in queries]
        if not asked:
            return out
        docs, scores = self._retriever.retrieve([tokens[i] for i in asked], k=k, show_progress=False)
        for row, i in enumerate(asked):
            out[i] = [
                Passage(
                    title=self.passages[int(d)].title,
                    text=self.passages[int(d)].text,
                    score=float(sc),
                    id=self.passages[int(d)].id,
                )
                for d, sc in zip(docs[row], scores[row], strict=True)
                if sc > 0
            ]
        return out

    def save(self, directory: str | os.PathLike) -> None:
        """Write the index and its passages to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory / "bm25s"), show_progress=False)
        save_passages(self.passages, directory / "passages.jsonl")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> InMemoryBM25:
        import bm25s

        directory = Path(directory)
        retriever = bm25s.BM25.load(str(directory / "bm25s"), show_progress=False)
        return cls(load_passages(directory / "passages.jsonl"), _retriever=retriever)


def save_passages(passages: Iterable[Passage], path: str | os.PathLike) -> None:
    """``passages.jsonl``: one ``{"id", "title", "text"}`` per line (written atomically)."""
    with atomic_writer(path) as f:
        for p in passages:
            f.write(json.dumps({"id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n")


def load_passages(path: str | os.PathLike) -> list[Passage]:
    return [
        Passage(title=require(o, "title", path, i), text=require(o, "text", path, i), id=str(o.get("id", "")))
        for i, o in read_jsonl(path)
    ]


class HTTPSearch:
    """Client of ``mentor serve retriever`` (``POST /search``, ``POST /batch_search``), over a
    pooled ``httpx`` client. Failures raise ``ToolError`` with the server's message. The
    retriever's URL is not part of any message: these errors reach the model (and, through the
    tool server, its clients). A token for a retriever started with a token is read from
    ``token`` or ``$MENTOR_RETRIEVER_TOKEN``. ``label`` says what the server searches (what an
    evaluation records as its ``retriever``; default ``server:<url>``)."""

    def __init__(self, url: str, timeout: float = 30.0, token: str | None = None, label: str | None = None):
        import httpx

        self.url = url.rstrip("/")
        self.label = label or f"server:{self.url}"
        token = token or os.environ.get("MENTOR_RETRIEVER_TOKEN")
        self._client = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            transport=httpx.HTTPTransport(retries=2),
            headers={"Authorization": f"Bearer {token}"} if token else None,
        )

    def _post(self, path: str, payload: dict) -> dict:
        import httpx

        try:
            r = self._client.post(f"{self.url}{path}", json=payload)
        except httpx.HTTPError as e:
            raise ToolError(f"the retriever is unreachable ({type(e).__name__})") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200:
            message = body.get("error") if isinstance(body, dict) else "(no JSON error message)"
            raise ToolError(f"the retriever answered {r.status_code}: {str(message)[:300]}")
        if not isinstance(body, dict):
            raise ToolError("the retriever answered with a non-JSON body")
        return body

    @staticmethod
    def _passages(items: list[dict]) -> list[Passage]:
        return [
            Passage(
                title=str(p.get("title", "")),
                text=str(p.get("text", "")),
                score=float(p.get("score", 0.0)),
                id=str(p.get("id", "")),
            )
            for p in items
        ]

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        return self._passages(self._post("/search", {"query": query, "top_n": top_n})["passages"])

    def search_many(self, queries: Sequence[str], top_n: int = 5) -> list[list[Passage]]:
        """All ``queries`` in one request (``POST /batch_search``)."""
        if not queries:
            return []
        body = self._post("/batch_search", {"queries": list(queries), "top_n": top_n})
        return [self._passages(items) for items in body["results"]]


class TopK:
    """A search backend that always returns ``k`` passages (the paper's top-5 per query),
    whatever ``top_n`` the model asks for."""

    def __init__(self, backend: SearchBackend, k: int = 5):
        self.backend, self.k = backend, k

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        return self.backend.search(query, self.k)


def format_passages(passages: Sequence[Passage]) -> str:
    """FlashRAG-style rendering of retrieved passages for the model."""
    if not passages:
        return "No results found."
    return "\n".join(f"Doc {i} (Title: {p.title}) {p.text}" for i, p in enumerate(passages, 1))
