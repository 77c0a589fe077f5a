"""MENTOR vs Sparse GRPO side by side, from the same SFT warm start and seeds, on the
synthetic arithmetic family; prints the step-time overhead of the MENTOR reward and tool
execution relative to TRL's GRPO step.

    .venv/bin/python benchmarks/bench_train.py [--questions 8] [--sft-steps 2] [--steps 2] \
        [--generations 2] [--max-new-tokens 48] [--out runs/bench_train]

Pipeline: ``mentor.data.synthetic_questions("train")`` -> the program teacher
(``mentor.teacher``: its solution plans executed with the tools) -> references -> LoRA SFT
(merged) -> ``train_grpo(preset="mentor")`` and ``train_grpo(preset="sparse")`` from that model.

Per step, the trainer records (metrics.jsonl) TRL's own ``step_time`` (generation with the
multi-turn tool loop, reference/policy forward passes, backward, optimizer) and mentor's
accounting of the time spent inside the reward functions (``reward_seconds``: every component
plus the tool statistics) and inside tool calls (``tool_seconds``). The overhead is
``(reward_seconds + tool_seconds) / step_time``. Writes benchmarks/results/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--sft-steps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_train"))
    a = ap.parse_args()

    from mentor.data import synthetic_questions
    from mentor.data.synthetic import IN_DOMAIN_TOOLS
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references
    from mentor.train import train_grpo, train_sft

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    refs = out / "references.jsonl"
    if not refs.exists():
        generate_references(synthetic_questions("train", a.questions, a.seed), make_teacher("program"), refs,
                            progress=False, seed=a.seed)
    # The student is offered the in-domain calculator tools (the only ones the train split's
    # plans use): a shorter system prompt than all 12 keeps CPU steps affordable.
    config = {
        "tools": list(IN_DOMAIN_TOOLS),
        "seed": a.seed,
        "sft": {"learning_rate": 3e-3, "per_device_train_batch_size": 2, "save_steps": 1000},
        "grpo": {"num_generations": a.generations, "per_device_train_batch_size": a.generations,
                 "max_completion_length": a.max_new_tokens, "learning_rate": 1e-4, "save_steps": 1000,
                 "max_tool_calling_iterations": 2},
    }
    t0 = time.perf_counter()
    sft_final = train_sft(refs, out / "sft", model=a.model, config=config, max_steps=a.sft_steps)
    sft_seconds = time.perf_counter() - t0
    rows = {}
    for preset in ("mentor", "sparse"):
        run = out / preset
        t0 = time.perf_counter()
        train_grpo(refs, run, preset=preset, model=str(sft_final), config=config, max_steps=a.steps)
        wall = time.perf_counter() - t0
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        step = [r["step_time"] for r in recs]
        rew = [r.get("reward_seconds", 0.0) for r in recs]
        tool = [r.get("tool_seconds", 0.0) for r in recs]
        rows[preset] = {
            "steps": len(recs),
            "wall_seconds": wall,
            "step_time_mean": statistics.mean(step),
            "reward_seconds_mean": statistics.mean(rew),
            "tool_seconds_mean": statistics.mean(tool),
            "overhead_fraction": statistics.mean((r + t) / s for r, t, s in zip(rew, tool, step, strict=True)),
            "tool_usage_rate": statistics.mean(r["tool_usage_rate"] for r in recs),
            "invalid_call_rate": statistics.mean(r["invalid_call_rate"] for r in recs),
            "reward_mean": statistics.mean(r["reward"] for r in recs),
            "components": {k.split("/", 1)[1]: statistics.mean(r[k] for r in recs) for k in recs[0] if k.startswith("reward/")},
        }
    from mentor.io import versions

    result = {"args": vars(a), "sft_seconds": sft_seconds, "runs": rows, "versions": versions(),
              "cpu_count": os.cpu_count(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    dest = REPO / "benchmarks" / "results" / "bench_train.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"GRPO from the same SFT warm start ({a.steps} steps, {a.generations} rollouts, seed {a.seed})")
    for col in ("preset", "step time (s)", "reward (s)", "tools (s)", "overhead", "tool usage", "invalid calls", "reward"):
        t.add_column(col)
    for preset, r in rows.items():
        t.add_row(preset, f"{r['step_time_mean']:.2f}", f"{r['reward_seconds_mean']:.4f}", f"{r['tool_seconds_mean']:.4f}",
                  f"{100 * r['overhead_fraction']:.3f}%", f"{r['tool_usage_rate']:.2f}", f"{r['invalid_call_rate']:.2f}",
                  f"{r['reward_mean']:.2f}")
    Console().print(t)
    print(f"MENTOR reward + tool execution overhead per GRPO step: {100 * rows['mentor']['overhead_fraction']:.3f}% "
          f"(target < 5%); wrote {dest}")


if __name__ == "__main__":
    main()
