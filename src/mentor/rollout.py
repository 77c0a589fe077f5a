"""Multi-turn tool-using rollouts outside training (teacher references, evaluation).

The loop, per conversation: the model writes an assistant turn; its ``<tool_call>`` blocks are
executed with the project's executor (``mentor.tools.execute``: in-process or the tool server);
the results go back as ``tool`` messages; repeat until a turn has no tool call or ``max_turns``
is reached. Same executor, same prompt formats as training.

A ``Generator`` turns a batch of conversations into assistant messages. ``HFGenerator`` does
batched ``model.generate`` with transformers (CPU or GPU); the OpenAI-compatible backend (vLLM,
SGLang, ``transformers serve``, hosted APIs) lives in ``mentor.teacher.openai_backend``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mentor.tools.executor import Observation, execute
from mentor.tools.registry import ToolSpec, schemas
from mentor.trajectory import _TAG_RE, Trajectory, parse_tool_call, tool_call_from_obj


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Generation:
    """One assistant turn as generated: the message and the count of generated tokens."""

    message: dict[str, Any]
    tokens: int = 0


class Generator(Protocol):
    def generate(
        self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None, sampling: Sampling
    ) -> list[Generation]: ...


def parse_assistant(text: str) -> dict[str, Any]:
    """Raw assistant text -> an assistant message: well-formed ``<tool_call>`` blocks become
    structured ``tool_calls`` (as TRL's response parsing does); everything else, including
    malformed calls and ``<think>`` blocks, stays in ``content``. ``raw`` keeps the exact text."""
    calls: list[dict[str, Any]] = []
    pieces: list[str] = []
    pos = 0
    for m in _TAG_RE.finditer(text):
        if m.group("call") is None:
            continue
        call = parse_tool_call(m.group("call"))
        closed = text[m.start() : m.end()].rstrip().endswith("</tool_call>")
        if call.parse_error is None and closed:
            pieces.append(text[pos : m.start()])
            pos = m.end()
            calls.append(
                {
                    "type": "function",
                    "id": f"call_{len(calls) + 1}",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            )
    pieces.append(text[pos:])
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(pieces).strip(), "raw": text}
    if calls:
        msg["tool_calls"] = calls
    return msg


def pending_calls(message: dict[str, Any]) -> list[tuple[str | None, Any, str | None, str | None]]:
    """``(name, arguments, call_id, parse_error)`` for every call in an assistant message,
    structured ones first, then malformed ``<tool_call>`` text left in the content."""
    out = []
    for tc in message.get("tool_calls") or []:
        call = tool_call_from_obj(tc)
        out.append((call.name, call.arguments, call.id, call.parse_error))
    content = message.get("content") or ""
    if isinstance(content, str) and "<tool_call>" in content:
        for m in _TAG_RE.finditer(content):
            if m.group("call") is not None:
                call = parse_tool_call(m.group("call"))
                error = call.parse_error or "unclosed <tool_call> block"
                out.append((call.name, call.arguments, None, error))
    return out


def run_tool_calls(message: dict[str, Any], allowed: set[str] | None = None) -> list[dict[str, Any]]:
    """Execute every call of an assistant message; return the ``tool`` messages, in order.
    Malformed calls and calls to tools not offered get an ``{"error": ...}`` result."""
    results = []
    for name, args, call_id, parse_error in pending_calls(message):
        if parse_error:
            obs = Observation.failure(parse_error)
        elif allowed is not None and name not in allowed:
            obs = Observation.failure(f"tool {name!r} is not available; available: {', '.join(sorted(allowed))}")
        else:
            obs = execute(name, args)
        msg: dict[str, Any] = {"role": "tool", "name": name or "unknown", "content": obs.as_message_content()}
        if call_id:
            msg["tool_call_id"] = call_id
        results.append(msg)
    return results


@dataclass
class Rollout:
    """One finished conversation."""

    prompt: list[dict[str, Any]]
    completion: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    generated_tokens: int = 0
    truncated: bool = False  # stopped by max_turns while still calling tools
    seconds: float = 0.0

    @property
    def trajectory(self) -> Trajectory:
        return Trajectory.from_messages(self.completion)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "turns": self.turns,
            "generated_tokens": self.generated_tokens,
            "truncated": self.truncated,
        }


def rollout(
    generator: Generator,
    prompts: Sequence[list[dict[str, Any]]],
    tools: str | Sequence[str | ToolSpec] | None = "math",
    max_turns: int = 4,
    sampling: Sampling = Sampling(),
    progress: bool | Callable[[int], None] = True,
    description: str = "rollouts",
) -> list[Rollout]:
    """Run multi-turn tool-using conversations for every prompt (a list of messages each).

    ``tools=None`` runs without tools (the "no tools" arm of the tool-effect analysis)."""
    tool_schemas = schemas(tools) if tools else None
    allowed = {s["function"]["name"] for s in tool_schemas} if tool_schemas else set()
    states = [Rollout(prompt=list(p)) for p in prompts]
    active = list(range(len(states)))
    from mentor.progress import ProgressBar

    bar = ProgressBar(len(states), description, progress, unit="conversations")
    t0 = time.perf_counter()
    try:
        for turn in range(max_turns):
            if not active:
                break
            convs = [states[i].prompt + states[i].completion for i in active]
            gens = generator.generate(convs, tool_schemas, sampling)
            still = []
            for i, gen in zip(active, gens, strict=True):
                st = states[i]
                st.completion.append(gen.message)
                st.turns += 1
                st.generated_tokens += gen.tokens
                calls = pending_calls(gen.message)
                if calls and tool_schemas:
                    st.completion.extend(run_tool_calls(gen.message, allowed))
                    if turn + 1 < max_turns:
                        still.append(i)
                        continue
                    st.truncated = True
                st.seconds = time.perf_counter() - t0
                bar.advance()
            active = still
    finally:
        bar.close()
    return states


class HFGenerator:
    """Batched generation with a transformers model and its chat template (left padding)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, chat_template_kwargs: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.chat_template_kwargs = chat_template_kwargs or {}
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_name(cls, name: str | None = None, batch_size: int = 8, dtype: str = "float32") -> HFGenerator:
        from mentor.models import load

        model, tok = load(name, dtype=dtype)
        return cls(model, tok, batch_size=batch_size)

    def render(self, conversation: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        clean = [{k: v for k, v in m.items() if k != "raw"} for m in conversation]
        return self.tokenizer.apply_chat_template(
            clean, tools=tools, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )

    def generate(
        self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None, sampling: Sampling
    ) -> list[Generation]:
        return self.generate_rendered([self.render(c, tools) for c in conversations], sampling)

    def generate_rendered(self, texts: Sequence[str], sampling: Sampling) -> list[Generation]:
        """Batched generation from prompt texts already rendered with the chat template (used when
        each conversation offers its own tools, e.g. BFCL)."""
        import torch

        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Generation | None] = [None] * len(texts)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "do_sample": not sampling.greedy}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            with torch.inference_mode():
                gen = self.model.generate(**enc, pad_token_id=pad, **kwargs)
            new = gen[:, enc["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                n = len(ids)
                for k, t in enumerate(ids):
                    if t == eos:
                        n = k + 1
                        break
                else:
                    while n and ids[n - 1] == pad:
                        n -= 1
                text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
                out[i] = Generation(parse_assistant(text), tokens=n)
        return [g for g in out if g is not None]
