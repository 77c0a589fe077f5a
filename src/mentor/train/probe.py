"""A held-out probe set scored during GRPO (the ``probe`` key of a training config).

The training reward of a step is one noisy sample (a few questions' rollouts); a fixed set of
held-out questions decoded greedily every ``every`` steps shows whether the policy itself gets
better. Configured as::

    probe: {benchmark: synthetic:probe, every: 5, limit: 16, max_turns: 5, max_new_tokens: 64}

Each probe runs ``mentor.eval.evaluate`` -- the same prompts, tool loop and scoring as
``mentor eval`` -- on the policy's current weights: with ``generation_backend: llama_cpp``
through the rollout engine, synced to the step's weights (the next step's rollouts then reuse
that sync), otherwise through transformers on the model in memory. One JSON line per probe goes
to ``OUTPUT_DIR/probe.jsonl``: the step, accuracy, invalid-call rate, tool-usage rate, strict
alignment with the item's reference tools where the benchmark has them, and every item's
correctness (for paired comparisons). The probe at the start step (0, or the checkpoint a run
resumes from) scores the starting model; on resume, records after the checkpoint are dropped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mentor.io import append_jsonl, read_jsonl
from mentor.train.callbacks import truncate_steps

#: the probe options and their defaults (``benchmark`` is required)
PROBE_DEFAULTS: dict[str, Any] = {"benchmark": None, "every": 5, "limit": 16, "max_turns": 5, "max_new_tokens": 64}


def probe_options(value: Any, source: str) -> dict[str, Any]:
    """The probe options of a config value, with defaults; ``ValueError`` naming ``source`` and the key."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'probe' must be a mapping (benchmark, every, limit, max_turns, max_new_tokens), "
                         f"got {type(value).__name__}")
    unknown = [k for k in value if k not in PROBE_DEFAULTS]
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} in 'probe'; known: {', '.join(PROBE_DEFAULTS)}")
    opts = {**PROBE_DEFAULTS, **dict(value)}
    if not opts["benchmark"] or not isinstance(opts["benchmark"], str):
        raise ValueError(f"{source}: probe.benchmark must name a benchmark (e.g. synthetic:probe)")
    for key in ("every", "limit", "max_turns", "max_new_tokens"):
        if not isinstance(opts[key], int) or isinstance(opts[key], bool) or opts[key] < 1:
            raise ValueError(f"{source}: probe.{key} must be a positive integer, got {opts[key]!r}")
    return opts


def summarize(result: Mapping[str, Any], bench: Any) -> dict[str, Any]:
    """One probe record from an evaluation result: accuracy, tool statistics, strict alignment
    with each item's reference tool set (``meta["tools"]``, when every item has one) and the
    per-item correctness."""
    records = result["records"]
    stats = result.get("tool_stats") or {}
    out: dict[str, Any] = {
        "accuracy": float(result["accuracy"]),
        "invalid_call_rate": stats.get("invalid_call_rate"),
        "tool_usage_rate": stats.get("tool_usage_rate"),
        "calls_per_item": stats.get("calls_per_trajectory"),
    }
    refs = [item.meta.get("tools") for item in bench.items]
    aligned = None
    if refs and all(r is not None for r in refs):
        aligned = [int(set(r["tool_names"]) == set(t)) for r, t in zip(records, refs, strict=True)]
        out["alignment"] = sum(aligned) / len(aligned)
    # per item, in the benchmark's order: for paired comparisons between steps and runs
    out["ids"] = [r["id"] for r in records]
    out["correct"] = [int(bool(r["correct"])) for r in records]
    out["calls"] = [int(r["num_tool_calls"]) for r in records]
    out["invalid"] = [int(r["invalid_calls"]) for r in records]
    if aligned is not None:
        out["aligned"] = aligned
    return out


class ProbeCallback(TrainerCallback):
    """Scores the probe benchmark at the start and every ``every`` optimizer steps (see the module doc)."""

    def __init__(self, options: Mapping[str, Any], out: str | os.PathLike, tokenizer: Any, engine: Any = None,
                 executor: Any = None, seed: int = 0):
        from mentor.eval.benchmarks import load_benchmark

        self.opts = dict(options)
        self.path = Path(out) / "probe.jsonl"
        self.tokenizer, self.engine, self.executor, self.seed = tokenizer, engine, executor, seed
        self.bench = load_benchmark(self.opts["benchmark"], limit=self.opts["limit"])
        self._done: set[int] = set()

    def resume_at(self, step: int | None) -> None:
        """Keep the records of steps <= ``step`` (the checkpoint resumed from; None: a fresh run, keep none)."""
        self._done = {r["step"] for r in truncate_steps(self.path, step)}

    def _generator(self, model: Any) -> Any:
        if self.engine is not None:
            from mentor.generation.llama_cpp import LlamaCppGenerator

            return LlamaCppGenerator(self.tokenizer, self.engine)
        from mentor.generation.hf import HFGenerator

        return HFGenerator(model, self.tokenizer, batch_size=max(1, min(16, self.opts["limit"])))

    def probe(self, model: Any, step: int) -> dict[str, Any]:
        """Score the probe set on ``model``'s current weights and append the record for ``step``."""
        from mentor.eval.runner import evaluate
        from mentor.generation import Sampling

        t0 = time.perf_counter()
        if self.engine is not None and self.engine.synced_step != step:
            self.engine.sync(model, step)
        was_training = model.training
        # the transformers generator pads on the left: the trainer's tokenizer gets its own settings back
        padding = getattr(self.tokenizer, "padding_side", None), getattr(self.tokenizer, "pad_token", None)
        model.eval()
        try:
            result = evaluate(generator=self._generator(model), benchmark=self.bench, executor=self.executor,
                              max_turns=self.opts["max_turns"], progress=False, label="probe",
                              sampling=Sampling(temperature=0.0, max_new_tokens=self.opts["max_new_tokens"], seed=self.seed))
        finally:
            model.train(was_training)
            if self.engine is None:
                self.tokenizer.padding_side, self.tokenizer.pad_token = padding
        record = {"step": step, "benchmark": self.opts["benchmark"], "n": len(result["records"]),
                  **summarize(result, self.bench), "seconds": round(time.perf_counter() - t0, 2), "time": time.time()}
        append_jsonl(self.path, record)
        self._done.add(step)
        return record

    def _maybe(self, state: Any, model: Any) -> None:
        step = int(state.global_step)
        if model is None or not state.is_world_process_zero or step in self._done:
            return
        if step % self.opts["every"] == 0 or step == state.max_steps:
            self.probe(model, step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._maybe(state, _unwrapped(model))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._maybe(state, _unwrapped(model))


def _unwrapped(model: Any) -> Any:
    return getattr(model, "module", model)


def read_probe(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``probe.jsonl`` (a run directory's), in step order; [] when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "probe.jsonl"
    if not p.exists():
        return []
    return sorted((row for _, row in read_jsonl(p)), key=lambda r: r["step"])
