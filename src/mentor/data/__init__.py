"""Question sets: the ``Question`` type, ``load_questions`` (synthetic / local files / Hub ids) and
the bundled synthetic task family (``mentor.data.synthetic``)."""

from mentor.data.datasets import Question, load_questions, synthetic_questions

__all__ = ["Question", "load_questions", "synthetic_questions"]
