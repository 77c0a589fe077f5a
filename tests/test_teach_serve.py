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
        # the same (greedy) question as in the keep-all run: kept exactly when it was correct there
        was_correct = {o["id"]: o["correct"] for _, o in read_jsonl(kept_all)}["syn-train-s0-00000"]
        assert (kept, rejected) == ((["syn-train-s0-00000"], []) if was_correct else ([], ["syn-train-s0-00000"]))
        assert not out.exists() or all(o["correct"] for _, o in read_jsonl(out))  # nothing kept: no file written
        assert not rejected_path(out).exists() or not any(o["correct"] for _, o in read_jsonl(rejected_path(out)))
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


class _ScriptedOpenAI:
    """An OpenAI-compatible chat endpoint on loopback with known answers: every question gets an
    ``add`` tool call first; then the gold answer for even-numbered questions, a wrong one for odd."""

    def __init__(self, answers: dict[str, tuple[int, str]]):
        import http.server
        import threading

        self.answers, self.requests = answers, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(req)
                user = next(m["content"] for m in req["messages"] if m["role"] == "user")
                index, gold = next(v for q, v in outer.answers.items() if q in user)
                message = {"role": "assistant", "content": None}
                if not any(m["role"] == "tool" for m in req["messages"]):
                    message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
                        "name": "add", "arguments": json.dumps({"firstNumber": 1, "secondNumber": 2})}}]
                else:
                    message["content"] = f"The answer is \\boxed{{{gold if index % 2 == 0 else '-1'}}}."
                self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
                            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_teach_keeps_the_correct_references_and_rejects_the_rest(tmp_path):
    """Against an endpoint whose answers are known: exactly the correct trajectories are kept
    (with the executed tool call), the wrong ones go to OUT.rejected.jsonl, and nothing is lost."""
    from mentor.data.datasets import load_questions

    qs = load_questions("synthetic", split="train", n=4)
    answers = {q.question: (i, q.answer) for i, q in enumerate(qs)}
    out = tmp_path / "refs.jsonl"
    with _ScriptedOpenAI(answers) as url:
        r = subprocess.run([sys.executable, "-m", "mentor.cli", "teach", "--teacher", "openai", "--base-url", url,
                            "--dataset", "synthetic", "--n", "4", "--max-turns", "3", "--retries", "0",
                            "--no-progress", "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=150)
    assert r.returncode == 0, r.stderr
    # (records are appended as conversations finish: in any order)
    assert sorted(_ids(out)) == [qs[0].id, qs[2].id] and sorted(_ids(rejected_path(out))) == [qs[1].id, qs[3].id]
    kept = list(iter_references(out))
    for ref in kept:
        assert ref.correct and ref.teacher_answer == ref.answer and ref.teacher_tools == ["add"]
        tool = [m for m in ref.messages if m["role"] == "tool"]
        assert len(tool) == 1 and tool[0]["content"] == "3"  # mentor executed the call
    assert all(not o["correct"] and o["teacher_answer"] == "-1" for _, o in read_jsonl(rejected_path(out)))
    summary = json.loads(summary_path(out).read_text())["summary"]
    assert summary["done"] == 4
