"""Teacher reference trajectories: the file ``mentor teach`` writes and training reads.

One JSON object per line:

- ``id`` (str), ``question`` (str), ``answer`` (str, the ground truth)
- ``messages``: the teacher trajectory as chat messages (assistant ``tool_calls``, ``tool``
  results), without the system/user prompt
- ``teacher_answer`` (str or null): the teacher's final ``\\boxed{}`` answer
- ``teacher_tools`` (list of str): the tool names the teacher called, in call order
- ``correct`` (bool): ``teacher_answer`` matches ``answer``
- ``teacher`` (object): the teacher's identity and sampling settings (``backend``, ``model``, ...)
- optional: ``task`` (``math``/``qa``, default ``math``), ``error`` (a per-item failure), ``meta``
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mentor.io import DataError, append_jsonl, read_jsonl, require
from mentor.trajectory import Trajectory


@dataclass
class Reference:
    id: str
    question: str
    answer: str
    messages: list[dict[str, Any]]
    teacher_answer: str | None
    teacher_tools: list[str]
    correct: bool
    teacher: dict[str, Any] = field(default_factory=dict)
    task: str = "math"
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trajectory(self):
        return Trajectory.from_messages(self.messages)


def parse_reference(obj: dict[str, Any], path: str | os.PathLike, line: int) -> Reference:
    for col in ("id", "question", "answer"):
        require(obj, col, path, line, (str, int, float))
    require(obj, "messages", path, line, list)
    if "teacher_answer" not in obj:
        raise DataError(path, line, "missing required field (the teacher's final answer; build the file with `mentor teach`)", "teacher_answer")
    if obj["teacher_answer"] is not None and not isinstance(obj["teacher_answer"], str | int | float):
        raise DataError(path, line, f"expected str or null, got {type(obj['teacher_answer']).__name__}", "teacher_answer")
    tools = require(obj, "teacher_tools", path, line, list)
    if not all(isinstance(t, str) for t in tools):
        raise DataError(path, line, "expected a list of tool names (strings)", "teacher_tools")
    require(obj, "correct", path, line, bool)
    return Reference(
        id=str(obj["id"]),
        question=str(obj["question"]),
        answer=str(obj["answer"]),
        messages=obj["messages"],
        teacher_answer=None if obj["teacher_answer"] is None else str(obj["teacher_answer"]),
        teacher_tools=list(tools),
        correct=obj["correct"],
        teacher=obj.get("teacher") or {},
        task=obj.get("task") or "math",
        error=obj.get("error"),
        meta=obj.get("meta") or {},
    )


def iter_references(path: str | os.PathLike) -> Iterator[Reference]:
    for line, obj in read_jsonl(path):
        yield parse_reference(obj, path, line)


def load_references(path: str | os.PathLike, only_correct: bool = True) -> list[Reference]:
    """Read a references file; by default only the ``correct`` ones (the MENTOR filter)."""
    refs = [r for r in iter_references(path) if r.correct or not only_correct]
    if not refs:
        raise DataError(path, None, "no usable (correct) reference trajectories in this file")
    return refs


def write_reference(path: str | os.PathLike, ref: Reference) -> None:
    append_jsonl(path, ref.to_dict())

