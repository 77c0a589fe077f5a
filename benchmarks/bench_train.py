"""Profile GRPO steps: where one step's wall time goes, completion tokens per second and peak
RSS per step, for one or more training settings run SIDE BY SIDE (steps interleaved A, B, A,
B, ... so that load on a shared machine hits every setting alike).

    .venv/bin/python benchmarks/bench_train.py                       # today's default vs the CPU config
    .venv/bin/python benchmarks/bench_train.py --settings fp32-full lora-bf16 --steps 4
    .venv/bin/python benchmarks/bench_train.py --settings fp32-full "cpu:num_generations=8" --model smollm2-135m

Workload (the bundled default's RL stage, ``configs/pipeline/cpu.yaml``): the student after a
short LoRA SFT warm start on program-teacher references (the 135M model calls no tools before
it), 1 question x 4 rollouts per step, <= 160 completion tokens, <= 4 tool iterations.

Each setting runs in its own worker process (its own trainer, its own peak RSS, killed by the
coordinator above ``--mem-cap`` GB); a worker waits for the coordinator's go before each
optimizer step, so only one setting computes at a time. Per step a worker reports, from hooks
on TRL's GRPOTrainer (no fork of its loop):

- ``gen[i]``: ``_generate_single_turn`` call i (0 = first turn, i >= 1 = tool iteration i);
- ``tools``: the rest of TRL's ``_tool_call_loop`` (tool execution, parsing, re-tokenisation);
- ``ref/old logp``: no-grad ``_get_per_token_logps_and_entropies`` (reference / old policy);
- ``fwd``: the policy forward with grad (``_compute_loss``), ``bwd``: ``accelerator.backward``;
- ``optim``: ``on_pre_optimizer_step`` -> ``on_optimizer_step`` (AdamW);
- ``rewards``: ``_calculate_rewards`` (every reward component + mentor's tool statistics);
- ``other``: the rest of the step; ``tok/s``: model-generated completion tokens / step wall time;
- ``peak RSS``: the worker's resident set size sampled every 20 ms during the step.

Named settings (``--settings``; ``NAME:key=value,key=value`` adds config overrides):
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

#: The RL workload of the bundled default pipeline (configs/pipeline/cpu.yaml, train.rl).
#: 4 completions per optimizer step (per_device_train_batch_size x gradient_accumulation_steps).
WORKLOAD = {"num_generations": 4, "max_completion_length": 160, "max_tool_calling_iterations": 4,
            "learning_rate": 2e-5, "save_steps": 100000}

#: configs/cpu.yaml as it was when issue #11 was filed ("today's" baseline): fp32 full fine-tuning
#: with a reference model copy (beta 0.001), TRL's generate, TRL's CPU LM head over every prompt +
#: completion position, one micro-batch of the group.
BEFORE = {"lora_grpo": False, "model_dtype": "float32", "generation_backend": "transformers",
          "logprob_positions": "all", "share_prompt_forward": False,
          "grpo": {"bf16": False, "beta": 0.001, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}}


def _on_before(**changes: Any) -> dict:
    from mentor.train.config import merge

    return merge(BEFORE, changes)


_LORA_BF16 = {"lora_grpo": True, "model_dtype": "bfloat16"}
#: Named settings: config overrides on top of configs/cpu.yaml + WORKLOAD (each one complete, so that
#: a change of configs/cpu.yaml does not change what the others measure).
SETTINGS: dict[str, dict] = {
    "fp32-full": _on_before(),
    # configs/cpu.yaml as shipped now (issue #11: llama.cpp q8_0 rollouts, LoRA on a bf16 base, bf16
    # autocast, completion-only LM head, shared prompt forward, beta 0), the group in one micro-batch.
    "cpu": {"grpo": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1}},
    # the levers one by one on top of the baseline
    "completion-logps": _on_before(logprob_positions="completion"),
    "lora-bf16": _on_before(**_LORA_BF16, logprob_positions="completion", grpo={"bf16": True}),
    "llama-lora-bf16": _on_before(**_LORA_BF16, generation_backend="llama_cpp", logprob_positions="completion",
                                  grpo={"bf16": True}),
    "llama-q8-lora-bf16": _on_before(**_LORA_BF16, generation_backend="llama_cpp", llama_cpp={"weight_type": "q8_0"},
                                     logprob_positions="completion", grpo={"bf16": True}),
    "llama-fp32-full": _on_before(generation_backend="llama_cpp", logprob_positions="completion"),
    "bf16-autocast": _on_before(grpo={"bf16": True}),
}
__doc__ += "".join(f"\n- ``{k}``: {json.dumps(v) if v else 'configs/cpu.yaml as shipped'}" for k, v in SETTINGS.items())


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def parse_setting(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:key=value,...`` -> (label, config dict)."""
    import copy

    import yaml

    name, _, extra = spec.partition(":")
    if name not in SETTINGS:
        raise SystemExit(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
    cfg = copy.deepcopy(SETTINGS[name])
    for kv in filter(None, extra.split(",")):
        k, _, v = kv.partition("=")
        val = yaml.safe_load(v)
        from mentor.train.config import MENTOR_DEFAULTS, _fields

        if k in MENTOR_DEFAULTS:
            cfg[k] = val
        elif k in _fields("grpo"):
            cfg.setdefault("grpo", {})[k] = val
        elif k in _fields("lora"):
            cfg.setdefault("lora", {})[k] = val
        else:
            raise SystemExit(f"{spec}: {k!r} is not a mentor key nor a GRPOConfig/LoraConfig field")
    return spec, cfg


# ---------------------------------------------------------------------------------------------
# worker: one trainer, steps on the coordinator's go
# ---------------------------------------------------------------------------------------------


class _Peak:
    """Peak RSS of this process since the last ``reset()``, sampled by a daemon thread."""

    def __init__(self, every: float = 0.02):
        self.peak = _rss()
        self.every = every
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            r = _rss()
            if r > self.peak:
                self.peak = r
            time.sleep(self.every)

    def reset(self) -> int:
        out, self.peak = self.peak, _rss()
        return out


def _instrument(trainer, rec: dict) -> None:
    """Time TRL's phases by wrapping bound methods of this trainer instance."""
    import torch

    def wrap(name: str, key) -> None:
        orig = getattr(trainer, name)

        def inner(*a, **kw):
            k = key(*a, **kw) if callable(key) else key
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                dt = time.perf_counter() - t0
                rec["t"][k] = rec["t"].get(k, 0.0) + dt
                rec.setdefault("stack", []).append((k, dt))

        setattr(trainer, name, inner)

    def gen_key(*a, **kw):
        i = rec["n_gen"]
        rec["n_gen"] += 1
        return f"gen[{i}]"

    wrap("_generate_single_turn", gen_key)
    wrap("_tool_call_loop", "tool_loop")
    wrap("_calculate_rewards", "rewards")
    wrap("_get_per_token_logps_and_entropies", lambda *a, **kw: "fwd" if torch.is_grad_enabled() else "ref/old logp")
    orig_backward = trainer.accelerator.backward

    def backward(*a, **kw):
        t0 = time.perf_counter()
        try:
            return orig_backward(*a, **kw)
        finally:
            rec["t"]["bwd"] = rec["t"].get("bwd", 0.0) + time.perf_counter() - t0

    trainer.accelerator.backward = backward
    orig_generate = trainer._generate

    def generate(*a, **kw):
        out = orig_generate(*a, **kw)
        tool_mask, completion_ids = out[2], out[1]
        rec["tokens"] += sum(sum(m) for m in tool_mask) if tool_mask is not None else sum(len(c) for c in completion_ids)
        rec["seq_tokens"] = max(rec.get("seq_tokens", 0), max(len(p) + len(c) for p, c in zip(out[0], completion_ids, strict=True)))
        return out

    trainer._generate = generate


def worker(label: str, cfg_over: dict, a: argparse.Namespace, proto) -> None:
    import torch
    from transformers import TrainerCallback

    from mentor.train import config as C
    from mentor.train.grpo import build_grpo_trainer, prepare_grpo

    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out) / "runs" / label.replace(":", "_").replace(",", "_").replace("=", "-")
    cfg = C.merge({"grpo": dict(WORKLOAD), "seed": a.seed}, cfg_over)
    if a.threads and cfg.get("generation_backend") == "llama_cpp":  # llama.cpp's threads too
        cfg["llama_cpp"] = {"n_threads": a.threads, **(cfg.get("llama_cpp") or {})}
    say = lambda kind, obj: (proto.write(f"{kind} {json.dumps(obj)}\n"), proto.flush())  # noqa: E731
    peak = _Peak()
    rec: dict = {"t": {}, "n_gen": 0, "tokens": 0}
    plan = prepare_grpo(a.references, out, preset="mentor", model=a.init_model, config=cfg, max_steps=a.warmup + a.steps)
    trainer, _ = build_grpo_trainer(plan)
    _instrument(trainer, rec)

    class Baton(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            say("READY", {"step": state.global_step})
            if sys.stdin.readline().strip() != "GO":
                raise SystemExit(0)
            rec.update(t={}, n_gen=0, tokens=0, seq_tokens=0, t0=time.perf_counter(), rss0=_rss())
            peak.reset()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            rec["o0"] = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            rec["t"]["optim"] = time.perf_counter() - rec["o0"]

        def on_step_end(self, args, state, control, **kw):
            wall = time.perf_counter() - rec["t0"]
            t = dict(rec["t"])
            gen = sum(v for k, v in t.items() if k.startswith("gen["))
            t["tools"] = max(0.0, t.pop("tool_loop", 0.0) - sum(v for k, v in t.items() if k.startswith("gen[") and k != "gen[0]"))
            t["other"] = max(0.0, wall - gen - sum(v for k, v in t.items() if not k.startswith("gen[")))
            say("STEP", {"step": state.global_step, "wall": wall, "t": t, "tokens": rec["tokens"],
                         "seq_tokens": rec["seq_tokens"], "peak_rss": peak.reset(), "rss_before": rec["rss0"]})

    trainer.add_callback(Baton())
    trainer.train()
    import resource

    say("DONE", {"maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "header": _header(plan.cfg)})


def _header(cfg: dict) -> dict:
    from mentor.train.grpo import speed_options

    return speed_options(cfg)


# ---------------------------------------------------------------------------------------------
# coordinator
# ---------------------------------------------------------------------------------------------


def _warm_start(a: argparse.Namespace) -> str:
    """References from the program teacher and a short LoRA SFT warm start (cached in --out)."""
    from mentor.data import synthetic_questions
    from mentor.teacher.factory import make_teacher
    from mentor.teacher.generate import generate_references

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    refs = out / "references.jsonl"
    if not refs.exists():
        generate_references(synthetic_questions("train", a.questions, a.seed), make_teacher("program"), refs,
                            progress=False, seed=a.seed)
    a.references = str(refs)
    if a.sft_steps <= 0:
        return a.model
    sft = out / f"sft-{a.model}-{a.sft_steps}"
    if not (sft / "final" / "config.json").exists():
        # in a child process, so this coordinator does not keep the SFT model's memory
        cfg = out / "sft-config.yaml"
        cfg.write_text("sft: {learning_rate: 2.0e-3, per_device_train_batch_size: 2, save_steps: 100000}\n")
        subprocess.run([sys.executable, "-m", "mentor.cli", "train", "sft", "--references", str(refs), "--model", a.model,
                        "--output-dir", str(sft), "--config", str(cfg), "--max-steps", str(a.sft_steps)], check=True)
    return str(sft / "final")


def _kill(p: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def coordinator(a: argparse.Namespace) -> dict:
    import psutil

    a.init_model = _warm_start(a)
    specs = [parse_setting(s) for s in a.settings]
    procs = {}
    logs = Path(a.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for label, cfg in specs:
        cmd = [sys.executable, __file__, "--worker", json.dumps([label, cfg]), "--references", a.references,
               "--init-model", a.init_model, "--out", a.out, "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--seed", str(a.seed), "--threads", str(a.threads or 0)]
        err = open(logs / f"{label.replace(':', '_').replace(',', '_')}.log", "w")  # noqa: SIM115
        procs[label] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                        start_new_session=True)
    results: dict = {label: {"steps": [], "killed": None, "config": cfg} for label, cfg in specs}
    cap = a.mem_cap * 1e9

    def read(label: str) -> tuple[str, dict]:
        p = procs[label]
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {label!r} exited (rc={p.wait()}); see {logs}")
        kind, _, body = line.partition(" ")
        return kind, json.loads(body)

    def watch(label: str, stop: threading.Event) -> None:
        pp = psutil.Process(procs[label].pid)
        while not stop.is_set():
            try:
                rss = sum(x.memory_info().rss for x in [pp, *pp.children(recursive=True)])
            except psutil.Error:
                return
            results[label]["max_seen_rss"] = max(results[label].get("max_seen_rss", 0), rss)
            if rss > cap:
                results[label]["killed"] = f"RSS {rss / 1e9:.1f} GB > --mem-cap {a.mem_cap} GB"
                _kill(procs[label])
                return
            time.sleep(0.05)

    stops = {label: threading.Event() for label in procs}
    for label in procs:
        threading.Thread(target=watch, args=(label, stops[label]), daemon=True).start()
    alive = [label for label, _ in specs]
    for label in list(alive):  # wait until every worker is built
        try:
            read(label)
        except RuntimeError as e:
            results[label]["error"] = results[label]["killed"] or str(e)
            alive.remove(label)
    for i in range(a.warmup + a.steps):
        for label in list(alive):
            p = procs[label]
            p.stdin.write("GO\n")
            p.stdin.flush()
            try:
                kind, body = read(label)
                while kind != "STEP":
                    kind, body = read(label)
            except RuntimeError as e:
                results[label]["error"] = results[label]["killed"] or str(e)
                alive.remove(label)
                continue
            body["warmup"] = i < a.warmup
            results[label]["steps"].append(body)
            with open(Path(a.out) / "steps.jsonl", "a") as f:  # survives a run stopped early
                f.write(json.dumps({"setting": label, "step": i, **body}) + "\n")
            t = body["t"]
            print(f"[{label}] step {i} {'(warm-up) ' if body['warmup'] else ''}wall {body['wall']:.1f}s "
                  f"tokens {body['tokens']} ({body['tokens'] / body['wall']:.1f} tok/s) peak RSS "
                  f"{body['peak_rss'] / 1e9:.2f} GB | " + " ".join(f"{k} {v:.1f}" for k, v in sorted(t.items())),
                  flush=True)
            if i < a.warmup + a.steps - 1:
                try:
                    read(label)  # READY for the next step
                except RuntimeError as e:
                    results[label]["error"] = str(e)
                    alive.remove(label)
    for label in alive:
        p = procs[label]
        try:
            kind, body = read(label)
            while kind != "DONE":
                kind, body = read(label)
            results[label].update(maxrss=body["maxrss"], options=body["header"])
        except RuntimeError as e:
            results[label]["error"] = str(e)
        p.wait()
        stops[label].set()
    return results


def summarise(results: dict) -> dict:
    out = {}
    for label, r in results.items():
        steps = [s for s in r["steps"] if not s["warmup"]]
        if not steps:
            out[label] = {"error": r.get("error") or r.get("killed") or "no measured step"}
            continue
        keys = sorted({k for s in steps for k in s["t"]}, key=lambda k: (not k.startswith("gen["), k))
        out[label] = {
            "steps": len(steps),
            "wall": statistics.mean(s["wall"] for s in steps),
            "tokens": statistics.mean(s["tokens"] for s in steps),
            "tok_per_s": sum(s["tokens"] for s in steps) / sum(s["wall"] for s in steps),
            "phases": {k: statistics.mean(s["t"].get(k, 0.0) for s in steps) for k in keys},
            "peak_rss_gb": max(s["peak_rss"] for s in r["steps"]) / 1e9,
            "maxrss_gb": (r.get("maxrss") or 0) / 1e9,
            "max_seq_tokens": max(s["seq_tokens"] for s in steps),
            "options": r.get("options"),
            "error": r.get("error"),
        }
    return out


def print_table(summary: dict, base: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    labels = [k for k, v in summary.items() if "wall" in v]
    phases = []
    for k in labels:
        phases += [p for p in summary[k]["phases"] if p not in phases]
    t = Table(title="GRPO step profile (mean seconds per measured step; steps interleaved across settings)")
    t.add_column("phase")
    for k in labels:
        t.add_column(k, justify="right")
    for p in phases:
        t.add_row(p, *[f"{summary[k]['phases'].get(p, 0.0):.2f}" for k in labels])
    t.add_row("[bold]step wall (s)", *[f"[bold]{summary[k]['wall']:.2f}" for k in labels])
    t.add_row("completion tokens / step", *[f"{summary[k]['tokens']:.0f}" for k in labels])
    t.add_row("[bold]completion tok/s", *[f"[bold]{summary[k]['tok_per_s']:.1f}" for k in labels])
    if base in summary and "wall" in summary[base]:
        t.add_row("[bold]speed-up (tok/s ratio)", *[f"[bold]{summary[k]['tok_per_s'] / summary[base]['tok_per_s']:.2f}x"
                                                  for k in labels])
    t.add_row("peak RSS during steps (GB)", *[f"{summary[k]['peak_rss_gb']:.2f}" for k in labels])
    t.add_row("process max RSS (GB)", *[f"{summary[k]['maxrss_gb']:.2f}" for k in labels])
    t.add_row("longest sequence (tokens)", *[f"{summary[k]['max_seq_tokens']}" for k in labels])
    Console().print(t)
    for k, v in summary.items():
        if v.get("error"):
            print(f"[{k}] {v['error']}")


def _isa_env() -> dict[str, str]:
    """The environment variables that cap torch's instruction sets (an AVX2-only CPU emulated on a newer
    one: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``), as set for this run."""
    return {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS") if k in os.environ}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["fp32-full", "cpu"],
                    help="settings to run side by side; the first is the baseline of the speed-up")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per setting")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured first steps per setting")
    ap.add_argument("--model", default="smollm2-135m-compact", help="student (prompt style: smollm2-135m is the official template)")
    ap.add_argument("--sft-steps", type=int, default=24, help="LoRA SFT warm-start steps (0: the student as is)")
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch (and llama.cpp) threads per worker (0: their "
                    "default, all cores). 1 on a shared machine: a 2-thread OpenMP loop whose second thread waits for a "
                    "core spins at every barrier (llama.cpp decoded 1.9 tok/s with 2 threads, 18 with 1, at load 7.5)")
    ap.add_argument("--mem-cap", type=float, default=9.0, help="kill a worker whose RSS exceeds this many GB")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_train"))
    ap.add_argument("--json", default=None, help="write the results here (default benchmarks/results/bench_train.json)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--references", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--init-model", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        proto = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # anything the libraries print goes to the worker's log, not the protocol
        label, cfg = json.loads(a.worker)
        worker(label, cfg, a, proto)
        return
    t0, load0 = time.time(), os.getloadavg()
    results = coordinator(a)
    summary = summarise(results)
    print_table(summary, a.settings[0])
    from mentor.io import machine, versions
    from mentor.precision import detect

    dest = Path(a.json) if a.json else REPO / "benchmarks" / "results" / "bench_train.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(a), "summary": summary, "raw": results,
                                "workload": WORKLOAD, "versions": versions(), "cpu_count": os.cpu_count(),
                                "machine": {**machine(), "hardware": detect().describe(), "env": _isa_env()},
                                "wall_seconds": time.time() - t0, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "load_average_1min": {"start": load0[0], "end": os.getloadavg()[0]},
                                "note": "compare settings within one run only (steps interleaved)"},
                               indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
