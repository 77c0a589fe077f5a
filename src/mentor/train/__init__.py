"""Training stages on TRL: MENTOR GRPO and the RL baselines, SFT (LoRA), SFT then RL.

Python API (each returns the final model directory, a Hugging Face model accepted by every
``--model`` option)::

    from mentor.train import train_grpo, train_sft, train_sft_rl
    train_grpo("refs.jsonl", "runs/x", preset="mentor", max_steps=5,
               config={"grpo": {"num_generations": 4, "max_completion_length": 64}})

Heavy libraries are imported lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "TrainError", "train_grpo", "train_sft", "train_sft_rl"]


def __getattr__(name: str) -> Any:
    if name in ("train_grpo", "TrainError"):
        from mentor.train import grpo

        return getattr(grpo, name)
    if name in ("train_sft", "train_sft_rl"):
        from mentor.train import sft

        return getattr(sft, name)
    if name == "ConfigError":
        from mentor.train.config import ConfigError

        return ConfigError
    raise AttributeError(name)
