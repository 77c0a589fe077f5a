"""The demo's training stages in each numeric format, side by side on this machine: seconds per SFT
(and GRPO) step of ``configs/pipeline/cpu.yaml`` as shipped (``auto``: mentor.precision), with the
bf16 keys forced to float32, and forced to bf16.

    .venv/bin/python benchmarks/bench_precision.py                               # auto vs fp32, 8 SFT + 5 GRPO steps
    .venv/bin/python benchmarks/bench_precision.py --variants auto fp32 bf16 --rl-steps 0
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/bench_precision.py \\
        --json benchmarks/results/bench_precision_avx2.json                     # an AVX2-only CPU, emulated

The keys: ``train.sft.bf16`` of the pipeline (SFT autocast), ``model_dtype`` and ``grpo.bf16`` of
its training config (GRPO's base dtype and autocast). Each variant is one ``mentor run`` of the
stages data, teach, sft and (``--rl-steps`` > 0) sparse, in its own run directory and process,
one after the other; s/step is the median gap between consecutive steps of ``metrics.jsonl``
(model loading and saving excluded). ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` caps
torch at AVX2 (oneDNN then reports no bf16 and converts it in software, as on an AVX2-only AMD
EPYC; llama.cpp keeps its own build), so one machine can show both kinds' torch behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: variant -> (train.sft.bf16, model_dtype, grpo.bf16)
VARIANTS = {"auto": ("auto", "auto", "auto"), "fp32": (False, "float32", False), "bf16": (True, "bfloat16", True)}


def _pipeline_config(variant: str, sft_steps: int, rl_steps: int, workdir: Path) -> Path:
    from mentor.pipeline.config import load_config
    from mentor.train.config import bundled_path, load_yaml

    sft_bf16, dtype, grpo_bf16 = VARIANTS[variant]
    cfg = {k: v for k, v in load_config(None).items() if not k.startswith("_")}
    train = cfg["train"]
    training = load_yaml(bundled_path(train["config"]))
    training["model_dtype"] = dtype
    training["grpo"]["bf16"] = grpo_bf16
    (workdir / f"{variant}-training.yaml").write_text(yaml.safe_dump(training, sort_keys=False))
    train["config"] = str(workdir / f"{variant}-training.yaml")
    train["sft"] = {**train["sft"], "max_steps": sft_steps, "bf16": sft_bf16}
    train["rl"] = {**train["rl"], "max_steps": max(rl_steps, 1)}
    cfg["name"] = f"bench-precision-{variant}"
    path = workdir / f"{variant}-pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _per_step(metrics: Path) -> dict:
    times = [json.loads(line)["time"] for line in metrics.read_text().splitlines() if line.strip()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"steps": len(times), "seconds_per_step": round(statistics.median(gaps), 2) if gaps else None,
            "step_gaps": [round(g, 2) for g in gaps]}


def run_variant(variant: str, a: argparse.Namespace, workdir: Path) -> dict:
    config = _pipeline_config(variant, a.sft_steps, a.rl_steps, workdir)
    out = workdir / variant
    stages = "data,teach,sft" + (",sparse" if a.rl_steps > 0 else "")
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("mentor")), "run", "--config", str(config), "--output-dir",
                           str(out), "--stages", stages, "--no-progress"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (workdir / f"{variant}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"{variant}: mentor run failed ({proc.returncode}); see {workdir / f'{variant}.log'}")
    meta = json.loads((out / "run.json").read_text())
    row = {"variant": variant, "chosen": meta["precision"]["chosen"], "warnings": meta["precision"]["warnings"],
           "wall_seconds": round(wall, 1), "sft": _per_step(out / "models" / "sft" / "metrics.jsonl"),
           "sft_stage_seconds": meta["stages"]["sft"]["seconds"],
           "header": [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("[mentor run] ")][:3]}
    if a.rl_steps > 0:
        row["grpo"] = _per_step(out / "models" / "sparse" / "metrics.jsonl")
        row["grpo_stage_seconds"] = meta["stages"]["sparse"]["seconds"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["auto", "fp32"], choices=list(VARIANTS))
    ap.add_argument("--sft-steps", type=int, default=8, help="SFT steps (s/step: the median gap between consecutive steps)")
    ap.add_argument("--rl-steps", type=int, default=5, help="GRPO (sparse) steps after SFT; 0: SFT only")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench_precision"))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "bench_precision.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mentor.io import machine, versions
    from mentor.precision import detect

    workdir = Path(a.out)
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    t0 = time.time()
    rows = [run_variant(v, a, workdir) for v in a.variants]
    base = next((r for r in rows if r["variant"] == "fp32"), None)
    print(f"{detect().describe()}")
    print(f"{'variant':8s} {'chosen':56s} {'SFT s/step':>10s} {'GRPO s/step':>11s}")
    for r in rows:
        chosen = ", ".join(f"{k}={v}" for k, v in r["chosen"].items())
        grpo = r.get("grpo", {}).get("seconds_per_step")
        print(f"{r['variant']:8s} {chosen:56s} {r['sft']['seconds_per_step']:10.2f} {grpo if grpo is not None else '-':>11}")
        if base is not None and r is not base:
            r["sft_vs_fp32"] = round(r["sft"]["seconds_per_step"] / base["sft"]["seconds_per_step"], 3)
            if grpo is not None:
                r["grpo_vs_fp32"] = round(grpo / base["grpo"]["seconds_per_step"], 3)
            print(f"         {r['variant']} / fp32 s/step: SFT {r['sft_vs_fp32']:.2f}x"
                  + (f", GRPO {r['grpo_vs_fp32']:.2f}x" if grpo is not None else ""))
    dest = Path(a.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS") if k in os.environ}
    dest.write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(a), "rows": rows,
                                "machine": {**machine(), "hardware": detect().describe(), "env": env},
                                "versions": versions(), "wall_seconds": round(time.time() - t0, 1),
                                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "load_average_1min": os.getloadavg()[0]}, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
