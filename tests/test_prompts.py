import json
from pathlib import Path

import pytest

from mentor.prompts import ANSWER_INSTRUCTION, build_messages, chat_template, render, user_message
from mentor.tasks import prompt_text
from mentor.tools import schemas


def test_user_message_shape():
    msg = user_message("What is 2+3? Please reason step by step, and put your final answer within \\boxed{}.")
    assert msg == "Question: What is 2+3?\n" + ANSWER_INSTRUCTION
    assert ANSWER_INSTRUCTION == "If you have got the answer, enclose it within \\boxed{} with latex format."


def _tools_in(text):
    block = text.split("<tools>\n")[1].split("\n</tools>")[0]
    return [json.loads(line) for line in block.strip().splitlines()]


def test_qwen25_math_prompt():
    text = prompt_text("What is 2+3?", task="math", style="qwen2.5")
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    assert _tools_in(text) == schemas("math")
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in text
    assert "<|im_start|>user\nQuestion: What is 2+3?\nIf you have got the answer" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_qwen3_prompt_has_no_qwen_identity():
    text = prompt_text("What is 2+3?", task="math", style="qwen3")
    assert "You are Qwen" not in text
    assert text.startswith("<|im_start|>system\n# Tools")
    assert _tools_in(text) == schemas("math")


def test_qa_prompt_has_only_search():
    text = prompt_text("Who wrote Hamlet?", task="qa")
    assert [t["function"]["name"] for t in _tools_in(text)] == ["wikipedia_search"]


def test_render_through_tokenizer_template(default_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_path)
    via_tok = render(build_messages("What is 2+3?"), "math", tokenizer=tok)
    assert via_tok == prompt_text("What is 2+3?", style="qwen2.5")


def test_unknown_style_and_task():
    with pytest.raises(ValueError, match="unknown prompt style"):
        chat_template("llama")
    with pytest.raises(ValueError, match="unknown task"):
        prompt_text("x", task="code")


def test_compact_style_lists_signatures():
    text = prompt_text("What is 2+3?", task="math", style="qwen2.5-compact")
    block = text.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()
    assert block[0] == "add(firstNumber: number, secondNumber: number) - Add two numbers together"
    assert "sum_numbers(numbers: number[]) - Calculate the sum of an array of numbers" in block
    assert len(block) == 12
    # the rest is Qwen2.5's prompt
    full = prompt_text("What is 2+3?", task="math", style="qwen2.5")
    assert text.split("<tools>\n")[0] == full.split("<tools>\n")[0]
    assert text.split("</tools>")[-1] == full.split("</tools>")[-1]
    qa = prompt_text("Who?", task="qa", style="qwen2.5-compact")
    assert "wikipedia_search(query: string, top_n: integer (optional)) - Search Wikipedia for a given query." in qa


def test_compact_model_is_trl_training_ready(default_model_path):
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_prefix_preserving, supports_tool_calling

    from mentor.models import load_tokenizer, resolve_model

    tok = load_tokenizer("smollm2-135m-compact")
    assert supports_tool_calling(tok) and is_chat_template_prefix_preserving(tok)
    assert get_training_chat_template(tok) is None  # generation markers present, no patching needed
    assert tok.response_template is not None
    parsed = tok.parse_response('<tool_call>\n{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}\n</tool_call><|im_end|>', prefix="")
    assert parsed["tool_calls"][0]["function"] == {"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}
    assert render(build_messages("q"), "math", tokenizer=tok) == prompt_text("q", style="qwen2.5-compact")
    assert (Path(resolve_model("smollm2-135m-compact")) / "model.safetensors").resolve() == (Path(default_model_path) / "model.safetensors").resolve()
