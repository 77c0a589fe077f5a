"""The reproduction study's statistics (benchmarks/repro_study.py): verdicts follow the data."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("repro_study", REPO / "benchmarks" / "repro_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_boot_ci_brackets_the_mean_and_separates_clear_differences(study):
    rng = np.random.default_rng(0)
    a = rng.binomial(1, 0.8, 200).astype(float)
    b = rng.binomial(1, 0.2, 200).astype(float)
    mean, lo, hi = study.boot_ci(a)
    assert lo <= mean <= hi and mean == pytest.approx(a.mean())
    diff, lo, hi = study.boot_ci(a, b)
    assert diff == pytest.approx(a.mean() - b.mean()) and lo > 0.4 and study.verdict(lo, hi) == "holds"
    assert study.verdict(*study.boot_ci(b, a)[1:]) == "does not hold"
    assert study.verdict(*study.boot_ci(a, a)[1:]) == "not shown (CI includes 0)"


def _method(correct_in, correct_ood, tools, curves):
    return {
        "in": correct_in,
        "ood": correct_ood,
        "calls": sum(len(t) for t in tools),
        "invalid": 0,
        "used": [float(bool(t)) for t in tools],
        "in_tools": tools,
        "alignment_per_seed": [0.5],
        "curves": curves,
    }


def _steps(rows):
    """Per-step training records as collect() reads them from metrics.jsonl."""
    return [{"step": s, "invalid": inv, "usage": use} for s, inv, use in rows]


def test_analyse_reports_holding_failing_and_unmeasured_findings(study):
    teacher = {"multiply": 60, "add": 40}
    aligned = [["multiply", "add"]] * 30 + [["multiply"]] * 30
    off = [["divide"]] * 60
    # invalid rate falling 0.5 -> 0 over 12 steps, usage rising 0.2 -> 1.0; sparse flat
    falling = [_steps((s, 0.5 - s * 0.04 if s < 12 else 0.0, 0.2 + s * 0.065) for s in range(13)) for _ in range(3)]
    flat = [_steps((s, 0.3, 0.6) for s in range(13)) for _ in range(3)]
    methods = {
        "vanilla": _method([0.0] * 60, [0.0] * 60, [[]] * 60, []),
        "sft": _method([0.0] * 60, [0.0] * 60, off, []),
        "sparse": _method([0.0] * 60, [0.0] * 60, off, flat),
        "f1": _method([1.0] * 30 + [0.0] * 30, [0.0] * 60, off, falling),
        "mentor": _method([1.0] * 50 + [0.0] * 10, [1.0] * 40 + [0.0] * 20, aligned, falling),
    }
    rows, findings, numbers = study.analyse({"teacher_counts": teacher, "methods": methods})
    assert [r[0] for r in rows] == list(methods)
    assert rows[-1][1].startswith("0.833")
    by_claim = {claim: verdict for claim, _, verdict in findings}
    assert by_claim["MENTOR > Sparse, out-of-domain accuracy (Table 2)"] == "holds"
    assert by_claim["alignment score: MENTOR > f1 (Table 3)"] == "holds"
    assert by_claim["mentor (has R_v): invalid-call rate falls during training (Fig. 6)"] == "holds"
    assert by_claim["sparse (no R_v): invalid-call rate does not fall (Fig. 6)"] == "holds"
    assert by_claim["mentor (rewards alignment): tool-usage rate rises (Fig. 7)"] == "holds"
    assert by_claim["sparse: tool-usage rate drifts down (Fig. 7)"] == "not shown (CI includes 0)"
    # a sparse preset whose invalid rate clearly falls fails its claim; a noisy one is not shown
    methods["sparse"]["curves"] = falling
    _, findings, _ = study.analyse({"teacher_counts": teacher, "methods": methods})
    assert dict((c, v) for c, _, v in findings)["sparse (no R_v): invalid-call rate does not fall (Fig. 6)"] == "does not hold"
    rng = np.random.default_rng(1)
    methods["sparse"]["curves"] = [_steps((s, float(rng.choice([0.0, 0.5])), 1.0) for s in range(9)) for _ in range(3)]
    _, findings, _ = study.analyse({"teacher_counts": teacher, "methods": methods})
    assert dict((c, v) for c, _, v in findings)["sparse (no R_v): invalid-call rate does not fall (Fig. 6)"] == "not shown (CI includes 0)"
    assert numbers["alignment_mentor_minus_sparse"][0] > 0.5
    # with fewer logged steps than quarters a trend is not measured (never a verdict from NaN)
    for m in ("sparse", "f1", "mentor"):
        methods[m]["curves"] = [_steps([(1, 0.5, 0.5)])]
    _, findings, numbers = study.analyse({"teacher_counts": teacher, "methods": methods})
    trends = [f for f in findings if "(Fig. 6)" in f[0] or "(Fig. 7)" in f[0]]
    assert len(trends) == 6 and all(f[2] == study.NOT_MEASURED for f in trends)
    assert math.isnan(numbers["invalid_trend_mentor"][2])


def test_learning_check_needs_a_rising_reward_and_accuracy_not_below_sft(study):
    rng = np.random.default_rng(2)
    # three seeds of 40 steps: the reward climbs 1.0 -> 1.5 under noise; a flat preset stays at 1.2
    rising = [[{"step": s, "reward": 1.0 + s / 80 + rng.normal(0, 0.05), "reward_std": 0.1 * (s % 2),
                "correctness": float(s % 3 == 0)} for s in range(40)] for _ in range(3)]
    flat = [[{"step": s, "reward": 1.2 + rng.normal(0, 0.05), "reward_std": 0.0, "correctness": 0.0}
             for s in range(40)] for _ in range(3)]
    data = {"methods": {"sft": {"in": [1.0] * 40 + [0.0] * 20},
                        "mentor": {"in": [1.0] * 130 + [0.0] * 50, "curves": rising},
                        "sparse": {"in": [1.0] * 100 + [0.0] * 80, "curves": flat}}}
    rows, numbers = study.learning_check(data, ["mentor", "sparse"])
    verdicts = {claim: v for claim, _, v in rows}
    assert verdicts["mentor: mean training reward rises"] == "holds"
    assert numbers["reward_trend_mentor"][2] == pytest.approx(0.375, abs=0.05)  # 30 of 40 steps x 1/80
    assert verdicts["mentor: in-domain accuracy not below SFT"] == "holds"  # 0.722 vs 0.667
    assert verdicts["sparse: mean training reward rises"] == "not shown (CI includes 0)"
    assert verdicts["sparse: in-domain accuracy not below SFT"].startswith("does not hold")  # 0.556
    signal = study.learning_signal(data, ["mentor", "sparse"])
    assert "mentor 60/120 with reward variance, 42/120 with a correct rollout" in signal
    assert "sparse 0/120 with reward variance" in signal


def test_accuracy_differences_are_paired_by_item(study):
    # 60 shared items; SFT (evaluated once) solves items 0-35; RL on each of 3 seeds solves the
    # same items and 36-41 too: +0.1 on every seed. Paired by item the interval excludes 0; the
    # unpaired one (pooled items of different sizes) cannot separate it.
    ids = [f"syn-test-s0-{i:05d}" for i in range(60)]
    sft = {"in": [float(i < 36) for i in range(60)], "in_ids": ids}
    rl = {"in": [float(i < 42) for i in range(60)] * 3, "in_ids": ids * 3}
    diff, lo, hi = study.item_diff(rl, sft, "in")
    assert diff == pytest.approx(0.1) and lo > 0 and study.verdict(lo, hi) == "holds"
    assert study.verdict(*study.boot_ci(rl["in"], sft["in"])[1:]) == "not shown (CI includes 0)"
    # the seeds' answers average per item: one seed losing items 0-17 costs 18/60/3 = 0.1
    rl["in"] = [float(18 <= i < 36) for i in range(60)] + [float(i < 36) for i in range(60)] * 2
    assert study.item_diff(rl, sft, "in")[0] == pytest.approx(-0.1)
    # records without ids: the unpaired interval
    assert study.item_diff({"in": rl["in"]}, {"in": sft["in"]}, "in") == study.boot_ci(rl["in"], sft["in"])


def _args(study, *argv):
    return study.parse_args(list(argv))


def _seed_dir(study, args, path: Path) -> Path:
    import yaml

    path.mkdir(parents=True)
    cfg = {k: v for k, v in study.study_config(args, args.seeds[0]).items() if not k.startswith("_")}
    (path / "pipeline.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (path / "stages").mkdir()
    for s in study.SHARED_STAGES:
        (path / "stages" / f"{s}.json").write_text('{"stage": "%s"}' % s)
    (path / "data").mkdir()
    (path / "references.jsonl").write_text("{}\n")
    (path / "models" / "sft" / "final").mkdir(parents=True)
    for m in ("vanilla", "sft"):
        (path / "eval" / m).mkdir(parents=True)
        (path / "eval" / m / "synthetic_tune.json").write_text("{}")
    return path


def test_shared_from_links_the_warm_start_of_a_matching_run_and_refuses_another(study, tmp_path):
    """--shared-from: an RL-only variant (another temperature) reuses a tuning run's data, SFT model and
    evals; a run whose data or SFT settings differ is refused, naming the file and the field."""
    base = _args(study, "--tune", "--seeds", "100", "101", "--presets", "mentor")
    source = _seed_dir(study, base, tmp_path / "old" / "seed100")
    variant = _args(study, "--tune", "--seeds", "100", "101", "--presets", "mentor", "--temperature", "0.7")
    assert study.study_config(variant, 100)["train"]["rl"]["temperature"] == 0.7
    assert "beta" not in study.study_config(variant, 100)["train"]["rl"]  # the training config's own
    first = tmp_path / "new" / "seed100"
    study.reuse_shared(variant, source, first)
    assert (first / "models" / "sft").resolve() == (source / "models" / "sft").resolve()
    assert (first / "eval" / "sft" / "synthetic_tune.json").exists()
    assert sorted(p.name for p in (first / "stages").iterdir()) == sorted(f"{s}.json" for s in study.SHARED_STAGES)
    # the second seed links through the first one's links to the same files
    study.link_shared(first, tmp_path / "new" / "seed101")
    assert (tmp_path / "new" / "seed101" / "models" / "sft").resolve() == (source / "models" / "sft").resolve()

    other_data = _args(study, "--tune", "--seeds", "100", "--presets", "mentor", "--n-train", "32")
    with pytest.raises(SystemExit, match=r"seed100/pipeline.yaml: field 'data' differs"):
        study.reuse_shared(other_data, source, tmp_path / "x" / "seed100")
    other_sft = _args(study, "--tune", "--seeds", "100", "--presets", "mentor", "--sft-steps", "10")
    with pytest.raises(SystemExit, match=r"field 'train.sft' differs"):
        study.reuse_shared(other_sft, source, tmp_path / "y" / "seed100")
    other_seed = _args(study, "--tune", "--seeds", "101", "--presets", "mentor")
    with pytest.raises(SystemExit, match=r"field 'seed' differs"):
        study.reuse_shared(other_seed, source, tmp_path / "z" / "seed101")
    other_eval = _args(study, "--tune", "--seeds", "100", "--presets", "mentor", "--limit", "30")
    with pytest.raises(SystemExit, match=r"field 'eval' differs"):
        study.reuse_shared(other_eval, source, tmp_path / "e" / "seed100")
    (source / "eval" / "sft" / "synthetic_tune.json").unlink()  # its SFT evaluation unfinished: not ours to write into
    with pytest.raises(SystemExit, match=r"its SFT evaluation on synthetic:tune is not done"):
        study.reuse_shared(variant, source, tmp_path / "w" / "seed100")
    assert not any((tmp_path / d).exists() for d in "xyzew")  # nothing linked when refused


def _probe_run(steps, ids, correct, calls, invalid, aligned):
    """One seed's probe records (probe.jsonl rows) with per-item lists given per step by functions."""
    return [{"step": s, "ids": ids, "correct": [correct(s, i) for i in range(len(ids))],
             "calls": [calls(s, i) for i in range(len(ids))], "invalid": [invalid(s, i) for i in range(len(ids))],
             "aligned": [aligned(s, i) for i in range(len(ids))],
             "accuracy": 0.0, "invalid_call_rate": 0.0, "tool_usage_rate": 0.0, "alignment": 0.0} for s in steps]


