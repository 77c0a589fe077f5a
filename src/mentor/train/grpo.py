"""MENTOR GRPO and the Sparse / ablation RL baselines on TRL's ``GRPOTrainer``.

TRL runs the multi-turn rollouts (``tools=``: a ``<tool_call>`` in a completion is executed and
its result appended, the model continues), masks tool-result tokens out of the loss
(``tool_mask``), applies the clipped GRPO objective with a KL penalty, and logs rewards per
component (one reward function per component, weighted by ``GRPOConfig.reward_weights``).
mentor adds the dataset, the reward preset, tool metrics, run metadata and a JSONL record.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mentor.train import config as C
from mentor.train.callbacks import Clock, RunMetadataSaver, StepRecorder, timed_reward, timed_tool, with_tool_metrics


class TrainError(RuntimeError):
    """A training run cannot start (e.g. ``--resume`` without a checkpoint)."""


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    d = Path(output_dir)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def _seed_and_section(cfg: dict[str, Any], section: str) -> dict[str, Any]:
    out = dict(cfg.get(section) or {})
    out.setdefault("seed", int(cfg.get("seed") or 42))
    return out


def speed_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a GRPO run that depart from (or may depart from) the paper's algorithm and
    numerics for speed or memory (issues #11, #16), with their values in ``cfg``: printed in
    every run's header and saved in ``run.json`` (``speed_options``) so reports can show them."""
    g = cfg.get("grpo") or {}
    return {
        "lora_grpo": bool(cfg.get("lora_grpo", False)),
        "model_dtype": str(cfg.get("model_dtype", "float32")),
        "bf16_autocast": bool(g.get("bf16", False)),
        "beta": g.get("beta"),
        "reference_model": ("none (beta=0)" if not g.get("beta") else
                            "adapter-disabled base" if cfg.get("lora_grpo") else "full copy"),
        "per_device_train_batch_size": g.get("per_device_train_batch_size"),
        "gradient_accumulation_steps": g.get("gradient_accumulation_steps", 1),
        "gradient_checkpointing": bool(g.get("gradient_checkpointing", False)),
    }


def print_header(cfg: Mapping[str, Any], stage: str = "grpo") -> None:
    from rich.console import Console

    opts = speed_options(cfg)
    Console(stderr=True).print(f"\\[mentor] {stage} with {cfg.get('model')}: "
                               + ", ".join(f"{k}={v}" for k, v in opts.items()), highlight=False)


def write_run_metadata(out: Path, cfg: Mapping[str, Any], references: str | os.PathLike, stage: str, **extra: Any) -> Path:
    from mentor.io import file_sha256, run_metadata, write_json

    if stage == "grpo":
        extra.setdefault("speed_options", speed_options(cfg))
    meta = run_metadata(
        C.public(cfg),
        seed=cfg.get("seed"),
        stage=stage,
        references=str(Path(references).resolve()),
        references_sha256=file_sha256(references),
        config_file=cfg.get("_config_file"),
        base_config=cfg.get("_base_config"),
        **extra,
    )
    path = out / "run.json"
    write_json(path, meta)
    import yaml

    (out / "config.yaml").write_text(yaml.safe_dump(C.public(cfg), sort_keys=False), encoding="utf-8")
    return path


def _check_resume(out: Path, references: str | os.PathLike, resume: bool) -> str | None:
    if not resume:
        return None
    ckpt = last_checkpoint(out)
    if ckpt is None:
        raise TrainError(f"--resume: no checkpoint-* directory in {out} to resume from")
    import json

    from mentor.io import file_sha256

    meta_file = out / "run.json"
    if meta_file.exists():
        saved = json.loads(meta_file.read_text(encoding="utf-8")).get("references_sha256")
        if saved and saved != file_sha256(references):
            raise TrainError(
                f"--resume: {references} differs from the references this run started with "
                f"(sha256 {saved[:12]}...); start a new output directory"
            )
    return ckpt


