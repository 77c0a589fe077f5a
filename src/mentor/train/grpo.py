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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from mentor.models import check_tool_template, load_model, load_tokenizer
from mentor.references import Reference
from mentor.rewards import resolve_weights, trl_reward_funcs
from mentor.tasks import get_task
from mentor.tools.callables import callables
from mentor.tools.executor import LOCAL, Executor
from mentor.train import config as C
from mentor.train import data as D
from mentor.train.callbacks import Clock, RunMetadataSaver, StepRecorder, timed_reward, timed_tool, with_tool_metrics
from mentor.train.common import (
    TrainError,
    check_resume,
    last_checkpoint,
    print_precision,
    seed_and_section,
    step_loggers,
    write_run_metadata,
)
from mentor.train.memory import check_grpo_memory

__all__ = ["GRPOPlan", "TrainError", "batch_schedule", "build_grpo_trainer", "last_checkpoint", "prepare_grpo", "save_final", "train_grpo"]


@dataclass
class GRPOPlan:
    """Everything ``prepare_grpo`` checked and built before any compute."""

    cfg: dict[str, Any]  # the resolved training config
    weights: dict[str, float]  # reward component -> weight
    refs: list[Reference]
    tokenizer: Any
    checkpoint: str | None  # the checkpoint to resume from
    task: str  # the references' task (mentor.tasks)
    tools: Any  # the tool set offered to the student
    out: Path
    references: str | os.PathLike
    budget: dict[str, Any] | None = None  # data.completion_budget: teacher trajectories within max_completion_length


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
        "logprob_positions": str(cfg.get("logprob_positions") or "completion"),
        "share_prompt_forward": bool(cfg.get("share_prompt_forward", True))
        and (cfg.get("logprob_positions") or "completion") == "completion",
        "generation_backend": ("vllm" if g.get("use_vllm") else str(cfg.get("generation_backend") or "transformers")),
        **({"llama_cpp_weight_type": (cfg.get("llama_cpp") or {}).get("weight_type", "bf16")}
           if cfg.get("generation_backend") == "llama_cpp" else {}),
    }


def batch_schedule(args: Any) -> dict[str, Any]:
    """The batch schedule TRL derives from a ``GRPOConfig`` on this run's processes (TRL 1.16,
    ``GRPOConfig.__post_init__``): completions per generation batch and per optimizer step, and
    optimizer steps per generation batch. Table 5's: 16 questions x 10 rollouts generated, 2
    optimizer steps of 8 questions (the GPU configs on 8 processes; docs/training.md)."""
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    steps = args.steps_per_generation * args.num_iterations / args.gradient_accumulation_steps

    def exact(x: float) -> float | int:
        return int(x) if float(x).is_integer() else round(x, 3)

    return {
        "processes": args.world_size,
        "questions_per_generation": exact(args.generation_batch_size / args.num_generations),
        "completions_per_generation": args.generation_batch_size,
        "questions_per_optimizer_step": exact(per_step / args.num_generations),
        "completions_per_optimizer_step": per_step,
        "optimizer_steps_per_generation": exact(steps),
        "loss_type": args.loss_type,
    }


def print_header(cfg: Mapping[str, Any], stage: str = "grpo", schedule: Mapping[str, Any] | None = None,
                 budget: Mapping[str, Any] | None = None) -> None:
    opts = {**speed_options(cfg), **(schedule or {})}
    console = Console(stderr=True)
    console.print(f"\\[mentor] {stage} with {cfg.get('model')}: " + ", ".join(f"{k}={v}" for k, v in opts.items()),
                  highlight=False)
    print_precision(cfg, stage, console)
    if warning := budget_warning(budget):
        console.print(f"\\[mentor] warning: {warning}", highlight=False)


def _check_speed_options(cfg: Mapping[str, Any]) -> None:
    if cfg.get("model_dtype", "float32") not in ("float32", "bfloat16"):
        raise C.ConfigError(f"model_dtype must be float32 or bfloat16, got {cfg.get('model_dtype')!r}")
    if cfg.get("model_dtype") == "bfloat16" and not cfg.get("lora_grpo"):
        raise C.ConfigError("model_dtype: bfloat16 needs lora_grpo: true (full fine-tuning keeps float32 weights; "
                            "use grpo.bf16: true for bf16 autocast instead)")


