"""BFCL v4: the category structure and the official weighted overall against bfcl-eval's own
aggregation, every offline category's checker on real BFCL items with a scripted right and wrong
answer (multi-turn ones driven through bfcl-eval's real executor), and (slow) the bundled model
on one item per category end to end."""

from __future__ import annotations

import ast
import copy
import json
import random
import types

import pytest

from mentor.eval import evaluate, load_benchmark
from mentor.generation.loop import Generation, parse_assistant
from mentor.tasks import bfcl, get_task
from mentor.tasks import bfcl_multi_turn as mt
from mentor.tasks.bfcl_v4 import (
    ALL_CATEGORIES,
    GROUPS,
    MULTI_TURN,
    OFFLINE,
    UNAVAILABLE,
    categories,
    overall,
)

pytest.importorskip("bfcl_eval")


# ----------------------------------------------------------------------------- structure and aggregation


def test_categories_are_bfcl_evals_own():
    bfcl._bfcl()
    from bfcl_eval.constants import category_mapping as cm

    assert list(ALL_CATEGORIES) == cm.ALL_SCORING_CATEGORIES
    for group in ("non_live", "live", "multi_turn", "memory", "web_search", "agentic", "single_turn"):
        assert list(GROUPS[group]) == cm.TEST_COLLECTION_MAPPING[group], group
    assert set(OFFLINE) | set(UNAVAILABLE) == set(ALL_CATEGORIES) and not set(OFFLINE) & set(UNAVAILABLE)
    assert set(UNAVAILABLE) == {"web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum"}


def _leaderboard(scores, tmp_path, monkeypatch):
    """bfcl-eval's own ``generate_leaderboard_csv`` on ``scores``: the rows it writes, by file and
    column, before its percentage formatting (the raw floats)."""
    bfcl._bfcl()
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING
    from bfcl_eval.eval_checker import eval_runner_helper as helper

    monkeypatch.setitem(MODEL_CONFIG_MAPPING, "mentor/student", types.SimpleNamespace(
        display_name="student", url="-", org="-", license="-", input_price=None, output_price=None))
    raw: dict[str, dict[str, object]] = {}
    write = helper.write_score_csv_file

    def capture(data, file_path, header, *args, **kwargs):
        raw[file_path.name] = dict(zip(header, copy.deepcopy(data[0]), strict=True))
        return write(data, file_path, header, *args, **kwargs)

    monkeypatch.setattr(helper, "write_score_csv_file", capture)
    table = {"mentor_student": {c: {"accuracy": s["accuracy"], "total_count": s["n"]} for c, s in scores.items()}}
    helper.generate_leaderboard_csv(table, tmp_path)
    assert (tmp_path / "data_overall.csv").read_text().splitlines()[1].split(",")[1].endswith("%")
    return raw


def test_overall_equals_bfcl_evals_generate_leaderboard_csv(tmp_path, monkeypatch):
    rng = random.Random(7)
    for _ in range(3):
        scores = {c: {"accuracy": rng.random(), "n": rng.randint(1, 400)} for c in ALL_CATEGORIES}
        ours = overall(scores)
        rows = _leaderboard(scores, tmp_path, monkeypatch)
        total = rows["data_overall.csv"]
        assert ours["overall"] == pytest.approx(total["Overall Acc"], abs=1e-12)
        assert ours["groups"]["non_live"]["accuracy"] == pytest.approx(total["Non-Live AST Acc"], abs=1e-12)
        assert ours["groups"]["live"]["accuracy"] == pytest.approx(total["Live Acc"], abs=1e-12)
        assert ours["groups"]["multi_turn"]["accuracy"] == pytest.approx(total["Multi Turn Acc"], abs=1e-12)
        assert ours["groups"]["irrelevance"]["accuracy"] == pytest.approx(total["Irrelevance Detection"], abs=1e-12)
        assert ours["groups"]["agentic"]["accuracy"] == pytest.approx(rows["data_agentic.csv"]["Agentic Overall Acc"], abs=1e-12)
        assert ours["parts"]["simple"]["accuracy"] == pytest.approx(rows["data_non_live.csv"]["Simple AST"], abs=1e-12)
        assert ours["parts"]["relevance"]["accuracy"] == pytest.approx(total["Relevance Detection"], abs=1e-12)
        assert ours["weights"] == {"non_live": 0.1, "live": 0.1, "irrelevance": 0.1, "multi_turn": 0.3, "agentic": 0.4}
        assert ours["skipped"] == {}


