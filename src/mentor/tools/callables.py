"""Plain Python callables for each tool, derived from the registry.

Each has the tool's name, a typed signature and a Google-style docstring, so that
``transformers.utils.get_json_schema`` (used by chat templates and TRL's
``GRPOTrainer(tools=...)``) renders exactly the registry's schema. A call goes through the
``Executor`` the callable was built with (in-process or the tool server); an invalid call raises
``ToolError`` so that TRL records it as ``{"error": ...}`` in the tool turn.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from mentor.tools.executor import LOCAL, Executor
from mentor.tools.registry import ToolError, ToolSpec, toolset


def make_callable(spec: ToolSpec, executor: Executor = LOCAL) -> Callable[..., str]:
    """The callable of one tool, executing through ``executor``."""

    def tool(**kwargs) -> str:
        obs = executor.execute(spec.name, kwargs)
        if not obs.ok:
            raise ToolError(obs.error)
        return obs.content

    params = [
        inspect.Parameter(
            p.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=p.annotation,
            **({} if p.required else {"default": p.default}),
        )
        for p in spec.parameters
    ]
    tool.__name__ = tool.__qualname__ = spec.name
    tool.__signature__ = inspect.Signature(params, return_annotation=str)
    tool.__annotations__ = {p.name: p.annotation for p in spec.parameters} | {"return": str}
    args_doc = "\n".join(f"    {p.name}: {p.description}" for p in spec.parameters)
    tool.__doc__ = f"{spec.description}\n\nArgs:\n{args_doc}\n"
    return tool


def callables(tools: str | Sequence[str | ToolSpec] = "math", executor: Executor = LOCAL) -> list[Callable[..., str]]:
    """The callables for a tool set (``"math"``, ``"search"`` or names), bound to ``executor``."""
    return [make_callable(t, executor) for t in toolset(tools)]
