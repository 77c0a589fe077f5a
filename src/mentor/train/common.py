"""What the SFT and GRPO entry points share: checkpoints, resume checks, run metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mentor.io import file_sha256, run_metadata, write_json
from mentor.train import config as C


class TrainError(RuntimeError):
    """A training run cannot start (e.g. ``--resume`` without a checkpoint)."""


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    d = Path(output_dir)
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def seed_and_section(cfg: dict[str, Any], section: str) -> dict[str, Any]:
    """The trainer arguments of ``section``: the run's seed, one log line per step, and no
    TensorBoard of transformers' own (``report_to``): mentor's (``step_loggers``) is the one, with
    the step timings; a second would log the same steps to ``OUTPUT_DIR/runs`` without them."""
    out = dict(cfg.get(section) or {})
    out.setdefault("seed", int(cfg.get("seed") or 42))
    out.setdefault("logging_steps", 1)
    report = out.get("report_to", "none")
    report = [report] if isinstance(report, str) else list(report)
    out["report_to"] = [r for r in report if r not in ("tensorboard", "none")] or "none"
    return out


def step_loggers(args: Any, out: Path, checkpoint: str | None) -> list[Any]:
    """mentor's TensorBoard writer (``OUTPUT_DIR/tensorboard``) on the main process only (under
    ``accelerate launch`` every rank builds the trainer; only rank 0 logs), and a fresh start's
    ``metrics.jsonl`` of an earlier attempt removed, by the main process only."""
    if args.process_index != 0:
        return []
    if not checkpoint:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(out / "tensorboard")))]


def write_run_metadata(out: Path, cfg: Mapping[str, Any], references: str | os.PathLike, stage: str, **extra: Any) -> Path:
    meta = run_metadata(
        C.public(cfg),
        seed=cfg.get("seed"),
        stage=stage,
        references=str(Path(references).resolve()),
        references_sha256=file_sha256(references),
        config_file=cfg.get("_config_file"),
        base_config=cfg.get("_base_config"),
        **({"precision": cfg["_precision"].record()} if cfg.get("_precision") else {}),
        **extra,
    )
    path = out / "run.json"
    write_json(path, meta)
    (out / "config.yaml").write_text(yaml.safe_dump(C.public(cfg), sort_keys=False), encoding="utf-8")
    return path


def check_resume(out: Path, references: str | os.PathLike, resume: bool) -> str | None:
    if not resume:
        return None
    ckpt = last_checkpoint(out)
    if ckpt is None:
        raise TrainError(f"--resume: no checkpoint-* directory in {out} to resume from")
    meta_file = out / "run.json"
    if meta_file.exists():
        saved = json.loads(meta_file.read_text(encoding="utf-8")).get("references_sha256")
        if saved and saved != file_sha256(references):
            raise TrainError(
                f"--resume: {references} differs from the references this run started with "
                f"(sha256 {saved[:12]}...); start a new output directory"
            )
    return ckpt


def print_precision(cfg: Mapping[str, Any], stage: str, console: Any = None) -> None:
    """The header's lines on the numeric format: the hardware, what ``auto`` chose for this stage's
    keys, and a warning per explicit bf16 setting on hardware without native bf16 (``mentor.precision``)."""
    from rich.console import Console

    prec = cfg.get("_precision")
    if prec is None:
        return
    keys = ("sft.bf16",) if stage == "sft" else ("model_dtype", "grpo.bf16")
    console = console or Console(stderr=True)
    console.print(f"\\[mentor] {stage} numeric format: {prec.describe(keys)}", highlight=False)
    for warning in prec.warnings_for(keys):
        console.print(f"\\[mentor] warning: {warning}", highlight=False)
