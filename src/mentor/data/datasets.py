"""Question sets for teachers, training and evaluation: one ``Question`` type, one loader.

``load_questions(source, ...)`` accepts

- ``"synthetic"``: the bundled synthetic task family (``split`` = train / test / ood);
- a local JSONL (``.jsonl``/``.json``, one object per line) or parquet file, e.g. the math
  files in ``../shared/benchmarks/math/`` (their "Please reason step by step..." suffix is
  stripped by ``mentor.prompts.clean_question``);
- a Hugging Face Hub dataset id (e.g. ``nvidia/AceReason-Math``), loaded with
  ``datasets.load_dataset(source, split=split)``.

Field names are detected (question: ``problem``, ``question``, ``prompt``, ``input``; answer:
``answer``, ``expected_answer``, ``final_answer``, ``ground_truth``, ``golden_answers``,
``solution`` -- a solution's last ``\\boxed{}`` is taken) or given explicitly. A record with
a missing or empty field raises ``mentor.io.DataError`` naming the file, line and field.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mentor.answers import extract_boxed
from mentor.data.synthetic import generate
from mentor.io import DataError, read_jsonl
from mentor.prompts import clean_question

Task = Literal["math", "qa"]

QUESTION_FIELDS = ("problem", "question", "prompt", "input")
ANSWER_FIELDS = ("answer", "expected_answer", "final_answer", "ground_truth", "golden_answers", "answers", "solution")
ID_FIELDS = ("id", "_id", "uid", "unique_id", "idx")


@dataclass
class Question:
    id: str
    question: str
    answer: str
    task: Task = "math"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def golds(self) -> list[str]:
        """All accepted answers (QA sets may list several)."""
        return list(self.meta.get("golds") or [self.answer])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_questions(split: str = "train", n: int | None = None, seed: int = 0) -> list[Question]:
    return [
        Question(id=p.id, question=p.question, answer=p.answer, task="math", meta=p.meta())
        for p in generate(split, 200 if n is None else n, seed)
    ]


def _pick(obj: dict[str, Any], explicit: str | None, candidates: tuple[str, ...], path, line, what: str) -> str:
    if explicit:
        return explicit
    for name in candidates:
        if name in obj:
            return name
    raise DataError(
        path, line, f"no {what} field found (looked for {', '.join(candidates)}; pass the field name explicitly)", what
    )


def _answer_text(value: Any, fieldname: str, path, line) -> tuple[str, list[str]]:
    if isinstance(value, list | tuple):
        golds = [str(v) for v in value if v is not None and str(v).strip()]
        if not golds:
            raise DataError(path, line, "empty list of answers", fieldname)
        return golds[0], golds
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(path, line, f"expected a string or number, got {type(value).__name__}", fieldname)
    text = str(value).strip()
    if fieldname == "solution":
        boxed = extract_boxed(text)
        if boxed is None:
            raise DataError(path, line, "the solution has no \\boxed{} answer", fieldname)
        text = boxed
    if not text:
        raise DataError(path, line, "empty answer", fieldname)
    return text, [text]


def records_to_questions(
    records: Any,
    path: str | os.PathLike,
    question_field: str | None = None,
    answer_field: str | None = None,
    task: Task = "math",
    id_prefix: str | None = None,
) -> list[Question]:
    """``(line, dict)`` pairs -> questions, with errors naming ``path``/line/field."""
    prefix = id_prefix or Path(str(path)).stem
    out: list[Question] = []
    seen: set[str] = set()
    for line, obj in records:
        qf = _pick(obj, question_field, QUESTION_FIELDS, path, line, "question")
        af = _pick(obj, answer_field, ANSWER_FIELDS, path, line, "answer")
        for f_ in (qf, af):
            if f_ not in obj or obj[f_] is None:
                raise DataError(path, line, "missing required field", f_)
        q = obj[qf]
        if not isinstance(q, str) or not q.strip():
            raise DataError(path, line, "expected a non-empty string", qf)
        answer, golds = _answer_text(obj[af], af, path, line)
        idf = next((k for k in ID_FIELDS if obj.get(k) not in (None, "")), None)
        qid = str(obj[idf]) if idf else f"{prefix}-{line}"
        if qid in seen:
            raise DataError(path, line, f"duplicate id {qid!r}", idf or "id")
        seen.add(qid)
        meta: dict[str, Any] = {"source": str(path), "line": line}
        if len(golds) > 1:
            meta["golds"] = golds
        out.append(Question(id=qid, question=clean_question(q), answer=answer, task=task, meta=meta))
    return out


def _parquet_records(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - report any reader failure as a data error on the file
        raise DataError(path, None, f"cannot read parquet: {e}") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield i, row


def _guess_task(path: Path) -> Task:
    return "qa" if path.parent.name == "qa" else "math"


def load_questions(
    source: str | os.PathLike,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    question_field: str | None = None,
    answer_field: str | None = None,
    task: Task | None = None,
) -> list[Question]:
    """Load questions from ``"synthetic"``, a local JSONL/parquet file or a Hub dataset id.

    ``n`` keeps the first ``n`` questions (files and Hub sets keep their order; the synthetic
    family generates exactly ``n``, default 200). ``seed`` selects the synthetic problems.
    ``task`` defaults to ``qa`` for files in a ``qa/`` folder and ``math`` otherwise."""
    if n is not None and n < 0:
        raise ValueError("n must be >= 0")
    src = str(source)
    if src == "synthetic":
        return synthetic_questions(split, n, seed)
    path = Path(src).expanduser()
    if path.exists():
        if path.is_dir():
            raise DataError(path, None, "is a directory; pass a .jsonl or .parquet file")
        records = _parquet_records(path) if path.suffix == ".parquet" else read_jsonl(path)
        questions = records_to_questions(
            _take(records, n), path, question_field, answer_field, task or _guess_task(path)
        )
    elif src.endswith((".jsonl", ".json", ".parquet")) or os.sep in src and not _looks_like_hub_id(src):
        raise DataError(path, None, "file not found")
    else:
        questions = _hub_questions(src, split, n, question_field, answer_field, task or "math")
    if not questions:
        raise DataError(src, None, "no questions found")
    return questions


def _take(records, n: int | None):
    for k, item in enumerate(records):
        if n is not None and k >= n:
            return
        yield item


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts)


def _hub_questions(
    repo_id: str, split: str, n: int | None, question_field: str | None, answer_field: str | None, task: Task
) -> list[Question]:
    """A Hub dataset (for real users; e.g. ``nvidia/AceReason-Math`` with ``problem``/``answer``)."""
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except Exception as e:  # noqa: BLE001 - network / missing dataset: say what failed, where
        raise DataError(repo_id, None, f"cannot load Hub dataset (split {split!r}): {type(e).__name__}: {e}") from None
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    return records_to_questions(
        ((i, row) for i, row in enumerate(ds, 1)), f"hf://{repo_id}[{split}]", question_field, answer_field, task,
        id_prefix=repo_id.split("/")[-1],
    )
