"""The report: the paper's tables and figures from evaluation results and training logs.

``build_report(out_dir, methods={...}, references=..., train_logs={...})`` is the API the pipeline
calls with an explicit mapping; ``collect_runs(run_dirs)`` builds that mapping from run
directories (``mentor report RUN_DIR...``).

Inputs (plain files):

- evaluation results: the JSON ``mentor eval`` writes (``benchmark``, ``kind``, ``domain``,
  ``accuracy``, ``settings.tools``, ``records`` with ``num_tool_calls``/``tool_names``);
- training logs: JSONL of per-step dicts (``step``, ``invalid_call_rate``, ``tool_usage_rate``;
  ``mentor train`` writes ``metrics.jsonl``), one series per reward preset;
- the teacher: its evaluation results (method ``teacher``: Table 2's teacher row, Fig. 1's LLM
  side) and the alignment score's teacher distribution P, chosen by ``alignment_source``:
  ``benchmark`` (default, the paper's: the teacher's tool calls on the in-domain math benchmarks
  of its evaluation) or ``references`` (the tools of its correct training references).

Outputs in ``out_dir``: ``report.md``, ``report.html``, ``report.json`` (the numbers) and
``fig1_tool_effect.png``, ``fig1b_invocation_pattern.png``, ``fig1c_invalid_calls.png``,
``fig3_accuracy_vs_alignment.png``, ``fig4_tool_difference.png``,
``fig5_calls_per_question.png``, ``fig6_invalid_call_rate.png``, ``fig7_tool_usage_rate.png``.
Missing data never fails the report: the figure says what is missing and the report notes it.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentor.analysis.metrics import alignment_score
from mentor.io import DataError, read_jsonl, write_json
from mentor.references import load_references
from mentor.tasks import Task, all_tasks, get_task
from mentor.tools.registry import MATH_TOOL_NAMES

FIGURES = {
    "fig1": "fig1_tool_effect.png",
    "fig1b": "fig1b_invocation_pattern.png",
    "fig1c": "fig1c_invalid_calls.png",
    "fig3": "fig3_accuracy_vs_alignment.png",
    "fig4": "fig4_tool_difference.png",
    "fig5": "fig5_calls_per_question.png",
    "fig6": "fig6_invalid_call_rate.png",
    "fig7": "fig7_tool_usage_rate.png",
}


#: the method name of the teacher's evaluation results (Table 2's teacher row, Fig. 1's LLM side)
TEACHER = "teacher"
#: where the alignment score's teacher distribution P comes from: ``benchmark`` (the teacher's tool
#: calls on the in-domain math benchmarks of its evaluation, the paper's Fig. 1 / A.4) or
#: ``references`` (the tools of its correct training references)
ALIGNMENT_SOURCES = ("benchmark", "references")


def _task(result: Mapping[str, Any]) -> Task | None:
    try:
        return get_task(result.get("kind", "math"))
    except ValueError:  # a result of a task this installation does not register
        return None


def group_label(result: Mapping[str, Any]) -> str:
    """The Table 2 column a benchmark averages into (its task's label): Math (in-domain), Math
    OOD, RAG, BFCL."""
    task = _task(result)
    return task.group_label(result) if task else str(result.get("kind", "math"))


def aligns_tools(result: Mapping[str, Any]) -> bool:
    """Whether a tool-enabled result's calls count towards the tool-alignment score (the math
    tools called on the math benchmarks)."""
    task = _task(result)
    return bool(task and task.aligns_tools) and result.get("settings", {}).get("tools", True)


def alignment_counts(results: Iterable[Mapping[str, Any]]) -> Counter | None:
    """The tool-call counts the alignment score compares (P for the teacher, Q for a student): the
    tools called in the records of the tool-enabled, in-domain results whose task aligns tools
    (math); ``None`` when there is no such result. The one definition for both sides."""
    counts: Counter = Counter()
    found = False
    for e in results:
        if aligns_tools(e) and e.get("domain", "in-domain") == "in-domain":
            found = True
            for r in e["records"]:
                counts.update(r.get("tool_names") or [])
    return counts if found else None


def tool_use(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Tool-use metrics of evaluation records: ``n``, ``calls``, ``invalid``,
    ``calls_per_question``, ``invalid_call_rate`` (invalid calls / calls) and ``tool_usage_rate``
    (share of items with at least one call). The one definition the report and the pipeline's
    summary use."""
    records = list(records)
    n_calls = [int(r.get("num_tool_calls", len(r.get("tool_names") or []))) for r in records]
    n, total = len(n_calls), sum(n_calls)
    invalid = sum(int(r.get("invalid_calls", 0)) for r in records)
    return {
        "n": n,
        "calls": total,
        "invalid": invalid,
        "calls_per_question": total / n if n else 0.0,
        "invalid_call_rate": invalid / total if total else 0.0,
        "tool_usage_rate": sum(c > 0 for c in n_calls) / n if n else 0.0,
    }


