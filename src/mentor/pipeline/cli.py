"""``mentor run``: the CLI over ``Pipeline`` (and its summary table)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape as rich_escape

from mentor.io import DataError
from mentor.pipeline.config import PipelineError, load_config
from mentor.pipeline.stages import Pipeline
from mentor.display import SUMMARY_KEYS, describe_error, summary_table

__all__ = ["SUMMARY_KEYS", "print_summary", "run"]


def print_summary(summary: Mapping[str, Mapping[str, Any]], console: Any = None) -> None:
    (console or Console()).print(summary_table(summary))


# ------------------------------------------------------------------ CLI


def run(
    config: Path = typer.Option(None, "--config", help="Pipeline YAML (default: configs/pipeline/cpu.yaml, the bundled CPU demo)."),
    output_dir: Path = typer.Option(None, "--output-dir", help="Run directory (default: runs/<config name>)."),
    stages: str = typer.Option(None, "--stages", help="Comma-separated subset of stages: data,teach,teacher_eval,vanilla,sft,<rl methods>,eval,report."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="A live display (default on a terminal); --no-progress: one plain line per event."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the libraries' output (always in RUN_DIR/logs/<stage>.log)."),
) -> None:
    """Run the whole MENTOR pipeline (data -> teacher -> teacher eval -> vanilla eval -> SFT -> RL -> eval -> report).

    Completed stages are skipped, so re-running a killed run finishes it."""
    console = Console()
    try:
        cfg = load_config(config)
        out = output_dir or Path("runs") / str(cfg.get("name", "run"))
        pipe = Pipeline(cfg, out, progress=progress, verbose=verbose)
        chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        t0 = time.perf_counter()
        pipe.run(chosen)
    except (PipelineError, DataError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {rich_escape(describe_error(e))}")
        raise typer.Exit(2) from None
    summary_file = out / "summary.json"
    if summary_file.exists():
        print_summary(json.loads(summary_file.read_text()), console)
    console.print(f"finished in {time.perf_counter() - t0:.0f}s")
    if (out / "report.md").exists():
        console.print(f"report: [bold]{out / 'report.md'}[/bold] (and {out / 'report.html'}, plots in {out / 'plots'})")
