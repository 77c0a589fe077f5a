"""Local transformers teacher: ``mentor.generation.HFGenerator`` (batched generation; or llama.cpp with ``generation_backend: llama_cpp``) driven by
``mentor.generation.rollout`` (the multi-turn tool loop, tool calls run by the teacher's
``Executor``), a chunk of questions at a time so every
finished chunk is written (and survives a kill) before the next starts. Evaluated as a model,
the same loaded ``HFGenerator`` is its ``Generator`` (``HFTeacher.generator``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mentor.data.datasets import Question
from mentor.generation.factory import make_generator
from mentor.generation.loop import Sampling, rollout
from mentor.models import check_tool_template, load_tokenizer, resolve_model
from mentor.prompts import build_messages
from mentor.tasks import get_task
from mentor.teacher.base import TeacherOutput
from mentor.tools.executor import LOCAL, Executor


class HFTeacher:
    backend = "hf"

    def __init__(
        self,
        model: str | None = None,
        sampling: Sampling = Sampling(temperature=0.6, top_p=0.95, max_new_tokens=1024),
        max_turns: int = 8,
        batch_size: int = 8,
        dtype: str = "float32",
        system: str | None = None,
        executor: Executor = LOCAL,
        generation_backend: str = "transformers",
    ):
        self.executor = executor
        self.model_name = model
        self.model_path = resolve_model(model)
        self.sampling, self.max_turns, self.batch_size, self.dtype, self.system = sampling, max_turns, batch_size, dtype, system
        self.generation_backend = generation_backend
        self._generator = None

    def identity(self) -> dict[str, Any]:
        s = self.sampling
        out = {
            "backend": "hf",
            "model": self.model_name or "smollm2-135m",
            "model_path": self.model_path,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": s.seed,
            "max_turns": self.max_turns,
            "dtype": self.dtype,
            "generation_backend": self.generation_backend,
        }
        return out | ({"system": self.system} if self.system else {})

    def check(self, questions: Sequence[Question]) -> None:
        check_tool_template(load_tokenizer(self.model_path), where=self.model_path)

    def generator(self, benchmarks: Sequence[Any] = (), batch_size: int | None = None) -> Any:
        """The teacher model (loaded once) as a ``Generator`` for ``evaluate``; ``batch_size``
        is the generation batch size (default: the teacher's)."""
        if self._generator is None:
            self._generator = make_generator(self.model_path, batch_size=self.batch_size, dtype=self.dtype,
                                             backend=self.generation_backend)
        if batch_size is not None:
            self._generator.batch_size = batch_size
        return self._generator

    def run(self, questions: Sequence[Question], on_result: Callable[[Question, TeacherOutput], None]) -> None:
        self.generator(batch_size=self.batch_size)
        for task in sorted({q.task for q in questions}):
            group = [q for q in questions if q.task == task]
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                states = rollout(
                    self._generator,
                    [build_messages(q.question, self.system) for q in chunk],
                    tools=get_task(task).toolset,
                    max_turns=self.max_turns,
                    sampling=self.sampling,
                    progress=False,
                    executor=self.executor,
                )
                for q, st in zip(chunk, states, strict=True):
                    on_result(q, TeacherOutput.from_rollout(st))