def prepare_grpo(
    references: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: str | None = None,
    model: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    resume: bool = False,
    **overrides: Any,
) -> GRPOPlan:
    """Everything checked and built before compute: config, preset, references, tokenizer.
    Raises ``ConfigError``, ``ValueError`` (preset), ``DataError`` (references), ``ModelError``
    (chat template) or ``TrainError``."""
    cfg = C.resolve(config, preset=preset, model=model, **overrides)
    weights = resolve_weights(cfg["preset"], cfg.get("weights"))  # unknown preset / component -> ValueError
    refs = D.references(references, only_correct=cfg["only_correct"], limit=cfg.get("max_references"))
    out = Path(output_dir)
    ckpt = check_resume(out, references, resume)
    tok = load_tokenizer(cfg["model"])
    check_tool_template(tok, where=str(cfg["model"]))
    _check_speed_options(cfg)
    task = D.task_of(refs)
    tools = cfg.get("tools") or get_task(task).toolset
    if cfg.get("probe") and zero3_launch():
        raise TrainError("probe: the held-out probe is scored by the main process alone, which under DeepSpeed "
                         "ZeRO-3 (partitioned weights: every forward gathers them from all processes) would hang "
                         "the run; remove 'probe' or train with configs/accelerate/deepspeed_zero2.yaml")
    if cfg.get("memory_check", True):
        check_grpo_memory(cfg, tok, refs, tools)
    g = cfg.get("grpo") or {}
    budget = D.completion_budget(tok, refs, int(g.get("max_completion_length") or 512), tools,  # 512: TRL's default
                                 chat_template_kwargs=g.get("chat_template_kwargs"))
    return GRPOPlan(cfg=cfg, weights=weights, refs=refs, tokenizer=tok, checkpoint=ckpt, task=task,
                    tools=tools, out=out, references=references, budget=budget)


