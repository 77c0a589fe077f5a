"""The CPU-scale reproduction study: do the paper's qualitative findings hold at this scale?

Runs the bundled setup (SmolLM2-135M with the compact tool prompt, the program teacher, the
synthetic task family) with larger budgets than `mentor run`'s demo and several RL seeds, all
from ONE shared SFT warm start (the 135M model cannot call tools without it):

    data -> references -> vanilla eval -> SFT (shared) -> per seed: GRPO with the sparse, f1 and
    mentor presets -> evaluation in-domain (synthetic:test) and out-of-domain (synthetic:ood)

and checks, with 95% bootstrap confidence intervals (resampling evaluation items -- accuracy
differences paired by item, every seed evaluating the same items -- and training steps for the
trends):

  1. MENTOR >= Sparse on out-of-domain accuracy; SFT below the RL methods out of domain (Table 2)
  2. strict alignment (mentor) gives a higher alignment score than f1 and than sparse (Table 3)
  3. the validity reward drives the invalid tool-call rate down during training; presets
     without it (sparse) do not (Fig. 6)
  4. alignment-rewarding presets raise the tool-usage rate; sparse drifts away from tools (Fig. 7)

A finding is "holds" only when its confidence interval excludes the opposite; otherwise it is
reported as "not shown" (or "does not hold" when the interval is entirely on the wrong side).

    .venv/bin/python benchmarks/repro_study.py --out runs/study --max-completion-length 160 \
        --plots benchmarks/results   # the first study (STUDY_PROTOCOL.md)
    .venv/bin/python benchmarks/repro_study.py --out runs/quick --seeds 0 1 --n-train 8 --sft-steps 2 --rl-steps 1 --limit 2   # smoke

    .venv/bin/python benchmarks/repro_study.py --out runs/study2 --max-completion-length 384 \
        --shared-from runs/study/seed0 --plots benchmarks/results/study2   # the second study (STUDY_PROTOCOL_2.md)

`--shared-from SEED_DIR` starts from another run's data, references, SFT model and vanilla/SFT
evaluations (an RL-only variant from the same warm start; refused unless its settings match);
`--temperature`, `--beta` and `--max-completion-length` set the GRPO rollouts.

Everything is resumable (each seed is a `mentor run` directory). Prints a markdown table and
writes `OUT/study.json` and `OUT/study.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mentor.pipeline import Pipeline, load_config  # noqa: E402

PRESETS = {"sparse": "sparse", "f1": "f1", "mentor": "mentor"}
SHARED_STAGES = ("data", "teach", "vanilla", "sft")


def study_config(args: argparse.Namespace, seed: int) -> dict:
    overrides = {
        "name": f"study-seed{seed}",
        "seed": seed,
        "data": {"n": args.n_train},
        "train": {
            "sft": {"max_steps": args.sft_steps, "per_device_train_batch_size": 2, "learning_rate": 2e-3},
            "rl": {
                "max_steps": args.rl_steps,
                "num_generations": args.generations,
                "per_device_train_batch_size": args.generations * args.questions_per_step,
                "max_completion_length": args.max_completion_length,
                "max_tool_calling_iterations": 4,  # the longest plans have 4 calls
                "learning_rate": args.rl_lr,
                "temperature": args.temperature,
                **({"beta": args.beta} if args.beta is not None else {}),  # None: the training config's
            },
            "methods": {p: PRESETS[p] for p in args.presets},
        },
        # 5 turns: up to 4 tool calls and the answer (3 turns cut the 3-4 call problems short)
        "eval": {"limit": args.limit, "max_new_tokens": 64, "max_turns": 5, "tool_effect": False,
                 "in_domain": [f"synthetic:{splits(args)['in']}"],
                 "out_of_domain": [f"synthetic:{splits(args)['ood']}"] if "ood" in splits(args) else []},
    }
    return load_config(None, overrides)


def splits(args: argparse.Namespace) -> dict[str, str]:
    """The synthetic splits evaluated: the tuning split only when tuning (issue #11 part 3: never
    tune on the test or out-of-domain splits), else test (in-domain) and ood."""
    return {"in": "tune"} if args.tune else {"in": "test", "ood": "ood"}


def link_shared(first: Path, other: Path) -> None:
    """Seeds > first reuse the first seed's data, references, SFT model and vanilla/SFT evals."""
    (other / "stages").mkdir(parents=True, exist_ok=True)
    (other / "eval").mkdir(parents=True, exist_ok=True)
    (other / "models").mkdir(parents=True, exist_ok=True)
    for rel in ("data", "references.jsonl", "models/sft", "eval/vanilla"):
        src, dst = first / rel, other / rel
        if src.exists() and not dst.exists():
            dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    if (first / "eval" / "sft").exists() and not (other / "eval" / "sft").exists():
        (other / "eval" / "sft").symlink_to((first / "eval" / "sft").resolve(), target_is_directory=True)
    for s in SHARED_STAGES:
        m = first / "stages" / f"{s}.json"
        if m.exists() and not (other / "stages" / f"{s}.json").exists():
            shutil.copy(m, other / "stages" / f"{s}.json")


