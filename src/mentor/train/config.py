"""Training configuration: the paper's defaults (SPEC.md Tables 5 and 6), YAML loading, and
validation of every key against the dataclass that consumes it, before any compute.

A config (YAML file or dict) has mentor's own keys at the top level and one section per
library config::

    model: smollm2-135m        # student: Hub id, local directory or the bundled default
    preset: mentor             # reward preset (mentor.rewards.PRESETS)
    weights: {correctness: 1}  # per-component reward weights (default 1.0 each)
    seed: 42
    grpo: {...}                # any trl.GRPOConfig field
    sft: {...}                 # any trl.SFTConfig field
    lora: {...}                # any peft.LoraConfig field

Keys that are not known to mentor, GRPOConfig, SFTConfig or LoraConfig are an error naming
the file and the key (with the closest known name). ``output_dir`` and ``reward_weights`` are
set by mentor (from the CLI and from ``weights``) and may not be set in a config.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from mentor import precision
from mentor.config import did_you_mean
from mentor.generation.llama_cpp import WEIGHT_TYPES
from mentor.rewards import resolve_preset
from mentor.tools import toolset

#: SPEC.md Table 5 (MENTOR / RL), expressed as GRPOConfig fields where TRL has one. Not
#: representable here: tensor parallel 2 and GPU memory utilisation 0.8 (vLLM settings, set in
#: the GPU configs), max sequence 32768 (the prompt is never truncated by TRL's GRPO).
#: The rollout temperature is per model family: 0.7 (Qwen2.5) / 0.6 (Qwen3); 0.7 here.
#: ``loss_type`` is the paper's Eq. 3 (the GRPO objective): each completion's token losses are
#: averaged over its own length, then over the completions (TRL's ``grpo``; TRL defaults to
#: ``dapo``, one average over every token of the batch). The schedule of Table 5 (16 questions x
#: 10 rollouts per generation batch, 2 optimizer steps of 8 questions) depends on the number of
#: processes, so the GPU configs set it (``steps_per_generation``; docs/training.md).
PAPER_GRPO: dict[str, Any] = {
    "learning_rate": 1e-6,
    "optim": "adamw_torch",
    "num_train_epochs": 2,
    "num_generations": 10,
    # 10 completions per process: a generation batch of any number of processes is whole groups of
    # 10 (TRL's default of 8 is refused with num_generations 10: "must be divisible"); the GPU
    # configs set their own (Table 5's schedule, docs/training.md)
    "per_device_train_batch_size": 10,
    "max_completion_length": 8192,
    "temperature": 0.7,
    "beta": 0.001,
    "epsilon": 0.2,
    "loss_type": "grpo",
    "activation_checkpointing": True,
}

#: SPEC.md Table 6 (SFT baseline): lr 1e-7, AdamW, 1 epoch, batch 4, gradient accumulation 16
#: (the table also says 8), weight decay 0.033; LoRA. The loss is on assistant turns only.
PAPER_SFT: dict[str, Any] = {
    "learning_rate": 1e-7,
    "optim": "adamw_torch",
    "num_train_epochs": 1,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 16,
    "weight_decay": 0.033,
    "assistant_only_loss": True,
}

#: LoRA defaults (the paper does not give rank/alpha; these are common choices).
DEFAULT_LORA: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "task_type": "CAUSAL_LM",
}

#: mentor's own top-level keys and their defaults.
MENTOR_DEFAULTS: dict[str, Any] = {
    "model": "smollm2-135m",
    "preset": "mentor",
    "weights": None,
    "seed": 42,
    "only_correct": True,  # train on the references whose teacher answer was correct (the MENTOR filter)
    "max_references": None,  # use only the first N references (small runs)
    "merge_lora": True,  # save the SFT result merged into a full model under OUTPUT_DIR/final
    # Tools offered to the student: None = the task's tool set ("math": the 12 calculator tools,
    # "qa": wikipedia_search), or a list of tool names (a subset shortens the prompt on CPU).
    "tools": None,
    # --- GRPO speed / memory options (issues #11, #16). Each departs from the paper's algorithm
    # or numerics; all are OFF here and in the GPU configs, ON in configs/cpu.yaml where measured
    # to pay (docs/training.md). They are printed in every GRPO run's header and saved in run.json.
    # GRPO trains a LoRA adapter (the ``lora`` section) instead of every weight; the KL reference
    # is then the adapter-disabled base (no second model copy). The final model is merged.
    "lora_grpo": False,
    # dtype of the student's weights during GRPO: float32, bfloat16 or auto (bfloat16 with lora_grpo
    # on hardware with native bf16, else float32: mentor.precision). bfloat16 needs lora_grpo (the
    # frozen base is stored in bf16; the adapter and AdamW state stay float32). grpo.bf16 and
    # sft.bf16 (autocast) take auto too, and a section without bf16 is auto (TRL would default it to true).
    "model_dtype": "float32",
    # Before compute, estimate the GRPO/SFT peak RSS and stop with an error naming the setting to
    # lower when it exceeds the memory available (mentor.train.memory).
    "memory_check": True,
    # Who samples the GRPO rollouts: "transformers" (TRL's generate; vLLM when grpo.use_vllm) or
    # "llama_cpp" (mentor.train.rollouts: llama.cpp on the CPU, weights synced every step).
    "generation_backend": "transformers",
    # llama_cpp options: weight_type (f32 | f16 | bf16 | q8_0: the matrices' type in the synced
    # GGUF), template (a GGUF of the student's architecture for its metadata and tokenizer; default:
    # the bundled SmolLM2 GGUF), n_ctx (llama.cpp's context), n_threads (default: OMP_NUM_THREADS, else all cores).
    "llama_cpp": None,
    # Which positions the GRPO LM head scores on a device without Triton (the CPU): "completion"
    # (mentor.train.logps: only the completion tokens, as TRL does on CUDA; the same numbers) or
    # "all" (TRL's CPU path: every prompt + completion position, the prompt masked afterwards).
    "logprob_positions": "completion",
    # With logprob_positions "completion": the rollouts of one question in a micro-batch run their
    # common prompt through the model once, their completions on its keys/values (the same
    # numbers, tests/test_train_logps.py). Pays with per_device_train_batch_size >= num_generations.
    "share_prompt_forward": True,
    # A held-out probe set scored greedily during GRPO every N steps (mentor.train.probe), e.g.
    # {benchmark: synthetic:probe, every: 5, limit: 16}: OUTPUT_DIR/probe.jsonl. None: no probe.
    "probe": None,
}
#: mentor keys that change the training algorithm or numerics (printed in the run header).
SPEED_KEYS = ("lora_grpo", "model_dtype", "generation_backend")
GENERATION_BACKENDS = ("transformers", "llama_cpp")
LOGPROB_POSITIONS = ("completion", "all")
LLAMA_CPP_KEYS = ("weight_type", "template", "n_ctx", "n_threads")

SECTIONS = ("grpo", "sft", "lora")
#: Set by mentor itself; a config may not set them.
RESERVED = {"grpo": ("output_dir", "reward_weights"), "sft": ("output_dir",), "lora": ()}

#: the bundled configs, shipped inside the package (``configs/`` at the repository root links here)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CPU_CONFIG = CONFIG_DIR / "cpu.yaml"


def bundled_path(path: str | Path) -> Path:
    """``path`` as given when it exists; else a ``configs/...`` path of the bundled configs
    (so ``configs/cpu.yaml`` works from any directory and from a wheel install)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    parts = p.parts
    if parts and parts[0] == "configs" and (CONFIG_DIR.joinpath(*parts[1:])).exists():
        return CONFIG_DIR.joinpath(*parts[1:])
    return p


