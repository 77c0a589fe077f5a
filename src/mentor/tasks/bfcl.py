"""The BFCL task (Berkeley Function Calling Leaderboard, v4) with the ``bfcl-eval`` package's own
data and checkers.

Every category whose checker runs offline (``mentor.tasks.bfcl_v4.OFFLINE``):

- single-turn (non-live, live, irrelevance, relevance): BFCL's function docs (with its language
  hints) are rendered as tools by the student's chat template, the ``<tool_call>`` blocks the
  model writes become BFCL's decoded form ``[{name: {arg: value}}]`` (as BFCL's own Qwen FC
  handler decodes them) and BFCL's ``ast_checker`` scores them; (ir)relevance is correct when the
  model makes no call / some call, as BFCL's ``_evaluate_single_relevance_entry`` decides;
- multi-turn (base, miss_func, miss_param, long_context): ``mentor.tasks.bfcl_multi_turn`` drives
  the conversation over BFCL's simulated APIs and scores it with BFCL's ``multi_turn_checker``.

Agentic web search needs the internet and memory is not run (``bfcl_v4.UNAVAILABLE``); a run
lists them as skipped, and its ``accuracy`` is BFCL v4's official weighted overall over the groups
it evaluated (``bfcl_v4.overall``), never counting a skipped category as 0.

``bfcl-eval`` pins many vendor SDKs it needs only for its API handlers; install it with
``pip install --no-deps bfcl-eval``: the data loading and the checkers need nothing beyond
mentor's own dependencies (``bfcl_v4.package`` stands in for the model registry they import).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mentor.generation.loop import Generation
from mentor.models import cache_dir
from mentor.progress import ProgressBar
from mentor.tasks import bfcl_multi_turn as multi_turn
from mentor.tasks.base import Benchmark, Item, RunOptions, Task, register
from mentor.tasks.bfcl_v4 import (
    ALL_CATEGORIES,
    CHECKER_MODEL,
    GROUP_LABELS,
    GROUPS,
    IRRELEVANCE,
    LIVE_AST,
    MULTI_TURN,
    NON_LIVE_AST,
    OFFLINE,
    RELEVANCE,
    BFCLUnavailable,
    categories,
    category_scores,
    overall,
    package,
)

AST_CATEGORIES = NON_LIVE_AST + LIVE_AST + IRRELEVANCE  # the single-turn categories of earlier versions

__all__ = ["ALL_CATEGORIES", "AST_CATEGORIES", "BFCLUnavailable", "GROUPS", "LIVE_AST", "MULTI_TURN", "NON_LIVE_AST",
           "OFFLINE", "categories", "check", "decode", "load_bfcl", "to_tool"]


def _bfcl():
    """bfcl-eval's utils, AST checker and language enum."""
    utils = package(cache_dir() / "bfcl")
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return utils, ast_checker, Language


def to_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI-style tool for the chat template (BFCL's Qwen FC handler
    passes the docs unchanged too; 'dict' is JSON-schema 'object')."""
    fn = copy.deepcopy(function)
    if isinstance(fn.get("parameters"), dict) and fn["parameters"].get("type") == "dict":
        fn["parameters"]["type"] = "object"
    return {"type": "function", "function": fn}


def _item(entry: dict[str, Any], raw: dict[str, Any], cat: str, gold: Any) -> Item:
    """One BFCL entry as an item: the tools are the prompt's function docs (with BFCL's language
    hints), ``meta["function"]`` the docs its checker reads (without them, as bfcl-eval's eval
    runner loads them); multi-turn items keep the whole entry (turns, initial API state, held-out
    functions) in ``meta["entry"]``."""
    turns = entry["question"]
    first = [dict(m) for m in turns[0]]
    question = next((m["content"] for m in reversed(first) if m.get("role") == "user"), "")
    meta: dict[str, Any] = {"category": cat, "function": raw["function"]}
    if cat in MULTI_TURN:
        meta["entry"] = entry
    return Item(id=entry["id"], question=question, gold=gold, meta=meta,
                messages=None if cat in MULTI_TURN else first, tools=[to_tool(f) for f in entry["function"]])


def load_bfcl(spec: str = "ast", limit: int | None = None, name: str | None = None) -> Benchmark:
    """BFCL items of the categories ``spec`` names (``bfcl_v4.categories``; ``limit`` applies per
    category), in bfcl-eval's own form (``load_dataset_entry``: language hints, multi-turn
    function docs with the held-out ones removed)."""
    utils, _, _ = _bfcl()
    items: list[Item] = []
    cats = categories(spec)
    for cat in cats:
        entries = utils.load_dataset_entry(cat)
        raw = {e["id"]: e for e in utils.load_dataset_entry(cat, include_language_specific_hint=False)}
        no_gold = cat in IRRELEVANCE or cat in RELEVANCE
        gold = {} if no_gold else {g["id"]: g["ground_truth"] for g in utils.load_ground_truth_entry(cat)}
        items.extend(_item(e, raw[e["id"]], cat, gold.get(e["id"])) for e in (entries[:limit] if limit else entries))
    return Benchmark(name or f"bfcl:{spec}", "bfcl", items, source=f"bfcl-eval:{','.join(cats)}", domain="out-of-domain",
                     meta={"categories": cats})


def decode(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An assistant message's structured tool calls in BFCL's decoded form ``[{name: {args}}]``."""
    out = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function", tc)
        args = fn.get("arguments") or {}
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {fn.get('name')!r} are not an object")
        out.append({fn["name"]: dict(args)})
    return out


