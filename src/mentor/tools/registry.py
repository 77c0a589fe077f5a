"""The one definition of every tool: name, description, parameters, implementation.

Everything else (OpenAI JSON schemas, the Python callables TRL renders into prompts,
the executor's argument checks, the HTTP server's ``/tools``) is derived from the
``ToolSpec`` objects below. Names, parameter names and descriptions are exactly the
paper's (SPEC.md, Tables 11-12).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mentor.tools.errors import ToolError
from mentor.tools.search import SearchBackend, format_passages

Number = int | float

#: Results whose magnitude exceeds this are rejected as invalid ("absurdly large").
MAX_ABS_RESULT = 1e100
#: Arrays passed to ``sum_numbers`` longer than this are rejected.
MAX_ARRAY_LEN = 10_000


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    type: str = "number"  # JSON-schema type: number | integer | string | array
    items: str | None = None  # JSON-schema type of array items
    required: bool = True
    default: Any = None
    max_items: int | None = None  # arrays: longer ones are refused before any element is converted

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.items:
            out["items"] = {"type": self.items}
        if not self.required and self.default is not None:
            out["default"] = self.default
        return out

    @property
    def annotation(self) -> Any:
        return {
            "number": float,
            "integer": int,
            "string": str,
            "array": list[float] if self.items == "number" else list,
        }[self.type]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: tuple[Param, ...]
    impl: Callable[..., Any] = field(repr=False, compare=False)
    #: the implementation takes the executor's search backend as ``backend=``
    uses_search: bool = False

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {p.name: p.schema() for p in self.parameters},
                    "required": [p.name for p in self.parameters if p.required],
                },
            },
        }


# --------------------------------------------------------------------------- math


def _divide(numerator: Number, denominator: Number) -> Number:
    if denominator == 0:
        raise ToolError("division by zero")
    if isinstance(numerator, int) and isinstance(denominator, int) and numerator % denominator == 0:
        return numerator // denominator
    return numerator / denominator


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise ToolError("zero cannot be raised to a negative power")
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise ToolError("a negative base cannot be raised to a fractional power")
    # Guard before computing: Python ints would happily build a number with 10**9 digits.
    if base not in (0, 1, -1) and abs(exponent) * math.log10(abs(base)) > math.log10(MAX_ABS_RESULT):
        raise ToolError(f"result is too large (|result| > {MAX_ABS_RESULT:g})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        return base**exponent
    return float(base) ** float(exponent)


def _sqrt(number: Number) -> Number:
    if number < 0:
        raise ToolError("square root of a negative number")
    if isinstance(number, int):
        root = math.isqrt(number)
        if root * root == number:
            return root
    return math.sqrt(number)


def _modulo(dividend: Number, divisor: Number) -> Number:
    if divisor == 0:
        raise ToolError("modulo by zero")
    return dividend % divisor


def _sum(numbers: Sequence[Number]) -> Number:
    if len(numbers) > MAX_ARRAY_LEN:
        raise ToolError(f"too many numbers (max {MAX_ARRAY_LEN})")
    return math.fsum(numbers) if any(isinstance(x, float) for x in numbers) else sum(numbers)


def _round(number: Number) -> int:
    # "Round a number to the nearest integer": halves go away from zero, as calculators do
    # (Python's round() would send 2.5 to 2).
    return int(math.floor(abs(number) + 0.5)) * (1 if number >= 0 else -1)


def _p(name: str, description: str, **kw: Any) -> Param:
    return Param(name=name, description=description, **kw)


MATH_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "add",
        "Add two numbers together",
        (_p("firstNumber", "The first number"), _p("secondNumber", "The second number")),
        lambda firstNumber, secondNumber: firstNumber + secondNumber,
    ),
    ToolSpec(
        "subtract",
        "Subtract one number from another",
        (
            _p("minuend", "The number to subtract from"),
            _p("subtrahend", "The number to subtract"),
        ),
        lambda minuend, subtrahend: minuend - subtrahend,
    ),
    ToolSpec(
        "multiply",
        "Multiply two numbers together",
        (_p("firstNumber", "The first number"), _p("secondNumber", "The second number")),
        lambda firstNumber, secondNumber: firstNumber * secondNumber,
    ),
    ToolSpec(
        "divide",
        "Divide one number by another",
        (
            _p("numerator", "The number to be divided"),
            _p("denominator", "The number to divide by"),
        ),
        _divide,
    ),
    ToolSpec(
        "sum_numbers",
        "Calculate the sum of an array of numbers",
        (_p("numbers", "Array of numbers to sum", type="array", items="number", max_items=MAX_ARRAY_LEN),),
        _sum,
    ),
    ToolSpec(
        "floor",
        "Calculate the floor of a number",
        (_p("number", "Number to find the floor of"),),
        lambda number: math.floor(number),
    ),
    ToolSpec(
        "ceil",
        "Calculate the ceil of a number",
        (_p("number", "Number to find the ceil of"),),
        lambda number: math.ceil(number),
    ),
    ToolSpec(
        "round_number",
        "Round a number to the nearest integer",
        (_p("number", "Number to round"),),
        _round,
    ),
    ToolSpec(
        "power",
        "Calculate base raised to the power of exponent",
        (_p("base", "The base number"), _p("exponent", "The exponent")),
        _power,
    ),
    ToolSpec(
        "sqrt",
        "Calculate the square root of a number",
        (_p("number", "Number to find the square root of"),),
        _sqrt,
    ),
    ToolSpec(
        "abs_value",
        "Calculate the absolute value of a number",
        (_p("number", "Number to find the absolute value of"),),
        lambda number: abs(number),
    ),
    ToolSpec(
        "modulo",
        "Calculate the modulo of two numbers",
        (_p("dividend", "The dividend"), _p("divisor", "The divisor")),
        _modulo,
    ),
)

MATH_TOOL_NAMES: tuple[str, ...] = tuple(t.name for t in MATH_TOOLS)


# ------------------------------------------------------------------ retrieval


def _wikipedia_search(query: str, top_n: int = 5, *, backend: SearchBackend | None = None) -> str:
    if not query.strip():
        raise ToolError("query is empty")
    if top_n < 1 or top_n > 50:
        raise ToolError("top_n must be between 1 and 50")
    if backend is None:
        raise ToolError(
            "wikipedia_search has no retrieval backend configured "
            "(start `mentor serve retriever` and pass --retriever-url, or give the "
            "mentor.tools.Executor a search backend)"
        )
    return format_passages(backend.search(query, top_n))


SEARCH_TOOL = ToolSpec(
    "wikipedia_search",
    "Search Wikipedia for a given query.",
    (
        _p("query", "Query to search for.", type="string"),
        _p(
            "top_n",
            "Number of results to return. The default value is 5.",
            type="integer",
            required=False,
            default=5,
        ),
    ),
    _wikipedia_search,
    uses_search=True,
)

ALL_TOOLS: dict[str, ToolSpec] = {t.name: t for t in (*MATH_TOOLS, SEARCH_TOOL)}

#: Named tool sets, the unit prompts, training and evaluation select by.
TOOLSETS: dict[str, tuple[ToolSpec, ...]] = {"math": MATH_TOOLS, "search": (SEARCH_TOOL,)}


def get_tool(name: str) -> ToolSpec:
    try:
        return ALL_TOOLS[name]
    except KeyError:
        raise KeyError(f"unknown tool {name!r}; known tools: {', '.join(ALL_TOOLS)}") from None


def toolset(name_or_tools: str | Sequence[str | ToolSpec]) -> tuple[ToolSpec, ...]:
    """Resolve ``"math"``, ``"search"`` or a list of names/specs to ``ToolSpec`` objects."""
    if isinstance(name_or_tools, str):
        if name_or_tools in TOOLSETS:
            return TOOLSETS[name_or_tools]
        return tuple(get_tool(n.strip()) for n in name_or_tools.split(",") if n.strip())
    return tuple(t if isinstance(t, ToolSpec) else get_tool(t) for t in name_or_tools)


def schemas(tools: str | Sequence[str | ToolSpec] = "math") -> list[dict[str, Any]]:
    """OpenAI function-format schemas for a tool set."""
    return [t.schema() for t in toolset(tools)]
