"""Fast checks of mentor.train: config validation, GPU configs, data building, CLI errors
raised before any compute (no model weights are loaded in this file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mentor.train import config as C

REPO = Path(__file__).resolve().parents[1]
GPU_CONFIGS = {
    "qwen2.5-1.5b-instruct.yaml": ("Qwen/Qwen2.5-1.5B-Instruct", 0.7),
    "qwen2.5-7b-instruct.yaml": ("Qwen/Qwen2.5-7B-Instruct", 0.7),
    "qwen3-1.7b.yaml": ("Qwen/Qwen3-1.7B", 0.6),
    "qwen3-8b.yaml": ("Qwen/Qwen3-8B", 0.6),
}


def write_refs(path: Path, with_teacher: bool = True) -> Path:
    rows = []
    for i, (a, b, op, name) in enumerate([(6, 7, "times", "multiply"), (15, 27, "plus", "add")]):
        ans = str(a * b if name == "multiply" else a + b)
        row = {
            "id": f"q{i}", "question": f"What is {a} {op} {b}?", "answer": ans, "correct": True,
            "messages": [
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": name, "arguments": json.dumps({"firstNumber": a, "secondNumber": b})}}]},
                {"role": "tool", "name": name, "content": ans},
                {"role": "assistant", "content": f"So the answer is \\boxed{{{ans}}}."},
            ],
            "teacher_answer": ans, "teacher_tools": [name],
        }
        if not with_teacher:
            del row["teacher_answer"], row["teacher_tools"]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", sorted(GPU_CONFIGS))
def test_gpu_configs_validate_and_follow_table5(name):
    path = REPO / "configs" / name
    raw = C.load_yaml(path)  # validates every key against GRPOConfig / SFTConfig / LoraConfig
    hub, temp = GPU_CONFIGS[name]
    assert raw["model"] == hub
    cfg = C.resolve(path)
    g = cfg["grpo"]
    assert (g["num_generations"], g["beta"], g["epsilon"], g["learning_rate"], g["temperature"]) == (10, 0.001, 0.2, 1e-6, temp)
    assert g["use_vllm"] and g["vllm_gpu_memory_utilization"] == 0.8 and g["max_completion_length"] == 8192
    assert g["loss_type"] == "grpo"  # Eq. 3: per-completion mean, then the mean over completions
    s = cfg["sft"]
    assert (s["learning_rate"], s["weight_decay"], s["per_device_train_batch_size"], s["assistant_only_loss"]) == (1e-7, 0.033, 4, True)
    text = path.read_text()
    assert "accelerate launch --config_file configs/accelerate/deepspeed_" in text
    accel = text.split("--config_file ")[1].split()[0]
    assert yaml.safe_load((REPO / accel).read_text())["distributed_type"] == "DEEPSPEED"


@pytest.mark.parametrize("name", sorted(GPU_CONFIGS))
def test_gpu_schedule_on_8_processes(name, monkeypatch, tmp_path):
    """Table 5's schedule, by TRL's own arithmetic (GRPOConfig.__post_init__) on the 8 processes
    of configs/accelerate/*.yaml: 16 questions x 10 rollouts generated, 2 optimizer steps of 8."""
    from trl import GRPOConfig

    from mentor.train.grpo import batch_schedule

    path = REPO / "configs" / name
    accel = path.read_text().split("--config_file ")[1].split()[0]
    processes = yaml.safe_load((REPO / accel).read_text())["num_processes"]
    monkeypatch.setattr(C, "default_config_path", lambda: None)  # resolved as on a CUDA machine
    monkeypatch.setattr(GRPOConfig, "world_size", property(lambda self: processes))
    g = C.resolve(path)["grpo"]
    args = GRPOConfig(output_dir=str(tmp_path), **{**g, "use_cpu": True})  # use_cpu: bf16 is checked against the device
    assert batch_schedule(args) == {"processes": 8, "questions_per_generation": 16, "completions_per_generation": 160,
                                    "questions_per_optimizer_step": 8, "completions_per_optimizer_step": 80,
                                    "optimizer_steps_per_generation": 2, "loss_type": "grpo"}
    assert "10 x 8 x 2 = 160" in path.read_text()  # the arithmetic the config's comment states


@pytest.mark.parametrize("processes", [1, 2, 8])
def test_no_config_on_a_gpu_machine_is_a_valid_grpo_config(processes, monkeypatch, tmp_path):
    """``mentor train grpo`` without ``--config`` on CUDA: the paper's defaults alone (no
    configs/cpu.yaml base). TRL's default batch of 8 per process was refused with 10 rollouts."""
    from trl import GRPOConfig

    from mentor.train.common import seed_and_section

    monkeypatch.setattr(C, "default_config_path", lambda: None)  # resolved as on a CUDA machine
    monkeypatch.setattr(GRPOConfig, "world_size", property(lambda self: processes))
    cfg = C.resolve(None)
    args = GRPOConfig(output_dir=str(tmp_path), **{**seed_and_section(cfg, "grpo"), "use_cpu": True})
    assert args.generation_batch_size % args.num_generations == 0 and args.num_generations == 10


def test_one_tensorboard_writer_on_the_main_process_only(tmp_path):
    """A config's ``report_to: [tensorboard]`` does not add transformers' own writer beside
    mentor's; under ``accelerate launch`` only rank 0 writes one, and a rank > 0 leaves the
    main process's files alone."""
    from types import SimpleNamespace

    from transformers.integrations import TensorBoardCallback

    from mentor.train.common import seed_and_section, step_loggers

    assert seed_and_section({"grpo": {"report_to": ["tensorboard", "wandb"]}}, "grpo")["report_to"] == ["wandb"]
    assert seed_and_section({"sft": {"report_to": "tensorboard"}}, "sft")["report_to"] == "none"
    assert seed_and_section({"sft": {}}, "sft")["report_to"] == "none"
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    assert step_loggers(SimpleNamespace(process_index=3), tmp_path, None) == []
    assert (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "tensorboard").exists()
    loggers = step_loggers(SimpleNamespace(process_index=0), tmp_path, None)
    assert [type(c) for c in loggers] == [TensorBoardCallback] and not (tmp_path / "metrics.jsonl").exists()
    assert step_loggers(SimpleNamespace(process_index=0), tmp_path, None)  # again: nothing to remove, no error


def test_cpu_config_scales_table5_down_and_says_so():
    text = (REPO / "configs" / "cpu.yaml").read_text()
    assert "SCALED DOWN" in text and "Table 5" in text and "learning rate" in text
    cfg = C.resolve(REPO / "configs" / "cpu.yaml")
    assert cfg["grpo"]["num_generations"] < C.PAPER_GRPO["num_generations"]
    assert cfg["grpo"]["learning_rate"] > C.PAPER_GRPO["learning_rate"]
    assert cfg["grpo"]["epsilon"] == 0.2 == C.PAPER_GRPO["epsilon"]
    # the CPU speed departures (issue #11) are on here and say what the paper does instead
    assert cfg["grpo"]["beta"] == 0.0 and C.PAPER_GRPO["beta"] == 0.001 and "0.001" in text
    assert cfg["lora_grpo"] and cfg["generation_backend"] == "llama_cpp" and "full fine-tuning" in text
    # the loss aggregation departs from Eq. 3 (PAPER_GRPO: grpo) and the file says so
    assert C.PAPER_GRPO["loss_type"] == "grpo" and cfg["grpo"]["loss_type"] == "dapo" and "Eq. 3" in text


def test_unknown_grpo_key_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo:\n  num_generation: 4\n")
    with pytest.raises(C.ConfigError, match=r"bad\.yaml.*'num_generation'.*GRPOConfig.*did you mean 'num_generations'"):
        C.load_yaml(bad)
    bad.write_text("num_generations: 4\n")
    with pytest.raises(C.ConfigError, match="put it under the 'grpo' section"):
        C.load_yaml(bad)
    bad.write_text("grpo:\n  reward_weights: [1, 2, 3]\n")
    with pytest.raises(C.ConfigError, match="weights"):
        C.load_yaml(bad)
    bad.write_text("preset: dense\n")
    with pytest.raises(C.ConfigError, match="unknown reward preset 'dense'"):
        C.load_yaml(bad)
    with pytest.raises(C.ConfigError, match="tools"):
        C.resolve({"tools": ["add", "no_such_tool"]})


def test_overrides_route_to_sections():
    cfg = C.resolve({"grpo": {"num_generations": 2}}, max_steps=3, learning_rate=0.5, r=4, seed=7)
    assert cfg["grpo"]["num_generations"] == 2 and cfg["grpo"]["max_steps"] == 3 and cfg["sft"]["max_steps"] == 3
    assert cfg["grpo"]["learning_rate"] == 0.5 and cfg["sft"]["learning_rate"] == 0.5 and cfg["lora"]["r"] == 4
    assert cfg["seed"] == 7
    with pytest.raises(C.ConfigError, match="not a mentor key"):
        C.resolve(None, warmup_stepz=1)


def test_datasets_from_references(tmp_path):
    from mentor.train import data as D

    refs = D.references(write_refs(tmp_path / "refs.jsonl"))
    rows = D.grpo_rows(refs)
    assert rows[0]["prompt"][-1]["role"] == "user" and rows[0]["prompt"][-1]["content"].startswith("Question: What is 6 times 7?")
    assert rows[0]["teacher_answer"] == "42" and rows[0]["teacher_tools"] == ["multiply"]
    ds = D.sft_dataset(refs, tools=["add", "multiply"])
    conv = ds[0]["messages"]
    # Arguments are objects again (references may carry them as JSON strings) and keep their own keys.
    assert conv[1]["tool_calls"][0]["function"]["arguments"] == {"firstNumber": 6, "secondNumber": 7}
    assert [t["function"]["name"] for t in json.loads(ds[0]["tools"])] == ["add", "multiply"]


def _cli(args):
    from mentor.cli import app

    return CliRunner().invoke(app, args)


def test_cli_errors_before_compute(tmp_path, default_model_path):
    good = write_refs(tmp_path / "refs.jsonl")
    bad = write_refs(tmp_path / "bad.jsonl", with_teacher=False)
    out = tmp_path / "run"
    r = _cli(["train", "grpo", "--references", str(bad), "--output-dir", str(out)])
    assert r.exit_code == 2 and "bad.jsonl, line 1, field 'teacher_answer'" in r.output.replace("\n", "")
    r = _cli(["train", "grpo", "--preset", "dense", "--references", str(good), "--output-dir", str(out)])
    assert r.exit_code == 2 and "unknown reward preset 'dense'" in r.output
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("grpo:\n  kl_coef: 0.1\n")
    r = _cli(["train", "grpo", "--references", str(good), "--output-dir", str(out), "--config", str(cfg)])
    assert r.exit_code == 2 and "'kl_coef'" in r.output and "GRPOConfig" in r.output
    # A model whose chat template cannot render tool calls: the bundled model's config and
    # tokenizer with a plain ChatML template and *no weights* -- the error must come first.
    plain = tmp_path / "plain-model"
    plain.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(default_model_path) / f, plain / f)
    (plain / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    for cmd in (["grpo"], ["sft"], ["sft-rl"]):
        r = _cli(["train", *cmd, "--references", str(good), "--output-dir", str(out), "--model", str(plain)])
        assert r.exit_code == 2 and "cannot render tool calls" in r.output, r.output
    r = _cli(["train", "grpo", "--references", str(good), "--output-dir", str(out), "--resume"])
    assert r.exit_code == 2 and "no checkpoint" in r.output
    assert not out.exists() or not any(out.glob("checkpoint-*"))


@pytest.mark.slow
def test_wheel_ships_the_bundled_configs(tmp_path):
    """A wheel install (no repository around it) still finds configs/cpu.yaml, the pipeline
    default and the per-student configs."""
    import subprocess
    import sys
    import zipfile

    from mentor.pipeline import REPO_ROOT

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO_ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("mentor-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import mentor, pathlib; from mentor.pipeline import load_config; from mentor.train.config import load_yaml, resolve\n"
        "assert pathlib.Path(mentor.__file__).is_relative_to(pathlib.Path.cwd()), mentor.__file__\n"
        "c = load_config(); print(c['_source'])\n"
        "print(len(load_yaml('configs/qwen2.5-7b-instruct.yaml')), resolve('configs/cpu.yaml')['grpo']['beta'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=site, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    source, counts = r.stdout.splitlines()
    assert source == str(site / "mentor" / "configs" / "pipeline" / "cpu.yaml")
    assert counts.split()[1] == "0.0"  # configs/cpu.yaml's beta (issue #11), read from the wheel
