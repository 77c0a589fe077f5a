"""`mentor train sft|grpo`, `mentor eval` and `mentor teach` show what `mentor run`'s stages show
(``mentor.display.command_stage``): one row with the stage's own measure, the libraries' chatter
in a log file in the output directory, plain lines without a TTY, errors with the log's path.

Every command runs as a real subprocess (stdout and stderr are pipes, i.e. no TTY) on real inputs:
synthetic questions, references written by the program teacher, the bundled
``smollm2-135m-compact`` student, 1-2 steps / 2 items (slow-marked where a model loads). One test
drives ``mentor train sft`` in a pseudo-terminal (pexpect) for the rich display.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mentor.data import load_questions
from mentor.teacher import ProgramTeacher, generate_references

MENTOR = [sys.executable, "-m", "mentor.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
MODEL = "smollm2-135m-compact"
#: what the libraries print that must not reach the terminal (TRL's per-step dicts, load/save and
#: map bars, warnings)
CHATTER = ("{'loss'", "'grad_norm'", "Loading weights", "Writing model shards", "Warning", "%|")


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "150"}


def _mentor(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([*MENTOR, *args], capture_output=True, text=True, env=_env(), timeout=timeout)


def _no_chatter(r: subprocess.CompletedProcess) -> None:
    terminal = r.stdout + r.stderr
    for chatter in CHATTER:
        assert chatter not in terminal, (chatter, terminal[-3000:])


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    """Six synthetic questions answered by the program teacher, as `mentor teach` writes them."""
    out = tmp_path_factory.mktemp("refs") / "refs.jsonl"
    generate_references(load_questions("synthetic", "train", n=6, seed=0), ProgramTeacher(), out, progress=False)
    return out


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Path:
    """The smallest training budget: 2 rollouts of 24 tokens, one tool round, batch 2."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 0,
        "grpo": {"num_generations": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
                 "max_completion_length": 24, "max_tool_calling_iterations": 1, "logging_steps": 1, "save_steps": 100},
        "sft": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 100,
                "gradient_checkpointing": False, "activation_checkpointing": False},
    }))
    return path


# ----------------------------------------------------------------------------- fast: no model