def group_columns(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Table 2's columns per group (``group_label``) of one method's tool-enabled results, as
    each group's task reports them (``Task.columns``: a macro average; BFCL's official overall
    and its Non-Live/Live/Multi-Turn/Agentic groups); the first column is the group's number."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for e in results:
        by_group.setdefault(group_label(e), []).append(e)
    out = {}
    for g, es in by_group.items():
        task = _task(es[0])
        out[g] = task.columns(g, es) if task else {f"{g} (avg)": sum(e["accuracy"] for e in es) / len(es)}
    return out


def group_notes(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """What each group's task says about how its columns were computed (``Task.notes``)."""
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for e in results:
        by_group.setdefault(group_label(e), []).append(e)
    return [n for g, es in by_group.items() if (task := _task(es[0])) for n in task.notes(g, es)]


def task_summary_columns(results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Every registered task's extra ``summary.json`` numbers (``Task.summary_columns``) from the
    tool-enabled results of its kind (BFCL: ``bfcl_overall``, ``bfcl_non_live``, ...)."""
    out: dict[str, float | None] = {}
    for task in all_tasks():
        out.update(task.summary_columns([r for r in results if r.get("kind", "math") == task.name]))
    return out


def summary_row(results: Sequence[tuple[str, Mapping[str, Any]]], teacher: Counter | None) -> dict[str, float | None]:
    """One method's row of ``summary.json`` from its tool-enabled results, each tagged
    ``"in_domain"`` or ``"out_of_domain"``: accuracy per domain (macro over benchmarks), the
    invalid-call and tool-usage rates over all records, the alignment score of the in-domain
    tool calls (``alignment_counts``) with the teacher's distribution ``teacher`` (``None``: no
    distribution, no score), and the tasks' own columns (``task_summary_columns``: BFCL's
    official overall and its groups)."""
    acc: dict[str, list[float]] = {"in_domain": [], "out_of_domain": []}
    for domain, res in results:
        acc[domain].append(res["accuracy"])
    student = alignment_counts(res for domain, res in results if domain == "in_domain")
    use = tool_use(r for _, res in results for r in res["records"])
    some = use["n"] > 0
    return {
        "in_domain_accuracy": sum(acc["in_domain"]) / len(acc["in_domain"]) if acc["in_domain"] else None,
        "out_of_domain_accuracy": sum(acc["out_of_domain"]) / len(acc["out_of_domain"]) if acc["out_of_domain"] else None,
        "invalid_call_rate": use["invalid_call_rate"] if some else None,
        "tool_usage_rate": use["tool_usage_rate"] if some else None,
        "alignment_score": alignment_score(teacher, student) if teacher is not None and student is not None else None,
        **task_summary_columns([res for _, res in results]),
    }
def _variance_column(log: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The report's "steps with reward variance" cell of one GRPO run's log."""
    steps = [r for r in log if "reward" in r]
    return {"steps with reward variance": f"{sum(_varied(r) for r in steps)}/{len(steps)}"} if steps else {}


def _varied(r: Mapping[str, Any]) -> bool:
    frac = r.get("frac_reward_zero_std")
    return frac < 1.0 if frac is not None else (r.get("reward_std") or 0.0) > 0.0


