"""Build a teacher backend from plain options: the one place ``mentor teach`` and ``mentor run``
turn a backend name and its settings into a ``Teacher``."""

from __future__ import annotations

from typing import Any

from mentor.rollout import Sampling

BACKENDS = ("program", "openai", "hf")


def make_teacher(
    backend: str = "program",
    *,
    model: str | None = None,
    base_url: str = "http://127.0.0.1:8000/v1",
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 600.0,
    retries: int = 4,
    backoff: float = 1.0,
    max_turns: int = 8,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_tokens: int = 4096,
    seed: int | None = None,
    extra_body: dict[str, Any] | None = None,
    system: str | None = None,
    batch_size: int = 8,
    dtype: str = "float32",
) -> Any:
    """``program`` (synthetic solution plans), ``openai`` (an OpenAI-compatible endpoint) or
    ``hf`` (a local transformers model)."""
    sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_tokens, seed=seed)
    if backend == "program":
        from mentor.teacher.program import ProgramTeacher

        return ProgramTeacher()
    if backend == "openai":
        from mentor.models import resolve_model
        from mentor.teacher.openai_backend import OpenAIConfig, OpenAITeacher

        cfg = OpenAIConfig(
            base_url=base_url, model=resolve_model(model), api_key_env=api_key_env, concurrency=concurrency,
            timeout=timeout, retries=retries, backoff=backoff, max_turns=max_turns, sampling=sampling,
            extra_body=extra_body,
        )
        return OpenAITeacher(cfg, system=system)
    if backend == "hf":
        from mentor.teacher.hf_backend import HFTeacher

        return HFTeacher(model, sampling=sampling, max_turns=max_turns, batch_size=batch_size, dtype=dtype, system=system)
    raise ValueError(f"unknown teacher backend {backend!r}; choose one of {', '.join(BACKENDS)}")
