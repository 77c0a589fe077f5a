"""The teacher evaluated as a method (issue #12): each backend as a ``Generator`` that
``mentor.eval.evaluate`` runs like any model -- the program teacher on the synthetic family
(its plan played turn by turn through the evaluation's tool loop and ``Executor``), the
OpenAI-compatible teacher against a scripted chat server on loopback -- and the pipeline's
``teacher_eval`` stage (files, resume, not-applicable no-tools run, clear errors)."""

from __future__ import annotations

import json

import pytest
from oracle_teacher import build as build_oracle
from test_teach import _free_port, scripted_server  # noqa: F401 - a fixture: the scripted OpenAI-compatible server

from mentor.eval import evaluate, load_benchmark, result_name
from mentor.pipeline import TEACHER_STAGE, Pipeline, PipelineError, load_config
from mentor.teacher import ProgramTeacher
from mentor.teacher.factory import register_backend, unregister_backend
from mentor.tools import Executor


def recording_executor(seen: list):
    """The in-process executor (a subclass, so the loop's ``allowing`` copies keep it), appending every call to ``seen``."""

    class Recording(Executor):
        def execute(self, name, arguments):
            seen.append((name, dict(arguments)))
            return super().execute(name, arguments)

    return Recording()


@pytest.mark.parametrize("split", ["test", "ood"])
def test_program_teacher_is_evaluated_like_a_model(split):
    bench = load_benchmark(f"synthetic:{split}", limit=6)
    seen: list = []
    res = evaluate("program", bench, generator=ProgramTeacher().generator([bench]), executor=recording_executor(seen), max_turns=5,
                   temperature=0, progress=False, label="teacher")
    plans = [it.meta["plan"] for it in bench.items]
    assert res["n"] == 6 and res["accuracy"] == 1.0 and res["model"] == "teacher"
    assert res["settings"]["generator"] == "ProgramGenerator" and res["settings"]["decoding"]["mode"] == "greedy"
    # every call went through the evaluation's executor (the loop runs turn k of every item, then k + 1),
    # and its result is what the record shows
    by_turn = [(p[k]["name"], p[k]["arguments"]) for k in range(4) for p in plans if k < len(p)]
    assert seen == by_turn
    for rec, plan in zip(res["records"], plans, strict=True):
        assert rec["tool_names"] == [s["name"] for s in plan] and rec["invalid_calls"] == 0
        observed = [m["content"] for m in rec["completion"] if m["role"] == "tool"]
        assert observed == [s["result"] for s in plan] and rec["prediction"] == plan[-1]["result"]
        assert rec["turns"] == len(plan) + 1 and not rec["truncated"]
    assert res["tool_counts"] == {t: sum(s["name"] == t for p in plans for s in p) for t in res["tool_counts"]}


def test_program_teacher_under_a_short_turn_budget_is_cut_like_any_model():
    bench = load_benchmark("synthetic:test", limit=8)
    res = evaluate("program", bench, generator=ProgramTeacher().generator([bench]), max_turns=2, temperature=0, progress=False)
    for rec, item in zip(res["records"], bench.items, strict=True):
        short = len(item.meta["plan"]) == 1  # one call + the answer fit in two turns
        assert rec["correct"] is short and rec["truncated"] is (not short)
        assert rec["num_tool_calls"] == min(2, len(item.meta["plan"]))
    assert res["accuracy"] == sum(len(it.meta["plan"]) == 1 for it in bench.items) / 8


def test_program_teacher_refuses_no_tools_and_planless_benchmarks(tmp_path):
    bench = load_benchmark("synthetic:test", limit=2)
    gen = ProgramTeacher().generator([bench])
    assert gen.answers_without_tools is False
    with pytest.raises(ValueError, match="cannot answer without tools"):
        evaluate("program", bench, generator=gen, tools=False, temperature=0, progress=False)
    f = tmp_path / "plain.jsonl"
    f.write_text(json.dumps({"problem": "What is 2 + 3?", "answer": "5"}) + "\n")
    with pytest.raises(ValueError, match=r"'plain' has 1 item\(s\) without one"):
        ProgramTeacher().generator([load_benchmark(f)])


def _tiny(tmp_path, **eval_overrides):
    cfg = load_config(None, {"data": {"n": 4}, "eval": {"limit": 3, **eval_overrides}})
    return Pipeline(cfg, tmp_path / "run", progress=False)


