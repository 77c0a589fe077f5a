"""OpenAI-compatible generation: vLLM, SGLang, ``transformers serve``, hosted APIs.

One async client (``openai.AsyncOpenAI``), ``concurrency`` conversations in flight (an asyncio
semaphore), retries with exponential backoff on 429 / 5xx / timeouts / connection errors, a
per-request timeout. The multi-turn tool loop per conversation:

1. send the conversation with the tool schemas (``tools=``);
2. take the reply's structured ``tool_calls`` -- or, for servers/models that write
   ``<tool_call>`` text in the content instead, parse it with ``parse_assistant``;
3. execute the calls with the ``Executor`` passed in and append the ``tool`` messages
   (``Rollout.add_turn``, the step the synchronous ``rollout`` shares);
4. repeat until a reply without tool calls or ``max_turns``.

Thinking models: ``<think>`` blocks in the content and ``reasoning_content`` are kept in the
trajectory (the ``Trajectory`` parser ignores them for the answer); they are not sent back.

Reuse for evaluation:

- :class:`OpenAIChat` ``.converse(prompt, tools)`` / ``.converse_many(prompts, tools)`` -- the
  async per-conversation loop, returning ``Rollout`` objects;
- :class:`OpenAIGenerator` -- a ``Generator`` for ``mentor.generation.rollout``;
- :func:`run_conversations` -- a synchronous wrapper around ``converse_many``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mentor.generation.loop import Generation, Rollout, Sampling, offered, parse_assistant
from mentor.tools.executor import LOCAL, Executor
from mentor.tools.local import decode_arguments
from mentor.tools.registry import ToolSpec

#: Keys of our messages that the OpenAI wire format does not carry.
_LOCAL_KEYS = ("raw", "error", "reasoning_content", "reasoning")


class EndpointError(RuntimeError):
    """The endpoint failed for good (non-retryable status, or retries exhausted)."""


@dataclass
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 600.0  # seconds per request
    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # first retry waits ~backoff s, then 2x, 4x, ... (+ jitter)
    max_turns: int = 8
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=0.6, top_p=0.95, max_new_tokens=4096))
    extra_body: dict[str, Any] | None = None  # e.g. {"chat_template_kwargs": {"enable_thinking": true}}

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env) or "EMPTY"

    def identity(self) -> dict[str, Any]:
        s = self.sampling
        return {
            "backend": "openai",
            "model": self.model,
            "base_url": self.base_url,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": s.seed,
            "max_turns": self.max_turns,
            "extra_body": self.extra_body,
        }


def to_wire(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our chat messages -> OpenAI request messages (tool-call arguments as JSON strings, local
    keys such as ``raw`` and reasoning dropped)."""
    out = []
    for m in messages:
        w = {k: v for k, v in m.items() if k not in _LOCAL_KEYS}
        if w.get("tool_calls"):
            calls = []
            for tc in w["tool_calls"]:
                fn = dict(tc.get("function", {}))
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments", {}))
                calls.append({"type": "function", "id": tc.get("id"), "function": fn})
            w["tool_calls"] = calls
        if w.get("content") is None:
            w["content"] = ""
        out.append(w)
    return out


def message_from_response(choice_message: Any) -> dict[str, Any]:
    """An OpenAI response message -> our assistant message (structured calls with dict arguments,
    or ``<tool_call>`` text parsed by ``parse_assistant``; reasoning kept)."""
    content = choice_message.content or ""
    extra = getattr(choice_message, "model_extra", None) or {}
    reasoning = getattr(choice_message, "reasoning_content", None) or extra.get("reasoning_content") or extra.get("reasoning")
    if choice_message.tool_calls:
        calls = []
        for k, tc in enumerate(choice_message.tool_calls, 1):
            args: Any = tc.function.arguments
            try:
                args = decode_arguments(args)
            except json.JSONDecodeError:
                pass  # kept as the raw string: pending_calls marks it malformed
            calls.append({"type": "function", "id": tc.id or f"call_{k}", "function": {"name": tc.function.name, "arguments": args}})
        msg: dict[str, Any] = {"role": "assistant", "content": content, "tool_calls": calls}
    else:
        msg = parse_assistant(content)
    if isinstance(reasoning, str) and reasoning.strip():
        msg["reasoning_content"] = reasoning
    return msg


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError | asyncio.TimeoutError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}{f' (HTTP {status})' if status else ''}: {text[:300]}"


