"""Teacher backends by name, built from one typed config: the one place ``mentor teach`` and
``mentor run`` turn a backend name and its settings into a ``Teacher``.

A backend is a class with ``identity``/``check``/``run`` (``mentor.teacher.base.Teacher``) plus
a builder registered here: ``register_backend("name", lambda cfg, executor: MyTeacher(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mentor.config import ConfigKeyError, from_mapping
from mentor.generation.loop import Sampling
from mentor.generation.openai_compat import OpenAIConfig
from mentor.models import resolve_model
from mentor.teacher.base import Teacher
from mentor.teacher.hf_backend import HFTeacher
from mentor.teacher.openai_backend import OpenAITeacher
from mentor.teacher.program import ProgramTeacher
from mentor.tools.executor import LOCAL, Executor


@dataclass
class TeacherConfig:
    """Every teacher option (``mentor teach`` flags, the pipeline's ``teacher:`` section)."""

    backend: str = "program"
    model: str | None = None
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 600.0
    retries: int = 4
    backoff: float = 1.0
    max_turns: int = 8
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int | None = None
    extra_body: dict[str, Any] | None = None
    system: str | None = None
    batch_size: int = 8
    dtype: str = "float32"
    #: the hf backend's generation: transformers | llama_cpp (weights exported to a bf16 GGUF)
    generation_backend: str = "transformers"
    extra: dict[str, Any] = field(default_factory=dict)  # options of a registered third-party backend

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any] | None, where: str = "teacher", error: type[Exception] = ConfigKeyError,
        prefix: str = "", **defaults: Any,
    ) -> TeacherConfig:
        """From a mapping (``defaults`` under it). For a built-in backend an unknown key is a
        clear error naming ``where`` and the key; a registered backend gets its own keys in ``extra``."""
        options = {**defaults, **dict(mapping or {})}
        if options.get("backend", "program") not in BACKENDS:
            known = {f.name for f in fields(cls)}
            options["extra"] = {k: options.pop(k) for k in list(options) if k not in known}
        return from_mapping(cls, options, where, error, prefix)

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_tokens, seed=self.seed)


Builder = Callable[[TeacherConfig, Executor], Teacher]
_BACKENDS: dict[str, Builder] = {}


def register_backend(name: str, builder: Builder) -> None:
    """Make a teacher backend available by ``name`` to ``mentor teach`` and ``mentor run``."""
    _BACKENDS[name] = builder


def unregister_backend(name: str) -> None:
    _BACKENDS.pop(name, None)


def backends() -> list[str]:
    return list(_BACKENDS)


def _openai(c: TeacherConfig, executor: Executor) -> Teacher:
    cfg = OpenAIConfig(
        base_url=c.base_url, model=resolve_model(c.model), api_key_env=c.api_key_env, concurrency=c.concurrency,
        timeout=c.timeout, retries=c.retries, backoff=c.backoff, max_turns=c.max_turns, sampling=c.sampling,
        extra_body=c.extra_body,
    )
    return OpenAITeacher(cfg, system=c.system, executor=executor)


def _hf(c: TeacherConfig, executor: Executor) -> Teacher:
    return HFTeacher(c.model, sampling=c.sampling, max_turns=c.max_turns, batch_size=c.batch_size, dtype=c.dtype,
                     generation_backend=c.generation_backend,
                     system=c.system, executor=executor)


register_backend("program", lambda c, executor: ProgramTeacher(executor))
register_backend("openai", _openai)
register_backend("hf", _hf)
#: the built-in backends
BACKENDS = tuple(_BACKENDS)


def build_teacher(config: TeacherConfig, executor: Executor = LOCAL) -> Teacher:
    try:
        builder = _BACKENDS[config.backend]
    except KeyError:
        raise ValueError(f"unknown teacher backend {config.backend!r}; choose one of {', '.join(_BACKENDS)}") from None
    return builder(config, executor)


def make_teacher(backend: str = "program", *, executor: Executor = LOCAL, **options: Any) -> Teacher:
    """``program`` (synthetic solution plans), ``openai`` (an OpenAI-compatible endpoint), ``hf``
    (a local transformers model) or a registered backend; ``options`` are ``TeacherConfig`` fields."""
    return build_teacher(TeacherConfig.from_mapping(options, where=f"teacher backend {backend!r}", backend=backend), executor)
