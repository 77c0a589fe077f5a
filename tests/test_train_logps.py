"""The completion-only log-probabilities of mentor.train.logps (issue #11) against TRL's own fused
LM head, on the bundled SmolLM2-135M student: same log-probs, same entropies, same gradients --
also when the rollouts of one question run their shared prompt once."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _batch(tok, keep: int):
    """Three left-padded prompts -- two rollouts of one question, one of another -- and
    right-padded completions of different lengths, as TRL builds a micro-batch."""
    from mentor.smoke import micro_batch

    q = "What is 17 * 23 + 5? Use the tools."
    return micro_batch(tok, [(q, " <tool_call>multiply(17, 23)</tool_call> then add 5"), ("Hi", " 396"),
                             (q, " 17 * 23 = 391, plus 5 is 396")], keep)


@pytest.mark.parametrize(("lora", "share"), [(False, False), (True, False), (False, True), (True, True)],
                         ids=["full", "lora", "full-shared-prompt", "lora-shared-prompt"])
def test_completion_logps_equal_trls_fused_head(default_model_path, lora, share):
    from trl.trainer.utils import add_fused_lm_head

    from mentor.models import load_model, load_tokenizer
    from mentor.train.logps import compact_supported, completion_logps

    tok = load_tokenizer(default_model_path)
    torch.manual_seed(0)
    keep = 12
    ids, mask = _batch(tok, keep)
    results = []
    for path in ("trl", "compact"):
        model = load_model(default_model_path)
        add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
        if lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(0)  # the same random (non-zero) adapter for both paths
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
        assert compact_supported(model, ids.device)
        if path == "trl":
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-keep] = -100
            out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
            logps, ent = out.log_probs[:, -keep:], out.entropy[:, -keep:]
        else:
            logps, ent = completion_logps(model, ids, mask, keep, 0.7, ("log_probs", "entropy"), share_prompt=share)
        (logps.sum() + 0.1 * ent.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logps.detach(), ent.detach(), grads))
    (lp_a, ent_a, g_a), (lp_b, ent_b, g_b) = results
    comp = mask[:, -keep:].bool()
    assert comp.sum() < comp.numel()  # the second completion is padded: masked positions are scored 0
    if share:
        from mentor.train.logps import _prompt_groups

        rows, inverse = _prompt_groups(ids, mask, ids.size(1) - keep)
        assert rows.tolist() == [0, 1] and inverse.tolist() == [0, 1, 0]
    assert (lp_b[~comp] == 0).all() and (lp_a[~comp] == 0).all()
    torch.testing.assert_close(lp_b, lp_a, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ent_b, ent_a, atol=1e-4, rtol=1e-4)
    assert g_a.keys() == g_b.keys() and len(g_a) > (100 if lora else 200)
    for name in g_a:  # atol: fp32 summation order follows the thread count (at 1 thread one element
        # of 884,736 was 5.9e-5 off); a wrong gradient is off by the gradient's own scale (~1e-3)
        torch.testing.assert_close(g_b[name], g_a[name], atol=1e-4, rtol=2e-3, msg=lambda m, name=name: f"{name}: {m}")


def test_compact_path_defers_to_trl_where_it_does_not_apply(default_model_path):
    from mentor.models import load_model
    from mentor.train.logps import compact_supported

    model = load_model(default_model_path)
    assert compact_supported(model, torch.device("cpu"))
    assert not compact_supported(model, torch.device("cpu"), cast_lm_head_to_fp32=True)
    model.config.final_logit_softcapping = 30.0
    assert not compact_supported(model, torch.device("cpu"))


def test_shared_prompt_falls_back_under_gradient_checkpointing(default_model_path):
    """With gradient checkpointing a model keeps no cache in training (the GPU configs): the shared
    prompt path runs one pass over the sequence instead, with the same numbers."""
    from mentor.models import load_model, load_tokenizer
    from mentor.train.logps import completion_logps

    tok = load_tokenizer(default_model_path)
    ids, mask = _batch(tok, 12)
    model = load_model(default_model_path)
    want, _ = completion_logps(model, ids, mask, 12, 1.0, ("log_probs",))
    model.gradient_checkpointing_enable()
    model.train()
    got, _ = completion_logps(model, ids, mask, 12, 1.0, ("log_probs",), share_prompt=True)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_lora_layers_skip_their_input_casts_under_autocast(default_model_path):
    """A bf16 base with float32 LoRA adapters under bf16 autocast (configs/cpu.yaml): without PEFT's
    input casts the LoRA layers give the same log-probs and the same adapter gradients, bit for bit
    (autocast runs their matmuls in bf16 either way); outside autocast the casts stay on."""
    from peft import LoraConfig, get_peft_model

    from mentor.models import load_model, load_tokenizer
    from mentor.train.logps import completion_logps, lora_input_casts_off

    tok = load_tokenizer(default_model_path)
    keep = 12
    ids, mask = _batch(tok, keep)
    torch.manual_seed(0)
    model = get_peft_model(load_model(default_model_path, dtype="bfloat16"),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert layers and next(p for n, p in model.named_parameters() if "lora_A" in n).dtype == torch.float32
    results = []
    for skip in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), lora_input_casts_off(model, "cpu" if skip else "cuda"):
            assert all(m.cast_input_dtype_enabled is not skip for m in layers)
            logps, _ = completion_logps(model, ids, mask, keep, 1.0, ("log_probs",), share_prompt=True)
        logps.sum().backward()
        results.append((logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    assert all(m.cast_input_dtype_enabled for m in layers)  # restored on exit
    (lp_a, g_a), (lp_b, g_b) = results
    assert torch.equal(lp_a, lp_b) and g_a.keys() == g_b.keys() and len(g_a) > 100
    assert all(torch.equal(g_a[n], g_b[n]) for n in g_a)
    with lora_input_casts_off(model, "cpu"):  # no autocast: a bf16 input must be cast for the fp32 adapter
        assert all(m.cast_input_dtype_enabled for m in layers)
