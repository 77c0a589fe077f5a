"""Teacher throughput: references per second against a local OpenAI-compatible server
(`transformers serve` running the bundled model on CPU) at several concurrency levels.

    .venv/bin/python benchmarks/bench_teacher.py --n 8 --concurrency 1 8 --json benchmarks/results/bench_teacher.json

Prints a table and writes JSON (config, versions, timings). The same questions are asked at each
concurrency level (fresh output files), greedy, with a small token budget so the run is bounded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="Hub id, local dir or smollm2-135m")
    ap.add_argument("--base-url", default=None, help="use this running server instead of starting transformers serve")
    ap.add_argument("--n", type=int, default=8, help="questions per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--max-turns", type=int, default=2)
    ap.add_argument("--split", default="train")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from mentor.data import load_questions
    from mentor.io import run_metadata, write_json
    from mentor.models import resolve_model
    from mentor.generation import Sampling
    from mentor.teacher import generate_references
    from mentor.generation.server import transformers_serve
    from mentor.teacher.openai_backend import OpenAIConfig, OpenAITeacher

    questions = load_questions("synthetic", split=args.split, n=args.n, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = transformers_serve(args.model, log=Path(tmp) / "serve.log") if not args.base_url else None
        base_url = ctx.__enter__() if ctx else args.base_url
        try:
            # warm-up: the server loads the model lazily on its first request
            warm = OpenAITeacher(OpenAIConfig(base_url=base_url, model=resolve_model(args.model), max_turns=1,
                                              sampling=Sampling(max_new_tokens=1)))
            generate_references(questions[:1], warm, Path(tmp) / "warm.jsonl", keep_all=True, progress=False)
            for k in args.concurrency:
                cfg = OpenAIConfig(base_url=base_url, model=resolve_model(args.model), concurrency=k,
                                   max_turns=args.max_turns, retries=1, timeout=600,
                                   sampling=Sampling(temperature=0.0, max_new_tokens=args.max_tokens, seed=0))
                t0 = time.perf_counter()
                s = generate_references(questions, OpenAITeacher(cfg), Path(tmp) / f"c{k}.jsonl", keep_all=True,
                                        progress=False)
                dt = time.perf_counter() - t0
                rows.append({"concurrency": k, "references": s.done, "failed": s.failed, "seconds": round(dt, 2),
                             "references_per_second": round(s.done / dt, 4)})
        finally:
            if ctx:
                ctx.__exit__(*sys.exc_info())
    base = rows[0]["references_per_second"] or 1e-9
    table = Table(title=f"teacher throughput: transformers serve, {args.model}, n={args.n}, max_tokens={args.max_tokens}")
    for col in ("concurrency", "references", "failed", "seconds", "refs/s", "speed-up"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["concurrency"]), str(r["references"]), str(r["failed"]), f"{r['seconds']:.1f}",
                      f"{r['references_per_second']:.3f}", f"{r['references_per_second'] / base:.2f}x")
    Console().print(table)
    result = run_metadata(vars(args), 0, rows=rows, cpu_count=os.cpu_count(), load_average=os.getloadavg())
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
