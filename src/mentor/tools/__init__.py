"""Tools: the registry (one definition per tool), the executor, callables and backends."""

from mentor.tools.callables import callables, make_callable
from mentor.tools.errors import ToolError
from mentor.tools.executor import LOCAL, Executor, execute
from mentor.tools.local import Observation, bind_arguments, execute_local, format_result
from mentor.tools.registry import (
    ALL_TOOLS,
    MATH_TOOL_NAMES,
    MATH_TOOLS,
    SEARCH_TOOL,
    TOOLSETS,
    Param,
    ToolSpec,
    get_tool,
    schemas,
    toolset,
)
from mentor.tools.search import HTTPSearch, InMemoryBM25, Passage, SearchBackend, TopK

__all__ = [
    "ALL_TOOLS",
    "LOCAL",
    "MATH_TOOLS",
    "MATH_TOOL_NAMES",
    "SEARCH_TOOL",
    "TOOLSETS",
    "Executor",
    "HTTPSearch",
    "InMemoryBM25",
    "Observation",
    "Param",
    "Passage",
    "SearchBackend",
    "ToolError",
    "ToolSpec",
    "TopK",
    "bind_arguments",
    "callables",
    "execute",
    "execute_local",
    "format_result",
    "get_tool",
    "make_callable",
    "schemas",
    "toolset",
]
