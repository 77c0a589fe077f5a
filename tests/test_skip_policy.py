"""The suite's skip policy: under MENTOR_STRICT_SKIPS=1 (what scripts/test sets) a skip that is
not in conftest.ALLOWED_SKIPS fails the run; without it a skip stays a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(tmp_path, strict: str | None, allowed: str = "{}"):
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    conftest = (TESTS / "conftest.py").read_text().replace(
        "ALLOWED_SKIPS: dict[str, str] = {}", f"ALLOWED_SKIPS: dict[str, str] = {allowed}")
    (d / "conftest.py").write_text(conftest)
    (d / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    assert True\n\n"
        "def test_skips():\n    pytest.skip('optional thing missing')\n\n"
        "def test_needs_data(shared_benchmarks_missing):\n    pass\n\n"
        "@pytest.fixture\ndef shared_benchmarks_missing():\n    pytest.skip('benchmark data not found')\n\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xfail():\n    assert False\n")
    env = {k: v for k, v in os.environ.items() if k != "MENTOR_STRICT_SKIPS"}
    if strict is not None:
        env["MENTOR_STRICT_SKIPS"] = strict
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(d)],
                          cwd=d, env=env, capture_output=True, text=True, timeout=120)


def test_unexpected_skips_fail_under_strict_mode(tmp_path):
    r = _run(tmp_path, "1")
    assert r.returncode == 1, r.stdout
    assert "unexpected skip under MENTOR_STRICT_SKIPS=1: optional thing missing" in r.stdout
    assert "unexpected skip under MENTOR_STRICT_SKIPS=1: benchmark data not found" in r.stdout  # fixture skips too
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in r.stdout, r.stdout


def test_skips_stay_skips_without_strict_mode(tmp_path):
    r = _run(tmp_path, None)
    assert r.returncode == 0 and "1 passed, 2 skipped, 1 xfailed" in r.stdout, r.stdout


def test_allowed_skips_pass_under_strict_mode(tmp_path):
    r = _run(tmp_path, "1", allowed="{'test_x.py::test_skips': 'reason', 'test_x.py::test_needs_data': 'reason'}")
    assert r.returncode == 0 and "1 passed, 2 skipped, 1 xfailed" in r.stdout, r.stdout


def test_scripts_test_is_strict():
    text = (TESTS.parent / "scripts" / "test").read_text()
    assert 'export MENTOR_STRICT_SKIPS="${MENTOR_STRICT_SKIPS-1}"' in text
    assert shutil.which("bash")
