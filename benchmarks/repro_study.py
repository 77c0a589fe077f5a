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

The third study (STUDY_PROTOCOL_3.md) starts RL where the sparse reward is sparse: from the
vanilla student (`--rl-init base`: no SFT stage) and from a short SFT warm start, with every
reward preset, several questions per step, a held-out probe scored during training and frequent
checkpoints:

    .venv/bin/python benchmarks/repro_study.py --out runs/study3/base --rl-init base \
        --presets sparse validation f1 mentor --seeds 0 1 2 --rl-steps 16 --questions-per-step 2 \
        --probe-every 4 --probe-limit 32 --save-steps 4 --plots benchmarks/results/study3/base

and adds its pre-registered regime checks (`regime_checks`: Sparse's reward variance ~0 and no
rise of its probe accuracy; the probe invalid-call rate falls, tool usage and alignment rise for
the presets that reward them; MENTOR above Sparse), the probe table and `probe_curves.png`.
`--shared-only` runs the shared stages alone (e.g. choosing an SFT length on tuning seeds).

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
from mentor.rewards import PRESETS as REWARD_PRESETS  # noqa: E402

#: the methods a study can train: every reward preset, each under its own name
PRESETS = {p: p for p in REWARD_PRESETS}
#: the first two studies' presets (the default)
DEFAULT_PRESETS = ["sparse", "f1", "mentor"]
SHARED_STAGES = ("data", "teach", "vanilla", "sft")
PROBE_BENCHMARK = "synthetic:probe"


def shared_stages(args: argparse.Namespace) -> tuple[str, ...]:
    """The stages every seed shares: no SFT when RL starts from the vanilla student."""
    return SHARED_STAGES if args.rl_init == "sft" else SHARED_STAGES[:-1]


def start_method(args: argparse.Namespace) -> str:
    """The model RL starts from: the SFT warm start, or the vanilla student (``--rl-init base``)."""
    return "sft" if args.rl_init == "sft" else "vanilla"


