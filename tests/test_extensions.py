"""docs/architecture.md's promises, exercised: a new benchmark kind and a new teacher backend
are each one file (tests/spell_task.py, tests/oracle_teacher.py) plus a registration."""

import json

import pytest
from oracle_teacher import build
from spell_task import SpellTask

from mentor.analysis.report import group_label
from mentor.data.datasets import Question
from mentor.eval import benchmark_names, evaluate, load_benchmark
from mentor.generation import Generation, parse_assistant
from mentor.rewards import correctness
from mentor.tasks import register, unregister
from mentor.teacher.factory import make_teacher, register_backend, unregister_backend
from mentor.teacher.generate import build_reference, generate_references
from mentor.tools import Executor
from mentor.trajectory import Trajectory


@pytest.fixture
def spell():
    task = register(SpellTask())
    yield task
    unregister("spell")


@pytest.fixture
def oracle():
    register_backend("oracle", build)
    yield
    unregister_backend("oracle")


class Reverser:
    """Answers every conversation by reversing the word its question names (wrong on purpose
    for 'tools', to check the scorer)."""

    def __init__(self):
        self.tools_seen = []

    def generate(self, conversations, tools, sampling):
        self.tools_seen.append(tools)
        out = []
        for conv in conversations:
            word = conv[-1]["content"].split("Spell ", 1)[1].split(" ", 1)[0]
            answer = word[::-1] if word != "tools" else "stool"
            out.append(Generation(parse_assistant(f"\\boxed{{{answer}}}"), tokens=3))
        return out


def test_new_benchmark_kind_is_one_file_plus_registration(spell, tmp_path):
    assert "spell:demo" in benchmark_names()
    gen = Reverser()
    res = evaluate(benchmark="spell:demo", generator=gen, progress=False, max_turns=2)
    assert res["kind"] == "spell" and res["n"] == 2 and res["accuracy"] == 0.5
    assert [r["correct"] for r in res["records"]] == [True, False]
    assert res["settings"]["toolset"] is None and gen.tools_seen == [None]  # the task offers no tools
    assert group_label(res) == "Spelling"
    # a local file of the new kind is recognised by its fields
    f = tmp_path / "words.jsonl"
    f.write_text(json.dumps({"word": "abc"}) + "\n")
    bench = load_benchmark(f)
    assert bench.kind == "spell" and bench.items[0].gold == "cba"
    # teacher filtering and the correctness reward ask the same task
    q = Question(id="q", question="Spell abc backwards.", answer="cba", task="spell")
    ref, failure = build_reference(q, type("Out", (), {"messages": [{"role": "assistant", "content": "\\boxed{CBA}"}],
                                                      "error": None, "turns": 1, "tokens": 1, "truncated": False,
                                                      "seconds": 0.0})(), {})
    assert ref.correct and failure is None
    assert correctness(Trajectory.from_text("\\boxed{cba}"), "CBA", kind="spell") == 1.0
    assert correctness(Trajectory.from_text("\\boxed{abc}"), "CBA", kind="spell") == 0.0


def test_unregistered_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark 'spell:demo'"):
        load_benchmark("spell:demo")


def test_new_teacher_backend_is_one_file_plus_registration(oracle, tmp_path):
    from mentor.data import synthetic_questions

    qs = synthetic_questions("train", 3, seed=0)
    seen = []

    class Recording(Executor):
        def execute(self, name, arguments):
            seen.append(name)
            return super().execute(name, arguments)

    teacher = make_teacher("oracle", note="from a test", executor=Recording())
    summary = generate_references(qs, teacher, tmp_path / "refs.jsonl", progress=False)
    assert summary.file_kept == 3 and seen == ["add"] * 3  # tool calls went through the given executor
    rec = json.loads((tmp_path / "refs.jsonl").read_text().splitlines()[0])
    assert rec["teacher"] == {"backend": "oracle", "model": None, "note": "from a test"}
    assert rec["teacher_tools"] == ["add"] and rec["correct"] is True


def test_new_teacher_backend_in_a_pipeline_config(oracle, tmp_path):
    from mentor.pipeline import Pipeline, load_config

    cfg = load_config(None, {"teacher": {"backend": "oracle", "note": "x"}, "data": {"n": 2}})
    Pipeline(cfg, tmp_path / "run", progress=False).run(["data", "teach"])
    refs = (tmp_path / "run" / "references.jsonl").read_text().splitlines()
    assert len(refs) == 2 and json.loads(refs[0])["teacher"]["backend"] == "oracle"