def test_missing_groups_are_renormalised_where_bfcl_counts_zero(tmp_path, monkeypatch):
    """Without the agentic categories BFCL scores Agentic as 0 (its overall = 0.6 x ours); ours
    re-normalises 10/10/10/30 over the four evaluated groups and lists the five as skipped."""
    rng = random.Random(3)
    scores = {c: {"accuracy": rng.random(), "n": rng.randint(1, 400)} for c in OFFLINE}
    ours = overall(scores)
    assert ours["groups"]["agentic"] is None
    assert ours["weights"] == pytest.approx({"non_live": 1 / 6, "live": 1 / 6, "irrelevance": 1 / 6, "multi_turn": 0.5})
    assert set(ours["skipped"]) == set(UNAVAILABLE) and "internet" in ours["skipped"]["web_search_base"]
    rows = _leaderboard(scores, tmp_path, monkeypatch)
    assert rows["data_overall.csv"]["Overall Acc"] == pytest.approx(0.6 * ours["overall"], abs=1e-12)
    # inside a group the mean is over the evaluated parts: simple of python alone is python's score
    part = overall({"simple_python": {"accuracy": 0.25, "n": 4}, "multiple": {"accuracy": 0.75, "n": 4}})
    assert part["parts"]["simple"]["accuracy"] == 0.25 and part["overall"] == pytest.approx(0.5)
    live = overall({"live_simple": {"accuracy": 1.0, "n": 3}, "live_multiple": {"accuracy": 0.0, "n": 1}})
    assert live["overall"] == pytest.approx(0.75)  # weighted by count, not 0.5
    assert overall({"live_relevance": {"accuracy": 1.0, "n": 2}})["overall"] is None  # in no group


def test_names_groups_and_did_you_mean():
    assert categories("v4") == list(OFFLINE) and load_names() >= {"bfcl", "bfcl:v4", "bfcl:ast", "bfcl:multi_turn"}
    assert categories("ast") == list(bfcl.NON_LIVE_AST + bfcl.LIVE_AST)  # unchanged
    with pytest.raises(ValueError, match="did you mean 'multi_turn_base'"):
        categories("multi_turn_bse")
    with pytest.raises(ValueError, match="needs the internet"):
        load_benchmark("bfcl:web_search_no_snippet")
    with pytest.raises(ValueError, match="not run by mentor"):
        load_benchmark("bfcl:agentic")
    b = load_benchmark("bfcl:v4", limit=1)
    assert b.name == "bfcl:v4" and [i.meta["category"] for i in b.items] == list(OFFLINE)
    assert load_benchmark("bfcl", limit=1).name == "bfcl"


def load_names() -> set[str]:
    return set(get_task("bfcl").names())


# ----------------------------------------------------------------------------- single-turn checkers


def _pick(values):
    """The first acceptable value of a BFCL ground-truth list ("" = may be omitted)."""
    v = next((x for x in values if x != ""), "")
    return {k: _pick(vs) for k, vs in v.items() if _pick(vs) != ""} if isinstance(v, dict) else v


def _answer(calls):
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]}


def _right(item):
    calls = []
    for call in item.gold:
        ((name, args),) = call.items()
        value = {k: _pick(v) for k, v in args.items() if _pick(v) != ""}
        if item.meta["category"] in ("simple_java", "simple_javascript"):
            value = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in value.items()}  # code strings
        calls.append((name, value))
    return _answer(calls)


@pytest.mark.parametrize("category", [c for c in OFFLINE if c not in MULTI_TURN])
def test_single_turn_checker_scores_a_right_and_a_wrong_answer(category):
    item = load_benchmark(f"bfcl:{category}", limit=1).items[0]
    some_call = _answer([(item.tools[0]["function"]["name"], {})])
    no_call = {"role": "assistant", "content": "I cannot help with that."}
    if category in ("irrelevance", "live_irrelevance"):
        right, wrong = no_call, some_call
    elif category == "live_relevance":
        right, wrong = some_call, no_call
    else:
        right = _right(item)
        wrong = copy.deepcopy(right)
        first = wrong["tool_calls"][0]["function"]
        first["arguments"] = {k: (v + "x" if isinstance(v, str) else "wrong") for k, v in first["arguments"].items()}
    got = bfcl.check(item, right)
    assert got["valid"] is True, got
    bad = bfcl.check(item, wrong)
    assert bad["valid"] is False and bad["error"], bad


