"""The data behind Figs. 6-7 and summary.json, against values computed by hand.

A pipeline run directory is filled with fixed inputs -- teacher references, evaluation results
produced by evaluate() from scripted trajectories, and hand-written metrics.jsonl training logs --
the real teacher_eval stage evaluates the program teacher on the same benchmarks, then the real
report stage runs. summary.json's rates and alignment score are recomputed here from the
trajectories by hand (the teacher distribution P from the teacher's result file by default, from
the references with ``eval.alignment_source: references``), and the Fig. 6/7 series are read back
from the matplotlib figures.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from mentor.io import append_jsonl

TESTS = Path(__file__).resolve().parent


def call(name, **args):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def _teacher_refs(path):
    from mentor.references import Reference, write_reference

    # teacher tool calls: add x3, multiply x1
    for i, tools in enumerate([["add", "add"], ["add", "multiply"]]):
        msgs = []
        for k, t in enumerate(tools):
            msgs += [{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": f"c{k}", "function": {
                "name": t, "arguments": {"firstNumber": 1, "secondNumber": 2}}}]},
                     {"role": "tool", "tool_call_id": f"c{k}", "name": t, "content": "3" if t == "add" else "2"}]
        msgs.append({"role": "assistant", "content": "\\boxed{3}"})
        write_reference(path, Reference(id=f"r{i}", question="q", answer="3", messages=msgs, teacher_answer="3",
                                        teacher_tools=list(tools), correct=True))  # all calls, in call order, as the teacher writes them


def _js_distance_by_hand(p: dict, q: dict) -> float:
    tools = sorted(set(p) | set(q))
    P = [p.get(t, 0) / sum(p.values()) for t in tools]
    Q = [q.get(t, 0) / sum(q.values()) for t in tools]
    M = [(a + b) / 2 for a, b in zip(P, Q)]
    kl = lambda A: sum(a * math.log2(a / m) for a, m in zip(A, M) if a > 0)  # noqa: E731
    return math.sqrt((kl(P) + kl(Q)) / 2)


#: per method: (step, invalid_call_rate, tool_usage_rate) written as the trainer's StepRecorder does
LOGS = {
    "mentor": [(1, 0.5, 0.25), (2, 0.25, 0.5), (3, 0.125, 0.75), (4, 0.0, 1.0)],
    "sparse": [(1, 0.4, 0.5), (2, 0.6, 0.5), (3, 0.2, 0.25)],
}


def test_summary_and_training_figures_from_fixed_inputs(tmp_path):
    sys.path.insert(0, str(TESTS))
    from test_eval_scripted import ScriptedGenerator

    import matplotlib.pyplot as plt
    from mentor.eval import evaluate, load_benchmark, result_filename
    from mentor.io import write_json
    from mentor.pipeline import Pipeline, load_config

    ind, ood = load_benchmark("synthetic:test", limit=4).items, load_benchmark("synthetic:ood", limit=2).items
    mentor_scripts = {
        ind[0].question: [call("add", firstNumber=1, secondNumber=2), f"\\boxed{{{ind[0].gold}}}"],  # right, 1 valid call
        ind[1].question: ['<tool_call>\n{"name": "multiply", "arguments": {\n</tool_call>', "\\boxed{0}"],  # wrong, 1 invalid
        ind[2].question: [call("divide", numerator=1, denominator=0) + call("add", firstNumber=1, secondNumber=1),
                          f"\\boxed{{{ind[2].gold}}}"],  # right, 2 calls (1 invalid)
        ind[3].question: [f"\\boxed{{{ind[3].gold}}}"],  # right, no call
        ood[0].question: [f"\\boxed{{{ood[0].gold}}}"],  # right, no call
        ood[1].question: [call("add", firstNumber=2, secondNumber=2), "\\boxed{4}"],  # wrong, 1 valid call
    }
    vanilla_scripts = {q: ["\\boxed{0}"] for q in mentor_scripts}  # wrong, no calls
    cfg = load_config(None, {"eval": {"in_domain": ["synthetic:test"], "out_of_domain": ["synthetic:ood"], "limit": 4}})
    out = tmp_path / "run"
    pipe = Pipeline(cfg, out, progress=False)
    pipe.run(["teacher_eval"])  # the program teacher, evaluated like the students
    for method, scripts in (("mentor", mentor_scripts), ("vanilla", vanilla_scripts)):
        for bench, n in (("synthetic:test", 4), ("synthetic:ood", 2)):
            res = evaluate(None, bench, generator=ScriptedGenerator(scripts), limit=n, progress=False, label=method)
            write_json(pipe.eval_dir(method) / result_filename(res), res)
    _teacher_refs(pipe.references_path)
    for method, rows in LOGS.items():
        log = pipe.model_dir(method) / "metrics.jsonl"
        log.parent.mkdir(parents=True)
        for step, inv, use in rows:
            append_jsonl(log, {"step": step, "epoch": step / 4, "reward": 1.0, "invalid_call_rate": inv,
                               "tool_usage_rate": use, "preset": method})
        append_jsonl(log, {"step": len(rows) + 1, "loss": 0.1, "preset": method})  # a line without tool rates

    figures: dict = {}
    pipe.stage_report(keep_figures=figures)
    summary = json.loads((out / "summary.json").read_text())

    # --- summary.json, by hand from the scripted trajectories above
    m = summary["mentor"]
    assert m["in_domain_accuracy"] == pytest.approx(3 / 4) and m["out_of_domain_accuracy"] == pytest.approx(1 / 2)
    assert m["invalid_call_rate"] == pytest.approx(2 / 5)  # 5 calls (1 + 1 + 2 + 0 | 0 + 1), 2 invalid
    assert m["tool_usage_rate"] == pytest.approx(4 / 6)  # 3 of 4 in-domain, 1 of 2 out-of-domain
    student = {"add": 2, "multiply": 1, "divide": 1}  # in-domain only
    # P (default, the paper's): the teacher's tool calls in its in-domain result file
    teacher_res = json.loads((pipe.eval_dir("teacher") / "synthetic_test.json").read_text())
    teacher = {}
    for r in teacher_res["records"]:
        for t in r["tool_names"]:
            teacher[t] = teacher.get(t, 0) + 1
    assert sum(teacher.values()) >= 4 and teacher != {"add": 3, "multiply": 1}  # the plans' calls, not the references'
    assert m["alignment_score"] == pytest.approx(1 - _js_distance_by_hand(teacher, student), abs=1e-9)
    t = summary["teacher"]  # Table 2's teacher row
    assert t["in_domain_accuracy"] == sum(r["correct"] for r in teacher_res["records"]) / 4 == 1.0
    assert t["invalid_call_rate"] == 0.0 and t["tool_usage_rate"] == 1.0 and t["alignment_score"] == pytest.approx(1.0)
    v = summary["vanilla"]
    assert (v["in_domain_accuracy"], v["out_of_domain_accuracy"], v["invalid_call_rate"], v["tool_usage_rate"],
            v["alignment_score"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert set(summary["sft"].values()) == {None}  # not evaluated
    # sparse: not evaluated either; its GRPO log still says how many steps had reward variance (issue #11)
    assert {k: v for k, v in summary["sparse"].items() if v is not None} == {"rl_steps": 3, "steps_with_reward_variance": 0}

    # --- Figs. 6 and 7: one line per training run, the logged rates in percent at their steps
    def series(fig_name):
        fig = figures[out / "plots" / fig_name]
        (ax,) = fig.axes
        return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()}

    from mentor.analysis.report import FIGURES

    for fig_name, col in ((FIGURES["fig6"], 1), (FIGURES["fig7"], 2)):
        got = series(fig_name)
        assert set(got) == set(LOGS), fig_name
        for method, rows in LOGS.items():
            xs, ys = got[method]
            assert xs == [r[0] for r in rows], (fig_name, method)
            assert ys == pytest.approx([100 * r[col] for r in rows]), (fig_name, method)
    assert (out / "plots" / FIGURES["fig6"]).read_bytes()[:4] == b"\x89PNG"
    for fig in figures.values():
        plt.close(fig)
    report = json.loads((out / "report.json").read_text())
    assert report["methods"]["mentor"]["train"]["invalid_call_rate"] == [[float(s), i] for s, i, _ in LOGS["mentor"]]
    assert report["alignment_source"]["source"] == "benchmark" and report["alignment_source"]["counts"] == teacher
    assert "P = the teacher's tool calls on the in-domain benchmarks of its evaluation (synthetic:test)" in (out / "report.md").read_text()

    # --- the named alternative, eval.alignment_source: references -> P from the training references
    refs_cfg = load_config(None, {"eval": {"in_domain": ["synthetic:test"], "out_of_domain": ["synthetic:ood"], "limit": 4,
                                           "alignment_source": "references"}})
    Pipeline(refs_cfg, out, progress=False).stage_report()
    alt = json.loads((out / "summary.json").read_text())
    by_refs = 1 - _js_distance_by_hand({"add": 3, "multiply": 1}, student)
    assert alt["mentor"]["alignment_score"] == pytest.approx(by_refs, abs=1e-9)
    assert alt["mentor"]["alignment_score"] != pytest.approx(m["alignment_score"])  # the distributions differ
    assert "in its correct training references" in (out / "report.md").read_text()
