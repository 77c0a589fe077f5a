"""The BFCL task (Berkeley Function Calling Leaderboard) with the ``bfcl-eval`` package's own data and checker.

Covers the single-turn AST categories (non-live and live, plus the irrelevance ones): BFCL's
function docs (with its language hints) are rendered as tools by the student's chat template,
the ``<tool_call>`` blocks the model writes become BFCL's decoded form ``[{name: {arg: value}}]``
(as BFCL's own Qwen FC handler decodes them), and BFCL's ``ast_checker`` scores them.

``bfcl-eval`` pins many vendor SDKs it needs only for its API handlers; install it with
``pip install --no-deps bfcl-eval``: the data loading and the AST checker need nothing beyond
mentor's own dependencies.
Its checker imports the full model registry only to look up one flag for dotted function names;
when the vendor SDKs are absent, a minimal registry with that flag is provided instead.
For the full BFCL v4 harness (multi-turn, agentic) use ``bfcl generate``/``bfcl evaluate``
against the student served by vLLM (docs/evaluation.md).
"""

from __future__ import annotations

import copy
import os
import sys
import types
from typing import Any

from collections.abc import Mapping, Sequence

from mentor.generation.loop import Generation
from mentor.models import cache_dir
from mentor.progress import ProgressBar
from mentor.tasks.base import Benchmark, Item, RunOptions, Task, register

NON_LIVE_AST = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
AST_CATEGORIES = NON_LIVE_AST + LIVE_AST + IRRELEVANCE
GROUPS = {"ast": NON_LIVE_AST + LIVE_AST, "non_live": NON_LIVE_AST, "live": LIVE_AST, "irrelevance": IRRELEVANCE}
#: a BFCL model-registry key whose flags match ours (keeps dotted names, FC mode)
CHECKER_MODEL = "Qwen_Qwen2.5-7B-Instruct-FC"


class BFCLUnavailable(RuntimeError):
    pass


def _bfcl():
    """Import bfcl-eval's utils and checker (with a minimal model registry if the SDKs are absent)."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(cache_dir() / "bfcl"))
    try:
        import bfcl_eval.utils as utils
    except ImportError as e:
        raise BFCLUnavailable(
            f"BFCL evaluation needs the bfcl-eval package ({e}); install it with "
            "`pip install --no-deps bfcl-eval` (its checker needs nothing beyond mentor's own dependencies)"
        ) from None
    try:
        import bfcl_eval.constants.model_config  # noqa: F401 - full install with every vendor SDK
    except ImportError:
        if "bfcl_eval.constants.model_config" not in sys.modules or not hasattr(
            sys.modules["bfcl_eval.constants.model_config"], "MODEL_CONFIG_MAPPING"
        ):
            shim = types.ModuleType("bfcl_eval.constants.model_config")
            shim.MODEL_CONFIG_MAPPING = {CHECKER_MODEL.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=False)}
            sys.modules["bfcl_eval.constants.model_config"] = shim
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return utils, ast_checker, Language


def categories(spec: str) -> list[str]:
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if part in GROUPS:
            out.extend(GROUPS[part])
        elif part in AST_CATEGORIES:
            out.append(part)
        else:
            raise ValueError(
                f"unsupported BFCL category {part!r}: choose from {', '.join(AST_CATEGORIES)} or groups "
                f"{', '.join(GROUPS)} (multi-turn/agentic: use the bfcl CLI, see docs/evaluation.md)"
            )
    return list(dict.fromkeys(out))


def to_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI-style tool for the chat template (BFCL's Qwen FC handler
    passes the docs unchanged too; 'dict' is JSON-schema 'object')."""
    fn = copy.deepcopy(function)
    if isinstance(fn.get("parameters"), dict) and fn["parameters"].get("type") == "dict":
        fn["parameters"]["type"] = "object"
    return {"type": "function", "function": fn}


def load_bfcl(spec: str = "ast", limit: int | None = None) -> Benchmark:
    """BFCL items of the given categories (``limit`` applies per category)."""
    utils, _, _ = _bfcl()
    items: list[Item] = []
    cats = categories(spec)
    for cat in cats:
        entries = utils.load_dataset_entry(cat)
        gold = {} if cat in IRRELEVANCE else {g["id"]: g["ground_truth"] for g in utils.load_ground_truth_entry(cat)}
        for e in entries[:limit] if limit else entries:
            turns = e["question"]
            messages = [dict(m) for m in turns[0]]
            question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            items.append(
                Item(
                    id=e["id"],
                    question=question,
                    gold=gold.get(e["id"]),
                    meta={"category": cat, "function": e["function"]},
                    messages=messages,
                    tools=[to_tool(f) for f in e["function"]],
                )
            )
    name = f"bfcl:{spec}"
    return Benchmark(name, "bfcl", items, source=f"bfcl-eval:{','.join(cats)}", domain="out-of-domain", meta={"categories": cats})


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


