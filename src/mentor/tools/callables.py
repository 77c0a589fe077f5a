"""The tools TRL's ``GRPOTrainer(tools=...)`` executes and renders, derived from the registry.

Each tool is a ``Tool``: a ``dict`` holding the registry's OpenAI schema (``ToolSpec.schema()``)
that is also callable. transformers' chat templating (``apply_chat_template``, which TRL calls
to render GRPO prompts) and response parsing take a ``dict`` tool as its schema as-is, so
training renders exactly the schema evaluation, the teacher and SFT render
(``mentor.tools.registry.schemas``). A plain function would be rendered through
``transformers.utils.get_json_schema`` instead, which adds ``"return": {"type": "string"}`` and
has no way to say ``top_n``'s ``"default": 5``. TRL executes a tool by its ``__name__``; a call
goes through the ``Executor`` the tool was built with (in-process or the tool server); an
invalid call raises ``ToolError`` so that TRL records it as ``{"error": ...}`` in the tool turn.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from mentor.tools.executor import LOCAL, Executor
from mentor.tools.registry import ToolError, ToolSpec, toolset


class Tool(dict):
    """One tool as TRL takes it: the registry's schema (this dict) plus ``__call__``, which runs
    ``fn``. ``around(wrapper)`` gives the same tool calling ``wrapper(fn)`` (timing, logging)
    without losing the schema, as ``functools.wraps`` on a dict would."""

    def __init__(self, spec: ToolSpec, fn: Callable[..., str]):
        super().__init__(spec.schema())
        self.spec = spec
        self.fn = fn
        self.__name__ = self.__qualname__ = spec.name
        self.__signature__ = inspect.Signature([
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, annotation=p.annotation,
                              **({} if p.required else {"default": p.default}))
            for p in spec.parameters
        ])
        args_doc = "\n".join(f"    {p.name}: {p.description}" for p in spec.parameters)
        self.__doc__ = f"{spec.description}\n\nArgs:\n{args_doc}\n"

    def __call__(self, **kwargs: Any) -> str:
        return self.fn(**kwargs)

    def around(self, wrapper: Callable[[Callable[..., str]], Callable[..., str]]) -> Tool:
        return Tool(self.spec, wrapper(self.fn))


def make_callable(spec: ToolSpec, executor: Executor = LOCAL) -> Tool:
    """The tool ``spec`` as a ``Tool``, executing through ``executor``."""

    def run(**kwargs: Any) -> str:
        obs = executor.execute(spec.name, kwargs)
        if not obs.ok:
            raise ToolError(obs.error)
        return obs.content

    run.__name__ = run.__qualname__ = spec.name
    return Tool(spec, run)


def callables(tools: str | Sequence[str | ToolSpec] = "math", executor: Executor = LOCAL) -> list[Tool]:
    """The tools of a tool set (``"math"``, ``"search"`` or names), bound to ``executor``."""
    return [make_callable(t, executor) for t in toolset(tools)]
