"""One model of a tool-using trajectory, parsed from raw model text or from chat messages.

A trajectory is a sequence of steps grouped in assistant turns: reasoning (``<think>``
content or a message's ``reasoning_content``), visible text, tool calls (name, arguments,
the raw text they came from) and observations (a tool's result, ok or error), ending in a
final answer (the last ``\\boxed{}`` outside reasoning, tool calls and tool results).

Malformed calls (bad JSON, no name, arguments that are not an object, an unclosed
``<tool_call>``) are kept and count as invalid calls. Parsing never raises.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mentor.answers import extract_boxed
from mentor.tools.local import Observation, bind_arguments, decode_arguments, execute_local
from mentor.tools.registry import ALL_TOOLS, ToolError

StepKind = Literal["reasoning", "text", "tool_call", "observation"]

_TAG_RE = re.compile(
    r"<think>(?P<think>.*?)(?:</think>|\Z)"
    r"|<tool_call>(?P<call>.*?)(?:</tool_call>|(?=<tool_call>)|(?=<\|im_end\|>)|\Z)"
    r"|<tool_response>(?P<resp>.*?)(?:</tool_response>|\Z)",
    re.DOTALL,
)
_CHATML_RE = re.compile(r"<\|im_start\|>(?:assistant|user|system|tool)?\n?|<\|im_end\|>\n?|<\|endoftext\|>")
_NAME_RE = re.compile(r'"name"\s*:\s*"([^"\\]{1,100})"')


@dataclass
class ToolCall:
    """One tool call as the model wrote it."""

    name: str | None
    arguments: Any
    raw: str
    parse_error: str | None = None
    observation: Observation | None = None
    id: str | None = None
    _checked: str | None = field(default=None, repr=False, compare=False)

    @property
    def well_formed(self) -> bool:
        """Syntactically a call: JSON object with a string name and object arguments."""
        return self.parse_error is None

    @property
    def error(self) -> str | None:
        """Why the call is invalid (``None`` when valid).

        A call is valid when it is well formed and it executed without error. When the
        trajectory carries no observation for it, the call is checked now: math tools are
        pure and cheap, so they are executed; other tools have their arguments validated.
        """
        if self.parse_error is not None:
            return self.parse_error
        if self.observation is not None:
            return None if self.observation.ok else (self.observation.error or "tool returned an error")
        if self._checked is None:
            self._checked = _check_call(self.name, self.arguments) or ""
        return self._checked or None

    @property
    def valid(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "raw": self.raw,
            "parse_error": self.parse_error,
            "valid": self.valid,
            "observation": self.observation.to_dict() if self.observation else None,
        }


def _check_call(name: str | None, arguments: Any) -> str | None:
    spec = ALL_TOOLS.get(name or "")
    if spec is None:
        return f"unknown tool {name!r}"
    if spec.name == "wikipedia_search":
        try:
            bind_arguments(spec, arguments)
        except ToolError as e:
            return str(e)
        return None
    return execute_local(name, arguments).error


@dataclass
class Step:
    kind: StepKind
    text: str = ""
    call: ToolCall | None = None
    observation: Observation | None = None
    turn: int = 0


def parse_tool_call(raw: str) -> ToolCall:
    """Parse the inside of a ``<tool_call>`` block (never raises)."""
    body = raw.strip()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        match = _NAME_RE.search(body)
        msg = getattr(e, "msg", type(e).__name__)
        return ToolCall(match.group(1) if match else None, None, raw, f"tool call is not valid JSON: {msg}")
    return tool_call_from_obj(obj, raw)


def tool_call_blocks(text: str) -> Iterator[tuple[int, int, ToolCall, bool]]:
    """Every ``<tool_call>`` block of ``text``: ``(start, end, parsed call, closed)``, where
    ``closed`` says the block ends with ``</tool_call>`` (``<think>`` blocks are skipped)."""
    for m in _TAG_RE.finditer(text):
        if m.group("call") is not None:
            closed = text[m.start() : m.end()].rstrip().endswith("</tool_call>")
            yield m.start(), m.end(), parse_tool_call(m.group("call")), closed


def tool_call_from_obj(obj: Any, raw: str = "", call_id: str | None = None) -> ToolCall:
    """A call given as an object (``{"name", "arguments"}`` or OpenAI's ``{"type": "function",
    "function": {...}}``, arguments as an object or a JSON string) as a ``ToolCall``."""
    if not isinstance(obj, dict):
        return ToolCall(None, None, raw, f"tool call must be a JSON object, got {type(obj).__name__}", id=call_id)
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI {"type": "function", "function": {...}}
        call_id = call_id or (obj.get("id") if isinstance(obj.get("id"), str) else None)
        obj = obj["function"]
    name = obj.get("name")
    arguments = obj.get("arguments", {})
    if not isinstance(name, str) or not name.strip():
        return ToolCall(None, arguments, raw, "tool call has no string 'name'", id=call_id)
    try:  # the OpenAI wire format carries arguments as a JSON string
        arguments = decode_arguments(arguments)
    except (RecursionError, ValueError):
        return ToolCall(name, arguments, raw, "tool call arguments are not valid JSON", id=call_id)
    if not isinstance(arguments, dict):
        return ToolCall(
            name, arguments, raw, f"tool call arguments must be an object, got {type(arguments).__name__}", id=call_id
        )
    return ToolCall(name, arguments, raw, id=call_id)


def parse_observation(content: Any) -> Observation:
    """A tool turn's content as an ``Observation``: ``{"error": ...}`` (JSON or Python repr, as
    TRL writes it) is a failed call; anything else is a result."""
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    if isinstance(content, Mapping):
        obj: Any = content
        content = json.dumps(content, default=str)
    else:
        content = "" if content is None else str(content)
        obj = None
        body = content.strip()
        if body.startswith("{") and body.endswith("}") and len(body) < 100_000:
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                try:
                    obj = ast.literal_eval(body)
                except Exception:  # noqa: BLE001 - any failure means "not an error dict"
                    obj = None
    if isinstance(obj, Mapping) and "error" in obj and obj["error"] not in (None, ""):
        return Observation(ok=False, content=content, error=str(obj["error"]))
    return Observation(ok=True, content=content)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


@dataclass
class Trajectory:
    """Steps of reasoning, tool calls and observations, and a final answer."""

    steps: list[Step] = field(default_factory=list)
    final_answer: str | None = None

    # ----------------------------------------------------------------- parsing
    @classmethod
    def from_text(cls, text: Any) -> Trajectory:
        """Parse raw model text with any number of ``<tool_call>`` blocks (and
        ``<tool_response>`` blocks between turns). Never raises."""
        traj = cls()
        try:
            traj._feed_text(text if isinstance(text, str) else _content_text(text), turn=0, tool_responses=True)
            traj._finish()
        except Exception as e:  # noqa: BLE001 - defensive: parsing never raises
            traj.steps.append(Step("text", f"[unparseable: {type(e).__name__}]"))
        return traj

    @classmethod
    def from_messages(cls, messages: Iterable[Mapping[str, Any]] | Any) -> Trajectory:
        """Parse chat messages in OpenAI/HF form: assistant ``tool_calls`` (or ``<tool_call>``
        text), ``tool`` results (``{"error": ...}`` marks a failed call), ``<think>`` blocks and
        ``reasoning_content``. System and user prompt messages are skipped. Never raises."""
        traj = cls()
        if isinstance(messages, str):
            return cls.from_text(messages)
        try:
            turn = 0
            for msg in messages or []:
                if not isinstance(msg, Mapping):
                    continue
                role = msg.get("role")
                if role == "assistant":
                    traj._feed_assistant(msg, turn)
                    turn += 1
                elif role in ("tool", "function", "ipython"):
                    traj._attach(parse_observation(msg.get("content")), msg.get("tool_call_id"), turn)
                elif role == "user":
                    text = _content_text(msg.get("content"))
                    if "<tool_response>" in text:
                        for m in _TAG_RE.finditer(text):
                            if m.group("resp") is not None:
                                traj._attach(parse_observation(m.group("resp").strip()), None, turn)
            traj._finish()
        except Exception as e:  # noqa: BLE001
            traj.steps.append(Step("text", f"[unparseable: {type(e).__name__}]"))
        return traj

    @classmethod
    def from_any(cls, completion: Any) -> Trajectory:
        """A TRL completion: a string (standard format) or a list of messages (conversational)."""
        if isinstance(completion, Trajectory):
            return completion
        if isinstance(completion, str):
            return cls.from_text(completion)
        return cls.from_messages(completion)

    def _feed_assistant(self, msg: Mapping[str, Any], turn: int) -> None:
        for key in ("reasoning_content", "reasoning"):
            reasoning = msg.get(key)
            if isinstance(reasoning, str) and reasoning.strip():
                self.steps.append(Step("reasoning", reasoning.strip(), turn=turn))
        structured = msg.get("tool_calls") or []
        if not isinstance(structured, list):
            structured = [structured]
        self._feed_text(
            _content_text(msg.get("content")), turn, tool_responses=True, skip_well_formed_calls=bool(structured)
        )
        for tc in structured:
            try:
                raw = json.dumps(tc, default=str)
            except (TypeError, ValueError):
                raw = str(tc)
            call = tool_call_from_obj(tc, raw, tc.get("id") if isinstance(tc, dict) else None)
            self.steps.append(Step("tool_call", call=call, turn=turn))

    def _feed_text(self, text: str, turn: int, tool_responses: bool, skip_well_formed_calls: bool = False) -> None:
        # Templates that open the thinking block in the prompt leave a bare "</think>".
        if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
            thought, text = text.split("</think>", 1)
            if thought.strip():
                self.steps.append(Step("reasoning", thought.strip(), turn=turn))
        pos = 0
        for m in _TAG_RE.finditer(text):
            self._add_text(text[pos : m.start()], turn)
            pos = m.end()
            if m.group("think") is not None:
                if m.group("think").strip():
                    self.steps.append(Step("reasoning", m.group("think").strip(), turn=turn))
            elif m.group("call") is not None:
                raw = m.group("call")
                call = parse_tool_call(raw)
                closed = text[m.start() : m.end()].rstrip().endswith("</tool_call>")
                if not closed and call.parse_error is None:
                    call.parse_error = "unclosed <tool_call> block"
                if skip_well_formed_calls and call.parse_error is None:
                    continue  # the structured tool_calls already carry it
                self.steps.append(Step("tool_call", call=call, turn=turn))
            elif tool_responses:
                self._attach(parse_observation(m.group("resp").strip()), None, turn)
                turn += 1
        self._add_text(text[pos:], turn)

    def _add_text(self, text: str, turn: int) -> None:
        text = _CHATML_RE.sub("", text).strip()
        if text:
            self.steps.append(Step("text", text, turn=turn))

    def _attach(self, obs: Observation, call_id: Any, turn: int) -> None:
        pending = [s.call for s in self.steps if s.kind == "tool_call" and s.call.observation is None]
        target = None
        if isinstance(call_id, str):
            target = next((c for c in pending if c.id == call_id), None)
        if target is None and pending:
            target = pending[0]
        if target is not None:
            target.observation = obs
        self.steps.append(Step("observation", observation=obs, turn=turn))

    def _finish(self) -> None:
        answer = None
        for step in self.steps:
            if step.kind == "text":
                boxed = extract_boxed(step.text)
                if boxed is not None:
                    answer = boxed
        self.final_answer = answer

    # ------------------------------------------------------------------ views
    @property
    def tool_calls(self) -> list[ToolCall]:
        return [s.call for s in self.steps if s.kind == "tool_call" and s.call is not None]

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools called, in call order (invalid calls included when named)."""
        return [c.name for c in self.tool_calls if c.name]

    @property
    def tool_set(self) -> frozenset[str]:
        return frozenset(self.tool_names)

    @property
    def num_tool_calls(self) -> int:
        return len(self.tool_calls)

    @property
    def num_invalid_calls(self) -> int:
        return sum(not c.valid for c in self.tool_calls)

    @property
    def all_calls_valid(self) -> bool:
        """Every call valid; a trajectory with no call has nothing invalid (Eq. 7)."""
        return all(c.valid for c in self.tool_calls)

    @property
    def reasoning(self) -> str:
        return "\n".join(s.text for s in self.steps if s.kind == "reasoning")

    @property
    def text(self) -> str:
        """The visible assistant text (no reasoning, calls or results)."""
        return "\n".join(s.text for s in self.steps if s.kind == "text")

    def to_messages(self) -> list[dict[str, Any]]:
        """The trajectory as OpenAI/HF chat messages (assistant ``tool_calls`` + ``tool`` turns)."""
        out: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        n_calls = 0

        def flush():
            nonlocal current
            if current is not None:
                if not current["tool_calls"]:
                    del current["tool_calls"]
                out.append(current)
                current = None

        for step in self.steps:
            if step.kind == "observation":
                flush()
                msg: dict[str, Any] = {"role": "tool", "content": step.observation.as_message_content()}
                out.append(msg)
                continue
            if current is None:
                current = {"role": "assistant", "content": "", "tool_calls": []}
            if step.kind == "reasoning":
                current["content"] += f"<think>\n{step.text}\n</think>\n\n"
            elif step.kind == "text":
                current["content"] += step.text + "\n"
            elif step.call.well_formed:
                n_calls += 1
                cid = step.call.id or f"call_{n_calls}"
                current["tool_calls"].append(
                    {"type": "function", "id": cid, "function": {"name": step.call.name, "arguments": step.call.arguments}}
                )
            else:
                current["content"] += f"<tool_call>{step.call.raw}</tool_call>\n"
        flush()
        # Link tool results to their calls by id, in order.
        ids = [tc["id"] for m in out if m["role"] == "assistant" for tc in m.get("tool_calls", [])]
        names = [tc["function"]["name"] for m in out if m["role"] == "assistant" for tc in m.get("tool_calls", [])]
        k = 0
        for m in out:
            if m["role"] == "assistant":
                m["content"] = m["content"].strip()
            elif m["role"] == "tool" and k < len(ids):
                m["tool_call_id"], m["name"] = ids[k], names[k]
                k += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "final_answer": self.final_answer,
            "tool_names": self.tool_names,
            "num_tool_calls": self.num_tool_calls,
            "num_invalid_calls": self.num_invalid_calls,
            "calls": [c.to_dict() for c in self.tool_calls],
            "messages": self.to_messages(),
        }
