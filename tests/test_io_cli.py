import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mentor.cli import app
from mentor.io import DataError, append_jsonl, read_jsonl, repair_jsonl
from mentor.references import Reference, load_references, write_reference

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
