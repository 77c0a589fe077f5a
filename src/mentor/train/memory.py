"""Peak-memory estimate of a GRPO step, checked before compute (issue #16).

Where a CPU GRPO step's memory goes (measured with ``benchmarks/bench_train.py``, see
docs/training.md): TRL already computes log-probs through a chunked LM head (full-vocabulary
logits never exist for the whole batch), and the KV cache of generation is small for the
135M student. What grows is the **activations kept for the backward pass** of the policy forward
with grad: every layer keeps about a dozen hidden-size and four intermediate-size vectors per
token, ~1.75 MB per token for SmolLM2-135M in float32, over ``per_device_train_batch_size`` x
(prompt + completion) tokens. The official-template prompt is ~1,320 tokens, so 8 completions in
one micro-batch keep ~20 GB alive; that is what the OOM of issue #16 was.

The estimate below is ``fixed + weights/optimizer + micro-batch tokens x activation bytes per
token + generation cache``; its coefficients are calibrated on the measured peaks in
docs/training.md (it over- rather than under-estimates). A run whose estimate exceeds the memory
available stops with ``MemoryBudgetError`` naming the settings to lower.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.models import resolve_model
from mentor.precision import training_device
from mentor.tasks import get_task
from mentor.tools.callables import callables
from mentor.train import data as D
from mentor.train.common import TrainError

GB = 1e9
#: Python + torch + transformers + TRL + tokenizer, before the model (measured ~0.9 GB).
RUNTIME_BYTES = 1.0 * GB
#: Saved activations per token per layer in units of (hidden_size, intermediate_size) elements:
#: norms, q/k/v/o inputs and outputs, rotary, residuals (~10 x hidden) and the MLP's gate, up,
#: act(gate) and product (4 x intermediate), with a margin for allocator slack (calibrated).
ACT_HIDDEN, ACT_INTER = 12, 5


class MemoryBudgetError(TrainError):
    """The estimated peak of a training step exceeds the memory available."""


def _bytes(dtype: str | None) -> int:
    return 2 if str(dtype) in ("bfloat16", "float16", "torch.bfloat16") else 4


def model_shape(model_dir: str) -> dict[str, int]:
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    hidden, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    inter = cfg.get("intermediate_size", 4 * hidden)
    heads = cfg.get("num_attention_heads", 1)
    kv = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or hidden // heads
    params = layers * (4 * hidden * hidden * (heads + kv) // (2 * heads) + 3 * hidden * inter) + vocab * hidden
    return {"hidden": hidden, "inter": inter, "layers": layers, "vocab": vocab, "kv_dim": kv * head_dim, "heads": heads,
            "params": params, "tied": int(cfg.get("tie_word_embeddings", True))}


def estimate_grpo_peak(shape: Mapping[str, int], cfg: Mapping[str, Any], prompt_tokens: int) -> dict[str, float]:
    """Estimated peak RSS (bytes) of a GRPO step, by component."""
    g = cfg.get("grpo") or {}
    lora = bool(cfg.get("lora_grpo"))
    wbytes = _bytes(cfg.get("model_dtype", "float32"))
    # Activations: measured per token, bf16 autocast and a bf16 base with a float32 LoRA adapter
    # keep MORE than float32 (autocast saves both casts; every LoRA input is saved again in
    # float32): ~2.4 MB vs ~1.75 MB per token for SmolLM2-135M (docs/training.md).
    abytes = 4
    lora_factor = 1.4 if (lora or g.get("bf16")) else 1.0
    p = shape["params"]
    completion = int(g.get("max_completion_length") or 256)
    seq = prompt_tokens + completion
    micro = int(g.get("per_device_train_batch_size") or 8)
    gen_batch = micro * int(g.get("steps_per_generation") or g.get("gradient_accumulation_steps") or 1)
    per_token = shape["layers"] * (ACT_HIDDEN * shape["hidden"] + ACT_INTER * shape["inter"]) * abytes * lora_factor
    if g.get("gradient_checkpointing") or g.get("activation_checkpointing"):
        per_token = shape["layers"] * shape["hidden"] * abytes * 2 + per_token // shape["layers"]
    tokens, attention = micro * seq, 0
    if cfg.get("share_prompt_forward", True) and (cfg.get("logprob_positions") or "completion") == "completion":
        # mentor.train.logps: each distinct prompt of a micro-batch once (at most one per question of
        # the generation batch), the completions on top; its eager attention keeps the
        # completions' attention scores and weights (fp32, and a bf16 copy under autocast) for the
        # backward (calibrated: a 4-completion micro-batch of the 12-tool prompt peaked at 10.96 GB)
        prompts = min(micro, -(-gen_batch // int(g.get("num_generations") or 8)))
        tokens = prompts * prompt_tokens + micro * completion
        attention = micro * shape.get("heads", 1) * completion * seq * shape["layers"] * (8 + abytes)
    out = {
        "runtime": RUNTIME_BYTES,
        "weights": p * wbytes,
        # full FT: fp32 grads + AdamW moments (+ a reference copy when beta > 0); LoRA: ~1% of that
        "optimizer": (0.05 if lora else 1.0) * p * 12,
        "reference": p * wbytes if (g.get("beta") and not lora) else 0,
        "activations": tokens * per_token + attention,
        "generation": gen_batch * seq * shape["layers"] * 2 * shape["kv_dim"] * abytes
        + gen_batch * shape["vocab"] * 4 * 4,  # KV cache + sampling logits
    }
    out["total"] = sum(out.values())
    return out


def available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def prompt_length(tokenizer: Any, refs: Sequence[Any], tools: Any) -> int:
    """Tokens of the longest GRPO prompt (system prompt with the tools + question) over a sample."""
    ds = D.grpo_dataset(list(refs)[:16])
    kw = {"tools": callables(tools or get_task(D.task_of(list(refs))).toolset)}  # what TRL renders
    best = 0
    for row in ds:
        prompt = row["prompt"]
        try:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False, **kw)
        except Exception:  # noqa: BLE001
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
        best = max(best, len(ids))
    return best


def check_grpo_memory(cfg: Mapping[str, Any], tokenizer: Any, refs: Sequence[Any], tools: Any,
                      available: int | None = None) -> dict[str, float]:
    """Raise ``MemoryBudgetError`` when the estimated GRPO peak exceeds the available memory
    (``{}`` when nothing is estimated: see ``_estimated``)."""
    if not _estimated(cfg):
        return {}
    try:
        shape = model_shape(resolve_model(cfg["model"]))
    except (OSError, KeyError, ValueError):
        return {}  # a Hub model not downloaded yet: nothing to estimate from
    est = estimate_grpo_peak(shape, cfg, prompt_length(tokenizer, refs, tools))
    g = cfg.get("grpo") or {}
    return _within(est, available, "GRPO",
                   f"Lower grpo.per_device_train_batch_size (now {g.get('per_device_train_batch_size')}; raise "
                   "grpo.gradient_accumulation_steps to keep the completions per step) or grpo.max_completion_length "
                   f"(now {g.get('max_completion_length')}), or set grpo.bf16: true, lora_grpo: true or "
                   "grpo.gradient_checkpointing: true")


def _estimated(cfg: Mapping[str, Any]) -> bool:
    """Only a run that trains on the CPU is checked: the estimate is of the host memory of a CPU
    step (calibrated there), while on a GPU the step lives in device memory (sharded by DeepSpeed
    across processes); set against the host's RAM, a 7B student's CPU-step estimate (~7,700 GB)
    would stop every GPU run of the paper's configs."""
    return training_device(cfg) == "cpu"