def study_config(args: argparse.Namespace, seed: int) -> dict:
    rl = {
        "max_steps": args.rl_steps,
        "num_generations": args.generations,
        # one question's group per micro-batch (its prompt runs once: share_prompt_forward), the
        # questions of a step accumulated: the same loss (dapo spans the generation batch) at the
        # activation memory of one group -- two units of 2 x 8 completions of <= 384 tokens in one
        # micro-batch peaked at ~10-12 GB each and the kernel killed one (study 3's first start)
        "per_device_train_batch_size": args.generations,
        "gradient_accumulation_steps": args.questions_per_step,
        "max_completion_length": args.max_completion_length,
        "max_tool_calling_iterations": 4,  # the longest plans have 4 calls
        "learning_rate": args.rl_lr,
        "temperature": args.temperature,
        **({"beta": args.beta} if args.beta is not None else {}),  # None: the training config's
    }
    if args.save_steps:  # checkpoint often: a unit stopped by a session's end resumes from its last one
        rl.update(save_steps=args.save_steps, save_total_limit=2)
    if args.probe_every:
        rl["probe"] = {"benchmark": PROBE_BENCHMARK, "every": args.probe_every, "limit": args.probe_limit,
                       "max_turns": 5, "max_new_tokens": 64}  # the evaluation's turns and tokens
    overrides = {
        "name": f"study-seed{seed}",
        "seed": seed,
        **({"rl_init": "base"} if args.rl_init == "base" else {}),
        "data": {"n": args.n_train},
        "train": {
            "sft": {"max_steps": args.sft_steps, "per_device_train_batch_size": 2, "learning_rate": 2e-3},
            "rl": rl,
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
    for s in shared_stages(args):
        if not (source / "stages" / f"{s}.json").exists():
            raise SystemExit(f"--shared-from {source}: its {s} stage is not done")
    start = start_method(args)
    for b in ours["eval"]["in_domain"] + ours["eval"]["out_of_domain"]:  # linked, so never written here
        if not (source / "eval" / start / result_name(b, True)).exists():
            raise SystemExit(f"--shared-from {source}: its {start.upper() if start == 'sft' else start} evaluation on {b} is not done")
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


def collect(runs: list[Path], presets: list[str], split_names: dict[str, str], start: str = "sft") -> dict:
    """Per method: correctness per item (in/ood, pooled over seeds), tool names per item,
    per-step training curves and probe records (one list of records per seed). ``start``: the
    model RL started from (``sft``, or ``vanilla`` with ``--rl-init base``: no SFT model)."""
    from mentor.analysis import alignment_score, tool_counts
    from mentor.references import load_references
    from mentor.train.probe import read_probe

    teacher = tool_counts(r.messages for r in load_references(runs[0] / "references.jsonl"))
    out: dict = {"teacher_counts": dict(teacher), "methods": {}, "start": start}
    for m in ["vanilla", *(["sft"] if start == "sft" else []), *presets]:
        d = {"in": [], "ood": [], "in_ids": [], "ood_ids": [], "calls": 0, "invalid": 0, "used": [], "in_tools": [],
             "alignment_per_seed": [], "curves": [], "probes": []}
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
            if m in presets and (probes := read_probe(run / "models" / m)):
                d["probes"].append(probes)
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
    quarter of the steps, pooled over seeds, 95% CI excluding 0); (b) RL does not end below its
    start (SFT, or vanilla with ``--rl-init base``) in in-domain accuracy (pooled difference >= 0;
    its 95% CI shown)."""
    ms, start = data["methods"], data.get("start", "sft")
    rows, numbers = [], {}
    for m in presets:
        t = trend(ms[m]["curves"], "reward")
        d = item_diff(ms[m], ms[start], "in") if ms[m]["in"] and ms[start]["in"] else (float("nan"),) * 3
        numbers[f"reward_trend_{m}"], numbers[f"in_minus_{start}_{m}"] = t, d
        rises = "holds" if t[3] > 0 else ("does not hold" if t[4] < 0 else "not shown (CI includes 0)")
        rows.append([f"{m}: mean training reward rises", _fmt_trend(t), rises if t[2] == t[2] else NOT_MEASURED])
        rows.append([f"{m}: in-domain accuracy not below {'SFT' if start == 'sft' else 'its start (vanilla)'}", _fmt(d),
                     "holds" if d[0] >= 0 else ("does not hold" if d[2] < 0 else "does not hold (CI includes 0)")])
    return rows, numbers


# ------------------------------------------------ study 3: the probe and the regime checks

#: per-item probe quantities: name -> how an item's record is read
PROBE_METRICS = ("accuracy", "invalid_call_rate", "tool_usage_rate", "alignment")


def probe_items(probes: list[list[dict]], which: str) -> dict[str, dict[str, list[float]]]:
    """Per probe item (by id): its per-item quantities at the start probe (``which="start"``: step
    0) or averaged over the probes of the last quarter of the steps (``"last"``: steps >= 3/4 of
    the last probed step), one value per seed: correct, calls, invalid, used, aligned."""
    out: dict[str, dict[str, list[float]]] = {}
    for rows in probes:
        if not rows:
            continue
        end = rows[-1]["step"]
        chosen = [r for r in rows if r["step"] == 0] if which == "start" else [r for r in rows if r["step"] >= 0.75 * end]
        if not chosen or (which == "last" and end == 0):
            continue
        for i, item in enumerate(chosen[0]["ids"]):
            acc = out.setdefault(item, {k: [] for k in ("correct", "calls", "invalid", "used", "aligned")})
            for k in ("correct", "calls", "invalid", "aligned"):
                vals = [r[k][i] for r in chosen if k in r]
                if vals:
                    acc[k].append(float(np.mean(vals)))
            acc["used"].append(float(np.mean([r["calls"][i] > 0 for r in chosen])))
    return out


def probe_value(items: dict[str, dict[str, list[float]]], ids: list[str], metric: str) -> float:
    """A probe metric over ``ids`` (seeds pooled): accuracy, invalid-call rate (invalid calls over
    calls), tool-usage rate, alignment (strict tool-set match)."""
    if metric == "invalid_call_rate":
        calls = sum(sum(items[i]["calls"]) for i in ids)
        return sum(sum(items[i]["invalid"]) for i in ids) / calls if calls else 0.0
    key = {"accuracy": "correct", "tool_usage_rate": "used", "alignment": "aligned"}[metric]
    vals = [v for i in ids for v in items[i][key]]
    return float(np.mean(vals)) if vals else float("nan")


def probe_diff(a: dict, b: dict, metric: str, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """``metric`` of probe items ``a`` minus ``b`` (e.g. the last quarter minus the start, or one
    preset minus another) and its 95% interval, resampling the probe items (paired: the same
    items on both sides)."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    point = probe_value(a, ids, metric) - probe_value(b, ids, metric)
    boots = []
    for _ in range(n_boot):
        pick = [ids[j] for j in rng.integers(0, len(ids), len(ids))]
        boots.append(probe_value(a, pick, metric) - probe_value(b, pick, metric))
    return float(point), float(np.nanpercentile(boots, 2.5)), float(np.nanpercentile(boots, 97.5))


def share_ci(flags: list[bool], z: float = 1.959964) -> tuple[float, float, float]:
    """A share and its 95% Wilson score interval (a bootstrap of 0 events out of n would claim
    [0, 0] whatever n is; Wilson's upper end for 0 of n is about 3.8 / n)."""
    n = len(flags)
    if not n:
        return (float("nan"),) * 3
    p = sum(map(bool, flags)) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half))


