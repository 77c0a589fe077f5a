"""evaluate() driven by a scripted generator: known right, wrong, malformed and tool-calling
answers, so accuracy, per-item ``correct``, tool counts and invalid-call counts are known by hand.

The generator stands in for the model only: the prompts, the tool loop (real tool execution,
real in-process BM25 retrieval over the HotpotQA file), the answer extraction, the scorers
(math-verify, SQuAD exact match, BFCL's AST checker) and the result file are the real ones.
Each script is chosen by the question the generator sees, turn by turn.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mentor.eval import evaluate
from mentor.rollout import Generation, parse_assistant


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


class ScriptedGenerator:
    """``scripts[key] = [assistant text of turn 1, turn 2, ...]``, the script picked by the
    first key that occurs in the conversation's last user message."""

    name = "scripted"
    batch_size = 4

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = scripts
        self.seen: dict[str, list[list[dict[str, Any]]]] = {k: [] for k in scripts}
        self.tools_offered: list[list[str] | None] = []

    def _key(self, conv: list[dict[str, Any]]) -> str:
        user = next(m["content"] for m in reversed(conv) if m["role"] == "user")
        keys = [k for k in self.scripts if k in user]
        assert len(keys) == 1, f"no unique script for {user!r}: {keys}"
        return keys[0]

    def generate(self, conversations, tools, sampling):
        self.tools_offered.append(None if tools is None else sorted(t["function"]["name"] for t in tools))
        out = []
        for conv in conversations:
            key = self._key(conv)
            self.seen[key].append([dict(m) for m in conv])
            turn = sum(m["role"] == "assistant" for m in conv)
            text = self.scripts[key][turn]
            out.append(Generation(parse_assistant(text), tokens=len(text.split()) + 1))
        return out


# ----------------------------------------------------------------------------- math

MATH_ITEMS = [
    # question, gold, script; the expected record fields follow in MATH_EXPECTED
    ("What is 2 plus 3?", "5", [call("add", firstNumber=2, secondNumber=3), "The sum is \\boxed{5}."]),
    ("What is 2 times 3?", "6", ["It is \\boxed{7}."]),
    ("What is 2 times 2?", "4", ['<tool_call>\n{"name": "multiply", "arguments": {"firstNumber": 2,\n</tool_call>',
                                 "So \\boxed{4}."]),
    ("What is one half as a decimal?", "0.5", ["\\boxed{\\frac{1}{2}}"]),
    ("What is 6 divided by 2?", "3", [call("divide", numerator=6, denominator=0),
                                      call("divide", numerator=6, denominator=2), "\\boxed{3}"]),
    ("What is 10 minus 4?", "6", ["I do not know."]),
]
# (correct, prediction, tool_names, num_tool_calls, invalid_calls, turns)
MATH_EXPECTED = [
    (True, "5", ["add"], 1, 0, 2),
    (False, "7", [], 0, 0, 1),
    (True, "4", ["multiply"], 1, 1, 2),  # the malformed call is counted (and named) but invalid
    (True, "\\frac{1}{2}", [], 0, 0, 1),  # math-verify: 1/2 == 0.5 (SQuAD exact match would say no)
    (True, "3", ["divide", "divide"], 2, 1, 3),  # division by zero: executed, an error, invalid
    (False, None, [], 0, 0, 1),
]


@pytest.fixture
def math_file(tmp_path):
    p = tmp_path / "arith.jsonl"
    p.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a, _ in MATH_ITEMS))
    return p


