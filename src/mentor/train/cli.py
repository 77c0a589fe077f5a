"""``mentor train grpo | sft | sft-rl`` (a thin layer over ``mentor.train``'s Python API).

Each command is one stage of ``mentor run``'s display (``mentor.display.command_stage``): a row
with the trainer's measure (GRPO: reward, its components, invalid-call and tool-usage rates;
SFT: loss), the libraries' output in ``OUTPUT_DIR/logs/<command>.log``.

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
_PROGRESS_HELP = "A live display (default on a terminal); --no-progress: one plain line per event."
_VERBOSE_HELP = "Also show the libraries' output (always in OUTPUT_DIR/logs/<command>.log)."


def _fail(e: Exception) -> None:
    from rich.console import Console
    from rich.markup import escape as rich_escape

    from mentor.display import describe_error

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {rich_escape(describe_error(e))}", highlight=False)
    raise typer.Exit(2)


def _run(command: str, output_dir: Path, progress: bool, verbose: bool, fn, *args, **kwargs) -> None:
    """``fn(*args, **kwargs, callbacks=...)`` as one displayed stage, its output in the log."""
    from rich.console import Console

    from mentor.display import command_stage, stage_log, trainer_display
    from mentor.io import DataError
    from mentor.models import ModelError
    from mentor.train.config import ConfigError
    from mentor.train.common import TrainError

    try:
        with command_stage(command, stage_log(output_dir, command), progress=progress, verbose=verbose) as row:
            final = fn(*args, callbacks=[trainer_display(row)], **kwargs)
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
    progress: bool = typer.Option(True, "--progress/--no-progress", help=_PROGRESS_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP),
) -> None:
    """GRPO with TRL on a reward preset (MENTOR or a baseline); multi-turn tool rollouts."""
    from mentor.train.grpo import train_grpo

    _run("grpo", output_dir, progress, verbose, train_grpo, references, output_dir, preset=preset, model=model,
         config=config, max_steps=max_steps, resume=resume)


@app.command("sft")
def sft(
    references: Path = typer.Option(..., "--references", "-r", help="References file written by `mentor teach`."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Run directory (checkpoints, adapter/, final/)."),
    model: str = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUTPUT_DIR."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help=_PROGRESS_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP),
) -> None:
    """SFT baseline: LoRA on the teacher trajectories (loss on assistant turns only); saves the merged model."""
    from mentor.train.sft import train_sft

    _run("sft", output_dir, progress, verbose, train_sft, references, output_dir, model=model, config=config,
         max_steps=max_steps, resume=resume)


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
    progress: bool = typer.Option(True, "--progress/--no-progress", help=_PROGRESS_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP),
) -> None:
    """SFT warm start, then GRPO from the merged SFT model (for students with no initial tool ability)."""
    from mentor.train.sft import train_sft_rl

    _run("sft-rl", output_dir, progress, verbose, train_sft_rl, references, output_dir, preset=preset, model=model,
         config=config, max_steps=max_steps, sft_max_steps=sft_max_steps, resume=resume)
