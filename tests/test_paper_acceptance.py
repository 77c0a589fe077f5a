"""Issue #12's acceptance, end to end on the paper-scale pipeline config without a GPU:

"With the paper-scale pipeline config and local stand-ins for the Hub data, ``mentor run
--stages eval,report`` evaluates HotpotQA, 2Wiki and Bamboogle through a retriever it started
itself, and the report shows the teacher row, Fig. 1's panels and BFCL's weighted overall."

``configs/pipeline/gpu-qwen2.5-1.5b.yaml`` with only what a CPU needs changed: the stand-ins of
``tests/test_rag_eval.py`` (FlashRAG-format QA sets, a FlashRAG-format corpus and a prebuilt faiss
index by the bundled MiniLM with E5's prefixes), a tiny local math file in domain, ``bfcl:v4``
as configured (one item per category: ``eval.limit: 1``), the teacher endpoint a scripted
OpenAI-compatible server on loopback, in-process generation (no vLLM), small budgets. The GPU
flow's order: ``teacher_eval`` (while the teacher endpoint is up), then -- the "trained" students
being a tiny local model -- ``eval,report``.

The teacher's searches prove the pipeline-started retriever answers (3 queries, all answered
right); the tiny students rarely search, so for them the proof is that every result names the
eval stage's own retriever and that its query count equals the searches in their records.
About 1.5 min on a loaded 2-core CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading

import pytest
import yaml
from test_rag_eval import (  # noqa: F401 - stand_ins is a fixture
    MENTOR,
    STAND_INS,
    _check_stopped,
    _paper_config,
    _search_calls,
    stand_ins,
)
from conftest import loopback_server, openai_app
from test_teach import _reply

from mentor.tasks.qa import FLASHRAG_ENV, FLASHRAG_SETS

MATH = [("What is 123 times 45?", 123 * 45), ("What is 678 times 90?", 678 * 90)]
_NUMS = re.compile(r"What is (\d+) times (\d+)\?")
STUDENTS = ("sft", "mentor")  # the eval stage's methods (train.methods: mentor); vanilla is its own stage
FIGURES = ("fig1_tool_effect.png", "fig1b_invocation_pattern.png", "fig1c_invalid_calls.png")


class Teacher:
    """A scripted teacher endpoint: on a QA question it searches for the question and answers
    the gold (it knows ``golds``); on a product it calls ``multiply`` and answers its result;
    otherwise (BFCL) it answers in text. Without tools it answers nothing useful."""

    def __init__(self, golds: dict[str, str]):
        self.golds, self.requests, self.searches, self.lock = golds, 0, 0, threading.Lock()

    def reply(self, body: dict) -> dict:
        tools = {t["function"]["name"] for t in body.get("tools") or []}
        msgs = body["messages"]
        user = next(m for m in msgs if m["role"] == "user")["content"]
        gold = next((a for q, a in self.golds.items() if q in user), None)
        product = _NUMS.search(user)
        results = [m["content"] for m in msgs if m["role"] == "tool"]
        with self.lock:
            self.requests += 1
        if not tools:
            return _reply("I would need to look that up.")
        if results:
            answer = gold if gold is not None else (results[-1].strip() if product else "done")
            return _reply(f"The answer is \\boxed{{{answer}}}.")
        if gold is not None and "wikipedia_search" in tools:
            with self.lock:
                self.searches += 1
            return self._call("wikipedia_search", {"query": next(q for q in self.golds if q in user)})
        if product and "multiply" in tools:
            return self._call("multiply", {"firstNumber": int(product[1]), "secondNumber": int(product[2])})
        return _reply("I cannot help with that.")

    @staticmethod
    def _call(name: str, arguments: dict) -> dict:
        return _reply("Let me use a tool.", tool_calls=[{"id": "call_0", "type": "function",
                                                         "function": {"name": name, "arguments": json.dumps(arguments)}}])


@pytest.fixture
def teacher_server(stand_ins):  # noqa: F811
    teacher = Teacher({r["question"]: r["answer"] for rows in stand_ins["sets"].values() for r in rows})
    with loopback_server(openai_app(teacher.reply)) as port:
        yield f"http://127.0.0.1:{port}/v1", teacher


def _config(s, out, tmp_path, student: str, teacher_url: str):
    """The paper config with the CPU's overrides only (see the module docstring)."""
    math = tmp_path / "products.jsonl"
    math.write_text("".join(json.dumps({"problem": q, "answer": str(a)}) + "\n" for q, a in MATH))
    cfg = _paper_config(s, out, student)
    cfg["eval"].update(in_domain=[str(math)], out_of_domain=[*STAND_INS, "bfcl:v4"], tool_effect=True, max_new_tokens=16, limit=1)
    cfg["teacher"].update(base_url=teacher_url, retries=0, concurrency=4)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg


def _run(config, out, env, stages):
    r = subprocess.run(MENTOR + ["run", "--config", str(config), "--output-dir", str(out), "--stages", stages, "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "starting the retriever server:dense:" in r.stderr and "stopped the retriever" in r.stderr
    return r


def _rag_results(out, method, s):
    """The method's three RAG results: the sampled ids (the whole stand-in file, in order), the first evaluated."""
    results = []
    for name, rows in s["sets"].items():
        res = json.loads((out / "eval" / method / f"{name}.json").read_text())
        ids = [r["id"] for r in rows]
        assert res["sample"]["ids"] == ids and [rec["id"] for rec in res["records"]] == ids[:1]
        assert res["source"] == str(s["data"] / FLASHRAG_SETS[name].rel)
        results.append(res)
    return results


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_paper_config_eval_report_acceptance(stand_ins, teacher_server, tmp_path, default_model_path, tiny_model_dir):  # noqa: F811
    s, (url, teacher) = stand_ins, teacher_server
    out = tmp_path / "run"
    config, cfg = _config(s, out, tmp_path, default_model_path, url)
    assert cfg["eval"]["retriever"]["index"] == "dense" and cfg["teacher"]["backend"] == "openai"
    env = {**os.environ, FLASHRAG_ENV: str(s["data"]), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    # 1. the teacher, evaluated while its endpoint is up, through the retriever this stage starts
    _run(config, out, env, "teacher_eval")
    marker = json.loads((out / "stages" / "teacher_eval.json").read_text())
    _check_stopped(marker["retriever"])
    rag = _rag_results(out, "teacher", s)
    assert teacher.searches == 3 == marker["retriever"]["queries"] == len(_search_calls(rag))  # 3 sets x 1 item
    assert all(res["accuracy"] == 1.0 and res["settings"]["retriever_url"] == marker["retriever"]["url"] for res in rag)
    assert (out / "eval" / "teacher" / "hotpotqa.no_tools.json").exists()  # Fig. 1's tool effect, the LLM side

    # 2. the "trained" students (a tiny random Llama with SmolLM2's tokenizer: BFCL's multi-turn
    # items are long prompts, too slow for SmolLM2 itself here), then eval,report
    for method in STUDENTS:
        (out / "models" / method).mkdir(parents=True)
        (out / "models" / method / "final").symlink_to(tiny_model_dir)
    requests = teacher.requests
    _run(config, out, env, "eval,report")
    assert teacher.requests == requests  # eval,report does not need the teacher's endpoint
    record = json.loads((out / "stages" / "eval.json").read_text())["retriever"]
    _check_stopped(record)
    assert record["url"] != marker["retriever"]["url"] or record["pid"] != marker["retriever"]["pid"]  # its own
    assert (record["serving"]["faiss_index"], record["serving"]["query_prefix"]) == (str(s["faiss"]), "query: ")
    results = [res for m in STUDENTS for res in _rag_results(out, m, s)]
    assert all(res["settings"]["retriever"] == record["label"] and res["settings"]["retriever_url"] == record["url"]
               for res in results)
    assert record["queries"] == len(_search_calls(results))  # the students' searches went there, and only those
    for m in STUDENTS:
        bfcl = json.loads((out / "eval" / m / "bfcl_v4.json").read_text())
        assert bfcl["n"] == 17  # one item of every offline BFCL v4 category

    # 3. the report: the teacher row, Fig. 1's panels, BFCL's weighted overall
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary)[0] == "teacher" and summary["teacher"]["out_of_domain_accuracy"] is not None
    for m in STUDENTS:
        assert isinstance(summary[m]["bfcl_overall"], float) and 0.0 <= summary[m]["bfcl_overall"] <= 1.0
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method") and "BFCL overall" in line)
    column = header.split(" | ").index("BFCL overall")
    table = md[md.index(header):].split("\n\n")[0].splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table[2:]}
    assert "teacher" in rows and set(STUDENTS) <= set(rows)
    for m in ("teacher", *STUDENTS):
        assert re.fullmatch(r"\d+\.\d\d", rows[m][column]), (m, rows[m][column])
    for fig in FIGURES:
        assert (out / "plots" / fig).stat().st_size > 1000 and fig in md