def reward_variance_steps(metrics: Path) -> dict[str, int]:
    """``rl_steps`` and ``steps_with_reward_variance`` of a GRPO run's ``metrics.jsonl``: the
    steps in which at least one group's rollouts got different rewards (TRL's
    ``frac_reward_zero_std`` < 1; older logs: ``reward_std`` > 0). In the others every advantage
    was zero and the weights did not move. Empty when there is no log."""
    if not metrics.exists():
        return {}
    recs = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
    recs = [r for r in recs if "reward" in r]
    return {"rl_steps": len(recs), "steps_with_reward_variance": sum(_varied(r) for r in recs)}


_INVALID_KEYS = ("invalid_call_rate", "tools/invalid_call_rate", "invalid_tool_call_rate")
_USAGE_KEYS = ("tool_usage_rate", "tools/usage_rate", "usage_rate")


@dataclass
class MethodData:
    name: str
    evals: list[dict[str, Any]] = field(default_factory=list)
    train_log: list[dict[str, Any]] = field(default_factory=list)
    preset: str | None = None
    #: the training run's settings that depart (or may depart) from the paper's algorithm for
    #: speed or memory (``run.json``'s ``speed_options``, see ``mentor.train.grpo.speed_options``)
    training: dict[str, Any] | None = None


# ----------------------------------------------------------------------------- loading


def load_eval(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, None, f"not a readable JSON file ({e})") from None
    for key in ("benchmark", "accuracy", "records"):
        if key not in obj:
            raise DataError(path, None, "not an evaluation result (write it with `mentor eval`)", key)
    obj.setdefault("_path", str(path))
    return obj


def is_eval_file(path: Path) -> bool:
    if path.suffix != ".json" or path.name in ("run.json", "report.json"):
        return False
    try:
        head = path.read_text(encoding="utf-8")[:4000]
    except OSError:
        return False
    return '"benchmark"' in head and '"accuracy"' in head


def load_train_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [obj for _, obj in read_jsonl(path) if "step" in obj]


def _method_name(run_dir: Path) -> tuple[str, str | None]:
    """(method, preset) from ``run.json`` (``config.preset`` / ``stage``) or the directory name."""
    meta_file = run_dir / "run.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {}
        cfg = meta.get("config") or {}
        preset = cfg.get("preset") or meta.get("preset")
        stage = meta.get("stage") or cfg.get("stage")
        method = meta.get("method") or cfg.get("method") or (preset if stage != "sft" else "sft") or stage
        if method:
            return str(method), preset
    return run_dir.name, None


def collect_runs(run_dirs: Sequence[str | os.PathLike]) -> dict[str, MethodData]:
    """Eval result JSONs and ``*.jsonl`` training logs found (recursively) in each run directory;
    the method name comes from its ``run.json`` or the directory name."""
    methods: dict[str, MethodData] = {}
    for d in run_dirs:
        d = Path(d)
        if d.is_file():
            name = d.parent.name
            md = methods.setdefault(name, MethodData(name))
            md.evals.append(load_eval(d))
            continue
        if not d.is_dir():
            raise DataError(d, None, "run directory not found")
        name, preset = _method_name(d)
        md = methods.setdefault(name, MethodData(name, preset=preset))
        for f in sorted(d.rglob("*.json")):
            if is_eval_file(f):
                md.evals.append(load_eval(f))
        for f in sorted(d.rglob("*.jsonl")):
            log = load_train_log(f)
            if log and any(_first(r, _INVALID_KEYS + _USAGE_KEYS) is not None for r in log):
                md.train_log.extend(log)
                md.preset = md.preset or next((r.get("preset") for r in log if r.get("preset")), None)
    return methods


def _as_method(name: str, spec: Any) -> MethodData:
    if isinstance(spec, MethodData):
        return spec
    if isinstance(spec, str | os.PathLike) or (isinstance(spec, Mapping) and "records" in spec):
        spec = {"evals": [spec]}
    elif isinstance(spec, Sequence):
        spec = {"evals": list(spec)}
    md = MethodData(name, preset=spec.get("preset"), training=spec.get("training"))
    for e in spec.get("evals", []):
        md.evals.append(e if isinstance(e, Mapping) else load_eval(e))
    log = spec.get("train_log")
    if log is not None:
        md.train_log = list(log) if isinstance(log, list) else load_train_log(log)
    return md


