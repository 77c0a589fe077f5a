"""Tools: the registry (one definition per tool), the executor, callables and backends."""

from mentor.tools.callables import callables, make_callable
from mentor.tools.executor import (
    Observation,
    bind_arguments,
    execute,
    execute_local,
    format_result,
    get_tool_server,
    set_tool_server,
)
from mentor.tools.registry import (
    ALL_TOOLS,
    MATH_TOOL_NAMES,
    MATH_TOOLS,
    SEARCH_TOOL,
    TOOLSETS,
    Param,
    ToolError,
    ToolSpec,
    get_tool,
    schemas,
    toolset,
)
from mentor.tools.search import InMemoryBM25, Passage, get_search_backend, set_search_backend

__all__ = [
    "ALL_TOOLS",
    "MATH_TOOLS",
    "MATH_TOOL_NAMES",
    "SEARCH_TOOL",
    "TOOLSETS",
    "InMemoryBM25",
    "Observation",
    "Param",
    "Passage",
    "ToolError",
    "ToolSpec",
    "bind_arguments",
    "callables",
    "execute",
    "execute_local",
    "format_result",
    "get_search_backend",
    "get_tool",
    "get_tool_server",
    "make_callable",
    "schemas",
    "set_search_backend",
    "set_tool_server",
    "toolset",
]
