"""Teacher backend on an OpenAI-compatible endpoint (vLLM, SGLang, ``transformers serve``,
hosted APIs): every question is one conversation of ``mentor.generation.OpenAIChat``, its tool
calls run by the teacher's ``Executor``. The client, retries and the loop live in
``mentor.generation.openai_compat``. Evaluated as a model, the same endpoint is an
``OpenAIGenerator`` (``OpenAITeacher.generator``) with the teacher's client settings."""

from __future__ import annotations

import asyncio
from typing import Any

from mentor.generation.loop import Rollout
from mentor.generation.openai_compat import EndpointError, OpenAIChat, OpenAIConfig, OpenAIGenerator
from mentor.prompts import build_messages
from mentor.tasks import get_task
from mentor.teacher.base import TeacherOutput
from mentor.tools.executor import LOCAL, Executor

__all__ = ["EndpointError", "OpenAIChat", "OpenAIConfig", "OpenAITeacher"]


class OpenAITeacher:
    """Teacher backend: every question is one conversation with the endpoint."""

    backend = "openai"

    def __init__(self, config: OpenAIConfig, system: str | None = None, executor: Executor = LOCAL):
        self.config = config
        self.system = system
        self.executor = executor
        self.stats: dict[str, int] = {}

    def identity(self) -> dict[str, Any]:
        return self.config.identity() | ({"system": self.system} if self.system else {})

    def check(self, questions) -> None:
        async def main():
            chat = OpenAIChat(self.config)
            try:
                await chat.check_reachable()
            finally:
                await chat.close()

        asyncio.run(main())

    def run(self, questions, on_result) -> None:
        prompts = [build_messages(q.question, self.system) for q in questions]
        tools = [get_task(q.task).toolset for q in questions]

        def done(i: int, res: Rollout | EndpointError) -> None:
            if isinstance(res, EndpointError):
                on_result(questions[i], TeacherOutput(error=f"endpoint: {res}"))
            else:
                on_result(questions[i], TeacherOutput.from_rollout(res))

        async def main():
            chat = OpenAIChat(self.config)
            try:
                await chat.converse_many(prompts, None, done, tools_per_prompt=tools, executor=self.executor)
            finally:
                self.stats = {"requests": chat.requests, "retried": chat.retried}
                await chat.close()

        asyncio.run(main())

    def generator(self, benchmarks=(), batch_size: int = 8) -> OpenAIGenerator:
        """The endpoint as a ``Generator`` for ``evaluate``: the teacher's model, URL, key,
        concurrency, timeouts, retries and ``extra_body``; the evaluation sets the sampling.
        Checks first that the endpoint answers (``EndpointError`` otherwise), so that an
        unreachable teacher fails the evaluation instead of scoring every item as unanswered."""
        self.check(())
        gen = OpenAIGenerator(self.config)
        gen.name, gen.batch_size = self.config.model, batch_size
        return gen
