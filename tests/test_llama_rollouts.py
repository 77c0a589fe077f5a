"""llama.cpp rollouts (issue #11): the GGUF export of a model's current weights, the engine's
agreement with transformers on the same weights, the in-place weight sync, and GRPO with
``generation_backend: llama_cpp`` end to end."""

from __future__ import annotations

import json

import pytest

from mentor.generation.llama_cpp import GGUFWeights, LlamaCppEngine, LlamaCppError, gguf_tensors, sampling_of
from mentor.generation.loop import Sampling
from mentor.models import bundled_gguf
from mentor.train import config as C
from mentor.train.rollouts import _remaining

PROMPT = [{"role": "user", "content": "What is 12 * 7? Think step by step."}]


@pytest.fixture(scope="module")
def student():
    from mentor.models import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


def _hf_greedy(model, ids, n):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()


def _prompt_ids(tok):
    return tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False)


def test_remaining_budget_counts_the_completion_so_far():
    orig = [[1, 2, 3], [7, 8]]
    assert _remaining([1, 2, 3], orig, 10) == 10
    assert _remaining([1, 2, 3, 4, 5, 6, 7], orig, 10) == 6  # 4 tokens of completion + tool result so far
    assert _remaining([7, 8] + [0] * 20, orig, 10) == 1  # over budget: TRL truncates; generate at least one
    assert _remaining([9, 9], orig, 10) == 10  # not a continuation of this batch: the full budget


def test_config_names_the_backend_and_its_options():
    with pytest.raises(C.ConfigError, match="generation_backend must be one of.*llama_cpp"):
        C.validate({"generation_backend": "llamacpp"}, "cfg.yaml")
    with pytest.raises(C.ConfigError, match="cfg.yaml, section 'llama_cpp': unknown key 'weight'"):
        C.validate({"generation_backend": "llama_cpp", "llama_cpp": {"weight": "bf16"}}, "cfg.yaml")
    with pytest.raises(C.ConfigError, match="weight_type must be one of"):
        C.validate({"llama_cpp": {"weight_type": "q4"}}, "cfg.yaml")
    C.validate({"generation_backend": "llama_cpp", "llama_cpp": {"weight_type": "q8_0", "n_ctx": 2048}}, "cfg.yaml")


def test_sampling_maps_trl_generation_config():
    from transformers import GenerationConfig

    s = sampling_of(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=96))
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens) == (0.7, 0.9, None, 96)
    assert sampling_of(GenerationConfig(do_sample=False, max_new_tokens=8)).greedy
    with pytest.raises(LlamaCppError, match="repetition_penalty"):
        sampling_of(GenerationConfig(do_sample=True, repetition_penalty=1.1))


@pytest.mark.slow
def test_exported_weights_decode_like_transformers(student, tmp_path):
    """The f32 export of the bundled model, decoded greedily by llama.cpp, continues the prompt
    with the same tokens as transformers (a wrong q/k permutation or name map gives garbage)."""
    model, tok = student
    ids = _prompt_ids(tok)
    engine = LlamaCppEngine(template=bundled_gguf(), weight_type="f32", n_ctx=1024, gguf_path=tmp_path / "m.gguf")
    engine.sync(model, step=0)
    try:
        got = engine.complete(ids, Sampling(temperature=0.0, max_new_tokens=24), eos_ids=[tok.eos_token_id])
    finally:
        engine.close()
    want = _hf_greedy(model, ids, 24)
    n = min(len(got), len(want))
    assert n >= 8 and got[:n] == want[:n], (tok.decode(got), tok.decode(want))


@pytest.mark.slow
def test_batched_sequences_decode_like_one_at_a_time(student, tmp_path):
    """``complete_batch`` decodes several prompts as parallel llama.cpp sequences in one KV cache:
    greedy, each continuation is the one transformers gives for its prompt alone; a prompt that
    repeats another shares its prefill (copied cache cells) and one that extends an earlier
    prompt + completion (a tool iteration) reuses that sequence's cache instead of re-computing it."""
    model, tok = student
    a = _prompt_ids(tok)
    b = tok.apply_chat_template([{"role": "user", "content": "Name three prime numbers."}], add_generation_prompt=True,
                                tokenize=True, return_dict=False)
    engine = LlamaCppEngine(template=bundled_gguf(), weight_type="f32", n_ctx=2048, gguf_path=tmp_path / "m.gguf",
                            n_seq=4)
    engine.sync(model, step=0)
    greedy = Sampling(temperature=0.0, max_new_tokens=12)
    try:
        got = engine.complete_batch([a, b, a], greedy, [tok.eos_token_id], [12, 12, 6])
        shared = next(k for k in range(len(b)) if a[k] != b[k])  # the chat template's system prompt
        assert shared > 5
        # the third prompt copied all but the last token of the first one's cells, the second its system prompt
        assert engine.stats["reused_tokens"] == len(a) - 1 + shared
        follow = a + got[0] + tok(" Then 84 + 1?", add_special_tokens=False)["input_ids"]
        before = dict(engine.stats)
        again = engine.complete_batch([follow], greedy, [tok.eos_token_id], [8])[0]
        assert engine.stats["reused_tokens"] - before["reused_tokens"] == len(a) + len(got[0]) - 1
    finally:
        engine.close()
    for prompt, out, n in ((a, got[0], 12), (b, got[1], 12), (a, got[2], 6), (follow, again, 8)):
        want = _hf_greedy(model, prompt, n)
        k = min(len(out), len(want))
        assert k >= 4 and out[:k] == want[:k], (tok.decode(out), tok.decode(want))
    assert got[2] == got[0][:6]