def test_teacher_eval_stage_writes_results_and_resumes(tmp_path):
    pipe = _tiny(tmp_path)
    assert pipe.config.stages[:4] == ["data", "teach", TEACHER_STAGE, "vanilla"]
    pipe.run(["data", "teach", TEACHER_STAGE])
    d = pipe.eval_dir("teacher")
    assert sorted(p.name for p in d.iterdir()) == ["synthetic_ood.json", "synthetic_test.json"]  # no .no_tools: n/a
    marker = json.loads(pipe.marker(TEACHER_STAGE).read_text())
    assert marker["teacher"] == "program" and marker["no_tools"].startswith("not applicable")
    for name, bench in (("synthetic_test.json", "synthetic:test"), ("synthetic_ood.json", "synthetic:ood")):
        res = json.loads((d / name).read_text())
        assert res["benchmark"] == bench and res["n"] == 3 and res["model"] == "teacher"
        # the students' evaluation settings (cpu.yaml): same limit, turns, tokens and scorer
        assert (res["settings"]["max_turns"], res["settings"]["max_new_tokens"], res["settings"]["scorer"]) == (5, 64, "math_verify")
    # resume: a result that exists is not redone, a missing one is
    test_mtime = (d / "synthetic_test.json").stat().st_mtime_ns
    before = json.loads((d / "synthetic_ood.json").read_text())
    (d / "synthetic_ood.json").unlink()
    pipe.marker(TEACHER_STAGE).unlink()
    pipe.run([TEACHER_STAGE])
    assert (d / "synthetic_test.json").stat().st_mtime_ns == test_mtime
    after = json.loads((d / "synthetic_ood.json").read_text())
    assert [r["prediction"] for r in after["records"]] == [r["prediction"] for r in before["records"]]


def test_teacher_eval_config_and_backend_errors(tmp_path):
    with pytest.raises(PipelineError, match="eval.alignment_source: 'benchmark' needs the teacher's evaluation"):
        load_config(None, {"eval": {"teacher": False}})
    cfg = load_config(None, {"eval": {"teacher": False, "alignment_source": "references"}})
    assert TEACHER_STAGE not in Pipeline(cfg, tmp_path / "x", progress=False).config.stages
    register_backend("oracle", build_oracle)
    try:
        pipe = Pipeline(load_config(None, {"teacher": {"backend": "oracle"}, "data": {"n": 2}}), tmp_path / "o", progress=False)
        with pytest.raises(PipelineError, match="backend 'oracle' cannot be evaluated as a model"):
            pipe.run(["data", "teach", TEACHER_STAGE])
    finally:
        unregister_backend("oracle")
    port = _free_port()  # nothing listens there
    cfg = load_config(None, {"teacher": {"backend": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "x",
                                         "retries": 0}})
    with pytest.raises(PipelineError, match=f"cannot evaluate the teacher \\(openai\\): cannot reach .*127.0.0.1:{port}"):
        Pipeline(cfg, tmp_path / "u", progress=False).stage_teacher_eval()


def test_openai_teacher_evaluated_through_its_endpoint(scripted_server, tmp_path):  # noqa: F811
    url, script = scripted_server
    files = []
    for name, pairs in (("products", [(123, 45), (678, 90)]), ("more", [(2345, 67)])):
        f = tmp_path / f"{name}.jsonl"
        f.write_text("".join(json.dumps({"problem": f"What is {a} times {b}?", "answer": str(a * b)}) + "\n" for a, b in pairs))
        files.append(str(f))
    cfg = load_config(None, {"teacher": {"backend": "openai", "base_url": url, "model": "structured", "retries": 0},
                             "eval": {"in_domain": files[:1], "out_of_domain": files[1:]}})
    pipe = Pipeline(cfg, tmp_path / "run", progress=False)
    before = script.requests
    pipe.stage_teacher_eval()
    d = pipe.eval_dir("teacher")
    assert sorted(p.name for p in d.iterdir()) == sorted(result_name(f, tools) for f in files for tools in (True, False))
    res = json.loads((d / result_name(files[0], True)).read_text())
    assert res["accuracy"] == 1.0 and res["settings"]["generator"] == "OpenAIGenerator" and res["settings"]["base_url"] == url
    assert all(r["tool_names"] == ["multiply"] and r["invalid_calls"] == 0 for r in res["records"])
    # without tools the endpoint gets no schemas; its tool call is not run, so there is no answer
    bare = json.loads((d / result_name(files[0], False)).read_text())
    assert bare["settings"]["tools"] is False and bare["accuracy"] == 0.0
    # 3 items x 2 turns with tools + 3 x 1 turn without (and the reachability check, which is not a chat request)
    assert script.requests - before == 9


@pytest.mark.slow
def test_hf_teacher_is_its_loaded_generator(tiny_model_dir):
    from mentor.teacher.hf_backend import HFTeacher

    teacher = HFTeacher(tiny_model_dir, batch_size=2)
    gen = teacher.generator([], batch_size=3)
    assert teacher.generator([]) is gen and gen.batch_size == 3  # loaded once, shared with reference generation
    res = evaluate(tiny_model_dir, "synthetic:test", generator=gen, limit=2, max_turns=1, max_new_tokens=4, progress=False)
    assert res["n"] == 2 and res["settings"]["generator"] == "HFGenerator" and res["settings"]["batch_size"] == 3
    assert all(r["generated_tokens"] > 0 for r in res["records"])