class ConfigError(ValueError):
    """A bad training config: the message names the file and the key."""


@cache
def _fields(section: str) -> frozenset[str]:
    if section == "grpo":
        from trl import GRPOConfig as cls
    elif section == "sft":
        from trl import SFTConfig as cls
    else:
        from peft import LoraConfig as cls
    return frozenset(f.name for f in dataclasses.fields(cls))


def _class_name(section: str) -> str:
    return {"grpo": "GRPOConfig", "sft": "SFTConfig", "lora": "LoraConfig"}[section]


def _unknown(key: str, known: set[str] | frozenset[str], where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r}: not a field of {what}{did_you_mean(key, known)}")


def validate(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Check every key of a config; raise ``ConfigError`` naming the source and the key."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(cfg).__name__}")
    top = set(MENTOR_DEFAULTS) | set(SECTIONS)
    for key, value in cfg.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: section {key!r} must be a mapping, got {type(value).__name__}")
            known = _fields(key)
            for sub in value:
                if sub in RESERVED[key]:
                    how = "use the top-level 'weights' mapping" if sub == "reward_weights" else "set it on the command line"
                    raise ConfigError(f"{source}: {key}.{sub} is set by mentor; {how}")
                if sub not in known:
                    raise _unknown(sub, known, f"{source}, section {key!r}", _class_name(key))
        elif key not in top:
            # A GRPOConfig/SFTConfig field at the top level belongs in its section.
            for section in ("grpo", "sft"):
                if key in _fields(section):
                    raise ConfigError(
                        f"{source}: key {key!r} is a {_class_name(section)} field; put it under the {section!r} section"
                    )
            raise _unknown(key, top, source, f"mentor's keys ({', '.join(sorted(top))})")
    if cfg.get("preset") is not None:
        try:
            resolve_preset(cfg["preset"])
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    if cfg.get("tools") is not None:
        try:
            toolset(cfg["tools"])
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{source}: 'tools': {e}") from None
    _validate_backend(cfg, source)
    _validate_precision(cfg, source)
    if cfg.get("probe") is not None:
        from mentor.train.probe import probe_options

        try:
            probe_options(cfg["probe"], source)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if cfg.get("weights") is not None and not isinstance(cfg["weights"], Mapping):
        raise ConfigError(f"{source}: 'weights' must map reward components to numbers")


