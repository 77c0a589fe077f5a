"""Build a generator from plain options (the evaluator, the pipeline, ``mentor eval``)."""

from __future__ import annotations

import os
from typing import Any

from mentor.generation.hf import HFGenerator
from mentor.generation.openai_compat import OpenAIConfig, OpenAIGenerator


def make_generator(
    model: str | None = None,
    base_url: str | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    api_key: str | None = None,
) -> Any:
    """transformers (``HFGenerator``) by default, or an OpenAI-compatible server (vLLM, SGLang,
    ``transformers serve``) when ``base_url`` is given."""
    if base_url:
        cfg = OpenAIConfig(base_url=base_url, model=str(model or "default"), concurrency=batch_size)
        if api_key:
            os.environ.setdefault(cfg.api_key_env, api_key)
        gen = OpenAIGenerator(cfg)
        gen.name = str(model)
        gen.batch_size = batch_size
        return gen
    return HFGenerator.from_name(model, batch_size=batch_size, dtype=dtype)
