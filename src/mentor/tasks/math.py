"""Math: the 12 math tools, ``math_equal`` (math-verify) on the final ``\\boxed{}`` answer, or
the paper's normalised exact match (``scorer: exact``).

Named sets: the paper's (``aime24``, ``aime25``, ``amc23``, ``minervamath``, ``omni-math-512``,
``math-forge-hard``, plus ``math500``/``olympiadbench``) from the shared local copy or the Hub,
and the bundled synthetic task (``synthetic:test`` in-domain, ``synthetic:ood`` out-of-domain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mentor.answers import math_equal, math_exact_match
from mentor.data.datasets import load_questions
from mentor.tasks.base import Benchmark, Task, local_or_hub, register


def hub_math(repo: str, split: str = "test") -> Callable[[int | None], Benchmark]:
    """A math set on the Hub, read with ``mentor.data.load_questions`` (field names detected)."""

    def load(limit: int | None = None) -> Benchmark:
        qs = load_questions(repo, split=split, n=limit, task="math")
        return Benchmark(repo.split("/")[-1].lower(), "math", MATH.items(qs), source=f"hf://{repo}:{split}")

    return load


# name -> (shared relative file or None, Hub loader or None)
MATH_SETS: dict[str, tuple[str | None, Callable[[int | None], Benchmark] | None]] = {
    "aime24": ("math/aime24.jsonl", hub_math("math-ai/aime24")),
    "aime25": (None, hub_math("math-ai/aime25")),
    "amc23": ("math/amc2023.jsonl", hub_math("math-ai/amc23")),
    "minervamath": ("math/minervamath.jsonl", hub_math("math-ai/minervamath")),
    "omni-math-512": (None, hub_math("Heng1999/Omni-MATH-512")),
    "math-forge-hard": (None, hub_math("prithivMLmods/Math-Forge-Hard", split="train")),
    "math500": ("math/math500.jsonl", None),
    "olympiadbench": ("math/olympiadbench.jsonl", None),
}


def load_synthetic(split: str, n: int | None = None, seed: int = 0) -> Benchmark:
    """The bundled synthetic task: ``test`` (in-domain), ``ood`` (held-out tools/compositions),
    ``tune`` (in-domain, for choosing settings without looking at ``test``) or ``probe``
    (in-domain, scored during training: ``mentor.train.probe``)."""
    qs = load_questions("synthetic", split=split, n=n, seed=seed)
    domain = "out-of-domain" if split == "ood" else "in-domain"
    return Benchmark(f"synthetic:{split}", "math", MATH.items(qs), source=f"synthetic:{split}:seed={seed}", domain=domain)


class MathTask(Task):
    name = "math"
    label = "Math"
    toolset = "math"
    question_field = "problem"
    aligns_tools = True
    aliases = {"amc2023": "amc23", "omni-math": "omni-math-512", "math-forge": "math-forge-hard"}

    def detect(self, record: Mapping[str, Any]) -> bool:
        return "problem" in record

    def names(self) -> list[str]:
        return [*MATH_SETS, "synthetic:test", "synthetic:ood", "synthetic:tune", "synthetic:probe"]

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        if key.startswith("synthetic"):
            split = key.split(":", 1)[1] if ":" in key else "test"
            return load_synthetic(split, n=limit).limit(limit)
        if key in MATH_SETS:
            return local_or_hub(key, *MATH_SETS[key], limit)
        return None

    #: ``math_verify``: equivalence (``\\frac{1}{2}`` = ``0.5``), the default everywhere (teacher
    #: filter, correctness reward, evaluation); ``exact``: the paper's exact match after
    #: normalisation (``mentor.answers.math_exact_match``), used by the paper-scale configs
    scorers = {"math_verify": math_equal, "exact": math_exact_match}
    scorer_name = "math_verify"

    def group_label(self, result: Mapping[str, Any]) -> str:
        return f"{self.label} OOD" if result.get("domain") == "out-of-domain" else self.label


MATH = register(MathTask())
