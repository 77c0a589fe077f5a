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
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Evaluate a model on benchmarks; write one result JSON per (model, benchmark)."""
    from rich.console import Console

    from mentor.eval.benchmarks import load_benchmark
    from mentor.eval.runner import evaluate, macro_summary
    from mentor.generation import make_generator
    from mentor.io import DataError
    from mentor.tasks import get_task

    console = Console(stderr=True, soft_wrap=True)
    try:
        benches = [load_benchmark(b, limit=limit) for b in benchmark]  # bad files fail before the model loads
        get_task("math").with_scorer(math_scorer)  # so does an unknown scorer
        generator = make_generator(model, base_url=base_url, batch_size=batch_size, dtype=dtype, backend=backend)
        results = []
        for b, bench in zip(benchmark, benches, strict=True):
            res = evaluate(
                model, bench, generator=generator, limit=limit, tools=not no_tools, max_turns=max_turns,
                max_new_tokens=max_new_tokens, temperature=0.0 if greedy else temperature, top_p=top_p, seed=seed,
                batch_size=batch_size, scorers={"math": math_scorer},
                retriever_url=retriever_url, tool_server=tool_server, top_k=top_k, base_url=base_url, progress=not quiet,
                out=out if len(benchmark) == 1 else out / result_filename_for(b, no_tools),
            )
            results.append(res)
            t = res["timings"]
            console.print(
                f"[bold]{res['benchmark']}[/bold] ({res['kind']}, tools={'off' if no_tools else 'on'}): accuracy "
                f"{res['accuracy']:.4f} on {res['n']} items; {t['items_per_second']:.3f} items/s, "
                f"{t['tokens_per_second']:.1f} tok/s"
            )
        if len(results) > 1:
            for kind, s in macro_summary(results).items():
                console.print(f"{kind}: macro average {s['macro_average']:.4f} over {len(s['benchmarks'])} benchmarks")
        console.print(f"wrote {out}")
    except (DataError, ValueError, RuntimeError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


def result_filename_for(benchmark: str, no_tools: bool) -> str:
    from mentor.eval.runner import result_name

    name = Path(benchmark).stem if Path(benchmark).suffix in (".jsonl", ".json") else benchmark
    return result_name(name, not no_tools)
