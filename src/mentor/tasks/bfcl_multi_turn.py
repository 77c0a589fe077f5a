"""BFCL multi-turn: the model converses over several user turns with BFCL's simulated APIs
(file system, trading bot, travel booking, ...), executed and scored by ``bfcl-eval`` itself.

The driver follows bfcl-eval's ``BaseHandler.inference_multi_turn_FC``
(``bfcl_eval/model_handler/base_handler.py``): per user turn, the turn's messages are appended;
then the model is queried step by step, each step's tool calls are executed by bfcl-eval's
``execute_multi_turn_func_call`` on the entry's API instances (the results go back as ``tool``
messages), until a step makes no decodable call; more than ``MAXIMUM_STEP_LIMIT`` (20) executed
steps in a turn force-quits the entry. A held-out turn of ``multi_turn_miss_func`` adds the
held-out functions to the tools and asks ``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``.
Each step is one ``Rollout.add_turn`` of mentor's tool loop with a ``BFCLExecutor``; steps of
all active conversations are generated in one batch.

Scoring is bfcl-eval's ``_evaluate_single_multi_turn_entry`` logic: a force-quit entry (fewer
turns than the ground truth) fails; otherwise each step's calls, in BFCL's executable form
(``convert_to_function_call``), go to ``multi_turn_checker``, which re-runs the model's calls
and the ground truth's on fresh API instances and compares states and results turn by turn.

bfcl-eval keeps API instances in a module-level dict keyed by model name and entry id; every
conversation here uses its own unique key and removes its instances when scored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mentor.generation.loop import Generation, Rollout, Sampling
from mentor.progress import ProgressBar
from mentor.tools.executor import Executor, Observation

EXEC_ERROR = "Error during execution"


def generate_each(generator: Any, conversations: Sequence[list[dict[str, Any]]],
                  tools: Sequence[list[dict[str, Any]] | None], sampling: Sampling,
                  advance: Any = None) -> list[Generation]:
    """One assistant turn per conversation, each with its own tools: all at once when the generator
    takes a tool set per conversation (``generate_each``: the OpenAI-compatible client, requests in
    flight together), rendered and generated in batches when it can (``render`` +
    ``generate_rendered``), else grouped by tool set."""
    if hasattr(generator, "generate_each"):
        return generator.generate_each(conversations, tools, sampling, on_done=advance)
    out: list[Generation | None] = [None] * len(conversations)
    if hasattr(generator, "generate_rendered"):
        bs = max(1, getattr(generator, "batch_size", 8))
        texts = [generator.render(c, t) for c, t in zip(conversations, tools, strict=True)]
        for s in range(0, len(texts), bs):
            for i, gen in enumerate(generator.generate_rendered(texts[s : s + bs], sampling), start=s):
                out[i] = gen
                if advance:
                    advance()
        return out  # type: ignore[return-value]
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(tools):
        groups.setdefault(json.dumps(t, sort_keys=True), []).append(i)
    for idx in groups.values():
        for i, gen in zip(idx, generator.generate([conversations[i] for i in idx], tools[idx[0]], sampling), strict=True):
            out[i] = gen
            if advance:
                advance()
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class BFCLExecutor(Executor):
    """Executes tool calls on one BFCL entry's API instances with bfcl-eval's own
    ``execute_multi_turn_func_call``; the observation is BFCL's result string, unchanged."""

    entry: Any = None  # the BFCL test entry (id, initial_config, involved_classes)
    key: str = ""  # the instance key of this conversation (BFCL's "model name")

    def execute(self, name: Any, arguments: Any) -> Observation:
        from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call

        if not isinstance(name, str) or not isinstance(arguments, dict):
            return Observation.failure("not a function call")
        results, _ = execute_multi_turn_func_call(
            [function_call(name, arguments)], self.entry.get("initial_config", {}),
            self.entry["involved_classes"], self.key, self.entry["id"],
            long_context=_long_context(self.entry["id"]), is_evaL_run=False,
        )
        return Observation(ok=True, content=results[0])


def function_call(name: str, arguments: dict[str, Any]) -> str:
    """A call in BFCL's executable form, ``name(a=1,b='x')``: bfcl-eval's
    ``model_handler/utils.py::convert_to_function_call`` (not importable without its tree-sitter
    parsers, so restated here; tests/test_bfcl_v4.py compares the two on the package's source)."""
    return f"{name}({','.join(f'{k}={v!r}' for k, v in arguments.items())})"


def _long_context(entry_id: str) -> bool:
    category = entry_id.rsplit("_", 1)[0]
    return "long_context" in category or "composite" in category