def _within(est: dict[str, float], available: int | None, what: str, advice: str) -> dict[str, float]:
    """``est`` when its total fits the available memory, else ``MemoryBudgetError`` with ``advice``."""
    avail = available if available is not None else available_bytes()
    if est["total"] > avail:
        parts = ", ".join(f"{k} {v / GB:.1f}" for k, v in est.items() if k != "total")
        raise MemoryBudgetError(f"{what} would need ~{est['total'] / GB:.1f} GB at its peak ({parts} GB) but only "
                                f"{avail / GB:.1f} GB are available. {advice} (or memory_check: false to skip this check).")
    return est


def estimate_sft_peak(shape: Mapping[str, int], cfg: Mapping[str, Any], seq_tokens: int) -> dict[str, float]:
    """Estimated peak RSS (bytes) of an SFT step (LoRA, full-vocabulary logits in the loss)."""
    s = cfg.get("sft") or {}
    abytes = 2 if s.get("bf16") else 4
    micro = int(s.get("per_device_train_batch_size") or 8)
    seq = min(seq_tokens, int(s.get("max_length") or seq_tokens))
    per_token = shape["layers"] * (ACT_HIDDEN * shape["hidden"] + ACT_INTER * shape["inter"]) * abytes
    if s.get("gradient_checkpointing") or s.get("activation_checkpointing"):
        per_token = shape["layers"] * shape["hidden"] * abytes * 2 + per_token // shape["layers"]
    out = {
        "runtime": RUNTIME_BYTES,
        "weights": shape["params"] * 4,
        "activations": micro * seq * per_token,
        # logits, their log-softmax and gradient (float32), for the whole micro-batch
        "logits": micro * seq * shape["vocab"] * 4 * SFT_LOGIT_COPIES,
    }
    out["total"] = sum(out.values())
    return out


#: float32 full-vocabulary tensors of the SFT loss alive at its peak (calibrated, docs/training.md)
SFT_LOGIT_COPIES = 8


def check_sft_memory(cfg: Mapping[str, Any], tokenizer: Any, dataset: Any, available: int | None = None) -> dict[str, float]:
    """Raise ``MemoryBudgetError`` when the estimated SFT peak exceeds the available memory
    (``{}`` when nothing is estimated: see ``_estimated``)."""
    if not _estimated(cfg):
        return {}
    try:
        shape = model_shape(resolve_model(cfg["model"]))
    except (OSError, KeyError, ValueError):
        return {}
    longest = 0
    for row in dataset.select(range(min(len(dataset), 16))):
        try:
            tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) else row.get("tools")
            ids = tokenizer.apply_chat_template(row["messages"], tools=tools, tokenize=True, return_dict=False)
        except Exception:  # noqa: BLE001 - an estimate; a row the template rejects fails later with TRL's error
            continue
        longest = max(longest, len(ids))
    est = estimate_sft_peak(shape, cfg, longest or int((cfg.get("sft") or {}).get("max_length") or 1024))
    s = cfg.get("sft") or {}
    return _within(est, available, "SFT",
                   f"Lower sft.per_device_train_batch_size (now {s.get('per_device_train_batch_size')}; raise "
                   f"sft.gradient_accumulation_steps to keep the batch) or sft.max_length (now {s.get('max_length')}), "
                   "or set sft.gradient_checkpointing: true")
