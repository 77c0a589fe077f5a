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
    ticks: list[int] = []
    res = evaluate(None, bench, generator=gen, batch_size=2, progress=ticks.append, out=out, label="scripted")
    assert ticks == [3, 4, 5, 6]  # progress counts the resumed items as done
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
    monkeypatch.setattr(Pipeline, "_generator", lambda self, method, model, stack, row=None: gens.pop(0))
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


# ----------------------------------------------------------------------------- training

#: `mentor train <stage> ...` as users run it, optionally SIGKILLed right after checkpoint-{kill} is
#: saved; for GRPO the rollouts are the fixed group of test_learning_signal (a random tiny model
#: samples nothing with reward variance, so it would not move), everything else is the real run.
TRAIN_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from transformers import TrainerCallback
import mentor.train.grpo as G
import mentor.train.sft as S

class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == {kill}:
            os.kill(os.getpid(), signal.SIGKILL)

build_grpo, build_sft = G.build_grpo_trainer, S.build_sft_trainer

def grpo(plan, *args, **kwargs):
    from test_learning_signal import _fixed_generation
    trainer, recorder = build_grpo(plan, *args, **kwargs)
    _fixed_generation(trainer)
    trainer.add_callback(KillAfterSave())
    return trainer, recorder

def sft(prep, *args, **kwargs):
    trainer = build_sft(prep, *args, **kwargs)
    trainer.add_callback(KillAfterSave())
    return trainer

G.build_grpo_trainer, S.build_sft_trainer = grpo, sft
sys.argv = ["mentor", *{argv!r}]
from mentor.cli import main
main()
"""


def _train(argv: list[str], kill: int = -1) -> subprocess.CompletedProcess:
    script = TRAIN_SCRIPT.format(tests=str(TESTS), kill=kill, argv=argv)
    return subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=600)


def _train_refs(path: Path) -> Path:
    sys.path.insert(0, str(TESTS))
    from test_train import _refs

    return _refs(path)


def _train_cfg(path: Path) -> Path:
    import yaml

    cfg = {"tools": ["add", "multiply"], "seed": 0,
           "grpo": {"num_generations": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "max_completion_length": 96,
                    "max_tool_calling_iterations": 1, "learning_rate": 1e-3, "save_steps": 1, "save_total_limit": None,
                    "use_cpu": True},
           "sft": {"learning_rate": 1e-2, "per_device_train_batch_size": 2, "save_steps": 1, "save_total_limit": None,
                   "use_cpu": True}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _weights(model_dir: Path) -> dict:
    from mentor.models import load_model

    return {k: v.detach().clone() for k, v in load_model(str(model_dir)).state_dict().items()}


def _adam_steps(ckpt: Path) -> set[float]:
    import torch

    opt = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False)
    return {float(s["step"]) for s in opt["state"].values()}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["grpo", "sft"])
def test_training_killed_after_step_k_resumes_at_k_plus_1(tmp_path, tiny_model_dir, stage):
    import torch

    k, n = 2, 4
    refs, cfg = _train_refs(tmp_path / "refs.jsonl"), _train_cfg(tmp_path / "cfg.yaml")
    common = ["--references", str(refs), "--model", tiny_model_dir, "--config", str(cfg), "--max-steps", str(n)]
    preset = ["--preset", "mentor"] if stage == "grpo" else []

    # the reference: n steps in one go
    full = tmp_path / "full"
    r = _train(["train", stage, *preset, *common, "--output-dir", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]

    # killed (SIGKILL) right after checkpoint-k was written
    out = tmp_path / "killed"
    r = _train(["train", stage, *preset, *common, "--output-dir", str(out)], kill=k)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{i}" for i in range(1, k + 1)]
    before = _lines(out / "metrics.jsonl")
    assert [json.loads(x)["step"] for x in before] == list(range(1, k + 1))
    ckpt_mtime = (out / f"checkpoint-{k}" / "trainer_state.json").stat().st_mtime_ns

    t_resume = time.time()
    r = _train(["train", stage, *preset, *common, "--output-dir", str(out), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    after = _lines(out / "metrics.jsonl")
    # lines 1..k untouched (same bytes, written before the resume), k+1..n written by the resumed run
    assert after[:k] == before
    assert [json.loads(x)["step"] for x in after] == list(range(1, n + 1))
    assert all(json.loads(x)["time"] < t_resume for x in after[:k])
    assert all(json.loads(x)["time"] > t_resume for x in after[k:])
    assert (out / f"checkpoint-{k}" / "trainer_state.json").stat().st_mtime_ns == ckpt_mtime
    state = json.loads((out / f"checkpoint-{n}" / "trainer_state.json").read_text())
    assert state["global_step"] == n
    # the optimizer state continued: Adam's step count is n, not n - k (a fresh optimizer)
    assert _adam_steps(out / f"checkpoint-{n}") == {float(n)}
    assert _adam_steps(out / f"checkpoint-{k}") == {float(k)}
    # and the run ends where the uninterrupted one does (model, optimizer, schedule, data order, RNG)
    a, b = _weights(full / "final"), _weights(out / "final")
    assert a.keys() == b.keys()
    worst = max((a[key] - b[key]).abs().max().item() for key in a)
    assert worst < 1e-5, worst
    assert any(not torch.equal(a[key], _weights(tiny_model_dir)[key]) for key in a)  # it did train
    # the loss / reward curve matches the uninterrupted run's, step for step
    key = "reward" if stage == "grpo" else "loss"
    full_curve = [json.loads(x)[key] for x in _lines(full / "metrics.jsonl")]
    assert [json.loads(x)[key] for x in after] == pytest.approx(full_curve, abs=1e-4)
