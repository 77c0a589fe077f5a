"""What every teacher backend returns for one question, the backend interface, and the
teacher as a model for evaluation (``teacher_generator``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mentor.data.datasets import Question
from mentor.generation.loop import Rollout


@dataclass
class TeacherOutput:
    """The trajectory a teacher produced for one question (assistant/tool messages, no prompt),
    or ``error`` when the teacher could not be asked (endpoint failure after retries)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    turns: int = 0
    tokens: int = 0
    truncated: bool = False
    seconds: float = 0.0

    @classmethod
    def from_rollout(cls, r: Rollout) -> TeacherOutput:
        return cls(messages=r.completion, turns=r.turns, tokens=r.generated_tokens, truncated=r.truncated, seconds=r.seconds)


class Teacher(Protocol):
    backend: str

    def identity(self) -> dict[str, Any]:
        """Backend, model and sampling settings, written into every record's ``teacher``."""

    def check(self, questions: Sequence[Question]) -> None:
        """Fail early (before any work) when the backend cannot handle these questions."""

    def run(self, questions: Sequence[Question], on_result: Callable[[Question, TeacherOutput], None]) -> None:
        """Solve every question; call ``on_result`` once per question as soon as it is done."""

    # Optional (the pipeline's teacher evaluation): ``generator(benchmarks, batch_size)`` returns
    # the teacher as a ``mentor.generation.Generator`` that ``mentor.eval.evaluate`` runs like any
    # model on those benchmarks. A generator with ``answers_without_tools = False`` is not
    # evaluated without tools; one with ``deterministic = True`` ignores decoding settings.


def teacher_generator(teacher: Teacher, benchmarks: Sequence[Any], batch_size: int = 8) -> Any:
    """``teacher`` as a ``Generator`` for ``evaluate`` on ``benchmarks`` (loaded ``Benchmark``s);
    a clear ``ValueError`` for a backend that cannot be evaluated as a model."""
    make = getattr(teacher, "generator", None)
    if make is None:
        raise ValueError(
            f"teacher backend {teacher.backend!r} cannot be evaluated as a model: it has no "
            "generator(benchmarks, batch_size) method (docs/architecture.md); set eval.teacher: false"
        )
    return make(benchmarks, batch_size=batch_size)
