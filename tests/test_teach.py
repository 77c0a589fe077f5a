"""mentor teach: program teacher, resume after SIGKILL, bad input, and the OpenAI-compatible
tool loop against a scripted chat server on loopback (deterministic: structured tool calls,
``<tool_call>`` text, thinking output, 429/500 retries, hangs, a model that never answers).
The end-to-end test against a real ``transformers serve`` is in test_teach_serve.py."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import loopback_server, openai_app

from mentor.io import read_jsonl
from mentor.references import load_references
from mentor.teacher import ProgramTeacher, generate_references, rejected_path, summary_path
from mentor.data import load_questions

MENTOR = [sys.executable, "-m", "mentor.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def ids(path):
    return [obj["id"] for _, obj in read_jsonl(path)] if Path(path).exists() else []


def test_program_teacher_writes_n_correct_references_fast(tmp_path):
    out = tmp_path / "refs.jsonl"
    t0 = time.time()
    r = subprocess.run(
        [*MENTOR, "teach", "--teacher", "program", "--dataset", "synthetic", "--split", "train", "--n", "200",
         "--seed", "0", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert time.time() - t0 < 30
    refs = load_references(out)
    assert len(refs) == 200 and len({x.id for x in refs}) == 200
    for ref in refs:
        assert ref.correct and ref.teacher["backend"] == "program"
        traj = ref.trajectory()
        assert traj.all_calls_valid and traj.final_answer == ref.teacher_answer
        assert 1 <= len(ref.teacher_tools) <= 4
        assert [m["role"] for m in ref.messages][-1] == "assistant" and ref.messages[0]["role"] == "assistant"
    qs = {q.id: q for q in load_questions("synthetic", n=200)}
    assert all(ref.teacher_tools == qs[ref.id].meta["tools"] for ref in refs)
    assert "kept" in r.stdout and "200" in r.stdout
    meta = json.loads(summary_path(out).read_text())
    assert meta["summary"]["kept"] == 200 and meta["seed"] == 0 and "versions" in meta


def test_program_teacher_on_ood_split_and_rejects_planless_questions(tmp_path):
    s = generate_references(load_questions("synthetic", "ood", n=30), ProgramTeacher(), tmp_path / "o.jsonl", progress=False)
    assert s.kept == 30
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    r = subprocess.run([*MENTOR, "teach", "--dataset", str(f), "--out", str(tmp_path / "x.jsonl")],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2 and "solution plan" in r.stderr


def test_sigkill_then_resume_gives_the_uninterrupted_id_set(tmp_path):
    n = 3000
    full, killed = tmp_path / "full.jsonl", tmp_path / "killed.jsonl"
    cmd = [*MENTOR, "teach", "--teacher", "program", "--n", str(n), "--no-progress", "--out"]
    proc = subprocess.Popen([*cmd, str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(ids(killed)) < 40:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = ids(killed)
    assert 40 <= len(partial) < n, "the run finished before it could be killed"
    with killed.open("ab") as f:  # what a kill in the middle of a write could leave
        f.write(b'{"id": "syn-train-s0-99999", "question": "torn')
    subprocess.run([*cmd, str(killed)], env=ENV, check=True, capture_output=True, timeout=120)
    subprocess.run([*cmd, str(full)], env=ENV, check=True, capture_output=True, timeout=120)
    resumed = ids(killed)
    assert len(resumed) == len(set(resumed)) == n
    assert set(resumed) == set(ids(full))
    assert resumed[: len(partial)] == partial  # earlier lines untouched
    meta = json.loads(summary_path(killed).read_text())["summary"]
    assert meta["skipped"] == len(partial) and meta["done"] == n - len(partial)


def test_bad_dataset_line_is_a_clear_error(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"problem": "p", "answer": "1"}\n{"problem": "q"}\n')
    r = subprocess.run([*MENTOR, "teach", "--teacher", "openai", "--dataset", str(f), "--out", str(tmp_path / "o.jsonl")],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2
    assert "bad.jsonl, line 2" in r.stderr and "answer" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_a_clear_error_not_a_hang(tmp_path):
    port = _free_port()  # nothing listens there
    t0 = time.time()
    r = subprocess.run(
        [*MENTOR, "teach", "--teacher", "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "x",
         "--n", "3", "--retries", "1", "--backoff", "0.05", "--out", str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, env=ENV, timeout=60,
    )
    assert r.returncode == 2 and "cannot reach" in r.stderr and f"127.0.0.1:{port}" in r.stderr
    assert time.time() - t0 < 30


# ----------------------------------------------------------- scripted OpenAI-compatible server

_NUMS = re.compile(r"What is (\d+) times (\d+)\?")


class Script:
    """Behaviour per model name; counts requests."""

    def __init__(self):
        self.requests = 0
        self.failures_left: dict[str, int] = {}
        self.lock = threading.Lock()
        self.seen_tools: list[int] = []


def _reply(content="", tool_calls=None, reasoning=None):
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if reasoning:
        msg["reasoning_content"] = reasoning
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": msg}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 7, "total_tokens": 8},
    }


def _app(script: Script):
    from fastapi.responses import JSONResponse

    async def chat(body: dict):
        import asyncio

        with script.lock:
            script.requests += 1
            script.seen_tools.append(len(body.get("tools") or []))
        model, msgs = body["model"], body["messages"]
        user = next(m for m in msgs if m["role"] == "user")["content"]
        a, b = map(int, _NUMS.search(user).groups())
        tool_msgs = [m for m in msgs if m["role"] == "tool"]
        if model.startswith("flaky"):
            with script.lock:
                left = script.failures_left.setdefault(msgs[0]["content"], 2)
                script.failures_left[msgs[0]["content"]] = left - 1
            if left > 0:
                return JSONResponse({"error": "busy"}, status_code=429 if left == 2 else 503)
        if model == "hang":
            await asyncio.sleep(30)
        if model == "bad":
            return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
        if model == "loop":  # never answers: calls a tool every turn
            return _reply(tool_calls=[{"id": f"c{len(tool_msgs)}", "type": "function",
                                       "function": {"name": "add", "arguments": json.dumps({"firstNumber": 1, "secondNumber": 2})}}])
        if tool_msgs:  # answer from the tool result; "wrong" models answer off by one
            result = int(tool_msgs[-1]["content"])
            think = "<think>maybe \\boxed{0}</think>" if model == "think" else ""
            return _reply(f"{think}The product is \\boxed{{{result + (model == 'wrong')}}}.",
                          reasoning="checking \\boxed{1}" if model == "think" else None)
        args = {"firstNumber": a, "secondNumber": b}
        if model == "text":
            return _reply(f'Let me compute.\n<tool_call>{json.dumps({"name": "multiply", "arguments": args})}</tool_call>')
        return _reply("Computing.", tool_calls=[{"id": "call_x", "type": "function",
                                                 "function": {"name": "multiply", "arguments": json.dumps(args)}}])

    return openai_app(chat)


@pytest.fixture(scope="module")
def scripted_server():
    script = Script()
    with loopback_server(_app(script)) as port:
        yield f"http://127.0.0.1:{port}/v1", script


@pytest.fixture
def product_questions(tmp_path):
    f = tmp_path / "products.jsonl"
    rows = [{"id": f"p{i}", "question": f"What is {a} times {b}?", "answer": str(a * b)}
            for i, (a, b) in enumerate([(123, 45), (678, 90), (2345, 67), (89, 1011), (555, 444)])]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _teach(base_url, model, dataset, out, *extra):
    return subprocess.run(
        [*MENTOR, "teach", "--teacher", "openai", "--base-url", base_url, "--model", model, "--dataset", str(dataset),
         "--out", str(out), "--no-progress", "--retries", "2", "--backoff", "0.05", "--temperature", "0", *extra],
        capture_output=True, text=True, env=ENV, timeout=120,
    )


@pytest.mark.parametrize("model", ["structured", "text", "think", "flaky"])
def test_openai_tool_loop_structured_text_thinking_and_retries(scripted_server, product_questions, tmp_path, model):
    url, script = scripted_server
    out = tmp_path / "refs.jsonl"
    r = _teach(url, model, product_questions, out, "--concurrency", "3")
    assert r.returncode == 0, r.stderr + r.stdout
    refs = load_references(out)
    assert sorted(x.id for x in refs) == ["p0", "p1", "p2", "p3", "p4"]
    for ref in refs:
        assert ref.correct and ref.teacher_tools == ["multiply"] and ref.teacher["backend"] == "openai"
        assert ref.teacher["model"] == model and ref.teacher["temperature"] == 0
        roles = [m["role"] for m in ref.messages]
        assert roles == ["assistant", "tool", "assistant"]
        assert ref.messages[1]["content"] == ref.answer  # the project's executor ran the call
        assert ref.messages[0]["tool_calls"][0]["function"]["arguments"]["firstNumber"] > 0
        if model == "think":  # reasoning kept, ignored for the answer
            assert "<think>" in ref.messages[2]["content"] and ref.messages[2]["reasoning_content"]
    assert 12 in script.seen_tools  # the 12 math tool schemas went out with tools=
    if model == "flaky":
        stats = json.loads(summary_path(out).read_text())["endpoint_stats"]
        assert stats["retried"] == 10  # two failures (429, 503) per question, then success


def test_openai_filtering_keep_all_and_resume(scripted_server, product_questions, tmp_path):
    url, script = scripted_server
    out = tmp_path / "wrong.jsonl"
    r = _teach(url, "wrong", product_questions, out, "--n", "3")
    assert r.returncode == 0
    assert ids(out) == [] and sorted(ids(rejected_path(out))) == ["p0", "p1", "p2"]
    before = script.requests
    r = _teach(url, "wrong", product_questions, out)  # resume: only p3, p4 are asked
    assert script.requests - before == 4  # 2 questions x 2 turns
    assert sorted(ids(rejected_path(out))) == ["p0", "p1", "p2", "p3", "p4"]
    rec = next(obj for _, obj in read_jsonl(rejected_path(out)))
    assert rec["correct"] is False and rec["error"] is None and rec["teacher_answer"] is not None
    allout = tmp_path / "all.jsonl"
    _teach(url, "wrong", product_questions, allout, "--keep-all")
    assert len(ids(allout)) == 5 and not ids(rejected_path(allout))
    assert "kept" in r.stdout


def test_model_that_never_answers_and_endpoint_failures_are_recorded(scripted_server, product_questions, tmp_path):
    url, _ = scripted_server
    out = tmp_path / "loop.jsonl"
    r = _teach(url, "loop", product_questions, out, "--max-turns", "3", "--n", "2")
    assert r.returncode == 0
    recs = [obj for _, obj in read_jsonl(rejected_path(out))]
    assert len(recs) == 2 and all(x["meta"]["failure"] == "no_answer" and x["meta"]["truncated"] for x in recs)
    assert all(len(x["teacher_tools"]) == 3 and "max_turns" in x["error"] for x in recs)

    hang = tmp_path / "hang.jsonl"
    t0 = time.time()
    r = _teach(url, "hang", product_questions, hang, "--timeout", "0.5", "--retries", "1", "--n", "2")
    assert time.time() - t0 < 40
    assert r.returncode == 1 and "every request failed" in r.stderr  # all failed -> non-zero exit
    recs = [obj for _, obj in read_jsonl(rejected_path(hang))]
    assert len(recs) == 2 and all(x["meta"]["failure"] == "endpoint" and "Timeout" in x["error"] for x in recs)
    assert all(x["correct"] is False and x["messages"] == [] for x in recs)

    bad = tmp_path / "bad.jsonl"
    r = _teach(url, "bad", product_questions, bad, "--n", "1")
    rec = next(obj for _, obj in read_jsonl(rejected_path(bad)))
    assert "404" in rec["error"] and "no such model" in rec["error"]
    # --retry-failed asks the failed questions again (now against a model that answers)
    r = _teach(url, "structured", product_questions, bad, "--n", "1", "--retry-failed")
    assert ids(bad) == ["p0"] and ids(rejected_path(bad)) == []


def test_openai_generator_and_run_conversations_for_evaluation(scripted_server):
    from mentor.generation import OpenAIConfig, OpenAIGenerator, Sampling, rollout, run_conversations
    from mentor.prompts import build_messages

    url, _ = scripted_server
    prompts = [build_messages("What is 12 times 34?"), build_messages("What is 56 times 78?")]
    cfg = OpenAIConfig(base_url=url, model="text", concurrency=2, retries=0, max_turns=3)
    states = rollout(OpenAIGenerator(cfg), prompts, tools="math", max_turns=3, sampling=Sampling(), progress=False)
    assert [s.trajectory.final_answer for s in states] == ["408", "4368"]
    res = run_conversations(prompts, cfg)
    assert [x.trajectory.final_answer for x in res] == ["408", "4368"]
    assert res[0].trajectory.tool_names == ["multiply"] and res[0].turns == 2
