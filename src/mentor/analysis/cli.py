"""``mentor report``: a thin layer over ``mentor.analysis.report.build_report``."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    runs: list[Path] = typer.Argument(..., help="Run directories (eval result JSONs, metrics.jsonl, run.json) or eval result files."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Output directory for report.md, report.html and the PNGs."),
    references: Path = typer.Option(None, help="References file: the teacher's training tool distribution (with --alignment-source references)."),
    teacher: list[Path] = typer.Option(None, help="Teacher eval result JSON(s): Table 2's teacher row, Fig. 1's LLM side and, by "
                                       "default, the alignment score's teacher distribution (a run directory named 'teacher' works too)."),
    alignment_source: str = typer.Option("benchmark", "--alignment-source", help="The alignment score's teacher distribution: "
                                         "benchmark (the teacher's tool calls on the in-domain benchmarks, the paper's) or "
                                         "references (its training references, --references)."),
    title: str = typer.Option("MENTOR report"),
    open_: bool = typer.Option(
        False, "--open", help="Print the paths (file:// URLs) of report.html and the plots; for a `mentor run` "
        "directory that already has its report, only that (nothing is rebuilt)."
    ),
) -> None:
    """Build the paper's tables and figures (Fig. 1, 3-7) from evaluation results and training logs."""
    from rich.console import Console

    from mentor.analysis.report import ALIGNMENT_SOURCES, build_report
    from mentor.io import DataError

    console = Console(stderr=True)
    if alignment_source not in ALIGNMENT_SOURCES:
        raise typer.BadParameter(f"choose one of {', '.join(ALIGNMENT_SOURCES)}", param_hint="--alignment-source")
    if alignment_source == "references" and references is None:
        raise typer.BadParameter("'references' needs the references file (--references)", param_hint="--alignment-source")
    if open_ and len(runs) == 1 and (runs[0] / "report.html").exists():
        _print_paths(runs[0])
        return
    try:
        res = build_report(out, references=references, teacher=teacher or None, runs=runs, title=title,
                           alignment_source=alignment_source)
    except DataError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    for n in res["notes"]:
        console.print(f"[yellow]note:[/yellow] {n}")
    console.print(f"wrote {res['markdown']}, {res['html']} and {len(res['figures'])} figures in {out}")
    if open_:
        _print_paths(out)


def _print_paths(directory: Path) -> None:
    """report.html and the plots as file:// URLs on stdout, one per line (a terminal makes them
    clickable; a script can read them)."""
    from mentor.runs import artifacts

    found = artifacts(directory)
    for path in [p for p in found["report"] if p.suffix == ".html"] + found["plots"]:
        print(path.resolve().as_uri())
