"""The GRPO learning signal on a tiny model: a fixed group of four rollouts in which one has the
highest reward; after one real GRPOTrainer update (mentor's reward functions, weights, TRL's
tool loop, advantage and loss) that rollout's log-probability rises relative to the others.

Only the sampling is fixed: the trainer's generation call returns the scripted token ids
(and, after a tool result, a continuation that copies the result into ``\\boxed{}``).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from mentor.prompts import build_messages

QUESTION = "What is 6 times 7?"


def _call(name: str, a: int, b: int) -> str:
    return '<tool_call>\n{"name": "%s", "arguments": {"firstNumber": %d, "secondNumber": %d}}\n</tool_call>' % (name, a, b)


#: first turns of the group; c0 is the teacher's plan and answer, the rest are worse
GROUP = [
    _call("multiply", 6, 7),  # R_c 1 (continuation \boxed{42}), R_a 1, R_v 1
    "The answer is \\boxed{41}.",  # R_c 0, R_a 0 (no tool), R_v 1 (no call, nothing invalid)
    _call("add", 6, 7),  # R_c 0 (\boxed{13}), R_a 0, R_v 1
    '<tool_call>\n{"name": "multiply", "arguments": {"firstNumber": 6,\n</tool_call>',  # R_c 0, R_a 1, R_v 0
]
# per component, rollout by rollout (hand-derived from the comments above)
EXPECTED = {"correctness": [1, 0, 0, 0], "alignment": [1, 0, 0, 1], "validity": [1, 1, 1, 0]}


def _refs(path):
    row = {"id": "q0", "question": QUESTION, "answer": "42", "correct": True,
           "messages": [{"role": "assistant", "content": "", "tool_calls": [
               {"type": "function", "function": {"name": "multiply", "arguments": {"firstNumber": 6, "secondNumber": 7}}}]},
               {"role": "tool", "name": "multiply", "content": "42"},
               {"role": "assistant", "content": "\\boxed{42}"}],
           "teacher_answer": "42", "teacher_tools": ["multiply"], "teacher": {"backend": "fixture"}}
    path.write_text(json.dumps(row) + "\n")
    return path


def _fixed_generation(trainer):
    """Replace the trainer's sampling by the fixed group (TRL's own tool loop still runs)."""
    tok = trainer.processing_class
    end = tok.convert_tokens_to_ids("<|im_end|>")

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if len(prompt_ids) == len(GROUP) and not any("<tool_response>" in tok.decode(p) for p in prompt_ids):
            texts = GROUP
        else:  # after a tool result: copy it into the answer
            texts = []
            for p in prompt_ids:
                results = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", tok.decode(p), re.S)
                texts.append(f"\\boxed{{{results[-1].strip()}}}")
        return [tok(t, add_special_tokens=False)["input_ids"] + [end] for t in texts], None

    trainer._generate_single_turn = generate


def _logps(model, tok, prompt: str) -> list[float]:
    """log p(first turn of each rollout | prompt) under ``model``."""
    end = tok.convert_tokens_to_ids("<|im_end|>")
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    model.eval()
    with torch.no_grad():
        for text in GROUP:
            c_ids = tok(text, add_special_tokens=False)["input_ids"] + [end]
            ids = torch.tensor([p_ids + c_ids])
            logits = model(ids).logits[0, len(p_ids) - 1 : -1].float()
            out.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(c_ids)[:, None]).sum().item())
    model.train()
    return out


def _one_step(tmp_path, tiny_model_dir, preset, weights=None):
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    refs = _refs(tmp_path / "refs.jsonl")
    config = {"tools": ["add", "multiply"], "seed": 0, "weights": weights,
              "grpo": {"num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "max_completion_length": 96,
                       "max_tool_calling_iterations": 1, "learning_rate": 1e-3, "max_steps": 1,
                       "save_strategy": "no", "gradient_checkpointing": False, "use_cpu": True}}
    prep = prepare_grpo(refs, tmp_path / preset, preset, tiny_model_dir, config)
    trainer, _ = build_grpo_trainer(prep)
    _fixed_generation(trainer)
    tok = trainer.processing_class
    prompt = tok.apply_chat_template(build_messages(QUESTION), tools=trainer.tools, add_generation_prompt=True, tokenize=False)
    before = _logps(trainer.model, tok, prompt)
    trainer.train()
    after = _logps(trainer.model, tok, prompt)
    recs = [json.loads(line) for line in (tmp_path / preset / "metrics.jsonl").read_text().splitlines()]
    return trainer, [a - b for a, b in zip(after, before, strict=True)], recs


def _mean(xs):
    return sum(xs) / len(xs)


@pytest.mark.parametrize("preset", ["mentor", "sparse"])
def test_grpo_raises_the_best_rollout(tmp_path, tiny_model_dir, preset):
    from mentor.rewards import PRESETS

    trainer, delta, recs = _one_step(tmp_path, tiny_model_dir, preset)
    (rec,) = recs
    # the rewards TRL logged are the hand-derived ones: the group really was scored as scripted
    for c in PRESETS[preset]:
        assert rec[f"reward/{c}"] == pytest.approx(_mean(EXPECTED[c])), c
    assert rec["reward"] == pytest.approx(sum(_mean(EXPECTED[c]) for c in PRESETS[preset]))
    assert rec["trl"]["frac_reward_zero_std"] == 0
    # Fig. 6/7's per-step data, from the executed rollouts: 3 of 4 call a tool, 1 of 3 calls invalid
    assert rec["tool_usage_rate"] == pytest.approx(0.75)
    assert rec["invalid_call_rate"] == pytest.approx(1 / 3) and rec["mean_tool_calls"] == pytest.approx(0.75)
    # the learning signal: the best rollout gains log-probability relative to every other
    assert delta[0] > max(delta[1:]), delta
    assert delta[0] > 0 and _mean(delta[1:]) < delta[0] - 1e-3, delta


def test_non_default_weights_reach_trl_and_the_logged_reward(tmp_path, tiny_model_dir):
    weights = {"correctness": 2.0, "alignment": 0.5, "validity": 0.0}
    trainer, delta, (rec,) = _one_step(tmp_path, tiny_model_dir, "mentor", weights)
    assert trainer.args.reward_weights == [2.0, 0.5, 0.0]
    assert trainer.reward_weights.tolist() == [2.0, 0.5, 0.0]
    assert [f.__name__ for f in trainer.reward_funcs] == ["correctness", "alignment", "validity"]
    # the reward TRL optimised is the weighted sum: 2 * 1/4 + 0.5 * 2/4 + 0 * 3/4
    assert rec["reward"] == pytest.approx(0.75)
    run = json.loads((tmp_path / "mentor" / "run.json").read_text())
    assert run["reward_weights"] == weights
    assert delta[0] > max(delta[1:]), delta  # rewards 2.5, 0, 0, 0.5: c0 still rises most
