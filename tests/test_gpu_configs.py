"""The paper-scale GPU configs: each training config (`configs/qwen*.yaml`) and each GPU pipeline
(`configs/pipeline/gpu-*.yaml`: the four Table 2 students and the Table 3 ablation) checked without
a GPU. Fast: the pipelines name their training config and student, their headers launch themselves,
the Table 3 pipeline runs the paper's five reward presets, and `extends:` (the derived pipelines
start from gpu-qwen2.5-1.5b.yaml) merges as documented. Slow: CPU dry runs that train a tiny
RANDOM model of each student's architecture family through its first optimizer steps and evaluate it.

What a CPU needs is overridden, and nothing else: the model (a 2-layer Qwen2/Qwen3 with the
family's official tool chat template, as TRL ships it, over a ~700-token byte-level BPE:
no Hub access here; `mentor.smoke.tiny_student`, which scripts/gpu-smoke trains on a GPU), `use_cpu`,
vLLM off, no DeepSpeed (no `accelerate launch`), 16 new tokens.
The configs are resolved as on a CUDA machine (without `configs/cpu.yaml` underneath), and the
test asserts that the run is the paper's: TRL's `loss_type` "grpo" (Eq. 3), beta, epsilon, lr,
10 rollouts per question, and TWO optimizer steps per generation batch, counted with
`on_optimizer_step` against the generation calls. On 1 process the generation batch is 2
questions (20 completions) and a step 1 question; on the 8 GPUs of configs/accelerate/*.yaml
TRL's own arithmetic gives 16 and 8 (tests/test_train_config.py, `test_gpu_schedule_on_8_processes`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mentor.smoke import tiny_student, write_references
from mentor.train import config as C

REPO = Path(__file__).resolve().parents[1]
PIPELINE_DIR = REPO / "configs" / "pipeline"
#: every GPU pipeline config: the four students (the others extend FULL) and Table 3
PIPELINES = sorted(p.name for p in PIPELINE_DIR.glob("gpu-*.yaml"))
FULL = "gpu-qwen2.5-1.5b.yaml"
TABLE3 = "gpu-table3-qwen2.5-7b.yaml"
#: the recommended sampling of each family's real checkpoints (their generation_config.json)
RECOMMENDED = {"qwen2.5": {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20},
               "qwen3": {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}}
#: config -> (architecture family, tied input/output embeddings as in the real checkpoint, chat template)
STUDENTS = {
    "qwen2.5-1.5b-instruct.yaml": ("qwen2", True, "qwen2.5"),
    "qwen2.5-7b-instruct.yaml": ("qwen2", False, "qwen2.5"),
    "qwen3-1.7b.yaml": ("qwen3", True, "qwen3"),
    "qwen3-8b.yaml": ("qwen3", False, "qwen3"),
}
#: the only GRPOConfig / SFTConfig settings a CPU dry run changes
CPU_GRPO = {"use_cpu": True, "use_vllm": False, "max_completion_length": 16, "max_steps": 2}
CPU_SFT = {"use_cpu": True, "max_steps": 1}
#: the evaluation of the derived pipelines' dry runs: their eval section is the 1.5B's (checked by
#: the fast test below), whose dry run evaluates every benchmark available offline; these keep one math
#: set and one BFCL category (each family's template renders BFCL's own tools), 1 item each
SHORT_EVAL = {"in_domain": ["aime24"], "out_of_domain": ["bfcl:simple_python"], "limit": 1}


def pipeline(name: str) -> dict:
    from mentor.pipeline import load_config

    return load_config(PIPELINE_DIR / name)


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """``(family, tied, style) -> model directory``: each tiny student built once per module, with
    its family's recommended sampling in its generation config."""
    built: dict[tuple, Path] = {}

    def get(family: str, tied: bool, style: str) -> Path:
        key = (family, tied, style)
        if key not in built:
            out = tmp_path_factory.mktemp(f"student-{family}-{'tied' if tied else 'untied'}")
            built[key] = tiny_student(out, family, tied, style, generation=RECOMMENDED[style])
        return built[key]

    return get


# ----------------------------------------------------------------------------- fast