#: Study 3's threshold: "Sparse's reward variance ~0" holds when the upper end of the 95%
#: interval of the share of its GRPO steps with any reward variance is at most this.
SPARSE_VARIANCE_SHARE = 0.10


def regime_checks(data: dict, presets: list[str]) -> tuple[list[list[str]], dict]:
    """Study 3's pre-registered checks (benchmarks/STUDY_PROTOCOL_3.md), in the paper's
    direction, from the probe (start = the step-0 probe, last = the probes of the last quarter of
    the steps, items paired, seeds pooled) and the final in-domain evaluation:

    - sparse: reward variance ~0 (share of steps with reward variance, upper 95% bound <= 0.10)
      and probe accuracy not above its start (fails only when the rise's interval is above 0);
    - each preset with R_v (validation, f1, mentor): probe invalid-call rate falls;
    - each preset rewarding alignment (f1, mentor): probe tool-usage rate and alignment rise;
    - mentor, validation, f1 vs sparse: in-domain accuracy of the final evaluation (paired by
      item) and last-quarter probe accuracy above Sparse's;
    - mentor vs sparse, last-quarter probe: invalid-call rate lower, tool usage and alignment higher.
    """
    ms = data["methods"]
    rows, numbers = [], {}
    if "sparse" in presets and ms["sparse"]["curves"]:
        flags = [(r["reward_std"] or 0) > 0 for c in ms["sparse"]["curves"] for r in c]
        sh = share_ci(flags)
        numbers["sparse_variance_share"] = sh
        v = ("holds" if sh[2] <= SPARSE_VARIANCE_SHARE else "does not hold" if sh[1] > SPARSE_VARIANCE_SHARE
             else "not shown (CI includes the threshold)")
        rows.append([f"sparse: reward variance ~0 (share of steps with any; upper bound <= {SPARSE_VARIANCE_SHARE:g})",
                     f"{sh[0]:.3f} [{sh[1]:.3f}, {sh[2]:.3f}] of {len(flags)} steps", v])
    start = {m: probe_items(ms[m]["probes"], "start") for m in presets}
    last = {m: probe_items(ms[m]["probes"], "last") for m in presets}
    if "sparse" in presets and last["sparse"]:
        d = probe_diff(last["sparse"], start["sparse"], "accuracy")
        numbers["probe_accuracy_rise_sparse"] = d
        rows.append(["sparse: probe accuracy not above its start", _fmt(d),
                     "does not hold (it rose)" if d[1] > 0 else "holds (no rise shown)"])
    for m in [p for p in ("validation", "f1", "mentor") if p in presets and last[p]]:
        d = probe_diff(last[m], start[m], "invalid_call_rate")
        numbers[f"probe_invalid_change_{m}"] = d
        rows.append([f"{m} (has R_v): probe invalid-call rate falls", _fmt(d), verdict(-d[2], -d[1])])
        if m != "validation":
            for metric in ("tool_usage_rate", "alignment"):
                d = probe_diff(last[m], start[m], metric)
                numbers[f"probe_{metric}_change_{m}"] = d
                rows.append([f"{m} (rewards alignment): probe {metric.replace('_', ' ')} rises", _fmt(d), verdict(d[1], d[2])])
    if "sparse" in presets:
        for m in [p for p in ("mentor", "validation", "f1") if p in presets]:
            if ms[m]["in"] and ms["sparse"]["in"]:
                d = item_diff(ms[m], ms["sparse"], "in")
                numbers[f"in_{m}_minus_sparse"] = d
                rows.append([f"{m} > sparse, in-domain accuracy (final evaluation)", _fmt(d), verdict(d[1], d[2])])
            if last[m] and last["sparse"]:
                d = probe_diff(last[m], last["sparse"], "accuracy")
                numbers[f"probe_accuracy_{m}_minus_sparse"] = d
                rows.append([f"{m} > sparse, probe accuracy (last quarter)", _fmt(d), verdict(d[1], d[2])])
        if "mentor" in presets and last["mentor"] and last["sparse"]:  # the paper's direction for each tool metric
            for metric, sign, word in (("invalid_call_rate", -1, "<"), ("tool_usage_rate", 1, ">"), ("alignment", 1, ">")):
                d = probe_diff(last["mentor"], last["sparse"], metric)
                numbers[f"probe_{metric}_mentor_minus_sparse"] = d
                v = verdict(d[1], d[2]) if sign > 0 else verdict(-d[2], -d[1])
                rows.append([f"mentor {word} sparse, probe {metric.replace('_', ' ')} (last quarter)", _fmt(d), v])
    return rows, numbers


