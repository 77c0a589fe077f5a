"""BFCL v4's structure: its categories, which of them run offline, and the official weighted
overall, computed as ``bfcl-eval`` computes it; plus the one import of the ``bfcl-eval`` package.

The aggregation mirrors ``bfcl_eval/eval_checker/eval_runner_helper.py::generate_leaderboard_csv``
(bfcl-eval 2026.3.23), which builds the leaderboard from per-category ``accuracy`` and
``total_count``:

- Non-Live = the unweighted mean of simple (itself the unweighted mean of simple_python,
  simple_java and simple_javascript), multiple, parallel and parallel_multiple
  (``calculate_unweighted_accuracy``); ``irrelevance`` is not part of it;
- Live = live_simple, live_multiple, live_parallel and live_parallel_multiple weighted by their
  item counts (``calculate_weighted_accuracy``); live_irrelevance/live_relevance are not part of it;
- Irrelevance = the unweighted mean of irrelevance and live_irrelevance (``total_irrelevance``);
- Multi-Turn = the unweighted mean of base, miss_func, miss_param and long_context;
- Agentic = the unweighted mean of web search (mean of web_search_base/no_snippet) and memory
  (mean of memory_kv/vector/rec_sum);
- Overall = ``calculate_percentage_weighted_accuracy([non_live, live, irrelevance, multi_turn,
  agentic], [10, 10, 10, 30, 40])`` (weights normalised to sum to 1).

live_relevance is reported by BFCL ("Relevance Detection") but is in no group of the overall.

Where BFCL counts a category that was not evaluated as 0 (``get_category_score``'s "N/A" with
accuracy 0), :func:`overall` leaves it out instead: every mean is taken over the parts that
were evaluated, and the overall re-normalises the official weights over the groups that have
at least one evaluated category (e.g. without Agentic: 10/60, 10/60, 10/60, 30/60). With every
category evaluated the two agree exactly (``tests/test_bfcl_v4.py`` checks this against the
package's own ``generate_leaderboard_csv``).
"""

from __future__ import annotations

import difflib
import os
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

SIMPLE = ("simple_python", "simple_java", "simple_javascript")
NON_LIVE_AST = (*SIMPLE, "multiple", "parallel", "parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
RELEVANCE = ("live_relevance",)
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
WEB_SEARCH = ("web_search_base", "web_search_no_snippet")
MEMORY = ("memory_kv", "memory_vector", "memory_rec_sum")
#: every scoring category of BFCL v4, in bfcl-eval's order (``constants/category_mapping.py``:
#: ``ALL_SCORING_CATEGORIES``; tests/test_bfcl_v4.py checks the two agree)
ALL_CATEGORIES = (
    *NON_LIVE_AST, "irrelevance",
    *LIVE_AST, "live_irrelevance", "live_relevance",
    *MULTI_TURN, *MEMORY, *WEB_SEARCH,
)

#: categories mentor cannot evaluate here, and why (listed as skipped, never scored as 0)
UNAVAILABLE: dict[str, str] = {
    **{c: ("needs the internet: BFCL's WebSearchAPI queries Google through SerpAPI (an API key) "
           "and fetches live web pages") for c in WEB_SEARCH},
    **{c: ("not run by mentor: BFCL's memory backends need packages a --no-deps bfcl-eval install "
           "leaves out (overrides, rank_bm25; memory_vector loads all-MiniLM-L6-v2 from the Hub at "
           "import) and a prerequisite memory-writing phase over BFCL's prereq conversations; use "
           "`bfcl generate/evaluate --test-category memory` (docs/evaluation.md)") for c in MEMORY},
}
#: the categories mentor evaluates with bfcl-eval's own data and checkers, offline
OFFLINE = tuple(c for c in ALL_CATEGORIES if c not in UNAVAILABLE)

#: names usable after ``bfcl:`` besides single categories (BFCL's own test collections where they exist)
GROUPS: dict[str, tuple[str, ...]] = {
    "v4": OFFLINE,
    "ast": NON_LIVE_AST + LIVE_AST,
    "non_live": NON_LIVE_AST + ("irrelevance",),
    "live": LIVE_AST + ("live_irrelevance", "live_relevance"),
    "single_turn": NON_LIVE_AST + ("irrelevance",) + LIVE_AST + ("live_irrelevance", "live_relevance"),
    "irrelevance": IRRELEVANCE,
    "multi_turn": MULTI_TURN,
    "memory": MEMORY,
    "web_search": WEB_SEARCH,
    "agentic": MEMORY + WEB_SEARCH,
}

# The leaderboard's tree (generate_leaderboard_csv): (name, how, parts); how = "mean" (BFCL's
# calculate_unweighted_accuracy) or "count" (calculate_weighted_accuracy); a part is a category
# or a sub-tree.
_TREE: dict[str, tuple[str, tuple[Any, ...]]] = {
    "non_live": ("mean", (("simple", "mean", SIMPLE), "multiple", "parallel", "parallel_multiple")),
    "live": ("count", LIVE_AST),
    "irrelevance": ("mean", IRRELEVANCE),
    "multi_turn": ("mean", MULTI_TURN),
    "agentic": ("mean", (("web_search", "mean", WEB_SEARCH), ("memory", "mean", MEMORY))),
}
#: generate_leaderboard_csv's ``calculate_percentage_weighted_accuracy(..., [10, 10, 10, 30, 40])``
WEIGHTS: dict[str, float] = {"non_live": 10, "live": 10, "irrelevance": 10, "multi_turn": 30, "agentic": 40}
#: the report's names of the groups (BFCL's leaderboard column titles)
GROUP_LABELS = {"non_live": "Non-Live", "live": "Live", "irrelevance": "Irrelevance", "multi_turn": "Multi-Turn", "agentic": "Agentic"}


class BFCLUnavailable(RuntimeError):
    pass


def categories(spec: str) -> list[str]:
    """The categories a ``bfcl:SPEC`` names: comma-separated categories and groups (``GROUPS``).
    A category mentor cannot run raises with the reason; an unknown name with a did-you-mean."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        cats = GROUPS.get(part, (part,) if part in ALL_CATEGORIES else None)
        if cats is None:
            known = [*GROUPS, *ALL_CATEGORIES]
            close = difflib.get_close_matches(part, known, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown BFCL category {part!r}{hint} (categories: {', '.join(OFFLINE)}; groups: {', '.join(GROUPS)})")
        blocked = [c for c in cats if c in UNAVAILABLE]
        if blocked:
            raise ValueError(f"BFCL category {blocked[0]!r} cannot be evaluated by mentor: {UNAVAILABLE[blocked[0]]}")
        out.extend(cats)
    return list(dict.fromkeys(out))


def category_scores(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category: ``{"n", "correct", "accuracy"}`` from evaluation records (each has ``category``)."""
    cats: dict[str, list[bool]] = {}
    for r in records:
        cats.setdefault(r["category"], []).append(bool(r["correct"]))
    return {c: {"n": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)} for c, v in cats.items()}


