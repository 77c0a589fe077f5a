"""A smoke check of mentor's own training and evaluation paths on one GPU (``--cpu``: on the CPU).

``python -m mentor.smoke`` (``scripts/gpu-smoke``: its header says how to carry mentor to a machine
without network as a wheel directory) builds a tiny RANDOM Qwen2 student -- a byte-level BPE carrying
Qwen2.5's official tool chat template, a 2-layer Qwen2 -- and takes it through these parts, on CUDA in
bf16 (with ``--cpu``: on the CPU in fp32):

==========  ==========================================================================================
packages    mentor's training and evaluation modules import (TRL, PEFT, TensorBoard); the versions
device      CUDA: the GPU's name, ``torch.cuda.is_bf16_supported()``, a bf16 matmul; ``--cpu``: the CPU
student     the tiny student saved as a Hugging Face directory; its template renders a tool call
logps       the completion-only LM head (``logprob_positions: completion``, ``mentor.train.logps``), with
            and without the shared prompt forward, against TRL's fused LM head, in the run's dtype
sft         LoRA SFT (``mentor.train.sft``): 2 optimizer steps that move the adapter; merged final model
grpo        2 GRPO optimizer steps (``mentor.train.grpo``) from the SFT model: ``lora_grpo`` on a bf16
            base, the completion-only LM head, the shared prompt forward, beta 0.001 (the reference is
            the adapter-disabled base), TRL's generate (no vLLM); merged final model
eval        ``mentor.eval.evaluate`` of the GRPO model on 2 math items (a JSONL benchmark of ``PROBLEMS``:
            nothing to download; transformers, on the device)
==========  ==========================================================================================

Each part prints one line, ``[gpu-smoke] PART PASS|FAIL|SKIP SECONDS s  detail`` (SKIP: a part it
needs failed); the libraries' output goes to ``OUT/smoke.log``; the exit status is 0 only when every
part passed. On CUDA the trainer's LM head is TRL's own Triton kernel, which scores completion
positions only too (``compact_supported``); the ``logps`` part checks mentor's path on the GPU as well.

The tiny-student helpers (``tiny_tokenizer``, ``tiny_student``, ``write_references``) are also what
the test suite's CPU dry runs of the GPU configs build (tests/test_gpu_configs.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "[gpu-smoke]"
PARTS = ("packages", "device", "student", "logps", "sft", "grpo", "eval")
#: the tiny student's training questions: (a, b, the operator's word, the tool that computes it)
PROBLEMS = [(6, 7, "times", "multiply"), (15, 27, "plus", "add"), (9, 8, "times", "multiply"), (12, 30, "plus", "add")]
#: what a GPU machine is assumed to have already (``--build-wheels`` carries everything else)
PREINSTALLED = ("torch", "transformers", "accelerate")
#: the largest log-prob difference accepted between two LM-head paths, per dtype (the fp32 one as
#: tests/test_train_logps.py; bf16: rounding of the hidden states, ~2^-8 relative)
LOGPS_TOLERANCE = {"float32": 1e-4, "bfloat16": 0.05}


# ---------------------------------------------------------------- the tiny student


def question_and_answer(a: int, b: int, op: str, tool: str) -> tuple[str, str]:
    """A ``PROBLEMS`` entry's question and answer."""
    return f"What is {a} {op} {b}?", str(a * b if tool == "multiply" else a + b)


