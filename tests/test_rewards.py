import json

import pytest

from mentor.rewards import (
    PRESETS,
    compute_score,
    resolve_weights,
    score,
    trl_reward_funcs,
)
from mentor.trajectory import Trajectory


def call(name, **args):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"


TEACHER = Trajectory.from_text(
    call("multiply", firstNumber=12, secondNumber=4) + "<tool_response>48</tool_response>"
    + call("add", firstNumber=48, secondNumber=2) + "<tool_response>50</tool_response>\\boxed{50}"
)

# hand-made students
ALIGNED = Trajectory.from_text(call("add", firstNumber=2, secondNumber=48) + call("multiply", firstNumber=4, secondNumber=12) + "\\boxed{50}")
SUBSET = Trajectory.from_text(call("multiply", firstNumber=12, secondNumber=4) + "\\boxed{50.0}")
NO_TOOLS_RIGHT = Trajectory.from_text("In my head: \\boxed{50}")
INVALID_WRONG = Trajectory.from_text(call("multiply", firstNumber=12, secondNumber=4) + call("add", firstNumber="x", secondNumber=2) + "\\boxed{49}")
MALFORMED = Trajectory.from_text('<tool_call>{"name": "add", "arguments": </tool_call>\\boxed{50}')
EXTRA_TOOL = Trajectory.from_text(call("multiply", firstNumber=12, secondNumber=4) + call("add", firstNumber=48, secondNumber=2) + call("sqrt", number=4) + "\\boxed{50}")

CASES = {
    # student: (correctness, strict alignment, f1 alignment, validity, format)
    "aligned": (ALIGNED, 1, 1, 1, 1, 1),
    "subset": (SUBSET, 1, 0, 2 * 1 * 0.5 / 1.5, 1, 1),
    "no_tools_right": (NO_TOOLS_RIGHT, 1, 0, 0, 1, 0),
    "invalid_wrong": (INVALID_WRONG, 0, 1, 1, 0, 1),
    "malformed": (MALFORMED, 1, 0, 2 * 1 * 0.5 / 1.5, 0, 0),
    "extra_tool": (EXTRA_TOOL, 1, 0, 2 * (2 / 3) * 1 / (2 / 3 + 1), 1, 1),
}

EXPECTED_TOTAL = {
    "sparse": lambda c, a, f1, v, fmt: c,
    "format": lambda c, a, f1, v, fmt: c + fmt,
    "validation": lambda c, a, f1, v, fmt: c + v,
    "f1": lambda c, a, f1, v, fmt: c + f1 + v,
    "mentor": lambda c, a, f1, v, fmt: c + a + v,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("preset", PRESETS)
def test_presets_on_hand_made_trajectories(case, preset):
    student, c, a, f1, v, fmt = CASES[case]
    r = score(student, TEACHER, preset=preset)
    assert r.correctness == c
    assert r.alignment_strict == a
    assert r.alignment_f1 == pytest.approx(f1)
    assert r.validity == v
    assert r.format == fmt
    assert r.alignment == pytest.approx(f1 if preset == "f1" else a)
    assert r.total == pytest.approx(EXPECTED_TOTAL[preset](c, a, f1, v, fmt))
    assert list(r.components) == list(PRESETS[preset])


def test_weights_configurable():
    r = score(SUBSET, TEACHER, preset="mentor", weights={"correctness": 2.0, "alignment": 0.5, "validity": 0.25})
    assert r.total == pytest.approx(2.0 * 1 + 0.5 * 0 + 0.25 * 1)
    assert resolve_weights("mentor") == {"correctness": 1.0, "alignment": 1.0, "validity": 1.0}
    with pytest.raises(ValueError, match="unknown reward component"):
        resolve_weights("mentor", {"bogus": 1})
    with pytest.raises(ValueError, match="unknown reward preset"):
        score(SUBSET, TEACHER, preset="dense")


def test_no_calls_teacher_and_student_align():
    t = Trajectory.from_text("\\boxed{4}")
    r = score(Trajectory.from_text("\\boxed{4}"), t)
    assert (r.correctness, r.alignment, r.validity, r.total) == (1, 1, 1, 3)


def test_trl_reward_funcs_per_component():
    funcs, weights = trl_reward_funcs("mentor", {"alignment": 0.5})
    assert [f.__name__ for f in funcs] == ["correctness", "alignment", "validity"]
    assert weights == [1.0, 0.5, 1.0]
    completions = [
        # conversational completions as TRL produces them in multi-turn tool rollouts
        [
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"firstNumber": 12, "secondNumber": 4}}}]},
            {"role": "tool", "name": "multiply", "content": "48"},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"firstNumber": 48, "secondNumber": 2}}}]},
            {"role": "tool", "name": "add", "content": "50"},
            {"role": "assistant", "content": "\\boxed{50}"},
        ],
        [
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "divide", "arguments": {"numerator": 1, "denominator": 0}}}]},
            {"role": "tool", "name": "divide", "content": str({"error": "division by zero"})},
            {"role": "assistant", "content": "\\boxed{7}"},
        ],
        "plain text completion \\boxed{50}",
    ]
    cols = {"teacher_answer": ["50", "50", "50"], "teacher_tools": [["multiply", "add"]] * 3}
    results = {f.__name__: f(prompts=[None] * 3, completions=completions, **cols) for f in funcs}
    assert results == {"correctness": [1.0, 0.0, 1.0], "alignment": [1.0, 0.0, 0.0], "validity": [1.0, 0.0, 1.0]}
    with pytest.raises(KeyError, match="teacher_answer"):
        funcs[0](prompts=[None], completions=["x"])


