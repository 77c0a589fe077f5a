"""The held-out probe scored during GRPO (mentor.train.probe) and the synthetic ``probe`` split."""

from __future__ import annotations

import json

import pytest

from mentor.data.synthetic import generate
from mentor.eval import evaluate, load_benchmark
from mentor.train import config as C
from mentor.train.probe import ProbeCallback, probe_options, read_probe, summarize


def test_probe_split_is_its_own_in_domain_stream():
    probe, test, tune = (generate(s, 40, 0) for s in ("probe", "test", "tune"))
    assert not {p.question for p in probe} & {p.question for p in test + tune}
    assert {p.family for p in probe} <= {p.family for p in generate("train", 400, 0)}  # training's families
    assert generate("probe", 3, 0)[0].question == probe[0].question  # deterministic, prefix-stable
    bench = load_benchmark("synthetic:probe", limit=5)
    assert bench.name == "synthetic:probe" and bench.domain == "in-domain" and len(bench.items) == 5
    assert all(item.meta["tools"] for item in bench.items)


def test_probe_options_are_validated_with_the_source_and_key():
    assert probe_options({"benchmark": "synthetic:probe"}, "x") == {
        "benchmark": "synthetic:probe", "every": 5, "limit": 16, "max_turns": 5, "max_new_tokens": 64}
    with pytest.raises(C.ConfigError, match=r"cfg.yaml: unknown key\(s\) \['evry'\] in 'probe'"):
        C.validate({"probe": {"benchmark": "synthetic:probe", "evry": 2}}, "cfg.yaml")
    with pytest.raises(C.ConfigError, match="cfg.yaml: probe.every must be a positive integer, got 0"):
        C.validate({"probe": {"benchmark": "synthetic:probe", "every": 0}}, "cfg.yaml")
    with pytest.raises(C.ConfigError, match="cfg.yaml: probe.benchmark must name a benchmark"):
        C.validate({"probe": {"every": 2}}, "cfg.yaml")
    with pytest.raises(C.ConfigError, match="cfg.yaml: 'probe' must be a mapping"):
        C.validate({"probe": "synthetic:probe"}, "cfg.yaml")
    # a flat override reaches the top-level key
    assert C.resolve(probe={"benchmark": "synthetic:probe", "every": 3})["probe"]["every"] == 3


def test_summarize_scores_the_teacher_as_perfect_and_a_no_tool_answer_as_unaligned():
    """On real evaluations: the program teacher solves every probe item with its own tools
    (accuracy 1, alignment 1, no invalid call); a "model" that answers at once without tools
    is never aligned and never uses a tool."""
    from mentor.generation.loop import Generation
    from mentor.teacher.base import teacher_generator
    from mentor.teacher.factory import TeacherConfig, build_teacher

    bench = load_benchmark("synthetic:probe", limit=6)
    gen = teacher_generator(build_teacher(TeacherConfig(backend="program")), [bench])
    rec = summarize(evaluate(generator=gen, benchmark=bench, max_turns=5, progress=False, temperature=0), bench)
    assert rec["accuracy"] == 1.0 and rec["alignment"] == 1.0 and rec["invalid_call_rate"] == 0.0
    assert rec["tool_usage_rate"] == 1.0 and rec["correct"] == [1] * 6 and rec["ids"] == [i.id for i in bench.items]
    assert rec["aligned"] == [1] * 6 and rec["invalid"] == [0] * 6
    assert rec["calls"] == [len(i.meta["tools"]) for i in bench.items]

    class Blurt:
        batch_size = 8

        def generate(self, conversations, tools, sampling):
            return [Generation({"role": "assistant", "content": "The answer is \\boxed{7}."}, tokens=8) for _ in conversations]

    rec = summarize(evaluate(generator=Blurt(), benchmark=bench, max_turns=5, progress=False, temperature=0), bench)
    assert rec["alignment"] == 0.0 and rec["tool_usage_rate"] == 0.0 and rec["calls_per_item"] == 0.0
    assert rec["calls"] == [0] * 6 and rec["aligned"] == [0] * 6


def test_resume_keeps_probe_records_up_to_the_checkpoint(tmp_path):
    cb = ProbeCallback({**probe_options({"benchmark": "synthetic:probe", "limit": 2}, "t")}, tmp_path, tokenizer=None)
    path = tmp_path / "probe.jsonl"
    path.write_text("".join(json.dumps({"step": s, "accuracy": s / 10}) + "\n" for s in (0, 5, 10)) + '{"step": 15, "acc')
    cb.resume_at(5)
    assert [r["step"] for r in read_probe(tmp_path)] == [0, 5] and cb._done == {0, 5}
    cb.resume_at(None)  # a fresh run: nothing kept
    assert read_probe(path) == [] and cb._done == set()


