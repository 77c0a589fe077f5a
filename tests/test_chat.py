"""``mentor chat``: the live view of tool calls, the same prompt/loop/parsing as evaluation, the
one-line errors, and (slow) the real bundled model in one-shot mode and under a pseudo-terminal.

The fast tests drive the command's Python API with a scripted generator (known tool calls);
everything else -- the task's prompt, the executor, the tool loop, parsing -- is the real one.
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
from rich.console import Console
from test_eval_scripted import ScriptedGenerator, call
from typer.testing import CliRunner

from mentor.chat import ChatError, build_session, show, task_for, tool_choices
from mentor.cli import app
from mentor.eval import evaluate
from mentor.io import append_jsonl

QUESTION = "What is 17 * 23 + 5?"
SCRIPT = [call("multiply", firstNumber=17, secondNumber=23), call("add", firstNumber=391, secondNumber=5),
          "So 17 * 23 + 5 = \\boxed{396}."]
MENTOR = str(Path(sys.executable).with_name("mentor"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120, force_terminal=False, highlight=False), buf


class SnoopingGenerator(ScriptedGenerator):
    """Records what the console showed when each turn was asked for (is the display live?)."""

    def __init__(self, scripts, buf: io.StringIO):
        super().__init__(scripts)
        self.buf, self.shown_before_turn = buf, []

    def generate(self, conversations, tools, sampling):
        self.shown_before_turn.append(self.buf.getvalue())
        return super().generate(conversations, tools, sampling)


def test_tool_calls_and_results_are_shown_as_they_happen():
    console, buf = _console()
    gen = SnoopingGenerator({"17 * 23": SCRIPT}, buf)
    record = show(build_session("scripted", "math", generator=gen), QUESTION, console)
    out = buf.getvalue()
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    i = lines.index("→ multiply(firstNumber=17, secondNumber=23)")
    assert lines[i + 1] == "← 391"
    assert lines[i + 2] == "→ add(firstNumber=391, secondNumber=5)" and lines[i + 3] == "← 396"
    # turn 2 was generated after turn 1's call and its result were on screen
    assert "← 391" in gen.shown_before_turn[1] and "→ add" not in gen.shown_before_turn[1]
    assert re.search(r"╭─ answer ─+╮\n│ 396 +│", out), out
    assert "3 turns · 2 tool calls · 0 invalid" in out
    assert record["answer"] == "396" and record["tools"] == "math"
    assert record["trajectory"]["tool_names"] == ["multiply", "add"] and record["turns"] == 3
    assert [m["role"] for m in record["completion"]] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert gen.tools_offered[0] is not None and "multiply" in gen.tools_offered[0]


def test_invalid_calls_and_no_answer_are_shown():
    console, buf = _console()
    script = [call("divide", numerator=6, denominator=0),
              '<tool_call>\n{"name": "multiply", "arguments": {"firstNumber": 2,\n</tool_call>', "I am not sure."]
    record = show(build_session("scripted", "math", generator=ScriptedGenerator({"6 by 0": script})),
                  "Divide 6 by 0", console)
    out = buf.getvalue()
    assert "→ divide(numerator=6, denominator=0)" in out and "← error:" in out
    assert "→ malformed call:" in out
    assert "no \\boxed{} answer" in out and "2 invalid" in out
    assert record["answer"] is None and record["trajectory"]["num_invalid_calls"] == 2


def test_no_tools_offers_none_and_max_turns_stops():
    gen = ScriptedGenerator({"17 * 23": SCRIPT})
    console, buf = _console()
    record = show(build_session("scripted", "none", generator=gen), QUESTION, console)
    assert gen.tools_offered == [None] and record["tools"] == "none" and record["turns"] == 1
    gen = ScriptedGenerator({"17 * 23": SCRIPT})
    record = show(build_session("scripted", "math", generator=gen, max_turns=2), QUESTION, console)
    assert record["truncated"] and record["turns"] == 2 and "stopped at --max-turns" in buf.getvalue()


def test_same_prompt_loop_and_parsing_as_evaluation(tmp_path):
    """The chat record of a question equals evaluate()'s record of the same question."""
    bench = tmp_path / "one.jsonl"
    append_jsonl(bench, {"id": "q", "problem": QUESTION, "answer": "396"})
    eval_gen = ScriptedGenerator({"17 * 23": SCRIPT})
    rec = evaluate(generator=eval_gen, benchmark=str(bench), progress=False)["records"][0]
    chat_gen = ScriptedGenerator({"17 * 23": SCRIPT})
    record = show(build_session("scripted", "math", generator=chat_gen), QUESTION, _console()[0])
    assert record["prompt"] == eval_gen.seen["17 * 23"][0] == chat_gen.seen["17 * 23"][0]
    assert chat_gen.seen == eval_gen.seen and chat_gen.tools_offered == eval_gen.tools_offered
    assert record["completion"] == rec["completion"] and record["trajectory"] == rec["trajectory"]
    assert record["answer"] == rec["prediction"] == "396"


def test_tool_choices_come_from_the_tasks():
    assert tool_choices() == ["math", "search", "none"]
    assert task_for("math").name == "math" and task_for("search").name == "qa"
    with pytest.raises(ChatError, match="--tools must be one of math, search, none"):
        task_for("web")
    with pytest.raises(ChatError, match="--retriever-url"):
        build_session("scripted", "search", generator=ScriptedGenerator({}))
    session = build_session("scripted", "search", generator=ScriptedGenerator({}), retriever_url="http://127.0.0.1:9")
    assert session.executor.search is not None  # the loop restricts it to the offered tools per conversation


