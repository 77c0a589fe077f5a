"""The ``wikipedia_search`` backend: pluggable (in-memory BM25 here, HTTP retriever server)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mentor.tools.registry import ToolError


@dataclass(frozen=True)
class Passage:
    title: str
    text: str
    score: float = 0.0
    id: str = ""


class SearchBackend(Protocol):
    def search(self, query: str, top_n: int = 5) -> list[Passage]: ...


class InMemoryBM25:
    """BM25 (``bm25s``) over a list of passages held in memory."""

    def __init__(self, passages: Iterable[Passage]):
        import bm25s

        self.passages: list[Passage] = list(passages)
        if not self.passages:
            raise ValueError("InMemoryBM25 needs at least one passage")
        corpus = [f"{p.title}\n{p.text}" for p in self.passages]
        self._retriever = bm25s.BM25()
        self._retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        import bm25s

        k = min(top_n, len(self.passages))
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=False)
        return [
            Passage(
                title=self.passages[int(i)].title,
                text=self.passages[int(i)].text,
                score=float(s),
                id=self.passages[int(i)].id,
            )
            for i, s in zip(docs[0], scores[0], strict=True)
        ]


class HTTPSearch:
    """Client of ``mentor serve retriever`` (``POST /search``)."""

    def __init__(self, url: str, timeout: float = 30.0):
        import httpx

        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=64))

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        import httpx

        try:
            r = self._client.post(f"{self.url}/search", json={"query": query, "top_n": top_n})
        except httpx.HTTPError as e:
            raise ToolError(f"retriever at {self.url} unreachable: {e}") from None
        if r.status_code != 200:
            raise ToolError(f"retriever at {self.url} answered {r.status_code}: {r.text[:200]}")
        return [Passage(**{k: p.get(k, "") for k in ("title", "text", "score", "id")}) for p in r.json()["passages"]]


_BACKEND: SearchBackend | None = None


def set_search_backend(backend: SearchBackend | str | None) -> None:
    """Use ``backend`` for ``wikipedia_search``; a string is the URL of a retriever server."""
    global _BACKEND
    _BACKEND = HTTPSearch(backend) if isinstance(backend, str) else backend


def get_search_backend() -> SearchBackend:
    if _BACKEND is None:
        raise ToolError(
            "wikipedia_search has no retrieval backend configured "
            "(start `mentor serve retriever` and pass --retriever-url, or set one with "
            "mentor.tools.set_search_backend)"
        )
    return _BACKEND


def format_passages(passages: Sequence[Passage]) -> str:
    """FlashRAG-style rendering of retrieved passages for the model."""
    if not passages:
        return "No results found."
    return "\n".join(f"Doc {i} (Title: {p.title}) {p.text}" for i, p in enumerate(passages, 1))
