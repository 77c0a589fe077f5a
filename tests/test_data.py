import json
from collections import Counter

import pytest

from mentor.answers import math_equal
from mentor.data import Question, load_questions
from mentor.data.synthetic import HELD_OUT_TOOLS, IN_DOMAIN_TOOLS, generate, make_problem
from mentor.io import DataError
from mentor.tools import execute


@pytest.mark.parametrize("split", ["train", "test", "ood"])
def test_synthetic_plans_execute_to_the_answer(split):
    problems = generate(split, 150, seed=0)
    for p in problems:
        assert 1 <= len(p.plan) <= 4
        result = None
        for step in p.plan:  # re-execute the plan with the public executor
            obs = execute(step["name"], step["arguments"])
            assert obs.ok, (p.id, step, obs.error)
            assert obs.content == step["result"]
            result = obs.content
        assert math_equal(p.answer, result)
        assert p.answer == result
        assert len(p.answer.replace("-", "").replace(".", "")) <= 12  # exact and not absurd


def test_in_domain_splits_use_only_training_tools_and_ood_needs_held_out_or_new_composition():
    train, test, ood = (generate(s, 300, seed=0) for s in ("train", "test", "ood"))
    for p in train + test:
        assert set(p.tools) <= set(IN_DOMAIN_TOOLS)
    train_chains = {tuple(p.tools) for p in train}
    for p in ood:
        held = set(p.tools) & set(HELD_OUT_TOOLS)
        assert held or (p.ood_kind == "novel_composition" and tuple(p.tools) not in train_chains), p
    # every held-out tool is exercised out of domain, every training tool in domain
    assert set(HELD_OUT_TOOLS) <= {t for p in ood for t in p.tools}
    assert set(IN_DOMAIN_TOOLS) == {t for p in train for t in p.tools}
    # a mix of 1-4 call problems
    assert set(Counter(len(p.plan) for p in train)) == {1, 2, 3, 4}


def test_synthetic_is_seeded_prefix_stable_and_varied():
    a = generate("train", 50, seed=0)
    assert [p.question for p in a] == [p.question for p in generate("train", 50, seed=0)]
    assert make_problem("train", 0, 49).question == a[49].question  # item i depends on (split, seed, i) only
    b = generate("train", 50, seed=1)
    assert not {p.question for p in a} & {p.question for p in b}
    test = generate("test", 300, seed=0)
    train = generate("train", 300, seed=0)
    assert not {p.question for p in train} & {p.question for p in test}
    # not memorisable: answers and wordings vary within a family
    fam = [p for p in train if p.family == "bulk_cost"]
    assert len({p.answer for p in fam}) == len(fam)
    assert len({p.question.split(" ", 3)[1] for p in fam}) > 3
    assert len({p.id for p in train}) == 300


def test_load_questions_synthetic():
    qs = load_questions("synthetic", split="ood", n=5, seed=3)
    assert len(qs) == 5 and all(isinstance(q, Question) for q in qs)
    assert qs[0].meta["plan"] and qs[0].meta["split"] == "ood" and qs[0].task == "math"
    with pytest.raises(ValueError, match="split"):
        load_questions("synthetic", split="nope", n=1)


def test_load_questions_benchmark_file_strips_instruction(shared_benchmarks):
    qs = load_questions(shared_benchmarks / "math" / "amc2023.jsonl")
    assert len(qs) == 40
    assert all("Please reason step by step" not in q.question for q in qs)
    assert qs[0].id == "amc2023-1" and qs[0].answer
    qa = load_questions(shared_benchmarks / "qa" / "hotpotqa_distractor_500.jsonl", n=3)
    assert qa[0].task == "qa" and len(qa) == 3


def test_load_questions_jsonl_fields(tmp_path):
    f = tmp_path / "q.jsonl"
    rows = [
        {"id": "a", "question": "What is 2+2?", "solution": "It is \\boxed{4}."},
        {"id": "b", "question": "What is 3+3?", "solution": "so \\boxed{6}"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    qs = load_questions(f)
    assert [(q.id, q.answer) for q in qs] == [("a", "4"), ("b", "6")]
    g = tmp_path / "custom.jsonl"
    g.write_text(json.dumps({"q": "x?", "gold": 7}) + "\n")
    qs = load_questions(g, question_field="q", answer_field="gold")
    assert qs[0].answer == "7" and qs[0].id == "custom-1"


def test_load_questions_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "q.parquet"
    pq.write_table(pa.table({"problem": ["1+1?", "2*3?"], "answer": ["2", "6"]}), f)
    qs = load_questions(f)
    assert [q.answer for q in qs] == ["2", "6"]


@pytest.mark.parametrize(
    "lines, line, field, match",
    [
        (['{"question": "q1", "answer": "1"}', '{"question": "q2"}'], 2, "answer", "no answer field"),
        (['{"question": "q1", "answer": "1"}', "{not json"], 2, None, "not valid JSON"),
        (['{"question": "", "answer": "1"}'], 1, "question", "non-empty"),
        (['{"problem": "p", "answer": null}'], 1, "answer", "missing"),
        (['{"problem": "p", "answer": {"x": 1}}'], 1, "answer", "expected a string"),
        (['{"id": 1, "problem": "p", "answer": "1"}', '{"id": 1, "problem": "p", "answer": "1"}'], 2, "id", "duplicate"),
    ],
)
def test_load_questions_bad_lines(tmp_path, lines, line, field, match):
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as e:
        load_questions(f)
    assert e.value.line == line and e.value.field == field and str(f) in str(e.value)


def test_load_questions_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_questions(tmp_path / "nope.jsonl")