@pytest.mark.parametrize(("args", "message"), [
    (["--tools", "web", "-q", "x"], "error: --tools must be one of math, search, none (got 'web')"),
    (["--model", "./no/such/model", "-q", "x"], "error: no model directory at ./no/such/model"),
    (["--tools", "search", "-q", "x"], "error: --tools search:"),
    (["--json"], "error: --json needs --question"),
])
def test_errors_are_one_line_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(app, ["chat", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_a_directory_that_is_not_a_model_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["chat", "--model", str(tmp_path), "-q", "x"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path} exists but is not a Hugging Face model directory (no config.json)"


# ----------------------------------------------------------------------------- the real model


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "120"}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_one_shot_json_with_the_bundled_model(default_model_path):
    from mentor.models import load_tokenizer
    from mentor.tasks import prompt_text

    proc = subprocess.run(
        [MENTOR, "chat", "--question", QUESTION, "--json", "--max-new-tokens", "48", "--max-turns", "2"],
        capture_output=True, text=True, env=_env(), timeout=170,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["question"] == QUESTION and record["model"] == "smollm2-135m" and record["tools"] == "math"
    assert record["prompt"] == [{"role": "user", "content": f"Question: {QUESTION}\nIf you have got the answer, "
                                 "enclose it within \\boxed{} with latex format."}]
    assert record["rendered_prompt"] == prompt_text(QUESTION, "math", tokenizer=load_tokenizer(default_model_path))
    assert record["completion"][0]["role"] == "assistant" and 1 <= record["turns"] <= 2
    assert set(record["trajectory"]) >= {"final_answer", "tool_names", "calls", "messages"}
    assert record["answer"] == record["trajectory"]["final_answer"]
    # the live display went to stderr: the question, every call the model made and the answer box
    assert f"Question: {QUESTION}" in proc.stderr and "answer" in proc.stderr
    for c in record["trajectory"]["calls"]:
        if c.get("name"):
            assert f"→ {c['name']}(" in proc.stderr or "→ malformed call" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_question_session_in_a_pseudo_terminal(default_model_path):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(MENTOR, ["chat", "--max-new-tokens", "32", "--max-turns", "2"], env=_env(),
                          encoding="utf-8", timeout=150, dimensions=(40, 120))
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        for question in ("What is 2 + 3?", "What is 6 times 7?"):
            child.expect_exact("Question> ")
            child.sendline(question)
            child.expect_exact(f"Question: {question}")
            child.expect(r"(\d+) turns? · (\d+) tool calls? · \d+ invalid")
        child.expect_exact("Question> ")
        child.sendline("exit")
        child.expect_exact("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, transcript.getvalue()
    text = ANSI.sub("", transcript.getvalue())
    first, second = text.index("Question: What is 2 + 3?"), text.index("Question: What is 6 times 7?")
    panels = [m.start() for m in re.finditer("╭─ answer ─", text)]
    assert len(panels) == 2 and first < panels[0] < second < panels[1] < text.rindex("bye"), text
    assert "Question> What is 2 + 3?" in text and "tools: math" in text


@pytest.mark.parametrize("ending", ["", "\n", "quit\n", "exit\n"])
def test_interactive_loop_fresh_conversations_and_endings(monkeypatch, ending):
    """Two questions, each a fresh conversation, then Ctrl-D (end of input), an empty line, quit or exit."""
    from mentor.chat import interactive

    gen = ScriptedGenerator({"17 * 23": SCRIPT, "2 plus 3": [call("add", firstNumber=2, secondNumber=3), "\\boxed{5}"]})
    after = f"{ending}never asked\n" if ending else ""  # "": the input ends (Ctrl-D)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\nWhat is 2 plus 3?\n{after}"))
    console, buf = _console()
    interactive(build_session("scripted", "math", generator=gen), console)
    out = buf.getvalue()
    assert out.count("╭─ answer") == 2 and "│ 396" in out and "│ 5 " in out and out.rstrip().endswith("bye")
    assert "never asked" not in out
    assert gen.seen["2 plus 3"][0] == [{"role": "user", "content": "Question: What is 2 plus 3?\nIf you have got the "
                                        "answer, enclose it within \\boxed{} with latex format."}]


def test_search_tools_offer_only_wikipedia_search():
    """--tools search: the QA task's prompt offers only wikipedia_search; its results are shown, a
    math tool is refused by the executor the loop restricts to the offered tools."""
    from dataclasses import replace

    from mentor.tools.executor import Executor
    from mentor.tools.search import InMemoryBM25, Passage

    script = [call("wikipedia_search", query="capital of France") + "\n" + call("add", firstNumber=1, secondNumber=2),
              "It is \\boxed{Paris}."]
    gen = ScriptedGenerator({"France": script})
    session = build_session("scripted", "search", generator=gen, retriever_url="http://127.0.0.1:9")
    passages = [Passage("Paris", "Paris is the capital of France."), Passage("Rome", "Rome is the capital of Italy.")]
    session = replace(session, executor=Executor(search=InMemoryBM25(passages)))
    console, buf = _console()
    record = show(session, "What is the capital of France?", console)
    out = buf.getvalue()
    assert gen.tools_offered[0] == ["wikipedia_search"] and record["task"] == "qa" and record["tools"] == "search"
    assert '→ wikipedia_search(query="capital of France")' in out and "Paris is the capital of France." in out
    assert "→ add(firstNumber=1, secondNumber=2)" in out and "← error: tool 'add' is not available" in out
    assert record["answer"] == "Paris"