@dataclass
class TeacherDistribution:
    """The alignment score's teacher distribution P: its tool-call ``counts`` (``None`` when the
    chosen source has none), the ``source`` (one of ``ALIGNMENT_SOURCES``) and what it was
    computed from (``origin``: benchmarks of the teacher's evaluation, or the references file)."""

    source: str
    counts: Counter | None
    origin: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.counts is None:
            return f"none ({self.source}: no data)"
        where = ", ".join(self.origin)
        if self.source == "benchmark":
            return f"the teacher's tool calls on the in-domain benchmarks of its evaluation ({where}), as the paper (Fig. 1, A.4)"
        return f"the teacher's tool calls in its correct training references ({where}), not the paper's benchmark distribution"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "origin": self.origin, "counts": dict(self.counts) if self.counts is not None else None,
                "description": self.describe()}


def teacher_distribution(source: str = "benchmark", references: str | os.PathLike | None = None,
                         teacher_evals: Sequence[Mapping[str, Any]] = ()) -> TeacherDistribution:
    """P from ``source``: ``benchmark`` -> ``alignment_counts`` of the teacher's evaluation
    results; ``references`` -> the ``teacher_tools`` of the correct references in ``references``."""
    if source not in ALIGNMENT_SOURCES:
        raise ValueError(f"unknown alignment source {source!r}; choose one of {', '.join(ALIGNMENT_SOURCES)}")
    if source == "references":
        if references is None or not Path(references).exists():
            return TeacherDistribution(source, None)
        return TeacherDistribution(source, teacher_counts(references), [str(references)])
    used = [e for e in teacher_evals if alignment_counts([e]) is not None]
    return TeacherDistribution(source, alignment_counts(used), [str(e.get("benchmark")) for e in used])


def teacher_counts(references: str | os.PathLike) -> Counter:
    """The tools of the correct references in ``references`` (the training-reference distribution)."""
    return Counter(t for r in load_references(references) for t in r.teacher_tools)


