"""``mentor eval``: a thin layer over ``mentor.eval.evaluate`` (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path

import typer


def eval_command(
    benchmark: list[str] = typer.Option(
        ..., "--benchmark", "-b",
        help="JSONL file (problem/answer = math; question/answer (+context) = QA) or a name: aime24, aime25, amc23, "
        "minervamath, omni-math-512, math-forge-hard, math500, olympiadbench, hotpotqa, 2wikimultihopqa, bamboogle "
        "(FlashRAG's, need --retriever-url), hotpotqa-distractor, "
        "synthetic:test, synthetic:ood, bfcl (= bfcl:v4, every BFCL v4 category that runs offline), "
        "bfcl:CATEGORY(,CATEGORY) or a BFCL group (bfcl:ast, bfcl:multi_turn, ...). Repeat for several.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Result JSON (a directory when several benchmarks are given)."),
    model: str = typer.Option("smollm2-135m", help="Hub id, local directory or smollm2-135m."),
    limit: int = typer.Option(None, help="Evaluate only the first N items (per category for BFCL)."),
    no_tools: bool = typer.Option(False, "--no-tools", help="Run without tools (the tool-effect baseline)."),
    retriever_url: str = typer.Option(None, help="URL of a `mentor serve retriever` server for QA sets without "
                                      "passages of their own (hotpotqa, 2wikimultihopqa, bamboogle); a file with "
                                      "contexts (hotpotqa-distractor) is searched with BM25 over them."),
    tool_server: str = typer.Option(None, help="URL of a `mentor serve tools` server (default: in-process tools)."),
    base_url: str = typer.Option(None, help="OpenAI-compatible server serving --model (vLLM, transformers serve)."),
    max_turns: int = typer.Option(4, help="Maximum assistant turns per item."),
    max_new_tokens: int = typer.Option(1024, help="Maximum new tokens per turn."),
    temperature: float = typer.Option(
        None, help="Sampling temperature; default: the model's recommended sampling (its generation_config.json; "
        "greedy when it recommends none). 0 = greedy."),
    top_p: float = typer.Option(None, help="Nucleus top-p (default: the model's recommended)."),
    greedy: bool = typer.Option(False, "--greedy", help="Greedy decoding (same as --temperature 0)."),
    math_scorer: str = typer.Option("math_verify", help="Math scoring: math_verify (equivalence) or exact "
                                    "(the paper's exact match after normalisation)."),
    top_k: int = typer.Option(5, help="Passages per search query (QA)."),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16"),
    backend: str = typer.Option("transformers", help="In-process generation: transformers | llama_cpp (the "
                                "model's weights exported to a bf16 GGUF and decoded by llama.cpp)."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="A live display (default on a terminal); --no-progress: one plain line per event."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Also show the libraries' output (always in OUT.log, or OUT/logs/eval.log for several benchmarks)."),
    quiet: bool = typer.Option(False, "--quiet", hidden=True, help="Same as --no-progress."),
) -> None:
    """Evaluate a model on benchmarks; write one result JSON per (model, benchmark).

    One display row with the items done and the accuracy so far; the libraries' output goes to
    OUT.log (OUT/logs/eval.log with several benchmarks)."""
    from rich.console import Console
    from rich.markup import escape as rich_escape

    from mentor.display import command_stage, describe_error, stage_log
    from mentor.eval.runner import macro_summary
    from mentor.io import DataError

    console = Console(stderr=True, soft_wrap=True)
    several = len(benchmark) > 1
    log = stage_log(out, "eval") if several else out.with_name(out.name + ".log")
    settings = dict(limit=limit, tools=not no_tools, max_turns=max_turns, max_new_tokens=max_new_tokens,
                    temperature=0.0 if greedy else temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                    scorers={"math": math_scorer}, retriever_url=retriever_url, tool_server=tool_server, top_k=top_k,
                    base_url=base_url)
    try:
        with command_stage("eval", log, progress=progress and not quiet, verbose=verbose, unit="items") as row:
            results = _evaluate_all(model, benchmark, out, row, dtype=dtype, backend=backend, **settings)
    except (DataError, ValueError, RuntimeError) as e:
        console.print(f"[red]error:[/red] {rich_escape(describe_error(e))}")
        raise typer.Exit(2) from None
    if several:
        for kind, s in macro_summary(results).items():
            console.print(f"{kind}: macro average {s['macro_average']:.4f} over {len(s['benchmarks'])} benchmarks")
    console.print(f"wrote {out} (log: {log})")


def _evaluate_all(model: str, names: list[str], out: Path, row, dtype: str, backend: str, **settings) -> list[dict]:
    """Every benchmark with one generator; ``row`` shows the items done and the accuracy so far,
    and one line per finished benchmark."""
    from mentor.display import LiveAccuracy
    from mentor.eval.benchmarks import load_benchmark
    from mentor.eval.runner import evaluate
    from mentor.generation import make_generator
    from mentor.tasks import get_task

    benches = [load_benchmark(b, limit=settings["limit"]) for b in names]  # bad files fail before the model loads
    get_task("math").with_scorer(settings["scorers"]["math"])  # so does an unknown scorer
    row.set_total(sum(len(b.items) for b in benches))
    generator = make_generator(model, base_url=settings["base_url"], batch_size=settings["batch_size"], dtype=dtype,
                               backend=backend)
    results = []
    for name, bench in zip(names, benches, strict=True):
        target = out if len(names) == 1 else out / result_filename_for(name, not settings["tools"])
        with LiveAccuracy(row, f"{bench.name} acc" if len(names) > 1 else "accuracy") as live:
            res = evaluate(model, bench, generator=generator, progress=False, on_record=live, out=target, **settings)
        results.append(res)
        t = res["timings"]
        row.event(f"{res['benchmark']} ({res['kind']}, tools={'on' if settings['tools'] else 'off'}): accuracy "
                  f"{res['accuracy']:.4f} on {res['n']} items; {t['items_per_second']:.3f} items/s, "
                  f"{t['tokens_per_second']:.1f} tok/s")
    return results


def result_filename_for(benchmark: str, no_tools: bool) -> str:
    from mentor.eval.runner import result_name

    name = Path(benchmark).stem if Path(benchmark).suffix in (".jsonl", ".json") else benchmark
    return result_name(name, not no_tools)
