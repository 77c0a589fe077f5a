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


def write_run_metadata(out: Path, cfg: Mapping[str, Any], references: str | os.PathLike, stage: str, **extra: Any) -> Path:
    from mentor.io import file_sha256, run_metadata, write_json

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
    return {"cfg": cfg, "weights": weights, "refs": refs, "tokenizer": tok, "checkpoint": ckpt,
            "task": D.task_of(refs), "tools": cfg.get("tools") or task_tools(D.task_of(refs)), "out": out}


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
    model = load_model(cfg["model"])
    model.train()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=D.grpo_dataset(prep["refs"]),
        processing_class=prep["tokenizer"],
        tools=tools,
        callbacks=[recorder, tb, RunMetadataSaver(meta_file)],
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


def save_final(trainer: Any, final: Path, model: Any = None) -> None:
    """Save ``model`` (default: the trainer's, unwrapped) and the tokenizer to ``final``
    atomically (a temporary directory renamed into place)."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    model.save_pretrained(str(tmp))
    trainer.processing_class.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
