"""The program teacher: writes a synthetic problem's known solution plan as a correct
tool-using trajectory (assistant ``tool_calls`` turns, tool results from the project's
executor, a final assistant message with brief reasoning and ``\\boxed{answer}``).

It is the offline default teacher for the synthetic task family; every record it produces is
labelled ``{"backend": "program", ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from mentor.data.datasets import Question
from mentor.generation.loop import run_tool_calls
from mentor.teacher.base import TeacherOutput
from mentor.tools.executor import LOCAL, Executor


def plan_messages(plan: Sequence[dict[str, Any]], final: str | None = None, executor: Executor = LOCAL) -> list[dict[str, Any]]:
    """The plan as chat messages: one assistant turn per call, each followed by its tool result
    (executed now by ``executor``, so a tool server is honoured), then the answer."""
    messages: list[dict[str, Any]] = []
    last = None
    for k, step in enumerate(plan, 1):
        call = {"type": "function", "id": f"call_{k}", "function": {"name": step["name"], "arguments": dict(step["arguments"])}}
        assistant = {"role": "assistant", "content": step.get("say", ""), "tool_calls": [call]}
        results = run_tool_calls(assistant, executor)
        messages.append(assistant)
        messages.extend(results)
        last = results[-1]["content"] if results else None
    text = (final + " " if final else "") + f"The answer is \\boxed{{{last}}}."
    messages.append({"role": "assistant", "content": text})
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
