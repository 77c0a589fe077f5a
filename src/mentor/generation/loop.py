"""The one multi-turn tool loop (teacher references, evaluation, the pipeline).

Per conversation: the model writes an assistant turn; its tool calls are executed by the
``Executor`` the caller passes (in-process or the tool server, with its search backend); the
results go back as ``tool`` messages; repeat until a turn has no tool call or ``max_turns`` is
reached. ``Rollout.add_turn`` is that step, shared by the batched synchronous ``rollout`` (HF
and OpenAI-compatible ``Generator``s) and the per-conversation async loop of
``mentor.generation.openai_compat.OpenAIChat.converse``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from mentor.progress import ProgressBar
from mentor.tools.executor import LOCAL, Executor
from mentor.tools.local import Observation
from mentor.tools.registry import ToolSpec, schemas
from mentor.trajectory import Trajectory, tool_call_blocks, tool_call_from_obj


@dataclass(frozen=True)
class Sampling:
    """Decoding settings, shared by the teacher and evaluation; ``temperature == 0`` is greedy.
    ``top_k=None``: no top-k cut (``mentor.generation.decoding`` resolves a model's recommended
    settings into this)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None
    top_k: int | None = None

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
    for start, end, call, closed in tool_call_blocks(text):
        if call.parse_error is None and closed:
            pieces.append(text[pos:start])
            pos = end
            calls.append(
                {"type": "function", "id": f"call_{len(calls) + 1}", "function": {"name": call.name, "arguments": call.arguments}}
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
        for _, _, call, _ in tool_call_blocks(content):
            out.append((call.name, call.arguments, None, call.parse_error or "unclosed <tool_call> block"))
    return out


def run_tool_calls(message: dict[str, Any], executor: Executor = LOCAL) -> list[dict[str, Any]]:
    """Execute every call of an assistant message with ``executor``; return the ``tool``
    messages, in order. Malformed calls and calls the executor refuses get ``{"error": ...}``."""
    results = []
    for name, args, call_id, parse_error in pending_calls(message):
        obs = Observation.failure(parse_error) if parse_error else executor.execute(name, args)
        msg: dict[str, Any] = {"role": "tool", "name": name or "unknown", "content": obs.as_message_content()}
        if call_id:
            msg["tool_call_id"] = call_id
        results.append(msg)
    return results


def offered(tools: str | Sequence[str | ToolSpec] | None, executor: Executor) -> tuple[list[dict[str, Any]] | None, Executor]:
    """The schemas a conversation is offered and the executor restricted to them (``None``: no tools)."""
    if not tools:
        return None, executor
    return schemas(tools), executor.allowing(tools)


@dataclass
class Rollout:
    """One conversation: its prompt, the completion so far and its counters."""

    prompt: list[dict[str, Any]]
    completion: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    generated_tokens: int = 0
    truncated: bool = False  # stopped by max_turns while still calling tools
    seconds: float = 0.0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.prompt + self.completion

    @property
    def trajectory(self) -> Trajectory:
        return Trajectory.from_messages(self.completion)

    def add_turn(self, gen: Generation, tool_schemas: list[dict[str, Any]] | None, executor: Executor,
                 last_turn: bool, on_message: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Append a generated turn and the results of its tool calls; return whether the
        conversation goes on (it called tools and this was not the last turn). ``on_message``
        sees each appended message: the turn before its calls run, then each tool result."""
        self.completion.append(gen.message)
        self.turns += 1
        self.generated_tokens += gen.tokens
        if on_message is not None:
            on_message(gen.message)
        if not (tool_schemas and pending_calls(gen.message)):
            return False
        for result in run_tool_calls(gen.message, executor):
            self.completion.append(result)
            if on_message is not None:
                on_message(result)
        self.truncated = last_turn
        return not last_turn

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
    executor: Executor = LOCAL,
    on_message: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[Rollout]:
    """Run multi-turn tool-using conversations for every prompt (a list of messages each), a
    batch of turns at a time, tool calls executed by ``executor``.

    ``tools=None`` runs without tools (the "no tools" arm of the tool-effect analysis).
    ``on_message(i, message)``, when given, is called for every message added to conversation
    ``i`` as it happens: each assistant turn once generated (before its tool calls run), then
    each tool result (a live display such as ``mentor chat``)."""
    tool_schemas, executor = offered(tools, executor)
    states = [Rollout(prompt=list(p)) for p in prompts]
    active = list(range(len(states)))
    bar = ProgressBar(len(states), description, progress, unit="conversations")
    t0 = time.perf_counter()
    try:
        for turn in range(max_turns):
            if not active:
                break
            gens = generator.generate([states[i].messages for i in active], tool_schemas, sampling)
            still = []
            for i, gen in zip(active, gens, strict=True):
                hook = partial(on_message, i) if on_message is not None else None
                if states[i].add_turn(gen, tool_schemas, executor, last_turn=turn + 1 == max_turns, on_message=hook):
                    still.append(i)
                    continue
                states[i].seconds = time.perf_counter() - t0
                bar.advance()
            active = still
    finally:
        bar.close()
    return states