def _first(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        if record.get(k) is not None:
            return record[k]
    return None


# ----------------------------------------------------------------------------- numbers


def analyse(methods: Mapping[str, MethodData], teacher: Counter | None) -> dict[str, Any]:
    out: dict[str, Any] = {"methods": {}, "benchmarks": [], "teacher_counts": dict(teacher) if teacher is not None else None}
    benchmarks: list[tuple[str, str]] = []
    for name, md in methods.items():
        with_tools = {e["benchmark"]: e for e in md.evals if e.get("settings", {}).get("tools", True)}
        for b, e in with_tools.items():
            if (b, group_label(e)) not in benchmarks:
                benchmarks.append((b, group_label(e)))
        out["methods"][name] = _method_numbers(md, with_tools, teacher)
    out["benchmarks"] = benchmarks
    return out


def _method_numbers(md: MethodData, with_tools: Mapping[str, Mapping[str, Any]], teacher: Counter | None) -> dict[str, Any]:
    """One method's numbers: accuracy, the Table 2 columns per group (``group_columns``; ``macro``:
    each group's first), alignment, tool effect and tool use."""
    without = {e["benchmark"]: e for e in md.evals if not e.get("settings", {}).get("tools", True)}
    columns = group_columns(with_tools.values())
    # the paper's alignment score: the math tools called on the in-domain (math) benchmarks
    math_counts = alignment_counts(with_tools.values())
    align = alignment_score(teacher, math_counts) if teacher is not None and math_counts is not None else None
    calls: dict[str, list[int]] = {"in-domain": [], "out-of-domain": []}
    for e in with_tools.values():
        calls.setdefault(e.get("domain", "in-domain"), []).extend(
            int(r.get("num_tool_calls", len(r.get("tool_names") or []))) for r in e["records"]
        )
    series: dict[str, list[tuple[float, float]]] = {"invalid_call_rate": [], "tool_usage_rate": []}
    for r in md.train_log:
        for key, keys in (("invalid_call_rate", _INVALID_KEYS), ("tool_usage_rate", _USAGE_KEYS)):
            v = _first(r, keys)
            if v is not None:
                series[key].append((float(r["step"]), float(v)))
    use_all = tool_use(r for e in with_tools.values() for r in e["records"])
    return {
        "preset": md.preset,
        "accuracy": {b: e["accuracy"] for b, e in with_tools.items()},
        "macro": {g: next(iter(cols.values())) for g, cols in columns.items()},
        "columns": columns,
        "column_notes": group_notes(with_tools.values()),
        "alignment": align,
        "tool_share": _shares(math_counts),
        "tool_difference": _difference(math_counts, teacher),
        "tool_effect": {b: (without[b]["accuracy"], with_tools[b]["accuracy"]) for b in with_tools if b in without},
        "calls_per_question": calls,
        "tool_use": {b: {k: u[k] for k in ("calls_per_question", "invalid_call_rate", "tool_usage_rate")}
                     for b, u in ((b, tool_use(e["records"])) for b, e in with_tools.items())},
        "tool_use_all": use_all if use_all["n"] else None,
        "train": series,
    }


def _shares(counts: Counter | None) -> dict[str, float] | None:
    """Each math tool's share of the math-tool calls, in percent (``None``: no call at all)."""
    total = sum(counts[t] for t in MATH_TOOL_NAMES) if counts else 0
    return {t: 100 * counts[t] / total for t in MATH_TOOL_NAMES} if counts and total else None


def _difference(student: Counter | None, teacher: Counter | None) -> dict[str, float] | None:
    """Fig. 4: per math tool, the student's share of calls minus the teacher's, in points."""
    s, t = _shares(student), _shares(teacher)
    return {k: s[k] - t[k] for k in MATH_TOOL_NAMES} if s is not None and t is not None else None


# ----------------------------------------------------------------------------- rendering


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _tables(numbers: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    ms = numbers["methods"]
    benches = numbers["benchmarks"]
    cols = list(dict.fromkeys(c for d in ms.values() for group in d["columns"].values() for c in group))
    t2 = (
        "Table 2/3: accuracy (%) per benchmark, per task (macro average; BFCL: the official v4 overall "
        "and its groups), alignment score (%)",
        ["method", *[b for b, _ in benches], *cols, "alignment"],
        [
            [m, *[_pct(d["accuracy"].get(b)) for b, _ in benches],
             *[_pct(next((g[c] for g in d["columns"].values() if c in g), None)) for c in cols], _pct(d["alignment"])]
            for m, d in ms.items()
        ],
    )
    effect_rows = [
        [m, b, _pct(wo), _pct(w), f"{100 * (w - wo):+.2f}"] for m, d in ms.items() for b, (wo, w) in d["tool_effect"].items()
    ]
    t_eff = ("Tool effect (Fig. 1): accuracy (%) without and with tools", ["method", "benchmark", "no tools", "tools", "effect"], effect_rows)
    use_rows = [
        [m, b, f"{u['calls_per_question']:.2f}", _pct(u["invalid_call_rate"]), _pct(u["tool_usage_rate"])]
        for m, d in ms.items()
        for b, u in d["tool_use"].items()
    ]
    t_use = ("Tool use per benchmark", ["method", "benchmark", "calls / question", "invalid call rate (%)", "tool usage rate (%)"], use_rows)
    train_rows = []
    for m, d in ms.items():
        for key in ("invalid_call_rate", "tool_usage_rate"):
            pts = sorted(d["train"][key])
            if pts:
                train_rows.append([m, d["preset"] or "–", key, str(len(pts)), _pct(pts[0][1]), _pct(pts[-1][1])])
    t_train = ("Training (Fig. 6, 7): first and last logged value", ["method", "preset", "metric", "points", "first (%)", "last (%)"], train_rows)
    return [t2, t_eff, t_use, t_train]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_no data_\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>no data</em></p>"
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def build_report(
    out_dir: str | os.PathLike,
    methods: Mapping[str, Any] | None = None,
    references: str | os.PathLike | None = None,
    train_logs: Mapping[str, Any] | None = None,
    teacher: str | Sequence[Any] | None = None,
    runs: Sequence[str | os.PathLike] = (),
    title: str = "MENTOR report",
    plots_dir: str = "plots",
    summary: Mapping[str, Mapping[str, Any]] | None = None,
    keep_figures: dict[Path, Any] | None = None,
    alignment_source: str = "benchmark",
) -> dict[str, Any]:
    """Write the report; return ``{"markdown", "html", "json", "figures": {fig: path}, "notes"}``.

    ``methods`` maps a method name to eval result files/dicts, e.g. ``{"vanilla": ["a.json",
    "a.no_tools.json"], "mentor": {"evals": [...], "train_log": "runs/mentor/metrics.jsonl",
    "preset": "mentor"}}``; ``train_logs`` maps a preset/method to a per-step JSONL (added to
    the method of that name); ``runs`` are run directories collected with ``collect_runs``;
    ``teacher`` is the teacher's eval results (file/dict or list), reported as the method
    ``teacher`` (as is a method or run directory of that name). ``alignment_source`` picks the
    alignment score's teacher distribution (``ALIGNMENT_SOURCES``): ``benchmark`` (the teacher's
    evaluation) or ``references`` (the ``references`` file).
    The PNGs go to ``out_dir/plots_dir``; ``summary`` (method -> metric -> value, as ``mentor run``
    writes to ``summary.json``) is shown first when given. With ``keep_figures`` (a dict) the
    matplotlib figures are kept open there by PNG path, to read their plotted data back.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figdir = out / plots_dir
    figdir.mkdir(parents=True, exist_ok=True)
    data = _with_teacher(_gather(methods, train_logs, runs), teacher)
    dist = teacher_distribution(alignment_source, references, data[TEACHER].evals if TEACHER in data else [])
    numbers = analyse(data, dist.counts)
    numbers["alignment_source"] = dist.to_dict()
    notes = _data_notes(data, dist)
    for m, d in numbers["methods"].items():
        notes.extend(f"{m}: {n}" for n in d["column_notes"])
    figs = _figures(figdir, numbers["methods"], dist.counts, notes, keep_figures)
    tables = _tables(numbers)
    if summary:
        keys = list(next(iter(summary.values())).keys())
        rows = [[m, *("-" if v.get(k) is None else f"{v[k]:.3f}" for k in keys)] for m, v in summary.items()]
        tables.insert(0, ("Summary (summary.json)", ["method", *(k.replace("_", " ") for k in keys)], rows))
    trained = {m: {**md.training, **_variance_column(md.train_log)} for m, md in data.items() if md.training}
    if trained:
        keys = list(dict.fromkeys(k for t in trained.values() for k in t))
        tables.append(("Training settings (speed/memory options; the paper: full fine-tuning, transformers/vLLM "
                       "rollouts, beta 0.001)", ["method", *keys], [[m, *(str(t.get(k, "-")) for k in keys)]
                                                                      for m, t in trained.items()]))
        numbers["training"] = trained
    sources = sorted({e.get("_path", e.get("benchmark")) for md in data.values() for e in md.evals})
    preamble = [f"Alignment score (Table 2, Fig. 3, 4): teacher distribution P = {dist.describe()}."]
    page = _Page(title, list(numbers["methods"]), notes, tables, {k: _rel(p, out) for k, p in figs.items()}, preamble)
    (out / "report.md").write_text(page.markdown(sources), encoding="utf-8")
    (out / "report.html").write_text(page.html(), encoding="utf-8")
    write_json(out / "report.json", {**numbers, "notes": notes, "sources": sources, "figures": page.figures})
    return {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "json": out / "report.json",
        "figures": figs,
        "notes": notes,
        "numbers": numbers,
    }


def _data_notes(data: Mapping[str, MethodData], dist: TeacherDistribution) -> list[str]:
    """What is missing from the inputs (the report still renders)."""
    notes: list[str] = []
    if not data:
        notes.append("No evaluation results or training logs were found.")
    if dist.counts is None and dist.source == "benchmark":
        notes.append("No teacher evaluation with tools on an in-domain math benchmark (the paper's teacher distribution): "
                     "the alignment score, Fig. 3 and Fig. 4 are empty. Evaluate the teacher (`mentor run` stage teacher_eval, "
                     "`mentor report --teacher EVAL.json`) or use `--alignment-source references`.")
    elif dist.counts is None:
        notes.append("No references file for the teacher distribution (`--references`): the alignment score, Fig. 3 and 4 are empty.")
    if TEACHER in data:
        evals = data[TEACHER].evals
        if any(e.get("settings", {}).get("tools", True) for e in evals) and all(e.get("settings", {}).get("tools", True) for e in evals):
            notes.append("The teacher has no evaluation without tools, so Fig. 1's tool effect has no teacher bar (eval.tool_effect "
                         "off, or a teacher that cannot answer without tools, as the program teacher: docs/evaluation.md).")
    return notes


def _with_teacher(data: dict[str, MethodData], teacher: str | Sequence[Any] | None) -> dict[str, MethodData]:
    """``data`` with the ``teacher`` results given apart as the method ``teacher``, listed first."""
    if teacher is not None:
        items = [teacher] if isinstance(teacher, str | os.PathLike | Mapping) else list(teacher)
        md = data.setdefault(TEACHER, MethodData(TEACHER))
        md.evals.extend(t if isinstance(t, Mapping) else load_eval(t) for t in items)
    return {m: data[m] for m in sorted(data, key=lambda m: m != TEACHER)}


def _gather(methods: Mapping[str, Any] | None, train_logs: Mapping[str, Any] | None,
            runs: Sequence[str | os.PathLike]) -> dict[str, MethodData]:
    """Every method's evaluations and training log, from run directories, specs and logs."""
    data: dict[str, MethodData] = dict(collect_runs(runs)) if runs else {}
    for name, spec in (methods or {}).items():
        md = _as_method(name, spec)
        if name in data:
            data[name].evals.extend(md.evals)
            data[name].train_log.extend(md.train_log)
        else:
            data[name] = md
    for name, log in (train_logs or {}).items():
        md = data.setdefault(name, MethodData(name, preset=name))
        md.train_log.extend(list(log) if isinstance(log, list) else load_train_log(log))
        md.preset = md.preset or name
    return data


def _figures(figdir: Path, ms: Mapping[str, Any], tcounts: Counter | None, notes: list[str],
             keep_figures: dict[Path, Any] | None = None) -> dict[str, Path]:
    """Draw Fig. 1 (three panels), 3-7 into ``figdir``; append a note for each figure left empty."""
    from mentor.analysis import plots

    figs = _fig1(figdir, ms, notes, keep_figures)
    pts = {m: (d["alignment"], d["macro"].get("Math", 0.0)) for m, d in ms.items() if d["alignment"] is not None and m != TEACHER}
    figs["fig3"] = plots.accuracy_vs_alignment(figdir / FIGURES["fig3"], pts, keep=keep_figures)
    diffs = {m: d["tool_difference"] for m, d in ms.items() if d["tool_difference"] and m != TEACHER}
    figs["fig4"] = plots.tool_difference(figdir / FIGURES["fig4"], diffs, MATH_TOOL_NAMES, keep=keep_figures)
    if tcounts is not None and not diffs:
        notes.append("Fig. 4: no student made a math tool call in the evaluations given.")
    dists: dict[str, dict[str, list[int]]] = {}
    for m, d in ms.items():
        for dom, v in d["calls_per_question"].items():
            if v:
                dists.setdefault(dom, {})[m] = v
    figs["fig5"] = plots.calls_per_question(figdir / FIGURES["fig5"], dists, keep=keep_figures)
    label = lambda m, d: d["preset"] if d["preset"] and d["preset"] != m else m  # noqa: E731
    inv = {label(m, d): d["train"]["invalid_call_rate"] for m, d in ms.items() if d["train"]["invalid_call_rate"]}
    use = {label(m, d): d["train"]["tool_usage_rate"] for m, d in ms.items() if d["train"]["tool_usage_rate"]}
    figs["fig6"] = plots.over_steps(figdir / FIGURES["fig6"], inv, "invalid tool-call rate", "Invalid tool-call rate over training (Fig. 6)", keep=keep_figures)
    figs["fig7"] = plots.over_steps(figdir / FIGURES["fig7"], use, "tool-usage rate", "Tool-usage rate over training (Fig. 7)", keep=keep_figures)
    if not inv and not use:
        notes.append("Fig. 6/7 need training logs (metrics.jsonl with invalid_call_rate / tool_usage_rate per step).")
    return figs


def _fig1(figdir: Path, ms: Mapping[str, Any], notes: list[str], keep_figures: dict[Path, Any] | None) -> dict[str, Path]:
    """Fig. 1's panels, teacher (LLM) and students (SLM): the tool effect, the tool-invocation
    pattern (share of each math tool, calls per question) and the invalid-call rate."""
    from mentor.analysis import plots

    effect = {m: d["tool_effect"] for m, d in ms.items() if d["tool_effect"]}
    figs = {"fig1": plots.tool_effect(figdir / FIGURES["fig1"], effect, keep=keep_figures)}
    if not effect:
        notes.append("Fig. 1 needs the same benchmark evaluated with and without tools (`mentor eval --no-tools`).")
    use = {m: d["tool_use_all"] for m, d in ms.items() if d["tool_use_all"]}
    shares = {m: d["tool_share"] for m, d in ms.items() if d["tool_share"]}
    figs["fig1b"] = plots.invocation_pattern(figdir / FIGURES["fig1b"], shares, {m: u["calls_per_question"] for m, u in use.items()},
                                             MATH_TOOL_NAMES, keep=keep_figures)
    figs["fig1c"] = plots.invalid_calls(figdir / FIGURES["fig1c"], {m: (u["invalid"], u["calls"]) for m, u in use.items()},
                                        keep=keep_figures)
    return figs


CAPTIONS = {
    "fig1": "Tool effect: accuracy with and without tools, teacher (LLM) and students (SLM) (Fig. 1a).",
    "fig1b": "Tool-invocation pattern: share of each math tool in the in-domain calls, and tool calls per question (Fig. 1b).",
    "fig1c": "Invalid tool calls: share of all tool calls that failed, per method (Fig. 1c).",
    "fig3": "In-domain (math) accuracy vs alignment score with the teacher's tool distribution (Fig. 3).",
    "fig4": "Per-tool share of calls, student minus teacher, in points (Fig. 4).",
    "fig5": "Tool calls per question, in-domain and out-of-domain (Fig. 5).",
    "fig6": "Invalid tool-call rate over training steps per reward preset (Fig. 6).",
    "fig7": "Tool-usage rate over training steps per reward preset (Fig. 7).",
}


@dataclass
class _Page:
    """The report's content, rendered as Markdown and as HTML."""

    title: str
    methods: list[str]
    notes: list[str]
    tables: list[tuple[str, list[str], list[list[str]]]]
    figures: dict[str, str]  # fig key -> path relative to the report
    preamble: list[str] = field(default_factory=list)  # lines stated before the tables (e.g. the alignment source)

    def markdown(self, sources: Sequence[Any]) -> str:
        parts = [f"# {self.title}\n", f"Methods: {', '.join(self.methods) or 'none'}.\n", *(f"{line}\n" for line in self.preamble)]
        if self.notes:
            parts.append("**Notes**\n\n" + "\n".join(f"- {n}" for n in self.notes) + "\n")
        for cap, header, rows in self.tables:
            parts.append(f"## {cap}\n\n{_md_table(header, rows)}")
        parts.append("## Figures\n")
        for k, p in self.figures.items():
            parts.append(f"### {CAPTIONS[k]}\n\n![{k}]({p})\n")
        parts.append("## Sources\n\n" + "\n".join(f"- `{s}`" for s in sources) + "\n")
        return "\n".join(parts)

    def html(self) -> str:
        h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(self.title)}</h1><p>Methods: {html.escape(', '.join(self.methods) or 'none')}.</p>",
             *(f"<p>{html.escape(line)}</p>" for line in self.preamble)]
        if self.notes:
            h.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>")
        for cap, header, rows in self.tables:
            h.append(f"<h2>{html.escape(cap)}</h2>{_html_table(header, rows)}")
        h.append("<h2>Figures</h2>")
        for k, p in self.figures.items():
            h.append(f"<h3>{html.escape(CAPTIONS[k])}</h3><img src='{p}' alt='{k}'>")
        h.append("</body></html>")
        return "\n".join(h)
