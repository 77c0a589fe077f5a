"""scripts/gpu-smoke: its CPU fallback (``--cpu``) runs every part here -- mentor's SFT, two GRPO steps
and an evaluation of a tiny random Qwen2 on the CPU -- and the script's own PASS/FAIL lines and exit
status say so; without a GPU the default (CUDA) run fails its device part and runs nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mentor.smoke import PARTS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-smoke"
LINE = re.compile(r"^\[gpu-smoke\] (\S+)\s+(PASS|FAIL|SKIP)\s+([\d.]+) s  (.*)$")


def smoke(*args: str, out: Path) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the script (with this interpreter, which imports mentor); its exit status, each part's
    (status, detail) parsed from its output, and the output."""
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    parts = {m[1]: (m[2], m[4]) for m in map(LINE.match, proc.stdout.splitlines()) if m}
    return proc.returncode, parts, proc.stdout + proc.stderr


@pytest.mark.slow
def test_gpu_smoke_cpu_passes_every_part(tmp_path):
    code, parts, output = smoke("--cpu", out=tmp_path / "smoke")
    assert list(parts) == list(PARTS), output
    assert all(status == "PASS" for status, _ in parts.values()) and code == 0, output
    assert "PASSED: all 7 parts" in output
    # what the parts did, in their own words and files
    assert "2 optimizer steps on cpu" in parts["sft"][1] and "adapter tensors moved" in parts["sft"][1]
    assert "mentor's completion-only path" in parts["grpo"][1] and "shared prompt forward" in parts["grpo"][1]
    record = json.loads((tmp_path / "smoke" / "smoke.json").read_text())
    assert record["ok"] and [p["status"] for p in record["parts"]] == ["PASS"] * len(PARTS)
    metrics = (tmp_path / "smoke" / "grpo" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2  # two GRPO optimizer steps, as mentor's recorder logged them
    assert json.loads((tmp_path / "smoke" / "grpo" / "run.json").read_text())["speed_options"]["lora_grpo"] is True
    result = json.loads((tmp_path / "smoke" / "eval" / "math.json").read_text())
    assert result["n"] == 2 and result["kind"] == "math"


def test_gpu_smoke_default_run_needs_a_gpu(tmp_path):
    """Without ``--cpu``: here (no GPU) the device part fails, naming the fallback, and nothing else
    runs; on a machine with a GPU every part passes on it."""
    import torch

    code, parts, output = smoke(out=tmp_path / "smoke")
    assert list(parts) == list(PARTS) and parts["packages"][0] == "PASS", output
    if torch.cuda.is_available():
        assert code == 0 and all(status == "PASS" for status, _ in parts.values()), output
        assert torch.cuda.get_device_name(0) in parts["device"][1]
        return
    assert code == 1 and parts["device"][0] == "FAIL", output
    assert "no CUDA device" in parts["device"][1] and "--cpu" in parts["device"][1]
    assert all(parts[p][0] == "SKIP" for p in PARTS[2:]), output
    assert "FAILED: device; not run: " in output