@pytest.mark.slow
def test_grpo_scores_the_probe_at_start_every_step_and_end(tmp_path):
    """Two GRPO steps with llama.cpp rollouts and a probe every step: records for steps 0, 1
    and 2 (the start model, then each update), the rollout engine synced once per step (the
    probe's sync is reused by the next step's rollouts), a run resumed from checkpoint 1 keeps
    steps 0-1 and re-scores step 2, and its step 2 draws the rollouts the uninterrupted run drew
    (the sampler's seed is keyed by the synced step, not by the engine's earlier calls)."""
    from mentor.data import synthetic_questions
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    refs = tmp_path / "refs.jsonl"
    generate_references(synthetic_questions("train", 4, 0), make_teacher("program"), refs, progress=False, seed=0)
    cfg = {"generation_backend": "llama_cpp", "lora_grpo": True, "model_dtype": "auto",
           "llama_cpp": {"weight_type": "q8_0", "n_ctx": 2048},
           "probe": {"benchmark": "synthetic:probe", "every": 1, "limit": 2, "max_turns": 2, "max_new_tokens": 24},
           "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                    "max_completion_length": 32, "max_tool_calling_iterations": 1, "bf16": "auto",
                    "save_steps": 1, "save_total_limit": 3, "learning_rate": 1e-4}}
    out = tmp_path / "out"
    plan = prepare_grpo(refs, out, preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=2)
    trainer, _ = build_grpo_trainer(plan)
    engine = trainer.rollout_engine
    syncs = []
    orig = engine.sync
    engine.sync = lambda model, step=None: (syncs.append(step), orig(model, step))
    trainer.train()
    assert syncs == [0, 1, 2]
    rows = read_probe(out)
    assert [r["step"] for r in rows] == [0, 1, 2]
    ids = [i.id for i in load_benchmark("synthetic:probe", limit=2).items]
    for r in rows:
        assert r["n"] == 2 and r["ids"] == ids and 0 <= r["accuracy"] <= 1 and r["benchmark"] == "synthetic:probe"
        assert set(r) >= {"invalid_call_rate", "tool_usage_rate", "alignment", "correct", "seconds"}
    first = rows[:2]
    step2 = _step_row(out, 2)

    plan = prepare_grpo(refs, out, preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=2, resume=True)
    assert plan.checkpoint and plan.checkpoint.endswith("checkpoint-2")
    (out / "checkpoint-2").rename(out / "moved")  # resume from checkpoint 1 instead
    plan = prepare_grpo(refs, out, preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=2, resume=True)
    assert plan.checkpoint.endswith("checkpoint-1")
    trainer, _ = build_grpo_trainer(plan)
    trainer.train(resume_from_checkpoint=plan.checkpoint)
    rows = read_probe(out)
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[:2] == first
    assert _step_row(out, 2) == step2


def _step_row(out, step: int) -> dict:
    """What step ``step`` sampled and scored (metrics.jsonl without its timings)."""
    from mentor.io import read_jsonl

    (row,) = [r for _, r in read_jsonl(out / "metrics.jsonl") if r.get("step") == step]
    keep = ("reward", "reward_std", "completion_length", "invalid_call_rate", "tool_usage_rate", "mean_tool_calls")
    assert all(k in row for k in keep), sorted(row)
    return {k: row[k] for k in keep}


@pytest.mark.slow
def test_probe_with_transformers_rollouts_scores_the_model_in_memory(tmp_path):
    """Without the llama.cpp engine the probe decodes with transformers on the policy in memory
    (LoRA adapter included), and leaves the trainer's tokenizer as it found it."""
    from mentor.data import synthetic_questions
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    refs = tmp_path / "refs.jsonl"
    generate_references(synthetic_questions("train", 2, 0), make_teacher("program"), refs, progress=False, seed=0)
    cfg = {"generation_backend": "transformers", "lora_grpo": True, "model_dtype": "float32",
           "probe": {"benchmark": "synthetic:probe", "every": 1, "limit": 2, "max_turns": 1, "max_new_tokens": 8},
           "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                    "max_completion_length": 16, "max_tool_calling_iterations": 1, "bf16": False,
                    "save_steps": 1000, "learning_rate": 1e-4}}
    plan = prepare_grpo(refs, tmp_path / "out", preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=1)
    trainer, _ = build_grpo_trainer(plan)
    assert getattr(trainer, "rollout_engine", None) is None
    side = trainer.processing_class.padding_side
    trainer.train()
    rows = read_probe(tmp_path / "out")
    assert [r["step"] for r in rows] == [0, 1] and all(r["n"] == 2 for r in rows)
    assert all(len(r["correct"]) == 2 and r["seconds"] > 0 for r in rows)
    assert trainer.processing_class.padding_side == side


def test_a_probe_under_deepspeed_zero3_is_refused_before_compute(tmp_path, monkeypatch):
    """The probe decodes on the main process alone; under ZeRO-3 every forward gathers weights
    from all processes, so the run would hang at its first probe. Refused at the plan."""
    from mentor.data import synthetic_questions
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references
    from mentor.train.common import TrainError
    from mentor.train.grpo import prepare_grpo

    refs = tmp_path / "refs.jsonl"
    generate_references(synthetic_questions("train", 2, 0), make_teacher("program"), refs, progress=False, seed=0)
    cfg = {"probe": {"benchmark": "synthetic:probe", "limit": 2},
           "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 16}}
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(TrainError, match="probe.*ZeRO-3.*deepspeed_zero2"):
        prepare_grpo(refs, tmp_path / "out", preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=1)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # ZeRO-2: whole weights on every process
    assert prepare_grpo(refs, tmp_path / "out", preset="mentor", model="smollm2-135m-compact", config=cfg,
                        max_steps=1).cfg["probe"]