@pytest.mark.parametrize("name", PIPELINES)
def test_gpu_pipeline_names_its_training_config_and_launches_itself(name):
    from mentor.pipeline import PipelineConfig
    from mentor.train.config import bundled_path

    cfg = pipeline(name)
    p = PipelineConfig.from_mapping(cfg)
    train = bundled_path(p.train.config)
    assert train.is_file() and train.name in STUDENTS, p.train.config
    raw = C.load_yaml(train)
    assert raw["model"] == p.student  # the pipeline's student is the one its training config was written for
    assert raw["grpo"]["temperature"] == (0.6 if "qwen3" in train.name else 0.7)  # Table 5's rollout temperature
    assert p.rl_init == "base" and p.eval.temperature is None and p.eval.top_p is None  # recommended sampling
    # the header's commands run this file, and train under the accelerate config the training config names
    text = (PIPELINE_DIR / name).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert set(re.findall(r"--config (\S+)", header)) == {f"configs/pipeline/{name}"}
    accel = set(re.findall(r"--config_file (\S+)", header))
    assert accel == {train.read_text().split("--config_file ")[1].split()[0]} and all((REPO / a).is_file() for a in accel)
    base = pipeline(FULL)  # what the dry runs below rely on: the shared sections are the 1.5B's
    for section in ("data", "teacher", "eval"):
        assert cfg[section] == base[section], section
    methods = p.train.rl_methods
    if name == TABLE3:  # Table 3: the paper's five reward settings (SPEC: 1 sparse ... 5 MENTOR), in its order
        from mentor.rewards import PRESETS

        table3 = ["sparse", "format", "validation", "f1", "mentor"]
        assert list(methods.items()) == [(preset, preset) for preset in table3] and set(table3) <= set(PRESETS)
        assert p.student == "Qwen/Qwen2.5-7B-Instruct"
    else:  # Table 2: vanilla and SFT (stages of every pipeline), Sparse and MENTOR
        assert methods == {"sparse": "sparse", "mentor": "mentor"}
        assert p.methods == ["vanilla", "sft", "sparse", "mentor"]


def test_gpu_pipelines_cover_the_four_students():
    assert {FULL, TABLE3} <= set(PIPELINES) and len(PIPELINES) == 5
    table2 = [n for n in PIPELINES if n != TABLE3]
    assert {pipeline(n)["student"] for n in table2} == {C.load_yaml(REPO / "configs" / t)["model"] for t in STUDENTS}


def test_extends_merges_sections_and_replaces_methods(tmp_path):
    from mentor.pipeline import PipelineError, load_config

    base = tmp_path / "base.yaml"
    base.write_text("name: base\nseed: 3\ndata: {n: 5}\ntrain: {sft: {max_steps: 2}, rl: {max_steps: 4}, "
                    "methods: {sparse: sparse, mentor: mentor}}\neval: {limit: 2, max_turns: 3}\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../base.yaml\nname: child\ntrain: {rl: {max_steps: 1}, methods: {f1: f1, sparse: sparse}}\n"
                     "eval: {limit: 1}\n")
    grandchild = tmp_path / "sub" / "grandchild.yaml"
    grandchild.write_text("extends: child.yaml\ndata: {n: 7}\n")
    cfg = load_config(grandchild, {"eval": {"max_turns": 2}})
    assert (cfg["name"], cfg["seed"], cfg["data"], cfg["eval"]) == ("child", 3, {"n": 7}, {"limit": 1, "max_turns": 2})
    assert cfg["train"]["sft"] == {"max_steps": 2} and cfg["train"]["rl"] == {"max_steps": 1}  # key by key
    assert list(cfg["train"]["methods"].items()) == [("f1", "f1"), ("sparse", "sparse")]  # whole, in the child's order
    assert "extends" not in cfg and cfg["_source"] == str(grandchild)
    # a bundled file by name, from anywhere
    elsewhere = tmp_path / "mine.yaml"
    elsewhere.write_text("extends: gpu-qwen2.5-7b.yaml\nname: mine\n")
    assert load_config(elsewhere)["student"] == "Qwen/Qwen2.5-7B-Instruct"
    for text, error in (("extends: nope.yaml\n", "nope.yaml not found"), ("extends: loop.yaml\n", "closes a loop (loop.yaml -> loop.yaml)"),
                        ("extends: [a]\n", "expected the file name"), ("extends: base.yaml\ntrain: {method: {}}\n", "method")):
        bad = tmp_path / "loop.yaml"
        bad.write_text(text)
        with pytest.raises(PipelineError, match=re.escape(error)):
            load_config(bad)


@pytest.fixture
def gpu_machine(monkeypatch):
    """Configs resolve as on a CUDA machine: the paper's defaults, then the GPU config, without
    configs/cpu.yaml underneath (mentor.train.config.resolve layers it only without CUDA)."""
    monkeypatch.setattr(C, "default_config_path", lambda: None)


def paper_settings(cfg: dict, overrides: dict) -> dict:
    """``cfg`` without the keys a CPU dry run overrides (what must be the GPU config's own)."""
    out = {k: v for k, v in cfg.items() if k not in ("model", "grpo", "sft") and not k.startswith("_")}
    for section in ("grpo", "sft"):
        out[section] = {k: v for k, v in cfg[section].items() if k not in overrides[section]}
    return out


