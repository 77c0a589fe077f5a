"""Evaluation: benchmark loading and errors (fast), and the bundled model on every benchmark kind (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mentor.eval import evaluate, load_benchmark, macro_summary
from mentor.tasks import get_task
from mentor.tools import TopK
from mentor.io import DataError

# ----------------------------------------------------------------------------- loading, errors


def test_math_file_recognised(shared_benchmarks):
    b = load_benchmark(shared_benchmarks / "math" / "aime24.jsonl", limit=3)
    assert (b.kind, b.domain, len(b.items)) == ("math", "in-domain", 3)
    first = json.loads((shared_benchmarks / "math" / "aime24.jsonl").read_text().splitlines()[0])
    assert b.items[0].gold == first["answer"]
    assert "Please reason step by step" not in b.items[0].question  # the project's instruction replaces it


def test_named_math_set_reads_the_shared_copy(shared_benchmarks):
    b = load_benchmark("amc23", limit=2)
    assert b.name == "amc23" and b.kind == "math" and b.source.endswith("amc2023.jsonl")


def test_hotpotqa_distractor_builds_a_corpus_that_retrieves_the_gold_paragraph(shared_benchmarks):
    b = load_benchmark("hotpotqa-distractor", limit=3)
    assert b.kind == "qa" and b.domain == "out-of-domain"
    assert 4000 < len(b.corpus) <= 5000  # every context paragraph of the file, deduplicated
    assert isinstance(b.items[0].gold, list)
    row = json.loads((shared_benchmarks / "qa" / "hotpotqa_distractor_500.jsonl").read_text().splitlines()[0])
    from mentor.tools import InMemoryBM25

    hits = TopK(InMemoryBM25(b.corpus), 5).search(row["question"], top_n=50)
    assert len(hits) == 5
    assert set(row["supporting_facts"]["title"]) & {h.title for h in hits}


def test_synthetic_splits():
    test, ood = load_benchmark("synthetic:test", limit=4), load_benchmark("synthetic:ood", limit=4)
    assert test.domain == "in-domain" and ood.domain == "out-of-domain"
    assert len(test.items) == len(ood.items) == 4 and test.items[0].id != ood.items[0].id


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        load_benchmark("nope")


def test_bad_files_name_file_line_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    with pytest.raises(DataError) as e:
        load_benchmark(p)
    assert (e.value.path, e.value.line, e.value.field) == (str(p), 2, "answer")
    assert "bad.jsonl, line 2" in str(e.value)

    p.write_text('{"question": "who?", "answer": "me"}\n{"question": "x", "answer": \n')
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        load_benchmark(p)

    p.write_text('{"text": "hello"}\n')
    with pytest.raises(DataError, match="cannot tell the benchmark kind") as e:
        load_benchmark(p)
    assert e.value.line == 1

    p.write_text('{"question": "q", "answer": "a", "context": {"title": ["t"], "sentences": []}}\n')
    with pytest.raises(DataError) as e:
        load_benchmark(p)
    assert (e.value.line, e.value.field) == (1, "context")


def test_bad_benchmark_file_on_the_command_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "", "answer": "3"}\n')
    r = subprocess.run(
        [sys.executable, "-m", "mentor.cli", "eval", "--benchmark", str(p), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2
    assert "bad.jsonl, line 2" in r.stderr and "problem" in r.stderr
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------------- BFCL's checker


def test_bfcl_items_and_checker_on_real_data():
    pytest.importorskip("bfcl_eval")
    from mentor.tasks import bfcl

    b = load_benchmark("bfcl:simple_python,live_simple", limit=2)
    assert [i.meta["category"] for i in b.items] == ["simple_python"] * 2 + ["live_simple"] * 2
    item = b.items[0]  # calculate_triangle_area(base=10, height=5)
    assert item.tools[0]["function"]["name"] == "calculate_triangle_area"
    assert item.tools[0]["function"]["parameters"]["type"] == "object"
    right = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}}]}
    wrong = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 6}}}]}
    assert bfcl.check(item, right)["valid"] is True
    verdict = bfcl.check(item, wrong)
    assert verdict["valid"] is False and verdict["error"]
    assert bfcl.check(item, {"role": "assistant", "content": "The area is 25."})["valid"] is False
    dotted = load_benchmark("bfcl:simple_python", limit=2).items[1]  # math.factorial(number=5)
    ok = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "math.factorial", "arguments": {"number": 5}}}]}
    assert bfcl.check(dotted, ok)["valid"] is True
    irr = load_benchmark("bfcl:irrelevance", limit=1).items[0]
    assert bfcl.check(irr, {"role": "assistant", "content": "I cannot help with that."})["valid"] is True


def test_summaries_are_computed_from_records():
    recs = [{"correct": True, "category": "simple_python"}, {"correct": False, "category": "simple_python"},
            {"correct": True, "category": "live_simple"}]
    s = get_task("bfcl").summarize(recs)
    # BFCL's official overall over the evaluated groups: Non-Live 0.5 and Live 1.0, weights 10 and 10
    assert s["n"] == 3 and s["subsets"]["simple_python"]["accuracy"] == 0.5 and s["accuracy"] == pytest.approx(0.75)
    assert s["bfcl"]["groups"]["non_live"]["accuracy"] == 0.5 and "web_search_base" in s["bfcl"]["skipped"]
    assert get_task("math").summarize(recs)["accuracy"] == pytest.approx(2 / 3)
    res = [
        {"benchmark": "x", "kind": "math", "accuracy": 0.2, "settings": {"tools": True}},
        {"benchmark": "y", "kind": "math", "accuracy": 0.4, "settings": {"tools": True}},
        {"benchmark": "x", "kind": "math", "accuracy": 0.1, "settings": {"tools": False}},
    ]
    m = macro_summary(res)
    assert m["math"]["macro_average"] == pytest.approx(0.3) and m["math (no tools)"]["macro_average"] == 0.1


# ----------------------------------------------------------------------------- the bundled model

SMALL = {"limit": 2, "max_new_tokens": 24, "max_turns": 2, "progress": False}


@pytest.fixture(scope="module")
def generator(default_model_path):
    from mentor.generation import HFGenerator

    return HFGenerator.from_name(default_model_path, batch_size=4)


def _check_result(res, n, kind):
    assert {"benchmark", "model", "n", "accuracy", "settings", "timings", "records", "metadata"} <= set(res)
    assert res["n"] == n == len(res["records"]) and res["kind"] == kind
    if kind == "bfcl":  # BFCL's official overall over the categories evaluated, from the records
        from mentor.tasks.bfcl_v4 import category_scores, overall

        assert res["accuracy"] == pytest.approx(overall(category_scores(res["records"]))["overall"])
    else:
        assert res["accuracy"] == pytest.approx(sum(r["correct"] for r in res["records"]) / n)
    for r in res["records"]:
        assert {"id", "prediction", "gold", "correct", "tool_names", "invalid_calls", "completion"} <= set(r)
        assert r["completion"][0]["role"] == "assistant" and r["generated_tokens"] > 0
    t = res["timings"]
    assert t["generate_seconds"] > 0 and t["generated_tokens"] == sum(r["generated_tokens"] for r in res["records"])
    json.dumps(res)  # serialisable


@pytest.mark.slow
def test_eval_math_file_with_and_without_tools(generator, shared_benchmarks, tmp_path):
    from mentor.answers import math_equal

    out = tmp_path / "aime24.json"
    res = evaluate("smollm2-135m", shared_benchmarks / "math" / "aime24.jsonl", generator=generator, out=out, **SMALL)
    _check_result(res, 2, "math")
    assert json.loads(out.read_text())["accuracy"] == res["accuracy"]
    assert res["settings"]["tools"] is True and res["settings"]["toolset"] == "math"
    for r in res["records"]:
        assert r["correct"] == math_equal(r["prediction"], r["gold"])
        assert r["prediction"] == r["trajectory"]["final_answer"]
        assert r["invalid_calls"] == r["trajectory"]["num_invalid_calls"]
    prompt_tools = generator.render([{"role": "user", "content": "x"}], None)
    assert "<tools>" not in prompt_tools
    bare = evaluate("smollm2-135m", shared_benchmarks / "math" / "aime24.jsonl", generator=generator, tools=False, **SMALL)
    _check_result(bare, 2, "math")
    assert bare["settings"]["tools"] is False
    assert all(r["tool_names"] == [] and r["turns"] == 1 for r in bare["records"])


@pytest.mark.slow
def test_eval_synthetic_ood(generator):
    res = evaluate("smollm2-135m", "synthetic:ood", generator=generator, **SMALL)
    _check_result(res, 2, "math")
    assert res["domain"] == "out-of-domain" and res["tool_stats"]["n"] == 2


@pytest.mark.slow
def test_eval_hotpotqa_distractor_with_retrieval(generator, shared_benchmarks):
    from mentor.answers import qa_exact_match

    res = evaluate("smollm2-135m", "hotpotqa-distractor", generator=generator, **SMALL)
    _check_result(res, 2, "qa")
    assert res["settings"]["toolset"] == "search" and res["settings"]["top_k"] == 5
    assert res["settings"]["retriever"].startswith("bm25:in-process")
    for r in res["records"]:
        assert isinstance(r["gold"], list)
        assert r["correct"] == qa_exact_match(r["prediction"], r["gold"])
        assert r["tool_names"] == r["trajectory"]["tool_names"]  # names as written
        # only wikipedia_search is offered: a call to anything else is invalid
        assert sum(t != "wikipedia_search" for t in r["tool_names"]) <= r["invalid_calls"] <= r["num_tool_calls"]


@pytest.mark.slow
def test_eval_bfcl_category(generator):
    pytest.importorskip("bfcl_eval")
    res = evaluate("smollm2-135m", "bfcl:simple_python", generator=generator, **SMALL)
    _check_result(res, 2, "bfcl")
    assert res["accuracy"] == pytest.approx(sum(r["correct"] for r in res["records"]) / 2)
    assert res["subsets"]["simple_python"]["n"] == 2
    for r in res["records"]:
        assert r["category"] == "simple_python" and r["gold"]