def prepare_grpo(
    references: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: str | None = None,
    model: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    resume: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Everything checked and built before compute: config, preset, references, tokenizer.
    Raises ``ConfigError``, ``ValueError`` (preset), ``DataError`` (references), ``ModelError``
    (chat template) or ``TrainError``."""
    from mentor.models import check_tool_template, load_tokenizer
    from mentor.prompts import task_tools
    from mentor.rewards import resolve_weights
    from mentor.train import data as D

    cfg = C.resolve(config, preset=preset, model=model, **overrides)
    weights = resolve_weights(cfg["preset"], cfg.get("weights"))  # unknown preset / component -> ValueError
    refs = D.references(references, only_correct=cfg["only_correct"], limit=cfg.get("max_references"))
    out = Path(output_dir)
    ckpt = _check_resume(out, references, resume)
    tok = load_tokenizer(cfg["model"])
    check_tool_template(tok, where=str(cfg["model"]))
    _check_speed_options(cfg)
    tools = cfg.get("tools") or task_tools(D.task_of(refs))
    if cfg.get("memory_check", True):
        from mentor.train.memory import check_grpo_memory

        check_grpo_memory(cfg, tok, refs, tools)
    return {"cfg": cfg, "weights": weights, "refs": refs, "tokenizer": tok, "checkpoint": ckpt,
            "task": D.task_of(refs), "tools": tools, "out": out}


def _check_speed_options(cfg: Mapping[str, Any]) -> None:
    if cfg.get("model_dtype", "float32") not in ("float32", "bfloat16"):
        raise C.ConfigError(f"model_dtype must be float32 or bfloat16, got {cfg.get('model_dtype')!r}")
    if cfg.get("model_dtype") == "bfloat16" and not cfg.get("lora_grpo"):
        raise C.ConfigError("model_dtype: bfloat16 needs lora_grpo: true (full fine-tuning keeps float32 weights; "
                            "use grpo.bf16: true for bf16 autocast instead)")


def build_grpo_trainer(prep: dict[str, Any], final_dir: str | os.PathLike | None = None):
    """A ready ``GRPOTrainer`` (and its recorder) from ``prepare_grpo``'s output."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback
    from trl import GRPOConfig, GRPOTrainer

    from mentor.models import load_model
    from mentor.rewards import trl_reward_funcs
    from mentor.tools import callables
    from mentor.train import data as D

    cfg, out = prep["cfg"], prep["out"]
    out.mkdir(parents=True, exist_ok=True)
    funcs, weights = trl_reward_funcs(cfg["preset"], prep["weights"], kind="qa" if prep["task"] == "qa" else "math")
    clock = Clock()
    funcs = [timed_reward(f, clock) for f in funcs]
    funcs[0] = with_tool_metrics(funcs[0], clock)
    tools = [timed_tool(t, clock) for t in callables(prep["tools"])]

    args_kw = _seed_and_section(cfg, "grpo")
    args_kw.setdefault("logging_steps", 1)
    args_kw.setdefault("save_strategy", "steps")
    args_kw.setdefault("report_to", "none")  # TensorBoard is added below, writing to OUTPUT_DIR/tensorboard
    args = GRPOConfig(output_dir=str(out), reward_weights=weights, **args_kw)

    meta_file = write_run_metadata(out, cfg, prep["references"], "grpo", reward_components=list(prep["weights"]),
                                   reward_weights=prep["weights"], tools=prep["tools"])
    recorder = StepRecorder(out / "metrics.jsonl", list(prep["weights"]), clock,
                            meta={"preset": cfg["preset"]})
    if prep["checkpoint"]:
        step = int(Path(prep["checkpoint"]).name.split("-")[-1])
        recorder.truncate_after(step)
        recorder._last_step = step
    elif (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()
    tb = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(out / "tensorboard")))
    print_header(cfg)
    model = load_model(cfg["model"], dtype=str(cfg.get("model_dtype") or "float32"))
    model.train()
    peft_config = None
    if cfg.get("lora_grpo"):
        from peft import LoraConfig

        peft_config = LoraConfig(**dict(cfg.get("lora") or {}))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=D.grpo_dataset(prep["refs"]),
        processing_class=prep["tokenizer"],
        tools=tools,
        callbacks=[recorder, tb, RunMetadataSaver(meta_file)],
        peft_config=peft_config,
    )
    return trainer, recorder


def train_grpo(
    references: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: str | None = None,
    model: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    final_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> Path:
    """Train a student with GRPO on a reward preset; return the final model directory
    (``OUTPUT_DIR/final`` unless ``final_dir``), in Hugging Face format.

    ``config`` is a YAML path or a dict (see ``mentor.train.config``); flat ``overrides`` such as
    ``num_generations=4, max_completion_length=48, per_device_train_batch_size=4,
    learning_rate=1e-5, seed=0`` go to their section.
    """
    prep = prepare_grpo(references, output_dir, preset, model, config, resume, max_steps=max_steps, **overrides)
    prep["references"] = references
    trainer, _ = build_grpo_trainer(prep, final_dir)
    trainer.train(resume_from_checkpoint=prep["checkpoint"])
    final = Path(final_dir) if final_dir else prep["out"] / "final"
    save_final(trainer, final)
    return final


def _merged_float32(peft_model: Any) -> Any:
    """The adapter of ``peft_model`` merged into a float32 copy of its base. A base trained in
    bfloat16 (``model_dtype: bfloat16``) is reloaded in float32 first, so neither the base
    weights nor the (small) LoRA update are rounded to bfloat16 in the saved model."""
    import torch

    base = peft_model.get_base_model()
    if base.dtype == torch.float32:
        return peft_model.merge_and_unload()
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from mentor.models import load_model

    state = {k: v.float() for k, v in get_peft_model_state_dict(peft_model).items()}
    fresh = get_peft_model(load_model(base.config._name_or_path, dtype="float32"), peft_model.peft_config["default"])
    set_peft_model_state_dict(fresh, state)
    return fresh.merge_and_unload()


def save_final(trainer: Any, final: Path, model: Any = None) -> None:
    """Save ``model`` (default: the trainer's, unwrapped) and the tokenizer to ``final``
    atomically (a temporary directory renamed into place)."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # LoRA GRPO (lora_grpo): save a plain merged float32 model
        model = _merged_float32(model)
    model.save_pretrained(str(tmp))
    trainer.processing_class.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