def write_references(path: str | os.PathLike) -> Path:
    """References in the format ``mentor teach`` writes (``mentor.references``): one correct,
    single-call teacher trajectory per ``PROBLEMS`` entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (a, b, op, name) in enumerate(PROBLEMS):
        question, ans = question_and_answer(a, b, op, name)
        rows.append({
            "id": f"q{i}", "question": question, "answer": ans, "correct": True,
            "messages": [
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": name, "arguments": {"firstNumber": a, "secondNumber": b}}}]},
                {"role": "tool", "name": name, "content": ans},
                {"role": "assistant", "content": f"The answer is \\boxed{{{ans}}}."},
            ],
            "teacher_answer": ans, "teacher_tools": [name], "teacher": {"backend": "fixture"},
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_tokenizer(style: str = "qwen2.5") -> Any:
    """A byte-level BPE (at most 1,024 tokens; ~700 learnt from this corpus) with Qwen's special and
    tool tokens, trained on the rendered prompts and references, carrying the family's official tool
    chat template (``style``: ``mentor.prompts.chat_template``). (TRL scores every position of a
    sequence through the LM head on CPU, so the vocabulary size, not the 2-layer model, sets the
    cost of a step.)"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mentor.prompts import build_messages, chat_template, render

    corpus = [render(build_messages(question_and_answer(*p)[0]), "math", style=style) for p in PROBLEMS]
    corpus += [f"<tool_call>\n{{\"name\": \"{n}\", \"arguments\": {{\"firstNumber\": {a}, \"secondNumber\": {b}}}}}\n</tool_call>"
               f" The answer is \\boxed{{{a * b}}}." for a, b, _, n in PROBLEMS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(corpus * 4, trainers.BpeTrainer(vocab_size=1024, special_tokens=special, show_progress=False,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens(["<tool_call>", "</tool_call>", "<think>", "</think>"])  # added, not special, as in Qwen's
    tok.chat_template = chat_template(style)
    return tok


def tiny_student(out: str | os.PathLike, family: str = "qwen2", tied: bool = True, style: str = "qwen2.5",
                 generation: Mapping[str, Any] | None = None) -> Path:
    """A random 2-layer model of ``family`` (qwen2 | qwen3) saved with ``tiny_tokenizer(style)``: a
    real Hugging Face model directory. ``tied``: input/output embeddings shared, as in the small
    real checkpoints; ``generation``: ``generation_config.json`` settings (e.g. a family's
    recommended sampling; none: greedy)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    out = Path(out)
    tok = tiny_tokenizer(style)
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[family]
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = config_cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=8, max_position_embeddings=8192, tie_word_embeddings=tied,
                     bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    model = model_cls(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, **dict(generation or {}))
    assert model.config.model_type == family
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------- the parts


@dataclass(frozen=True)
class Target:
    """Where the smoke check computes and in which format."""

    device: str  # "cuda" | "cpu"
    bf16: bool

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"


@dataclass
class Part:
    name: str
    status: str = "SKIP"  # PASS | FAIL | SKIP
    seconds: float = 0.0
    detail: str = ""

    def line(self) -> str:
        return f"{PREFIX} {self.name:<8} {self.status} {self.seconds:6.1f} s  {self.detail}"


class SmokeFailure(AssertionError):
    """A part ran but did not do what it should."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def smoke_config(target: Target, model: str | os.PathLike) -> dict[str, Any]:
    """The training config of the smoke check for ``model`` (``mentor.train.config``), complete in
    every key that matters, so that no base (``configs/cpu.yaml`` without CUDA) changes the run."""
    cpu = target.device == "cpu"
    common = {"bf16": target.bf16, "use_cpu": cpu, "logging_steps": 1, "report_to": "none", "save_strategy": "no",
              "max_steps": 2, "num_train_epochs": 1, "dataloader_num_workers": 0, "seed": 0}
    return {
        "model": str(model), "preset": "mentor", "seed": 0, "lora_grpo": True, "model_dtype": target.dtype,
        "generation_backend": "transformers", "logprob_positions": "completion", "share_prompt_forward": True,
        "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"},
        "sft": {**common, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                "max_length": 2048, "activation_checkpointing": True},  # as the paper (Table 6: gradient checkpointing)
        "grpo": {**common, "learning_rate": 1e-4, "num_generations": 4, "per_device_train_batch_size": 4,
                 "gradient_accumulation_steps": 1, "steps_per_generation": 1, "max_completion_length": 32,
                 "max_tool_calling_iterations": 2, "temperature": 1.0, "beta": 0.001, "epsilon": 0.2,
                 "loss_type": "grpo", "use_vllm": False, "activation_checkpointing": False,
                 "gradient_checkpointing": False},
    }


class Smoke:
    """The parts, run in order into ``out``; ``self.parts`` holds what each did."""

    def __init__(self, out: Path, cpu: bool = False, echo: Callable[[str], None] = print):
        self.out, self.cpu, self.echo = out, cpu, echo
        self.parts: dict[str, Part] = {}
        self.target = Target("cpu", False)
        self.ready = False  # the device part chose a target (it may still fail: a GPU without bf16)
        self.student = out / "student"
        self.references = out / "references.jsonl"
        self.log = out / "smoke.log"

    # driver
    def run(self) -> bool:
        self.out.mkdir(parents=True, exist_ok=True)
        needs = {"device": ["packages"], "student": ["device"], "logps": ["device", "student"],
                 "sft": ["device", "student"], "grpo": ["device", "student"], "eval": ["device", "student"]}
        for name in PARTS:
            part = self.parts[name] = Part(name)
            missing = [n for n in needs.get(name, [])
                       if self.parts[n].status != "PASS" and not (n == "device" and self.ready)]
            if missing:
                part.detail = f"not run: needs {', '.join(missing)}"
            else:
                self._run_part(part, getattr(self, f"part_{name}"))
            self.echo(part.line())
        return all(p.status == "PASS" for p in self.parts.values())

    def _run_part(self, part: Part, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        with self.log.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print(f"===== {part.name}", flush=True)
            try:
                part.detail, part.status = fn(), "PASS"
            except Exception as e:  # every failure is reported, the next parts still run
                traceback.print_exc()
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                part.detail, part.status = f"{type(e).__name__}: {first}", "FAIL"
        part.seconds = time.perf_counter() - t0

    # parts
    def part_packages(self) -> str:
        import importlib.metadata as md

        import mentor.eval  # noqa: F401
        import mentor.train.grpo  # noqa: F401  (TRL, PEFT, datasets)
        import torch.utils.tensorboard  # noqa: F401  (the trainers log to TensorBoard)

        names = ("mentor", "torch", "transformers", "trl", "peft", "accelerate", "datasets")
        return ", ".join(f"{n} {md.version(n)}" for n in names)

    def part_device(self) -> str:
        import torch

        if self.cpu:
            from mentor.precision import detect

            self.target, self.ready = Target("cpu", False), True
            return f"cpu (--cpu, fp32): {detect('cpu').name}; torch threads {torch.get_num_threads()}"
        check(torch.cuda.is_available(), "no CUDA device (torch.cuda.is_available() is False; "
                                         f"torch {torch.__version__}, CUDA build {torch.version.cuda}); --cpu runs on the CPU")
        name, bf16 = torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())
        self.target, self.ready = Target("cuda", bf16), True  # without bf16 the later parts still run, in fp32
        a = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16 if bf16 else torch.float32)
        check(bool(torch.isfinite(a @ a).all()), "a matmul on the GPU gave non-finite values")
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        detail = (f"cuda: {name} ({memory:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}; "
                  f"torch.cuda.is_bf16_supported() {bf16}")
        check(bf16, f"{detail}: no bf16 on this GPU (the GPU configs train with bf16: true); the other parts run in fp32")
        return detail

    def part_student(self) -> str:
        from mentor.models import check_tool_template, load_model, load_tokenizer

        tiny_student(self.student, "qwen2", True, "qwen2.5")
        write_references(self.references)
        tok = load_tokenizer(str(self.student))
        check_tool_template(tok, where=str(self.student))
        model = load_model(str(self.student), dtype=self.target.dtype, device=self.target.device)
        params = sum(p.numel() for p in model.parameters())
        check(model.config.model_type == "qwen2" and next(model.parameters()).device.type == self.target.device,
              f"the student loaded as {model.config.model_type} on {next(model.parameters()).device}")
        return f"random 2-layer Qwen2 ({params / 1e3:.0f}k parameters, vocabulary {len(tok)}), Qwen2.5 tool template"

    def part_logps(self) -> str:
        import torch
        from trl.trainer.utils import add_fused_lm_head

        from mentor.models import load_model, load_tokenizer
        from mentor.train.logps import _prompt_groups, completion_logps

        tok, keep, t = load_tokenizer(str(self.student)), 12, self.target
        ids, mask = _logps_batch(tok, keep)
        ids, mask = ids.to(t.device), mask.to(t.device)
        check(_prompt_groups(ids, mask, ids.size(1) - keep) is not None, "the batch has no shared prompt")
        with torch.no_grad():
            model = load_model(str(self.student), dtype=t.dtype, device=t.device)
            add_fused_lm_head(model, temperature=1.0, outputs=("log_probs",))
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-keep] = -100
            trl = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs[:, -keep:]
            model = load_model(str(self.student), dtype=t.dtype, device=t.device)
            ours = {share: completion_logps(model, ids, mask, keep, 1.0, ("log_probs",), share_prompt=share)[0]
                    for share in (False, True)}
        comp = mask[:, -keep:].bool()
        diffs = {share: float((lp - trl).float().abs()[comp].max()) for share, lp in ours.items()}
        tol = LOGPS_TOLERANCE[t.dtype]
        detail = (f"completion-only vs TRL's fused LM head ({t.device}, {t.dtype}): max |diff| {diffs[False]:.2g}, "
                  f"with the shared prompt forward {diffs[True]:.2g} (tolerance {tol:g})")
        check(all(torch.isfinite(lp[comp]).all() for lp in ours.values()), f"{detail}: non-finite log-probabilities")
        check(max(diffs.values()) <= tol, detail)
        return detail

    def part_sft(self) -> str:
        import torch

        from mentor.train.sft import build_sft_trainer, prepare_sft, save_sft_final

        prep = prepare_sft(self.references, self.out / "sft", config=smoke_config(self.target, self.student))
        trainer = build_sft_trainer(prep)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        trainer.train()
        moved = [n for n, p in trainer.model.named_parameters() if n in before and not torch.equal(p.detach(), before[n])]
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        check(trainer.state.global_step == 2, f"{trainer.state.global_step} optimizer steps, not 2")
        check(trainer.args.device.type == self.target.device, f"trained on {trainer.args.device}")
        check(bool(losses) and all(_finite(x) for x in losses), f"losses {losses}")
        check(bool(moved), "the LoRA adapter did not change")
        final = save_sft_final(trainer, prep["out"])
        check((final / "config.json").exists(), f"no merged model in {final}")
        return (f"LoRA SFT, 2 optimizer steps on {trainer.args.device.type} (bf16 autocast {trainer.args.bf16}), "
                f"losses {', '.join(f'{x:.3f}' for x in losses)}; {len(moved)} adapter tensors moved; merged {final.name}/")

    def part_grpo(self) -> str:
        from mentor.train.grpo import build_grpo_trainer, prepare_grpo, save_final
        from mentor.train.logps import compact_supported

        init = self.out / "sft" / "final"
        init = init if (init / "config.json").exists() else self.student
        plan = prepare_grpo(self.references, self.out / "grpo", preset="mentor", config=smoke_config(self.target, init))
        trainer, _ = build_grpo_trainer(plan)
        check(type(trainer).__name__ == "CompactLogpsGRPOTrainer",
              f"trainer {type(trainer).__name__}, not mentor's completion-only one")
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
        check(trainer.state.global_step == 2, f"{trainer.state.global_step} optimizer steps, not 2")
        check(bool(logs) and all(_finite(h["loss"]) and _finite(h.get("grad_norm", 0.0)) for h in logs), f"logs {logs}")
        rows = (plan.out / "metrics.jsonl").read_text().splitlines()
        check(len(rows) == 2, f"{len(rows)} rows in metrics.jsonl, not 2")
        model = trainer.accelerator.unwrap_model(trainer.model)
        base = model.get_base_model()
        check(hasattr(model, "peft_config") and str(base.dtype) == f"torch.{self.target.dtype}",
              f"the policy is {type(model).__name__} with a {base.dtype} base")
        head = ("mentor's completion-only path" if compact_supported(model, base.device)
                else "TRL's Triton kernel (completion positions only)")
        rewards = [round(h["reward"], 3) for h in logs if "reward" in h]
        save_final(trainer, plan.out / "final")
        check((plan.out / "final" / "config.json").exists(), "no merged final model")
        return (f"from {init.parent.name if init != self.student else 'the student'}: 2 optimizer steps on "
                f"{base.device.type}, LoRA on a {self.target.dtype} base, LM head: {head}, shared prompt forward, "
                f"beta 0.001; rewards {rewards}; merged final/")

    def part_eval(self) -> str:
        from mentor.eval import evaluate
        from mentor.generation.hf import HFGenerator
        from mentor.models import load_model, load_tokenizer

        trained = (self.out / "grpo" / "final", self.out / "sft" / "final")
        model_dir = next((d for d in trained if (d / "config.json").exists()), self.student)
        model = load_model(str(model_dir), dtype=self.target.dtype, device=self.target.device)
        generator = HFGenerator(model, load_tokenizer(str(model_dir)), batch_size=2)
        bench = self.out / "eval" / "math.jsonl"
        bench.parent.mkdir(parents=True, exist_ok=True)
        items = [dict(zip(("problem", "answer"), question_and_answer(*p))) for p in PROBLEMS[:2]]
        bench.write_text("".join(json.dumps(item) + "\n" for item in items))
        res = evaluate(str(model_dir), bench, generator=generator, max_new_tokens=16, max_turns=2, progress=False,
                       out=bench.with_suffix(".json"))
        tokens = [r["generated_tokens"] for r in res["records"]]
        check(res["n"] == 2 and all(n > 0 for n in tokens), f"{res['n']} items, generated tokens {tokens}")
        check(model.device.type == self.target.device, f"generated on {model.device}")
        return (f"{model_dir.parent.name}/final on 2 math items ({res['kind']} task, transformers on "
                f"{model.device.type}): accuracy {res['accuracy']:.2f}, {sum(tokens)} tokens, "
                f"decoding {_decoding(res['settings']['decoding'])}")


