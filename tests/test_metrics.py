import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from mentor.analysis import alignment_score, tool_counts, tool_stats
from mentor.tools import MATH_TOOL_NAMES


@pytest.mark.parametrize("seed", range(25))
def test_alignment_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 20, size=12)
    q = rng.integers(0, 20, size=12)
    p[rng.integers(12)] += 1
    q[rng.integers(12)] += 1
    got = alignment_score(dict(zip(MATH_TOOL_NAMES, p.tolist())), dict(zip(MATH_TOOL_NAMES, q.tolist())))
    assert got == pytest.approx(1 - jensenshannon(p, q, base=2), abs=1e-12)
    assert 0 <= got <= 1


def test_alignment_edge_cases():
    assert alignment_score({"add": 3}, {"add": 7}) == pytest.approx(1.0)
    assert alignment_score({"add": 1}, {"multiply": 1}) == pytest.approx(0.0)
    assert alignment_score({}, {}) == 1.0
    assert alignment_score({"add": 1}, {}) == 0.0
    # iterables of names work, and tools outside the 12 are ignored
    assert alignment_score(["add", "add", "wikipedia_search"], ["add"]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        alignment_score({"add": -1}, {"add": 1})


def test_tool_stats():
    trajs = [
        '<tool_call>{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}</tool_call>\\boxed{3}',
        '<tool_call>{"name": "divide", "arguments": {"numerator": 1, "denominator": 0}}</tool_call>'
        '<tool_call>{"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 2}}</tool_call>',
        "\\boxed{3}",
        "no answer",
    ]
    s = tool_stats(trajs)
    assert s.n == 4 and s.total_calls == 3 and s.invalid_calls == 1
    assert s.calls_per_trajectory == pytest.approx(0.75)
    assert s.invalid_call_rate == pytest.approx(1 / 3)
    assert s.tool_usage_rate == pytest.approx(0.5)
    assert s.trajectories_with_invalid == pytest.approx(0.25)
    assert tool_counts(trajs) == {"add": 2, "divide": 1}
    empty = tool_stats([])
    assert empty.n == 0 and empty.invalid_call_rate == 0.0
