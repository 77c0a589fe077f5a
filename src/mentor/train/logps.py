"""Per-token log-probabilities of the completions only, on devices without Triton (issue #11).

TRL 1.16 scores GRPO completions with a fused, chunked LM head (``add_fused_lm_head``). On
CUDA/XPU it projects only the positions whose label is kept (the completion tokens); everywhere
else it projects *every* position of prompt + completion through the 49k-token vocabulary and
masks the prompt afterwards, "so that tile shapes do not change" (a concern of compiled
backends, not of eager CPU). With mentor's ~420-token tool prompts and ~100-token completions
that is ~4x the LM-head work in the policy forward, its backward and the reference pass: the
profile of one bundled-default step (``benchmarks/bench_train.py``) had the LM head at ~55% of
forward+backward.

``compact_logps_trainer(GRPOTrainer)`` overrides ``_get_per_token_logps_and_entropies`` so that
on such devices the backbone runs as before and TRL's own kernel (``ChunkedLogProbFunction``,
same tiles, same fp32 accumulation) is applied to the kept positions only -- exactly TRL's
CUDA path. The log-probabilities, entropies and gradients are the same numbers
(``tests/test_train_logps.py``); anything the fast path does not cover (vision inputs, MoE aux
loss, logit soft-capping or scaling, ``cast_lm_head_to_fp32``, Triton devices) goes to TRL.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compact_logps_trainer", "compact_supported", "lora_input_casts_off"]

#: text-config attributes that change the LM head's logits (TRL handles them; we defer to it)
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def compact_supported(model: Any, device: Any, cast_lm_head_to_fp32: bool = False) -> bool:
    """Whether the compact path applies to ``model`` (a PreTrainedModel or PEFT model) on ``device``."""
    from trl.kernels.chunked_logprob import _use_triton

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = base.config.get_text_config()
    return (not _use_triton(device) and not cast_lm_head_to_fp32 and text is base.config
            and not getattr(text, "output_router_logits", False)
            and all(getattr(text, a, None) is None for a in _LOGIT_TRANSFORMS))


def _prompt_groups(input_ids: Any, attention_mask: Any, width: int) -> tuple[Any, Any] | None:
    """Rows whose first ``width`` tokens (ids and mask) are identical -- a GRPO group's rollouts
    of one question: (index of one row per distinct prompt, each row's group), or None when every
    row's prompt is distinct."""
    import torch

    group: dict[tuple, int] = {}
    rows: list[int] = []
    inverse: list[int] = []
    for i, key in enumerate(torch.cat([input_ids[:, :width], attention_mask[:, :width]], 1).tolist()):
        g = group.setdefault(tuple(key), len(rows))
        if g == len(rows):
            rows.append(i)
        inverse.append(g)
    return None if len(rows) == len(inverse) else (torch.tensor(rows), torch.tensor(inverse))


def _completion_hidden(base: Any, input_ids: Any, attention_mask: Any, keep: int, share_prompt: bool) -> Any:
    """The backbone's last hidden states at the positions that predict the last ``keep`` tokens.
    With ``share_prompt``, rows with the same prompt run it once: its keys/values (with their
    autograd history) are gathered for every row of the group and the completions run on top,
    the same positions and masks as one pass over the whole sequence."""
    width = input_ids.size(1) - keep
    # with gradient checkpointing in training the model keeps no cache: one pass over the sequence
    checkpointing = base.training and getattr(base, "is_activation_checkpointing",
                                              getattr(base, "is_gradient_checkpointing", False))
    groups = _prompt_groups(input_ids, attention_mask, width) if share_prompt and width > 0 and not checkpointing else None
    if groups is None:
        return _full_hidden(base, input_ids, attention_mask, keep)
    import torch

    rows, inverse = groups
    config = base.config
    impl = config._attn_implementation
    config._attn_implementation = "eager"  # measured: faster than CPU sdpa's backward for this shape
    try:
        head = base.base_model(input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width],
                               use_cache=True)
        cache = head.past_key_values
        if cache is None:  # a model that keeps no cache in training: one pass over the sequence
            return _full_hidden(base, input_ids, attention_mask, keep)
        cache.batch_select_indices(inverse)
        tail = base.base_model(input_ids=input_ids[:, width:], attention_mask=attention_mask, past_key_values=cache,
                               use_cache=True)
    finally:
        config._attn_implementation = impl
    return torch.cat([head.last_hidden_state[inverse, -1:], tail.last_hidden_state[:, :-1]], 1)


def _full_hidden(base: Any, input_ids: Any, attention_mask: Any, keep: int) -> Any:
    out = base.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state[:, -keep - 1:-1]


def completion_logps(model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int, temperature: float,
                     outputs: tuple[str, ...], share_prompt: bool = False) -> tuple[Any, Any]:
    """Log-probabilities (and entropies if ``"entropy" in outputs``) of the last ``logits_to_keep``
    tokens of each row, zero where ``attention_mask`` is 0: the backbone over the whole sequence
    (with ``share_prompt``: each distinct prompt once), the LM head over the kept, unmasked
    positions only."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = _completion_hidden(base, input_ids, attention_mask, logits_to_keep, share_prompt)
    labels = input_ids[:, -logits_to_keep:]
    mask = attention_mask[:, -logits_to_keep:].bool()
    head = base.get_output_embeddings()
    per_token = ChunkedLogProbFunction.apply(hidden[mask], head.weight, head.bias, labels[mask], temperature,
                                             _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs)
    logps, entropy = (None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token[:2])
    return logps, entropy


def lora_input_casts_off(model: Any, device_type: str = "cpu") -> Any:
    """A context in which ``model``'s LoRA layers do not cast their input to the adapter's dtype,
    when autocast is on for ``device_type`` (a no-op otherwise). PEFT keeps adapters in float32 on a
    bf16 base and casts every LoRA layer's bf16 input to float32; under autocast the LoRA matmuls
    then cast it back to bf16 -- two copies of each LoRA layer's input, forward and backward, for
    the same numbers (``tests/test_train_logps.py``). ~16% of a bundled-default GRPO step's
    forward+backward (LoRA on every linear layer)."""
    import torch
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(model, active=hasattr(model, "peft_config")
                                       and torch.is_autocast_enabled(device_type))


def compact_logps_trainer(base: type, share_prompt: bool = True) -> type:
    """``base`` (TRL's ``GRPOTrainer`` or a subclass) scoring only completion positions on CPU,
    with ``share_prompt`` each distinct prompt of a micro-batch's rows once."""

    class CompactLogpsGRPOTrainer(base):  # type: ignore[misc, valid-type]
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **extra):
            if (compute_aux_loss or any(v is not None for v in extra.values())
                    or not compact_supported(model, input_ids.device, bool(self.args.cast_lm_head_to_fp32))):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                    **extra)
            import torch

            batch_size = batch_size or input_ids.size(0)
            outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                rows = slice(start, start + batch_size)
                with self.accelerator.autocast(), lora_input_casts_off(model, input_ids.device.type):
                    lp, ent = completion_logps(model, input_ids[rows], attention_mask[rows], logits_to_keep,
                                               self.temperature, outputs, share_prompt)
                logps.append(lp)
                entropies.append(ent)
            return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    return CompactLogpsGRPOTrainer