MODEL_DTYPES = ("float32", "bfloat16", precision.AUTO)


def _validate_precision(cfg: Mapping[str, Any], source: str) -> None:
    dtype = cfg.get("model_dtype")
    if dtype is not None and dtype not in MODEL_DTYPES:
        raise ConfigError(f"{source}: model_dtype must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}"
                          f"{did_you_mean(str(dtype), MODEL_DTYPES)}")
    for section in ("grpo", "sft"):
        value = (cfg.get(section) or {}).get("bf16") if isinstance(cfg.get(section), Mapping) else None
        if value is not None and value not in (True, False, precision.AUTO):
            key = "bf16" if source == "overrides" else f"{section}.bf16"  # a flat override goes to both sections
            raise ConfigError(f"{source}: {key} must be true, false or auto, got {value!r}")


def _validate_backend(cfg: Mapping[str, Any], source: str) -> None:
    backend = cfg.get("generation_backend")
    if backend is not None and backend not in GENERATION_BACKENDS:
        raise ConfigError(f"{source}: generation_backend must be one of {', '.join(GENERATION_BACKENDS)}, "
                          f"got {backend!r}{did_you_mean(str(backend), GENERATION_BACKENDS)}")
    positions = cfg.get("logprob_positions")
    if positions is not None and positions not in LOGPROB_POSITIONS:
        raise ConfigError(f"{source}: logprob_positions must be one of {', '.join(LOGPROB_POSITIONS)}, got {positions!r}")
    opts = cfg.get("llama_cpp")
    if opts is None:
        return
    if not isinstance(opts, Mapping):
        raise ConfigError(f"{source}: 'llama_cpp' must be a mapping, got {type(opts).__name__}")
    for key in opts:
        if key not in LLAMA_CPP_KEYS:
            raise _unknown(key, frozenset(LLAMA_CPP_KEYS), f"{source}, section 'llama_cpp'", "the llama_cpp options")
    if opts.get("weight_type") is not None and opts["weight_type"] not in WEIGHT_TYPES:
        raise ConfigError(f"{source}: llama_cpp.weight_type must be one of {', '.join(WEIGHT_TYPES)}, "
                          f"got {opts['weight_type']!r}")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    path = bundled_path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    validate(data, str(path))
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge two configs; sections merge key by key, ``None`` values in ``override`` are skipped."""
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if value is None:
            continue
        if key in SECTIONS and isinstance(value, Mapping):
            out[key] = {**(out.get(key) or {}), **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_config_path() -> Path | None:
    """The config used when none is given: ``configs/cpu.yaml`` on a machine without CUDA."""
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except ImportError:  # pragma: no cover
        pass
    return CPU_CONFIG if CPU_CONFIG.exists() else None


def resolve(config: str | os.PathLike | Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The full config: mentor defaults + the paper's Table 5/6 + a file or dict + overrides.

    The base is the paper's defaults, plus ``configs/cpu.yaml`` on a machine without CUDA;
    ``config`` (a YAML file, or a dict: the Python API's way to ask for a small budget) is
    applied on top of it, so it only needs the keys it changes. Flat ``overrides`` are routed: mentor keys to the top level, then GRPOConfig,
    SFTConfig and LoraConfig fields to their sections (a key known to both GRPO and SFT is
    set in both); ``None`` values are ignored.
    """
    cfg: dict[str, Any] = {**MENTOR_DEFAULTS, "grpo": dict(PAPER_GRPO), "sft": dict(PAPER_SFT), "lora": dict(DEFAULT_LORA)}
    base = default_config_path()
    if base is not None:
        cfg = merge(cfg, load_yaml(base))
        cfg["_base_config"] = str(base)
    if isinstance(config, Mapping):
        validate(config, "config")
        cfg = merge(cfg, config)
    elif config is not None:
        cfg = merge(cfg, load_yaml(config))
        cfg["_config_file"] = str(config)
    routed: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in MENTOR_DEFAULTS or key in SECTIONS:
            routed[key] = value
            continue
        placed = False
        for section in ("grpo", "sft", "lora"):
            if key in _fields(section) and key not in RESERVED[section]:
                routed.setdefault(section, {})[key] = value
                placed = True
            if placed and section == "grpo" and key not in _fields("sft"):
                break
        if not placed:
            raise ConfigError(f"override {key!r} is not a mentor key nor a GRPOConfig/SFTConfig/LoraConfig field")
    validate({k: v for k, v in routed.items()}, "overrides")
    cfg, prec = precision.resolve(merge(cfg, routed))
    cfg["_precision"] = prec
    return cfg


def public(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config without mentor's private bookkeeping keys (what is saved beside a run)."""
    return {k: v for k, v in cfg.items() if not k.startswith("_")}