class OpenAIChat:
    """Async multi-turn tool-using conversations against one OpenAI-compatible endpoint."""

    def __init__(self, config: OpenAIConfig):
        from openai import AsyncOpenAI

        self.config = config
        # Retries are ours (logged, counted, configurable), so the client's own are off.
        self.client = AsyncOpenAI(
            base_url=config.base_url, api_key=config.api_key(), timeout=config.timeout, max_retries=0
        )
        self.requests = 0
        self.retried = 0

    async def check_reachable(self) -> None:
        """Raise ``EndpointError`` when nothing answers at ``base_url`` (after the retries).
        Any HTTP answer -- even an error status -- counts as reachable."""
        import openai

        for attempt in range(self.config.retries + 1):
            try:
                await self.client.models.list()
                return
            except openai.APIStatusError:
                return
            except (openai.APIConnectionError, openai.APITimeoutError) as e:
                if attempt == self.config.retries:
                    raise EndpointError(f"cannot reach the endpoint {self.config.base_url}: {_describe(e)}") from None
                await asyncio.sleep(self._delay(attempt))

    def _delay(self, attempt: int) -> float:
        base = self.config.backoff * (2**attempt)
        return base + random.uniform(0, self.config.backoff)

    async def complete(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Generation:
        """One assistant turn, with retries; raises ``EndpointError`` when it finally fails."""
        cfg, s = self.config, self.config.sampling
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": to_wire(messages),
            "max_tokens": s.max_new_tokens,
            "temperature": max(s.temperature, 0.0),
            "top_p": s.top_p,
        }
        if tools:
            kwargs["tools"] = tools
        if s.seed is not None:
            kwargs["seed"] = s.seed
        extra = dict(cfg.extra_body or {})
        if s.top_k is not None and not s.greedy:
            extra.setdefault("top_k", s.top_k)  # not an OpenAI parameter; vLLM and SGLang read it here
        if extra:
            kwargs["extra_body"] = extra
        for attempt in range(cfg.retries + 1):
            self.requests += 1
            try:
                resp = await asyncio.wait_for(self.client.chat.completions.create(**kwargs), timeout=cfg.timeout + 5)
                if not resp.choices:
                    raise EndpointError("the endpoint returned no choices")
                tokens = resp.usage.completion_tokens if resp.usage else 0
                return Generation(message_from_response(resp.choices[0].message), tokens=tokens or 0)
            except EndpointError:
                raise
            except Exception as e:  # noqa: BLE001 - classify, retry or give up with a clear message
                if not _retryable(e):
                    raise EndpointError(_describe(e)) from None
                if attempt == cfg.retries:
                    raise EndpointError(f"{_describe(e)} (gave up after {cfg.retries + 1} attempts)") from None
                self.retried += 1
                await asyncio.sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def converse(
        self, prompt: Sequence[dict[str, Any]], tools: str | Sequence[str | ToolSpec] | None = "math",
        executor: Executor = LOCAL,
    ) -> Rollout:
        """Run one conversation to a final answer or ``max_turns``; raises ``EndpointError``."""
        tool_schemas, executor = offered(tools, executor)
        state = Rollout(prompt=list(prompt))
        t0 = time.perf_counter()
        for turn in range(self.config.max_turns):
            gen = await self.complete(state.messages, tool_schemas)
            # Tool calls are cheap (math) or I/O (search server): run them off the event loop.
            last = turn + 1 == self.config.max_turns
            if not await asyncio.to_thread(state.add_turn, gen, tool_schemas, executor, last):
                break
        state.seconds = time.perf_counter() - t0
        return state

    async def converse_many(
        self,
        prompts: Sequence[Sequence[dict[str, Any]]],
        tools: str | Sequence[str | ToolSpec] | None = "math",
        on_done: Callable[[int, Rollout | EndpointError], None] | None = None,
        tools_per_prompt: Sequence[Any] | None = None,
        executor: Executor = LOCAL,
    ) -> list[Rollout | EndpointError]:
        """All conversations, ``concurrency`` in flight, with the tool set ``tools`` (or
        ``tools_per_prompt[i]`` for prompt ``i``). ``on_done(index, result)`` is called as each
        one finishes; a failed conversation's result is its ``EndpointError``."""
        sem = asyncio.Semaphore(max(1, self.config.concurrency))
        results: list[Rollout | EndpointError | None] = [None] * len(prompts)

        async def one(i: int) -> None:
            async with sem:
                try:
                    res: Rollout | EndpointError = await self.converse(
                        prompts[i], tools_per_prompt[i] if tools_per_prompt else tools, executor
                    )
                except EndpointError as e:
                    res = e
            results[i] = res
            if on_done:
                on_done(i, res)

        await asyncio.gather(*(one(i) for i in range(len(prompts))))
        return results  # type: ignore[return-value]

    async def close(self) -> None:
        await self.client.close()


