"""Per-step records and tool metrics, hooked into TRL without forking its loop.

- ``with_tool_metrics`` wraps the first reward function: before delegating, it computes
  ``mentor.analysis.tool_stats`` over the rollouts the reward functions receive (completions
  with the tool turns TRL executed) and reports them through TRL's ``log_metric`` hook, so they
  are averaged and logged with TRL's own metrics (KL, clip ratio, step time, rewards).
- ``timed_reward`` / ``timed_tool`` wrap reward functions and tool callables to account the time they take
  (``timing/reward_seconds``, ``timing/tool_seconds``): the MENTOR overhead the benchmark reports.
- ``StepRecorder`` (a ``TrainerCallback``) writes one JSON line per logged step to
  ``metrics.jsonl`` with stable names for the Fig. 6/7 data, and forwards the same keys to
  TensorBoard (it runs before the TensorBoard callback).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from mentor.analysis import tool_stats
from mentor.io import append_jsonl, repair_jsonl, write_text_atomic
from mentor.tools.callables import Tool


class Clock:
    """Seconds spent in reward functions and tool calls since the last ``take()``."""

    def __init__(self) -> None:
        self.reward = 0.0
        self.tool = 0.0

    def take(self) -> tuple[float, float]:
        out = (self.reward, self.tool)
        self.reward = self.tool = 0.0
        return out


def timed_tool(func: Callable[..., Any], clock: Clock) -> Callable[..., Any]:
    """``func`` timed into ``clock.tool``; a ``Tool`` stays a ``Tool`` (its schema is what TRL renders)."""
    if isinstance(func, Tool):
        return func.around(lambda fn: timed_tool(fn, clock))

    @functools.wraps(func)
    def tool(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            clock.tool += time.perf_counter() - t0

    return tool


def timed_reward(func: Callable[..., list[float]], clock: Clock) -> Callable[..., list[float]]:
    @functools.wraps(func)
    def reward(*args: Any, **kwargs: Any) -> list[float]:
        t0 = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            clock.reward += time.perf_counter() - t0

    return reward


def with_tool_metrics(func: Callable[..., list[float]], clock: Clock | None = None) -> Callable[..., list[float]]:
    """Wrap one reward function so each batch also logs tool statistics of its rollouts."""

    @functools.wraps(func)
    def reward(*args: Any, completions: Sequence[Any] = (), log_metric: Callable | None = None, **kwargs: Any):
        if log_metric is not None and completions:
            t0 = time.perf_counter()
            st = tool_stats(completions)
            log_metric("tools/invalid_call_rate", st.invalid_call_rate)
            log_metric("tools/usage_rate", st.tool_usage_rate)
            log_metric("tools/calls_per_completion", st.calls_per_trajectory)
            if clock is not None:
                clock.reward += time.perf_counter() - t0
        return func(*args, completions=completions, log_metric=log_metric, **kwargs)

    return reward


#: Stable names in metrics.jsonl -> the TRL log key they come from.
RECORD_KEYS = {
    "reward": "reward",
    "reward_std": "reward_std",
    # the share of groups whose rollouts all got the same reward (zero advantage: no update from them)
    "frac_reward_zero_std": "frac_reward_zero_std",
    "kl": "kl",
    "clip_fraction": "clip_ratio/region_mean",
    "completion_length": "completions/mean_length",
    "invalid_call_rate": "tools/invalid_call_rate",
    "tool_usage_rate": "tools/usage_rate",
    "mean_tool_calls": "tools/calls_per_completion",
    "step_time": "step_time",
    "reward_seconds": "timing/reward_seconds",
    "tool_seconds": "timing/tool_seconds",
    "loss": "loss",
    "learning_rate": "learning_rate",
}


def truncate_steps(path: str | os.PathLike, step: int | None) -> list[dict[str, Any]]:
    """Keep the records of a per-step JSONL file whose ``step`` is <= ``step`` (all of them are
    dropped for None), rewritten atomically; return the kept records. A missing file stays missing."""
    path = Path(path)
    if not path.exists():
        return []
    repair_jsonl(path)
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and step is not None and json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(k + "\n" for k in keep))
    return [json.loads(k) for k in keep]


class StepRecorder(TrainerCallback):
    """Writes ``metrics.jsonl`` (one record per logged step) in the run directory."""

    def __init__(self, path: str | os.PathLike, components: Sequence[str], clock: Clock | None = None, meta: dict | None = None):
        self.path = Path(path)
        self.components = list(components)
        self.clock = clock
        self.meta = meta or {}
        self._last_step = 0

    def resume_at(self, step: int) -> None:
        """On resume from the checkpoint of ``step``: drop later records, time from that step."""
        self.truncate_after(step)
        self._last_step = step

    def truncate_after(self, step: int) -> None:
        """On resume: drop records of steps after the checkpoint (they will be re-run)."""
        truncate_steps(self.path, step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        if self.clock is not None and "reward" in logs:
            steps = max(1, state.global_step - self._last_step)
            reward_s, tool_s = self.clock.take()
            logs["timing/reward_seconds"] = reward_s / steps
            logs["timing/tool_seconds"] = tool_s / steps
            self._last_step = state.global_step
        record: dict[str, Any] = {"step": state.global_step, "epoch": logs.get("epoch", state.epoch)}
        for c in self.components:
            record[f"reward/{c}"] = logs.get(f"rewards/{c}/mean")
        for name, key in RECORD_KEYS.items():
            if key in logs:
                record[name] = logs[key]
        record["trl"] = {k: v for k, v in logs.items() if isinstance(v, int | float | str | None)}
        record["time"] = time.time()
        record.update(self.meta)
        if "reward" in logs or "loss" in logs:
            append_jsonl(self.path, record)


class RunMetadataSaver(TrainerCallback):
    """Copies the run metadata (config, seed, versions, references hash) into every checkpoint."""

    def __init__(self, metadata_file: str | os.PathLike):
        self.metadata_file = Path(metadata_file)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and self.metadata_file.exists():
            (ckpt / "mentor_run.json").write_text(self.metadata_file.read_text(encoding="utf-8"), encoding="utf-8")