def test_math_scores_known_answers_exactly(math_file, tmp_path):
    gen = ScriptedGenerator({q: s for q, _, s in MATH_ITEMS})
    out = tmp_path / "res.json"
    res = evaluate(None, math_file, generator=gen, max_turns=4, progress=False, out=out, label="scripted")
    assert (res["kind"], res["n"], res["correct"]) == ("math", 6, 4)
    assert res["accuracy"] == pytest.approx(4 / 6)
    got = [(r["correct"], r["prediction"], r["tool_names"], r["num_tool_calls"], r["invalid_calls"], r["turns"])
           for r in res["records"]]
    assert got == MATH_EXPECTED
    assert [r["gold"] for r in res["records"]] == [a for _, a, _ in MATH_ITEMS]
    # the tool loop really ran: the tool results went back to the model
    tool_msgs = [m for m in gen.seen["What is 2 plus 3?"][1] if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["5"]
    err = [m for m in gen.seen["What is 6 divided by 2?"][1] if m["role"] == "tool"][0]["content"]
    assert "error" in err.lower()
    assert gen.tools_offered[0] is not None and "add" in gen.tools_offered[0] and "wikipedia_search" not in gen.tools_offered[0]
    # aggregate tool statistics, by hand: 4 calls of which 2 invalid, 3 of 6 trajectories call a tool
    st = res["tool_stats"]
    assert (st["n"], st["total_calls"], st["invalid_calls"]) == (6, 4, 2)
    assert st["invalid_call_rate"] == pytest.approx(0.5) and st["tool_usage_rate"] == pytest.approx(0.5)
    assert res["tool_counts"] == {"add": 1, "multiply": 1, "divide": 2}
    assert res["timings"]["generated_tokens"] == sum(r["generated_tokens"] for r in res["records"])
    assert not (tmp_path / "res.json.partial.jsonl").exists()  # the item-level resume file is gone once done
    saved = json.loads(out.read_text())
    assert saved["accuracy"] == res["accuracy"] and [r["correct"] for r in saved["records"]] == [e[0] for e in MATH_EXPECTED]


def test_math_without_tools_runs_one_turn_and_executes_nothing(math_file):
    gen = ScriptedGenerator({q: s for q, _, s in MATH_ITEMS})
    res = evaluate(None, math_file, generator=gen, tools=False, progress=False)
    assert gen.tools_offered == [None]
    assert [r["turns"] for r in res["records"]] == [1] * 6
    # the same first turns, no tool results: only the items answered in turn 1 can be right
    assert [r["correct"] for r in res["records"]] == [False, False, False, True, False, False]
    assert res["accuracy"] == pytest.approx(1 / 6)
    assert all(m["role"] != "tool" for convs in gen.seen.values() for c in convs for m in c)


# ----------------------------------------------------------------------------- retrieval QA


def test_qa_with_retrieval_scores_known_answers_exactly(shared_benchmarks):
    rows = [json.loads(line) for line in (shared_benchmarks / "qa" / "hotpotqa_distractor_500.jsonl").read_text().splitlines()[:4]]
    q = [r["question"] for r in rows]
    gold = [r["answer"] for r in rows]
    scripts = {
        # 1: search, then the gold answer -> right
        q[0]: [call("wikipedia_search", query=rows[0]["supporting_facts"]["title"][1]), f"\\boxed{{{gold[0]}}}"],
        # 2: the gold answer with an article and other case -> right under SQuAD normalisation
        q[1]: [f"\\boxed{{The {gold[1].upper()}}}"],
        # 3: a search with a bad argument (invalid) and a math tool not offered (invalid), then a wrong answer
        q[2]: [call("wikipedia_search", q="x") + "\n" + call("add", firstNumber=1, secondNumber=2), "\\boxed{nobody}"],
        # 4: two valid searches, no final answer
        q[3]: [call("wikipedia_search", query=q[3], top_n=2), call("wikipedia_search", query=gold[3]), "I cannot tell."],
    }
    gen = ScriptedGenerator(scripts)
    res = evaluate(None, "hotpotqa-distractor", generator=gen, limit=4, max_turns=3, progress=False)
    assert res["kind"] == "qa" and res["settings"]["toolset"] == "search"
    assert res["settings"]["retriever"].startswith("bm25:in-process") and res["settings"]["top_k"] == 5
    assert gen.tools_offered[0] == ["wikipedia_search"]
    recs = res["records"]
    assert [r["correct"] for r in recs] == [True, True, False, False]
    assert res["accuracy"] == pytest.approx(0.5) and res["correct"] == 2
    assert [r["tool_names"] for r in recs] == [["wikipedia_search"], [], ["wikipedia_search", "add"],
                                               ["wikipedia_search", "wikipedia_search"]]
    assert [r["invalid_calls"] for r in recs] == [0, 0, 2, 0]
    assert [r["num_tool_calls"] for r in recs] == [1, 0, 2, 2]
    assert [r["prediction"] for r in recs] == [gold[0], f"The {gold[1].upper()}", "nobody", None]
    assert all(r["gold"] == [g] for r, g in zip(recs, gold, strict=True))
    # the search really ran over the file's paragraphs: the supporting paragraph came back,
    # the top_k (5) passages whatever top_n the model asked for
    result = [m for m in gen.seen[q[0]][1] if m["role"] == "tool"][0]["content"]
    assert f"(Title: {rows[0]['supporting_facts']['title'][1]})" in result
    first, second = [m["content"] for m in gen.seen[q[3]][2] if m["role"] == "tool"]
    assert [f"Doc {i} (Title: " in first for i in range(1, 7)] == [True] * 5 + [False]
    assert f"(Title: {gold[3]})" in second
    assert res["tool_stats"]["invalid_call_rate"] == pytest.approx(2 / 5)
    assert res["tool_stats"]["tool_usage_rate"] == pytest.approx(3 / 4)
    assert res["tool_counts"] == {"wikipedia_search": 4, "add": 1}


# ----------------------------------------------------------------------------- BFCL


def test_bfcl_scores_known_answers_exactly():
    pytest.importorskip("bfcl_eval")
    from mentor.eval import load_benchmark

    bench = load_benchmark("bfcl:simple_python,live_irrelevance", limit=3)
    items = bench.items
    assert [i.meta["category"] for i in items] == ["simple_python"] * 3 + ["live_irrelevance"] * 3
    sp = items[:3]
    assert sp[0].tools[0]["function"]["name"] == "calculate_triangle_area"  # base=10, height=5
    assert sp[1].tools[0]["function"]["name"] == "math.factorial"  # number=5
    scripts = {
        sp[0].question: [call("calculate_triangle_area", base=10, height=5)],  # right
        sp[1].question: [call("math.factorial", number=6)],  # wrong argument
        sp[2].question: ['<tool_call>\n{"name": "x", "arguments": \n</tool_call>'],  # malformed: no call decoded
        items[3].question: ["I cannot help with that."],  # irrelevance: no call is right
        items[4].question: [call(items[4].tools[0]["function"]["name"])],  # irrelevance: a call is wrong
        items[5].question: ["No."],
    }
    gen = ScriptedGenerator(scripts)
    res = evaluate(None, bench, generator=gen, progress=False)
    recs = res["records"]
    assert [r["correct"] for r in recs] == [True, False, False, True, False, True]
    assert res["subsets"]["simple_python"] == {"n": 3, "accuracy": pytest.approx(1 / 3)}
    assert res["subsets"]["live_irrelevance"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    # BFCL's official overall: Non-Live (simple_python 1/3) and Irrelevance (2/3), weights 10 and 10
    assert res["accuracy"] == pytest.approx((1 / 3 + 2 / 3) / 2) and res["accuracy_method"].startswith("BFCL v4 official")
    assert res["bfcl"]["weights"] == {"non_live": 0.5, "irrelevance": 0.5}
    assert [r["num_tool_calls"] for r in recs] == [1, 1, 1, 0, 1, 0]
    assert [r["invalid_calls"] for r in recs] == [0, 0, 1, 0, 0, 0]
    assert recs[0]["prediction"] == [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    assert recs[1]["error"]
    # each item was offered its own functions, one turn each
    # (items offering the same functions share a generate call: the last two here, requests.get)
    assert gen.tools_offered[0] == ["calculate_triangle_area"] and sum(map(len, gen.seen.values())) == 6
    assert gen.tools_offered[-1] == ["requests.get"] and len(gen.tools_offered) == 5