@pytest.mark.slow
@pytest.mark.parametrize("mmap", [True, False], ids=["mapped", "read"])
def test_sync_follows_the_trained_lora_weights_in_place(student, tmp_path, mmap):
    """A LoRA adapter with non-zero weights changes what the model says; after ``sync`` llama.cpp
    decodes the adapted model (LoRA merged on the fly into the same GGUF file, overwritten in
    place), and the PEFT model itself is left unmerged. A memory-mapped model computes with the
    rewritten file as it is (no re-load: the probe finds the writes visible); a model read into
    llama.cpp's own buffers does not (the probe finds out) and is re-loaded."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, tok = student
    ids = _prompt_ids(tok)
    torch.manual_seed(0)  # LoRA A's initialisation: an adapter that changes the greedy text whatever ran before
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
    try:
        engine = LlamaCppEngine(template=bundled_gguf(), weight_type="f32", n_ctx=1024, gguf_path=tmp_path / "m.gguf",
                                mmap=mmap)
        greedy = Sampling(temperature=0.0, max_new_tokens=16)
        engine.sync(peft, step=0)  # B = 0: the base model
        before = engine.complete(ids, greedy, eos_ids=[tok.eos_token_id])
        inode = (tmp_path / "m.gguf").stat().st_ino
        loaded = engine._model
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        engine.sync(peft, step=1)
        assert engine.in_place is mmap and (engine._model is loaded) is mmap
        after = engine.complete(ids, greedy, eos_ids=[tok.eos_token_id])
        engine.close()
        want = _hf_greedy(peft, ids, 16)
        assert (tmp_path / "m.gguf").stat().st_ino == inode  # rewritten in place, not re-created
        n = min(len(after), len(want))
        assert n >= 8 and after[:n] == want[:n]
        assert after != before
        assert not any(getattr(m, "merged", False) for m in peft.modules())
    finally:
        peft.unload()


def test_template_mismatch_is_a_clear_error(tmp_path):
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True)
    state = {"model.embed_tokens.weight": torch.zeros(256, 64), "model.norm.weight": torch.ones(64)}
    w = GGUFWeights(tmp_path / "x.gguf", bundled_gguf(), "bf16")
    with pytest.raises(LlamaCppError, match="do not fit the GGUF template.*convert_hf_to_gguf"):
        w.write(gguf_tensors(state, cfg))
    with pytest.raises(LlamaCppError, match=r"vocabulary \(256 tokens\) is not the tokenizer of the GGUF template"):
        w.write(gguf_tensors(state, cfg), cfg)
    assert not (tmp_path / "x.gguf").exists()


def test_a_template_of_another_size_lends_its_tokenizer(tmp_path, tiny_model_dir):
    """A model of another size with the template's tokenizer (the suite's 2-layer Llama with the
    SmolLM2 tokenizer): the export takes its hyperparameters from the model's config, and llama.cpp
    decodes it greedily as transformers does."""
    import torch
    from transformers import AutoModelForCausalLM

    from mentor.models import load_tokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():  # larger weights than the fixture's init: greedy text that varies
        for p in model.parameters():
            p.normal_(0, 1.0) if p.ndim == 2 else None
    tok = load_tokenizer(tiny_model_dir)
    ids = tok("Hello there, how are", add_special_tokens=False)["input_ids"]
    engine = LlamaCppEngine(template=bundled_gguf(), weight_type="f32", gguf_path=tmp_path / "m.gguf", n_seq=2)
    try:
        engine.sync(model, step=0)
        got = engine.complete(ids, Sampling(temperature=0.0, max_new_tokens=10), [])
    finally:
        engine.close()
    want = _hf_greedy(model, ids, 10)
    with torch.no_grad():  # compare up to the first (near-)tie of transformers' top two logits
        margins = [float((lambda v: v[0] - v[1])(model(torch.tensor([ids + want[:i]])).logits[0, -1].topk(2).values))
                   for i in range(len(want))]
    k = next((i for i, m in enumerate(margins) if m < 1e-3), len(want))
    assert k >= 3 and got[:k] == want[:k] and len(set(want[:k])) >= 3, (got, want, margins)


@pytest.mark.slow
def test_grpo_with_llama_cpp_rollouts(tmp_path):
    """Two GRPO steps whose rollouts come from llama.cpp: the weights are synced once per step,
    the completions are scored and trained on, and the private GGUF is removed at the end."""
    from mentor.data import synthetic_questions
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo, save_final

    refs = tmp_path / "refs.jsonl"
    generate_references(synthetic_questions("train", 4, 0), make_teacher("program"), refs, progress=False, seed=0)
    cfg = {"generation_backend": "llama_cpp", "lora_grpo": True, "model_dtype": "auto",  # bf16 where native (mentor.precision)
           "llama_cpp": {"weight_type": "bf16", "n_ctx": 2048},
           "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                    "max_completion_length": 48, "max_tool_calling_iterations": 2, "bf16": "auto",
                    "save_steps": 1000, "learning_rate": 1e-4}}
    plan = prepare_grpo(refs, tmp_path / "out", preset="mentor", model="smollm2-135m-compact", config=cfg, max_steps=2)
    trainer, _ = build_grpo_trainer(plan)
    engine = trainer.rollout_engine
    syncs = []
    orig = engine.sync
    engine.sync = lambda model, step=None: (syncs.append(step), orig(model, step))
    gguf_dir = engine.weights.path.parent
    trainer.train()
    assert syncs == [0, 1]
    assert not gguf_dir.exists()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["completion_length"] > 0 for r in rows)
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["speed_options"]["generation_backend"] == "llama_cpp"
    save_final(trainer, tmp_path / "final")
    assert (tmp_path / "final" / "config.json").exists()


@pytest.mark.slow
def test_llama_generator_evaluates_like_transformers():
    """``eval.backend: llama_cpp`` with f32 weights: the same multi-turn evaluation (prompts,
    tool calls, results, answers) as the transformers generator, greedy, item for item, when
    llama.cpp decodes one conversation at a time. Decoded together (several sequences per
    llama.cpp batch) the numerics depend on the batch, so greedy text may part at a near-tie
    (here: deep in a run of repeated digits); the answers stay the same."""
    from mentor.eval import evaluate, load_benchmark
    from mentor.generation import make_generator
    from mentor.generation.llama_cpp import LlamaCppGenerator

    bench = load_benchmark("synthetic:test", limit=3)
    kw = {"max_turns": 3, "max_new_tokens": 48, "temperature": 0, "progress": False}
    hf = evaluate("smollm2-135m", bench, generator=make_generator("smollm2-135m"), **kw)
    for n_seq in (1, 8):
        llama = LlamaCppGenerator.from_name("smollm2-135m", weight_type="f32", n_seq=n_seq)
        try:
            lc = evaluate("smollm2-135m", bench, generator=llama, **kw)
        finally:
            llama.close()
        assert [r["prediction"] for r in lc["records"]] == [r["prediction"] for r in hf["records"]]
        if n_seq == 1:
            assert [r["trajectory"] for r in lc["records"]] == [r["trajectory"] for r in hf["records"]]


@pytest.mark.slow
def test_hf_teacher_generates_with_llama_cpp(tmp_path):
    from mentor.data import synthetic_questions
    from mentor.generation.llama_cpp import LlamaCppGenerator
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references

    teacher = make_teacher("hf", model="smollm2-135m-compact", generation_backend="llama_cpp", max_tokens=48, max_turns=2)
    out = tmp_path / "refs.jsonl"
    generate_references(synthetic_questions("train", 2, 0), teacher, out, progress=False, keep_all=True, seed=0)
    assert isinstance(teacher.generator(), LlamaCppGenerator)
    meta = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert meta["teacher"]["generation_backend"] == "llama_cpp"
    assert meta["summary"]["total"] == 2, meta["summary"]


def test_stale_rollout_files_of_dead_processes_are_swept(tmp_path):
    """A killed run leaves its GGUF in /dev/shm; the next engine removes it (not a live one's)."""
    import os
    import subprocess
    import sys

    from mentor.generation.llama_cpp import sweep_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"mentor-rollout-{int(dead.stdout)}-abc"
    live = tmp_path / f"mentor-rollout-{os.getpid()}-def"
    other = tmp_path / "mentor-rollout-notapid-x"
    for d in (stale, live, other):
        d.mkdir()
        (d / "policy.gguf").write_bytes(b"GGUF")
    assert sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
