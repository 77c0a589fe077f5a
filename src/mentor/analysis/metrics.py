"""Tool-use metrics: the alignment score (A.4) and per-trajectory tool statistics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mentor.tools.registry import MATH_TOOL_NAMES
from mentor.trajectory import Trajectory


def _vector(counts: Mapping[str, float] | Iterable[str], tools: Sequence[str]) -> np.ndarray:
    if not isinstance(counts, Mapping):
        counts = Counter(counts)
    vec = np.array([float(counts.get(t, 0.0)) for t in tools])
    if (vec < 0).any():
        raise ValueError("tool counts must be non-negative")
    return vec


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance with base-2 logs (in [0, 1]) between two count vectors (SciPy)."""
    from scipy.spatial.distance import jensenshannon

    return float(min(1.0, max(0.0, jensenshannon(p, q, base=2))))


def alignment_score(
    p: Mapping[str, float] | Iterable[str],
    q: Mapping[str, float] | Iterable[str],
    tools: Sequence[str] = MATH_TOOL_NAMES,
) -> float:
    """Alignment(P, Q) = 1 - JS distance (base 2) between the teacher's (P) and the student's
    (Q) tool-call distributions over ``tools`` (the 12 math tools by default).

    ``p`` and ``q`` map tool name to count (or are iterables of tool names). Calls to tools
    outside ``tools`` are ignored. Two empty distributions are identical (1.0); one empty and
    one not share nothing (0.0).
    """
    pv, qv = _vector(p, tools), _vector(q, tools)
    if pv.sum() == 0 and qv.sum() == 0:
        return 1.0
    if pv.sum() == 0 or qv.sum() == 0:
        return 0.0
    return 1.0 - js_distance(pv, qv)


def tool_counts(trajs: Iterable[Trajectory | Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for t in trajs:
        counts.update(Trajectory.from_any(t).tool_names)
    return counts


@dataclass(frozen=True)
class ToolStats:
    n: int
    total_calls: int
    invalid_calls: int
    calls_per_trajectory: float
    invalid_call_rate: float  # invalid calls / all calls (0 when no call was made)
    tool_usage_rate: float  # share of trajectories with at least one call
    trajectories_with_invalid: float  # share of trajectories with at least one invalid call

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def tool_stats(trajs: Iterable[Trajectory | Any]) -> ToolStats:
    ts = [Trajectory.from_any(t) for t in trajs]
    n = len(ts)
    calls = sum(t.num_tool_calls for t in ts)
    invalid = sum(t.num_invalid_calls for t in ts)
    return ToolStats(
        n=n,
        total_calls=calls,
        invalid_calls=invalid,
        calls_per_trajectory=calls / n if n else 0.0,
        invalid_call_rate=invalid / calls if calls else 0.0,
        tool_usage_rate=sum(t.num_tool_calls > 0 for t in ts) / n if n else 0.0,
        trajectories_with_invalid=sum(t.num_invalid_calls > 0 for t in ts) / n if n else 0.0,
    )
