import time

import pytest

from mentor.models import check_tool_template, load, resolve_model
from mentor.prompts import build_messages
from mentor.generation import Generation, HFGenerator, Sampling, parse_assistant, rollout, run_tool_calls
from mentor.tools import Executor


def test_parse_assistant_structures_calls():
    msg = parse_assistant(
        'Let me.<tool_call>\n{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}\n</tool_call>'
        '<tool_call>{broken</tool_call>'
    )
    assert msg["tool_calls"][0]["function"] == {"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}
    assert "<tool_call>{broken</tool_call>" in msg["content"] and "Let me." in msg["content"]
    results = run_tool_calls(msg, Executor(tools={"add"}))
    assert [r["content"] for r in results][0] == "3"
    assert "not valid JSON" in results[1]["content"]


class ScriptedGenerator:
    """A generator that replays fixed assistant texts (tests the loop, not the model)."""

    def __init__(self, turns):
        self.turns = turns
        self.calls = 0
        self.seen = []

    def generate(self, conversations, tools, sampling):
        self.seen.append((len(conversations), tools is not None))
        out = [Generation(parse_assistant(self.turns[self.calls]), tokens=5) for _ in conversations]
        self.calls += 1
        return out


def test_rollout_loop_executes_tools_until_answer():
    gen = ScriptedGenerator(
        [
            '<tool_call>{"name": "multiply", "arguments": {"firstNumber": 6, "secondNumber": 7}}</tool_call>',
            '<tool_call>{"name": "sqrt", "arguments": {"number": -1}}</tool_call>',
            "The answer is \\boxed{42}",
        ]
    )
    (r,) = rollout(gen, [build_messages("6*7?")], max_turns=4, progress=False)
    assert r.turns == 3 and r.generated_tokens == 15 and not r.truncated
    t = r.trajectory
    assert t.tool_names == ["multiply", "sqrt"]
    assert t.tool_calls[0].observation.content == "42"
    assert t.num_invalid_calls == 1
    assert t.final_answer == "42"


def test_rollout_max_turns_and_disallowed_tool():
    gen = ScriptedGenerator(['<tool_call>{"name": "wikipedia_search", "arguments": {"query": "x"}}</tool_call>'] * 3)
    (r,) = rollout(gen, [build_messages("q")], tools="math", max_turns=2, progress=False)
    assert r.truncated and r.turns == 2
    assert "not available" in r.completion[1]["content"]


@pytest.mark.slow
def test_default_model_loads_fast_from_cache(default_model_path):
    assert resolve_model("smollm2-135m") == default_model_path
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(default_model_path)  # warm imports
    t0 = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(default_model_path)
    assert time.perf_counter() - t0 < 5  # typically well under a second once cached
    model, tok = load("smollm2-135m")
    check_tool_template(tok)
    assert tok.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_real_model_rollout(default_model_path):
    gen = HFGenerator.from_name(default_model_path, batch_size=2)
    prompts = [build_messages("What is 1234 times 5678?"), build_messages("What is 3+4?")]
    rs = rollout(gen, prompts, max_turns=2, sampling=Sampling(max_new_tokens=32), progress=False)
    assert len(rs) == 2
    for r in rs:
        assert 1 <= r.turns <= 2
        assert 0 < r.generated_tokens <= 64
        assert r.completion[0]["role"] == "assistant"
        r.trajectory  # parses


def test_the_transformers_generator_goes_to_the_gpu_when_there_is_one(default_model_path, monkeypatch):
    """``mentor eval`` / ``mentor chat`` with the transformers backend on a GPU machine: the model
    is moved to CUDA (it stayed on the CPU before). Here, with no GPU, the CPU; the GPU branch is
    taken with ``torch.cuda.is_available`` answering True and the move recorded, not run."""
    import torch
    import torch.nn as nn

    gen = HFGenerator.from_name(default_model_path, batch_size=2)
    assert gen.model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    moved = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(nn.Module, "to", lambda self, *a, **k: moved.append((a, k)) or self)
    HFGenerator.from_name(default_model_path, batch_size=2)
    assert moved == [(("cuda",), {})]
    moved.clear()
    HFGenerator.from_name(default_model_path, batch_size=2, device="cpu")  # an explicit device wins
    assert moved == [(("cpu",), {})]