def check(item: Item, message: dict[str, Any]) -> dict[str, Any]:
    """Score one answer with BFCL's checker; returns ``{"valid": bool, "error": ..., "decoded": ...}``."""
    utils, ast_checker, Language = _bfcl()
    cat = item.meta["category"]
    try:
        decoded = decode(message)
    except Exception as e:  # noqa: BLE001 - a decode failure is an invalid answer, as in BFCL
        decoded, error = None, f"Invalid syntax. Failed to decode AST. {e}"
    else:
        error = None
    if cat in IRRELEVANCE:
        # BFCL: correct when the model makes no (decodable, non-empty) call
        valid = not decoded or utils.is_empty_output(decoded)
        return {"valid": bool(valid), "error": None if valid else "called a function for an irrelevant request", "decoded": decoded}
    if decoded is None or not decoded:
        return {"valid": False, "error": error or "no function call", "decoded": decoded}
    if not utils.is_function_calling_format_output(decoded):
        return {"valid": False, "error": "Did not output in the specified format.", "decoded": decoded}
    language = Language.JAVA if "java" in cat and "javascript" not in cat else Language.JAVASCRIPT if "javascript" in cat else Language.PYTHON
    try:
        res = ast_checker(item.meta["function"], decoded, item.gold, language, cat, CHECKER_MODEL)
    except Exception as e:  # noqa: BLE001 - the checker can choke on odd values: a wrong answer
        return {"valid": False, "error": f"checker error: {type(e).__name__}: {e}", "decoded": decoded}
    return {"valid": bool(res["valid"]), "error": res.get("error"), "decoded": decoded}


def _generate(generator: Any, items: Sequence[Item], opts: RunOptions) -> list[Generation]:
    """One assistant turn per item, each with its own tools (batched when the generator can)."""
    bar = ProgressBar(len(items), "bfcl", opts.progress, unit="items")
    out: list[Generation] = []
    try:
        if hasattr(generator, "generate_rendered"):
            bs = max(1, getattr(generator, "batch_size", 8))
            texts = [generator.render(it.messages, it.tools if opts.tools else None) for it in items]
            for s in range(0, len(texts), bs):
                gens = generator.generate_rendered(texts[s : s + bs], opts.sampling)
                out.extend(gens)
                for _ in gens:
                    bar.advance()
        else:
            for it in items:
                out.extend(generator.generate([it.messages], it.tools if opts.tools else None, opts.sampling))
                bar.advance()
    finally:
        bar.close()
    return out


class BFCLTask(Task):
    """Each item's own functions as tools, one assistant turn, BFCL's AST checker; with several
    categories the accuracy is the macro average over them."""

    name = "bfcl"
    label = "BFCL"
    domain = "out-of-domain"
    trajectories = False

    def names(self) -> list[str]:
        return [*(f"bfcl:{c}" for c in AST_CATEGORIES), "bfcl:ast"]

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        if not key.startswith("bfcl"):
            return None
        return load_bfcl(key.split(":", 1)[1] if ":" in key else "ast", limit=limit)

    def settings(self, tools: bool, max_turns: int) -> dict[str, Any]:
        return {"toolset": "per-item BFCL functions" if tools else None, "max_turns": 1}

    def generate(self, generator: Any, bench: Benchmark, opts: RunOptions) -> list[Generation]:
        return _generate(generator, bench.items, opts)

    def records(self, bench: Benchmark, outputs: Sequence[Any]) -> list[dict[str, Any]]:
        records = []
        for item, gen in zip(bench.items, outputs, strict=True):
            verdict = check(item, gen.message)
            calls = gen.message.get("tool_calls") or []
            written = (gen.message.get("content") or "").count("<tool_call>")
            records.append({
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
            })
        return records

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-category ``subsets``; the macro average over categories when there are several."""
        out = super().summarize(records)
        cats: dict[str, list[bool]] = {}
        for r in records:
            cats.setdefault(r["category"], []).append(bool(r["correct"]))
        out["subsets"] = {c: {"n": len(v), "accuracy": sum(v) / len(v)} for c, v in cats.items()}
        if len(cats) > 1:
            out["accuracy"] = sum(s["accuracy"] for s in out["subsets"].values()) / len(cats)
            out["accuracy_method"] = "macro average over BFCL categories"
        return out


BFCL = register(BFCLTask())
