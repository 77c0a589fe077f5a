"""MENTOR's teacher-guided reward (Eq. 4-7), its ablation variants, presets and adapters.

Components (each in [0, 1]):

- ``correctness`` R_c: the student's final answer equals the teacher's final answer.
- ``alignment`` R_a: the *set* of tool names the student called equals the teacher's set.
- ``alignment_f1`` R_a^F1: F1 between the student's and the teacher's tool-name sets.
- ``validity`` R_v: every tool call is valid (well formed and executed without error); a
  trajectory with no call has nothing invalid, so it scores 1 (Eq. 7 read literally).
- ``format``: the trajectory contains at least one tool call and every call is well formed
  (valid JSON with a name and object arguments), whether or not it executes.

R = sum of weight * component over the preset's components. The paper gives no weights;
the default is 1 for every component, configurable.

Adapters: one TRL reward function per component (so TRL's ``reward_weights`` and
per-component logging work), and verl's ``compute_score``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mentor.tasks import get_task
from mentor.trajectory import Trajectory

COMPONENTS: tuple[str, ...] = ("correctness", "alignment", "alignment_f1", "validity", "format")

#: The one definition of the reward presets (SPEC.md, Table 3 and the baselines).
PRESETS: dict[str, tuple[str, ...]] = {
    "sparse": ("correctness",),
    "format": ("correctness", "format"),
    "validation": ("correctness", "validity"),
    "f1": ("correctness", "alignment_f1", "validity"),
    "mentor": ("correctness", "alignment", "validity"),
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "sparse": "R_c only (the Sparse baseline)",
    "format": "R_c + tool-format reward (ablation 2)",
    "validation": "R_c + R_v (ablation 3)",
    "f1": "R_c + R_a^F1 + R_v (ablation 4)",
    "mentor": "R_c + R_a (strict) + R_v (MENTOR)",
}

DEFAULT_WEIGHT = 1.0


def resolve_preset(preset: str) -> tuple[str, ...]:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown reward preset {preset!r}; choose one of: {', '.join(PRESETS)}") from None


def resolve_weights(preset: str, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Weights for the preset's components (default 1.0); unknown keys are an error."""
    comps = resolve_preset(preset)
    weights = dict(weights or {})
    unknown = [k for k in weights if k not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; known: {', '.join(COMPONENTS)}")
    return {c: float(weights.get(c, DEFAULT_WEIGHT)) for c in comps}


# ----------------------------------------------------------------- components


def correctness(student: Trajectory, teacher_answer: str | None, kind: str = "math") -> float:
    pred = student.final_answer
    if pred is None or teacher_answer is None:
        return 0.0
    return float(get_task(kind).score(pred, teacher_answer))


def alignment(student_tools: Iterable[str], teacher_tools: Iterable[str]) -> float:
    return float(set(student_tools) == set(teacher_tools))


def alignment_f1(student_tools: Iterable[str], teacher_tools: Iterable[str]) -> float:
    s, t = set(student_tools), set(teacher_tools)
    if not s and not t:
        return 1.0
    common = len(s & t)
    if common == 0:
        return 0.0
    precision, recall = common / len(s), common / len(t)
    return 2 * precision * recall / (precision + recall)


def validity(student: Trajectory) -> float:
    return float(student.all_calls_valid)


def tool_format(student: Trajectory) -> float:
    calls = student.tool_calls
    return float(bool(calls) and all(c.well_formed for c in calls))


def component(name: str, student: Trajectory, teacher_answer: Any, teacher_tools: Iterable[str], kind: str) -> float:
    if name == "correctness":
        return correctness(student, teacher_answer, kind)
    if name == "alignment":
        return alignment(student.tool_names, teacher_tools)
    if name == "alignment_f1":
        return alignment_f1(student.tool_names, teacher_tools)
    if name == "validity":
        return validity(student)
    if name == "format":
        return tool_format(student)
    raise ValueError(f"unknown reward component {name!r}")


@dataclass(frozen=True)
class RewardBreakdown:
    """All components of one rollout's reward; ``total`` sums the preset's, weighted."""

    preset: str
    correctness: float
    alignment_strict: float
    alignment_f1: float
    validity: float
    format: float
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def alignment(self) -> float:
        """The alignment term the preset uses (F1 for ``f1``, strict set equality otherwise)."""
        return self.alignment_f1 if self.preset == "f1" else self.alignment_strict

    @property
    def components(self) -> dict[str, float]:
        values = {
            "correctness": self.correctness,
            "alignment": self.alignment_strict,
            "alignment_f1": self.alignment_f1,
            "validity": self.validity,
            "format": self.format,
        }
        return {c: values[c] for c in self.weights}

    @property
    def total(self) -> float:
        return sum(self.weights[c] * v for c, v in self.components.items())


def score(
    student: Trajectory | Any,
    teacher: Trajectory | Any,
    preset: str = "mentor",
    weights: Mapping[str, float] | None = None,
    kind: str = "math",
) -> RewardBreakdown:
    """Score a student trajectory against the teacher's reference trajectory."""
    w = resolve_weights(preset, weights)
    s, t = Trajectory.from_any(student), Trajectory.from_any(teacher)
    return RewardBreakdown(
        preset=preset,
        correctness=correctness(s, t.final_answer, kind),
        alignment_strict=alignment(s.tool_names, t.tool_names),
        alignment_f1=alignment_f1(s.tool_names, t.tool_names),
        validity=validity(s),
        format=tool_format(s),
        weights=w,
    )


# ------------------------------------------------------------------ TRL adapter

#: Dataset columns the TRL reward functions read.
TEACHER_ANSWER_COLUMN = "teacher_answer"
TEACHER_TOOLS_COLUMN = "teacher_tools"


def _column(kwargs: Mapping[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise KeyError(
            f"the training dataset has no {name!r} column; MENTOR rewards need the teacher's "
            f"reference ({TEACHER_ANSWER_COLUMN!r}, {TEACHER_TOOLS_COLUMN!r}); build it with `mentor teach`"
        )
    return list(values) if len(values) == n else [values[0]] * n


class TRLReward:
    """A TRL reward function ``(prompts, completions, **columns) -> list[float]`` for one
    component; a class (picklable, named by ``__name__`` in TRL's logs), not a closure."""

    def __init__(self, name: str, kind: str = "math"):
        if name not in COMPONENTS:
            raise ValueError(f"unknown reward component {name!r}; known: {', '.join(COMPONENTS)}")
        self.name, self.kind = name, kind
        self.__name__ = self.__qualname__ = name

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list[float]:
        n = len(completions)
        answers = _column(kwargs, TEACHER_ANSWER_COLUMN, n) if self.name == "correctness" else [None] * n
        tools = _column(kwargs, TEACHER_TOOLS_COLUMN, n) if self.name in ("alignment", "alignment_f1") else [()] * n
        return [
            component(self.name, Trajectory.from_any(c), a, t or (), self.kind)
            for c, a, t in zip(completions, answers, tools, strict=True)
        ]


def make_trl_reward_func(name: str, kind: str = "math") -> TRLReward:
    """The TRL reward function of one component (see ``TRLReward``)."""
    return TRLReward(name, kind)


def trl_reward_funcs(
    preset: str = "mentor", weights: Mapping[str, float] | None = None, kind: str = "math"
) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """Reward functions and matching ``GRPOConfig.reward_weights`` for a preset."""
    w = resolve_weights(preset, weights)
    return [make_trl_reward_func(c, kind) for c in w], list(w.values())


# ----------------------------------------------------------------- verl adapter


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str,
    extra_info: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """verl custom reward: ``custom_reward_function.path=mentor/rewards.py``,
    ``custom_reward_function.name=compute_score``.

    ``ground_truth`` is the teacher's answer; ``extra_info`` carries ``teacher_tools`` (list of
    names), optionally ``preset`` (default ``mentor``), ``weights`` and ``kind`` (``math``/``qa``).
    Returns verl's dict form: ``score`` plus each component.
    """
    extra = dict(extra_info or {})
    preset = extra.get("preset", "mentor")
    w = resolve_weights(preset, extra.get("weights"))
    kind = extra.get("kind") or ("qa" if data_source and "qa" in str(data_source).lower() else "math")
    s = Trajectory.from_text(solution_str)
    teacher_tools = extra.get(TEACHER_TOOLS_COLUMN) or []
    comps = {c: component(c, s, ground_truth, teacher_tools, kind) for c in w}
    return {"score": sum(w[c] * v for c, v in comps.items()), **comps}