def reuse_shared(args: argparse.Namespace, source: Path, first: Path) -> None:
    """``--shared-from``: start from another run's shared stages (data, references, SFT model,
    vanilla/SFT evals) instead of recomputing them -- an RL-only variant from the same SFT warm
    start. Refused unless that run's seed and its data, teacher, SFT and evaluation settings are this run's."""
    import yaml

    from mentor.eval.runner import result_name

    theirs_path = source / "pipeline.yaml"
    if not theirs_path.is_file():
        raise SystemExit(f"--shared-from {source}: no pipeline.yaml there (not a study seed directory)")
    theirs = yaml.safe_load(theirs_path.read_text())
    ours = study_config(args, args.seeds[0])

    def field(cfg: dict, dotted: str):
        for part in dotted.split("."):
            cfg = (cfg or {}).get(part)
        return cfg

    for key in ("seed", "student", "data", "teacher", "eval", "train.sft", "train.config"):
        if field(theirs, key) != field(ours, key):
            raise SystemExit(f"--shared-from {theirs_path}: field {key!r} differs from this run's "
                             f"({field(theirs, key)!r} there, {field(ours, key)!r} here)")
    for s in SHARED_STAGES:
        if not (source / "stages" / f"{s}.json").exists():
            raise SystemExit(f"--shared-from {source}: its {s} stage is not done")
    for b in ours["eval"]["in_domain"] + ours["eval"]["out_of_domain"]:  # linked, so never written here
        if not (source / "eval" / "sft" / result_name(b, True)).exists():
            raise SystemExit(f"--shared-from {source}: its SFT evaluation on {b} is not done")
    link_shared(source, first)


# ----------------------------------------------------------------- statistics