def test_regime_checks_follow_the_probe_and_the_reward_variance(study):
    """Study 3's checks: a sparse preset whose steps never vary and whose probe stays at 0 holds
    both of its claims; a mentor preset whose probe goes from invalid calls to valid aligned ones
    and right answers holds its claims; the direction reversed fails them."""
    ids = [f"p{i}" for i in range(32)]
    steps = list(range(0, 41, 5))
    dead = [_probe_run(steps, ids, lambda s, i: 0, lambda s, i: 1, lambda s, i: 1, lambda s, i: 0) for _ in range(3)]
    # mentor: from step 20 on, items with i % 4 != 0 call validly and align; i % 2 == 0 correct
    learnt = [_probe_run(steps, ids, lambda s, i: int(s >= 20 and i % 2 == 0), lambda s, i: 1,
                         lambda s, i: int(s < 20 or i % 4 == 0), lambda s, i: int(s >= 20 and i % 4 != 0)) for _ in range(3)]
    flat_std = [[{"step": s, "reward_std": 0.0} for s in range(1, 41)] for _ in range(3)]
    varied_std = [[{"step": s, "reward_std": 0.3} for s in range(1, 41)] for _ in range(3)]
    methods = {"vanilla": {"in": [0.0] * 60, "in_ids": ids[:30] * 2},
               "sparse": {"probes": dead, "curves": flat_std, "in": [0.0] * 90, "in_ids": [f"t{i}" for i in range(30)] * 3},
               "mentor": {"probes": learnt, "curves": varied_std, "in": [1.0, 0.0] * 45, "in_ids": [f"t{i}" for i in range(30)] * 3}}
    rows, numbers = study.regime_checks({"methods": methods}, ["sparse", "mentor"])
    got = {claim: v for claim, _, v in rows}
    assert got["sparse: reward variance ~0 (share of steps with any; upper bound <= 0.1)"] == "holds"
    assert got["sparse: probe accuracy not above its start"] == "holds (no rise shown)"
    assert got["mentor (has R_v): probe invalid-call rate falls"] == "holds"
    assert numbers["probe_invalid_change_mentor"][0] == pytest.approx(0.25 - 1.0)
    assert got["mentor (rewards alignment): probe tool usage rate rises"] == "not shown (CI includes 0)"  # always 1
    assert got["mentor (rewards alignment): probe alignment rises"] == "holds"
    assert got["mentor > sparse, in-domain accuracy (final evaluation)"] == "holds"
    assert got["mentor > sparse, probe accuracy (last quarter)"] == "holds"
    assert got["mentor < sparse, probe invalid call rate (last quarter)"] == "holds"
    assert got["mentor > sparse, probe alignment (last quarter)"] == "holds"
    assert got["mentor > sparse, probe tool usage rate (last quarter)"] == "not shown (CI includes 0)"  # both 1
    table = {r[0]: r for r in study.probe_table({"methods": methods}, ["sparse", "mentor"])}
    assert table["mentor"][2:] == ["0.000 -> 0.500", "1.000 -> 0.250", "1.000 -> 1.000", "0.000 -> 0.750"]
    # reversed: sparse varies and rises on the probe, mentor's probe gets worse
    methods["sparse"].update(probes=learnt, curves=varied_std)
    # (step s shows what the learnt run showed at step 40 - s)
    methods["mentor"]["probes"] = [sorted(({**r, "step": 40 - r["step"]} for r in run), key=lambda r: r["step"]) for run in learnt]
    rows, _ = study.regime_checks({"methods": methods}, ["sparse", "mentor"])
    got = {claim: v for claim, _, v in rows}
    assert got["sparse: reward variance ~0 (share of steps with any; upper bound <= 0.1)"] == "does not hold"
    assert got["sparse: probe accuracy not above its start"] == "does not hold (it rose)"
    assert got["mentor (has R_v): probe invalid-call rate falls"] == "does not hold"
    assert got["mentor > sparse, probe accuracy (last quarter)"] == "does not hold"


