"""The report: tables and figures from real evaluation results, references and training logs."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from mentor.analysis.report import FIGURES, build_report
from mentor.io import DataError, append_jsonl
from mentor.references import Reference, write_reference
from mentor.trajectory import Trajectory


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert data[12:16] == b"IHDR" and width > 200 and height > 150
    import matplotlib.image

    assert matplotlib.image.imread(path).ndim == 3  # decodes


def _call(name, args, result):
    return [
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "c1", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": "c1", "name": name, "content": result},
        {"role": "assistant", "content": f"\\boxed{{{result}}}"},
    ]


def _references(path):
    for i, (tool, args, res) in enumerate([("add", {"firstNumber": 1, "secondNumber": 2}, "3"),
                                           ("multiply", {"firstNumber": 2, "secondNumber": 3}, "6"),
                                           ("add", {"firstNumber": 2, "secondNumber": 2}, "4")]):
        write_reference(path, Reference(id=str(i), question="q", answer=res, messages=_call(tool, args, res),
                                        teacher_answer=res, teacher_tools=[tool], correct=True))


def _train_log(path, preset, invalid):
    for step, v in enumerate(invalid, 1):
        append_jsonl(path, {"step": step, "epoch": step / 10, "reward": 0.5, "invalid_call_rate": v,
                            "tool_usage_rate": 1 - v, "preset": preset})


def _eval_result(name, trajs, golds, tools=True, domain="in-domain"):
    """An eval-format result built from real trajectories (as the evaluator builds records)."""
    recs = []
    for i, (msgs, gold) in enumerate(zip(trajs, golds, strict=True)):
        t = Trajectory.from_messages(msgs)
        recs.append({"id": str(i), "prediction": t.final_answer, "gold": gold, "correct": t.final_answer == gold,
                     "tool_names": t.tool_names, "num_tool_calls": t.num_tool_calls, "invalid_calls": t.num_invalid_calls,
                     "trajectory": t.to_dict()})
    return {"benchmark": name, "kind": "math", "domain": domain, "model": "m", "n": len(recs),
            "accuracy": sum(r["correct"] for r in recs) / len(recs), "settings": {"tools": tools}, "records": recs}


def test_report_numbers_from_trajectories(tmp_path):
    from mentor.analysis import alignment_score

    refs = tmp_path / "refs.jsonl"
    _references(refs)
    student = [_call("add", {"firstNumber": 1, "secondNumber": 2}, "3"), _call("sqrt", {"number": 4}, "2")]
    res = build_report(
        tmp_path / "out",
        methods={"mentor": [_eval_result("syn", student, ["3", "5"]), _eval_result("syn", [[{"role": "assistant", "content": "\\boxed{3}"}]] * 2, ["3", "5"], tools=False)]},
        references=refs,
        train_logs={"mentor": _make_log(tmp_path / "m.jsonl", "mentor", [0.5, 0.2, 0.1])},
        alignment_source="references",  # the named alternative: P from the training references
    )
    n = res["numbers"]["methods"]["mentor"]
    assert n["accuracy"]["syn"] == 0.5 and n["tool_effect"]["syn"] == (0.5, 0.5)
    assert n["alignment"] == pytest.approx(alignment_score({"add": 2, "multiply": 1}, {"add": 1, "sqrt": 1}))
    diff = n["tool_difference"]
    assert diff["add"] == pytest.approx(50 - 200 / 3) and diff["sqrt"] == pytest.approx(50)
    assert diff["multiply"] == pytest.approx(-100 / 3) and sum(diff.values()) == pytest.approx(0)
    assert n["calls_per_question"]["in-domain"] == [1, 1]
    assert n["train"]["invalid_call_rate"] == [(1.0, 0.5), (2.0, 0.2), (3.0, 0.1)]
    for f in FIGURES.values():
        assert_png(tmp_path / "out" / "plots" / f)
    assert res["notes"] == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| mentor | 50.00 | 50.00 |" in md and "fig4_tool_difference.png" in md
    assert f"P = the teacher's tool calls in its correct training references ({refs})" in md
    assert "<table>" in (tmp_path / "out" / "report.html").read_text()


def _bars(ax):
    """The heights of each bar series (one per method) of a matplotlib axis, in legend order."""
    return {c.get_label(): [b.get_height() for b in c] for c in ax.containers}


def test_teacher_row_fig1_panels_and_alignment_source(tmp_path):
    from mentor.analysis import alignment_score
    from mentor.tools import MATH_TOOL_NAMES

    refs = tmp_path / "refs.jsonl"
    _references(refs)  # training references: add x2, multiply x1
    mul = _call("multiply", {"firstNumber": 2, "secondNumber": 3}, "6")
    bad = [{"role": "assistant", "content": '<tool_call>\n{"name": "add", "arguments": {\n</tool_call>'},
           {"role": "assistant", "content": "\\boxed{6}"}]
    teacher = [_eval_result("syn", [mul, mul, _call("sqrt", {"number": 4}, "2")], ["6", "6", "2"]),  # multiply x2, sqrt x1
               _eval_result("ood", [bad, mul], ["7", "6"], domain="out-of-domain")]  # 1 invalid of 2 calls, 1 wrong
    student = [_eval_result("syn", [_call("add", {"firstNumber": 1, "secondNumber": 2}, "3"), mul, [{"role": "assistant", "content": "\\boxed{1}"}]],
                            ["3", "5", "2"]),
               _eval_result("syn", [[{"role": "assistant", "content": "\\boxed{3}"}]] * 3, ["3", "5", "2"], tools=False)]
    figures: dict = {}
    res = build_report(tmp_path / "out", methods={"mentor": student}, teacher=teacher, references=refs, keep_figures=figures)
    n = res["numbers"]
    assert list(n["methods"]) == ["teacher", "mentor"]  # the teacher's row first, as in Table 2
    t, m = n["methods"]["teacher"], n["methods"]["mentor"]
    assert t["accuracy"] == {"syn": 1.0, "ood": 0.5} and t["macro"] == {"Math": 1.0, "Math OOD": 0.5}
    # default: P = the teacher's calls on the in-domain benchmark (not its references)
    assert n["alignment_source"]["source"] == "benchmark" and n["alignment_source"]["counts"] == {"multiply": 2, "sqrt": 1}
    assert m["alignment"] == pytest.approx(alignment_score({"multiply": 2, "sqrt": 1}, {"add": 1, "multiply": 1}))
    assert t["alignment"] == pytest.approx(1.0)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| teacher | 100.00 | 50.00 | 100.00 | 50.00 | 100.00 |" in md  # syn, ood, Math, Math OOD, alignment
    assert "P = the teacher's tool calls on the in-domain benchmarks of its evaluation (syn), as the paper" in md
    assert any("The teacher has no evaluation without tools" in note for note in res["notes"])
    # Fig. 1b: each method's share of its in-domain math-tool calls, and calls per question
    left, right = figures[tmp_path / "out" / "plots" / FIGURES["fig1b"]].axes
    bars = _bars(left)
    assert bars["teacher"] == pytest.approx([100 * {"multiply": 2, "sqrt": 1}.get(x, 0) / 3 for x in MATH_TOOL_NAMES])
    assert bars["mentor"] == pytest.approx([100 * {"add": 1, "multiply": 1}.get(x, 0) / 2 for x in MATH_TOOL_NAMES])
    assert [b.get_height() for b in right.containers[0]] == pytest.approx([5 / 5, 2 / 3])  # teacher: 5 calls / 5 items
    # Fig. 1c: invalid calls over all calls of the tool-enabled evaluations
    (ax,) = figures[tmp_path / "out" / "plots" / FIGURES["fig1c"]].axes
    assert [b.get_height() for b in ax.containers[0]] == pytest.approx([100 * 1 / 5, 0.0])
    for f in (FIGURES["fig1"], FIGURES["fig1b"], FIGURES["fig1c"]):
        assert_png(tmp_path / "out" / "plots" / f)
    # the named alternative: P from the training references gives another score
    alt = build_report(tmp_path / "alt", methods={"mentor": student}, teacher=teacher, references=refs, alignment_source="references")
    a = alt["numbers"]["methods"]
    assert alt["numbers"]["alignment_source"]["counts"] == {"add": 2, "multiply": 1}
    assert a["mentor"]["alignment"] == pytest.approx(alignment_score({"add": 2, "multiply": 1}, {"add": 1, "multiply": 1}))
    assert a["mentor"]["alignment"] != pytest.approx(m["alignment"])
    assert a["teacher"]["alignment"] == pytest.approx(alignment_score({"add": 2, "multiply": 1}, {"multiply": 2, "sqrt": 1}))
    # with a no-tools evaluation the teacher joins Fig. 1's tool effect
    no_tools = _eval_result("syn", [[{"role": "assistant", "content": "\\boxed{6}"}]] * 3, ["6", "6", "2"], tools=False)
    both = build_report(tmp_path / "both", methods={"mentor": student}, teacher=[*teacher, no_tools])
    assert both["numbers"]["methods"]["teacher"]["tool_effect"] == {"syn": (2 / 3, 1.0)}
    assert not any("no evaluation without tools" in note for note in both["notes"])
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def test_report_cli_alignment_source(tmp_path):
    from mentor.io import write_json

    write_json(tmp_path / "t.json", _eval_result("syn", [_call("add", {"firstNumber": 1, "secondNumber": 2}, "3")], ["3"]))
    base = [sys.executable, "-m", "mentor.cli", "report", str(tmp_path / "t.json"), "--teacher", str(tmp_path / "t.json")]
    r = subprocess.run([*base, "--alignment-source", "refs", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "benchmark, references" in r.stderr
    r = subprocess.run([*base, "--alignment-source", "references", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--references" in r.stderr


def _make_log(path, preset, values):
    _train_log(path, preset, values)
    return path


def test_report_with_no_data_notes_instead_of_failing(tmp_path):
    res = build_report(tmp_path / "empty", methods={})
    for f in FIGURES.values():
        assert_png(tmp_path / "empty" / "plots" / f)
    assert any("No evaluation results" in n for n in res["notes"])
    assert "_no data_" in (tmp_path / "empty" / "report.md").read_text()


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"benchmark": "a"}')
    with pytest.raises(DataError, match="x.json") as e:
        build_report(tmp_path / "o", methods={"m": [bad]})
    assert e.value.field == "accuracy"
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "invalid_call_rate": 0.1}\n{"step": 2,\n')
    with pytest.raises(DataError, match="line 2"):
        build_report(tmp_path / "o", train_logs={"mentor": log})


@pytest.mark.slow
def test_report_from_real_runs(tmp_path, default_model_path):
    """Real eval results of the bundled model (in- and out-of-domain, with and without tools),
    a references file and training logs in run directories -> mentor report."""
    from mentor.eval import evaluate, result_filename
    from mentor.io import write_json
    from mentor.generation import HFGenerator

    gen = HFGenerator.from_name(default_model_path, batch_size=4)
    small = {"limit": 2, "max_new_tokens": 16, "max_turns": 1, "progress": False}
    vanilla = tmp_path / "vanilla"
    for bench, tools in (("synthetic:test", True), ("synthetic:test", False), ("synthetic:ood", True)):
        res = evaluate("smollm2-135m", bench, generator=gen, tools=tools, **small)
        write_json(vanilla / "eval" / result_filename(res), res)
    for preset, values in (("mentor", [0.6, 0.3, 0.1]), ("sparse", [0.6, 0.5, 0.55])):
        run = tmp_path / preset
        write_json(run / "run.json", {"stage": "grpo", "config": {"preset": preset}})
        _train_log(run / "metrics.jsonl", preset, values)
        # the trained student's eval = the same real records (the report only reads files)
        write_json(run / "eval" / "synthetic_test.json", json.loads((vanilla / "eval" / "synthetic_test.json").read_text()))
    refs = tmp_path / "refs.jsonl"
    _references(refs)
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "mentor.cli", "report", str(vanilla), str(tmp_path / "mentor"), str(tmp_path / "sparse"),
                        "--references", str(refs), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in FIGURES.values():
        assert_png(out / "plots" / f)
    numbers = json.loads((out / "report.json").read_text())
    assert set(numbers["methods"]) == {"vanilla", "mentor", "sparse"}
    v = numbers["methods"]["vanilla"]
    with_tools = json.loads((vanilla / "eval" / "synthetic_test.json").read_text())
    without = json.loads((vanilla / "eval" / "synthetic_test.no_tools.json").read_text())
    assert v["accuracy"]["synthetic:test"] == sum(x["correct"] for x in with_tools["records"]) / 2
    assert v["tool_effect"]["synthetic:test"] == [without["accuracy"], with_tools["accuracy"]]
    assert len(v["calls_per_question"]["out-of-domain"]) == 2
    assert numbers["methods"]["mentor"]["preset"] == "mentor"
    assert set(v["macro"]) == {"Math", "Math OOD"}  # synthetic:ood averages apart from in-domain math
    md = (out / "report.md").read_text()
    assert "synthetic:test" in md and "Fig. 6" in md


def test_report_shows_each_methods_training_settings(tmp_path):
    """A run's speed/memory options (run.json's speed_options) are printed in the report (issue #11)."""
    traj = _call("add", {"firstNumber": 1, "secondNumber": 2}, "3")
    ev = _eval_result("synthetic:test", [traj], ["3"])
    opts = {"lora_grpo": True, "generation_backend": "llama_cpp", "beta": 0.001}
    rep = build_report(tmp_path, methods={"mentor": {"evals": [ev], "preset": "mentor", "training": opts},
                                          "sft": {"evals": [ev]}})
    md = rep["markdown"].read_text()
    assert "## Training settings" in md
    assert "| mentor | True | llama_cpp | 0.001 |" in md
    assert json.loads(rep["json"].read_text())["training"] == {"mentor": opts}


def test_steps_with_reward_variance_are_counted_per_rl_method(tmp_path):
    """Issue #11 part 5: the summary says in how many GRPO steps a group's rewards differed (the
    other steps had zero advantages and left the weights alone); the terminal table says it too."""
    import json

    from rich.console import Console

    from mentor.analysis.report import reward_variance_steps
    from mentor.display import summary_table

    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "reward": 0.0, "reward_std": 0.0, "frac_reward_zero_std": 1.0},
        {"step": 2, "reward": 0.5, "reward_std": 0.3, "frac_reward_zero_std": 0.5},
        {"step": 3, "reward": 0.2, "reward_std": 0.1},  # a log from before frac_reward_zero_std was recorded
        {"step": 4, "reward": 0.0, "reward_std": 0.0},
    ]) + "\n")
    assert reward_variance_steps(log) == {"rl_steps": 4, "steps_with_reward_variance": 2}
    assert reward_variance_steps(tmp_path / "none.jsonl") == {}
    console = Console(width=200, record=True)
    console.print(summary_table({"sft": {"in_domain_accuracy": 0.5},
                                 "mentor": {"in_domain_accuracy": 0.5, "rl_steps": 4, "steps_with_reward_variance": 2}}))
    assert "GRPO steps with reward variance: mentor 2/4" in console.export_text()