def boot_ci(values_a, values_b=None, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Mean (or mean difference a - b, unpaired) and its 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    a = np.asarray(values_a, dtype=float)
    if values_b is None:
        idx = rng.integers(0, len(a), size=(n_boot, len(a)))
        boots = a[idx].mean(axis=1)
        return float(a.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
    b = np.asarray(values_b, dtype=float)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    boots = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    return float(a.mean() - b.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def item_diff(a: dict, b: dict, key: str) -> tuple[float, float, float]:
    """Accuracy of method ``a`` minus method ``b`` on split ``key`` ("in" / "ood") with a 95%
    interval. Every seed evaluates the same items, so the comparison is paired by item: each item's
    correctness is averaged over the seeds that evaluated it (a shared method counts once), the
    per-item differences are resampled. Without item ids (older records) the unpaired interval."""
    ids_a, ids_b = a.get(f"{key}_ids"), b.get(f"{key}_ids")
    if not ids_a or not ids_b or len(ids_a) != len(a[key]) or len(ids_b) != len(b[key]):
        return boot_ci(a[key], b[key])

    def per_item(vals, ids):
        acc: dict[str, list[float]] = {}
        for v, i in zip(vals, ids, strict=True):
            acc.setdefault(i, []).append(v)
        return {i: float(np.mean(v)) for i, v in acc.items()}

    pa, pb = per_item(a[key], ids_a), per_item(b[key], ids_b)
    common = sorted(set(pa) & set(pb))
    if not common:
        return (float("nan"),) * 3
    return boot_ci([pa[i] - pb[i] for i in common])


def verdict(lo: float, hi: float) -> str:
    """For a difference the paper says is > 0."""
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold"
    return "not shown (CI includes 0)"


def boot_alignment(items_a, items_b, teacher, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Alignment score of A minus B (tool names per in-domain item), resampling items."""
    from collections import Counter

    from mentor.analysis import alignment_score

    rng = np.random.default_rng(seed)

    def score(items, idx=None):
        c: Counter = Counter()
        for i in range(len(items)) if idx is None else idx:
            c.update(items[i])
        return alignment_score(teacher, c)

    point = score(items_a) - score(items_b)
    boots = [
        score(items_a, rng.integers(0, len(items_a), len(items_a))) - score(items_b, rng.integers(0, len(items_b), len(items_b)))
        for _ in range(n_boot)
    ]
    return float(point), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


#: per-step training records kept for the trends and plots: name -> metrics.jsonl key
CURVE_KEYS = {"reward": "reward", "correctness": "reward/correctness", "invalid": "invalid_call_rate",
              "usage": "tool_usage_rate", "reward_std": "reward_std"}


def collect(runs: list[Path], presets: list[str], split_names: dict[str, str]) -> dict:
    """Per method: correctness per item (in/ood, pooled over seeds), tool names per item,
    per-step training curves (one list of records per seed)."""
    from mentor.analysis import alignment_score, tool_counts
    from mentor.references import load_references

    teacher = tool_counts(r.messages for r in load_references(runs[0] / "references.jsonl"))
    out: dict = {"teacher_counts": dict(teacher), "methods": {}}
    for m in ["vanilla", "sft", *presets]:
        d = {"in": [], "ood": [], "in_ids": [], "ood_ids": [], "calls": 0, "invalid": 0, "used": [], "in_tools": [], "alignment_per_seed": [], "curves": []}
        for run in runs[:1] if m in ("vanilla", "sft") else runs:  # shared: seed 0's directory
            counts: dict[str, int] = {}
            for key, split in split_names.items():
                path = run / "eval" / m / f"synthetic_{split}.json"
                if not path.exists():
                    continue
                for r in json.loads(path.read_text())["records"]:
                    d[key].append(float(r["correct"]))
                    d[f"{key}_ids"].append(r["id"])
                    d["calls"] += r["num_tool_calls"]
                    d["invalid"] += r["invalid_calls"]
                    d["used"].append(float(r["num_tool_calls"] > 0))
                    if key == "in":
                        d["in_tools"].append(list(r["tool_names"]))
                        for t in r["tool_names"]:
                            counts[t] = counts.get(t, 0) + 1
            d["alignment_per_seed"].append(alignment_score(teacher, counts))
            log = run / "models" / m / "metrics.jsonl"
            if log.exists() and m in presets:
                rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                d["curves"].append([{"step": r.get("step"), **{k: r.get(v) for k, v in CURVE_KEYS.items()}}
                                    for r in rows if "invalid_call_rate" in r])
        out["methods"][m] = d
    return out


def trend(curves: list[list[dict]], key: str, parts: int = 4) -> tuple[float, float, float, float, float]:
    """Last-quarter minus first-quarter mean of a per-step record (``parts``: quarters), pooling
    the steps of every seed; 95% bootstrap interval over steps: (first, last, diff, lo, hi)."""
    first, last = [], []
    for c in curves:
        vals = [row[key] for row in c if row.get(key) is not None]
        if len(vals) < parts:
            continue
        k = max(1, len(vals) // parts)
        first += vals[:k]
        last += vals[-k:]
    if not first:
        return (float("nan"),) * 5
    diff, lo, hi = boot_ci(last, first)
    return float(np.mean(first)), float(np.mean(last)), diff, lo, hi


def learning_check(data: dict, presets: list[str]) -> tuple[list[list[str]], dict]:
    """Issue #11 part 3, per preset: (a) the mean training reward rises (last quarter minus first
    quarter of the steps, pooled over seeds, 95% CI excluding 0); (b) RL does not end below its SFT
    start in in-domain accuracy (pooled difference >= 0; its 95% CI shown)."""
    ms = data["methods"]
    rows, numbers = [], {}
    for m in presets:
        t = trend(ms[m]["curves"], "reward")
        d = item_diff(ms[m], ms["sft"], "in") if ms[m]["in"] and ms["sft"]["in"] else (float("nan"),) * 3
        numbers[f"reward_trend_{m}"], numbers[f"in_minus_sft_{m}"] = t, d
        rises = "holds" if t[3] > 0 else ("does not hold" if t[4] < 0 else "not shown (CI includes 0)")
        rows.append([f"{m}: mean training reward rises", _fmt_trend(t), rises if t[2] == t[2] else NOT_MEASURED])
        rows.append([f"{m}: in-domain accuracy not below SFT", _fmt(d),
                     "holds" if d[0] >= 0 else ("does not hold" if d[2] < 0 else "does not hold (CI includes 0)")])
    return rows, numbers


def plot_curves(data: dict, presets: list[str], path: Path, window: int = 5) -> Path:
    """Training curves per preset: reward, correctness reward, invalid-call rate and tool-usage
    rate against the step; each seed's curve smoothed by a trailing mean of ``window`` steps, the
    line the mean over seeds, the band their min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("reward", "training reward (own preset)"), ("correctness", "correctness reward"),
              ("invalid", "invalid-call rate"), ("usage", "tool-usage rate")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for m in presets:
            seeds = []
            for c in data["methods"][m]["curves"]:
                vals = np.array([np.nan if r.get(key) is None else r[key] for r in c], dtype=float)
                if len(vals) and not np.isnan(vals).all():
                    smooth = np.array([np.nanmean(vals[max(0, i - window + 1):i + 1]) for i in range(len(vals))])
                    seeds.append(smooth)
            if not seeds:
                continue
            n = min(len(v) for v in seeds)
            arr = np.stack([v[:n] for v in seeds])
            x = np.arange(1, n + 1)
            line, = ax.plot(x, arr.mean(axis=0), label=f"{m} ({len(seeds)} seeds)")
            ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"trailing mean of {window} steps; band: min..max over seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyse(data: dict) -> tuple[list[list[str]], list[list[str]], dict]:
    ms = data["methods"]
    rows = []
    for m, d in ms.items():
        acc_in = boot_ci(d["in"]) if d["in"] else (float("nan"),) * 3
        acc_ood = boot_ci(d["ood"]) if d["ood"] else (float("nan"),) * 3
        inv = d["invalid"] / d["calls"] if d["calls"] else 0.0
        use = float(np.mean(d["used"])) if d["used"] else float("nan")
        al = float(np.mean(d["alignment_per_seed"])) if d["alignment_per_seed"] else float("nan")  # mean over seeds
        rows.append(
            [
                m,
                f"{acc_in[0]:.3f} [{acc_in[1]:.3f}, {acc_in[2]:.3f}]",
                f"{acc_ood[0]:.3f} [{acc_ood[1]:.3f}, {acc_ood[2]:.3f}]",
                f"{inv:.3f}",
                f"{use:.3f}",
                f"{al:.3f}",
            ]
        )
    findings: list[list[str]] = []
    numbers: dict = {}
    if not all(m in ms for m in PRESETS) or not ms["mentor"]["ood"]:
        return rows, findings, numbers  # a tuning run: no findings
    # 1. MENTOR >= Sparse OOD; SFT below RL methods OOD
    diff = item_diff(ms["mentor"], ms["sparse"], "ood")
    numbers["mentor_minus_sparse_ood"] = diff
    findings.append(["MENTOR > Sparse, out-of-domain accuracy (Table 2)", _fmt(diff), verdict(diff[1], diff[2])])
    rl = {"ood": ms["sparse"]["ood"] + ms["mentor"]["ood"],
          "ood_ids": (ms["sparse"].get("ood_ids") or []) + (ms["mentor"].get("ood_ids") or [])}
    diff = item_diff(rl, ms["sft"], "ood")
    numbers["rl_minus_sft_ood"] = diff
    findings.append(["SFT below the RL methods, out-of-domain accuracy (Table 2)", _fmt(diff), verdict(diff[1], diff[2])])
    # 2. alignment score: mentor > f1, mentor > sparse (in-domain items pooled over seeds, resampled)
    from collections import Counter

    teacher = Counter(data["teacher_counts"])
    for other in ("f1", "sparse"):
        diff = boot_alignment(ms["mentor"]["in_tools"], ms[other]["in_tools"], teacher)
        numbers[f"alignment_mentor_minus_{other}"] = diff
        findings.append([f"alignment score: MENTOR > {other} (Table 3)", _fmt(diff), verdict(diff[1], diff[2])])
    # 3. validity reward drives invalid rate down; sparse does not
    for m in ("mentor", "f1", "sparse"):
        t = trend(ms[m]["curves"], "invalid")
        numbers[f"invalid_trend_{m}"] = t
        want_down = m != "sparse"
        if want_down:
            v = verdict(-t[4], -t[3])  # the claim is a fall: last - first < 0
            claim = f"{m} (has R_v): invalid-call rate falls during training (Fig. 6)"
        else:
            # holds when the interval rules out a fall of more than 0.05; fails when it is all below 0
            v = "holds" if t[3] > -0.05 else ("does not hold" if t[4] < 0 else "not shown (CI includes 0)")
            claim = "sparse (no R_v): invalid-call rate does not fall (Fig. 6)"
        findings.append([claim, _fmt_trend(t), v if t[2] == t[2] else NOT_MEASURED])
    # 4. tool usage: alignment presets raise it; sparse drifts away
    for m in ("mentor", "f1", "sparse"):
        t = trend(ms[m]["curves"], "usage")
        numbers[f"usage_trend_{m}"] = t
        if m != "sparse":
            v = verdict(t[3], t[4])
            claim = f"{m} (rewards alignment): tool-usage rate rises (Fig. 7)"
        else:
            v = verdict(-t[4], -t[3])
            claim = "sparse: tool-usage rate drifts down (Fig. 7)"
        findings.append([claim, _fmt_trend(t), v if t[2] == t[2] else NOT_MEASURED])
    return rows, findings, numbers


NOT_MEASURED = "not measured (fewer logged steps than quarters)"


def _fmt_trend(t: tuple[float, ...]) -> str:
    return f"first {t[0]:.3f} -> last {t[1]:.3f}; diff {t[2]:+.3f} [{t[3]:+.3f}, {t[4]:+.3f}]"


def learning_signal(data: dict, presets: list[str]) -> str:
    """How many GRPO steps had reward variance within the group (a non-zero advantage: the
    weights move) and how many had a correct rollout, per preset, over all seeds."""
    parts = []
    for m in presets:
        steps = [row for c in data["methods"][m]["curves"] for row in c]
        if steps:
            varied = sum(1 for row in steps if (row["reward_std"] or 0) > 0)
            correct = sum(1 for row in steps if (row["correctness"] or 0) > 0)
            parts.append(f"{m} {varied}/{len(steps)} with reward variance, {correct}/{len(steps)} with a correct rollout")
    return "GRPO steps: " + "; ".join(parts) + "." if parts else ""


def _fmt(d: tuple[float, float, float]) -> str:
    return f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def run_unit(args: argparse.Namespace, seed: int, preset: str) -> None:
    """One (seed, preset): GRPO from the shared SFT model, then its in- and out-of-domain evals.
    Resumable: a finished stage is skipped, evaluation resumes per benchmark file."""
    p = Pipeline(study_config(args, seed), Path(args.out) / f"seed{seed}", progress=False)
    p.run([preset])
    p.stage_eval([preset])


def run_study(args: argparse.Namespace, runs: list[Path]) -> None:
    """Shared stages once (seed 0's directory), then every (seed, preset) unit, ``--jobs`` at a
    time in separate processes that share the cores (1 thread each with 2 jobs on 2 cores:
    measured ~1.2x the throughput of one 2-thread process for this 135M model)."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rich.progress import Progress

    if args.shared_from:
        reuse_shared(args, Path(args.shared_from), runs[0])
    shared = Pipeline(study_config(args, args.seeds[0]), runs[0], progress=False)
    shared.run(list(SHARED_STAGES))
    shared.stage_eval(["sft"])
    for run in runs[1:]:
        link_shared(runs[0], run)
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}

    def unit(seed: int, preset: str) -> str | None:
        log = logs / f"seed{seed}-{preset}.log"
        with open(log, "a") as fh:
            rc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--unit", f"{seed}:{preset}"], env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        return f"seed {seed} {preset} (exit {rc}; see {log})" if rc else None

    units = [(seed, preset) for preset in args.presets for seed in args.seeds]
    failed = []
    with Progress() as bar, ThreadPoolExecutor(args.jobs) as pool:
        task = bar.add_task(f"GRPO + eval, {len(units)} units, {args.jobs} at a time", total=len(units))
        futures = {pool.submit(unit, *u): u for u in units}
        for fut in as_completed(futures):
            bar.advance(task)
            if err := fut.result():
                failed.append(err)
            else:
                bar.console.print("seed {} {}: done".format(*futures[fut]))
    if failed:
        raise SystemExit("study units failed: " + "; ".join(failed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--tune", action="store_true",
                    help="a tuning run (issue #11 part 3): seeds >= 100, evaluated on synthetic:tune only")
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--sft-steps", type=int, default=40)
    ap.add_argument("--rl-steps", type=int, default=60)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--questions-per-step", type=int, default=1)
    ap.add_argument("--max-completion-length", type=int, default=384,
                    help="whole multi-turn completion (TRL); 384 holds every teacher solution (the first study ran 160)")
    ap.add_argument("--rl-lr", type=float, default=1e-4)
    ap.add_argument("--temperature", type=float, default=1.0, help="GRPO rollout sampling temperature")
    ap.add_argument("--beta", type=float, default=None,
                    help="GRPO KL coefficient (default: configs/cpu.yaml's, 0: no reference forward)")
    ap.add_argument("--shared-from", metavar="SEED_DIR",
                    help="reuse that run's data, references, SFT model and vanilla/SFT evals (same seed and settings)")
    ap.add_argument("--limit", type=int, default=60, help="evaluation items per split")
    ap.add_argument("--jobs", type=int, default=2, help="(seed, preset) units run at once")
    ap.add_argument("--plots", default=None, help="directory of the training-curve plot (default: OUT)")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--unit", help=argparse.SUPPRESS)  # internal: SEED:PRESET, run by run_study
    args = ap.parse_args(argv)
    if args.tune and min(args.seeds) < 100:
        ap.error("--tune uses seeds >= 100 only (seeds 0-99 are the study's)")
    return args


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.unit:
        seed, preset = args.unit.split(":")
        run_unit(args, int(seed), preset)
        return
    out = Path(args.out)
    t0 = time.perf_counter()
    runs = [out / f"seed{s}" for s in args.seeds]
    if not args.analyse_only:
        run_study(args, runs)
    data = collect(runs, args.presets, splits(args))
    rows, findings, numbers = analyse(data)
    checks, check_numbers = learning_check(data, args.presets)
    numbers.update(check_numbers)
    plot = plot_curves(data, args.presets, Path(args.plots or out) / "study_curves.png")
    in_split, ood_split = splits(args)["in"], splits(args).get("ood")
    header = ["method", f"in-domain acc ({in_split}) [95% CI]", f"out-of-domain acc ({ood_split}) [95% CI]",
              "invalid-call rate", "tool-usage rate", "alignment score"]
    if ood_split is None:  # a tuning run: no out-of-domain column
        header, rows = header[:2] + header[3:], [r[:2] + r[3:] for r in rows]
    text = (
        f"Seeds {args.seeds}; {args.limit} items per split per seed; SFT {args.sft_steps} steps (shared), "
        f"GRPO {args.rl_steps} steps x {args.questions_per_step} question x {args.generations} rollouts "
        f"(completion <= {args.max_completion_length} tokens, learning rate {args.rl_lr:g}, "
        f"temperature {args.temperature:g}{'' if args.beta is None else f', beta {args.beta:g}'}) per preset and seed.\n\n"
        + md_table(header, rows)
        + "\n\n"
        + (md_table(["finding (paper)", "measured difference [95% CI]", "verdict"], findings) + "\n\n" if findings else "")
        + md_table(["RL learns (issue #11 part 3)", "measured [95% CI]", "verdict"], checks)
        + "\n\n"
        + learning_signal(data, args.presets)
        + f"\n\nTraining curves: {plot}\n"
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.md").write_text(text)
    previous = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    # the wall-clock of the runs; --analyse-only keeps the one measured when they ran
    seconds = previous.get("seconds") if args.analyse_only else time.perf_counter() - t0
    (out / "study.json").write_text(json.dumps({
        "args": vars(args), "table": rows, "findings": findings, "learning": checks, "numbers": numbers,
        "curves": {m: data["methods"][m]["curves"] for m in args.presets}, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