def test_share_interval_is_wilson_and_shrinks_with_the_steps(study):
    assert study.share_ci([False] * 6)[2] == pytest.approx(0.390, abs=0.002)  # 0 of 6: not evidence of ~0
    p, lo, hi = study.share_ci([False] * 120)
    assert p == 0 and lo == 0 and hi == pytest.approx(0.031, abs=0.001)
    p, lo, hi = study.share_ci([True] * 30 + [False] * 90)
    assert p == 0.25 and lo == pytest.approx(0.181, abs=0.002) and hi == pytest.approx(0.334, abs=0.002)


def test_every_protocol_knob_is_a_documented_option(study, capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--rl-init", "--probe-every", "--probe-limit", "--save-steps", "--questions-per-step", "--seeds",
                 "--presets", "--sft-steps", "--rl-steps", "--generations", "--max-completion-length", "--rl-lr",
                 "--temperature", "--beta", "--limit", "--jobs", "--n-train", "--unit-order"):
        assert flag in text
    args = study.parse_args(["--rl-init", "base", "--presets", "sparse", "validation", "f1", "mentor", "--seeds", "5", "7",
                             "--probe-every", "5", "--save-steps", "5", "--questions-per-step", "4"])
    assert study.shared_stages(args) == ("data", "teach", "vanilla") and study.start_method(args) == "vanilla"
    cfg = study.study_config(args, 7)
    assert cfg["rl_init"] == "base" and cfg["seed"] == 7
    assert set(cfg["train"]["methods"]) == {"sparse", "validation", "f1", "mentor"}
    rl = cfg["train"]["rl"]
    assert rl["per_device_train_batch_size"] == 4 and rl["gradient_accumulation_steps"] == 4 and rl["save_steps"] == 5
    assert rl["probe"] == {"benchmark": "synthetic:probe", "every": 5, "limit": 32, "max_turns": 5, "max_new_tokens": 64}
    with pytest.raises(SystemExit):
        study.parse_args(["--rl-init", "base", "--shared-from", "runs/x/seed0"])


def test_unit_order_by_seed_keeps_the_presets_level_at_any_cut(study):
    by_preset = study.unit_order(["sparse", "mentor"], [0, 1, 2])
    assert by_preset == [(0, "sparse"), (1, "sparse"), (2, "sparse"), (0, "mentor"), (1, "mentor"), (2, "mentor")]
    by_seed = study.unit_order(["sparse", "mentor"], [0, 1, 2], "seed")
    assert sorted(by_seed) == sorted(by_preset)
    for cut in range(len(by_seed) + 1):
        done = [p for _, p in by_seed[:cut]]
        assert abs(done.count("sparse") - done.count("mentor")) <= 1
    assert study.parse_args([]).unit_order == "preset"
