"""A teacher backend added from outside the package, as docs/architecture.md describes: this
one file plus ``mentor.teacher.factory.register_backend("oracle", build)``. It answers every
question with its gold answer after one ``add`` call run by the executor it is given."""

from mentor.generation import run_tool_calls
from mentor.teacher.base import TeacherOutput


class OracleTeacher:
    backend = "oracle"

    def __init__(self, executor, note=None):
        self.executor, self.note = executor, note

    def identity(self):
        return {"backend": "oracle", "model": None, "note": self.note}

    def check(self, questions):
        pass

    def run(self, questions, on_result):
        for q in questions:
            call = {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "id": "call_1", "function": {"name": "add", "arguments": {"firstNumber": 1, "secondNumber": 1}}}]}
            messages = [call, *run_tool_calls(call, self.executor), {"role": "assistant", "content": f"\\boxed{{{q.answer}}}"}]
            on_result(q, TeacherOutput(messages=messages, turns=2))


def build(config, executor):
    """The registered builder: ``teacher: {backend: oracle, note: ...}`` (``note`` lands in ``config.extra``)."""
    return OracleTeacher(executor, note=config.extra.get("note"))
