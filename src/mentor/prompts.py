"""Prompt formats (SPEC.md, Tables 7-10): the one place they are defined.

The system message is the model's official chat template with tools (Qwen2.5 or Qwen3, as
TRL ships them): tool signatures inside ``<tools></tools>`` and the ``<tool_call>``
instruction. The user message is ``Question: <question>`` followed by the boxed-answer
instruction. Which tools a prompt carries is its task's (``mentor.tasks``): the 12 math tools
for math, only ``wikipedia_search`` for retrieval QA; ``mentor.tasks.prompt_text`` renders a
task's full prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mentor.tools.registry import ToolSpec, schemas

ANSWER_INSTRUCTION = "If you have got the answer, enclose it within \\boxed{} with latex format."

STYLES = ("qwen2.5", "qwen3", "qwen2.5-compact")

# The CPU-scale variant: Qwen2.5's tool template (TRL's training form, with generation markers)
# listing each tool as one signature line instead of its JSON schema. The 12 math schemas are
# ~960 tokens of the ~1,140-token prompt; as signatures the prompt is about a third as long,
# which makes training and evaluating the bundled 135M student on a CPU 3x cheaper. Everything
# else (system line, <tool_call> instruction, turns) is Qwen2.5's. Not the paper's prompt: the
# GPU configs use the models' official templates.
_JSON_TOOL = "{{- tool | tojson }}"
_COMPACT_TOOL = (
    "{%- set fn = tool.function if tool.function is defined else tool %}"
    "{{- fn.name + '(' }}"
    "{%- for pname, p in fn.parameters.properties.items() %}"
    "{{- pname + ': ' + ((p['items'].type if p['items'] is defined else 'any') ~ '[]' if p.type == 'array' else p.type) }}"
    "{%- if pname not in (fn.parameters.required or []) %}{{- ' (optional)' }}{%- endif %}"
    "{%- if not loop.last %}{{- ', ' }}{%- endif %}"
    "{%- endfor %}"
    "{{- ') - ' + fn.description }}"
)

# Instructions that benchmark files append to their problems; replaced by ours.
_FOREIGN_INSTRUCTIONS = re.compile(
    r"\s*(Please reason step by step, and put your final answer within \\boxed\{\}\.?"
    r"|Let's think step by step and output the final answer within \\boxed\{\}\.?)\s*$"
)


def clean_question(question: str) -> str:
    return _FOREIGN_INSTRUCTIONS.sub("", str(question)).strip()


def user_message(question: str) -> str:
    """``Question: ...`` plus the boxed-answer instruction."""
    return f"Question: {clean_question(question)}\n{ANSWER_INSTRUCTION}"


def build_messages(question: str, system: str | None = None) -> list[dict[str, Any]]:
    """The prompt messages (the tools go to the chat template, not into the messages)."""
    msgs: list[dict[str, Any]] = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append({"role": "user", "content": user_message(question)})
    return msgs


def chat_template(style: str) -> str:
    """The official tool chat template of a model family, as TRL ships it."""
    from trl.chat_template_utils import qwen2_5_chat_template, qwen2_5_training_chat_template, qwen3_chat_template

    templates = {"qwen2.5": qwen2_5_chat_template, "qwen3": qwen3_chat_template}
    if style == "qwen2.5-compact":
        if _JSON_TOOL not in qwen2_5_training_chat_template:  # pragma: no cover - guards a TRL template change
            raise RuntimeError("TRL's Qwen2.5 training template changed; cannot derive the compact style")
        return qwen2_5_training_chat_template.replace(_JSON_TOOL, _COMPACT_TOOL)
    try:
        return templates[style]
    except KeyError:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {', '.join(STYLES)}") from None


def render(
    messages: Sequence[dict[str, Any]],
    tools: str | Sequence[str | ToolSpec] | None = "math",
    tokenizer: Any = None,
    style: str = "qwen2.5",
    add_generation_prompt: bool = True,
) -> str:
    """Render messages (and tool schemas) to prompt text: through the tokenizer's chat template
    when it has one, else through the ``style`` template."""
    tool_schemas = schemas(tools) if tools else None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tools=tool_schemas, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[list(messages)],
        tools=tool_schemas,
        chat_template=chat_template(style),
        add_generation_prompt=add_generation_prompt,
    )
    return rendered[0]
