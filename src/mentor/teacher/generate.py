"""The resumable reference-generation loop shared by every teacher backend.

Files (``OUT`` is the ``--out`` path):

- ``OUT``: the references kept -- by default the ``correct`` ones; with ``keep_all`` every
  record that has a trajectory. This is what training reads (``mentor.references``).
- ``OUT.rejected.jsonl``: every other record, same format, ``correct=false``: wrong answers
  (default mode), trajectories without a final ``\\boxed{}`` answer (``error`` set,
  ``meta.failure="no_answer"``), and endpoint failures after the retries (``error`` set,
  ``meta.failure="endpoint"``, no messages). Nothing is skipped silently.
- ``OUT.summary.json``: config, seed, versions, timings and counts of the last run.

Each record is appended atomically (``mentor.io.append_jsonl``) as soon as its question is done.
On start both files are repaired (a torn last line from a kill is cut) and every id already in
either file is skipped, so re-running the same command after a crash (even SIGKILL) continues
where it stopped: no duplicate, no torn line. ``retry_failed`` first drops the endpoint-failure
records so those questions are asked again.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentor.data.datasets import Question
from mentor.io import DataError, append_jsonl, atomic_writer, read_jsonl, repair_jsonl, run_metadata, write_json
from mentor.progress import ProgressBar
from mentor.references import Reference
from mentor.tasks import get_task
from mentor.teacher.base import Teacher, TeacherOutput
from mentor.trajectory import Trajectory


def rejected_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".rejected.jsonl")


def summary_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".summary.json")


@dataclass
class TeachSummary:
    total: int = 0  # questions asked for
    skipped: int = 0  # already done in an earlier run (resume)
    done: int = 0  # finished in this run
    kept: int = 0  # written to OUT in this run
    correct: int = 0
    wrong: int = 0  # a final answer that does not match
    no_answer: int = 0  # no final \boxed{} answer (failure record)
    failed: int = 0  # endpoint failures after retries (failure record)
    invalid: int = 0  # trajectories with at least one invalid tool call
    tool_calls: int = 0
    seconds: float = 0.0
    file_kept: int = 0  # lines in OUT after the run
    file_rejected: int = 0  # lines in OUT.rejected.jsonl after the run
    families: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        d["references_per_second"] = round(self.rate, 3)
        return d


def _ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out = set()
    for line, obj in read_jsonl(path):
        if "id" not in obj:
            raise DataError(path, line, "record without an id (is this a references file?)", "id")
        out.add(str(obj["id"]))
    return out


def _drop_endpoint_failures(path: Path) -> int:
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for _, obj in read_jsonl(path):
        if (obj.get("meta") or {}).get("failure") == "endpoint":
            dropped += 1
        else:
            keep.append(obj)
    if dropped:
        with atomic_writer(path) as f:
            for obj in keep:
                f.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    return dropped


def build_reference(q: Question, out: TeacherOutput, teacher: dict[str, Any]) -> tuple[Reference, str | None]:
    """The record for one question, and why it fails (``"endpoint"``, ``"no_answer"`` or None)."""
    traj = Trajectory.from_messages(out.messages)
    answer = traj.final_answer
    failure = None
    error = out.error
    if error:
        failure = "endpoint"
    elif answer is None:
        failure = "no_answer"
        error = "no final \\boxed{} answer" + (f" (stopped by max_turns after {out.turns} turns)" if out.truncated else "")
    task = get_task(q.task)
    correct = answer is not None and task.score(answer, task.gold(q))
    meta: dict[str, Any] = {
        "turns": out.turns,
        "tokens": out.tokens,
        "seconds": round(out.seconds, 4),
        "truncated": out.truncated,
        "num_invalid_calls": traj.num_invalid_calls,
    }
    if failure:
        meta["failure"] = failure
    for k in ("family", "split", "ood_kind", "source"):
        if k in q.meta:
            meta[k] = q.meta[k]
    ref = Reference(
        id=q.id,
        question=q.question,
        answer=q.answer,
        messages=out.messages,
        teacher_answer=answer,
        teacher_tools=traj.tool_names,
        correct=bool(correct),
        teacher=teacher,
        task=q.task,
        error=error,
        meta=meta,
    )
    return ref, failure


def generate_references(
    questions: Sequence[Question],
    teacher: Teacher,
    out: str | os.PathLike,
    keep_all: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
) -> TeachSummary:
    """Ask ``teacher`` every question not yet in ``out`` / ``out.rejected.jsonl``; append each
    record as it finishes; return (and write beside ``out``) the summary."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rej = rejected_path(out)
    for p in (out, rej):
        repair_jsonl(p)
    if retry_failed:
        _drop_endpoint_failures(rej)
    done_ids = _ids(out) | _ids(rej)
    seen: set[str] = set()
    todo = []
    for q in questions:
        if q.id in seen:
            raise DataError(q.meta.get("source", "questions"), q.meta.get("line"), f"duplicate question id {q.id!r}", "id")
        seen.add(q.id)
        if q.id not in done_ids:
            todo.append(q)
    summary = TeachSummary(total=len(questions), skipped=len(questions) - len(todo))
    identity = teacher.identity()
    families: Counter[str] = Counter()
    if todo:
        teacher.check(todo)
    backend = identity.get("backend", "teacher")
    bar = ProgressBar(len(questions), f"teach [{backend}]", progress, completed=summary.skipped, unit="refs") if progress else None
    t0 = time.perf_counter()

    def on_result(q: Question, result: TeacherOutput) -> None:
        ref, failure = build_reference(q, result, identity)
        keep = ref.correct or (keep_all and failure != "endpoint")
        append_jsonl(out if keep else rej, ref.to_dict())
        summary.done += 1
        summary.kept += keep
        summary.correct += ref.correct
        summary.failed += failure == "endpoint"
        summary.no_answer += failure == "no_answer"
        summary.wrong += failure is None and not ref.correct
        summary.invalid += ref.meta["num_invalid_calls"] > 0
        summary.tool_calls += len(ref.teacher_tools)
        if "family" in q.meta:
            families[q.meta["family"]] += 1
        if bar:
            bar.advance()

    try:
        if todo:
            teacher.run(todo, on_result)
    finally:
        summary.seconds = time.perf_counter() - t0
        if bar:
            bar.close()
        summary.families = dict(families)
        summary.file_kept = len(_ids(out))
        summary.file_rejected = len(_ids(rej))
        meta = run_metadata(config or {}, seed, teacher=identity, summary=summary.to_dict(), out=str(out), rejected=str(rej))
        if hasattr(teacher, "stats"):
            meta["endpoint_stats"] = getattr(teacher, "stats")
        write_json(summary_path(out), meta)
    return summary