def test_teach_without_a_tty_prints_plain_lines_and_keeps_a_log(tmp_path):
    out = tmp_path / "refs.jsonl"
    r = _mentor("teach", "--n", "20", "--out", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    # no TTY: plain lines (the first and the last at least), no live display's escape codes
    assert lines[0].startswith("[teach] questions 1/20") and "[teach] questions 20/20" in r.stderr
    assert "\x1b[" not in r.stderr and "━" not in r.stderr
    assert "kept" in r.stdout and len(out.read_text().splitlines()) == 20
    assert Path(f"{out}.log").exists()


def test_teach_bad_input_prints_the_error_and_the_log_path(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": 3}\n')
    out = tmp_path / "refs.jsonl"
    r = _mentor("teach", "--dataset", str(bad), "--out", str(out), timeout=120)
    assert r.returncode == 2
    assert "q.jsonl, line 2" in r.stderr and f"(full log: {out}.log)" in r.stderr
    assert "Traceback" not in r.stderr


def test_eval_bad_benchmark_prints_the_error_and_the_log_path(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "", "answer": "3"}\n')
    out = tmp_path / "r.json"
    r = _mentor("eval", "--benchmark", str(bad), "--out", str(out), "--no-progress", timeout=300)
    assert r.returncode == 2
    assert "bad.jsonl, line 2" in r.stderr and f"(full log: {out}.log)" in r.stderr
    assert not out.exists()


def test_train_bad_references_prints_the_error_and_the_log_path(tmp_path, cfg):
    bad = tmp_path / "refs.jsonl"
    bad.write_text('{"id": "q0", "question": "What is 2 + 2?"}\n')
    out = tmp_path / "sft"
    r = _mentor("train", "sft", "--references", str(bad), "--output-dir", str(out), "--config", str(cfg),
                "--model", MODEL, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "refs.jsonl" in r.stderr and f"(full log: {out / 'logs' / 'sft.log'})" in r.stderr
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- slow: the bundled model


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_sft_without_a_tty_shows_the_loss_and_logs_the_chatter(refs, cfg, tmp_path):
    out = tmp_path / "sft"
    r = _mentor("train", "sft", "--references", str(refs), "--output-dir", str(out), "--config", str(cfg),
                "--model", MODEL, "--max-steps", "2", timeout=880)
    assert r.returncode == 0, r.stderr[-3000:]
    _no_chatter(r)
    assert re.search(r"^\[sft\] steps 2/2  loss \d+\.\d{3}  \d+\.\d s/step$", r.stderr, re.M), r.stderr
    assert "run ETA" not in r.stderr and f"trained model saved to {out / 'final'}" in r.stderr
    log = (out / "logs" / "sft.log").read_text()
    assert "'loss'" in log and "Loading weights" in log and "Writing model shards" in log


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_grpo_no_progress_shows_reward_components_and_tool_rates(refs, cfg, tmp_path):
    out = tmp_path / "grpo"
    r = _mentor("train", "grpo", "--references", str(refs), "--output-dir", str(out), "--config", str(cfg),
                "--model", MODEL, "--max-steps", "1", "--no-progress", timeout=880)
    assert r.returncode == 0, r.stderr[-3000:]
    _no_chatter(r)
    line = next(x for x in r.stderr.splitlines() if x.startswith("[grpo] steps 1/1"))
    for measure in ("reward", "correctness", "alignment", "validity", "invalid", "tool use", "s/step"):
        assert f"  {measure} " in line or line.endswith(measure), (measure, line)
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"reward {step['reward']:.3f}" in line
    log = (out / "logs" / "grpo.log").read_text()
    assert "'reward'" in log and "Loading weights" in log


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_without_a_tty_shows_the_accuracy_so_far_and_logs_the_chatter(tmp_path):
    out = tmp_path / "r.json"
    r = _mentor("eval", "--benchmark", "synthetic:test", "--limit", "2", "--max-new-tokens", "24", "--max-turns", "2",
                "--model", MODEL, "--out", str(out), timeout=880)
    assert r.returncode == 0, r.stderr[-3000:]
    _no_chatter(r)
    res = json.loads(out.read_text())
    assert f"[eval] items 2/2  accuracy {res['accuracy']:.3f}" in r.stderr
    assert f"[eval] synthetic:test (math, tools=on): accuracy {res['accuracy']:.4f} on 2 items" in r.stderr
    assert "Loading weights" in Path(f"{out}.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_teach_hf_backend_keeps_the_model_load_in_the_log(tmp_path):
    out = tmp_path / "refs.jsonl"
    r = _mentor("teach", "--teacher", "hf", "--model", MODEL, "--n", "2", "--max-tokens", "24", "--max-turns", "2",
                "--out", str(out), timeout=880)
    assert r.returncode == 0, r.stderr[-3000:]
    _no_chatter(r)
    assert "[teach] questions 2/2" in r.stderr and "done this run" in r.stdout
    assert "Loading weights" in Path(f"{out}.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_sft_in_a_terminal_shows_one_live_row(refs, cfg, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    out = tmp_path / "sft"
    child = pexpect.spawn(MENTOR[0], [*MENTOR[1:], "train", "sft", "--references", str(refs), "--output-dir", str(out),
                                      "--config", str(cfg), "--model", MODEL, "--max-steps", "1"],
                          env=_env(), encoding="utf-8", timeout=870, dimensions=(40, 150))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect_exact("trained model saved to")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    raw = transcript.getvalue()
    assert child.exitstatus == 0, raw[-3000:]
    assert "\x1b[" in raw  # a live display, redrawn in place
    text = ANSI.sub("", raw)
    for chatter in CHATTER:
        assert chatter not in text, (chatter, text[-3000:])
    assert re.search(r"sft ━+ 1/1 loss \d+\.\d{3}  \d+\.\d s/step", text), text[-3000:]
    assert "[sft] steps" not in text  # no plain lines on a terminal
    assert "'loss'" in (out / "logs" / "sft.log").read_text()
