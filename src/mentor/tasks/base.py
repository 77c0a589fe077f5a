"""A task: data + a prompt/toolset + answer extraction + a scorer, registered by name (as in
lm-evaluation-harness). A benchmark's ``kind`` is the name of its task.

A ``Task`` subclass declares, in one file:

- ``name`` (the ``kind`` written into results and references), ``label`` (the report's group),
  ``toolset`` (the tools its prompts offer; ``None``: each item brings its own, as BFCL);
- ``detect(record)`` / ``question_field``: how a local JSONL file of this kind is recognised;
- ``load(key, limit)``: the named benchmarks it knows (``None`` for a name it does not);
- ``score(prediction, gold)`` and ``gold(question)``: the metric, used by evaluation, teacher
  filtering and the correctness reward alike;
- optionally ``executor(...)`` (e.g. a search backend), ``run(...)`` (the default is the multi-
  turn tool loop, scoring the final ``\\boxed{}`` answer) and ``summarize(records)``.

``register(MyTask())`` makes it known to ``load_benchmark``, ``evaluate``, the teacher, the
rewards and the report.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentor.data.datasets import Question, load_questions
from mentor.generation.loop import Sampling, rollout
from mentor.io import DataError, read_jsonl
from mentor.prompts import build_messages, render
from mentor.tools.executor import Executor


@dataclass
class Item:
    """One evaluation item. ``messages`` overrides the default prompt (BFCL); ``tools`` are
    per-item OpenAI function schemas (BFCL)."""

    id: str
    question: str
    gold: Any  # str (math), list[str] (QA), BFCL ground truth (list of {func: {arg: [values]}})
    meta: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


@dataclass
class Benchmark:
    name: str
    kind: str  # the name of a registered task: math | qa | bfcl | ...
    items: list[Item]
    source: str = ""
    domain: str = "in-domain"  # in-domain | out-of-domain (Fig. 5)
    #: passages for the in-process retriever (HotpotQA contexts); None = needs a retriever URL
    corpus: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def limit(self, n: int | None) -> Benchmark:
        if n is None or n >= len(self.items):
            return self
        return Benchmark(self.name, self.kind, self.items[:n], self.source, self.domain, self.corpus, {**self.meta, "limit": n})

    def subset(self, indices: Sequence[int]) -> Benchmark:
        """The same benchmark with only the items at ``indices`` (a batch of a resumable run)."""
        return Benchmark(self.name, self.kind, [self.items[i] for i in indices], self.source, self.domain, self.corpus, self.meta)


@dataclass
class RunOptions:
    """How ``Task.run`` generates: whether tools are offered, the turn budget, the sampling, the
    executor of tool calls, the progress display and an optional per-message hook (``rollout``'s
    ``on_message``: a live display of each turn and tool result)."""

    tools: bool = True
    max_turns: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    executor: Executor = field(default_factory=Executor)
    progress: bool | Callable[[int], None] = True
    on_message: Callable[[int, dict[str, Any]], None] | None = None


class Task:
    """The defaults of a multi-turn tool-using task with a ``\\boxed{}`` answer (see the module doc)."""

    name: str = ""
    label: str = ""
    toolset: str | None = None
    question_field: str = "question"
    domain: str = "in-domain"
    #: the in-domain benchmarks of this task feed the report's tool-alignment score
    aligns_tools: bool = False
    #: records carry multi-turn ``trajectory``s (tool statistics are computed from them)
    trajectories: bool = True
    aliases: Mapping[str, str] = {}
    #: named alternative metrics (name -> ``(prediction, gold) -> bool``), chosen per evaluation
    #: with ``with_scorer``; ``scorer_name`` is the one ``score`` uses
    scorers: Mapping[str, Callable[[str | None, Any], bool]] = {}
    scorer_name: str | None = None

    # -- data
    def detect(self, record: Mapping[str, Any]) -> bool:
        """Whether a JSONL record looks like an item of this task."""
        return False

    def names(self) -> list[str]:
        """The named benchmarks ``load`` knows (for help texts and errors)."""
        return []

    def load(self, key: str, limit: int | None) -> Benchmark | None:
        """The named benchmark ``key`` (lower case, aliases resolved), or None if not this task's."""
        return None

    def from_file(self, path: Path, rows: list[tuple[int, dict[str, Any]]], name: str | None, limit: int | None) -> Benchmark:
        """A local JSONL file of this task (``rows``: its parsed lines)."""
        questions = load_questions(path, n=limit, task=self.name, question_field=self.question_field)
        return Benchmark(name or path.stem, self.name, self.items(questions), source=str(path), domain=self.domain)

    def gold(self, question: Question) -> Any:
        return question.answer

    def items(self, questions: Iterable[Question]) -> list[Item]:
        """``mentor.data.Question`` objects -> items."""
        return [
            Item(id=q.id, question=q.question, gold=self.gold(q), meta={k: v for k, v in q.meta.items() if k != "golds"})
            for q in questions
        ]

    # -- metric
    def score(self, prediction: str | None, gold: Any) -> bool:
        if self.scorer_name in self.scorers:
            return self.scorers[self.scorer_name](prediction, gold)
        raise NotImplementedError

    def with_scorer(self, name: str | None) -> Task:
        """This task scoring with its named scorer ``name`` (a copy; ``None``: this task as is)."""
        if name is None or name == self.scorer_name:
            return self
        if name not in self.scorers:
            known = ", ".join(self.scorers) or "none"
            raise ValueError(f"unknown scorer {name!r} for task {self.name!r}; its scorers: {known}")
        task = copy.copy(self)
        task.scorer_name = name
        return task

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``n``, ``correct``, ``accuracy`` from the records."""
        n = len(records)
        correct = sum(bool(r["correct"]) for r in records)
        return {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0}

    def group_label(self, result: Mapping[str, Any]) -> str:
        """The report's group of a result (e.g. "Math OOD")."""
        return self.label or self.name

    def columns(self, label: str, results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """Table 2's columns for one method's tool-enabled results of the group ``label``; the first
        is the group's headline number (default: the macro average over the benchmarks)."""
        return {f"{label} (avg)": sum(r["accuracy"] for r in results) / len(results)}

    def notes(self, label: str, results: Sequence[Mapping[str, Any]]) -> list[str]:
        """What the report should say about how ``columns`` were computed (default: nothing)."""
        return []

    def summary_columns(self, results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """Extra ``summary.json`` numbers of one method from its tool-enabled results of this task
        (default: none)."""
        return {}

    # -- running
    def settings(self, tools: bool, max_turns: int) -> dict[str, Any]:
        return {"toolset": self.toolset if tools else None, "max_turns": max_turns}

    def executor(self, bench: Benchmark, base: Executor, retriever_url: str | None, top_k: int) -> tuple[Executor, dict[str, Any]]:
        """The executor for this benchmark's tool calls and what to record about it."""
        return base, {}

    def needs_retriever(self, bench: Benchmark) -> bool:
        """Whether this benchmark's tool calls (tools offered) are answered by a retriever server
        (``--retriever-url``, the pipeline's ``eval.retriever``) rather than by the executor alone."""
        return False

    def generate(self, generator: Any, bench: Benchmark, opts: RunOptions) -> list[Any]:
        """Generate for every item: here the multi-turn tool loop (one ``Rollout`` per item)."""
        prompts = [it.messages or build_messages(it.question) for it in bench.items]
        return rollout(generator, prompts, tools=self.toolset if opts.tools else None, max_turns=opts.max_turns,
                       sampling=opts.sampling, progress=opts.progress, description=bench.name, executor=opts.executor,
                       on_message=opts.on_message)

    def records(self, bench: Benchmark, outputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Score every item's output (from ``generate``): one record per item."""
        records = []
        for item, r in zip(bench.items, outputs, strict=True):
            traj = r.trajectory
            records.append({
                "id": item.id,
                "question": item.question,
                "prediction": traj.final_answer,
                "gold": item.gold,
                "correct": self.score(traj.final_answer, item.gold),
                "tool_names": traj.tool_names,
                "num_tool_calls": traj.num_tool_calls,
                "invalid_calls": traj.num_invalid_calls,
                "generated_tokens": r.generated_tokens,
                "turns": r.turns,
                "truncated": r.truncated,
                "trajectory": traj.to_dict(),
                "completion": r.completion,
            })
        return records


# --------------------------------------------------------------------------- the registry

_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Make ``task`` known by its name (a later registration of the same name replaces it)."""
    if not task.name:
        raise ValueError(f"{type(task).__name__} has no name")
    _TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Forget the task ``name`` (tests, plugins that are unloaded)."""
    _TASKS.pop(name, None)


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(_TASKS)}") from None


def all_tasks() -> list[Task]:
    return list(_TASKS.values())


def prompt_text(question: str, task: str = "math", tokenizer: Any = None, style: str = "qwen2.5") -> str:
    """The full prompt of one question of ``task`` (its tools rendered by the chat template)."""
    return render(build_messages(question), get_task(task).toolset, tokenizer=tokenizer, style=style)


# --------------------------------------------------------------------------- benchmark files and names


def shared_benchmarks_dir() -> Path | None:
    env = os.environ.get("MENTOR_SHARED_BENCHMARKS")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [Path.cwd() / ".." / "shared" / "benchmarks", here.parents[3] / ".." / "shared" / "benchmarks"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def detect_task(obj: Mapping[str, Any], path: Path, line: int) -> Task:
    for task in all_tasks():
        if task.detect(obj):
            return task
    raise DataError(
        path,
        line,
        "cannot tell the benchmark kind: a math item needs 'problem' and 'answer', "
        "a QA item needs 'question' and 'answer' (or 'golden_answers')",
        "problem" if "answer" in obj else None,
    )


def load_jsonl_benchmark(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> Benchmark:
    """A local JSONL benchmark, its task recognised from the first record's fields (``problem``
    -> math, ``question`` -> QA); the questions are read with ``mentor.data.load_questions`` (a
    bad line raises ``DataError`` naming file, line and field)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    rows = list(read_jsonl(path))
    if not rows:
        raise DataError(path, None, "no records in this file")
    return detect_task(rows[0][1], path, rows[0][0]).from_file(path, rows, name, limit)


def local_or_hub(key: str, rel: str | None, hub: Callable[[int | None], Benchmark] | None, limit: int | None) -> Benchmark:
    """A named set: the shared local copy when there is one, else the Hub loader."""
    root = shared_benchmarks_dir()
    if rel and root and (root / rel).is_file():
        return load_jsonl_benchmark(root / rel, name=key, limit=limit)
    if hub is None:
        raise ValueError(f"benchmark {key!r} is only available as a local file ({rel}); set MENTOR_SHARED_BENCHMARKS")
    bench = hub(limit)
    bench.name = key
    return bench.limit(limit)
