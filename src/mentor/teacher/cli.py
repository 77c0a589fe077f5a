"""``mentor teach``: generate and filter teacher reference trajectories (kept light: heavy
imports happen inside the command)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer


class Backend(str, Enum):
    program = "program"
    openai = "openai"
    hf = "hf"


def teach(
    out: Path = typer.Option(..., "--out", help="References JSONL to write (appended; re-run to resume)."),
    teacher: Backend = typer.Option(Backend.program, "--teacher", help="program (synthetic plans), openai (endpoint) or hf (local transformers)."),
    dataset: str = typer.Option("synthetic", help="'synthetic', a local .jsonl/.parquet file, or a Hub dataset id (e.g. nvidia/AceReason-Math)."),
    split: str = typer.Option("train", help="Synthetic split (train/test/ood) or the Hub split."),
    n: int = typer.Option(None, help="Number of questions (first N of a file; synthetic default 200)."),
    seed: int = typer.Option(0, help="Synthetic-family seed; also the sampling seed sent to the teacher."),
    question_field: str = typer.Option(None, help="Question field of a file (default: auto-detect problem/question/...)."),
    answer_field: str = typer.Option(None, help="Answer field of a file (default: auto-detect answer/solution/...)."),
    task: str = typer.Option(None, help="math or qa (default: qa for files in a qa/ folder, else math)."),
    model: str = typer.Option(None, help="Teacher model: Hub id, local dir or smollm2-135m (default). For openai: the served model name."),
    base_url: str = typer.Option("http://127.0.0.1:8000/v1", help="OpenAI-compatible endpoint (openai backend)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key ('EMPTY' when unset)."),
    concurrency: int = typer.Option(8, min=1, help="Conversations in flight (openai backend)."),
    timeout: float = typer.Option(600.0, help="Per-request timeout in seconds (openai backend)."),
    retries: int = typer.Option(4, min=0, help="Retries on 429/5xx/timeouts/connection errors (exponential backoff)."),
    backoff: float = typer.Option(1.0, min=0.0, help="First retry delay in seconds (doubles each retry)."),
    max_turns: int = typer.Option(8, min=1, help="Maximum assistant turns per question (tool loop)."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling top-p."),
    max_tokens: int = typer.Option(4096, help="Maximum new tokens per assistant turn."),
    extra_body: str = typer.Option(None, help='Extra JSON for the request body, e.g. \'{"chat_template_kwargs": {"enable_thinking": true}}\'.'),
    system: str = typer.Option(None, help="Optional system message (the tools always come from the chat template)."),
    batch_size: int = typer.Option(8, min=1, help="Generation batch size (hf backend)."),
    dtype: str = typer.Option("float32", help="Model dtype (hf backend)."),
    generation_backend: str = typer.Option("transformers", help="hf backend: transformers | llama_cpp (bf16 GGUF)."),
    tool_server: str = typer.Option(None, help="Execute tool calls on a `mentor serve tools` server (default: in-process)."),
    keep_all: bool = typer.Option(False, "--keep-all", help="Also keep wrong / unanswered trajectories in OUT."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the questions whose endpoint request failed."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="A live display (default on a terminal); --no-progress: one plain line per event."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the libraries' output (always in OUT.log)."),
) -> None:
    """Generate teacher reference trajectories and keep the correct ones (SPEC stage 1).

    Writes OUT (kept references), OUT.rejected.jsonl (wrong answers, no answer, endpoint
    failures), OUT.summary.json and OUT.log (the libraries' output). Re-running the same
    command resumes where it stopped.
    """
    from rich.console import Console

    from mentor.data import load_questions
    from mentor.display import command_stage
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references, rejected_path
    from mentor.tools import Executor

    console = Console()
    err = Console(stderr=True, soft_wrap=True)
    config = {k: (str(v.value) if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v) for k, v in locals().items()
              if k not in ("console", "err", "Console") and not callable(v)}
    try:
        body = json.loads(extra_body) if extra_body else None
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"not valid JSON: {e.msg}", param_hint="--extra-body") from None
    if task not in (None, "math", "qa"):
        raise typer.BadParameter("choose math or qa", param_hint="--task")
    try:
        with command_stage("teach", out.with_name(out.name + ".log"), progress, verbose, unit="questions") as row:
            questions = load_questions(dataset, split=split, n=n, seed=seed, question_field=question_field,
                                       answer_field=answer_field, task=task)
            row.set_total(len(questions))
            backend = make_teacher(teacher.value, model=model, base_url=base_url, api_key_env=api_key_env,
                                   concurrency=concurrency, timeout=timeout, retries=retries, backoff=backoff,
                                   max_turns=max_turns, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                   seed=seed, extra_body=body, system=system, batch_size=batch_size, dtype=dtype,
                                   generation_backend=generation_backend,
                                   executor=Executor(tool_server=tool_server))
            summary = generate_references(questions, backend, out, keep_all=keep_all, retry_failed=retry_failed,
                                          progress=row.update, config=config, seed=seed)
    except Exception as e:
        _fail(err, e)

    _print_summary(console, summary, f"mentor teach ({teacher.value}) -> {out}", out)
    if summary.done and summary.failed == summary.done:
        err.print("[red]every request failed; see the error field in[/red] " + str(rejected_path(out)))
        raise typer.Exit(1)


def _fail(err, e: Exception) -> None:
    """Bad input, an unreachable endpoint, a model that cannot be loaded: one clear line (with
    the log's path), exit 2, no traceback. Anything else propagates."""
    from rich.markup import escape as rich_escape

    from mentor.display import describe_error
    from mentor.io import DataError
    from mentor.models import ModelError
    from mentor.teacher.openai_backend import EndpointError

    if isinstance(e, DataError | ValueError | EndpointError | ModelError | OSError):
        err.print(f"[red]error:[/red] {rich_escape(describe_error(e))}")
        raise typer.Exit(2) from None
    raise e


def _print_summary(console, summary, title: str, out: Path) -> None:
    from rich.table import Table

    from mentor.teacher.generate import rejected_path

    table = Table(title=title)
    table.add_column("count")
    table.add_column("value", justify="right")
    rows = [
        ("questions", summary.total), ("already done (resumed)", summary.skipped), ("done this run", summary.done),
        ("kept", summary.kept), ("correct", summary.correct), ("wrong answer", summary.wrong),
        ("no answer (failed)", summary.no_answer), ("endpoint failed", summary.failed),
        ("with invalid tool calls", summary.invalid), ("seconds", f"{summary.seconds:.2f}"),
        ("references/second", f"{summary.rate:.2f}"),
        (f"lines in {out.name}", summary.file_kept), (f"lines in {rejected_path(out).name}", summary.file_rejected),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    console.print(table)
