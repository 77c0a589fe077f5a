"""``mentor chat``: talk to a student with its task's tools live.

``mentor chat --model M`` loads any student (a run's ``models/<method>/final/``, a Hub id, the
bundled ``smollm2-135m`` / ``smollm2-135m-compact``) and answers questions the way evaluation
does: the question becomes a one-item benchmark of the task whose tool set ``--tools`` names
(``math`` -> the math task, ``search`` -> retrieval QA, ``none`` -> no tools offered), and the
task generates it -- the same prompt, the same executor (``Task.executor``) and the same
multi-turn tool loop (``mentor.generation.rollout``) and parsing as ``mentor eval``. The loop's
``on_message`` hook shows each assistant turn, tool call and tool result as it happens; the
final ``\\boxed{}`` answer is highlighted.

``--question "..."`` answers once and exits (``--json``: the trajectory as JSON on stdout, the
live display on stderr); without it, a ``Question>`` prompt loop where each question is a fresh
conversation (an empty line, ``exit``, ``quit`` or Ctrl-D ends it).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from mentor.generation.loop import Rollout, Sampling, offered, pending_calls
from mentor.tasks import Benchmark, Item, RunOptions, Task, all_tasks
from mentor.tools.executor import Executor
from mentor.trajectory import parse_observation

NO_TOOLS = "none"
_BOXED = re.compile(r"\\boxed\s*\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}")


class ChatError(Exception):
    """A problem with the command's arguments or the model: one line for the user, exit 2."""


def tool_choices() -> list[str]:
    """``--tools`` values: the tool sets of the registered tasks, and ``none``."""
    return [*dict.fromkeys(t.toolset for t in all_tasks() if t.toolset), NO_TOOLS]


def task_for(tools: str) -> Task:
    """The task whose prompts offer the tool set ``tools`` (``none``: the first such task, run
    without tools)."""
    choices = tool_choices()
    if tools not in choices:
        raise ChatError(f"--tools must be one of {', '.join(choices)} (got {tools!r})")
    with_tools = [t for t in all_tasks() if t.toolset]
    return with_tools[0] if tools == NO_TOOLS else next(t for t in with_tools if t.toolset == tools)


@dataclass
class ChatSession:
    """A loaded student, the task whose prompt and tools it answers with, and the settings."""

    generator: Any
    task: Task
    tools: bool
    executor: Executor
    max_turns: int = 4
    sampling: Sampling = Sampling()
    model: str = "smollm2-135m"

    @property
    def toolset(self) -> str | None:
        return self.task.toolset if self.tools else None

    def ask(self, question: str, on_message: Callable[[dict[str, Any]], None] | None = None) -> Rollout:
        """One fresh conversation: the task generates ``question`` as a one-item benchmark."""
        bench = Benchmark("chat", self.task.name, [Item(id="chat", question=question, gold=None)])
        hook = (lambda _i, message: on_message(message)) if on_message is not None else None
        opts = RunOptions(self.tools, self.max_turns, self.sampling, self.executor, progress=False, on_message=hook)
        (result,) = self.task.generate(self.generator, bench, opts)
        return result

    def record(self, question: str, result: Rollout) -> dict[str, Any]:
        """What ``--json`` prints: the question, the answer, the prompt and completion messages,
        the parsed trajectory, the counters and the settings (and the rendered prompt text when
        the generator renders locally)."""
        traj = result.trajectory
        out: dict[str, Any] = {
            "question": question,
            "model": self.model,
            "task": self.task.name,
            "tools": self.toolset or NO_TOOLS,
            "answer": traj.final_answer,
            **result.to_dict(),
            "seconds": round(result.seconds, 3),
            "trajectory": traj.to_dict(),
            "settings": {"max_turns": self.max_turns, "max_new_tokens": self.sampling.max_new_tokens,
                         "temperature": self.sampling.temperature, "seed": self.sampling.seed,
                         "tool_server": self.executor.tool_server},
        }
        render = getattr(self.generator, "render", None)
        if callable(render):
            out["rendered_prompt"] = render(result.prompt, offered(self.toolset, self.executor)[0])
        return out


# --------------------------------------------------------------------------- the live view


def _call_text(name: Any, arguments: Any) -> str:
    if isinstance(arguments, dict):
        args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    else:
        args = json.dumps(arguments, ensure_ascii=False, default=str)
    return f"{name or '?'}({args})"


class ChatView:
    """Prints a conversation as it happens: the assistant's text (``\\boxed{}`` highlighted), each
    tool call (``→``) and result (``←``; errors in red), then the answer and the counters."""

    def __init__(self, console: Console):
        self.console = console

    def question(self, question: str) -> None:
        self.console.rule(style="dim")
        self.console.print(Text(f"Question: {question}", style="bold"))

    def message(self, message: dict[str, Any]) -> None:
        if message.get("role") == "tool":
            obs = parse_observation(message.get("content"))
            if obs.ok:
                self.console.print(Text("  ← ", style="green") + Text(obs.content.strip()))
            else:
                self.console.print(Text(f"  ← error: {obs.error}", style="red"))
            return
        content = (message.get("content") or "").strip()
        if content:
            text = Text(content, style="dim" if message.get("tool_calls") else "")
            text.highlight_regex(_BOXED, "bold green")
            self.console.print(text)
        for name, arguments, _id, parse_error in pending_calls(message):
            if parse_error:
                self.console.print(Text(f"  → malformed call: {parse_error}", style="red"))
            else:
                self.console.print(Text("  → ", style="cyan") + Text(_call_text(name, arguments), style="bold cyan"))

    def answer(self, result: Rollout) -> None:
        traj = result.trajectory
        if traj.final_answer is not None:
            body = Text(traj.final_answer, style="bold green")
            self.console.print(Panel(body, title="answer", title_align="left", border_style="green", expand=False))
        else:
            self.console.print(Panel(Text("no \\boxed{} answer", style="yellow"), title="answer", title_align="left",
                                     border_style="yellow", expand=False))
        calls = traj.num_tool_calls
        facts = [f"{result.turns} turn{'s' * (result.turns != 1)}", f"{calls} tool call{'s' * (calls != 1)}",
                 f"{traj.num_invalid_calls} invalid", f"{result.generated_tokens} tokens", f"{result.seconds:.1f} s"]
        if result.truncated:
            facts.append("stopped at --max-turns")
        self.console.print(Text(" · ".join(facts), style="dim"))