def run_conversations(
    prompts: Sequence[Sequence[dict[str, Any]]],
    config: OpenAIConfig,
    tools: str | Sequence[Any] | None = "math",
    on_done: Callable[[int, Rollout | EndpointError], None] | None = None,
    tools_per_prompt: Sequence[Any] | None = None,
    executor: Executor = LOCAL,
) -> list[Rollout | EndpointError]:
    """Synchronous wrapper: evaluate/generate with a model behind any OpenAI-compatible server."""

    async def main():
        chat = OpenAIChat(config)
        try:
            return await chat.converse_many(prompts, tools, on_done, tools_per_prompt, executor)
        finally:
            await chat.close()

    return asyncio.run(main())


class OpenAIGenerator:
    """A ``Generator`` backed by an OpenAI-compatible endpoint, for
    ``mentor.generation.rollout(OpenAIGenerator(cfg), prompts, ...)``: each ``generate`` call sends
    all conversations concurrently. A request that fails for good yields an empty assistant turn
    with ``error`` set (the conversation then ends without an answer) instead of raising."""

    def __init__(self, config: OpenAIConfig):
        self.config = config

    def generate(
        self, conversations: Sequence[list[dict[str, Any]]], tools: list[dict[str, Any]] | None, sampling: Sampling
    ) -> list[Generation]:
        return self.generate_each(conversations, [tools] * len(conversations), sampling)

    def generate_each(
        self, conversations: Sequence[list[dict[str, Any]]], tools: Sequence[list[dict[str, Any]] | None],
        sampling: Sampling, on_done: Callable[[], None] | None = None,
    ) -> list[Generation]:
        """One assistant turn per conversation, conversation ``i`` with tool set ``tools[i]`` (BFCL's
        multi-turn entries each bring their own), all of them ``concurrency`` in flight;
        ``on_done()`` as each one returns."""
        cfg = replace(self.config, sampling=sampling)

        async def main() -> list[Generation]:
            chat = OpenAIChat(cfg)
            sem = asyncio.Semaphore(max(1, cfg.concurrency))

            async def one(conv, conv_tools):
                async with sem:
                    try:
                        gen = await chat.complete(conv, conv_tools)
                    except EndpointError as e:
                        gen = Generation({"role": "assistant", "content": "", "error": str(e)}, tokens=0)
                if on_done:
                    on_done()
                return gen

            try:
                return list(await asyncio.gather(*(one(c, t) for c, t in zip(conversations, tools, strict=True))))
            finally:
                await chat.close()

        return asyncio.run(main())