class Recorder:
    """Counts a trainer's optimizer steps (``on_optimizer_step``), its generation calls (with the
    questions and completions of each) and the completions of each loss micro-batch."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class Steps(TrainerCallback):
            def on_optimizer_step(self, args, state, control, **kwargs):
                outer.optimizer_steps += 1

        self.callback, self.optimizer_steps, self.generations, self.micro_batches = Steps(), 0, [], []

    def attach(self, trainer):
        generate, loss = trainer._generate_and_score_completions, trainer.compute_loss

        def counted_generate(batch):
            out = generate(batch)
            self.generations.append({"questions": len({row["id"] for row in batch}), "completions": len(out["completion_ids"]),
                                     "old_logps": out.get("old_per_token_logps") is not None})
            return out

        def counted_loss(model, inputs, *args, **kwargs):
            if model.training:
                self.micro_batches.append(len(inputs["completion_ids"]))
            return loss(model, inputs, *args, **kwargs)

        trainer._generate_and_score_completions, trainer.compute_loss = counted_generate, counted_loss
        return trainer


def assert_paper_grpo(trainer, temperature: float) -> None:
    """What TRL actually runs with: Table 5 and Eq. 3."""
    a = trainer.args
    assert trainer.loss_type == "grpo" and a.scale_rewards in ("group", True)  # Eq. 3; advantages over group std
    assert (trainer.beta, trainer.epsilon_low, trainer.epsilon_high) == (0.001, 0.2, 0.2)
    assert (a.learning_rate, a.optim, a.num_train_epochs, a.num_iterations) == (1e-6, "adamw_torch", 2, 1)
    assert (trainer.num_generations, trainer.temperature) == (10, temperature)
    assert (a.per_device_train_batch_size, a.gradient_accumulation_steps, a.steps_per_generation) == (10, 1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_gpu_training_config_dry_run(name, tmp_path, gpu_machine, students):
    from mentor.eval import evaluate
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo, save_final
    from mentor.train.sft import build_sft_trainer, prepare_sft

    family, tied, style = STUDENTS[name]
    student = students(family, tied, style)
    refs = write_references(tmp_path / "refs.jsonl")
    path = REPO / "configs" / name
    over = {"grpo": CPU_GRPO, "sft": CPU_SFT}
    plan = prepare_grpo(refs, tmp_path / "grpo", preset="mentor", model=str(student), config=path, **over)
    assert paper_settings(plan.cfg, over) == paper_settings(C.resolve(path), over)  # nothing else changed
    rec = Recorder()
    trainer, _ = build_grpo_trainer(plan, callbacks=[rec.callback])
    assert_paper_grpo(rec.attach(trainer), yaml.safe_load(path.read_text())["grpo"]["temperature"])
    trainer.train()
    # one generation batch (2 questions x 10 rollouts on 1 process), two optimizer steps of 1 question
    assert rec.generations == [{"questions": 2, "completions": 20, "old_logps": True}], rec.generations
    assert rec.optimizer_steps == 2 and rec.micro_batches == [10, 10] and trainer.state.global_step == 2
    schedule = json.loads((tmp_path / "grpo" / "run.json").read_text())["schedule"]
    assert schedule == {"processes": 1, "questions_per_generation": 2, "completions_per_generation": 20,
                        "questions_per_optimizer_step": 1, "completions_per_optimizer_step": 10,
                        "optimizer_steps_per_generation": 2, "loss_type": "grpo"}
    save_final(trainer, tmp_path / "grpo" / "final")
    res = evaluate(str(tmp_path / "grpo" / "final"), "aime24", limit=2, max_new_tokens=16, max_turns=2, progress=False)
    assert res["n"] == 2 and all(r["generated_tokens"] > 0 for r in res["records"])
    # the SFT section (Table 6) through its first optimizer step with the same model
    prep = prepare_sft(refs, tmp_path / "sft", model=str(student), config=path, **over)
    s = prep["cfg"]["sft"]
    assert (s["learning_rate"], s["weight_decay"], s["per_device_train_batch_size"], s["gradient_accumulation_steps"]) == (1e-7, 0.033, 4, 16)
    rec = Recorder()
    sft_trainer = build_sft_trainer(prep, callbacks=[rec.callback])
    sft_trainer.train()
    assert rec.optimizer_steps == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_gpu_pipeline_dry_run(name, tmp_path, gpu_machine, monkeypatch, students):
    """Each `configs/pipeline/gpu-*.yaml` through its training stages (under `accelerate launch` on
    GPUs) and its evaluation and report: the teacher's references (a 235B model served elsewhere)
    are given as a file, as the teach stage would leave them; the benchmarks that exist only on the
    Hub are left out (no Hub access); evaluation runs in-process instead of vLLM, with each family's
    recommended sampling. The Table 3 pipeline's five RL methods take one optimizer step each."""
    from transformers.trainer_callback import CallbackHandler
    from trl import GRPOTrainer

    from mentor.pipeline import Pipeline, PipelineConfig, load_config
    from mentor.tasks import get_task
    from mentor.tasks.bfcl import GROUPS as BFCL_GROUPS
    from mentor.tasks.math import MATH_SETS

    path = PIPELINE_DIR / name
    gpu = PipelineConfig.from_mapping(load_config(path))
    training = Path(gpu.train.config).name
    family, tied, style = STUDENTS[training]
    if name == FULL:
        # the FlashRAG QA samples and their wiki-18 retriever need downloads: tests/test_rag_eval.py
        # and tests/test_paper_acceptance.py run them on local stand-ins
        hub_only = {n for n, (local, _) in MATH_SETS.items() if local is None} | set(get_task("qa").names())
        in_domain = [b for b in gpu.eval.in_domain if b not in hub_only]
        out_of_domain = [b for b in gpu.eval.out_of_domain if b not in hub_only]
        assert in_domain == ["aime24", "amc23", "minervamath"] and out_of_domain == ["bfcl:v4"]
        evals = {"in_domain": in_domain, "out_of_domain": out_of_domain, "limit": 2}
    else:
        evals = SHORT_EVAL
    steps = 1 if name == TABLE3 else 2  # optimizer steps per RL method (one generation batch either way)
    cfg = load_config(path, {
        "student": str(students(family, tied, style)),
        "train": {"sft": CPU_SFT, "rl": {**CPU_GRPO, "max_steps": steps}},
        "eval": {**evals, "max_new_tokens": 16, "server": None, "retriever": None},
    })
    out = tmp_path / "run"
    write_references(out / "references.jsonl")

    seen = {"generations": [], "optimizer_steps": 0}
    generate, step = GRPOTrainer._generate_and_score_completions, CallbackHandler.on_optimizer_step

    def counted_generate(self, batch):
        result = generate(self, batch)
        seen["generations"].append(len(result["completion_ids"]))
        return result

    def counted_step(self, args, state, control, **kwargs):
        seen["optimizer_steps"] += 1
        return step(self, args, state, control, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", counted_generate)
    monkeypatch.setattr(CallbackHandler, "on_optimizer_step", counted_step)
    pipe = Pipeline(cfg, out, progress=False)
    rl = gpu.train.rl_methods
    per_stage = {}
    for stage in ("vanilla", "sft", *rl, "eval", "report"):
        seen.update(generations=[], optimizer_steps=0)
        pipe.run([stage])
        per_stage[stage] = (list(seen["generations"]), seen["optimizer_steps"])
    assert per_stage["sft"] == ([], 1)
    temperature = C.load_yaml(REPO / "configs" / training)["grpo"]["temperature"]  # Table 5: 0.7 Qwen2.5, 0.6 Qwen3
    for method, preset in rl.items():
        assert per_stage[method] == ([20], steps), method  # a generation batch of 2 questions x 10 rollouts
        run = json.loads((out / "models" / method / "run.json").read_text())
        assert run["schedule"]["optimizer_steps_per_generation"] == 2 and run["schedule"]["loss_type"] == "grpo"
        g = run["config"]["grpo"]
        assert (g["beta"], g["epsilon"], g["learning_rate"], g["num_generations"], g["temperature"]) == (0.001, 0.2, 1e-6, 10, temperature)
        assert run["config"]["preset"] == preset and run["config"]["model"] == cfg["student"]  # rl_init: base
        assert (out / "models" / method / "final" / "config.json").exists()
    benches = evals["in_domain"] + evals["out_of_domain"]
    limit = evals["limit"]
    items = {b: limit * len(BFCL_GROUPS["v4"]) if b == "bfcl:v4" else limit for b in benches}  # BFCL v4: per category
    rec = RECOMMENDED[style]
    for method in ("vanilla", "sft", *rl):
        for bench in benches:
            res = json.loads((out / "eval" / method / (bench.replace(":", "_") + ".json")).read_text())
            assert res["n"] == items[bench], (method, bench, res["n"])
            decoding = res["settings"]["decoding"]  # the model's own generation_config.json, as the paper
            assert decoding["mode"] == "recommended" and decoding["generation_config"], decoding
            assert (decoding["temperature"], decoding["top_p"], decoding["top_k"]) == (rec["temperature"], rec["top_p"], rec["top_k"])
            if bench in evals["in_domain"]:
                assert res["settings"]["scorer"] == "exact"
    assert (out / "eval" / "vanilla" / "aime24.no_tools.json").exists()  # tool_effect
    # the teacher's row is there (eval.teacher), empty: no teacher_eval stage ran here
    assert set(json.loads((out / "summary.json").read_text())) == {"teacher", "vanilla", "sft", *rl}