def show(session: ChatSession, question: str, console: Console) -> dict[str, Any]:
    """Answer ``question`` with the live view on ``console``; return its ``record``."""
    view = ChatView(console)
    view.question(question)
    with console.status("generating...", spinner="dots"):
        result = session.ask(question, on_message=view.message)
    view.answer(result)
    return session.record(question, result)


def interactive(session: ChatSession, console: Console) -> None:
    """The ``Question>`` loop: each question a fresh conversation; an empty line, ``exit``,
    ``quit``, Ctrl-D (or Ctrl-C at the prompt) ends it; Ctrl-C while generating drops that answer."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 -- line editing and history for input()
    tools = f"tools: {session.toolset}" if session.toolset else "no tools"
    console.print(Text.assemble(("mentor chat", "bold"), f" · {session.model} · {tools} · ",
                                "greedy" if session.sampling.greedy else f"temperature {session.sampling.temperature}",
                                f" · up to {session.max_turns} turns"))
    console.print(Text("Each question is a fresh conversation. Empty line, exit, quit or Ctrl-D ends.", style="dim"))
    while True:
        try:
            line = console.input("[bold]Question> [/bold]").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not line or line.lower() in ("exit", "quit"):
            break
        try:
            show(session, line, console)
        except KeyboardInterrupt:
            console.print(Text("(interrupted)", style="yellow"))
    console.print(Text("bye", style="dim"))


# --------------------------------------------------------------------------- building a session


def _load_generator(model: str, base_url: str | None, dtype: str) -> Any:
    """The generator for ``model`` (``make_generator``); a missing directory or a model that
    cannot be loaded is a ``ChatError``."""
    from mentor.display import quiet_libraries
    from mentor.generation import make_generator
    from mentor.models import ModelError

    if base_url is None and _looks_like_path(model) and not Path(model).expanduser().exists():
        raise ChatError(f"no model directory at {model}")
    quiet_libraries()
    try:
        return make_generator(model, base_url=base_url, batch_size=1, dtype=dtype)
    except ModelError as e:
        raise ChatError(str(e)) from None
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ChatError(f"cannot load model {model!r}: {first}") from None


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or model.endswith("/")


def build_session(model: str, tools: str = "math", *, generator: Any = None, max_turns: int = 4,
                  sampling: Sampling = Sampling(), tool_server: str | None = None, retriever_url: str | None = None,
                  top_k: int = 5, base_url: str | None = None, dtype: str = "float32") -> ChatSession:
    """Check the tool set and its executor first (cheap), then load the model (unless a
    ``generator`` is given, e.g. a scripted one in tests)."""
    task = task_for(tools)
    use_tools = tools != NO_TOOLS
    executor = Executor(tool_server=tool_server)
    if use_tools:
        try:
            executor, _ = task.executor(Benchmark("chat", task.name, []), executor, retriever_url, top_k)
        except ValueError as e:
            raise ChatError(f"--tools {tools}: {e}") from None
    if generator is None:
        generator = _load_generator(model, base_url, dtype)
    return ChatSession(generator, task, use_tools, executor, max_turns, sampling, model)


# --------------------------------------------------------------------------- the command


def chat(
    model: str = typer.Option("smollm2-135m", "--model", "-m",
                              help="A run's models/<method>/final/ directory, a Hub id, smollm2-135m or smollm2-135m-compact."),
    tools: str = typer.Option("math", help="Tool set offered: math, search (needs --retriever-url) or none."),
    question: str = typer.Option(None, "--question", "-q", help="Answer this one question and exit (scriptable)."),
    as_json: bool = typer.Option(False, "--json", help="With --question: print the trajectory as JSON on stdout "
                                 "(the live display goes to stderr)."),
    max_turns: int = typer.Option(4, help="Maximum assistant turns per question."),
    max_new_tokens: int = typer.Option(1024, help="Maximum new tokens per turn."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0),
    seed: int = typer.Option(0),
    tool_server: str = typer.Option(None, help="URL of a `mentor serve tools` server (default: in-process tools)."),
    retriever_url: str = typer.Option(None, help="URL of a `mentor serve retriever` server (--tools search)."),
    top_k: int = typer.Option(5, help="Passages per search query (--tools search)."),
    base_url: str = typer.Option(None, help="OpenAI-compatible server serving --model (vLLM, transformers serve)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16"),
) -> None:
    """Talk to a student with its task's tools live: each tool call and result as it happens."""
    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    try:
        if as_json and question is None:
            raise ChatError("--json needs --question (the interactive session has no JSON output)")
        with console.status(f"loading {model}...", spinner="dots"):
            session = build_session(model, tools, max_turns=max_turns, sampling=sampling, tool_server=tool_server,
                                    retriever_url=retriever_url, top_k=top_k, base_url=base_url, dtype=dtype)
    except ChatError as e:
        errors.print(f"[red]error:[/red] {e}", markup=True)
        raise typer.Exit(2) from None
    if question is None:
        interactive(session, console)
        return
    record = show(session, question, console)
    if as_json:
        print(json.dumps(record, ensure_ascii=False, indent=2))
