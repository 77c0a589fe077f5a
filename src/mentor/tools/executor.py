"""The ``Executor``: where tool calls go, passed explicitly to everything that runs tools.

An executor carries three things -- a tool server URL (``mentor serve tools``; ``None``: run in
this process), a search backend for ``wikipedia_search`` (in-process BM25, a retriever server, or
none) and the tools a conversation may call (``None``: every registered tool). Rollouts, the
evaluator, the teacher and TRL's tool callables all take one; nothing is routed process-wide, so
threads with different executors do not interfere.

    ex = Executor(search=InMemoryBM25(passages)).allowing("search")
    ex.execute("wikipedia_search", {"query": "Paris"})     # -> Observation

``execute(name, arguments, executor=None)`` is the same call with the in-process default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mentor.tools.client import call_remote, call_remote_batch
from mentor.tools.local import Observation, bind_arguments, execute_local, format_result
from mentor.tools.registry import ToolSpec, toolset
from mentor.tools.search import HTTPSearch, SearchBackend

__all__ = ["Executor", "Observation", "bind_arguments", "execute", "execute_local", "format_result"]


@dataclass(frozen=True)
class Executor:
    """Tool server or in-process, a search backend and the allowed tools (see the module doc)."""

    tool_server: str | None = None
    search: SearchBackend | None = None
    tools: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.tool_server:
            object.__setattr__(self, "tool_server", self.tool_server.rstrip("/"))
        if isinstance(self.search, str):  # a retriever server's URL
            object.__setattr__(self, "search", HTTPSearch(self.search))
        if self.tools is not None and not isinstance(self.tools, frozenset):
            object.__setattr__(self, "tools", frozenset(self.tools))

    def allowing(self, tools: str | Iterable[str | ToolSpec] | None) -> Executor:
        """A copy that accepts only ``tools`` (a tool set name such as ``"math"``, or names/specs)."""
        if tools is None:
            return replace(self, tools=None)
        return replace(self, tools=frozenset(t.name for t in toolset(tools)))  # type: ignore[arg-type]

    def _refusal(self, name: Any) -> Observation | None:
        if self.tools is not None and name not in self.tools:
            return Observation.failure(f"tool {name!r} is not available; available: {', '.join(sorted(self.tools))}")
        return None

    def execute(self, name: Any, arguments: Any) -> Observation:
        """Execute one call; invalid or refused calls give ``ok=False``. Never raises."""
        refused = self._refusal(name)
        if refused is not None:
            return refused
        if self.tool_server:
            return call_remote(self.tool_server, name, arguments)
        return execute_local(name, arguments, search=self.search)

    def execute_many(self, calls: Sequence[tuple[Any, Any]]) -> list[Observation]:
        """Many ``(name, arguments)`` calls, in order: one ``/batch`` request with a tool server."""
        if not self.tool_server:
            return [self.execute(n, a) for n, a in calls]
        out: list[Observation | None] = [self._refusal(n) for n, _ in calls]
        send = [i for i, o in enumerate(out) if o is None]
        for i, obs in zip(send, call_remote_batch(self.tool_server, [calls[i] for i in send]), strict=True):
            out[i] = obs
        return out  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """What a run records about where its tool calls went."""
        return {"tool_server": self.tool_server, "search": type(self.search).__name__ if self.search else None}


#: the in-process executor with no search backend: what calls use when given none
LOCAL = Executor()


def execute(name: Any, arguments: Any, executor: Executor | None = None) -> Observation:
    """Execute one tool call with ``executor`` (default: in-process); never raises."""
    return (executor or LOCAL).execute(name, arguments)
