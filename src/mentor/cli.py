"""The ``mentor`` command: a thin typer layer over the Python API.

Each stage's commands live next to their code (``mentor.<stage>.cli``) and are registered
below; heavy libraries are imported inside the commands, so ``mentor --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="mentor",
    help="Teach small language models to use tools: teacher references, MENTOR/GRPO training, "
    "baselines, evaluation and the paper's analyses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

model_app = typer.Typer(help="Models: prepare the bundled default, show where a model resolves.", no_args_is_help=True)
tools_app = typer.Typer(help="Tools: list the registry, make a call.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(tools_app, name="tools")


@model_app.command("prepare")
def model_prepare(model: str = typer.Option("smollm2-135m", help="Hub id, local directory or smollm2-135m.")) -> None:
    """Cache the bundled default model in Hugging Face format (done once; later a no-op)."""
    from mentor.models import resolve_model

    console.print(resolve_model(model))


@tools_app.command("list")
def tools_list(toolset: str = typer.Option("all", help="math, search, or all."), as_json: bool = False) -> None:
    """List tools with their parameters (or print their JSON schemas with --json)."""
    from mentor.tools import ALL_TOOLS, toolset as resolve

    specs = list(ALL_TOOLS.values()) if toolset == "all" else list(resolve(toolset))
    if as_json:
        print(json.dumps([s.schema() for s in specs], indent=2))
        return
    table = Table("name", "description", "parameters")
    for s in specs:
        table.add_row(s.name, s.description, ", ".join(f"{p.name}: {p.type}" for p in s.parameters))
    console.print(table)


@tools_app.command("call")
def tools_call(
    name: str,
    arguments: str = typer.Argument("{}", help="JSON object of arguments."),
    server: str = typer.Option(None, help="URL of a `mentor serve tools` server (default: in-process)."),
) -> None:
    """Execute one tool call and print the observation as JSON (exit 1 when the call is invalid)."""
    from mentor.tools import Executor

    obs = Executor(tool_server=server).execute(name, arguments)
    print(json.dumps(obs.to_dict()))
    raise typer.Exit(0 if obs.ok else 1)


# (module, attribute, name): a typer app is mounted as a command group, a function as a command.
_COMMANDS: list[tuple[str, str, str]] = [
    ("mentor.teacher.cli", "teach", "teach"),
    ("mentor.train.cli", "app", "train"),
    ("mentor.eval.cli", "eval_command", "eval"),
    ("mentor.analysis.cli", "report", "report"),
    ("mentor.serve.cli", "app", "serve"),
    ("mentor.pipeline", "run", "run"),
    ("mentor.runs", "app", "runs"),
    ("mentor.chat", "chat", "chat"),
]


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # parent package absent
        return False


def _register() -> None:
    for module, attr, name in _COMMANDS:
        if not _exists(module):
            continue  # stage not built into this installation
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)


_register()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)


if __name__ == "__main__":
    main()
