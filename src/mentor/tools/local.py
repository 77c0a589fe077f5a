"""Execute tool calls in this process: ``execute_local(name, arguments) -> Observation``.
Nothing raises out of it.

Arguments are checked against the tool's ``ToolSpec`` (unknown tool, missing, extra and
mistyped arguments), numbers are coerced (JSON numbers; strings that spell a finite number
are accepted, as calculator servers do; anything else is invalid), the implementation runs,
and its result is checked (finite, not absurdly large) and formatted.

``mentor.tools.executor.Executor`` chooses between this and the HTTP tool server
(``mentor serve tools``, what the paper does) and carries the search backend and allowed tools.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from mentor.tools.registry import ALL_TOOLS, MAX_ABS_RESULT, Param, ToolError, ToolSpec
from mentor.tools.search import SearchBackend


@dataclass(frozen=True)
class Observation:
    """The result of one tool call."""

    ok: bool
    content: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_message_content(self) -> str:
        """What the model sees in the tool turn: the result, or ``{"error": ...}``."""
        return self.content if self.ok else json.dumps({"error": self.error})

    @classmethod
    def failure(cls, error: str) -> Observation:
        return cls(ok=False, content="", error=error)


_NUMBER_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, bool):
        raise ToolError(f"{where} must be a number, got a boolean ({json.dumps(value)})")
    if isinstance(value, int):
        if abs(value) > MAX_ABS_RESULT:
            raise ToolError(f"{where} is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError(f"{where} must be a finite number, got {value}")
        if abs(value) > MAX_ABS_RESULT:
            raise ToolError(f"{where} is too large")
        return value
    if isinstance(value, str):
        if len(value) <= 64 and _NUMBER_RE.match(value):
            return _number(int(value) if _INT_RE.match(value) else float(value), where)
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ToolError(f"{where} must be a number, got the non-numeric string {shown!r}")
    raise ToolError(f"{where} must be a number, got {type(value).__name__}")


def _coerce(param: Param, value: Any, tool: str) -> Any:
    where = f"argument {param.name!r} of {tool}"
    if param.type == "number":
        return _number(value, where)
    if param.type == "integer":
        number = _number(value, where)
        if isinstance(number, float):
            if not number.is_integer():
                raise ToolError(f"{where} must be an integer, got {number}")
            number = int(number)
        return number
    if param.type == "string":
        if not isinstance(value, str):
            raise ToolError(f"{where} must be a string, got {type(value).__name__}")
        return value
    if param.type == "array":
        if not isinstance(value, list | tuple):
            raise ToolError(f"{where} must be an array, got {type(value).__name__}")
        if param.max_items is not None and len(value) > param.max_items:  # before converting anything
            raise ToolError(f"too many {param.name} (max {param.max_items})")
        if param.items == "number":
            return [_number(v, f"element {i} of {where}") for i, v in enumerate(value)]
        return list(value)
    raise ToolError(f"unsupported parameter type {param.type!r}")  # pragma: no cover


def decode_arguments(arguments: Any) -> Any:
    """Tool-call arguments as written -> a value: a JSON string (the OpenAI wire format) is
    parsed (``""`` -> ``{}``), ``None`` is ``{}``, anything else is returned unchanged.
    Raises ``json.JSONDecodeError`` for a string that is not JSON."""
    if isinstance(arguments, str):
        return json.loads(arguments) if arguments.strip() else {}
    return {} if arguments is None else arguments


def bind_arguments(spec: ToolSpec, arguments: Any) -> dict[str, Any]:
    """Check and coerce ``arguments`` for ``spec``; raise ``ToolError`` with a clear message."""
    try:
        arguments = decode_arguments(arguments)
    except json.JSONDecodeError as e:
        raise ToolError(f"arguments of {spec.name} are not valid JSON: {e.msg}") from None
    if not isinstance(arguments, dict):
        raise ToolError(
            f"arguments of {spec.name} must be a JSON object, got {type(arguments).__name__}"
        )
    known = {p.name: p for p in spec.parameters}
    extra = [k for k in arguments if k not in known]
    if extra:
        raise ToolError(
            f"unexpected argument(s) {', '.join(map(repr, extra))} for {spec.name}; "
            f"expected {', '.join(known)}"
        )
    missing = [p.name for p in spec.parameters if p.required and p.name not in arguments]
    if missing:
        raise ToolError(f"missing required argument(s) {', '.join(map(repr, missing))} for {spec.name}")
    bound = {}
    for p in spec.parameters:
        if p.name in arguments:
            bound[p.name] = _coerce(p, arguments[p.name], spec.name)
        elif not p.required:
            bound[p.name] = p.default
    return bound


def format_result(value: Any) -> str:
    """Render a tool result the way the model reads it (``12``, ``0.5``, ``1.4142135623730951``)."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return str(value)


def _check_result(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ToolError(f"result is not finite ({value})")
        if abs(value) > MAX_ABS_RESULT:
            raise ToolError(f"result is too large (|result| > {MAX_ABS_RESULT:g})")
    return value


def execute_local(name: Any, arguments: Any, search: SearchBackend | None = None) -> Observation:
    """Run a call in this process (``search`` answers ``wikipedia_search``). Never raises."""
    try:
        if not isinstance(name, str) or not name:
            return Observation.failure("tool call has no tool name")
        spec = ALL_TOOLS.get(name)
        if spec is None:
            return Observation.failure(f"unknown tool {name!r}; available: {', '.join(ALL_TOOLS)}")
        bound = bind_arguments(spec, arguments)
        if spec.uses_search:
            bound["backend"] = search
        return Observation(ok=True, content=format_result(_check_result(spec.impl(**bound))))
    except ToolError as e:
        return Observation.failure(str(e))
    except (OverflowError, ZeroDivisionError, ValueError, TypeError, ArithmeticError) as e:
        return Observation.failure(f"{name}: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - the executor's contract is that nothing escapes
        return Observation.failure(f"{name} failed: {type(e).__name__}: {e}")