def probe_table(data: dict, presets: list[str]) -> list[list[str]]:
    """Per preset: each probe metric at the start and over the last quarter (seeds pooled)."""
    rows = []
    for m in presets:
        st, la = probe_items(data["methods"][m]["probes"], "start"), probe_items(data["methods"][m]["probes"], "last")
        if not st or not la:
            continue
        cells = [f"{probe_value(st, sorted(st), k):.3f} -> {probe_value(la, sorted(la), k):.3f}" for k in PROBE_METRICS]
        rows.append([m, str(len(data["methods"][m]["probes"])), *cells])
    return rows


def plot_probe(data: dict, presets: list[str], path: Path) -> Path | None:
    """Probe curves per preset: accuracy, invalid-call rate, tool-usage rate and alignment
    against the step; the line the mean over seeds, the band their min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(data["methods"][m]["probes"] for m in presets):
        return None
    fig, axes = plt.subplots(1, len(PROBE_METRICS), figsize=(4.2 * len(PROBE_METRICS), 3.4))
    for ax, metric in zip(axes, PROBE_METRICS, strict=True):
        for m in presets:
            runs = data["methods"][m]["probes"]
            if not runs:
                continue
            steps = sorted(set.intersection(*[{r["step"] for r in rows} for rows in runs]))
            vals = np.array([[next(r[metric] for r in rows if r["step"] == st) or 0.0 for st in steps] for rows in runs], dtype=float)
            line, = ax.plot(steps, vals.mean(axis=0), marker="o", markersize=3, label=f"{m} ({len(runs)} seeds)")
            ax.fill_between(steps, vals.min(axis=0), vals.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set_title(f"probe {metric.replace('_', ' ')}")
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=8)
    fig.suptitle("held-out probe (synthetic:probe, greedy); line: mean over seeds, band: min..max", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    if not all(m in ms for m in DEFAULT_PRESETS) or not ms["mentor"]["ood"]:
        return rows, findings, numbers  # a tuning run (or a subset of the presets): no findings
    # 1. MENTOR >= Sparse OOD; SFT below RL methods OOD
    diff = item_diff(ms["mentor"], ms["sparse"], "ood")
    numbers["mentor_minus_sparse_ood"] = diff
    findings.append(["MENTOR > Sparse, out-of-domain accuracy (Table 2)", _fmt(diff), verdict(diff[1], diff[2])])
    if "sft" in ms:  # not when RL starts from the vanilla student
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


def unit_order(presets: list[str], seeds: list[int], order: str = "preset") -> list[tuple[int, str]]:
    """The (seed, preset) units in the order they are started. ``preset``: every seed of a preset
    before the next preset; ``seed``: every preset of a seed before the next seed, so that a
    study stopped by its compute limit leaves the presets with nearly the same seeds (the start
    order is level within one unit; with ``--jobs`` N the finishing order within about N)."""
    if order == "seed":
        return [(seed, preset) for seed in seeds for preset in presets]
    return [(seed, preset) for preset in presets for seed in seeds]


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
    shared.run(list(shared_stages(args)))
    shared.stage_eval([start_method(args)])
    if args.shared_only:
        return
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

    units = unit_order(args.presets, args.seeds, args.unit_order)
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
    ap.add_argument("--out", default="runs/study", help="study directory: one `mentor run` directory per seed (resumable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="RL seeds, any list (the shared stages use the first seed's directory)")
    ap.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS, choices=list(PRESETS),
                    help="reward presets trained, one GRPO unit per preset and seed (mentor.rewards.PRESETS)")
    ap.add_argument("--rl-init", choices=("sft", "base"), default="sft",
                    help="what GRPO starts from: the shared SFT warm start, or the vanilla student (base; no SFT stage)")
    ap.add_argument("--tune", action="store_true",
                    help="a tuning run (issue #11 part 3): seeds >= 100, evaluated on synthetic:tune only")
    ap.add_argument("--n-train", type=int, default=64, help="synthetic training questions (teacher references)")
    ap.add_argument("--sft-steps", type=int, default=40, help="SFT optimizer steps of the shared warm start (batch 2, lr 2e-3)")
    ap.add_argument("--rl-steps", type=int, default=60, help="GRPO optimizer steps per (seed, preset)")
    ap.add_argument("--generations", type=int, default=4, help="rollouts per question (the GRPO group)")
    ap.add_argument("--questions-per-step", type=int, default=1, help="questions per GRPO step (each with --generations rollouts)")
    ap.add_argument("--max-completion-length", type=int, default=384,
                    help="whole multi-turn completion (TRL); 384 holds every teacher solution (the first study ran 160)")
    ap.add_argument("--rl-lr", type=float, default=1e-4, help="GRPO learning rate (LoRA adapter)")
    ap.add_argument("--temperature", type=float, default=1.0, help="GRPO rollout sampling temperature")
    ap.add_argument("--beta", type=float, default=None,
                    help="GRPO KL coefficient (default: configs/cpu.yaml's, 0: no reference forward)")
    ap.add_argument("--probe-every", type=int, default=0,
                    help=f"score the held-out probe ({PROBE_BENCHMARK}, greedy, the evaluation's turns) at step 0 and "
                         "every N GRPO steps (mentor.train.probe; 0: no probe)")
    ap.add_argument("--probe-limit", type=int, default=32, help="probe items")
    ap.add_argument("--save-steps", type=int, default=0,
                    help="GRPO checkpoint every N steps, so a stopped unit resumes there (0: the training config's)")
    ap.add_argument("--shared-from", metavar="SEED_DIR",
                    help="reuse that run's data, references, SFT model and vanilla/SFT evals (same seed and settings)")
    ap.add_argument("--limit", type=int, default=60, help="evaluation items per split")
    ap.add_argument("--jobs", type=int, default=2, help="(seed, preset) units run at once")
    ap.add_argument("--unit-order", choices=("preset", "seed"), default="preset",
                    help="the order units start in: every seed of a preset first (preset), or every preset of a seed "
                         "first (seed: a study cut by its compute limit leaves the presets with nearly the same seeds)")
    ap.add_argument("--plots", default=None, help="directory of the training-curve plot (default: OUT)")
    ap.add_argument("--analyse-only", action="store_true", help="no training: analyse the units already in OUT")
    ap.add_argument("--shared-only", action="store_true",
                    help="only the shared stages and their evaluation (vanilla, and SFT unless --rl-init base): "
                         "e.g. choosing the SFT length on tuning seeds")
    ap.add_argument("--unit", help=argparse.SUPPRESS)  # internal: SEED:PRESET, run by run_study
    args = ap.parse_args(argv)
    if args.tune and min(args.seeds) < 100:
        ap.error("--tune uses seeds >= 100 only (seeds 0-99 are the study's)")
    if args.rl_init == "base" and args.shared_from:
        ap.error("--shared-from reuses an SFT warm start; --rl-init base has none")
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
    if args.shared_only:
        args.presets, runs = [], runs[:1]
    data = collect(runs, args.presets, splits(args), start_method(args))
    rows, findings, numbers = analyse(data)
    checks, check_numbers = learning_check(data, args.presets)
    numbers.update(check_numbers)
    regime, regime_numbers = regime_checks(data, args.presets)
    numbers.update(regime_numbers)
    plot = plot_curves(data, args.presets, Path(args.plots or out) / "study_curves.png")
    probe_plot = plot_probe(data, args.presets, Path(args.plots or out) / "probe_curves.png")
    probes = probe_table(data, args.presets)
    in_split, ood_split = splits(args)["in"], splits(args).get("ood")
    header = ["method", f"in-domain acc ({in_split}) [95% CI]", f"out-of-domain acc ({ood_split}) [95% CI]",
              "invalid-call rate", "tool-usage rate", "alignment score"]
    if ood_split is None:  # a tuning run: no out-of-domain column
        header, rows = header[:2] + header[3:], [r[:2] + r[3:] for r in rows]
    start = f"SFT {args.sft_steps} steps (shared)" if args.rl_init == "sft" else "RL from the vanilla student (no SFT)"
    probe_note = (f", probe: {args.probe_limit} items of {PROBE_BENCHMARK} every {args.probe_every} steps"
                  if args.probe_every else "")
    grpo = ("the shared stages only (no GRPO)." if args.shared_only else
            f"GRPO {args.rl_steps} steps x {args.questions_per_step} question(s) x {args.generations} rollouts "
            f"(completion <= {args.max_completion_length} tokens, learning rate {args.rl_lr:g}, "
            f"temperature {args.temperature:g}{'' if args.beta is None else f', beta {args.beta:g}'}{probe_note}) "
            "per preset and seed.")
    text = (
        f"Seeds {args.seeds}; {args.limit} items per split per seed; {start}, {grpo}\n\n"
        + md_table(header, rows)
        + "\n\n"
        + (md_table(["finding (paper)", "measured difference [95% CI]", "verdict"], findings) + "\n\n" if findings else "")
        + md_table(["RL learns (issue #11 part 3)", "measured [95% CI]", "verdict"], checks)
        + "\n\n"
        + (md_table(["probe (start -> last quarter)", "seeds", *PROBE_METRICS], probes) + "\n\n" if probes else "")
        + (md_table(["regime check (STUDY_PROTOCOL_3.md)", "measured [95% CI]", "verdict"], regime) + "\n\n" if regime else "")
        + learning_signal(data, args.presets)
        + f"\n\nTraining curves: {plot}\n"
        + (f"Probe curves: {probe_plot}\n" if probe_plot else "")
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.md").write_text(text)
    previous = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    # the wall-clock of the runs; --analyse-only keeps the one measured when they ran
    seconds = previous.get("seconds") if args.analyse_only else time.perf_counter() - t0
    (out / "study.json").write_text(json.dumps({
        "args": vars(args), "table": rows, "findings": findings, "learning": checks, "regime": regime,
        "probe_table": probes, "numbers": numbers, "curves": {m: data["methods"][m]["curves"] for m in args.presets},
        "probes": {m: data["methods"][m]["probes"] for m in args.presets}, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