def _node(how: str, parts: Sequence[Any], scores: Mapping[str, Mapping[str, Any]], out: dict[str, Any]) -> dict[str, Any] | None:
    """One aggregate over the evaluated parts (``None`` when none was evaluated); sub-trees are
    written to ``out`` by name."""
    got = []
    for part in parts:
        if isinstance(part, tuple):
            name, sub_how, sub_parts = part
            value = _node(sub_how, sub_parts, scores, out)
            out[name] = value
        else:
            s = scores.get(part)
            value = None if s is None else {"accuracy": float(s["accuracy"]), "n": int(s["n"])}
        if value is not None:
            got.append(value)
    if not got:
        return None
    n = sum(v["n"] for v in got)
    if how == "count":
        acc = sum(v["accuracy"] * v["n"] for v in got) / n
    else:
        acc = sum(v["accuracy"] for v in got) / len(got)
    return {"accuracy": acc, "n": n}


def overall(scores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """BFCL v4's official overall over the evaluated categories (see the module doc).

    ``scores``: category -> ``{"accuracy", "n"}``. Returns ``overall`` (``None`` when nothing
    counts towards it), ``groups`` (Non-Live, Live, Irrelevance, Multi-Turn, Agentic: ``{"accuracy",
    "n"}`` or ``None``), ``parts`` (simple, web_search, memory and live_relevance), ``weights``
    (the re-normalised weights actually used), ``official_weights`` and ``skipped`` (every
    category not evaluated, with the reason)."""
    parts: dict[str, Any] = {}
    groups = {g: _node(how, ps, scores, parts) for g, (how, ps) in _TREE.items()}
    rel = scores.get("live_relevance")
    parts["relevance"] = None if rel is None else {"accuracy": float(rel["accuracy"]), "n": int(rel["n"])}
    used = {g: WEIGHTS[g] for g, v in groups.items() if v is not None}
    total = sum(used.values())
    value = sum(groups[g]["accuracy"] * w for g, w in used.items()) / total if total else None
    skipped = {c: UNAVAILABLE.get(c, "not in this run's category set") for c in ALL_CATEGORIES if c not in scores}
    return {
        "overall": value,
        "groups": groups,
        "parts": parts,
        "weights": {g: w / total for g, w in used.items()},
        "official_weights": {g: w / sum(WEIGHTS.values()) for g, w in WEIGHTS.items()},
        "skipped": skipped,
    }


# --------------------------------------------------------------------------- the bfcl-eval package

#: a BFCL model-registry key whose flags match ours (keeps dotted names, FC mode)
CHECKER_MODEL = "Qwen_Qwen2.5-7B-Instruct-FC"


def package(cache: os.PathLike | str) -> types.ModuleType:
    """``bfcl_eval.utils``, imported with ``BFCL_PROJECT_ROOT`` under ``cache`` (bfcl-eval makes
    its result/score folders there on import). bfcl-eval's model registry imports every vendor
    SDK; when they are absent (``pip install --no-deps bfcl-eval``), a minimal registry with the
    one flag the checkers read (``underscore_to_dot``) stands in for it."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(cache))
    try:
        import bfcl_eval.utils as utils
    except ImportError as e:
        raise BFCLUnavailable(
            f"BFCL evaluation needs the bfcl-eval package ({e}); install it with "
            "`pip install --no-deps bfcl-eval` (its checkers need nothing beyond mentor's own dependencies)"
        ) from None
    try:
        import bfcl_eval.constants.model_config  # noqa: F401 - full install with every vendor SDK
    except ImportError:
        mod = sys.modules.get("bfcl_eval.constants.model_config")
        if mod is None or not hasattr(mod, "MODEL_CONFIG_MAPPING"):
            shim = types.ModuleType("bfcl_eval.constants.model_config")
            shim.MODEL_CONFIG_MAPPING = {CHECKER_MODEL.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=False)}
            sys.modules["bfcl_eval.constants.model_config"] = shim
    return utils
