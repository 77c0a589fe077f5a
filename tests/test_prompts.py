import json

import pytest

from mentor.prompts import ANSWER_INSTRUCTION, build_messages, chat_template, prompt_text, render, user_message
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
