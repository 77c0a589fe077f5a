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
