"""Build a generator from plain options (the evaluator, the pipeline, ``mentor eval``)."""

from __future__ import annotations

import os
from typing import Any

from mentor.generation.hf import HFGenerator
from mentor.generation.llama_cpp import LlamaCppGenerator
from mentor.generation.openai_compat import OpenAIConfig, OpenAIGenerator


def make_generator(
    model: str | None = None,
    base_url: str | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
    api_key: str | None = None,
    backend: str = "transformers",
) -> Any:
    """transformers (``HFGenerator``) by default, llama.cpp (``LlamaCppGenerator``, the model's
    weights exported to bf16 GGUF) with ``backend="llama_cpp"``, or an OpenAI-compatible server
    (vLLM, SGLang, ``transformers serve``) when ``base_url`` is given."""
    if base_url:
        cfg = OpenAIConfig(base_url=base_url, model=str(model or "default"), concurrency=batch_size)
        if api_key:
            os.environ.setdefault(cfg.api_key_env, api_key)
        gen = OpenAIGenerator(cfg)
        gen.name = str(model)
        gen.batch_size = batch_size
        return gen
    if backend == "llama_cpp":
        return LlamaCppGenerator.from_name(model, n_seq=batch_size)
    if backend != "transformers":
        raise ValueError(f"generation backend must be transformers or llama_cpp, got {backend!r}")
    return HFGenerator.from_name(model, batch_size=batch_size, dtype=dtype)
