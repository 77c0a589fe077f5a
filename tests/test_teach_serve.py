"""End to end: `mentor teach --teacher openai` against a real `transformers serve` process on
loopback running the bundled model. Its answers are mostly wrong: this checks the protocol
(tools= schemas, replies parsed, tool loop bounded by --max-turns), the filtering, the record
format and the resume -- not the teacher's skill."""

import json
import os
import subprocess
import sys
import time

import pytest

from mentor.io import read_jsonl
from mentor.references import iter_references
from mentor.teacher import rejected_path, summary_path

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _ids(p):
    return [o["id"] for _, o in read_jsonl(p)] if p.exists() else []


def test_openai_backend_against_transformers_serve(tmp_path, default_model_path):
    from mentor.generation.server import transformers_serve

    with transformers_serve("smollm2-135m", startup_timeout=120, log=tmp_path / "serve.log") as url:
        base = [sys.executable, "-m", "mentor.cli", "teach", "--teacher", "openai", "--base-url", url,
                "--dataset", "synthetic", "--max-tokens", "16", "--max-turns", "2", "--temperature", "0",
                "--concurrency", "2", "--retries", "1", "--timeout", "100", "--no-progress"]
        out, kept_all = tmp_path / "refs.jsonl", tmp_path / "all.jsonl"
        t0 = time.time()
        r = subprocess.run([*base, "--n", "2", "--out", str(kept_all), "--keep-all"],
                           capture_output=True, text=True, env=ENV, timeout=150)
        assert r.returncode == 0, r.stderr
        refs = list(iter_references(kept_all))
        assert sorted(x.id for x in refs) == ["syn-train-s0-00000", "syn-train-s0-00001"]
        for ref in refs:
            assert ref.teacher["backend"] == "openai" and ref.teacher["model"] == default_model_path
            assert ref.teacher["max_tokens"] == 16 and ref.teacher["base_url"] == url
            assert ref.messages and ref.messages[0]["role"] == "assistant"
            assert sum(m["role"] == "assistant" for m in ref.messages) <= 2  # --max-turns bounds the loop
            assert ref.error is None or ref.meta["failure"] in ("no_answer",)  # answered or recorded, not dropped
            assert ref.meta["tokens"] > 0
        # resume: one more question costs one more conversation; nothing is redone or duplicated
        r = subprocess.run([*base, "--n", "3", "--out", str(kept_all), "--keep-all"],
                           capture_output=True, text=True, env=ENV, timeout=150)
        assert r.returncode == 0, r.stderr
        summary = json.loads(summary_path(kept_all).read_text())["summary"]
        assert summary["skipped"] == 2 and summary["done"] == 1
        assert sorted(_ids(kept_all)) == [f"syn-train-s0-0000{i}" for i in range(3)]
        # default filter: only correct ones in OUT, the rest in OUT.rejected.jsonl, all counted
        r = subprocess.run([*base, "--n", "1", "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=150)
        assert r.returncode == 0, r.stderr
        kept, rejected = _ids(out), _ids(rejected_path(out))
        assert len(kept) + len(rejected) == 1
        assert all(o["correct"] for _, o in read_jsonl(out)) if kept else True
        assert "kept" in r.stdout and "no answer" in r.stdout
        assert time.time() - t0 < 300


def test_hf_backend_with_the_bundled_model(tmp_path, default_model_path):
    """`--teacher hf` runs HFGenerator + mentor.generation.rollout on the bundled model (model
    option omitted -> smollm2-135m) and writes well-formed records."""
    out = tmp_path / "hf.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "mentor.cli", "teach", "--teacher", "hf", "--dataset", "synthetic", "--split", "ood",
         "--n", "3", "--max-tokens", "24", "--max-turns", "2", "--temperature", "0", "--batch-size", "3",
         "--keep-all", "--no-progress", "--out", str(out)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    refs = list(iter_references(out))
    assert len(refs) == 3 and {x.teacher["backend"] for x in refs} == {"hf"}
    assert refs[0].teacher["model_path"] == default_model_path and refs[0].teacher["max_tokens"] == 24
    assert all(x.messages and x.meta["tokens"] > 0 and x.meta["split"] == "ood" for x in refs)