def _decoding(d: Mapping[str, Any]) -> str:
    how = "greedy" if d["greedy"] else f"temperature {d['temperature']}, top_p {d['top_p']}, top_k {d['top_k']}"
    return f"{d['mode']} ({how})"


def _finite(x: Any) -> bool:
    import math

    return isinstance(x, (int, float)) and math.isfinite(x)


def _logps_batch(tok: Any, keep: int) -> tuple[Any, Any]:
    """Three left-padded prompts -- two rollouts of one question, one of another -- and right-padded
    completions of different lengths, as TRL builds a GRPO micro-batch."""
    return micro_batch(tok, [("What is 6 times 7?", " <tool_call>multiply 6 7</tool_call> The answer is 42."),
                             ("What is 15 plus 27?", " 42"), ("What is 6 times 7?", " The answer is \\boxed{42}.")], keep)


def micro_batch(tok: Any, rows: Sequence[tuple[str, str]], keep: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` of ``(prompt, completion)`` texts laid out as TRL lays out a
    GRPO micro-batch: prompts left-padded to one width, completions cut to ``keep`` tokens and
    right-padded to ``keep``."""
    import torch

    tokens = [(tok(p)["input_ids"], tok(c)["input_ids"][:keep]) for p, c in rows]
    width = max(len(p) for p, _ in tokens)
    ids, mask = [], []
    for p, c in tokens:
        pad_p, pad_c = width - len(p), keep - len(c)
        ids.append([tok.pad_token_id] * pad_p + p + c + [tok.pad_token_id] * pad_c)
        mask.append([0] * pad_p + [1] * (len(p) + len(c)) + [0] * pad_c)
    return torch.tensor(ids), torch.tensor(mask)


# ---------------------------------------------------------------- the wheel directory


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheels(dest: str | os.PathLike, preinstalled: Sequence[str] = PREINSTALLED,
                 source: str | os.PathLike | None = None, python: str = sys.executable) -> dict[str, Any]:
    """On a connected machine: a wheel directory of mentor and every dependency the ``preinstalled``
    requirements (pip arguments: ``torch==2.6.0``, ``-r freeze.txt``) do not bring. pip resolves both
    sets (``install --dry-run --report``: metadata only), downloads the difference (``download
    --no-deps``) and builds mentor's wheel; returns what it carried and the directory's size."""
    source = Path(source) if source else Path(__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():
        raise SystemExit(f"{PREFIX} --build-wheels needs mentor's source checkout ({source} has no pyproject.toml)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pip = [python, "-m", "pip"]

    def resolve(requirements: Sequence[str], tmp: str, name: str) -> dict[str, str]:
        report = Path(tmp) / f"{name}.json"
        subprocess.run([*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                        *requirements], check=True)
        installs = json.loads(report.read_text())["install"]
        return {_canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}

    with tempfile.TemporaryDirectory() as tmp:
        have = resolve(list(preinstalled), tmp, "preinstalled")
        want = resolve([str(source), *preinstalled], tmp, "mentor")
    carry = sorted(f"{n}=={v}" for n, v in want.items() if n not in have and n != "mentor")
    if carry:
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--dest", str(dest), *carry], check=True)
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(source)], check=True)
    wheels = sorted(dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    largest = sorted(wheels, key=lambda w: -w.stat().st_size)[:5]
    print(f"{PREFIX} {dest}: {len(wheels)} wheels, {size / 2**20:.1f} MiB (largest: "
          + ", ".join(f"{w.name.split('-')[0]} {w.stat().st_size / 2**20:.1f}" for w in largest) + " MiB)")
    return {"dest": str(dest), "carried": carry, "wheels": len(wheels), "bytes": size}


# ---------------------------------------------------------------- CLI


@dataclass
class Outcome:
    ok: bool
    out: str
    seconds: float
    parts: list[dict[str, Any]] = field(default_factory=list)


def run_smoke(out: Path, cpu: bool = False, echo: Callable[[str], None] = print) -> Outcome:
    """Every part into ``out`` (``OUT/smoke.json`` records the outcome)."""
    t0 = time.perf_counter()
    smoke = Smoke(out, cpu=cpu, echo=echo)
    ok = smoke.run()
    outcome = Outcome(ok, str(out), round(time.perf_counter() - t0, 1), [asdict(p) for p in smoke.parts.values()])
    (out / "smoke.json").write_text(json.dumps(asdict(outcome), indent=2) + "\n")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-smoke", description="mentor's GPU smoke check (see scripts/gpu-smoke).")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU in fp32 (a fallback for machines without a GPU)")
    parser.add_argument("--out", type=Path, help="working directory (default: a temporary one, kept only on failure)")
    parser.add_argument("--build-wheels", type=Path, metavar="DIR",
                        help="on a connected machine: write the wheel directory for an offline install to DIR, then exit")
    parser.add_argument("--preinstalled", default=" ".join(PREINSTALLED),
                        help="with --build-wheels: pip requirements the GPU machine already has (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.build_wheels:
        build_wheels(args.build_wheels, args.preinstalled.split())
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network there: never wait for the Hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = args.out or Path(tempfile.mkdtemp(prefix="mentor-smoke-"))
    print(f"{PREFIX} {'CPU (--cpu), fp32' if args.cpu else 'CUDA, bf16'}; working directory {out} "
          f"(the libraries' output: {out / 'smoke.log'})", flush=True)
    outcome = run_smoke(out, cpu=args.cpu, echo=lambda line: print(line, flush=True))
    if outcome.ok:
        print(f"{PREFIX} PASSED: all {len(outcome.parts)} parts in {outcome.seconds:.1f} s")
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
        return 0
    failed, skipped = ([p["name"] for p in outcome.parts if p["status"] == s] for s in ("FAIL", "SKIP"))
    print(f"{PREFIX} FAILED: {', '.join(failed)}" + (f"; not run: {', '.join(skipped)}" if skipped else "")
          + f" (in {outcome.seconds:.1f} s; tracebacks in {out / 'smoke.log'})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
