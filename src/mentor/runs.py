"""``mentor runs``: what a person checks the morning after a long run.

``mentor runs list runs/`` shows every run directory under a folder with its status (stages
done of the config's stages, the next one, time spent, the headline numbers of summary.json);
``mentor runs show RUN_DIR`` prints one run's stages with their times, its summary table and
where its report, plots and logs are. Both only read the plain files a run writes
(``pipeline.yaml``, ``run.json``, ``stages/*.json``, ``summary.json``, ``logs/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mentor.display import fmt_duration, summary_table
from mentor.pipeline.config import all_stages

app = typer.Typer(help="Runs: list run directories with their status, show one run.", no_args_is_help=True)



@dataclass
class RunStatus:
    path: Path
    name: str
    stages: list[str]
    done: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_at: str | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.stages) and all(s in self.done for s in self.stages)

    @property
    def next_stage(self) -> str | None:
        return next((s for s in self.stages if s not in self.done), None)

    @property
    def seconds(self) -> float:
        return sum(self.done.values())


def is_run(path: Path) -> bool:
    return (path / "pipeline.yaml").is_file() or (path / "run.json").is_file()


def read_run(path: str | os.PathLike) -> RunStatus:
    """A run directory's status from its files; unreadable files are reported, not raised."""
    import yaml

    path = Path(path)
    status = RunStatus(path=path, name=path.name, stages=[])
    try:
        cfg = yaml.safe_load((path / "pipeline.yaml").read_text()) if (path / "pipeline.yaml").exists() else {}
        status.name = str((cfg or {}).get("name", path.name))
        status.stages = _stages_of(cfg or {})
        meta = json.loads((path / "run.json").read_text()) if (path / "run.json").exists() else {}
        status.started_at = meta.get("started_at")
        for marker in sorted((path / "stages").glob("*.json")):
            status.done[marker.stem] = float(json.loads(marker.read_text()).get("seconds", 0.0))
        if (path / "summary.json").exists():
            status.summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        status.error = f"{type(e).__name__}: {e}"
    for s in status.done:
        if s not in status.stages:
            status.stages.append(s)
    return status


def _stages_of(cfg: Mapping[str, Any]) -> list[str]:
    return list(all_stages(cfg))


def find_runs(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if is_run(root):
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run(p))


def headline(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """One line of the headline numbers: each method's in-/out-of-domain accuracy."""
    parts = []
    for method, row in summary.items():
        ind, ood = row.get("in_domain_accuracy"), row.get("out_of_domain_accuracy")
        if ind is None and ood is None:
            continue
        parts.append(f"{method} {_num(ind)}/{_num(ood)}")
    return ", ".join(parts)


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"


def list_table(runs: Sequence[RunStatus]) -> Table:
    table = Table(title="runs")
    for col in ("run", "config", "status", "stages", "time", "in/out-of-domain accuracy"):
        table.add_column(col)
    for r in runs:
        if r.error:
            status = f"[red]unreadable[/red] ({r.error})"
        elif r.complete:
            status = "[green]complete[/green]"
        else:
            status = f"[yellow]next: {r.next_stage}[/yellow]"
        table.add_row(str(r.path), r.name, status, f"{len(r.done)}/{len(r.stages)}", fmt_duration(r.seconds), headline(r.summary))
    return table


def artifacts(path: Path) -> dict[str, list[Path]]:
    """The files a person opens after a run: the report, the plots, the per-stage logs."""
    return {
        "report": [p for p in (path / "report.html", path / "report.md", path / "summary.json") if p.exists()],
        "plots": sorted((path / "plots").glob("*.png")),
        "logs": sorted((path / "logs").glob("*.log")),
    }


@app.command("list")
def list_command(root: Path = typer.Argument(Path("runs"), help="A folder of run directories (or one run).")) -> None:
    """Each run's status: stages done, the next stage, time spent, headline accuracies."""
    console = Console()
    try:
        runs = [read_run(p) for p in find_runs(root)]
    except FileNotFoundError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if not runs:
        console.print(f"no run directories under {root}")
        return
    console.print(list_table(runs))


@app.command("show")
def show_command(run: Path = typer.Argument(..., help="A run directory written by `mentor run`.")) -> None:
    """One run: its stages and their times, its summary table, where its report, plots and logs are."""
    console = Console()
    if not is_run(run):
        Console(stderr=True).print(f"[red]error:[/red] {run}: not a run directory (no pipeline.yaml or run.json)")
        raise typer.Exit(2)
    r = read_run(run)
    stages = Table(title=f"{r.name} ({run})")
    stages.add_column("stage")
    stages.add_column("status")
    stages.add_column("time", justify="right")
    for s in r.stages:
        stages.add_row(s, "done" if s in r.done else "[yellow]not done[/yellow]", fmt_duration(r.done.get(s)))
    console.print(stages)
    if r.summary:
        console.print(summary_table(r.summary))
    for kind, paths in artifacts(run).items():
        for p in paths:
            console.print(f"{kind}: {p}", highlight=False, soft_wrap=True)
