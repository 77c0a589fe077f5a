"""Resume that continues, not restarts: evaluation killed mid-benchmark runs only the items it
had not finished; GRPO and SFT killed after step k resume at k+1 with their optimizer state,
and the metrics lines 1..k are left as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# ----------------------------------------------------------------------------- evaluation

KILL_SCRIPT = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
from test_eval_scripted import MATH_ITEMS, ScriptedGenerator
from mentor.eval import evaluate

class Killed(ScriptedGenerator):
    def generate(self, conversations, tools, sampling):
        if any({kill_on!r} in c[-1]["content"] for c in conversations):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(conversations, tools, sampling)

gen = Killed({{q: s for q, _, s in MATH_ITEMS}})
gen.batch_size = 2
evaluate(None, {bench!r}, generator=gen, batch_size=2, progress=False, out={out!r}, label="scripted")
"""


def _math_file(tmp_path):
    from test_eval_scripted import MATH_ITEMS

    p = tmp_path / "arith.jsonl"
    p.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a, _ in MATH_ITEMS))
    return p


def _strip(rec):
    return {k: v for k, v in rec.items() if k != "trajectory"} | {"final": rec["trajectory"]["final_answer"]}


def test_evaluation_killed_mid_benchmark_does_not_redo_finished_items(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_eval_scripted import MATH_EXPECTED, MATH_ITEMS, ScriptedGenerator

    from mentor.eval import evaluate

    bench, out = _math_file(tmp_path), tmp_path / "res.json"
    questions = [q for q, _, _ in MATH_ITEMS]
    # batches of 2: items 0-1 finish, the process is SIGKILLed in item 2's batch
    script = KILL_SCRIPT.format(tests=str(TESTS), kill_on=questions[2], bench=str(bench), out=str(out))
    r = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists()
    partial = tmp_path / "res.json.partial.jsonl"
    lines = [json.loads(x) for x in partial.read_text().splitlines()]
    assert [x.get("index") for x in lines[1:]] == [0, 1]
    assert lines[0]["partial_of"]["model"] == "scripted"

    gen = ScriptedGenerator({q: s for q, _, s in MATH_ITEMS})
    gen.batch_size = 2
    res = evaluate(None, bench, generator=gen, batch_size=2, progress=False, out=out, label="scripted")
    # finished items are not asked again; the others are
    assert [len(gen.seen[q]) > 0 for q in questions] == [False, False, True, True, True, True]
    assert res["settings"]["resumed_items"] == 2
    got = [(r["correct"], r["prediction"], r["tool_names"], r["num_tool_calls"], r["invalid_calls"], r["turns"])
           for r in res["records"]]
    assert got == MATH_EXPECTED and res["accuracy"] == pytest.approx(4 / 6)
    assert len({r["id"] for r in res["records"]}) == 6
    assert res["tool_stats"]["total_calls"] == 4 and res["tool_counts"] == {"add": 1, "multiply": 1, "divide": 2}
    assert not partial.exists() and json.loads(out.read_text())["accuracy"] == res["accuracy"]

    # the same records as an uninterrupted run
    fresh = evaluate(None, bench, generator=ScriptedGenerator({q: s for q, _, s in MATH_ITEMS}), progress=False,
                     label="scripted")
    assert [_strip(a) for a in res["records"]] == [_strip(b) for b in fresh["records"]]


def test_partial_records_of_other_settings_are_not_reused(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_eval_scripted import MATH_ITEMS, ScriptedGenerator

    from mentor.eval import evaluate

    bench, out = _math_file(tmp_path), tmp_path / "res.json"
    script = KILL_SCRIPT.format(tests=str(TESTS), kill_on=MATH_ITEMS[2][0], bench=str(bench), out=str(out))
    r = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    gen = ScriptedGenerator({q: s for q, _, s in MATH_ITEMS})
    res = evaluate(None, bench, generator=gen, max_turns=2, progress=False, out=out, label="scripted")  # other max_turns
    assert all(gen.seen[q] for q, _, _ in MATH_ITEMS) and res["settings"]["resumed_items"] == 0
    assert res["records"][4]["turns"] == 2 and res["records"][4]["truncated"] is True


def test_pipeline_eval_stage_resumes_inside_a_benchmark(tmp_path, monkeypatch):
    """`mentor run`'s eval stage: interrupted in its second batch, re-run, only the rest is generated."""
    sys.path.insert(0, str(TESTS))
    from test_eval_scripted import ScriptedGenerator

    from mentor.eval import load_benchmark
    from mentor.pipeline import Pipeline, load_config

    items = load_benchmark("synthetic:test", limit=6).items
    questions = [it.question for it in items]
    # even items answered right, odd ones wrong
    scripts = {q: [f"\\boxed{{{it.gold}}}" if i % 2 == 0 else f"\\boxed{{{it.gold}1}}"] for i, (q, it) in enumerate(zip(questions, items))}
    ood = load_benchmark("synthetic:ood", limit=6).items  # the stage's second benchmark: all right
    scripts.update({it.question: [f"\\boxed{{{it.gold}}}"] for it in ood})

    class Interrupted(ScriptedGenerator):
        def generate(self, conversations, tools, sampling):
            if any(questions[3] in c[-1]["content"] for c in conversations):
                raise KeyboardInterrupt
            return super().generate(conversations, tools, sampling)

    cfg = load_config(None, {"eval": {"in_domain": ["synthetic:test"], "out_of_domain": ["synthetic:ood"], "tool_effect": False,
                                      "limit": 6, "batch_size": 3}})
    gens = [Interrupted(scripts), ScriptedGenerator(scripts)]
    for g in gens:
        g.batch_size = 3
    monkeypatch.setattr(Pipeline, "_generator", lambda self, method, model, stack: gens.pop(0))
    pipe = Pipeline(cfg, tmp_path / "run", progress=False)
    with pytest.raises(KeyboardInterrupt):
        pipe.stage_eval(["vanilla"])
    target = tmp_path / "run" / "eval" / "vanilla" / "synthetic_test.json"
    partial = target.with_name("synthetic_test.json.partial.jsonl")
    assert not target.exists() and partial.exists()
    second = gens[0]
    pipe.stage_eval(["vanilla"])
    assert [bool(second.seen[q]) for q in questions] == [False, False, False, True, True, True]
    res = json.loads(target.read_text())
    assert [r["correct"] for r in res["records"]] == [True, False] * 3 and res["accuracy"] == 0.5
    assert [r["id"] for r in res["records"]] == [it.id for it in items]
    assert res["settings"]["resumed_items"] == 3 and not partial.exists()
    res_ood = json.loads(target.with_name("synthetic_ood.json").read_text())
    assert res_ood["accuracy"] == 1.0 and res_ood["settings"]["resumed_items"] == 0