# ----------------------------------------------------------------------------- multi-turn through the real executor


def _gold_calls(gold_turn, functions):
    """A ground-truth turn (``["cd(folder='document')", "sort('f.pdf')"]``) as ``<tool_call>``
    text, positional arguments named from the function docs."""
    docs = {f["name"]: f for f in functions}
    out = []
    for s in gold_turn:
        node = ast.parse(s, mode="eval").body
        props = list(docs[node.func.id]["parameters"]["properties"])
        args = {props[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
        args.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
        out.append("<tool_call>\n" + json.dumps({"name": node.func.id, "arguments": args}) + "\n</tool_call>")
    return "\n".join(out)


class MultiTurnScript:
    """Answers each user turn of one BFCL multi-turn item with its ground-truth calls (all in the
    first step), then a plain message that ends the turn; ``wrong=True`` changes every string
    argument of the first turn."""

    name = "scripted"
    batch_size = 4

    def __init__(self, item, wrong=False):
        self.item, self.wrong = item, wrong
        self.functions = item.meta["function"] + [f for fs in item.meta["entry"].get("missed_function", {}).values() for f in fs]
        self.tools_seen: list[int] = []

    def generate(self, conversations, tools, sampling):
        out = []
        for conv in conversations:
            self.tools_seen.append(len(tools or []))
            users = [i for i, m in enumerate(conv) if m["role"] == "user"]
            turn, step = len(users) - 1, sum(m["role"] == "assistant" for m in conv[users[-1]:])
            gold = self.item.gold[turn]
            text = _gold_calls(gold, self.functions) if step == 0 and gold else "Done."
            if self.wrong and turn == 0 and step == 0:
                text = text.replace("='", "='x").replace('": "', '": "x')
            out.append(Generation(parse_assistant(text), tokens=2))
        return out


@pytest.mark.parametrize("category", MULTI_TURN)
def test_multi_turn_checker_through_bfcls_executor(category):
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    bench = load_benchmark(f"bfcl:{category}", limit=1)
    item = bench.items[0]
    right = evaluate(None, bench, generator=MultiTurnScript(item), progress=False)
    rec = right["records"][0]
    assert rec["correct"] is True, rec["error"]
    assert right["accuracy"] == 1.0 and right["bfcl"]["groups"]["multi_turn"] == {"accuracy": 1.0, "n": 1}
    assert len(rec["prediction"]) == len(item.gold)  # one decoded entry per user turn
    # the tool messages are BFCL's own execution results (e.g. cd's new working directory)
    results = [m for m in rec["completion"] if m["role"] == "tool"]
    assert len(results) == rec["num_tool_calls"] == sum(map(len, item.gold)) and rec["invalid_calls"] == 0
    assert not any(m["content"].startswith("Error during execution") for m in results)
    if category == "multi_turn_base":
        assert json.loads(results[0]["content"]) == {"current_working_directory": "document"}
    wrong_gen = MultiTurnScript(item, wrong=True)
    wrong = evaluate(None, bench, generator=wrong_gen, progress=False)
    assert wrong["records"][0]["correct"] is False and wrong["records"][0]["error"]
    assert wrong["accuracy"] == 0.0
    if category == "multi_turn_miss_func":  # the held-out turn adds the held-out functions
        assert max(wrong_gen.tools_seen) == len(item.tools) + len(item.meta["entry"]["missed_function"]["3"])
    assert not [n for n in vars(multi_turn_utils) if n.startswith("mentor_")]  # instances released


def test_multi_turn_without_tools_offers_and_runs_nothing():
    """The no-tools arm (tool effect): the same turns, no functions offered, no call executed."""
    bench = load_benchmark("bfcl:multi_turn_miss_func", limit=1)
    gen = MultiTurnScript(bench.items[0])
    res = evaluate(None, bench, generator=gen, tools=False, progress=False)
    rec = res["records"][0]
    assert set(gen.tools_seen) == {0} and not any(m["role"] == "tool" for m in rec["completion"])
    assert rec["tool_names"] == [] and rec["num_tool_calls"] == 0 and res["settings"]["tools"] is False
    assert len(rec["prediction"]) == len(bench.items[0].gold)  # every user turn still asked
    # what the model wrote is still scored, as for single-turn items: BFCL's checker runs the
    # written calls (this script writes the right ones without being offered them)
    assert rec["correct"] is True


def test_function_call_form_is_bfcls():
    """``function_call`` restates bfcl-eval's ``convert_to_function_call`` (its module needs the
    tree-sitter parsers): the package's own source of it, run, gives the same strings."""
    import inspect
    import re

    bfcl._bfcl()
    import bfcl_eval.model_handler as mh

    source = (inspect.getfile(mh).rsplit("/", 1)[0]) + "/utils.py"
    text = open(source, encoding="utf-8").read()
    body = re.search(r"def convert_to_function_call\(.*?\n(?=def )", text, re.S).group(0)
    namespace: dict = {"json": json}
    exec(body, namespace)  # noqa: S102 - the package's own function, read from its installed file
    call = {"mv": {"source": "a 'b'.pdf", "destination": "temp"}, "f": {"n": 3, "xs": [1, "2"], "flag": True}}
    expected = namespace["convert_to_function_call"]([{k: v} for k, v in call.items()])
    assert [mt.function_call(k, v) for k, v in call.items()] == expected


def test_force_quit_after_bfcls_step_limit():
    """A model that keeps calling is stopped after BFCL's MAXIMUM_STEP_LIMIT steps in a turn and
    the entry fails as force-terminated."""
    from bfcl_eval.constants.default_prompts import MAXIMUM_STEP_LIMIT

    class Looping:
        name, batch_size = "looping", 4

        def generate(self, conversations, tools, sampling):
            text = '<tool_call>\n{"name": "pwd", "arguments": {}}\n</tool_call>'
            return [Generation(parse_assistant(text), tokens=1) for _ in conversations]

    bench = load_benchmark("bfcl:multi_turn_base", limit=1)
    rec = evaluate(None, bench, generator=Looping(), progress=False)["records"][0]
    assert rec["correct"] is False and "force-terminated" in rec["error"] and rec["truncated"] is True
    assert rec["turns"] == MAXIMUM_STEP_LIMIT + 1 and len(rec["prediction"]) == 1


# ----------------------------------------------------------------------------- the bundled model, end to end


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bundled_model_on_every_single_turn_category_and_a_multi_turn_item(default_model_path):
    """One item of every single-turn category and one multi-turn item, generated by the bundled
    SmolLM2-135M and scored by bfcl-eval's checkers. (One multi-turn item: each of its steps
    renders BFCL's 31 function docs, ~6,800 prompt tokens, about 2.5 minutes per generate call
    on the shared 2-core box under load; the other three multi-turn categories run the same
    driver and are covered with scripted answers above.)"""
    from mentor.generation import HFGenerator

    gen = HFGenerator.from_name(default_model_path, batch_size=4)
    single = [c for c in OFFLINE if c not in MULTI_TURN]
    res = evaluate("smollm2-135m", "bfcl:single_turn,multi_turn_base", generator=gen, limit=1, max_new_tokens=24,
                   progress=False)
    assert [r["category"] for r in res["records"]] == [*single, "multi_turn_base"]
    agg = res["bfcl"]
    scores = {r["category"]: {"n": 1, "accuracy": float(r["correct"])} for r in res["records"]}
    assert agg == overall(scores) and res["accuracy"] == pytest.approx(agg["overall"])
    assert set(agg["weights"]) == {"non_live", "live", "irrelevance", "multi_turn"}
    assert "web_search_base" in agg["skipped"] and "multi_turn_miss_func" in agg["skipped"]
    for r in res["records"][:-1]:
        assert r["generated_tokens"] > 0 and r["completion"][0]["role"] == "assistant" and r["turns"] == 1
    mt_rec = res["records"][-1]
    users = [m for m in mt_rec["completion"] if m["role"] == "user"]
    assert len(users) == len(mt_rec["prediction"]) and mt_rec["turns"] >= len(users)
    assert len(users) == len(mt_rec["gold"]) or mt_rec["truncated"]  # every user turn, unless force-quit
    assert mt_rec["generated_tokens"] > 0 and isinstance(mt_rec["correct"], bool)


# ----------------------------------------------------------------------------- report and summary.json


class SingleTurnScript:
    """The right answer for the items in ``right``, a plain message for the others."""

    name, batch_size = "scripted", 4

    def __init__(self, items, right):
        self.answers = {it.question: (_right(it) if it.id in right else {"role": "assistant", "content": "no"}) for it in items}

    def generate(self, conversations, tools, sampling):
        out = []
        for conv in conversations:
            msg = self.answers[next(m["content"] for m in reversed(conv) if m["role"] == "user")]
            out.append(Generation(copy.deepcopy(msg), tokens=1))
        return out


def test_report_and_summary_show_the_papers_bfcl_columns(tmp_path):
    from mentor.analysis.report import build_report, summary_row

    single = load_benchmark("bfcl:simple_python,live_simple", limit=2)
    right = {single.items[0].id, single.items[2].id, single.items[3].id}  # python 1/2, live 2/2
    st = evaluate(None, single, generator=SingleTurnScript(single.items, right), progress=False)
    multi = load_benchmark("bfcl:multi_turn_base", limit=1)
    mtr = evaluate(None, multi, generator=MultiTurnScript(multi.items[0]), progress=False)
    assert st["accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # Non-Live 0.5, Live 1.0, equal weights
    rep = build_report(tmp_path / "out", methods={"mentor": [st, mtr]})
    cols = rep["numbers"]["methods"]["mentor"]["columns"]["BFCL"]
    # Non-Live 0.5 (w 10), Live 1.0 (10), Multi-Turn 1.0 (30); Irrelevance and Agentic not run
    assert cols == {"BFCL overall": pytest.approx((10 * 0.5 + 10 * 1.0 + 30 * 1.0) / 50), "BFCL Non-Live": 0.5,
                    "BFCL Live": 1.0, "BFCL Multi-Turn": 1.0, "BFCL Agentic": None}
    md = rep["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method") and "BFCL overall" in line)
    assert header.split(" | ")[-6:] == ["BFCL overall", "BFCL Non-Live", "BFCL Live", "BFCL Multi-Turn", "BFCL Agentic",
                                        "alignment |"]
    row = next(line for line in md.splitlines() if line.startswith("| mentor") and "90.00" in line)
    assert row.split(" | ")[-6:-1] == ["90.00", "50.00", "100.00", "100.00", "–"]
    note = next(n for n in rep["notes"] if "BFCL overall" in n)
    assert "re-normalised" in note and "web_search_base" in note and "needs the internet" in note
    assert "simple_java, simple_javascript, multiple, parallel, parallel_multiple, irrelevance, live_multiple" in note
    assert "not in this run's category set" in note
    row = summary_row([("out_of_domain", st), ("out_of_domain", mtr)], None)
    assert row["bfcl_overall"] == pytest.approx(0.9) and row["bfcl_non_live"] == 0.5
    assert row["bfcl_multi_turn"] == 1.0 and row["bfcl_agentic"] is None
    assert "bfcl_overall" not in summary_row([], None)  # no BFCL columns without a BFCL result


def test_multi_turn_turns_go_to_an_openai_server_together_each_with_its_own_tools():
    """BFCL's multi-turn entries each bring their own functions: with an OpenAI-compatible server
    one turn of every conversation is in flight at once (``concurrency``), each request carrying
    its conversation's tools (before: grouped by tool set, so one request at a time)."""
    import asyncio
    import threading

    from conftest import loopback_server, openai_app
    from mentor.generation.loop import Sampling
    from mentor.generation.openai_compat import OpenAIConfig, OpenAIGenerator

    lock, state = threading.Lock(), {"now": 0, "max": 0, "tools": {}}
    all_in = asyncio.Event()  # the server's loop: a request waits (up to 5 s) until 4 are in flight

    async def chat(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            user = next(m for m in body["messages"] if m["role"] == "user")["content"]
            state["tools"][user] = [t["function"]["name"] for t in body.get("tools") or []]
            if state["now"] == 4:
                all_in.set()
        try:
            await asyncio.wait_for(all_in.wait(), 5)
        except TimeoutError:
            pass
        with lock:
            state["now"] -= 1
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"done: {user}"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}

    def fn(name):
        return {"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object", "properties": {}}}}

    convs = [[{"role": "user", "content": f"conversation {i}"}] for i in range(4)]
    tools = [[fn(f"tool_{i}")] for i in range(4)]
    done = []
    with loopback_server(openai_app(chat)) as port:
        gen = OpenAIGenerator(OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", concurrency=4, retries=0))
        out = mt.generate_each(gen, convs, tools, Sampling(temperature=0), advance=lambda: done.append(1))
    assert [g.message["content"] for g in out] == [f"done: conversation {i}" for i in range(4)]
    assert state["tools"] == {f"conversation {i}": [f"tool_{i}"] for i in range(4)}
    assert state["max"] == 4 and len(done) == 4
