"""The program teacher: writes a synthetic problem's known solution plan as a correct
tool-using trajectory (assistant ``tool_calls`` turns, tool results from the project's
executor, a final assistant message with brief reasoning and ``\\boxed{answer}``).

It is the offline default teacher for the synthetic task family; every record it produces is
labelled ``{"backend": "program", ...}``.

Evaluated as a model (``ProgramTeacher.generator``, the pipeline's ``teacher_eval`` stage), the
same plan is played turn by turn through ``mentor.eval.evaluate``'s tool loop: each turn is the
plan's next call, the ``Executor`` of the evaluation runs it, and the last turn boxes the last
tool result the loop observed. Without tools it has no way to compute anything (the plan *is*
its arithmetic), so it is not evaluated without tools: ``ProgramGenerator`` refuses, and the
pipeline marks the teacher's no-tools evaluation not applicable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from mentor.data.datasets import Question
from mentor.generation.loop import Generation, Sampling, run_tool_calls
from mentor.prompts import build_messages
from mentor.tasks.base import Benchmark
from mentor.teacher.base import TeacherOutput
from mentor.tools.executor import LOCAL, Executor


def plan_call(step: dict[str, Any], k: int) -> dict[str, Any]:
    """The assistant turn of a plan's ``k``-th call (1-based): its ``say`` text and one structured call."""
    call = {"type": "function", "id": f"call_{k}", "function": {"name": step["name"], "arguments": dict(step["arguments"])}}
    return {"role": "assistant", "content": step.get("say", ""), "tool_calls": [call]}


def plan_answer(final: str | None, last: str | None) -> dict[str, Any]:
    """The closing assistant turn: the plan's final sentence and the last tool result, boxed."""
    return {"role": "assistant", "content": (final + " " if final else "") + f"The answer is \\boxed{{{last}}}."}


def plan_messages(plan: Sequence[dict[str, Any]], final: str | None = None, executor: Executor = LOCAL) -> list[dict[str, Any]]:
    """The plan as chat messages: one assistant turn per call, each followed by its tool result
    (executed now by ``executor``, so a tool server is honoured), then the answer."""
    messages: list[dict[str, Any]] = []
    last = None
    for k, step in enumerate(plan, 1):
        assistant = plan_call(step, k)
        results = run_tool_calls(assistant, executor)
        messages.append(assistant)
        messages.extend(results)
        last = results[-1]["content"] if results else None
    messages.append(plan_answer(final, last))
    return messages


class ProgramTeacher:
    """Teacher backend for questions that carry a solution plan (``meta["plan"]``)."""

    backend = "program"

    def __init__(self, executor: Executor = LOCAL):
        self.executor = executor

    def identity(self) -> dict[str, Any]:
        return {"backend": "program", "model": None, "note": "writes the synthetic problem's known solution plan"}

    def check(self, questions: Sequence[Question]) -> None:
        missing = [q.id for q in questions if not q.meta.get("plan")]
        if missing:
            raise ValueError(
                f"the program teacher needs questions with a solution plan (the synthetic family: --dataset synthetic); "
                f"{len(missing)} question(s) have none, e.g. {missing[0]!r}"
            )

    def run(self, questions: Sequence[Question], on_result: Callable[[Question, TeacherOutput], None]) -> None:
        for q in questions:
            t0 = time.perf_counter()
            messages = plan_messages(q.meta["plan"], q.meta.get("final"), self.executor)
            on_result(q, TeacherOutput(messages=messages, turns=len(q.meta["plan"]) + 1, seconds=time.perf_counter() - t0))

    def generator(self, benchmarks: Sequence[Benchmark], batch_size: int = 8) -> ProgramGenerator:
        """This teacher as a ``Generator`` for ``evaluate`` on ``benchmarks`` (their items' plans)."""
        return ProgramGenerator(benchmarks, batch_size=batch_size)


class ProgramGenerator:
    """The program teacher as a ``mentor.generation.Generator``: for a conversation whose user
    message is one of the benchmarks' prompts, turn ``k`` is the plan's ``k``-th call
    (``plan_call``) and the turn after the last call boxes the last tool result in the
    conversation (``plan_answer``). The tool loop that calls it executes the calls, so the
    answer is whatever the evaluation's ``Executor`` returned. Deterministic: decoding settings
    do not apply (``deterministic``); it does not answer without tools (``answers_without_tools``)."""

    name = "program"
    deterministic = True
    answers_without_tools = False

    def __init__(self, benchmarks: Sequence[Benchmark], batch_size: int = 8):
        self.batch_size = batch_size
        self.plans: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
        for bench in benchmarks:
            missing = [it.id for it in bench.items if not it.meta.get("plan")]
            if missing:
                raise ValueError(
                    f"the program teacher can only be evaluated on benchmarks whose items carry a solution plan "
                    f"(the synthetic family, e.g. synthetic:test); {bench.name!r} has {len(missing)} item(s) without one, "
                    f"e.g. {missing[0]!r} (set eval.teacher: false, or use an openai/hf teacher)"
                )
            for it in bench.items:
                prompt = it.messages or build_messages(it.question)
                self.plans[_user_text(prompt)] = (list(it.meta["plan"]), it.meta.get("final"))

    def generate(self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None,
                 sampling: Sampling) -> list[Generation]:
        if not tools:
            raise ValueError("the program teacher cannot answer without tools: its solution plan is its only way to compute")
        return [Generation(self._turn(conv)) for conv in conversations]

    def _turn(self, conversation: Sequence[dict[str, Any]]) -> dict[str, Any]:
        try:
            plan, final = self.plans[_user_text(conversation)]
        except KeyError:
            raise ValueError(f"the program teacher has no plan for this prompt: {_user_text(conversation)[:120]!r}") from None
        k = sum(m.get("role") == "assistant" for m in conversation)
        if k < len(plan):
            return plan_call(plan[k], k + 1)
        last = next((m.get("content") for m in reversed(conversation) if m.get("role") == "tool"), None)
        return plan_answer(final, last)


def _user_text(messages: Sequence[dict[str, Any]]) -> str:
    return next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