@dataclass
class Conversation:
    """One multi-turn entry being run: its messages, tools and per-turn assistant steps."""

    entry: dict[str, Any]
    tools: list[dict[str, Any]]
    key: str = field(default_factory=lambda: f"mentor_{uuid.uuid4().hex}")
    rollout: Rollout = field(default_factory=lambda: Rollout(prompt=[]))
    turn: int = -1
    steps: int = 0
    #: per user turn, the assistant messages of its steps
    responses: list[list[dict[str, Any]]] = field(default_factory=list)
    force_quit: bool = False
    done: bool = False
    #: offer the functions (``False``: the no-tools arm of the tool-effect analysis; nothing runs)
    use_tools: bool = True

    @property
    def executor(self) -> BFCLExecutor:
        return BFCLExecutor(entry=self.entry, key=self.key)

    def next_turn(self, extra_prompt: str, to_tool: Any) -> None:
        """Start the next user turn (or finish): its messages; a held-out turn adds its functions."""
        self.turn += 1
        self.steps = 0
        turns = self.entry["question"]
        if self.force_quit or self.turn >= len(turns):
            self.done = True
            return
        messages = [dict(m) for m in turns[self.turn]]
        held_out = self.entry.get("missed_function", {}).get(str(self.turn))
        if held_out:
            self.tools = self.tools + [to_tool(f) for f in held_out] if self.use_tools else []
            messages = [{"role": "user", "content": extra_prompt}]
        self.rollout.completion.extend(messages)
        self.responses.append([])

    def step(self, gen: Generation, limit: int) -> bool:
        """Add one generated step; execute its calls. Returns whether the turn goes on."""
        self.responses[-1].append(gen.message)
        calls = bool(gen.message.get("tool_calls"))
        goes_on = self.rollout.add_turn(gen, self.tools if calls else None, self.executor, last_turn=False)
        if not goes_on:
            return False
        self.steps += 1
        if self.steps > limit:
            self.force_quit = True
            return False
        return True


def run(generator: Any, entries: Sequence[dict[str, Any]], tools: Sequence[list[dict[str, Any]]],
        sampling: Sampling, to_tool: Any, progress: Any = True, use_tools: bool = True) -> list[Conversation]:
    """Drive every entry's conversation to its end, one batched generation per round
    (``use_tools=False``: the same turns with no functions offered and no call executed)."""
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC, MAXIMUM_STEP_LIMIT

    convs = [Conversation(entry=e, tools=list(t) if use_tools else [], use_tools=use_tools)
             for e, t in zip(entries, tools, strict=True)]
    for c in convs:
        c.next_turn(DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC, to_tool)
    bar = ProgressBar(len(convs), "bfcl multi-turn", progress, unit="items")
    try:
        while active := [c for c in convs if not c.done]:
            gens = generate_each(generator, [c.rollout.messages for c in active], [c.tools or None for c in active], sampling)
            for c, gen in zip(active, gens, strict=True):
                if not c.step(gen, MAXIMUM_STEP_LIMIT):
                    c.next_turn(DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC, to_tool)
                    if c.done:
                        bar.advance()
    finally:
        bar.close()
    return convs


def decoded_steps(conv: Conversation) -> list[list[list[str]]]:
    """Per turn, per step with calls: the calls in BFCL's executable form (``f(a=1)``), as its
    eval runner decodes them (steps without a call are left out)."""
    out = []
    for turn in conv.responses:
        steps = []
        for msg in turn:
            calls = [(tc.get("function", tc)) for tc in msg.get("tool_calls") or []]
            if calls:
                steps.append([function_call(c["name"], c.get("arguments") or {}) for c in calls])
        out.append(steps)
    return out


def check(conv: Conversation, gold: list[list[str]]) -> dict[str, Any]:
    """bfcl-eval's verdict on a finished conversation: ``{"valid", "error", "decoded"}``."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    decoded = decoded_steps(conv)
    try:
        if len(conv.responses) != len(gold):
            return {"valid": False, "decoded": decoded, "error": (
                f"Model was force-terminated during inference phase. The length of the model result turns "
                f"({len(conv.responses)}) does not match the length of the ground truth turns ({len(gold)}).")}
        category = conv.entry["id"].rsplit("_", 1)[0]
        try:
            res = multi_turn_checker(decoded, gold, conv.entry, category, conv.key)
        except Exception as e:  # noqa: BLE001 - the checker's own asserts: a wrong answer
            return {"valid": False, "decoded": decoded, "error": f"checker error: {type(e).__name__}: {e}"}
        return {"valid": bool(res["valid"]), "decoded": decoded, "error": None if res["valid"] else res.get("error_message")}
    finally:
        release(conv.key)


def release(key: str) -> None:
    """Drop the API instances bfcl-eval keeps for this conversation's key (inference and eval)."""
    import re

    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    prefix = re.sub(r"[-./:]", "_", key)
    for name in [n for n in vars(multi_turn_utils) if n.startswith(prefix)]:
        del vars(multi_turn_utils)[name]


def tool_results(conv: Conversation) -> list[dict[str, Any]]:
    """The tool messages of the conversation, in order."""
    return [m for m in conv.rollout.completion if m.get("role") == "tool"]


def invalid_calls(conv: Conversation) -> int:
    """Calls that raised in BFCL's executor (wrong name or arguments) or were not well-formed."""
    bad = sum(str(m.get("content", "")).startswith(EXEC_ERROR) for m in tool_results(conv))
    written = sum((m.get("content") or "").count("<tool_call>") for t in conv.responses for m in t)
    return bad + written
