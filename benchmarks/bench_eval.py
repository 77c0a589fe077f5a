"""Evaluation throughput: mentor's evaluator (rollout runner + scoring) vs plain batched
``model.generate`` on the same prompts.

Both sides generate greedily from the same rendered prompts (the math prompt with the 12 tools
in the chat template) with the same batch size and ``max_new_tokens``; the evaluator runs one
turn (``max_turns=1``) so it does the same generation work, plus parsing, tool execution and
scoring. Prints a table and writes JSON. Target: the evaluator reaches >= 80% of plain
``generate``'s items/s.

``--llama-cpp bf16 [f32 ...]`` adds the evaluator with llama.cpp generators (``eval.backend:
llama_cpp``; the same model's weights exported to GGUF in that type) to the same interleaved
repeats, so its speed-up over the transformers evaluator is a ratio from one run (issue #11), and
reports each backend's accuracy on the same items.

    python benchmarks/bench_eval.py --n 16 --batch-size 8 --max-new-tokens 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def plain_generate(model, tok, texts, batch_size, max_new_tokens):
    import torch

    tokens = 0
    t0 = time.perf_counter()
    for s in range(0, len(texts), batch_size):
        enc = tok(texts[s : s + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        new = out[:, enc["input_ids"].shape[1] :]
        for row in new.tolist():
            n = len(row)
            if tok.eos_token_id in row:
                n = row.index(tok.eos_token_id) + 1
            else:
                while n and row[n - 1] == tok.pad_token_id:
                    n -= 1
            tokens += n
    return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--benchmark", default="synthetic:test")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-turns", type=int, default=1, help="evaluator turns (1: the same work as plain generate)")
    ap.add_argument("--llama-cpp", nargs="*", default=[], metavar="WEIGHT_TYPE",
                    help="also time the evaluator with llama.cpp generators of these weight types (bf16, f32, ...)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_eval.json"))
    args = ap.parse_args()

    import torch

    from mentor.eval import evaluate, load_benchmark
    from mentor.io import machine, versions, write_json
    from mentor.precision import detect
    from mentor.models import load
    from mentor.prompts import build_messages
    from mentor.generation import HFGenerator
    from mentor.tools import schemas

    model, tok = load(args.model)
    gen = HFGenerator(model, tok, batch_size=args.batch_size)
    bench = load_benchmark(args.benchmark, limit=args.n)
    texts = [gen.render(build_messages(it.question), schemas("math")) for it in bench.items]
    # the runner sorts prompts by length before batching; give plain generate the same order
    texts.sort(key=len)
    plain_generate(model, tok, texts[: args.batch_size], args.batch_size, 4)  # warm-up

    from mentor.generation.llama_cpp import LlamaCppEngine, LlamaCppGenerator
    from mentor.models import bundled_gguf

    llamas = {}
    for wt in args.llama_cpp:
        engine = LlamaCppEngine(template=bundled_gguf(), weight_type=wt, n_ctx=4096)
        engine.sync(model)
        llamas[wt] = LlamaCppGenerator(tok, engine)

    def run_eval(generator):
        res = evaluate(args.model, bench, generator=generator, max_turns=args.max_turns,
                       max_new_tokens=args.max_new_tokens, progress=False)
        t = res["timings"]
        # end to end: generation + tool execution + parsing + scoring
        return (t["generate_seconds"] + t["score_seconds"], t["generated_tokens"]), res["accuracy"]

    plain, runner = [], []
    llama_runs: dict[str, list] = {wt: [] for wt in llamas}
    accuracy: dict[str, float] = {}
    for _ in range(args.repeats):
        secs, toks = plain_generate(model, tok, texts, args.batch_size, args.max_new_tokens)
        plain.append((secs, toks))
        run, accuracy["transformers"] = run_eval(gen)
        runner.append(run)
        for wt, lgen in llamas.items():
            run, accuracy[f"llama_cpp {wt}"] = run_eval(lgen)
            llama_runs[wt].append(run)

    def row(name, runs):
        secs = statistics.median(s for s, _ in runs)
        toks = statistics.median(k for _, k in runs)
        return {"name": name, "seconds": secs, "items_per_second": len(texts) / secs, "tokens_per_second": toks / secs, "generated_tokens": toks}

    rows = [row("plain model.generate", plain), row(f"mentor evaluate (max_turns={args.max_turns})", runner)]
    rows += [row(f"evaluate, llama.cpp {wt}", runs) for wt, runs in llama_runs.items()]
    ratio = rows[1]["items_per_second"] / rows[0]["items_per_second"]
    speedups = {wt: rows[2 + i]["items_per_second"] / rows[1]["items_per_second"] for i, wt in enumerate(llama_runs)}
    print(f"{'':32s} {'seconds':>9s} {'items/s':>9s} {'tokens/s':>9s} {'tokens':>7s}")
    for r in rows:
        print(f"{r['name']:32s} {r['seconds']:9.2f} {r['items_per_second']:9.3f} {r['tokens_per_second']:9.1f} {r['generated_tokens']:7.0f}")
    print(f"evaluator / plain items/s: {100 * ratio:.1f}% (target >= 80%)")
    for wt, x in speedups.items():
        print(f"llama.cpp {wt} / transformers evaluator items/s: {x:.2f}x (same run, interleaved)")
    print("accuracy on the same items: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    write_json(args.out, {"args": vars(args), "rows": rows, "ratio_items_per_second": ratio,
                          "llama_cpp_speedup": speedups, "accuracy": accuracy,
                          "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "versions": versions(),
                          "machine": {**machine(), "hardware": detect().describe()}})
    print(f"wrote {args.out}")
    print(json.dumps({"ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
