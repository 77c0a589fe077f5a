"""``mentor train grpo | sft | sft-rl`` (a thin layer over ``mentor.train``'s Python API).

Heavy imports (torch, transformers, trl) happen inside the commands so ``mentor --help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train a student: GRPO with a reward preset (MENTOR, Sparse, ablations), SFT (LoRA), SFT then RL.",
                  no_args_is_help=True)

_PRESET_HELP = "Reward preset: mentor (R_c+R_a+R_v), sparse (R_c), format, validation, f1."
_MODEL_HELP = "Student: a Hub id, a local HF directory (e.g. a previous OUTPUT_DIR/final) or smollm2-135m (bundled)."
_CONFIG_HELP = ("YAML config (mentor keys + grpo/sft/lora sections with any GRPOConfig/SFTConfig/LoraConfig field). "
                "Default: configs/cpu.yaml on a machine without a GPU, else the paper's Table 5/6 settings.")


def _fail(e: Exception) -> None:
    from rich.console import Console
    from rich.markup import escape as rich_escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {rich_escape(str(e))}", highlight=False)
    raise typer.Exit(2)


def _run(fn, *args, **kwargs) -> None:
    from rich.console import Console

    from mentor.io import DataError
    from mentor.models import ModelError
    from mentor.train.config import ConfigError
    from mentor.train.common import TrainError

    try:
        final = fn(*args, **kwargs)
    except (DataError, ModelError, ConfigError, TrainError) as e:
        _fail(e)
    except ValueError as e:  # unknown preset / reward component
        if "preset" in str(e) or "component" in str(e):
            _fail(e)
        raise
    Console(stderr=True).print(f"[green]trained model saved to[/] {final}")


@app.command("grpo")
def grpo(
    references: Path = typer.Option(..., "--references", "-r", help="References file written by `mentor teach`."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run directory (checkpoints, metrics.jsonl, final/)."),
    preset: str = typer.Option("mentor", "--preset", "-p", help=_PRESET_HELP),
    model: str = typer.Option(None, "--model", "-m", help=_MODEL_HELP + " Default: the config's model (smollm2-135m)."),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUTPUT_DIR."),
) -> None:
    """GRPO with TRL on a reward preset (MENTOR or a baseline); multi-turn tool rollouts."""
    from mentor.train.grpo import train_grpo

    _run(train_grpo, references, output_dir, preset=preset, model=model, config=config, max_steps=max_steps, resume=resume)


@app.command("sft")
def sft(
    references: Path = typer.Option(..., "--references", "-r", help="References file written by `mentor teach`."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run directory (checkpoints, adapter/, final/)."),
    model: str = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUTPUT_DIR."),
) -> None:
    """SFT baseline: LoRA on the teacher trajectories (loss on assistant turns only); saves the merged model."""
    from mentor.train.sft import train_sft

    _run(train_sft, references, output_dir, model=model, config=config, max_steps=max_steps, resume=resume)


@app.command("sft-rl")
def sft_rl(
    references: Path = typer.Option(..., "--references", "-r", help="References file written by `mentor teach`."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run directory (sft/, grpo/, final/)."),
    preset: str = typer.Option("mentor", "--preset", "-p", help=_PRESET_HELP),
    model: str = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Bound the GRPO stage to N steps."),
    sft_max_steps: int = typer.Option(None, "--sft-max-steps", help="Bound the SFT stage (default: --max-steps)."),
    resume: bool = typer.Option(False, "--resume", help="Reuse a finished SFT stage and continue GRPO from its last checkpoint."),
) -> None:
    """SFT warm start, then GRPO from the merged SFT model (for students with no initial tool ability)."""
    from mentor.train.sft import train_sft_rl

    _run(train_sft_rl, references, output_dir, preset=preset, model=model, config=config, max_steps=max_steps,
         sft_max_steps=sft_max_steps, resume=resume)