def _relevance(utils: Any, cat: str, decoded: list[dict[str, Any]] | None) -> dict[str, Any]:
    """BFCL's ``_evaluate_single_relevance_entry``: a call is made when the answer decodes to a
    non-empty call list; irrelevance wants none, relevance wants one."""
    called = bool(decoded) and not utils.is_empty_output(decoded)
    valid = not called if cat in IRRELEVANCE else called
    error = None if valid else ("called a function for an irrelevant request" if cat in IRRELEVANCE else "no function call")
    return {"valid": valid, "error": error, "decoded": decoded}


def check(item: Item, message: dict[str, Any]) -> dict[str, Any]:
    """Score one single-turn answer with BFCL's checker; returns ``{"valid", "error", "decoded"}``."""
    utils, ast_checker, Language = _bfcl()
    cat = item.meta["category"]
    try:
        decoded = decode(message)
    except Exception as e:  # noqa: BLE001 - a decode failure is an invalid answer, as in BFCL
        decoded, error = None, f"Invalid syntax. Failed to decode AST. {e}"
    else:
        error = None
    if cat in IRRELEVANCE or cat in RELEVANCE:
        return _relevance(utils, cat, decoded)
    if decoded is None or not decoded:
        return {"valid": False, "error": error or "no function call", "decoded": decoded}
    if not utils.is_function_calling_format_output(decoded):
        return {"valid": False, "error": "Did not output in the specified format.", "decoded": decoded}
    language = Language.JAVA if utils.is_java(cat) else Language.JAVASCRIPT if utils.is_js(cat) else Language.PYTHON
    try:
        res = ast_checker(item.meta["function"], decoded, item.gold, language, cat, CHECKER_MODEL)
    except Exception as e:  # noqa: BLE001 - the checker can choke on odd values: a wrong answer
        return {"valid": False, "error": f"checker error: {type(e).__name__}: {e}", "decoded": decoded}
    return {"valid": bool(res["valid"]), "error": res.get("error"), "decoded": decoded}


def _single_record(item: Item, gen: Generation) -> dict[str, Any]:
    verdict = check(item, gen.message)
    calls = gen.message.get("tool_calls") or []
    written = (gen.message.get("content") or "").count("<tool_call>")
    return {
        "id": item.id,
        "category": item.meta["category"],
        "question": item.question,
        "prediction": verdict["decoded"],
        "gold": item.gold,
        "correct": verdict["valid"],
        "error": verdict["error"],
        "tool_names": [c["function"]["name"] for c in calls],
        "num_tool_calls": len(calls) + written,
        "invalid_calls": written,
        "generated_tokens": gen.tokens,
        "turns": 1,
        "completion": [gen.message],
    }


def _multi_turn_record(item: Item, conv: multi_turn.Conversation) -> dict[str, Any]:
    verdict = multi_turn.check(conv, item.gold)
    results = multi_turn.tool_results(conv)
    return {
        "id": item.id,
        "category": item.meta["category"],
        "question": item.question,
        "prediction": verdict["decoded"],
        "gold": item.gold,
        "correct": verdict["valid"],
        "error": verdict["error"],
        "tool_names": [m["name"] for m in results],
        "num_tool_calls": len(results) + sum((m.get("content") or "").count("<tool_call>")
                                             for t in conv.responses for m in t if not m.get("tool_calls")),
        "invalid_calls": multi_turn.invalid_calls(conv),
        "generated_tokens": conv.rollout.generated_tokens,
        "turns": conv.rollout.turns,
        "truncated": conv.force_quit,
        "completion": conv.rollout.completion,
    }


