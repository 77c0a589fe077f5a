"""The SFT baseline: LoRA on the teacher's reference trajectories with TRL's ``SFTTrainer``.

Each example is the prompt the student sees at rollout time (system prompt with the task's
tools + ``Question: ...``) followed by the teacher's turns. ``assistant_only_loss=True`` makes
TRL render the conversation with the model family's *training* chat template (``{% generation
%}`` markers, ``trl.chat_template_utils.get_training_chat_template``), so the loss covers the
assistant turns (reasoning, tool calls, final answer) and never the prompt or tool outputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.models import check_tool_template, load_model, load_tokenizer
from mentor.train import config as C, data as D
from mentor.train.callbacks import RunMetadataSaver, StepRecorder
from mentor.train.common import check_resume, print_precision, seed_and_section, step_loggers, write_run_metadata
from mentor.train.grpo import prepare_grpo, save_final, train_grpo
from mentor.train.memory import check_sft_memory


def prepare_sft(references, output_dir, model=None, config=None, resume=False, **overrides) -> dict[str, Any]:
    cfg = C.resolve(config, model=model, **overrides)
    refs = D.references(references, only_correct=cfg["only_correct"], limit=cfg.get("max_references"))
    dataset = D.sft_dataset(refs, references, tools=cfg.get("tools"))
    out = Path(output_dir)
    ckpt = check_resume(out, references, resume)
    tok = load_tokenizer(cfg["model"], padding_side="right")
    check_tool_template(tok, where=str(cfg["model"]))
    if cfg.get("memory_check", True):
        check_sft_memory(cfg, tok, dataset)
    return {"cfg": cfg, "refs": refs, "dataset": dataset, "tokenizer": tok, "checkpoint": ckpt, "out": out,
            "references": references}


def build_sft_trainer(prep: dict[str, Any], callbacks: Sequence[Any] = ()):
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    cfg, out = prep["cfg"], prep["out"]
    out.mkdir(parents=True, exist_ok=True)
    args = SFTConfig(output_dir=str(out), **seed_and_section(cfg, "sft"))
    meta_file = write_run_metadata(out, cfg, prep["references"], "sft")
    recorder = StepRecorder(out / "metrics.jsonl", [], meta={"stage": "sft"})
    if prep["checkpoint"]:
        recorder.truncate_after(int(Path(prep["checkpoint"]).name.split("-")[-1]))
    loggers = step_loggers(args, out, prep["checkpoint"])
    print_precision(cfg, "sft")
    model = load_model(cfg["model"])
    model.train()
    lora = LoraConfig(**dict(cfg.get("lora") or {}))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=prep["dataset"],
        processing_class=prep["tokenizer"],
        peft_config=lora,
        callbacks=[recorder, *loggers, RunMetadataSaver(meta_file), *callbacks],
    )
    return trainer


def train_sft(
    references: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> Path:
    """LoRA SFT on the references' teacher trajectories; return ``OUTPUT_DIR/final``: the base
    model with the adapter merged (a plain Hugging Face model, accepted by every ``--model``).
    The adapter alone is saved under ``OUTPUT_DIR/adapter``. ``callbacks`` are extra
    ``TrainerCallback``s (e.g. a progress display)."""
    prep = prepare_sft(references, output_dir, model, config, resume, max_steps=max_steps, **overrides)
    trainer = build_sft_trainer(prep, callbacks)
    trainer.train(resume_from_checkpoint=prep["checkpoint"])
    return save_sft_final(trainer, prep["out"], merge=bool(prep["cfg"].get("merge_lora", True)))


def save_sft_final(trainer: Any, out: Path, merge: bool = True) -> Path:
    """``OUTPUT_DIR/adapter`` (the LoRA adapter and tokenizer) and ``OUTPUT_DIR/final`` (the base
    with the adapter merged; the adapter alone with ``merge_lora: false``). The adapter goes through
    ``Trainer.save_model`` on every process (under DeepSpeed ZeRO-3 that gathers its shards; the
    main process writes); the merge is done by the main process from the saved adapter and the base
    weights read from disk whole (``load_model(whole=True)``: not partitioned by ZeRO-3's loading),
    so it never touches sharded parameters."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    adapter = out / "adapter"
    trainer.save_model(str(adapter), _internal_call=True)
    final = out / "final"
    if not (merge and hasattr(model, "merge_and_unload")):
        save_final(trainer, final, model)
        return final
    merged = None
    if trainer.args.should_save:
        from peft import PeftModel

        dtype = str(model.get_base_model().dtype).removeprefix("torch.")
        base = load_model(str(model.peft_config["default"].base_model_name_or_path), dtype=dtype, whole=True)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    save_final(trainer, final, merged)
    return final


def train_sft_rl(
    references: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: str | None = None,
    model: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    sft_max_steps: int | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> Path:
    """SFT warm start (LoRA, merged) then GRPO from the merged model; return ``OUTPUT_DIR/final``.

    Stages write to ``OUTPUT_DIR/sft`` and ``OUTPUT_DIR/grpo``; a finished SFT stage
    (``sft/final`` present) is reused on a re-run. ``max_steps`` bounds the GRPO stage,
    ``sft_max_steps`` the SFT stage (default: ``max_steps``). ``callbacks`` go to both trainers."""
    out = Path(output_dir)
    # Check everything of both stages before spending compute on the first one.
    C.resolve(config, preset=preset, model=model, **overrides)
    prepare_grpo(references, out / "grpo", preset, model, config, False, **overrides)
    sft_final = out / "sft" / "final"
    if not (sft_final / "config.json").exists():
        sft_resume = resume and (out / "sft").is_dir() and any((out / "sft").glob("checkpoint-*"))
        train_sft(references, out / "sft", model=model, config=config,
                  max_steps=sft_max_steps if sft_max_steps is not None else max_steps, resume=sft_resume,
                  callbacks=callbacks, **overrides)
    grpo_resume = resume and any((out / "grpo").glob("checkpoint-*"))
    return train_grpo(references, out / "grpo", preset=preset, model=str(sft_final), config=config,
                      max_steps=max_steps, resume=grpo_resume, final_dir=out / "final", callbacks=callbacks, **overrides)
