import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mentor.cli import app
from mentor.io import DataError, append_jsonl, atomic_writer, read_jsonl, repair_jsonl
from mentor.references import Reference, load_references, write_reference
from mentor.tools.search import Passage, load_passages, save_passages
from mentor.train.callbacks import truncate_steps

MENTOR = [sys.executable, "-m", "mentor.cli"]


def test_help_lists_subcommands():
    out = subprocess.run(MENTOR + ["--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("model", "tools"):
        assert cmd in out.stdout


def test_tools_call_cli():
    runner = CliRunner()
    r = runner.invoke(app, ["tools", "call", "multiply", '{"firstNumber": 6, "secondNumber": 7}'])
    assert r.exit_code == 0 and json.loads(r.stdout) == {"ok": True, "content": "42", "error": None}
    r = runner.invoke(app, ["tools", "call", "sqrt", '{"number": -1}'])
    assert r.exit_code == 1 and json.loads(r.stdout)["ok"] is False
    r = runner.invoke(app, ["tools", "list", "--toolset", "math", "--as-json"])
    assert [t["function"]["name"] for t in json.loads(r.stdout)][:2] == ["add", "subtract"]


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"x.jsonl, line 3: expected a JSON object"):
        list(read_jsonl(p))
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        list(read_jsonl(p))
    with pytest.raises(DataError, match="file not found"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


def test_append_and_repair(tmp_path):
    p = tmp_path / "out.jsonl"
    append_jsonl(p, {"id": 1})
    append_jsonl(p, {"id": 2})
    with open(p, "ab") as f:
        f.write(b'{"id": 3, "tor')  # a kill mid-write
    assert repair_jsonl(p) == len(b'{"id": 3, "tor')
    assert [o["id"] for _, o in read_jsonl(p)] == [1, 2]
    assert repair_jsonl(p) == 0


def test_atomic_writer_shows_the_old_file_or_the_whole_new_one(tmp_path):
    p = tmp_path / "sub" / "passages.jsonl"
    save_passages([Passage(title="T", text="old", id="a")], p)
    with pytest.raises(RuntimeError, match="mid-write"), atomic_writer(p) as f:
        f.write('{"id": "b", "title": "T", "text": "new"}\n')
        assert [x.text for x in load_passages(p)] == ["old"]  # a reader meanwhile sees the old file
        raise RuntimeError("killed mid-write")
    assert [x.text for x in load_passages(p)] == ["old"] and sorted(os.listdir(p.parent)) == ["passages.jsonl"]
    save_passages((Passage(title="T", text=f"t{i}", id=str(i)) for i in range(3)), p)  # a generator
    assert [x.id for x in load_passages(p)] == ["0", "1", "2"] and sorted(os.listdir(p.parent)) == ["passages.jsonl"]
    # a writer killed mid-write (SIGKILL: no cleanup) leaves its temp file; the next write removes it
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = p.with_name(f"passages.jsonl.{gone.stdout.strip()}-1.tmp")
    orphan.write_text("half")
    live = p.with_name(f"passages.jsonl.{os.getppid()}-1.tmp")  # a writer still running keeps its file
    live.write_text("busy")
    save_passages([Passage(title="T", text="x", id="z")], p)
    assert sorted(os.listdir(p.parent)) == sorted(["passages.jsonl", live.name])


def test_truncate_steps_keeps_the_steps_up_to_a_checkpoint(tmp_path):
    p = tmp_path / "steps.jsonl"
    for step in (1, 2, 3):
        append_jsonl(p, {"step": step})
    with open(p, "ab") as f:
        f.write(b'{"step": 4, "re')  # the kill that stopped the run
    assert [r["step"] for r in truncate_steps(p, 2)] == [1, 2]
    assert [o["step"] for _, o in read_jsonl(p)] == [1, 2] and sorted(os.listdir(tmp_path)) == ["steps.jsonl"]
    assert truncate_steps(p, None) == [] and p.read_text() == ""
    assert truncate_steps(tmp_path / "missing.jsonl", 3) == [] and not (tmp_path / "missing.jsonl").exists()


def _ref(i, correct=True):
    return Reference(
        id=f"q{i}", question="What is 2+3?", answer="5",
        messages=[{"role": "assistant", "content": "\\boxed{5}"}],
        teacher_answer="5", teacher_tools=["add"], correct=correct, teacher={"backend": "program"},
    )


def test_references_round_trip_and_filter(tmp_path):
    p = tmp_path / "refs.jsonl"
    write_reference(p, _ref(1))
    write_reference(p, _ref(2, correct=False))
    refs = load_references(p)
    assert [r.id for r in refs] == ["q1"]
    assert len(load_references(p, only_correct=False)) == 2
    assert refs[0].trajectory().final_answer == "5"


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda o: o.pop("teacher_answer"), "teacher_answer"),
        (lambda o: o.pop("teacher_tools"), "teacher_tools"),
        (lambda o: o.update(teacher_tools="add"), "teacher_tools"),
        (lambda o: o.update(correct="yes"), "correct"),
        (lambda o: o.pop("question"), "question"),
    ],
)
def test_references_bad_field(tmp_path, mutate, field):
    p = tmp_path / "refs.jsonl"
    write_reference(p, _ref(1))
    obj = _ref(2).to_dict()
    mutate(obj)
    append_jsonl(p, obj)
    with pytest.raises(DataError) as e:
        load_references(p)
    assert e.value.line == 2 and e.value.field == field and str(p) in str(e.value)