def test_verl_compute_score():
    solution = call("multiply", firstNumber=12, secondNumber=4) + call("add", firstNumber=48, secondNumber=2) + "\\boxed{50}"
    out = compute_score("mentor_math", solution, "50", {"teacher_tools": ["add", "multiply"]})
    assert out == {"score": 3.0, "correctness": 1.0, "alignment": 1.0, "validity": 1.0}
    out = compute_score("mentor_math", "\\boxed{50}", "50", {"teacher_tools": ["add"], "preset": "sparse"})
    assert out == {"score": 1.0, "correctness": 1.0}


def test_qa_correctness_through_the_trl_and_verl_adapters():
    """kind="qa": SQuAD exact match against the teacher's answer (articles, case, punctuation
    ignored), where math-verify would say no; the math kind stays math-verify."""
    from mentor.rewards import make_trl_reward_func

    right, wrong = "It was \\boxed{The Eiffel Tower.}", "\\boxed{Louvre}"
    funcs, weights = trl_reward_funcs("sparse", kind="qa")
    assert weights == [1.0] and funcs[0].__name__ == "correctness"
    got = funcs[0](prompts=[[]] * 2, completions=[[{"role": "assistant", "content": c}] for c in (right, wrong)],
                   teacher_answer=["eiffel tower", "eiffel tower"], teacher_tools=[[], []])
    assert got == [1.0, 0.0]
    math_fn = make_trl_reward_func("correctness", kind="math")
    assert math_fn(completions=[right], teacher_answer=["eiffel tower"]) == [0.0]
    # a math answer is not exact-matched as text under kind="math" ...
    assert math_fn(completions=["\\boxed{\\frac{1}{2}}"], teacher_answer=["0.5"]) == [1.0]
    # ... nor is it math-verified under kind="qa"
    assert make_trl_reward_func("correctness", kind="qa")(completions=["\\boxed{\\frac{1}{2}}"], teacher_answer=["0.5"]) == [0.0]
    # verl: kind from extra_info, or from a data source naming QA
    assert compute_score("hotpotqa", right, "eiffel tower", {"preset": "sparse"})["correctness"] == 1.0
    assert compute_score("mentor_math", right, "eiffel tower", {"preset": "sparse"})["correctness"] == 0.0
    out = compute_score(None, right, "eiffel tower", {"kind": "qa", "teacher_tools": []})
    assert out["correctness"] == 1.0 and out["score"] == pytest.approx(3.0)  # R_c + R_a (both no tools) + R_v


def test_grpo_trainer_scores_qa_references_as_qa(tmp_path, tiny_model_dir):
    """A QA references file: the trainer's correctness reward is exact match, not math-verify."""
    import json

    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    refs = tmp_path / "qa.jsonl"
    refs.write_text(json.dumps({
        "id": "h0", "question": "Which tower is in Paris?", "answer": "Eiffel Tower", "correct": True, "task": "qa",
        "messages": [{"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "wikipedia_search", "arguments": {"query": "tower Paris"}}}]},
            {"role": "tool", "name": "wikipedia_search", "content": "Doc 1 (Title: Eiffel Tower) ..."},
            {"role": "assistant", "content": "\\boxed{Eiffel Tower}"}],
        "teacher_answer": "Eiffel Tower", "teacher_tools": ["wikipedia_search"], "teacher": {"backend": "fixture"}}) + "\n")
    cfg = {"grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_completion_length": 16,
                    "save_strategy": "no", "use_cpu": True}}
    prep = prepare_grpo(refs, tmp_path / "out", "sparse", tiny_model_dir, cfg)
    assert prep.task == "qa" and prep.tools == "search"
    trainer, _ = build_grpo_trainer(prep)
    (correctness,) = trainer.reward_funcs
    assert correctness(prompts=[[]] * 2, completions=["\\boxed{the eiffel tower}", "\\boxed{Louvre}"],
                       teacher_answer=["Eiffel Tower"] * 2, teacher_tools=[["wikipedia_search"]] * 2) == [1.0, 0.0]