def zero3_launch() -> bool:
    """Whether this process was started by ``accelerate launch`` with DeepSpeed ZeRO-3 (what its
    environment says, before any trainer exists)."""
    return (os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")


def budget_warning(budget: Mapping[str, Any] | None) -> str | None:
    """The header's warning when some teacher trajectories do not fit in ``max_completion_length``."""
    if not budget or budget["fit"] >= budget["references"]:
        return None
    t = budget["teacher_tokens"]
    return (f"grpo.max_completion_length {budget['max_completion_length']} holds {budget['fit']} of "
            f"{budget['references']} teacher trajectories (their completions take {t['min']}-{t['max']} tokens, "
            f"median {t['median']}): a rollout that solves a longer one as the teacher did is cut off before its "
            f"answer (correctness reward 0). Raise it to {t['max']} to fit them all.")


def build_grpo_trainer(plan: GRPOPlan, executor: Executor = LOCAL, callbacks: Sequence[Any] = ()):
    """A ready ``GRPOTrainer`` (and its recorder) from ``prepare_grpo``'s plan; the student's
    tool calls are executed by ``executor`` (default: in-process)."""
    from trl import GRPOConfig, GRPOTrainer
    cfg, out = plan.cfg, plan.out
    out.mkdir(parents=True, exist_ok=True)
    funcs, weights = trl_reward_funcs(cfg["preset"], plan.weights, kind=plan.task)
    clock = Clock()
    funcs = [timed_reward(f, clock) for f in funcs]
    funcs[0] = with_tool_metrics(funcs[0], clock)
    tools = [timed_tool(t, clock) for t in callables(plan.tools, executor)]

    args_kw = seed_and_section(cfg, "grpo")
    args_kw.setdefault("save_strategy", "steps")
    args = GRPOConfig(output_dir=str(out), reward_weights=weights, **args_kw)

    schedule = batch_schedule(args)
    meta_file = write_run_metadata(out, cfg, plan.references, "grpo", reward_components=list(plan.weights),
                                   reward_weights=plan.weights, tools=plan.tools, speed_options=speed_options(cfg),
                                   schedule=schedule, completion_budget=plan.budget)
    recorder = StepRecorder(out / "metrics.jsonl", list(plan.weights), clock,
                            meta={"preset": cfg["preset"]})
    if plan.checkpoint:
        recorder.resume_at(int(Path(plan.checkpoint).name.split("-")[-1]))
    loggers = step_loggers(args, out, plan.checkpoint)
    print_header(cfg, schedule=schedule, budget=plan.budget)
    model = load_model(cfg["model"], dtype=str(cfg.get("model_dtype") or "float32"))
    model.train()
    peft_config = None
    if cfg.get("lora_grpo"):
        from peft import LoraConfig

        peft_config = LoraConfig(**dict(cfg.get("lora") or {}))
    from mentor.train.logps import compact_logps_trainer

    trainer_cls, engine = GRPOTrainer, None
    if cfg.get("logprob_positions", "completion") == "completion":
        trainer_cls = compact_logps_trainer(GRPOTrainer, share_prompt=bool(cfg.get("share_prompt_forward", True)))
    if cfg.get("generation_backend") == "llama_cpp":
        from mentor.train.rollouts import llama_cpp_engine, llama_cpp_trainer

        trainer_cls, engine = llama_cpp_trainer(trainer_cls), llama_cpp_engine(cfg, model, args.generation_batch_size)
    trainer = trainer_cls(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=D.grpo_dataset(plan.refs),
        processing_class=plan.tokenizer,
        tools=tools,
        callbacks=[recorder, *loggers, RunMetadataSaver(meta_file), *callbacks],
        peft_config=peft_config,
    )
    if engine is not None:
        trainer.rollout_engine = engine
    if cfg.get("probe"):
        from mentor.train.probe import ProbeCallback, probe_options

        probe = ProbeCallback(probe_options(cfg["probe"], "probe"), out, plan.tokenizer, engine=engine,
                              executor=executor, seed=int(cfg.get("seed") or 0))
        probe.resume_at(int(Path(plan.checkpoint).name.split("-")[-1]) if plan.checkpoint else None)
        trainer.add_callback(probe)
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
    executor: Executor = LOCAL,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> Path:
    """Train a student with GRPO on a reward preset; return the final model directory
    (``OUTPUT_DIR/final`` unless ``final_dir``), in Hugging Face format. ``callbacks`` are extra
    ``TrainerCallback``s (e.g. a progress display).

    ``config`` is a YAML path or a dict (see ``mentor.train.config``); flat ``overrides`` such as
    ``num_generations=4, max_completion_length=48, per_device_train_batch_size=4,
    learning_rate=1e-5, seed=0`` go to their section.
    """
    plan = prepare_grpo(references, output_dir, preset, model, config, resume, max_steps=max_steps, **overrides)
    trainer, _ = build_grpo_trainer(plan, executor, callbacks)
    trainer.train(resume_from_checkpoint=plan.checkpoint)
    final = Path(final_dir) if final_dir else plan.out / "final"
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

    state = {k: v.float() for k, v in get_peft_model_state_dict(peft_model).items()}
    fresh = get_peft_model(load_model(base.config._name_or_path, dtype="float32", whole=True),
                           peft_model.peft_config["default"])
    set_peft_model_state_dict(fresh, state)
    return fresh.merge_and_unload()


def save_final(trainer: Any, final: Path, model: Any = None) -> None:
    """Save ``model`` (default: the trainer's, unwrapped) and the tokenizer to ``final``
    atomically (a temporary directory renamed into place), from the main process only.

    Full fine-tuning goes through ``Trainer.save_model``, which gathers the weights that DeepSpeed
    ZeRO-3 / FSDP shard over the processes (``zero3_save_16bit_model`` in
    ``configs/accelerate/deepspeed_zero3.yaml``): every process takes part, only the main one
    writes; a run that gathers no full weights (FSDP's sharded state dict, ZeRO-3 without the
    16-bit gather) is an error, not a ``final/`` without weights. ``model`` (SFT's merged model)
    and LoRA GRPO (``lora_grpo``: the CPU configs; its in-memory merge needs unsharded weights,
    so not under ZeRO-3) are saved by the main process."""
    acc = trainer.accelerator
    main = bool(trainer.args.should_save)
    tmp = final.with_name(final.name + ".tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    if model is None and not hasattr(acc.unwrap_model(trainer.model), "merge_and_unload"):
        trainer.save_model(str(tmp), _internal_call=True)  # collective under ZeRO-3/FSDP; the main process writes
        if main and not any(tmp.glob("*.safetensors")) and not any(tmp.glob("pytorch_model*.bin")):
            raise TrainError(f"{tmp}: the trainer saved no full model weights (FSDP with a sharded state dict, or "
                             "DeepSpeed ZeRO-3 without stage3_gather_16bit_weights_on_model_save / "
                             "zero3_save_16bit_model: true); the last checkpoint holds the training state")
    elif main:
        model = model if model is not None else acc.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):  # LoRA GRPO (lora_grpo): save a plain merged float32 model
            model = _merged_float32(model)
        model.save_pretrained(str(tmp))
    if main:
        trainer.processing_class.save_pretrained(str(tmp))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    acc.wait_for_everyone()