class BFCLTask(Task):
    """Each item's own functions as tools; one assistant turn scored by BFCL's AST/relevance
    checkers, or a multi-turn conversation scored by its multi-turn checker. The accuracy of a
    run is BFCL v4's official weighted overall over the categories it evaluated."""

    name = "bfcl"
    label = "BFCL"
    domain = "out-of-domain"
    trajectories = False

    def names(self) -> list[str]:
        return ["bfcl", *(f"bfcl:{g}" for g in GROUPS if not set(GROUPS[g]) - set(OFFLINE)), *(f"bfcl:{c}" for c in OFFLINE)]

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        if key != "bfcl" and not key.startswith("bfcl:"):
            return None
        return load_bfcl(key.split(":", 1)[1] if ":" in key else "v4", limit=limit, name=key)

    def settings(self, tools: bool, max_turns: int) -> dict[str, Any]:
        """One turn per single-turn item; multi-turn items run until the model stops calling, up to
        BFCL's own step limit per user turn (``max_turns`` does not apply)."""
        from bfcl_eval.constants.default_prompts import MAXIMUM_STEP_LIMIT

        return {"toolset": "per-item BFCL functions" if tools else None, "max_turns": 1,
                "multi_turn_step_limit": MAXIMUM_STEP_LIMIT}

    def generate(self, generator: Any, bench: Benchmark, opts: RunOptions) -> list[Any]:
        """Single-turn items: one batched turn each; multi-turn items: ``bfcl_multi_turn.run``."""
        multi = [i for i, it in enumerate(bench.items) if it.meta["category"] in MULTI_TURN]
        single = [i for i, it in enumerate(bench.items) if it.meta["category"] not in MULTI_TURN]
        out: list[Any] = [None] * len(bench.items)
        if single:
            bar = ProgressBar(len(single), "bfcl", opts.progress, unit="items")
            try:
                items = [bench.items[i] for i in single]
                gens = multi_turn.generate_each(generator, [it.messages for it in items],
                                                [it.tools if opts.tools else None for it in items], opts.sampling, bar.advance)
            finally:
                bar.close()
            for i, gen in zip(single, gens, strict=True):
                out[i] = gen
        if multi:
            items = [bench.items[i] for i in multi]
            convs = multi_turn.run(generator, [it.meta["entry"] for it in items], [it.tools for it in items],
                                   opts.sampling, to_tool, opts.progress, use_tools=opts.tools)
            for i, conv in zip(multi, convs, strict=True):
                out[i] = conv
        return out

    def records(self, bench: Benchmark, outputs: Sequence[Any]) -> list[dict[str, Any]]:
        return [
            _multi_turn_record(item, out) if item.meta["category"] in MULTI_TURN else _single_record(item, out)
            for item, out in zip(bench.items, outputs, strict=True)
        ]

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-category ``subsets``; ``bfcl``: the official overall, its groups, the weights used and
        the skipped categories (``bfcl_v4.overall``); ``accuracy``: that overall (a run of one
        category: the overall reduces to that category's accuracy; only live_relevance, in no group of
        the overall, keeps the plain mean)."""
        out = super().summarize(records)
        scores = category_scores(records)
        out["subsets"] = {c: {"n": v["n"], "accuracy": v["accuracy"]} for c, v in scores.items()}
        agg = overall(scores)
        out["bfcl"] = agg
        if agg["overall"] is not None:
            out["accuracy"] = agg["overall"]
            out["accuracy_method"] = ("BFCL v4 official weighted overall over the evaluated groups "
                                      f"(weights re-normalised: {', '.join(f'{g} {w:.3f}' for g, w in agg['weights'].items())})")
        return out

    def columns(self, label: str, results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """The paper's BFCL columns: the official overall, then Non-Live, Live, Multi-Turn and
        Agentic, over the categories of all the method's BFCL results together."""
        agg = combined(results)
        return {f"{label} overall": agg["overall"], **{f"{label} {GROUP_LABELS[g]}": _acc(agg["groups"][g]) for g in PAPER_GROUPS}}

    def notes(self, label: str, results: Sequence[Mapping[str, Any]]) -> list[str]:
        """How the overall was computed: the groups and re-normalised weights, and every skipped
        category with the reason."""
        agg = combined(results)
        weights = ", ".join(f"{GROUP_LABELS[g]} {w:.3f}" for g, w in agg["weights"].items())
        reasons: dict[str, list[str]] = {}
        for c, why in agg["skipped"].items():
            reasons.setdefault(why, []).append(c)
        skipped = "; ".join(f"{', '.join(cs)}: {why}" for why, cs in reasons.items())
        return [f"{label} overall: BFCL v4's official weights (Non-Live 10, Live 10, Irrelevance 10, Multi-Turn 30, "
                f"Agentic 40) re-normalised over the evaluated groups ({weights or 'none'}); skipped, not counted "
                f"as 0 -- {skipped or 'none'}."]

    def summary_columns(self, results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """``bfcl_overall`` and ``bfcl_non_live``/``live``/``multi_turn``/``agentic`` (none without
        a BFCL result)."""
        if not results:
            return {}
        agg = combined(results)
        return {"bfcl_overall": agg["overall"], **{f"bfcl_{g}": _acc(agg["groups"][g]) for g in PAPER_GROUPS}}


#: the BFCL group columns of the paper's Table 2 (besides the overall)
PAPER_GROUPS = ("non_live", "live", "multi_turn", "agentic")


def _acc(group: Mapping[str, Any] | None) -> float | None:
    return None if group is None else group["accuracy"]


def combined(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``bfcl_v4.overall`` over the categories of several BFCL results (e.g. ``bfcl:ast`` and
    ``bfcl:multi_turn`` evaluated apart); a category in two results counts once, the later one."""
    scores: dict[str, dict[str, Any]] = {}
    for r in results:
        scores.update(r.get("subsets") or {})
    return overall(scores)


BFCL = register(BFCLTask())
