"""The final model is written once, by the main process (mentor.train.grpo.save_final).

Under `accelerate launch` with DeepSpeed ZeRO-3 (configs/accelerate/deepspeed_zero3.yaml) every
process runs the same code after training: full fine-tuning must go through Trainer.save_model
(the collective that gathers ZeRO-3 shards) on every rank, and only the main rank may write,
rename or delete. Here a real transformers Trainer around a tiny random Qwen2, one process; a
non-main rank is the same trainer with ``args.should_save`` false (what TrainingArguments says on
process_index > 0)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from mentor.train.grpo import save_final
from test_gpu_configs import tiny_student


@pytest.fixture
def trainer(tmp_path):
    student = tiny_student(tmp_path / "student", "qwen2", True, "qwen2.5")
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(student)
    with torch.no_grad():  # "trained": weights that differ from the student on disk
        model.model.norm.weight.mul_(2.0)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[])
    return Trainer(model=model, args=args, processing_class=AutoTokenizer.from_pretrained(student))


def test_main_process_writes_the_trained_weights(trainer, tmp_path):
    final = tmp_path / "final"
    calls = []
    real = trainer.save_model
    trainer.save_model = lambda out=None, **kw: (calls.append(out), real(out, **kw))[1]
    save_final(trainer, final)
    assert calls == [str(tmp_path / "final.tmp")]  # the gathering path, not a bare save_pretrained
    assert not (tmp_path / "final.tmp").exists() and (final / "tokenizer_config.json").exists()
    saved = AutoModelForCausalLM.from_pretrained(final)
    assert torch.equal(saved.model.norm.weight, trainer.model.model.norm.weight)
    save_final(trainer, final)  # again: replaces the directory atomically
    assert (final / "config.json").exists() and not (tmp_path / "final.tmp").exists()


def test_other_ranks_join_the_save_but_write_nothing(trainer, tmp_path, monkeypatch):
    monkeypatch.setattr(TrainingArguments, "should_save", property(lambda self: False))
    calls = []
    real = trainer.save_model
    trainer.save_model = lambda out=None, **kw: (calls.append(out), real(out, **kw))[1]
    existing = tmp_path / "final"
    existing.mkdir()
    (existing / "config.json").write_text("{}")  # what the main rank wrote: not this rank's to delete
    save_final(trainer, existing)
    assert calls == [str(tmp_path / "final.tmp")]  # it takes part in the (ZeRO-3) gather
    assert not (tmp_path / "final.tmp").exists() and (existing / "config.json").read_text() == "{}"
    save_final(trainer, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_sft_merge_under_zero3_loads_the_base_whole_on_the_main_process(tmp_path, monkeypatch):
    """Under ``accelerate launch`` with ZeRO-3 (the 7B/8B SFT stage), TrainingArguments leaves
    transformers' process-wide ZeRO-3 switch on; the main process's merge loaded the base under
    ``deepspeed.zero.Init`` (partitioned, a broadcast per parameter the other ranks never join).
    Here the switch is on (as there) and the merge must load the base whole, then leave it on."""
    import weakref

    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer
    from transformers.integrations import deepspeed as hf_deepspeed

    import mentor.train.sft as sft

    student = tiny_student(tmp_path / "student", "qwen2", True, "qwen2.5")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(student), LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)  # a trained adapter: merging changes q_proj
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[])
    trainer = Trainer(model=model, args=args, processing_class=AutoTokenizer.from_pretrained(student))

    class Zero3:
        config: dict = {}  # noqa: RUF012

        def is_zero3(self):
            return True

    switch = Zero3()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", weakref.ref(switch))
    seen = []
    real = sft.load_model
    monkeypatch.setattr(sft, "load_model", lambda *a, **k: (seen.append(hf_deepspeed.is_deepspeed_zero3_enabled()),
                                                            real(*a, **k))[1])
    final = sft.save_sft_final(trainer, tmp_path / "sft")
    assert seen == [True] and hf_deepspeed.is_deepspeed_zero3_enabled()  # the run's switch stays on
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)  # this test's own loads
    merged = AutoModelForCausalLM.from_pretrained(final)
    base = AutoModelForCausalLM.from_pretrained(student)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])  # the adapter is merged in
