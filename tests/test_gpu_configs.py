"""CPU dry runs of the paper-scale GPU configs (slow): each training config (`configs/qwen*.yaml`)
and the GPU pipeline (`configs/pipeline/gpu-qwen2.5-1.5b.yaml`) trains a tiny RANDOM model of
its student's architecture family through its first optimizer steps and evaluates it on 2 items.

What a CPU needs is overridden, and nothing else: the model (a 2-layer Qwen2/Qwen3 with the
family's official tool chat template, as TRL ships it, over a ~700-token byte-level BPE:
no Hub access here), `use_cpu`, vLLM off, no DeepSpeed (no `accelerate launch`), 16 new tokens.
The configs are resolved as on a CUDA machine (without `configs/cpu.yaml` underneath), and the
test asserts that the run is the paper's: TRL's `loss_type` "grpo" (Eq. 3), beta, epsilon, lr,
10 rollouts per question, and TWO optimizer steps per generation batch, counted with
`on_optimizer_step` against the generation calls. On 1 process the generation batch is 2
questions (20 completions) and a step 1 question; on the 8 GPUs of configs/accelerate/*.yaml
TRL's own arithmetic gives 16 and 8 (`test_gpu_schedule_on_8_processes`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mentor.train import config as C
from test_train import PROBLEMS
from test_train import _refs as _train_refs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: config -> (architecture family, tied input/output embeddings as in the real checkpoint, chat template)
STUDENTS = {
    "qwen2.5-1.5b-instruct.yaml": ("qwen2", True, "qwen2.5"),
    "qwen2.5-7b-instruct.yaml": ("qwen2", False, "qwen2.5"),
    "qwen3-1.7b.yaml": ("qwen3", True, "qwen3"),
    "qwen3-8b.yaml": ("qwen3", False, "qwen3"),
}
#: the only GRPOConfig / SFTConfig settings a CPU dry run changes
CPU_GRPO = {"use_cpu": True, "use_vllm": False, "max_completion_length": 16, "max_steps": 2}
CPU_SFT = {"use_cpu": True, "max_steps": 1}
def write_refs(path: Path) -> Path:
    """References as `mentor teach` writes them (the teacher's stage of the GPU pipeline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _train_refs(path)


def tiny_tokenizer(style: str):
    """A byte-level BPE (at most 1,024 tokens; ~700 learnt from this corpus) with Qwen's special
    and tool tokens, trained on the rendered prompts and references, carrying the family's official tool chat template. (TRL
    scores every position of a sequence through the LM head on CPU, so the vocabulary size,
    not the 2-layer model, sets the cost of a step.)"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mentor.prompts import build_messages, chat_template, render

    template = chat_template(style)
    corpus = [render(build_messages(f"What is {a} {op} {b}?"), "math", style=style) for a, b, op, _ in PROBLEMS]
    corpus += [f"<tool_call>\n{{\"name\": \"{n}\", \"arguments\": {{\"firstNumber\": {a}, \"secondNumber\": {b}}}}}\n</tool_call>"
               f" The answer is \\boxed{{{a * b}}}." for a, b, _, n in PROBLEMS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(corpus * 4, trainers.BpeTrainer(vocab_size=1024, special_tokens=special,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens(["<tool_call>", "</tool_call>", "<think>", "</think>"])  # added, not special, as in Qwen's
    tok.chat_template = template
    return tok


def tiny_student(out: Path, family: str, tied: bool, style: str) -> Path:
    """A random 2-layer model of ``family`` saved with its tokenizer: a real HF model directory."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    tok = tiny_tokenizer(style)
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[family]
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = config_cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=8, max_position_embeddings=8192, tie_word_embeddings=tied,
                     bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    model = model_cls(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    assert model.config.model_type == family
    return out


@pytest.fixture
def gpu_machine(monkeypatch):
    """Configs resolve as on a CUDA machine: the paper's defaults, then the GPU config, without
    configs/cpu.yaml underneath (mentor.train.config.resolve layers it only without CUDA)."""
    monkeypatch.setattr(C, "default_config_path", lambda: None)


def paper_settings(cfg: dict, overrides: dict) -> dict:
    """``cfg`` without the keys a CPU dry run overrides (what must be the GPU config's own)."""
    out = {k: v for k, v in cfg.items() if k not in ("model", "grpo", "sft") and not k.startswith("_")}
    for section in ("grpo", "sft"):
        out[section] = {k: v for k, v in cfg[section].items() if k not in overrides[section]}
    return out


class Recorder:
    """Counts a trainer's optimizer steps (``on_optimizer_step``), its generation calls (with the
    questions and completions of each) and the completions of each loss micro-batch."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class Steps(TrainerCallback):
            def on_optimizer_step(self, args, state, control, **kwargs):
                outer.optimizer_steps += 1

        self.callback, self.optimizer_steps, self.generations, self.micro_batches = Steps(), 0, [], []

    def attach(self, trainer):
        generate, loss = trainer._generate_and_score_completions, trainer.compute_loss

        def counted_generate(batch):
            out = generate(batch)
            self.generations.append({"questions": len({row["id"] for row in batch}), "completions": len(out["completion_ids"]),
                                     "old_logps": out.get("old_per_token_logps") is not None})
            return out

        def counted_loss(model, inputs, *args, **kwargs):
            if model.training:
                self.micro_batches.append(len(inputs["completion_ids"]))
            return loss(model, inputs, *args, **kwargs)

        trainer._generate_and_score_completions, trainer.compute_loss = counted_generate, counted_loss
        return trainer


def assert_paper_grpo(trainer, temperature: float) -> None:
    """What TRL actually runs with: Table 5 and Eq. 3."""
    a = trainer.args
    assert trainer.loss_type == "grpo" and a.scale_rewards in ("group", True)  # Eq. 3; advantages over group std
    assert (trainer.beta, trainer.epsilon_low, trainer.epsilon_high) == (0.001, 0.2, 0.2)
    assert (a.learning_rate, a.optim, a.num_train_epochs, a.num_iterations) == (1e-6, "adamw_torch", 2, 1)
    assert (trainer.num_generations, trainer.temperature) == (10, temperature)
    assert (a.per_device_train_batch_size, a.gradient_accumulation_steps, a.steps_per_generation) == (10, 1, 2)


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_gpu_training_config_dry_run(name, tmp_path, gpu_machine):
    from mentor.eval import evaluate
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo, save_final
    from mentor.train.sft import build_sft_trainer, prepare_sft

    family, tied, style = STUDENTS[name]
    student = tiny_student(tmp_path / "student", family, tied, style)
    refs = write_refs(tmp_path / "refs.jsonl")
    path = REPO / "configs" / name
    over = {"grpo": CPU_GRPO, "sft": CPU_SFT}
    plan = prepare_grpo(refs, tmp_path / "grpo", preset="mentor", model=str(student), config=path, **over)
    assert paper_settings(plan.cfg, over) == paper_settings(C.resolve(path), over)  # nothing else changed
    rec = Recorder()
    trainer, _ = build_grpo_trainer(plan, callbacks=[rec.callback])
    assert_paper_grpo(rec.attach(trainer), yaml.safe_load(path.read_text())["grpo"]["temperature"])
    trainer.train()
    # one generation batch (2 questions x 10 rollouts on 1 process), two optimizer steps of 1 question
    assert rec.generations == [{"questions": 2, "completions": 20, "old_logps": True}], rec.generations
    assert rec.optimizer_steps == 2 and rec.micro_batches == [10, 10] and trainer.state.global_step == 2
    schedule = json.loads((tmp_path / "grpo" / "run.json").read_text())["schedule"]
    assert schedule == {"processes": 1, "questions_per_generation": 2, "completions_per_generation": 20,
                        "questions_per_optimizer_step": 1, "completions_per_optimizer_step": 10,
                        "optimizer_steps_per_generation": 2, "loss_type": "grpo"}
    save_final(trainer, tmp_path / "grpo" / "final")
    res = evaluate(str(tmp_path / "grpo" / "final"), "aime24", limit=2, max_new_tokens=16, max_turns=2, progress=False)
    assert res["n"] == 2 and all(r["generated_tokens"] > 0 for r in res["records"])
    # the SFT section (Table 6) through its first optimizer step with the same model
    prep = prepare_sft(refs, tmp_path / "sft", model=str(student), config=path, **over)
    s = prep["cfg"]["sft"]
    assert (s["learning_rate"], s["weight_decay"], s["per_device_train_batch_size"], s["gradient_accumulation_steps"]) == (1e-7, 0.033, 4, 16)
    rec = Recorder()
    sft_trainer = build_sft_trainer(prep, callbacks=[rec.callback])
    sft_trainer.train()
    assert rec.optimizer_steps == 1


def test_gpu_pipeline_dry_run(tmp_path, gpu_machine, monkeypatch):
    """`configs/pipeline/gpu-qwen2.5-1.5b.yaml` through its training stages (under `accelerate
    launch` on GPUs) and its evaluation and report: the teacher's references (a 235B model served
    elsewhere) are given as a file, as the teach stage would leave them; the benchmarks that exist
    only on the Hub are left out (no Hub access); evaluation runs in-process instead of vLLM."""
    from transformers.trainer_callback import CallbackHandler
    from trl import GRPOTrainer

    from mentor.pipeline import Pipeline, load_config
    from mentor.tasks.bfcl import GROUPS as BFCL_GROUPS
    from mentor.tasks import get_task
    from mentor.tasks.math import MATH_SETS

    path = REPO / "configs" / "pipeline" / "gpu-qwen2.5-1.5b.yaml"
    gpu = load_config(path)
    family, tied, style = STUDENTS[Path(gpu["train"]["config"]).name]
    # the FlashRAG QA samples and their wiki-18 retriever need downloads: tests/test_rag_eval.py
    # and tests/test_paper_acceptance.py run them on local stand-ins
    hub_only = {name for name, (local, _) in MATH_SETS.items() if local is None} | set(get_task("qa").names())
    in_domain = [b for b in gpu["eval"]["in_domain"] if b not in hub_only]
    out_of_domain = [b for b in gpu["eval"]["out_of_domain"] if b not in hub_only]
    assert in_domain == ["aime24", "amc23", "minervamath"] and out_of_domain == ["bfcl:v4"]
    cfg = load_config(path, {
        "student": str(tiny_student(tmp_path / "student", family, tied, style)),
        "train": {"sft": CPU_SFT, "rl": CPU_GRPO},
        "eval": {"in_domain": in_domain, "out_of_domain": out_of_domain, "limit": 2, "max_new_tokens": 16, "server": None,
                 "retriever": None},
    })
    out = tmp_path / "run"
    write_refs(out / "references.jsonl")

    seen = {"generations": [], "optimizer_steps": 0}
    generate, step = GRPOTrainer._generate_and_score_completions, CallbackHandler.on_optimizer_step

    def counted_generate(self, batch):
        result = generate(self, batch)
        seen["generations"].append(len(result["completion_ids"]))
        return result

    def counted_step(self, args, state, control, **kwargs):
        seen["optimizer_steps"] += 1
        return step(self, args, state, control, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", counted_generate)
    monkeypatch.setattr(CallbackHandler, "on_optimizer_step", counted_step)
    pipe = Pipeline(cfg, out, progress=False)
    per_stage = {}
    for stage in ("vanilla", "sft", "sparse", "mentor", "eval", "report"):
        seen.update(generations=[], optimizer_steps=0)
        pipe.run([stage])
        per_stage[stage] = (list(seen["generations"]), seen["optimizer_steps"])
    assert per_stage["sft"] == ([], 1)
    assert per_stage["sparse"] == per_stage["mentor"] == ([20], 2)  # 2 optimizer steps per generation batch
    for method in ("sparse", "mentor"):
        run = json.loads((out / "models" / method / "run.json").read_text())
        assert run["schedule"]["optimizer_steps_per_generation"] == 2 and run["schedule"]["loss_type"] == "grpo"
        g = run["config"]["grpo"]
        assert (g["beta"], g["epsilon"], g["learning_rate"], g["num_generations"], g["temperature"]) == (0.001, 0.2, 1e-6, 10, 0.7)
        assert run["config"]["preset"] == method and run["config"]["model"] == cfg["student"]  # rl_init: base
    items = {b: 2 * len(BFCL_GROUPS["v4"]) if b == "bfcl:v4" else 2 for b in in_domain + out_of_domain}  # BFCL: per category
    for method in ("vanilla", "sft", "sparse", "mentor"):
        for bench in in_domain + out_of_domain:
            res = json.loads((out / "eval" / method / (bench.replace(":", "_") + ".json")).read_text())
            assert res["n"] == items[bench], (method, bench, res["n"])
            if bench in in_domain:
                assert res["settings"]["scorer"] == "exact"
    assert (out / "eval" / "vanilla" / "aime24.no_tools.json").exists()  # tool_effect
    # the teacher's row is there (eval.teacher), empty: no teacher_eval stage ran here
    assert set(json.loads((out / "summary.json").read_text())) == {"teacher", "vanilla", "sft", "sparse", "mentor"}
