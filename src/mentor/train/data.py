"""Training datasets built from a references file (``mentor teach`` output).

- GRPO: conversational ``prompt`` (``mentor.prompts.build_messages``; the chat template adds the
  tools), plus the ``teacher_answer`` and ``teacher_tools`` columns the reward functions read.
- SFT: the full conversation (prompt + the teacher's ``messages``) with the task's tool
  schemas, so the chat template renders exactly what the student sees at rollout time; the
  loss is restricted to assistant turns by TRL's ``assistant_only_loss``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mentor.io import DataError
from mentor.prompts import build_messages
from mentor.references import Reference, load_references
from mentor.tasks import get_task
from mentor.tools.local import decode_arguments
from mentor.tools.registry import schemas


def references(path: str | os.PathLike, only_correct: bool = True, limit: int | None = None) -> list[Reference]:
    """Load the references (``DataError`` naming file/line/field on bad input) and check that
    they share one task (math or qa), since the task decides the tool set."""
    refs = load_references(path, only_correct=only_correct)
    if limit:
        refs = refs[: int(limit)]
    tasks = {r.task for r in refs}
    if len(tasks) > 1:
        raise DataError(path, None, f"references mix tasks {sorted(tasks)}; train one task per run", "task")
    return refs


def task_of(refs: list[Reference]) -> str:
    return refs[0].task if refs else "math"


def grpo_rows(refs: list[Reference]) -> list[dict[str, Any]]:
    return [
        {
            "prompt": build_messages(r.question),
            "teacher_answer": r.teacher_answer,
            "teacher_tools": list(r.teacher_tools),
            "id": r.id,
        }
        for r in refs
    ]


def grpo_dataset(refs: list[Reference]):
    from datasets import Dataset

    return Dataset.from_list(grpo_rows(refs))


def _normalise_message(msg: dict[str, Any], path: str, ref_id: str) -> dict[str, Any]:
    """A teacher message in the shape chat templates render: assistant tool calls as
    ``{"type": "function", "function": {"name", "arguments": <object>}}`` and tool results as
    strings."""
    role = msg.get("role")
    if role not in ("assistant", "tool"):
        raise DataError(path, None, f"reference {ref_id!r}: teacher messages must be assistant/tool turns, got {role!r}", "messages")
    out: dict[str, Any] = {"role": role, "content": msg.get("content") or ""}
    if not isinstance(out["content"], str):
        out["content"] = json.dumps(out["content"], ensure_ascii=False)
    if role == "assistant" and msg.get("tool_calls"):
        calls = []
        for tc in msg["tool_calls"]:
            fn = tc.get("function", tc) if isinstance(tc, dict) else {}
            args = fn.get("arguments", {})
            try:
                args = decode_arguments(args)
            except json.JSONDecodeError:
                    raise DataError(path, None, f"reference {ref_id!r}: tool call arguments are not JSON", "messages") from None
            calls.append({"type": "function", "function": {"name": fn.get("name"), "arguments": args}})
        out["tool_calls"] = calls
    if role == "tool" and msg.get("name"):
        out["name"] = msg["name"]
    return out


def sft_conversations(refs: list[Reference], path: str | os.PathLike = "references") -> list[list[dict[str, Any]]]:
    convs = []
    for r in refs:
        msgs = [_normalise_message(m, str(path), r.id) for m in r.messages]
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(path, None, f"reference {r.id!r} has no assistant turn to learn from", "messages")
        convs.append(build_messages(r.question) + msgs)
    return convs


def teacher_completion_tokens(tokenizer: Any, refs: list[Reference], tools: Any = None,
                              path: str | os.PathLike = "references",
                              chat_template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Per reference: the tokens its teacher trajectory takes as a GRPO completion, i.e. what TRL's
    tool loop counts against ``max_completion_length`` -- every assistant turn up to and including
    its end-of-sequence token and every tool result with the chat template's turn markers, after
    the prompt's generation prompt; rendered with the template TRL trains with (its
    prefix-preserving training template where the model's is not, e.g. Qwen3) and
    ``chat_template_kwargs`` (``grpo.chat_template_kwargs``)."""
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_prefix_preserving

    from mentor.tools.callables import callables

    kw: dict[str, Any] = {"tools": callables(tools or get_task(task_of(refs)).toolset), **(chat_template_kwargs or {})}
    if not is_chat_template_prefix_preserving(tokenizer):
        kw["chat_template"] = get_training_chat_template(tokenizer)
    eos = tokenizer.eos_token_id
    out = []
    for conv in sft_conversations(refs, path):
        prompt = [m for m in conv if m["role"] not in ("assistant", "tool")]
        head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False, **kw)
        whole = tokenizer.apply_chat_template(conv, tokenize=False, **kw)
        if whole.startswith(head):  # the usual case: tokenize the completion only (the prompt is most of the text)
            ids = tokenizer(whole[len(head):], add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(whole, add_special_tokens=False)["input_ids"][len(tokenizer(head, add_special_tokens=False)["input_ids"]):]
        if eos in ids[-3:]:  # the last turn's generation ends at its EOS ("<|im_end|>"), not at the "\n" after it
            ids = ids[: len(ids) - ids[::-1].index(eos)]
        out.append(len(ids))
    return out


def completion_budget(tokenizer: Any, refs: list[Reference], budget: int, tools: Any = None,
                      chat_template_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """How many teacher trajectories fit in ``budget`` completion tokens: a student whose answer
    needs as many tokens as the teacher's can only be right on those (TRL stops the tool loop
    before a tool result that would pass the budget; a cut completion has no answer)."""
    lengths = sorted(teacher_completion_tokens(tokenizer, refs, tools, chat_template_kwargs=chat_template_kwargs))
    return {"max_completion_length": budget, "references": len(lengths), "fit": sum(n <= budget for n in lengths),
            "teacher_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]} if lengths else {}}


def sft_dataset(refs: list[Reference], path: str | os.PathLike = "references", tools: Any = None):
    """``messages`` (stored as JSON so that tool calls with different argument names keep their
    own keys) and ``tools`` (the JSON schemas, as TRL's SFT tokenizer reads them)."""
    from datasets import Dataset, Features, Json, Value

    tools_json = json.dumps(schemas(tools or get_task(task_of(refs)).toolset))
    rows = [{"messages": conv, "tools": tools_json} for conv in sft_conversations(refs, path)]
    return Dataset.from_list(rows, features=Features({"messages": Json(), "tools": Value("string")}))
